"""Discovery and registration of backend plugins.

The core does not import plugins by name: it loads what the installed packages declare
under the ``simfs.backends`` and ``simfs.fabrics`` entry points (simfs's own plugins
included), and logs each registration the way the kernel does.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Iterable

from simfs.core.backend import Backend


def _shipped_first(ep) -> tuple[bool, str]:
    return (not ep.value.startswith("simfs_plugins."), ep.value)


def discover_plugins(group: str, kind: type) -> list:
    """Every plugin of ``kind`` declared under the entry point ``group``.

    simfs's own plugins (the ``simfs_plugins`` package) are declared there too, in
    pyproject.toml, so a plugin installed from another package is found the same way. A
    plugin that fails to load is skipped: one broken package must not break the tree. A
    plugin may be an instance or a class (instantiated with no arguments). simfs's own
    plugins come first, in name order (the order their kernel modules' names sort in), so
    a plugin from elsewhere cannot replace a shipped one of the same name.
    """
    found: dict[str, object] = {}
    for ep in sorted(entry_points(group=group), key=_shipped_first):
        try:
            plugin = ep.load()
            if isinstance(plugin, type):
                plugin = plugin()
        except Exception:  # noqa: BLE001 - a broken plugin must not break the tree
            continue
        if isinstance(plugin, kind):
            found.setdefault(plugin.name, plugin)
    return list(found.values())


def discover_backends() -> list[Backend]:
    """Every backend plugin available to this installation (``simfs.backends``)."""
    return discover_plugins("simfs.backends", Backend)


class BackendRegistry:
    """The backends one instance has registered (``transport_backend_register``)."""

    def __init__(self, backends: Iterable[Backend], profile, log):
        self.profile = profile
        self.log = log
        self.backends: dict[str, Backend] = {}
        usable = [b for b in backends if profile.family in b.profiles]
        if profile.legacy:
            # The v3.0 engine registered its plugins in hba_type order.
            usable.sort(key=lambda b: b.v3_hba_type)
            log.info("SE_PC[0] - Registered Plugin Class: TRANSPORT")
        for backend in usable:
            self.backends[backend.name] = backend
            if profile.legacy:
                log.info(f"PLUGIN_TRANSPORT[{backend.v3_hba_type}] - {backend.name} registered")
        if profile.legacy:
            log.info("SE_PC[1] - Registered Plugin Class: OBJ")
            log.info("PLUGIN_OBJ[1] - dev registered")

    def _registered(self, backend: Backend) -> None:
        """transport_backend_register's line (modern kernels)."""
        self.log.debug(f"TCM: Registered subsystem plugin: {backend.name} struct module: "
                       f"{self.profile.kptr(backend)}")

    def register_builtin(self) -> None:
        """The backends target_core_mod registers itself (rd_module_init: rd_mcp), and
        those from outside the kernel, at the core's init."""
        if not self.profile.legacy:
            for backend in self.backends.values():
                if not backend.kernel_module:
                    self._registered(backend)

    def modules_loaded(self, modules: Iterable[str]) -> None:
        """Backend modules just loaded register, in the order they loaded."""
        if self.profile.legacy:
            return
        for module in modules:
            for backend in self.backends.values():
                if backend.kernel_module == module:
                    self._registered(backend)

    def get(self, name: str) -> Backend | None:
        return self.backends.get(name)
