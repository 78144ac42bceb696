"""The layers import only downwards: configfs model <- core <- SCSI engine <- (iSCSI
protocol, plugins) <- daemon <- CLI. Every import counts, function-level ones included,
since a lazy import is still a dependency."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: module prefix -> rank; a module may import only modules of its rank or below
RANKS = [
    ("simfs.klog", 0),
    ("simfs.configfs", 0),
    ("simfs.core", 1),
    ("simfs.scsi", 2),
    ("simfs.iscsi", 3),
    ("simfs_plugins", 3),
    ("simfs.daemon", 4),
    ("simfs.cli", 5),
    ("simfs.testing", 5),
    ("simfs.pytest_plugin", 5),
    ("simfs.__main__", 5),
    ("simfs", 0),  # the package itself: __version__
]


def rank(module: str) -> int | None:
    for prefix, r in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return r
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "plugins":
        parts[0] = "simfs_plugins"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
    return found


def sources() -> list[Path]:
    return sorted(list((ROOT / "simfs").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py")))


def test_every_module_has_a_layer():
    assert [module_name(p) for p in sources() if rank(module_name(p)) is None] == []


#: upward imports still to be removed; the list may only shrink: an entry that no longer
#: exists fails the test too
KNOWN_UPWARD: set[str] = set()


def test_no_upward_import():
    upward = set()
    for path in sources():
        name = module_name(path)
        mine = rank(name)
        for line, mod in imports_of(path, name):
            theirs = rank(mod)
            if theirs is not None and theirs > mine:
                upward.add(f"{path.relative_to(ROOT)} {name} -> {mod}")
    assert upward - KNOWN_UPWARD == set()
    assert KNOWN_UPWARD - upward == set(), "fixed: drop these from KNOWN_UPWARD"


@pytest.mark.parametrize("module,expected", [("simfs.core.device", 1), ("simfs_plugins.x", 3),
                                             ("simfs.cli.run", 5), ("os", None)])
def test_rank_table(module, expected):
    assert rank(module) == expected
