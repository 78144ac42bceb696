"""The tree tells its listeners about every entry that comes or goes, whoever changes it
(what the FUSE adapter needs to make the kernel forget exactly those entries)."""
from __future__ import annotations

import errno

import pytest

from simfs.configfs import Attribute, ConfigfsError, ConfigfsTree, Group


class Leaf(Group):
    attributes = (Attribute("value", lambda g: "1\n"),)

    def __init__(self, name: str):
        super().__init__(name)
        self.add_default_group(Group("stats"))  # made before it hangs in the tree: no event


class Items(Group):
    def make_group(self, name):
        return Leaf(name)

    def allow_link(self, name, target):
        pass


@pytest.fixture
def tree():
    root = Group("")
    root.add_default_group(Items("items"))
    t = ConfigfsTree(root)
    t.events = []
    t.add_listener(lambda parent, name: t.events.append((parent.path(), name)))
    return t


def test_mkdir_symlink_unlink_rmdir(tree):
    tree.mkdir("items/a")
    tree.symlink("items/l", "items/a")
    tree.unlink("items/l")
    tree.rmdir("items/a")
    assert tree.events == [("items", "a"), ("items", "l"), ("items", "l"), ("items", "a")]


def test_refused_changes_tell_nothing(tree):
    tree.mkdir("items/a")
    tree.events.clear()
    with pytest.raises(ConfigfsError) as e:
        tree.mkdir("items/a")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(ConfigfsError):
        tree.rmdir("items/a/stats")  # a default group goes only with its parent
    with pytest.raises(ConfigfsError):
        tree.mkdir("nothing/here")
    assert tree.events == []


def test_default_groups_added_and_removed_at_run_time(tree):
    tree.mkdir("items/a")
    a = tree.lookup("items/a")
    tree.events.clear()
    a.add_default_group(Group("extra"))
    a.remove_default_group("extra")
    a.remove_default_group("extra")  # not there: nothing changed, nothing told
    assert tree.events == [("items/a", "extra"), ("items/a", "extra")]


def test_chown_of_a_group_changes_its_attribute_files(tree):
    tree.mkdir("items/a")
    tree.events.clear()
    tree.setattr("items/a", uid=1000, gid=1000)
    assert tree.events == [("items/a", "value")]
    tree.events.clear()
    tree.setattr("items/a", uid=1000, gid=1000)  # same owner: their stat did not change
    tree.setattr("items/a", mode=0o700)  # the group's own mode: its own inode
    assert tree.events == []


def test_listeners_are_per_tree_and_removable(tree):
    other = ConfigfsTree(Items("x"))
    heard = []
    listener = lambda parent, name: heard.append(name)  # noqa: E731
    other.add_listener(listener)
    tree.mkdir("items/a")
    other.mkdir("b")
    other.remove_listener(listener)
    other.mkdir("c")
    assert heard == ["b"]


def test_only_configfs_changes_children_directly():
    """Every other layer adds and removes entries through the tree's operations or
    add/remove_default_group, so the listeners (and the kernel's cache) hear of it."""
    import re
    from pathlib import Path

    import simfs
    import simfs_plugins
    mutation = re.compile(r"\.children\s*\[[^\]]*\]\s*=[^=]|\.children\.(pop|clear|update|setdefault|"
                          r"popitem)\(|del\s+\S*\.children\[")
    offenders = []
    for pkg in (simfs, simfs_plugins):
        root = Path(pkg.__file__).parent
        for path in root.rglob("*.py"):
            if path.parent.name == "configfs" and pkg is simfs:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if mutation.search(line):
                    offenders.append(f"{path}:{n}: {line.strip()}")
    assert offenders == []
