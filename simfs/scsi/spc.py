"""SPC-4 commands every device type answers (the kernel's target_core_spc.c).

:func:`parse` is spc_parse_cdb plus sbc_parse_cdb's closing rule ("reject any command that we
don't have a handler for"): an opcode the kernel parses but gives no handler (LOG SENSE,
SECURITY PROTOCOL IN, other MAINTENANCE IN service actions, ...) is returned as unclaimed, and
the engine answers INVALID COMMAND OPERATION CODE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from simfs.core.t10.sam import int_to_scsilun
from simfs.scsi import alua, pr, pr_in, pr_out, sense
from simfs.scsi import status as S
from simfs.scsi import vpd
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command

SE_MODE_PAGE_BUF = 512
SE_SENSE_BUF = 96


def _be16(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "big")


def _be32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "big")


def _need(cmd: "Command", n: int) -> None:
    if len(cmd.cdb) < n:
        raise sense.INVALID_CDB_FIELD(why=f"CDB shorter than {n} bytes")


# -- parse ----------------------------------------------------------------------------------------
def parse(cmd: "Command") -> bool:
    """Claim ``cmd`` if it is an SPC command: set cmd.execute/direction/alloc_len, or raise
    SenseError for a malformed CDB. Returns False for opcodes it does not know."""
    dev, cdb, op = cmd.dev, cmd.cdb, cmd.opcode

    if op in (S.RESERVE, S.RESERVE_10, S.RELEASE, S.RELEASE_10):
        if not dev.attrib.emulate_pr or dev.passthrough_pgr:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
    elif op in (S.PERSISTENT_RESERVE_IN, S.PERSISTENT_RESERVE_OUT):
        if not dev.attrib.emulate_pr:
            raise sense.UNSUPPORTED_SCSI_OPCODE()

    if op in (S.MODE_SELECT, S.MODE_SELECT_10):
        ten = op == S.MODE_SELECT_10
        _need(cmd, 10 if ten else 6)
        size = _be16(cdb, 7) if ten else cdb[4]
        cmd.direction = DATA_OUT
        cmd.ctx["size"] = cmd.control_size_check(size)
        cmd.execute = emulate_modeselect
    elif op in (S.MODE_SENSE, S.MODE_SENSE_10):
        ten = op == S.MODE_SENSE_10
        _need(cmd, 10 if ten else 6)
        _data_in(cmd, _be16(cdb, 7) if ten else cdb[4], emulate_modesense)
    elif op == S.PERSISTENT_RESERVE_IN:
        _need(cmd, 10)
        _data_in(cmd, _be16(cdb, 7), None)
        pr_in.parse_pr_in(cmd)
    elif op == S.PERSISTENT_RESERVE_OUT:
        _need(cmd, 10)
        cmd.direction = DATA_OUT
        pr_out.parse_pr_out(cmd)
    elif op in (S.RELEASE, S.RELEASE_10):
        fn = getattr(pr, "parse_spc2_release", None)
        if fn is None:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        fn(cmd)
    elif op in (S.RESERVE, S.RESERVE_10):
        fn = getattr(pr, "parse_spc2_reserve", None)
        if fn is None:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        fn(cmd)
    elif op == S.REQUEST_SENSE:
        _need(cmd, 6)
        _data_in(cmd, cdb[4], emulate_request_sense, size_check=False)
        # the buffer it fills: the fabric's, cut to the CDB's when shorter
        cmd.ctx["data_length"] = (cdb[4] if cmd.fabric_length is None
                                  else cmd.control_size_check(cdb[4]))
    elif op == S.INQUIRY:
        _need(cmd, 6)
        _data_in(cmd, _be16(cdb, 3), vpd.emulate_inquiry)
    elif op == S.REPORT_LUNS:
        _need(cmd, 12)
        _data_in(cmd, _be32(cdb, 6), emulate_report_luns)
    elif op == S.TEST_UNIT_READY:
        cmd.direction = DATA_NONE
        cmd.alloc_len = 0
        cmd.execute = emulate_testunitready
    elif op == S.MAINTENANCE_IN:
        if vpd.device_type(dev) == vpd.TYPE_ROM:
            return False  # GPCMD_SEND_KEY: no handler
        _need(cmd, 12)
        sa = cdb[1] & 0x1F
        if sa == S.MI_REPORT_TARGET_PGS:
            _data_in(cmd, _be32(cdb, 6), None)
            alua.parse_report_target_port_groups(cmd)
        elif sa == S.MI_REPORT_SUPPORTED_OPERATION_CODES and \
                dev.core.kernel.has("report_supported_opcodes"):
            _data_in(cmd, _be32(cdb, 6), emulate_report_supp_op_codes)
        else:
            return False
    elif op == S.MAINTENANCE_OUT:
        if vpd.device_type(dev) == vpd.TYPE_ROM:
            return False
        _need(cmd, 12)
        if cdb[1] != S.MO_SET_TARGET_PGS:  # the whole byte, as the kernel compares it
            return False
        cmd.direction = DATA_OUT
        alua.parse_set_target_port_groups(cmd)
    else:
        return False
    return True


def _data_in(cmd: "Command", size: int, execute: Optional[Callable],
             size_check: bool = True) -> None:
    cmd.direction = DATA_IN
    cmd.alloc_len = size
    if size_check:
        cmd.data_in_size_check(size)
    if execute is not None:
        cmd.execute = execute


# -- TEST UNIT READY ------------------------------------------------------------------------------
def emulate_testunitready(cmd: "Command") -> None:
    return None


# -- REQUEST SENSE --------------------------------------------------------------------------------
def build_sense_buffer(desc: bool, key: int, asc: int, ascq: int) -> bytes:
    """scsi_build_sense_buffer into a zeroed SE_SENSE_BUF."""
    buf = bytearray(SE_SENSE_BUF)
    if desc:
        buf[0], buf[1], buf[2], buf[3] = 0x72, key, asc, ascq
        buf[7] = 0
    else:
        buf[0], buf[2], buf[7], buf[12], buf[13] = 0x70, key, 0x0A, asc, ascq
    return bytes(buf)


def emulate_request_sense(cmd: "Command") -> bytes:
    from simfs.scsi.engine import scsi_state
    dev = cmd.dev
    if cmd.cdb[1] & 0x01:
        dev.log.err("REQUEST_SENSE description emulation not supported")
        raise sense.INVALID_CDB_FIELD()
    if not cmd.ctx.get("data_length"):
        # no buffer to map (transport_kmap_data_sg): the pending UA is not cleared
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    desc = vpd.sense_desc_format(dev)
    ua = scsi_state(dev).ua.clear_for_request_sense(cmd.nexus)
    if ua is not None:
        buf = build_sense_buffer(desc, S.UNIT_ATTENTION, ua[0], ua[1])
    else:
        buf = build_sense_buffer(desc, S.NO_SENSE, 0, 0)
    # target_complete_cmd: the whole allocation length goes out, zero past the sense buffer
    alloc = cmd.alloc_len or 0
    return buf + bytes(max(0, alloc - len(buf)))


# -- REPORT LUNS ----------------------------------------------------------------------------------
def visible_luns(cmd: "Command") -> list[int]:
    """The LUNs this I_T nexus reaches, in report order.

    The nexus's node ACL lists its mapped LUNs in the kernel's list order (newest mapping
    first: hlist_add_head); a port may offer ``report_luns()``; a nexus with neither (the
    ``simfs scsi`` CLI, tests) sees every LUN of its fabric/wwn/tpgt, ascending.
    """
    if cmd.nexus.acl is not None:
        return list(cmd.nexus.acl.report_luns())
    hook = getattr(cmd.nexus.port, "report_luns", None)
    if callable(hook):
        return list(hook())
    me = cmd.nexus.port
    luns = {cmd.nexus.lun}
    core = getattr(cmd.dev, "core", None)
    devices = []
    for hba in getattr(core, "hbas", {}).values():
        devices.extend(getattr(hba, "devices", {}).values())
    if cmd.dev not in devices:
        devices.append(cmd.dev)
    for dev in devices:
        for p in getattr(dev, "luns", ()):
            if (p.fabric, p.wwn, p.tpgt) == (me.fabric, me.wwn, me.tpgt):
                luns.add(p.lun)
    return sorted(luns)


def emulate_report_luns(cmd: "Command") -> bytes:
    luns = visible_luns(cmd)
    if not luns:
        luns = [0]  # no LUN accessible: report virtual LUN 0
    body = b"".join(int_to_scsilun(lun) for lun in luns)
    return (len(luns) * 8).to_bytes(4, "big") + bytes(4) + body


# -- MODE SENSE / MODE SELECT ---------------------------------------------------------------------
def _ms_rwrecovery(cmd: "Command", pc: int, p: bytearray, o: int) -> int:
    p[o], p[o + 1] = 0x01, 0x0A
    return 12


def _ms_control(cmd: "Command", pc: int, p: bytearray, o: int) -> int:
    dev = cmd.dev
    a = dev.attrib
    p[o], p[o + 1] = 0x0A, 0x0A
    if pc == 1:
        return 12  # no changeable values
    p[o + 2] = 0x02  # GLTSD
    if vpd.sense_desc_format(dev):
        p[o + 2] |= 0x04  # D_SENSE
    p[o + 3] = 0x00 if a.emulate_rest_reord == 1 else 0x10  # QUEUE ALGORITHM MODIFIER
    p[o + 4] = {2: 0x30, 1: 0x20}.get(a.emulate_ua_intlck_ctrl, 0x00)  # UA_INTLCK_CTRL
    p[o + 5] = 0x40 if a.emulate_tas else 0x00  # TAS
    if vpd.prot_type(cmd):
        p[o + 5] |= 0x80  # ATO
    p[o + 8] = 0xFF  # BUSY TIMEOUT PERIOD
    p[o + 9] = 0xFF
    p[o + 11] = 30  # EXTENDED SELF-TEST COMPLETION TIME
    return 12


def _ms_caching(cmd: "Command", pc: int, p: bytearray, o: int) -> int:
    dev = cmd.dev
    p[o], p[o + 1] = 0x08, 0x12
    if pc == 1:
        return 20
    if vpd.check_wce(dev):
        p[o + 2] = 0x04  # WCE
    p[o + 12] = 0x20  # DRA
    return 20


def _ms_iec(cmd: "Command", pc: int, p: bytearray, o: int) -> int:
    p[o], p[o + 1] = 0x1C, 0x0A
    return 12


MODESENSE_HANDLERS = [
    (0x01, 0x00, _ms_rwrecovery),
    (0x08, 0x00, _ms_caching),
    (0x0A, 0x00, _ms_control),
    (0x1C, 0x00, _ms_iec),
]


def _blockdesc(buf: bytearray, o: int, blocks: int, block_size: int) -> int:
    buf[o] = 8
    buf[o + 1:o + 5] = min(blocks, 0xFFFFFFFF).to_bytes(4, "big")
    buf[o + 5:o + 9] = (block_size & 0xFFFFFFFF).to_bytes(4, "big")
    return 9


def _long_blockdesc(buf: bytearray, o: int, blocks: int, block_size: int) -> int:
    if blocks <= 0xFFFFFFFF:
        return _blockdesc(buf, o + 3, blocks, block_size) + 3
    buf[o] = 1  # LONGLBA
    buf[o + 3] = 16
    buf[o + 4:o + 12] = blocks.to_bytes(8, "big")
    buf[o + 16:o + 20] = (block_size & 0xFFFFFFFF).to_bytes(4, "big")
    return 17  # sic: the kernel's count, so the pages start inside the descriptor


def emulate_modesense(cmd: "Command") -> bytes:
    dev, cdb = cmd.dev, cmd.cdb
    dtype = vpd.device_type(dev)
    ten = cdb[0] == S.MODE_SENSE_10
    dbd = bool(cdb[1] & 0x08)
    llba = bool(cdb[1] & 0x10) if ten else False
    pc, page, subpage = cdb[2] >> 6, cdb[2] & 0x3F, cdb[3]
    buf = bytearray(SE_MODE_PAGE_BUF + 64)
    length = 3 if ten else 2
    if cmd.write_protected:
        buf[length] |= 0x80  # WP
    if vpd.check_fua(dev) and dtype == vpd.TYPE_DISK:
        buf[length] |= 0x10  # DPOFUA
    length += 1
    if not dbd and dtype == vpd.TYPE_DISK:
        blocks, bs = dev.bdev.get_blocks(), dev.attrib.block_size
        if ten:
            if llba:
                length += _long_blockdesc(buf, length, blocks, bs)
            else:
                length += 3
                length += _blockdesc(buf, length, blocks, bs)
        else:
            length += _blockdesc(buf, length, blocks, bs)
    else:
        length += 4 if ten else 1

    if page == 0x3F:
        if subpage not in (0x00, 0xFF):
            dev.log.warn(f"MODE_SENSE: Invalid subpage code: 0x{subpage:02x}")
            raise sense.INVALID_CDB_FIELD()
        for pg, sp, handler in MODESENSE_HANDLERS:
            if sp & ~subpage & 0xFF == 0:
                ret = handler(cmd, pc, buf, length)
                if not ten and length + ret >= 255:
                    break
                length += ret
    else:
        for pg, sp, handler in MODESENSE_HANDLERS:
            if pg == page and sp == subpage:
                length += handler(cmd, pc, buf, length)
                break
        else:
            if page != 0x03:
                dev.log.err(f"MODE SENSE: unimplemented page/subpage: 0x{page:02x}/"
                            f"0x{subpage:02x}")
            raise sense.UNKNOWN_MODE_PAGE()
    if ten:
        buf[0:2] = (length - 2).to_bytes(2, "big")
    else:
        buf[0] = (length - 1) & 0xFF
    return bytes(buf[:length])


def emulate_modeselect(cmd: "Command") -> None:
    cdb = cmd.cdb
    ten = cdb[0] == S.MODE_SELECT_10
    off = 8 if ten else 4
    pf = bool(cdb[1] & 0x10)
    size = cmd.ctx.get("size", 0)
    if not size:
        return None
    if size < off + 2:
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    buf = cmd.data_out[:size]
    if not pf:
        raise sense.INVALID_CDB_FIELD()
    page = buf[off] & 0x3F
    subpage = buf[off + 1] if buf[off] & 0x40 else 0
    for pg, sp, handler in MODESENSE_HANDLERS:
        if pg == page and sp == subpage:
            tbuf = bytearray(SE_MODE_PAGE_BUF)
            length = handler(cmd, 0, tbuf, 0)
            break
    else:
        raise sense.UNKNOWN_MODE_PAGE()
    if size < off + length:
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    if bytes(buf[off:off + length]) != bytes(tbuf[:length]):
        raise sense.INVALID_PARAMETER_LIST()
    return None


# -- REPORT SUPPORTED OPERATION CODES -------------------------------------------------------------
SCSI_SUPPORT_NOT_SUPPORTED, SCSI_SUPPORT_FULL = 1, 3
WRITE_SAME_32_SA = 0x0D
SAI_REPORT_REFERRALS = 0x13
RCR_SA_OPERATING_PARAMETERS = 0x03
PRO_REGISTER_AND_MOVE, PRO_REPLACE_LOST_RESERVATION = 0x07, 0x08
PRI_READ_FULL_STATUS = 0x03


@dataclass
class OpcodeDescriptor:
    """target_opcode_descriptor."""

    opcode: int
    cdb_size: int
    usage_bits: bytes
    service_action: int = 0
    serv_action_valid: int = 0
    enabled: Optional[Callable[["OpcodeDescriptor", "Command"], bool]] = None
    update_usage_bits: Optional[Callable[[bytearray, "SeDevice"], None]] = None
    specific_timeout: int = 0
    nominal_timeout: int = 0
    recommended_timeout: int = 0
    extra: dict = field(default_factory=dict)


def _dpofua(bits: bytearray, dev: "SeDevice") -> None:
    if vpd.check_fua(dev):
        bits[1] |= 0x18
    else:
        bits[1] &= ~0x18 & 0xFF


def _dpofua32(bits: bytearray, dev: "SeDevice") -> None:
    if vpd.check_fua(dev):
        bits[10] |= 0x18
    else:
        bits[10] &= ~0x18 & 0xFF


def _ws_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    ops = cmd.dev.bdev.exec_ops  # the backend's exec_cmd_ops
    return bool(cmd.dev.attrib.emulate_tpws and ops.unmap) or ops.write_same


def _caw_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return bool(cmd.dev.attrib.emulate_caw)


def _rep_ref_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return bool(cmd.dev.lba_map)


def _unmap_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return cmd.dev.bdev.exec_ops.unmap and bool(cmd.dev.attrib.emulate_tpu)


def _pr_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    dev = cmd.dev
    if not dev.attrib.emulate_pr:
        return False
    if not dev.passthrough_pgr:
        return True
    if d.opcode in (S.RESERVE, S.RESERVE_10, S.RELEASE, S.RELEASE_10):
        return False
    if d.opcode == S.PERSISTENT_RESERVE_OUT and d.service_action in (
            PRO_REGISTER_AND_MOVE, PRO_REPLACE_LOST_RESERVATION):
        return False
    if d.opcode == S.PERSISTENT_RESERVE_IN and d.service_action == PRI_READ_FULL_STATUS:
        return False
    return True


def _3pc_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return bool(cmd.dev.attrib.emulate_3pc)


def _rsoc_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return bool(cmd.dev.attrib.emulate_rsoc)


def _set_tpg_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    gp = cmd.nexus.port.tg_pt_gp
    return gp is not None and bool(gp.access_type & vpd.TPGS_EXPLICIT_ALUA)


def _d(opcode, cdb_size, bits, sa=None, enabled=None, update=None) -> OpcodeDescriptor:
    assert len(bits) == cdb_size
    return OpcodeDescriptor(opcode=opcode, cdb_size=cdb_size, usage_bits=bytes(bits),
                            service_action=sa or 0, serv_action_valid=int(sa is not None),
                            enabled=enabled, update_usage_bits=update)


FF = 0xFF
_PRO = [0xFF, 0x00, 0x00, FF, FF, FF, FF, 0x00]  # PR OUT bytes 2..9
_PRI = [0x00, 0x00, 0x00, 0x00, 0x00, FF, FF, 0x00]  # PR IN bytes 2..9


def _pr_out(sa):
    return _d(S.PERSISTENT_RESERVE_OUT, 10, [S.PERSISTENT_RESERVE_OUT, sa] + _PRO, sa, _pr_enabled)


def _pr_in(sa, gated=True):
    return _d(S.PERSISTENT_RESERVE_IN, 10, [S.PERSISTENT_RESERVE_IN, sa] + _PRI, sa,
              _pr_enabled if gated else None)


#: tcm_supported_opcodes, in the kernel's order (SCSI_CONTROL_MASK and
#: SCSI_GROUP_NUMBER_MASK are both 0 in the kernel's usage bits)
SUPPORTED_OPCODES: list[OpcodeDescriptor] = [
    _d(S.READ_6, 6, [S.READ_6, 0x1F, FF, FF, FF, 0]),
    _d(S.READ_10, 10, [S.READ_10, 0xF8, FF, FF, FF, FF, 0, FF, FF, 0], update=_dpofua),
    _d(S.READ_12, 12, [S.READ_12, 0xF8] + [FF] * 8 + [0, 0], update=_dpofua),
    _d(S.READ_16, 16, [S.READ_16, 0xF8] + [FF] * 12 + [0, 0], update=_dpofua),
    _d(S.WRITE_6, 6, [S.WRITE_6, 0x1F, FF, FF, FF, 0]),
    _d(S.WRITE_10, 10, [S.WRITE_10, 0xF8, FF, FF, FF, FF, 0, FF, FF, 0], update=_dpofua),
    _d(S.WRITE_VERIFY, 10, [S.WRITE_VERIFY, 0xF0, FF, FF, FF, FF, 0, FF, FF, 0],
       update=_dpofua),
    _d(S.WRITE_12, 12, [S.WRITE_12, 0xF8] + [FF] * 8 + [0, 0], update=_dpofua),
    _d(S.WRITE_16, 16, [S.WRITE_16, 0xF8] + [FF] * 12 + [0, 0], update=_dpofua),
    _d(S.WRITE_VERIFY_16, 16, [S.WRITE_VERIFY_16, 0xF0] + [FF] * 12 + [0, 0], update=_dpofua),
    _d(S.VARIABLE_LENGTH_CMD, 32,
       [S.VARIABLE_LENGTH_CMD, 0, 0, 0, 0, 0, 0, 0x18, 0, WRITE_SAME_32_SA, 0xE8, 0]
       + [FF] * 8 + [0] * 8 + [FF] * 4, WRITE_SAME_32_SA, _ws_enabled, _dpofua32),
    _d(S.COMPARE_AND_WRITE, 16,
       [S.COMPARE_AND_WRITE, 0x18] + [FF] * 8 + [0, 0, 0, FF, 0, 0], None, _caw_enabled,
       _dpofua),
    _d(S.READ_CAPACITY, 10, [S.READ_CAPACITY, 0, FF, FF, FF, FF, 0, 0, 0x01, 0]),
    _d(S.SERVICE_ACTION_IN_16, 16,
       [S.SERVICE_ACTION_IN_16, S.SAI_READ_CAPACITY_16] + [0] * 8 + [FF] * 4 + [0, 0],
       S.SAI_READ_CAPACITY_16),
    _d(S.SERVICE_ACTION_IN_16, 16,
       [S.SERVICE_ACTION_IN_16, SAI_REPORT_REFERRALS] + [0] * 8 + [FF] * 4 + [0, 0],
       SAI_REPORT_REFERRALS, _rep_ref_enabled),
    _d(S.SYNCHRONIZE_CACHE, 10, [S.SYNCHRONIZE_CACHE, 0x02, FF, FF, FF, FF, 0, FF, FF, 0]),
    _d(S.SYNCHRONIZE_CACHE_16, 16, [S.SYNCHRONIZE_CACHE_16, 0x02] + [FF] * 12 + [0, 0]),
    _d(S.UNMAP, 10, [S.UNMAP, 0, 0, 0, 0, 0, 0, FF, FF, 0], None, _unmap_enabled),
    _d(S.WRITE_SAME, 10, [S.WRITE_SAME, 0xE8, FF, FF, FF, FF, 0, FF, FF, 0], None,
       _ws_enabled),
    _d(S.WRITE_SAME_16, 16, [S.WRITE_SAME_16, 0xE8] + [FF] * 12 + [0, 0], None, _ws_enabled),
    _d(S.VERIFY, 10, [S.VERIFY, 0, FF, FF, FF, FF, 0, FF, FF, 0]),
    _d(S.VERIFY_16, 16, [S.VERIFY_16, 0] + [FF] * 12 + [0, 0]),
    _d(S.START_STOP, 6, [S.START_STOP, 0x01, 0, 0, 0x01, 0]),
    _d(S.MODE_SELECT, 6, [S.MODE_SELECT, 0x10, 0, 0, FF, 0]),
    _d(S.MODE_SELECT_10, 10, [S.MODE_SELECT_10, 0x10, 0, 0, 0, 0, 0, FF, FF, 0]),
    _d(S.MODE_SENSE, 6, [S.MODE_SENSE, 0x08, FF, FF, FF, 0]),
    _d(S.MODE_SENSE_10, 10, [S.MODE_SENSE_10, 0x18, FF, FF, 0, 0, 0, FF, FF, 0]),
    _pr_in(0x00, gated=False),  # READ KEYS
    _pr_in(0x01, gated=False),  # READ RESERVATION
    _pr_in(0x02),  # REPORT CAPABILITIES
    _pr_in(0x03),  # READ FULL STATUS
    _pr_out(0x00),  # REGISTER
    _pr_out(0x01),  # RESERVE
    _pr_out(0x02),  # RELEASE
    _pr_out(0x03),  # CLEAR
    _pr_out(0x04),  # PREEMPT
    _pr_out(0x05),  # PREEMPT AND ABORT
    _pr_out(0x06),  # REGISTER AND IGNORE EXISTING KEY
    _pr_out(0x07),  # REGISTER AND MOVE
    _d(S.RELEASE, 6, [S.RELEASE, 0, 0, 0, 0, 0], None, _pr_enabled),
    _d(S.RELEASE_10, 10, [S.RELEASE_10, 0, 0, 0, 0, 0, 0, FF, FF, 0], None, _pr_enabled),
    _d(S.RESERVE, 6, [S.RESERVE, 0, 0, 0, 0, 0], None, _pr_enabled),
    _d(S.RESERVE_10, 10, [S.RESERVE_10, 0, 0, 0, 0, 0, 0, FF, FF, 0], None, _pr_enabled),
    _d(S.REQUEST_SENSE, 6, [S.REQUEST_SENSE, 0, 0, 0, FF, 0]),
    _d(S.INQUIRY, 6, [S.INQUIRY, 0x01, FF, FF, FF, 0]),
    _d(S.EXTENDED_COPY, 16, [S.EXTENDED_COPY] + [0] * 9 + [FF] * 4 + [0, 0], 0x00,
       _3pc_enabled),
    _d(S.RECEIVE_COPY_RESULTS, 16,
       [S.RECEIVE_COPY_RESULTS, RCR_SA_OPERATING_PARAMETERS] + [0] * 8 + [FF] * 4 + [0, 0],
       RCR_SA_OPERATING_PARAMETERS, _3pc_enabled),
    _d(S.REPORT_LUNS, 12, [S.REPORT_LUNS, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    _d(S.TEST_UNIT_READY, 6, [S.TEST_UNIT_READY, 0, 0, 0, 0, 0]),
    _d(S.MAINTENANCE_IN, 12,
       [S.MAINTENANCE_IN, 0xE0 | S.MI_REPORT_TARGET_PGS, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
       S.MI_REPORT_TARGET_PGS),
    _d(S.MAINTENANCE_IN, 12,
       [S.MAINTENANCE_IN, S.MI_REPORT_SUPPORTED_OPERATION_CODES, 0x87, FF, FF, FF, FF, FF,
        FF, FF, 0, 0], S.MI_REPORT_SUPPORTED_OPERATION_CODES, _rsoc_enabled),
    _d(S.MAINTENANCE_OUT, 12,
       [S.MAINTENANCE_OUT, S.MO_SET_TARGET_PGS, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
       S.MO_SET_TARGET_PGS, _set_tpg_enabled),
]


def _is_enabled(d: OpcodeDescriptor, cmd: "Command") -> bool:
    return d.enabled is None or d.enabled(d, cmd)


def _timeouts(ctdp: int, d: OpcodeDescriptor) -> bytes:
    if not ctdp:
        return b""
    return (bytes([0x00, 0x0A, 0x00, d.specific_timeout & 0xFF])
            + d.nominal_timeout.to_bytes(4, "big") + d.recommended_timeout.to_bytes(4, "big"))


def _rsoc_get_descr(cmd: "Command") -> Optional[OpcodeDescriptor]:
    """spc_rsoc_get_descr (REPORTING OPTIONS 1..3)."""
    cdb = cmd.cdb
    opts = cdb[2] & 0x3
    req_op, req_sa = cdb[3], _be16(cdb, 4)
    found = None
    for d in SUPPORTED_OPCODES:
        if d.opcode != req_op:
            continue
        if opts == 1:
            if d.serv_action_valid:
                raise sense.INVALID_CDB_FIELD()
            if _is_enabled(d, cmd):
                found = d
        elif opts == 2:
            if d.serv_action_valid and d.service_action == req_sa:
                if _is_enabled(d, cmd):
                    found = d
            elif not d.serv_action_valid:
                raise sense.INVALID_CDB_FIELD()
        elif opts == 3:
            if d.service_action == req_sa and _is_enabled(d, cmd):
                found = d
    return found


def emulate_report_supp_op_codes(cmd: "Command") -> bytes:
    dev, cdb = cmd.dev, cmd.cdb
    if not dev.attrib.emulate_rsoc:
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    rctd = (cdb[2] >> 7) & 0x1
    opts = cdb[2] & 0x3  # the kernel masks two bits: options 4..7 alias 0..3
    if opts == 0:
        out = bytearray(4)
        for d in SUPPORTED_OPCODES:
            if not _is_enabled(d, cmd):
                continue
            out += bytes([d.opcode, 0]) + d.service_action.to_bytes(2, "big")
            out += bytes([0, (rctd << 1) | d.serv_action_valid])
            out += d.cdb_size.to_bytes(2, "big") + _timeouts(rctd, d)
        out[0:4] = (len(out) - 4).to_bytes(4, "big")
        return bytes(out)
    d = _rsoc_get_descr(cmd)
    if d is None:
        return bytes([0, (rctd << 7) | SCSI_SUPPORT_NOT_SUPPORTED])
    bits = bytearray(d.usage_bits)
    if d.update_usage_bits is not None:
        d.update_usage_bits(bits, dev)
    return (bytes([0, (rctd << 7) | SCSI_SUPPORT_FULL]) + d.cdb_size.to_bytes(2, "big")
            + bytes(bits) + _timeouts(rctd, d))
