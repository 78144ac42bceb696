"""Residual counts of a SCSI Response or the last Data-In (target_cmd_size_check and
target_complete_cmd_with_length), and the transfer length a CDB asks for."""

from __future__ import annotations

from typing import Callable, Optional

from simfs.iscsi import pdu as P

GOOD = 0x00


def residuals(read: bool, write: bool, edtl: int, n: int, status: int,
              size: Callable[[], Optional[int]]) -> tuple[int, int, int]:
    """A response's residual, as target_cmd_size_check and target_complete_cmd_with_length
    make it: (RSP_OVERFLOW/RSP_UNDERFLOW flags, residual count, bytes of the ``n`` data-in
    bytes to send). ``edtl`` is the initiator's Expected Data Transfer Length, ``size()``
    the transfer length the CDB asks for (None when unknown)."""
    if read or (not write and n):
        if read and n and status == GOOD:
            cdb_size = size()
            if cdb_size is not None and cdb_size > edtl:
                # OVERFLOW by the CDB's size, data_length stays EDTL; the residual then
                # becomes what is left of EDTL, the OVERFLOW flag winning in the response
                return P.RSP_OVERFLOW, (edtl - n if n < edtl else cdb_size - edtl), \
                    min(n, edtl)
            if n > edtl:
                return P.RSP_OVERFLOW, n - edtl, edtl
            if n < edtl:
                return P.RSP_UNDERFLOW, edtl - n, n
            return 0, 0, n
        if n and status == GOOD and not read:
            return P.RSP_OVERFLOW, n, 0  # data-in for a command given no buffer
        if read and edtl and status == GOOD:
            return P.RSP_UNDERFLOW, edtl, 0
        return 0, 0, 0
    if write:
        exp = size()
        if exp is not None and exp > edtl:
            return P.RSP_OVERFLOW, exp - edtl, 0
        if exp is not None and exp < edtl:
            return P.RSP_UNDERFLOW, edtl - exp, 0
    elif edtl == 0:
        exp = size()
        if exp:
            return P.RSP_OVERFLOW, exp, 0
    return 0, 0, 0


def _be(b: bytes, off: int, n: int) -> int:
    return int.from_bytes(b[off:off + n], "big")


#: data-out CDBs whose length is a parameter list length in the CDB: opcode -> (offset, size)
_PARAM_LIST = {0x15: (4, 1), 0x55: (7, 2), 0x3B: (6, 3), 0x42: (7, 2), 0x5F: (5, 4),
               0x83: (10, 4), 0xA4: (6, 4), 0x8F: None}


def cdb_out_length(cdb: bytes) -> Optional[int]:
    """The data-out length a control CDB asks for (residual reporting), None if unknown."""
    op = cdb[0]
    spec = _PARAM_LIST.get(op)
    if spec is None:
        return None
    off, size = spec
    if len(cdb) < off + size:
        return None
    return _be(cdb, off, size)


_ALLOC_LEN = {0x12: (3, 2), 0x1A: (4, 1), 0x5A: (7, 2), 0x03: (4, 1), 0xA0: (6, 4),
              0x25: None, 0x4D: (7, 2), 0x5E: (7, 2), 0x37: (7, 2), 0xB7: (6, 4)}


def cdb_in_length(cdb: bytes) -> Optional[int]:
    op = cdb[0]
    if op == 0x25:
        return 8
    if op == 0x9E and len(cdb) >= 14 and (cdb[1] & 0x1F) == 0x10:
        return _be(cdb, 10, 4)
    spec = _ALLOC_LEN.get(op)
    if spec is None:
        return None
    off, size = spec
    return _be(cdb, off, size) if len(cdb) >= off + size else None


def cdb_blocks(cdb: bytes) -> Optional[int]:
    """Blocks moved by a READ/WRITE/WRITE AND VERIFY/WRITE SAME/COMPARE AND WRITE CDB."""
    op = cdb[0]
    if op in (0x08, 0x0A):
        n = cdb[4] if len(cdb) > 4 else 0
        return n or 256
    if op in (0x28, 0x2A, 0x2E) and len(cdb) >= 10:
        return _be(cdb, 7, 2)
    if op in (0xA8, 0xAA, 0xAE) and len(cdb) >= 12:
        return _be(cdb, 6, 4)
    if op in (0x88, 0x8A, 0x8E) and len(cdb) >= 16:
        return _be(cdb, 10, 4)
    if op in (0x41, 0x93):
        return 1
    if op == 0x89 and len(cdb) >= 14:
        return 2 * cdb[13]
    # sbc_parse_cdb: VERIFY(10/16) and SYNCHRONIZE CACHE(10/16) take sectors * block size
    if op in (0x2F, 0x35) and len(cdb) >= 10:
        return _be(cdb, 7, 2)
    if op in (0x8F, 0x91) and len(cdb) >= 16:
        return _be(cdb, 10, 4)
    return None
