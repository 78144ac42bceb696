"""iSCSI PDUs (RFC 7143 §11): the 48-byte BHS of every opcode, AHS, data segment padding.

A :class:`Pdu` is the decoded header plus its AHS and data segment. Initiator PDUs are read
with :func:`parse_bhs` (field access via properties); target PDUs are built with the
``build_*`` helpers, each returning the 48-byte BHS as a ``bytearray`` (the connection adds
digests and padding when it sends).
"""

from __future__ import annotations

import struct
from typing import Optional

from simfs.core.t10.sam import int_to_scsilun, scsilun_to_int

BHS_LEN = 48
RSVD_TAG = 0xFFFFFFFF

# -- opcodes (§11.2.1.2) ------------------------------------------------------------------------
OP_NOOP_OUT = 0x00
OP_SCSI_CMD = 0x01
OP_TMF_REQ = 0x02
OP_LOGIN_REQ = 0x03
OP_TEXT_REQ = 0x04
OP_DATA_OUT = 0x05
OP_LOGOUT_REQ = 0x06
OP_SNACK = 0x10
OP_NOOP_IN = 0x20
OP_SCSI_RSP = 0x21
OP_TMF_RSP = 0x22
OP_LOGIN_RSP = 0x23
OP_TEXT_RSP = 0x24
OP_DATA_IN = 0x25
OP_LOGOUT_RSP = 0x26
OP_R2T = 0x31
OP_ASYNC = 0x32
OP_REJECT = 0x3F

OP_IMMEDIATE = 0x40
OP_MASK = 0x3F

OPCODE_NAMES = {
    OP_NOOP_OUT: "NOP-Out", OP_SCSI_CMD: "SCSI Command", OP_TMF_REQ: "Task Management",
    OP_LOGIN_REQ: "Login", OP_TEXT_REQ: "Text", OP_DATA_OUT: "Data-Out", OP_LOGOUT_REQ: "Logout",
    OP_SNACK: "SNACK", OP_NOOP_IN: "NOP-In", OP_SCSI_RSP: "SCSI Response",
    OP_TMF_RSP: "Task Management Response", OP_LOGIN_RSP: "Login Response",
    OP_TEXT_RSP: "Text Response", OP_DATA_IN: "Data-In", OP_LOGOUT_RSP: "Logout Response",
    OP_R2T: "R2T", OP_ASYNC: "Async Message", OP_REJECT: "Reject",
}

# -- flags ------------------------------------------------------------------------------------
F_FINAL = 0x80
# SCSI Command
CMD_READ = 0x40
CMD_WRITE = 0x20
CMD_ATTR_MASK = 0x07
# Data-In / SCSI Response
DATAIN_ACK = 0x40
DATAIN_OVERFLOW = 0x04
DATAIN_UNDERFLOW = 0x02
DATAIN_STATUS = 0x01
RSP_BIDI_OVERFLOW = 0x10
RSP_BIDI_UNDERFLOW = 0x08
RSP_OVERFLOW = 0x04
RSP_UNDERFLOW = 0x02
# Login
LOGIN_TRANSIT = 0x80
LOGIN_CONTINUE = 0x40
# Text
TEXT_CONTINUE = 0x40

# -- login status (§11.13.5) ---------------------------------------------------------------------
STATUS_SUCCESS = 0x00
STATUS_REDIRECT = 0x01
STATUS_INITIATOR_ERR = 0x02
STATUS_TARGET_ERR = 0x03
# details, class 2
LOGIN_INIT_ERR = 0x00
LOGIN_AUTH_FAILED = 0x01
LOGIN_TGT_FORBIDDEN = 0x02
LOGIN_TGT_NOT_FOUND = 0x03
LOGIN_TGT_REMOVED = 0x04
LOGIN_NO_VERSION = 0x05
LOGIN_ISID_ERROR = 0x06
LOGIN_MISSING_FIELDS = 0x07
LOGIN_CONN_ADD_FAILED = 0x08
LOGIN_NO_SESSION_TYPE = 0x09
LOGIN_NO_SESSION = 0x0A
LOGIN_INVALID_REQUEST = 0x0B
# details, class 3
LOGIN_TARGET_ERROR = 0x00
LOGIN_SVC_UNAVAILABLE = 0x01
LOGIN_NO_RESOURCES = 0x02

# -- reject reasons (§11.17.1) -----------------------------------------------------------------
REASON_DATA_DIGEST_ERROR = 0x02
REASON_SNACK_REJECT = 0x03
REASON_PROTOCOL_ERROR = 0x04
REASON_CMD_NOT_SUPPORTED = 0x05
REASON_IMM_CMD_REJECT = 0x06
REASON_TASK_IN_PROGRESS = 0x07
REASON_INVALID_DATA_ACK = 0x08
REASON_BOOKMARK_INVALID = 0x09
REASON_BOOKMARK_NO_RESOURCES = 0x0A
REASON_NEGOTIATION_RESET = 0x0B
REASON_WAITING_FOR_LOGOUT = 0x0C

# -- task management (§11.5.1, §11.6.1) --------------------------------------------------------
TMF_ABORT_TASK = 1
TMF_ABORT_TASK_SET = 2
TMF_CLEAR_ACA = 3
TMF_CLEAR_TASK_SET = 4
TMF_LOGICAL_UNIT_RESET = 5
TMF_TARGET_WARM_RESET = 6
TMF_TARGET_COLD_RESET = 7
TMF_TASK_REASSIGN = 8
TMF_NAMES = {1: "ABORT_TASK", 2: "ABORT_TASK_SET", 3: "CLEAR_ACA", 4: "CLEAR_TASK_SET",
             5: "LUN_RESET", 6: "TARGET_WARM_RESET", 7: "TARGET_COLD_RESET",
             8: "TASK_REASSIGN"}
TMF_RSP_COMPLETE = 0
TMF_RSP_NO_TASK = 1
TMF_RSP_NO_LUN = 2
TMF_RSP_TASK_ALLEGIANT = 3
TMF_RSP_NO_FAILOVER = 4
TMF_RSP_NOT_SUPPORTED = 5
TMF_RSP_AUTH_FAILED = 6
TMF_RSP_REJECTED = 255

# -- logout (§11.14.1, §11.15.1) ----------------------------------------------------------------
LOGOUT_CLOSE_SESSION = 0
LOGOUT_CLOSE_CONNECTION = 1
LOGOUT_REMOVE_CONN_FOR_RECOVERY = 2
LOGOUT_SUCCESS = 0
LOGOUT_CID_NOT_FOUND = 1
LOGOUT_RECOVERY_UNSUPPORTED = 2
LOGOUT_CLEANUP_FAILED = 3

AHS_EXTENDED_CDB = 1
AHS_BIDI_READ_LEN = 2

_U32 = struct.Struct(">I")


def pad_len(n: int) -> int:
    """Bytes of padding after a data segment of ``n`` bytes."""
    return -n & 3


PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")


#: the kernel's 8-byte LUN and back (scsilun_to_int / int_to_scsilun), as the core has them
lun_to_int = scsilun_to_int
int_to_lun = int_to_scsilun


class Pdu:
    """One received PDU: ``bhs`` (48 bytes), ``ahs`` and ``data`` (without padding)."""

    __slots__ = ("bhs", "ahs", "data")

    def __init__(self, bhs, ahs: bytes = b"", data: bytes = b""):
        self.bhs = bytes(bhs)
        self.ahs = ahs
        self.data = data

    # -- common fields
    @property
    def opcode(self) -> int:
        return self.bhs[0] & OP_MASK

    @property
    def immediate(self) -> bool:
        return bool(self.bhs[0] & OP_IMMEDIATE)

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def final(self) -> bool:
        return bool(self.bhs[1] & F_FINAL)

    @property
    def ahs_len(self) -> int:
        return self.bhs[4] * 4

    @property
    def dlength(self) -> int:
        b = self.bhs
        return (b[5] << 16) | (b[6] << 8) | b[7]

    @property
    def lun_bytes(self) -> bytes:
        return self.bhs[8:16]

    @property
    def lun(self) -> int:
        return lun_to_int(self.bhs[8:16])

    def u32(self, off: int) -> int:
        return _U32.unpack_from(self.bhs, off)[0]

    @property
    def itt(self) -> int:
        return self.u32(16)

    # -- opcode-specific (initiator side)
    @property
    def ttt(self) -> int:  # NOP-Out, Text, Data-Out
        return self.u32(20)

    @property
    def edtl(self) -> int:  # SCSI Command
        return self.u32(20)

    @property
    def rtt(self) -> int:  # TMF
        return self.u32(20)

    @property
    def cmdsn(self) -> int:
        return self.u32(24)

    @property
    def exp_statsn(self) -> int:
        return self.u32(28)

    @property
    def ref_cmdsn(self) -> int:  # TMF
        return self.u32(32)

    @property
    def datasn(self) -> int:  # Data-Out
        return self.u32(36)

    @property
    def buffer_offset(self) -> int:  # Data-Out
        return self.u32(40)

    @property
    def cdb(self) -> bytes:
        """The CDB, extended by an Extended-CDB AHS when one is present."""
        cdb = self.bhs[32:48]
        ahs = self.ahs
        while len(ahs) >= 4:
            alen = (ahs[0] << 8) | ahs[1]
            if ahs[2] == AHS_EXTENDED_CDB:
                cdb += ahs[4:4 + alen - 1]
            ahs = ahs[4 + ((alen + 3) & ~3):]
        return cdb

    @property
    def tmf_function(self) -> int:
        return self.bhs[1] & 0x7F

    @property
    def logout_reason(self) -> int:
        return self.bhs[1] & 0x7F

    # -- login request
    @property
    def transit(self) -> bool:
        return bool(self.bhs[1] & LOGIN_TRANSIT)

    @property
    def cont(self) -> bool:
        return bool(self.bhs[1] & LOGIN_CONTINUE)

    @property
    def csg(self) -> int:
        return (self.bhs[1] >> 2) & 3

    @property
    def nsg(self) -> int:
        return self.bhs[1] & 3

    @property
    def version_max(self) -> int:
        return self.bhs[2]

    @property
    def version_min(self) -> int:
        return self.bhs[3]

    @property
    def isid(self) -> bytes:
        return self.bhs[8:14]

    @property
    def tsih(self) -> int:
        return (self.bhs[14] << 8) | self.bhs[15]

    @property
    def cid(self) -> int:
        return (self.bhs[20] << 8) | self.bhs[21]

    def __repr__(self) -> str:
        name = OPCODE_NAMES.get(self.opcode, f"op 0x{self.opcode:02x}")
        return f"<Pdu {name} itt=0x{self.itt:08x} dlen={self.dlength}>"


def parse_bhs(bhs) -> Pdu:
    return Pdu(bhs)


# -- building target PDUs ----------------------------------------------------------------------
def _bhs(opcode: int, flags: int, dlength: int = 0) -> bytearray:
    h = bytearray(BHS_LEN)
    h[0] = opcode
    h[1] = flags
    h[5] = (dlength >> 16) & 0xFF
    h[6] = (dlength >> 8) & 0xFF
    h[7] = dlength & 0xFF
    return h


def _put(h: bytearray, off: int, v: int) -> None:
    _U32.pack_into(h, off, v & 0xFFFFFFFF)


def build_login_rsp(flags: int, isid: bytes, tsih: int, itt: int, statsn: int, exp_cmdsn: int,
                    max_cmdsn: int, status_class: int, status_detail: int,
                    dlength: int) -> bytearray:
    h = _bhs(OP_LOGIN_RSP, flags, dlength)
    h[2] = 0  # version-max
    h[3] = 0  # version-active
    h[8:14] = isid
    h[14] = (tsih >> 8) & 0xFF
    h[15] = tsih & 0xFF
    _put(h, 16, itt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    h[36] = status_class
    h[37] = status_detail
    return h


def build_text_rsp(final: bool, cont: bool, lun: bytes, itt: int, ttt: int, statsn: int,
                   exp_cmdsn: int, max_cmdsn: int, dlength: int) -> bytearray:
    h = _bhs(OP_TEXT_RSP, (F_FINAL if final else 0) | (TEXT_CONTINUE if cont else 0), dlength)
    h[8:16] = lun
    _put(h, 16, itt)
    _put(h, 20, ttt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    return h


#: a SCSI Response or Data-In header in one pack: opcode, flags, response, status,
#: TotalAHSLength+DataSegmentLength, LUN, then eight 32-bit words from byte 16
_RSP = struct.Struct(">BBBBI8s8I")
_NO_LUN = bytes(8)


def build_scsi_rsp(itt: int, status: int, statsn: int, exp_cmdsn: int, max_cmdsn: int,
                   exp_datasn: int, resid_flags: int, residual: int, dlength: int,
                   response: int = 0) -> bytes:
    return _RSP.pack(OP_SCSI_RSP, F_FINAL | resid_flags, response, status, dlength, _NO_LUN,
                     itt & 0xFFFFFFFF, 0, statsn & 0xFFFFFFFF, exp_cmdsn & 0xFFFFFFFF,
                     max_cmdsn & 0xFFFFFFFF, exp_datasn & 0xFFFFFFFF, 0,
                     residual & 0xFFFFFFFF)


def build_data_in(flags: int, status: int, lun: bytes, itt: int, ttt: int, statsn: int,
                  exp_cmdsn: int, max_cmdsn: int, datasn: int, offset: int, residual: int,
                  dlength: int) -> bytes:
    st = flags & DATAIN_STATUS
    return _RSP.pack(OP_DATA_IN, flags, 0, status if st else 0, dlength,
                     lun if flags & DATAIN_ACK else _NO_LUN, itt & 0xFFFFFFFF,
                     ttt & 0xFFFFFFFF, statsn & 0xFFFFFFFF if st else 0,
                     exp_cmdsn & 0xFFFFFFFF, max_cmdsn & 0xFFFFFFFF, datasn & 0xFFFFFFFF,
                     offset & 0xFFFFFFFF, residual & 0xFFFFFFFF)


def build_r2t(lun: bytes, itt: int, ttt: int, statsn: int, exp_cmdsn: int, max_cmdsn: int,
              r2tsn: int, offset: int, length: int) -> bytearray:
    h = _bhs(OP_R2T, F_FINAL)
    h[8:16] = lun
    _put(h, 16, itt)
    _put(h, 20, ttt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    _put(h, 36, r2tsn)
    _put(h, 40, offset)
    _put(h, 44, length)
    return h


def build_nop_in(lun: bytes, itt: int, ttt: int, statsn: int, exp_cmdsn: int, max_cmdsn: int,
                 dlength: int = 0) -> bytearray:
    h = _bhs(OP_NOOP_IN, F_FINAL, dlength)
    h[8:16] = lun
    _put(h, 16, itt)
    _put(h, 20, ttt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    return h


def build_tmf_rsp(response: int, itt: int, statsn: int, exp_cmdsn: int,
                  max_cmdsn: int) -> bytearray:
    h = _bhs(OP_TMF_RSP, F_FINAL)
    h[2] = response
    _put(h, 16, itt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    return h


def build_logout_rsp(response: int, itt: int, statsn: int, exp_cmdsn: int, max_cmdsn: int,
                     time2wait: int, time2retain: int) -> bytearray:
    h = _bhs(OP_LOGOUT_RSP, F_FINAL)
    h[2] = response
    _put(h, 16, itt)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    struct.pack_into(">HH", h, 40, time2wait & 0xFFFF, time2retain & 0xFFFF)
    return h


def build_reject(reason: int, statsn: int, exp_cmdsn: int, max_cmdsn: int,
                 datasn: int = 0) -> bytearray:
    """A Reject; its data segment is the rejected PDU's BHS (48 bytes)."""
    h = _bhs(OP_REJECT, F_FINAL, BHS_LEN)
    h[2] = reason
    _put(h, 16, RSVD_TAG)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    _put(h, 36, datasn)
    return h


def build_async(event: int, lun: bytes, statsn: int, exp_cmdsn: int, max_cmdsn: int,
                param1: int = 0, param2: int = 0, param3: int = 0,
                dlength: int = 0) -> bytearray:
    h = _bhs(OP_ASYNC, F_FINAL, dlength)
    h[8:16] = lun
    _put(h, 16, RSVD_TAG)
    _put(h, 24, statsn)
    _put(h, 28, exp_cmdsn)
    _put(h, 32, max_cmdsn)
    h[36] = event
    struct.pack_into(">HHH", h, 38, param1, param2, param3)
    return h


# -- building initiator PDUs (tests, tools) ------------------------------------------------------
def build_login_req(isid: bytes, tsih: int, itt: int, cid: int, cmdsn: int, exp_statsn: int,
                    csg: int, nsg: int, transit: bool, dlength: int) -> bytearray:
    flags = (LOGIN_TRANSIT if transit else 0) | (csg << 2) | (nsg if transit else 0)
    h = _bhs(OP_LOGIN_REQ | OP_IMMEDIATE, flags, dlength)
    h[8:14] = isid
    h[14] = (tsih >> 8) & 0xFF
    h[15] = tsih & 0xFF
    _put(h, 16, itt)
    struct.pack_into(">H", h, 20, cid)
    _put(h, 24, cmdsn)
    _put(h, 28, exp_statsn)
    return h


def build_scsi_cmd(flags: int, lun: int, itt: int, edtl: int, cmdsn: int, exp_statsn: int,
                   cdb: bytes, dlength: int, immediate: bool = False) -> bytearray:
    h = _bhs(OP_SCSI_CMD | (OP_IMMEDIATE if immediate else 0), flags, dlength)
    h[8:16] = int_to_lun(lun)
    _put(h, 16, itt)
    _put(h, 20, edtl)
    _put(h, 24, cmdsn)
    _put(h, 28, exp_statsn)
    h[32:32 + min(16, len(cdb))] = cdb[:16]
    return h


def build_data_out(final: bool, lun: int, itt: int, ttt: int, exp_statsn: int, datasn: int,
                   offset: int, dlength: int) -> bytearray:
    h = _bhs(OP_DATA_OUT, F_FINAL if final else 0, dlength)
    h[8:16] = int_to_lun(lun)
    _put(h, 16, itt)
    _put(h, 20, ttt)
    _put(h, 28, exp_statsn)
    _put(h, 36, datasn)
    _put(h, 40, offset)
    return h


def build_generic(opcode: int, flags: int, itt: int, w20: int = 0, cmdsn: int = 0,
                  exp_statsn: int = 0, lun: int = 0, dlength: int = 0,
                  immediate: bool = False) -> bytearray:
    h = _bhs(opcode | (OP_IMMEDIATE if immediate else 0), flags, dlength)
    h[8:16] = int_to_lun(lun)
    _put(h, 16, itt)
    _put(h, 20, w20)
    _put(h, 24, cmdsn)
    _put(h, 28, exp_statsn)
    return h


def decode_fields(bhs) -> dict:
    """A dict view of a target PDU's header (tests and debugging)."""
    p = Pdu(bhs)
    d = {"opcode": p.opcode, "flags": p.flags, "dlength": p.dlength, "itt": p.itt,
         "w20": p.u32(20), "statsn": p.u32(24), "exp_cmdsn": p.u32(28),
         "max_cmdsn": p.u32(32), "w36": p.u32(36), "w40": p.u32(40), "w44": p.u32(44),
         "b2": p.bhs[2], "b3": p.bhs[3]}
    if p.opcode == OP_LOGIN_RSP:
        d.update(status_class=p.bhs[36], status_detail=p.bhs[37], tsih=p.tsih)
    return d


def serial_lt(a: int, b: int) -> bool:
    """RFC 1982 serial-number arithmetic, 32 bits: a < b."""
    return a != b and ((a < b and b - a < 1 << 31) or (a > b and a - b > 1 << 31))


def serial_gt(a: int, b: int) -> bool:
    return serial_lt(b, a)


def opcode_name(op: int) -> str:
    return OPCODE_NAMES.get(op, f"0x{op:02x}")


def optional(v: Optional[int], default: int) -> int:
    return default if v is None else v
