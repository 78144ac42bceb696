"""CDB builders and response decoders for the commands simfs's tools send.

Sans-I/O and independent of the engine: the ``simfs scsi`` CLI and tests use them, and so
can anything that wants to speak SCSI to a simfs device.
"""

from __future__ import annotations

import struct
from typing import Optional

from simfs.core.t10 import spc as t10
from simfs.scsi import status as S


def inquiry(vpd: Optional[int] = None, alloc: int = 0xFFFF) -> bytes:
    if vpd is None:
        return struct.pack(">BBBHB", S.INQUIRY, 0, 0, alloc, 0)
    return struct.pack(">BBBHB", S.INQUIRY, 1, vpd, alloc, 0)


def test_unit_ready() -> bytes:
    return bytes(6)


def request_sense(alloc: int = 252, desc: bool = False) -> bytes:
    return bytes([S.REQUEST_SENSE, int(desc), 0, 0, alloc, 0])


def report_luns(alloc: int = 4096) -> bytes:
    return struct.pack(">BBBxxxIBB", S.REPORT_LUNS, 0, 0, alloc, 0, 0)


def read_capacity_10() -> bytes:
    return bytes([S.READ_CAPACITY]) + bytes(9)


def read_capacity_16(alloc: int = 32) -> bytes:
    return struct.pack(">BBQIBB", S.SERVICE_ACTION_IN_16, S.SAI_READ_CAPACITY_16, 0, alloc, 0, 0)


def read_16(lba: int, blocks: int, fua: bool = False) -> bytes:
    return struct.pack(">BBQIBB", S.READ_16, 0x08 if fua else 0, lba, blocks, 0, 0)


def write_16(lba: int, blocks: int, fua: bool = False) -> bytes:
    return struct.pack(">BBQIBB", S.WRITE_16, 0x08 if fua else 0, lba, blocks, 0, 0)


def synchronize_cache_16(lba: int = 0, blocks: int = 0) -> bytes:
    return struct.pack(">BBQIBB", S.SYNCHRONIZE_CACHE_16, 0, lba, blocks, 0, 0)


def mode_sense_10(page: int, subpage: int = 0, pc: int = 0, dbd: bool = True,
                  alloc: int = 0xFFFF) -> bytes:
    return struct.pack(">BBBBxxxHB", S.MODE_SENSE_10, 0x08 if dbd else 0,
                       (pc << 6) | page, subpage, alloc, 0)


def pr_in(sa: int, alloc: int = 8192) -> bytes:
    return struct.pack(">BBxxxxxHB", S.PERSISTENT_RESERVE_IN, sa, alloc, 0)


PR_IN_SA = {"read-keys": 0, "read-reservation": 1, "report-capabilities": 2,
            "read-full-status": 3}
PR_OUT_SA = {"register": 0, "reserve": 1, "release": 2, "clear": 3, "preempt": 4,
             "preempt-abort": 5, "register-ignore": 6, "register-move": 7}
PR_TYPES = t10.PR_TYPE_NAMES


def pr_out(sa: int, key: int = 0, sa_key: int = 0, pr_type: int = 0, scope: int = 0,
           aptpl: bool = False, all_tg_pt: bool = False, spec_i_pt: bool = False,
           extra: bytes = b"") -> tuple[bytes, bytes]:
    """(CDB, parameter list) for PERSISTENT RESERVE OUT (basic 24-byte form + extra)."""
    flags = (0x08 if spec_i_pt else 0) | (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    params = struct.pack(">QQIBxH", key, sa_key, 0, flags, 0) + extra
    cdb = struct.pack(">BBBxxIB", S.PERSISTENT_RESERVE_OUT, sa, (scope << 4) | pr_type,
                      len(params), 0)
    return cdb, params


def report_target_port_groups(alloc: int = 4096, extended: bool = False) -> bytes:
    return struct.pack(">BBxxxxIxB", S.MAINTENANCE_IN,
                       (0x20 if extended else 0) | S.MI_REPORT_TARGET_PGS, alloc, 0)


def set_target_port_groups(descs: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    """descs: (state, group id or RTPI) pairs."""
    params = bytes(4) + b"".join(struct.pack(">BxH", st, gid) for st, gid in descs)
    cdb = struct.pack(">BBxxxxIxB", S.MAINTENANCE_OUT, S.MO_SET_TARGET_PGS, len(params), 0)
    return cdb, params


# -- decoders -----------------------------------------------------------------------------
SENSE_KEYS = t10.SENSE_KEY_NAMES
ASC_NAMES = t10.ASC_NAMES
STATUS_NAMES = {S.GOOD: "GOOD", S.CHECK_CONDITION: "CHECK CONDITION", S.BUSY: "BUSY",
                S.RESERVATION_CONFLICT: "RESERVATION CONFLICT",
                S.TASK_SET_FULL: "TASK SET FULL"}


def decode_sense(sense: bytes) -> str:
    if not sense:
        return ""
    if sense[0] & 0x7F in (0x72, 0x73):
        key, asc, ascq = sense[1] & 0xF, sense[2], sense[3]
    else:
        key, asc, ascq = sense[2] & 0xF, sense[12], sense[13]
    name = ASC_NAMES.get((asc, ascq), f"ASC 0x{asc:02x} ASCQ 0x{ascq:02x}")
    return f"{SENSE_KEYS[key]}: {name} ({key:x}/{asc:02x}h/{ascq:02x}h)"


def decode_inquiry(data: bytes) -> list[str]:
    if len(data) < 36:
        return [f"short INQUIRY data ({len(data)} bytes)"]
    tpgs = (data[5] >> 4) & 3
    return [f"Peripheral device type: 0x{data[0] & 0x1F:02x}",
            f"Version: 0x{data[2]:02x}  Response data format: {data[3] & 0xF}",
            f"TPGS: {tpgs} ({['none', 'implicit', 'explicit', 'implicit and explicit'][tpgs]})"
            f"  3PC: {(data[5] >> 3) & 1}  MULTIP: {(data[6] >> 4) & 1}"
            f"  CmdQue: {(data[7] >> 1) & 1}",
            f"Vendor: {data[8:16].decode('ascii', 'replace')!r}",
            f"Product: {data[16:32].decode('ascii', 'replace')!r}",
            f"Revision: {data[32:36].decode('ascii', 'replace')!r}"]


DESIGNATOR_TYPES = {0: "vendor specific", 1: "T10 vendor ID", 2: "EUI-64", 3: "NAA",
                    4: "relative target port", 5: "target port group", 6: "logical unit group",
                    7: "MD5 logical unit", 8: "SCSI name string"}
ASSOCIATIONS = {0: "logical unit", 1: "target port", 2: "target device"}


def decode_vpd(data: bytes) -> list[str]:
    if len(data) < 4:
        return [f"short VPD data ({len(data)} bytes)"]
    page, length = data[1], struct.unpack(">H", data[2:4])[0]
    body = data[4:4 + length]
    out = [f"VPD page 0x{page:02x}, length {length}"]
    if page == 0x00:
        out.append("Supported pages: " + " ".join(f"0x{p:02x}" for p in body))
    elif page == 0x80:
        out.append(f"Unit serial number: {body.rstrip(bytes(1)).decode('ascii', 'replace')}")
    elif page == 0x83:
        pos = 0
        while pos + 4 <= len(body):
            code_set, piv_assoc_type, dlen = body[pos] & 0xF, body[pos + 1], body[pos + 3]
            d = body[pos + 4:pos + 4 + dlen]
            kind = DESIGNATOR_TYPES.get(piv_assoc_type & 0xF, f"type {piv_assoc_type & 0xF}")
            assoc = ASSOCIATIONS.get((piv_assoc_type >> 4) & 3, "?")
            if piv_assoc_type & 0xF == 3:
                value = "0x" + d.hex()
            elif piv_assoc_type & 0xF in (4, 5, 6):
                value = str(struct.unpack(">H", d[2:4])[0]) if len(d) >= 4 else d.hex()
            elif code_set in (2, 3):
                value = d.rstrip(bytes(1)).decode("utf-8", "replace")
            else:
                value = d.hex()
            out.append(f"  {assoc}: {kind}: {value}")
            pos += 4 + dlen
    else:
        out.append(body.hex())
    return out


def decode_read_capacity_16(data: bytes) -> list[str]:
    last, bs = struct.unpack(">QI", data[:12])
    return [f"Last LBA: {last}  Block size: {bs}  Capacity: {(last + 1) * bs} bytes",
            f"LBPME: {(data[14] >> 7) & 1}  LBPRZ: {(data[14] >> 6) & 1}"]


def decode_pr_in(sa: int, data: bytes) -> list[str]:
    if sa == 2:
        caps = data[2:4]
        return [f"Report capabilities: CRH {caps[0] >> 4 & 1} SIP_C {caps[0] >> 3 & 1} "
                f"ATP_C {caps[0] >> 2 & 1} PTPL_C {caps[0] & 1} TMV {caps[1] >> 7} "
                f"PTPL_A {caps[1] & 1}", f"Type mask: {data[4:6].hex()}"]
    gen, length = struct.unpack(">II", data[:8])
    out = [f"PR generation: 0x{gen:x}"]
    body = data[8:8 + length]
    if sa == 0:
        keys = [struct.unpack(">Q", body[i:i + 8])[0] for i in range(0, len(body), 8)]
        out.append(f"Registered keys: {len(keys)}")
        out += [f"  0x{k:x}" for k in keys]
    elif sa == 1:
        if not body:
            out.append("No reservation")
        else:
            key = struct.unpack(">Q", body[:8])[0]
            t = body[13] & 0xF
            out.append(f"Reservation: key 0x{key:x}  scope {body[13] >> 4}  type {t} "
                       f"({PR_TYPES.get(t, '?')})")
    elif sa == 3:
        pos = 0
        while pos + 24 <= len(body):
            key = struct.unpack(">Q", body[pos:pos + 8])[0]
            flags, st = body[pos + 12], body[pos + 13]
            rtpi = struct.unpack(">H", body[pos + 18:pos + 20])[0]
            tlen = struct.unpack(">I", body[pos + 20:pos + 24])[0]
            tid = body[pos + 24:pos + 24 + tlen]
            name = tid[4:].rstrip(bytes(1)).decode("utf-8", "replace") if tlen > 4 else ""
            out.append(f"  key 0x{key:x}  all_tg_pt {flags >> 1 & 1}  holder {flags & 1}"
                       + (f" type {st & 0xF}" if flags & 1 else "")
                       + f"  rtpi {rtpi}  initiator {name or tid.hex()}")
            pos += 24 + tlen
    return out


ALUA_STATES = t10.ALUA_STATE_NAMES


def decode_rtpg(data: bytes) -> list[str]:
    length = struct.unpack(">I", data[:4])[0]
    pos, end, out = 4, 4 + length, []
    if len(data) > 4 and data[4] & 0x70 == 0x10:
        out.append(f"Extended header: implicit transition time {data[5]} s")
        pos = 8
    while pos + 8 <= min(end, len(data)):
        st, sup = data[pos], data[pos + 1]
        gid = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        status, count = data[pos + 5], data[pos + 7]
        rtpis = [struct.unpack(">H", data[pos + 8 + 4 * i + 2:pos + 8 + 4 * i + 4])[0]
                 for i in range(count)]
        out.append(f"Target port group {gid}: {ALUA_STATES.get(st & 0xF, st & 0xF)}"
                   f"{' (preferred)' if st & 0x80 else ''}  supported 0x{sup:02x}  "
                   f"status {status}  ports {rtpis}")
        pos += 8 + 4 * count
    return out
