"""The package list in pyproject.toml names every package of the checkout, and the
shipped plugins are declared through the same entry points as anyone else's."""
from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def checkout_packages() -> set[str]:
    found = set()
    for top, name in (("simfs", "simfs"), ("plugins", "simfs_plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def test_every_package_is_listed():
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == checkout_packages()


def test_shipped_plugins_are_entry_points():
    declared = {g: set(v) for g, v in PYPROJECT["project"]["entry-points"].items()}
    modules = {p.stem for p in (ROOT / "plugins" / "backends").glob("*.py")} - {"__init__"}
    assert modules <= declared["simfs.backends"]
    modules = {p.stem for p in (ROOT / "plugins" / "fabrics").glob("*.py")} - {"__init__"}
    assert modules <= declared["simfs.fabrics"]


def test_installed_entry_points_load():
    """What discovery sees in this installation: every shipped plugin, by its kernel name."""
    from simfs.core.backend import Backend
    from simfs.core.fabric import FabricOps
    from simfs.core.registry import discover_plugins

    backends = {b.name for b in discover_plugins("simfs.backends", Backend)}
    assert {"fileio", "iblock", "pscsi", "rd_mcp", "user"} <= backends
    fabrics = {f.name for f in discover_plugins("simfs.fabrics", FabricOps)}
    assert {"iscsi", "loopback"} <= fabrics
    assert all(ep.value.startswith("simfs_plugins.") for ep in entry_points(group="simfs.fabrics")
               if ep.name in ("iscsi", "loopback"))
