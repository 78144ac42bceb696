"""SCSI TransportIDs (SPC-4 7.6.4): how PR IN READ FULL STATUS names an initiator and how
PR OUT SPEC_I_PT / REGISTER AND MOVE name one (the kernel's target_core_fabric_lib.c).

The functions take a registration-like object with ``proto_id``, ``initiator`` (the ACL
name) and ``isid`` (None, or the iSCSI session id as 12 hex digits).
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from simfs.scsi import status as S

Registration = Any  # duck-typed: see the module docstring


def _hex2bin(text: str, count: int) -> Optional[bytes]:
    chunk = text[:2 * count]
    if len(chunk) < 2 * count:
        return None
    try:
        return bytes.fromhex(chunk)
    except ValueError:
        return None


def transport_id_len(reg: Registration) -> int:
    """target_get_pr_transport_id_len (-1 for an unknown protocol)."""
    if reg.proto_id == S.PROTO_ISCSI:
        n = len(reg.initiator.encode()) + 1
        if reg.isid is not None:
            n += 5 + len(reg.isid)
        return n + ((-n) & 3) + 4
    if reg.proto_id in (S.PROTO_FCP, S.PROTO_1394, S.PROTO_SRP, S.PROTO_SAS):
        return 24
    return -1


def transport_id(reg: Registration) -> Optional[bytes]:
    """target_get_pr_transport_id: the initiator's TransportID, or None when the kernel
    fails (unknown protocol, a name that is not hex where the format needs hex)."""
    name = reg.initiator
    if reg.proto_id == S.PROTO_ISCSI:
        body = name.encode()
        fmt = 0
        if reg.isid is not None:
            fmt = 0x40
            body += b",i,0x" + reg.isid.encode()
        body += b"\0"
        body += bytes((-len(body)) & 3)
        return bytes([S.PROTO_ISCSI | fmt, 0]) + struct.pack(">H", len(body)) + body
    buf = bytearray(24)
    buf[0] = reg.proto_id
    if reg.proto_id == S.PROTO_SAS:
        b = _hex2bin(name[4:], 8)  # skip "naa."
        if b is None:
            return None
        buf[4:12] = b
    elif reg.proto_id == S.PROTO_FCP:
        off, i = 8, 0
        while i < 23:
            if name[i:i + 1] == ":":
                i += 1
                continue
            b = _hex2bin(name[i:], 1)
            if b is None:
                return None
            buf[off] = b[0]
            off += 1
            i += 2
    elif reg.proto_id == S.PROTO_1394:
        b = _hex2bin(name, 8)
        if b is None:
            return None
        buf[8:16] = b
    elif reg.proto_id == S.PROTO_SRP:
        p = name[2:] if name[:2].lower() == "0x" else name
        if len(p) % 2:
            return None
        count = min(len(p) // 2, 16)
        b = _hex2bin(p, count)
        if b is None:
            return None
        buf[8 + 16 - count:24] = b
    else:
        return None
    return bytes(buf)


def parse_transport_id(proto_id: int, buf: bytes) -> Optional[tuple[str, Optional[str], int]]:
    """target_parse_pr_out_transport_id for a port of protocol ``proto_id``:
    (initiator string, ISID or None, TransportID length) or None."""
    def cstring(b: bytes) -> str:
        return b.split(b"\0", 1)[0].decode("latin-1")
    if proto_id == S.PROTO_ISCSI:
        if len(buf) < 4:
            return None
        fmt = buf[0] & 0xC0
        if fmt not in (0x00, 0x40):
            return None
        tid_len = struct.unpack(">H", buf[2:4])[0] + 4
        text = cstring(buf[4:])
        if fmt == 0x40:
            pos = text.find(",i,0x")
            if pos < 0:
                return None
            return text[:pos], text[pos + 5:pos + 5 + 12].lower(), tid_len
        return text, None, tid_len
    if proto_id == S.PROTO_SAS:
        return cstring(buf[4:]), None, 24
    if proto_id in (S.PROTO_1394, S.PROTO_SRP, S.PROTO_FCP):
        return cstring(buf[8:]), None, 24
    return None
