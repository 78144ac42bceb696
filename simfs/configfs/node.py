"""The pieces of a configfs tree: attributes, groups (items) and symlinks."""

from __future__ import annotations

import time
import weakref
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from simfs.configfs.errors import ConfigfsError

ShowFn = Callable[["Group"], "str | bytes"]
StoreFn = Callable[["Group", bytes], Optional[int]]

MODE_RW = 0o644  # CONFIGFS_ATTR: S_IRUGO | S_IWUSR
MODE_RO = 0o444  # CONFIGFS_ATTR_RO
MODE_WO = 0o200  # CONFIGFS_ATTR_WO

#: Change listeners per tree root (``ConfigfsTree.add_listener``). Whoever adds or removes a
#: child of a group hanging from that root (a FUSE request, a store, the SCSI engine, a
#: fabric), the listeners hear ``(parent, name)``; the FUSE adapter turns that into exact
#: kernel cache invalidations. Groups still being built (not yet attached) reach no root here.
_LISTENERS: "weakref.WeakKeyDictionary[Group, list[Callable[[Group, str], None]]]" = \
    weakref.WeakKeyDictionary()


def entry_changed(parent: "Group", name: str) -> None:
    """Tell the listeners of ``parent``'s tree that its entry ``name`` came, went or changed."""
    top = parent
    while top.parent is not None:
        top = top.parent
    for listener in _LISTENERS.get(top, ()):
        listener(parent, name)


class Attribute:
    """One attribute file: a ``show`` generating its text and/or a ``store`` applying a write.

    Attributes are shared by every group of one type (like the kernel's
    ``configfs_attribute`` tables), so a thousand devices cost one table.
    ``store`` raises :class:`ConfigfsError` to refuse. It returns None when it
    consumed the whole buffer (as nearly every store does), or the byte count the
    kernel's store returns where that differs (``dbroot``).
    """

    __slots__ = ("name", "show", "store", "mode")

    def __init__(self, name: str, show: Optional[ShowFn] = None,
                 store: Optional[StoreFn] = None, mode: Optional[int] = None):
        self.name = name
        self.show = show
        self.store = store
        if mode is None:
            mode = (MODE_RO if show else 0) | (MODE_WO if store else 0)
        self.mode = mode

    def __repr__(self) -> str:
        return f"Attribute({self.name!r}, mode={self.mode:o})"


class Node:
    """Anything with a name and a parent in the tree."""

    __slots__ = ("name", "parent", "ctime", "uid", "gid", "mode_override", "__weakref__")

    def __init__(self, name: str, parent: Optional["Group"] = None):
        self.name = name
        self.parent = parent
        self.ctime = time.time()
        self.uid: Optional[int] = None
        self.gid: Optional[int] = None
        self.mode_override: Optional[int] = None

    def path(self) -> str:
        """Path from the configfs root, without a leading slash ('' for the root)."""
        parts = []
        node: Optional[Node] = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))

    def depth(self) -> int:
        d, node = 0, self
        while node.parent is not None:
            d, node = d + 1, node.parent
        return d


class Group(Node):
    """A configfs directory: an item with attributes and child groups.

    Subclasses are the kernel's ``config_item_type``s: they name their attribute
    table in ``attributes`` and implement the hooks they support. A hook left as
    it is here is "not provided", with configfs's errno for that case.
    """

    __slots__ = ("children", "is_default", "pinned_by")

    attributes: Sequence[Attribute] = ()

    def __init__(self, name: str, parent: Optional["Group"] = None):
        super().__init__(name, parent)
        self.children: dict[str, Node] = {}
        self.is_default = False
        self.pinned_by = 0  # symlinks to it and configfs_depend_item: rmdir -> EBUSY

    # -- structure -------------------------------------------------------------
    def attribute_table(self) -> Sequence[Attribute]:
        """The attributes of this group (a group type may vary them per instance)."""
        return self.attributes

    def attribute(self, name: str) -> Optional[Attribute]:
        for attr in self.attribute_table():
            if attr.name == name:
                return attr
        return None

    def add_default_group(self, group: "Group") -> "Group":
        """Attach a default group: made with its parent, removed with it, never by rmdir."""
        group.parent = self
        group.is_default = True
        self.children[group.name] = group
        entry_changed(self, group.name)
        return group

    def remove_default_group(self, name: str) -> None:
        if self.children.pop(name, None) is not None:
            entry_changed(self, name)

    def entries(self) -> Iterator[str]:
        """Names in readdir order: newest first, as configfs lists a directory.

        configfs puts each new dirent at the head of its parent's list and readdir walks
        from the head, so `ls -U` shows what was made last first: user-made children (newest
        first), then the default groups, then the attributes, each in reverse of the order
        in which the kernel created them (attributes before default groups, in table order).
        """
        yield from reversed(self.children)
        for attr in reversed(self.attribute_table()):
            yield attr.name

    def user_children(self) -> list[Node]:
        """Children made by users (mkdir/symlink), found through default groups too."""
        found: list[Node] = []
        for child in self.children.values():
            if isinstance(child, Group) and child.is_default:
                found.extend(child.user_children())
            else:
                found.append(child)
        return found

    # -- hooks (the kernel's configfs_group_operations / item_operations) -------
    def make_group(self, name: str) -> "Group":
        """mkdir below this group. Not provided: configfs answers EPERM."""
        raise ConfigfsError(1, None)  # EPERM, explained by the tree

    def can_make(self) -> bool:
        return type(self).make_group is not Group.make_group

    def drop_item(self, child: "Group") -> None:
        """Called when a user-made child is removed by rmdir (after the checks)."""

    def allows_links(self) -> bool:
        return type(self).allow_link is not Group.allow_link

    def allow_link(self, name: str, target: "Group") -> None:
        """ln -s in this group. Not provided: configfs answers EPERM."""
        raise ConfigfsError(1, None)

    def drop_link(self, link: "Symlink") -> None:
        """Called when a symlink in this group is unlinked."""

    def release(self) -> None:
        """Called when the group leaves the tree (its own and its default groups')."""


G = TypeVar("G", bound=Group)


def owner(g: Group, kind: type[G]) -> G:
    """``g`` as the group type whose attribute table it shows (the kernel's
    ``container_of`` from a config_item to its object): a show or store function gets the
    plain :class:`Group` it lives in and reaches its object through the typed result."""
    if not isinstance(g, kind):
        raise TypeError(f"{g.path() or '/'}: a {type(g).__name__}, not a {kind.__name__}")
    return g


class Symlink(Node):
    """A configfs symlink: always points at a group inside the same tree."""

    __slots__ = ("target",)

    def __init__(self, name: str, parent: Group, target: Group):
        super().__init__(name, parent)
        self.target = target

    def text(self) -> str:
        """What readlink returns: '../' per level of the link's directory, then the target path."""
        return "../" * self.parent.depth() + self.target.path()
