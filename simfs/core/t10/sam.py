"""SAM-5: the eight-byte LUN format as Linux reads and writes it."""

from __future__ import annotations


def int_to_scsilun(lun: int) -> bytes:
    """int_to_scsilun: 2-byte levels, lowest first; no addressing-method bits are added."""
    out = bytearray(8)
    for i in range(0, 8, 2):
        out[i] = (lun >> 8) & 0xFF
        out[i + 1] = lun & 0xFF
        lun >>= 16
    return bytes(out)


def scsilun_to_int(b: bytes) -> int:
    """scsilun_to_int: the inverse of :func:`int_to_scsilun` (address method bits kept)."""
    return (((b[0] << 8) | b[1]) | (((b[2] << 8) | b[3]) << 16)
            | (((b[4] << 8) | b[5]) << 32) | (((b[6] << 8) | b[7]) << 48))
