"""The tree remembers the lookups it made (a FUSE request then costs one dict lookup), and
forgets them whenever an entry comes or goes: a remembered path never outlives the change
that removed or replaced what it named."""
from __future__ import annotations

import errno

import pytest

from simfs.configfs import Attribute, ConfigfsError, ConfigfsTree, Group
from simfs.configfs.tree import AttrRef


class Leaf(Group):
    attributes = (Attribute("value", lambda g: "1\n"),)


class Items(Group):
    def make_group(self, name):
        return Leaf(name)

    def allow_link(self, name, target):
        pass


@pytest.fixture
def tree():
    root = Group("")
    root.add_default_group(Items("items"))
    return ConfigfsTree(root)


def enoent(tree: ConfigfsTree, path: str) -> None:
    with pytest.raises(ConfigfsError) as e:
        tree.lookup(path)
    assert e.value.errno == errno.ENOENT


def test_rmdir_then_mkdir_finds_the_new_group(tree):
    first = tree.mkdir("items/a")
    assert tree.lookup("items/a") is first
    assert tree.lookup("items/a/value").group is first  # remembered
    tree.rmdir("items/a")
    enoent(tree, "items/a")
    enoent(tree, "items/a/value")
    second = tree.mkdir("items/a")
    assert second is not first
    assert tree.lookup("items/a") is second
    assert tree.lookup("items/a/value").group is second


def test_unlink_forgets_the_link(tree):
    tree.mkdir("items/a")
    link = tree.symlink("items/l", "items/a")
    assert tree.lookup("items/l") is link
    tree.unlink("items/l")
    enoent(tree, "items/l")


def test_default_groups_added_and_removed_later(tree):
    items = tree.lookup("items")
    enoent(tree, "items/extra")
    extra = items.add_default_group(Leaf("extra"))  # a store's side effect
    assert tree.lookup("items/extra") is extra
    assert isinstance(tree.lookup("items/extra/value"), AttrRef)
    items.remove_default_group("extra")
    enoent(tree, "items/extra")
    enoent(tree, "items/extra/value")


def test_misses_are_not_remembered(tree):
    enoent(tree, "items/b")
    made = tree.mkdir("items/b")
    assert tree.lookup("items/b") is made
