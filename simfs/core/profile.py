"""Which kernel simfs plays: the modern one (default) or the seed's v3.0 engine."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """The version strings and tree shape of one generation of the target engine."""

    name: str
    #: True for the 2009 v3.0 tree (fd attribute, global tg_pt_gps, write-only enable ...).
    legacy: bool
    #: TARGET_CORE_VERSION as hba_info and HBA banners print it.
    core_version: str
    #: The version in target/version and the module-load line.
    engine_version: str
    #: The fabric infrastructure version in the module-load line.
    fabric_version: str

    def kptr(self, obj: object) -> str:
        """A kernel pointer as %p prints it: hashed 64-bit today, raw 32-bit (i686) in v3.0."""
        h = zlib.crc32(id(obj).to_bytes(8, "little"))
        if self.legacy:
            return f"{0xc0000000 | (h & 0x3ffffff0):08x}"
        return f"{h:016x}"

    def uname(self) -> tuple[str, str, str]:
        u = os.uname()
        return u.sysname, u.machine, u.release


MODERN = Profile("modern", False, "v5.0", "v5.0", "v5.0")
V3_0 = Profile("v3.0", True, "v3.0", "v3.0.0", "v1.0.0")

PROFILES = {"modern": MODERN, "v5.0": MODERN, "v3.0": V3_0}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (choose modern or v3.0)") from None
