"""PERSISTENT RESERVE IN: READ KEYS, READ RESERVATION, REPORT CAPABILITIES and READ FULL
STATUS, as core_scsi3_emulate_pr_in answers them."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from simfs.scsi import sense
from simfs.scsi.command import DATA_IN
from simfs.scsi.pr import (ALL_REG, note_nexus, PRI_READ_FULL_STATUS, PRI_READ_KEYS,
                           PRI_READ_RESERVATION, PRI_REPORT_CAPABILITIES, _require_pr,
                           _spc2_held_conflict)
from simfs.scsi.transport_id import (transport_id, transport_id_len)

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command


def parse_pr_in(cmd: "Command") -> None:
    """PERSISTENT RESERVE IN: set ``cmd.execute`` or raise SenseError."""
    _require_pr(cmd, 10)
    cmd.direction = DATA_IN
    cmd.alloc_len = struct.unpack(">H", cmd.cdb[7:9])[0]
    cmd.execute = _execute_pr_in


def _execute_pr_in(cmd: "Command") -> bytes:
    """target_scsi3_emulate_pr_in."""
    dev, log = cmd.dev, cmd.dev.log
    note_nexus(dev, cmd.nexus)
    _spc2_held_conflict(cmd)
    sa = cmd.cdb[1] & 0x1F
    n = cmd.alloc_len or 0
    handlers = {PRI_READ_KEYS: _read_keys, PRI_READ_RESERVATION: _read_reservation,
                PRI_REPORT_CAPABILITIES: _report_capabilities,
                PRI_READ_FULL_STATUS: _read_full_status}
    if sa not in handlers:
        log.err(f"Unknown PERSISTENT_RESERVE_IN service action: 0x{sa:02x}")
        raise sense.INVALID_CDB_FIELD()
    return handlers[sa](dev, n)


def _read_keys(dev: "SeDevice", n: int) -> bytes:
    if n < 8:
        dev.log.err(f"PRIN SA READ_KEYS SCSI Data Length: {n} too small")
        raise sense.INVALID_CDB_FIELD()
    keys = b"".join(struct.pack(">Q", r.key) for r in dev.pr.registrations)
    return struct.pack(">II", dev.pr.generation, len(keys)) + keys


def _read_reservation(dev: "SeDevice", n: int) -> bytes:
    if n < 8:
        dev.log.err(f"PRIN SA READ_RESERVATIONS SCSI Data Length: {n} too small")
        raise sense.INVALID_CDB_FIELD()
    h = dev.pr.holder
    if h is None:
        return struct.pack(">II", dev.pr.generation, 0)
    head = struct.pack(">II", dev.pr.generation, 16)
    if n < 22:
        return head + bytes(16)
    key = 0 if h.res_type in ALL_REG else h.key
    body = bytearray(16)
    body[0:8] = struct.pack(">Q", key)
    body[13] = (h.res_scope & 0xF0) | (h.res_type & 0x0F)
    return head + bytes(body)


def _report_capabilities(dev: "SeDevice", n: int) -> bytes:
    if n < 6:
        dev.log.err(f"PRIN SA REPORT_CAPABILITIES SCSI Data Length: {n} too small")
        raise sense.INVALID_CDB_FIELD()
    buf = bytearray(8)
    buf[0:2] = struct.pack(">H", 8)
    buf[2] = 0x10 | 0x08 | 0x04 | 0x01  # CRH, SIP_C, ATP_C, PTPL_C
    buf[3] = 0x80 | 0x10 | (0x01 if dev.pr.aptpl_active else 0)  # TMV, ALLOW COMMANDS 001b
    buf[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02  # EX_AC_RO..., see SPC-4 table 167
    buf[5] = 0x01  # EX_AC_AR
    return bytes(buf)


def _read_full_status(dev: "SeDevice", n: int) -> bytes:
    if n < 8:
        dev.log.err(f"PRIN SA READ_FULL_STATUS SCSI Data Length: {n} too small")
        raise sense.INVALID_CDB_FIELD()
    h = dev.pr.holder
    all_reg = h is not None and h.res_type in ALL_REG
    out = bytearray()
    add_len = 0
    for r in dev.pr.registrations:
        exp = transport_id_len(r)
        if exp < 0 or exp + add_len > n:
            dev.log.warn(f"SPC-3 PRIN READ_FULL_STATUS ran out of buffer: {n}")
            break
        tid = transport_id(r)
        if tid is None:
            break
        d = bytearray(24)
        d[0:8] = struct.pack(">Q", r.key)
        if r.all_tg_pt:
            d[12] = 0x02
        if r.res_holder:
            d[12] |= 0x01
            d[13] = (r.res_scope & 0xF0) | (r.res_type & 0x0F)
        elif all_reg:
            d[12] |= 0x01
            d[13] = (h.res_scope & 0xF0) | (h.res_type & 0x0F)
        if not r.all_tg_pt:
            d[18:20] = struct.pack(">H", r.rtpi & 0xFFFF)
        d[20:24] = struct.pack(">I", len(tid))
        out += d + tid
        add_len += 24 + len(tid)
    return struct.pack(">II", dev.pr.generation, add_len) + bytes(out)
