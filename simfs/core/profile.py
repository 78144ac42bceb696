"""The names the code used before the version table: a profile *is* a :class:`Kernel`.

``modern`` is an alias of the newest tracked kernel, ``v3.0`` the seed's engine; every
version lives in :mod:`simfs.core.kernels`.
"""

from __future__ import annotations

from simfs.core.kernels import KERNELS, LEGACY, NEWEST, Kernel, get

Profile = Kernel
MODERN = KERNELS[NEWEST]
V3_0 = KERNELS[LEGACY]


def get_profile(name: str) -> Kernel:
    """The kernel called ``name`` (``modern``, ``v3.0``, ``6.1`` ...)."""
    return get(name)


__all__ = ["MODERN", "V3_0", "Profile", "get_profile"]
