"""Discovery and registration of backend plugins.

The core does not import plugins by name: it loads every module of
``simfs.plugins.backends`` and everything other packages declare under the
``simfs.backends`` entry point, and logs each registration the way the kernel does.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Iterable

from .backend import Backend


def discover_backends() -> list[Backend]:
    """Every backend plugin available to this installation."""
    from ..plugins import backends as pkg

    found: dict[str, Backend] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found.setdefault(backend.name, backend)
    for ep in entry_points(group="simfs.backends"):
        backend = ep.load()
        if isinstance(backend, type):
            backend = backend()
        if isinstance(backend, Backend):
            found.setdefault(backend.name, backend)
    return list(found.values())


class BackendRegistry:
    """The backends one instance has registered (``transport_backend_register``)."""

    def __init__(self, backends: Iterable[Backend], profile, log):
        self.profile = profile
        self.backends: dict[str, Backend] = {}
        usable = [b for b in backends if profile.name in b.profiles]
        if profile.legacy:
            # The v3.0 engine registered its plugins in hba_type order.
            usable.sort(key=lambda b: b.v3_hba_type)
            log.info("SE_PC[0] - Registered Plugin Class: TRANSPORT")
        for backend in usable:
            self.backends[backend.name] = backend
            if profile.legacy:
                log.info(f"PLUGIN_TRANSPORT[{backend.v3_hba_type}] - {backend.name} registered")
            else:
                log.debug(f"TCM: Registered subsystem plugin: {backend.name} struct module: "
                          f"{profile.kptr(backend)}")
        if profile.legacy:
            log.info("SE_PC[1] - Registered Plugin Class: OBJ")
            log.info("PLUGIN_OBJ[1] - dev registered")

    def get(self, name: str) -> Backend | None:
        return self.backends.get(name)
