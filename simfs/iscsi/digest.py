"""CRC32C (Castagnoli) header and data digests, as iSCSI sends them (little-endian).

Uses ``google-crc32c`` (hardware-accelerated C extension) when importable; a table-driven
fallback keeps the server working, slowly, without it.
"""

from __future__ import annotations

try:  # pragma: no cover - which branch runs depends on the machine
    import google_crc32c as _g

    def crc32c(data, crc: int = 0) -> int:
        """CRC32C of ``data`` (bytes-like), continuing from ``crc``."""
        return _g.extend(crc, data if type(data) is bytes else bytes(data))

    IMPLEMENTATION = f"google-crc32c ({_g.implementation})"
except ImportError:  # pragma: no cover
    _TABLE = []
    for _i in range(256):
        _c = _i
        for _ in range(8):
            _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
        _TABLE.append(_c)

    def crc32c(data, crc: int = 0) -> int:
        crc ^= 0xFFFFFFFF
        t = _TABLE
        for b in bytes(data):
            crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

    IMPLEMENTATION = "python table"


def digest(*parts) -> bytes:
    """The 4 digest bytes over the concatenation of ``parts``."""
    crc = 0
    for p in parts:
        if p:
            crc = crc32c(p, crc)
    return crc.to_bytes(4, "little")
