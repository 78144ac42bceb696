"""configfs's own rules, applied to a tree of groups: what may be made, removed,
linked, opened, read and written, and with which errno when not.

Every operation takes the tree's lock, so concurrent callers (FUSE threads, the
SCSI engine) see one consistent state. Every refusal is logged with one line.
"""

from __future__ import annotations

import errno
import os
import stat as st
import threading
import weakref
from typing import Callable, NamedTuple, Optional, Union

from simfs.configfs.errors import ConfigfsError
from simfs.configfs.node import _LISTENERS, Attribute, Group, Node, Symlink, entry_changed

PAGE_SIZE = 4096
#: a symlink target outside the tree that does not exist: ENOENT, after the EPERM checks
MISSING = "\0missing"
# configfs hands a store at most one page minus the terminating NUL.
SIMPLE_ATTR_SIZE = PAGE_SIZE


class AttrRef(NamedTuple):
    """An attribute file as found by a path: the group it belongs to and the attribute."""

    group: Group
    attr: Attribute

    def path(self) -> str:
        base = self.group.path()
        return f"{base}/{self.attr.name}" if base else self.attr.name


Found = Union[Group, Symlink, AttrRef]


def _split(path: str) -> list[str]:
    return list(filter(None, path.split("/")))


# Attribute tables are tuples shared by every group of a type (or built equal per
# group): a name index per distinct table makes finding an attribute one dict lookup
# instead of a scan of up to ~40 names on every stat(2) of an attribute file.
_ATTR_INDEX: dict[tuple, dict[str, Attribute]] = {}
_ATTR_INDEX_MAX = 512
_GROUP_ATTRIBUTE = Group.attribute
#: Bound of a tree's lookup cache (paths): a walk of 10,000 devices' files stays cheap.
_FOUND_MAX = 8192


def _attribute(group: Group, name: str) -> Optional[Attribute]:
    """``group.attribute(name)``, through the index when the group's type keeps the
    base lookup and its table is a tuple (immutable, so the index cannot go stale)."""
    if type(group).attribute is not _GROUP_ATTRIBUTE:
        return group.attribute(name)
    table = group.attribute_table()
    if type(table) is not tuple:
        return group.attribute(name)
    index = _ATTR_INDEX.get(table)
    if index is None:
        index = {}
        for attr in table:
            index.setdefault(attr.name, attr)  # the first of a name wins, as in the scan
        if len(_ATTR_INDEX) >= _ATTR_INDEX_MAX:
            _ATTR_INDEX.clear()
        _ATTR_INDEX[table] = index
    return index.get(name)


class OpenAttribute:
    """An open attribute file: ``show`` runs at the first read and is kept until a write."""

    __slots__ = ("tree", "ref", "flags", "_page", "pid")

    def __init__(self, tree: "ConfigfsTree", ref: AttrRef, flags: int, pid: int = 0):
        self.tree = tree
        self.ref = ref
        self.flags = flags
        self._page: Optional[bytes] = None
        self.pid = pid

    def read(self, size: int, offset: int) -> bytes:
        with self.tree.lock:
            if self._page is None:
                self._page = self.tree._show(self.ref)
                if self.tree.trace is not None:
                    self.tree.trace.fs("read", self.ref.path(), length=len(self._page))
            return self._page[offset:offset + size]

    def write(self, data: bytes, pid: int = 0) -> int:
        with self.tree.lock:
            data = bytes(data[:SIMPLE_ATTR_SIZE - 1])
            if not data:  # configfs: fill_write_buffer copies nothing -> EFAULT
                raise ConfigfsError(errno.EFAULT)
            consumed = self.tree._store(self.ref, data, pid or self.pid)
            self._page = None  # a later read shows the new state
            return len(data) if consumed is None else consumed


class ConfigfsTree:
    """A mounted configfs: the root group and the operations a VFS performs on it."""

    def __init__(self, root: Group, log: Callable[[str], None] = lambda msg: None,
                 lock: Optional[threading.RLock] = None):
        self.root = root
        self.log_err = log
        #: every operation holds it; the owner of the model may share its own
        self.lock = lock if lock is not None else threading.RLock()
        self.uid = os.getuid()
        self.gid = os.getgid()
        #: Set while a store runs: the pid of the writing process (the seed's ``fd`` needs it).
        self.writer_pid = 0
        #: The trace hub (simfs.daemon.trace) while someone listens, else None: one check per op.
        self.trace = None
        #: Lookups already made: path as asked -> what it found. Forgotten whenever an entry
        #: of the tree comes or goes (the tree's own listener below), so a hit is what a
        #: walk would find now; attribute tables are fixed for a group's life. A FUSE
        #: request then costs one dict lookup instead of one per path component.
        self._found: dict[str, Found] = {}
        _LISTENERS.setdefault(root, []).append(self._forget_lookups)
        #: Symlinks among each group's children. Only :meth:`symlink` adds a Symlink to a
        #: group and only :meth:`unlink` takes one out (or the group goes), so a group's
        #: subdirectory count for st_nlink is ``len(children)`` less this, in O(1) however
        #: many devices an HBA holds.
        self._links: "weakref.WeakKeyDictionary[Group, int]" = weakref.WeakKeyDictionary()

    # -- change listeners ----------------------------------------------------------
    def add_listener(self, listener: Callable[[Group, str], None]) -> None:
        """Call ``listener(parent, name)`` whenever an entry of this tree comes or goes (or an
        attribute's stat changes): under the tree's lock, so it must be quick."""
        _LISTENERS.setdefault(self.root, []).append(listener)

    def remove_listener(self, listener: Callable[[Group, str], None]) -> None:
        listeners = _LISTENERS.get(self.root, [])
        if listener in listeners:
            listeners.remove(listener)

    # -- lookups ---------------------------------------------------------------
    def _forget_lookups(self, parent: Group, name: str) -> None:
        self._found.clear()

    def lookup(self, path: str) -> Found:
        """What ``path`` names: a group, a symlink or an attribute (ConfigfsError if none)."""
        found = self._found.get(path)
        if found is not None:
            return found
        with self.lock:  # a walk and its caching against a concurrent change
            found = self._walk(path)
            if len(self._found) >= _FOUND_MAX:
                self._found.clear()
            self._found[path] = found
        return found

    def _walk(self, path: str) -> Found:
        node: Node = self.root
        parts = _split(path)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if not isinstance(node, Group):
                raise ConfigfsError(errno.ENOTDIR)
            child = node.children.get(part)
            if child is None:
                attr = _attribute(node, part)
                if attr is None:
                    raise ConfigfsError(errno.ENOENT)
                if i != last:
                    raise ConfigfsError(errno.ENOTDIR)
                return AttrRef(node, attr)
            node = child
        return node  # type: ignore[return-value]

    def _parent_of(self, path: str) -> tuple[Group, str]:
        parts = _split(path)
        if not parts:
            raise ConfigfsError(errno.EEXIST)
        parent = self.lookup("/".join(parts[:-1]))
        if not isinstance(parent, Group):
            raise ConfigfsError(errno.ENOTDIR)
        return parent, parts[-1]

    def getattr(self, path: str) -> dict:
        """stat(2) fields; times in nanoseconds."""
        with self.lock:
            found = self.lookup(path)
            return self.stat_of(found)

    def stat_of(self, found: Found) -> dict:
        if isinstance(found, AttrRef):
            node: Node = found.group
            mode = st.S_IFREG | found.attr.mode
            # configfs gives every (text) attribute a page-sized inode.
            size, nlink, ctime = PAGE_SIZE, 1, found.group.ctime
        elif isinstance(found, Symlink):
            node, mode, size, nlink = found, st.S_IFLNK | 0o777, 0, 1
            ctime = found.ctime
        else:
            node = found
            mode = st.S_IFDIR | 0o755
            subdirs = len(found.children) - self._links.get(found, 0)
            size, nlink, ctime = 0, 2 + subdirs, found.ctime
        if not isinstance(found, AttrRef) and node.mode_override is not None:
            mode = (mode & ~0o7777) | node.mode_override
        ns = int(ctime * 1e9)
        return {
            "st_mode": mode, "st_nlink": nlink, "st_size": size,
            "st_uid": node.uid if node.uid is not None else self.uid,
            "st_gid": node.gid if node.gid is not None else self.gid,
            "st_atime": ns, "st_mtime": ns, "st_ctime": ns,
        }

    def readdir(self, path: str) -> list[str]:
        with self.lock:
            found = self.lookup(path)
            if not isinstance(found, Group):
                raise ConfigfsError(errno.ENOTDIR)
            return list(found.entries())

    def readlink(self, path: str) -> str:
        with self.lock:
            found = self.lookup(path)
            if not isinstance(found, Symlink):
                raise ConfigfsError(errno.EINVAL)
            return found.text()

    # -- directory operations ----------------------------------------------------
    def mkdir(self, path: str) -> Group:
        with self.lock:
            try:
                parent, name = self._parent_of(path)
                if name in parent.children or _attribute(parent, name) is not None:
                    raise ConfigfsError(errno.EEXIST)
                if not parent.can_make():
                    raise ConfigfsError(errno.EPERM,
                                        f"configfs: mkdir {path}: {parent.path() or '/'} "
                                        "does not make groups (no make_group)")
                child = parent.make_group(name)
                child.name = name
                child.parent = parent
                parent.children[name] = child
                entry_changed(parent, name)
                if self.trace is not None:
                    self.trace.fs("mkdir", path)
                return child
            except ConfigfsError as e:
                self._refused("mkdir", path, e)
                raise

    def rmdir(self, path: str) -> None:
        with self.lock:
            try:
                found = self.lookup(path)
                if not isinstance(found, Group):
                    raise ConfigfsError(errno.ENOTDIR)
                if found is self.root or found.is_default:
                    raise ConfigfsError(errno.EPERM,
                                        f"configfs: rmdir {path}: a default group goes only "
                                        "with its parent")
                _detach_prep(path, found)
                parent = found.parent
                assert parent is not None
                parent.drop_item(found)
                del parent.children[found.name]
                entry_changed(parent, found.name)
                _release(found)
                if self.trace is not None:
                    self.trace.fs("rmdir", path)
            except ConfigfsError as e:
                self._refused("rmdir", path, e)
                raise

    def symlink(self, path: str, target_path: Optional[str]) -> Symlink:
        """Make ``path`` a link to the group at ``target_path`` (None: outside this tree;
        :data:`MISSING`: a name that does not exist outside it)."""
        with self.lock:
            try:
                parent, name = self._parent_of(path)
                if name in parent.children or _attribute(parent, name) is not None:
                    raise ConfigfsError(errno.EEXIST)
                if not parent.allows_links():
                    raise ConfigfsError(errno.EPERM,
                                        f"configfs: symlink {path}: {parent.path()} "
                                        "takes no links (no allow_link)")
                if target_path is None:
                    raise ConfigfsError(errno.EPERM,
                                        f"configfs: symlink {path}: the target is not in "
                                        "this configfs")
                if target_path == MISSING:
                    raise ConfigfsError(errno.ENOENT)
                target = self.lookup(target_path)
                if isinstance(target, Symlink):  # LOOKUP_FOLLOW
                    target = target.target
                if not isinstance(target, Group):
                    raise ConfigfsError(errno.ENOTDIR,
                                        f"configfs: symlink {path}: {target_path} is not a "
                                        "config item")
                parent.allow_link(name, target)
                link = Symlink(name, parent, target)
                parent.children[name] = link
                entry_changed(parent, name)
                self._links[parent] = self._links.get(parent, 0) + 1
                target.pinned_by += 1
                if self.trace is not None:
                    self.trace.fs("symlink", path, target=target.path())
                return link
            except ConfigfsError as e:
                self._refused("symlink", path, e)
                raise

    def unlink(self, path: str) -> None:
        with self.lock:
            try:
                found = self.lookup(path)
                if isinstance(found, Group):
                    raise ConfigfsError(errno.EISDIR)
                if isinstance(found, AttrRef):
                    raise ConfigfsError(errno.EPERM,
                                        f"configfs: unlink {path}: attributes cannot be removed")
                parent = found.parent
                assert parent is not None
                parent.drop_link(found)
                del parent.children[found.name]
                entry_changed(parent, found.name)
                self._links[parent] = self._links.get(parent, 1) - 1
                found.target.pinned_by -= 1
                if self.trace is not None:
                    self.trace.fs("unlink", path)
            except ConfigfsError as e:
                self._refused("unlink", path, e)
                raise

    def create(self, path: str) -> None:
        """Creating a regular file: configfs has no ->create, so the VFS answers EACCES."""
        with self.lock:
            try:
                self._parent_of(path)
                raise ConfigfsError(errno.EACCES,
                                    f"configfs: create {path}: files exist only as attributes")
            except ConfigfsError as e:
                self._refused("create", path, e)
                raise

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            e = ConfigfsError(errno.EPERM, f"configfs: rename {old}: configfs cannot rename")
            self._refused("rename", old, e)
            raise e

    def setattr(self, path: str, mode: Optional[int] = None,
                uid: Optional[int] = None, gid: Optional[int] = None) -> None:
        """chmod/chown: configfs keeps them on the inode; we keep them on the node."""
        with self.lock:
            found = self.lookup(path)
            node = found.group if isinstance(found, AttrRef) else found
            if isinstance(found, AttrRef):
                return  # attribute modes come from the kernel's table; keep them honest
            if mode is not None:
                node.mode_override = mode & 0o7777
            owner = (node.uid, node.gid)
            if uid is not None and uid != -1 and uid != 0xFFFFFFFF:
                node.uid = uid
            if gid is not None and gid != -1 and gid != 0xFFFFFFFF:
                node.gid = gid
            if isinstance(node, Group) and (node.uid, node.gid) != owner:
                for attr in node.attribute_table():  # their stat shows the group's owner
                    entry_changed(node, attr.name)

    # -- attribute files ---------------------------------------------------------
    def open(self, path: str, flags: int, pid: int = 0) -> OpenAttribute:
        with self.lock:
            found = self.lookup(path)
            if isinstance(found, Group):
                raise ConfigfsError(errno.EISDIR)
            if isinstance(found, Symlink):  # the VFS follows links before open
                raise ConfigfsError(errno.ELOOP)
            acc = flags & os.O_ACCMODE
            attr = found.attr
            if acc in (os.O_WRONLY, os.O_RDWR) and (not attr.mode & 0o222 or not attr.store):
                e = ConfigfsError(errno.EACCES,
                                  f"configfs: open {path} for writing: read-only attribute")
                self._refused("open", path, e)
                raise e
            if acc in (os.O_RDONLY, os.O_RDWR) and (not attr.mode & 0o444 or not attr.show):
                e = ConfigfsError(errno.EACCES,
                                  f"configfs: open {path} for reading: write-only attribute")
                self._refused("open", path, e)
                raise e
            return OpenAttribute(self, found, flags, pid)

    def read_attr(self, path: str) -> bytes:
        """open + read + close in one call (for tools and tests that skip the VFS)."""
        return self.open(path, os.O_RDONLY).read(PAGE_SIZE, 0)

    def write_attr(self, path: str, data: Union[bytes, str], pid: int = 0) -> int:
        """open + one write(2) + close."""
        if isinstance(data, str):
            data = data.encode()
        return self.open(path, os.O_WRONLY, pid).write(data)

    def _show(self, ref: AttrRef) -> bytes:
        try:
            text = ref.attr.show(ref.group)  # type: ignore[misc]
        except ConfigfsError as e:
            self._refused("read", ref.path(), e)
            raise
        data = text.encode() if isinstance(text, str) else bytes(text)
        return data[:PAGE_SIZE]

    def _store(self, ref: AttrRef, data: bytes, pid: int) -> Optional[int]:
        self.writer_pid = pid
        try:
            consumed = ref.attr.store(ref.group, data)  # type: ignore[misc]
            if self.trace is not None:
                self.trace.fs("write", ref.path(), data=data if consumed is None
                              else data[:consumed])
            return consumed
        except ConfigfsError as e:
            self._refused("write", ref.path(), e, data)
            raise
        finally:
            self.writer_pid = 0

    def _refused(self, op: str, path: str, e: ConfigfsError, data: bytes = b"") -> None:
        if e.reason:
            line = e.reason
        else:
            shown = f" {data!r}" if data else ""
            line = f"configfs: {op} {path}{shown}: {e.name}"
        self.log_err(line)
        if self.trace is not None:
            self.trace.fs(op, path, e, line, data=data or None)


def _detach_prep(path: str, group: Group) -> None:
    """configfs_rmdir's checks, in its order: an item something points at (a symlink or a
    configfs_depend_item) is EBUSY before any child is looked at; then the children, default
    groups searched the same way, a user-made child being ENOTEMPTY."""
    if group.pinned_by:
        raise ConfigfsError(errno.EBUSY, f"configfs: rmdir {path}: {group.pinned_by} symlink(s) "
                            f"or dependent item(s) point at {group.path()}")
    for child in group.children.values():
        if isinstance(child, Group) and child.is_default:
            _detach_prep(path, child)
        else:
            raise ConfigfsError(errno.ENOTEMPTY, f"configfs: rmdir {path}: still holds "
                                f"{child.path()}")


def _release(group: Group) -> None:
    for child in list(group.children.values()):
        if isinstance(child, Group):
            _release(child)
    group.release()

