"""The FUSE adapter: the only module that imports fuse. It turns VFS requests into
calls on the configfs tree and errors back into errno, and nothing more.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import stat as st
import threading
from typing import Optional

try:
    import fuse
except ModuleNotFoundError:  # Debian's python3-fusepy names the same module "fusepy"
    import fusepy as fuse  # type: ignore[no-redef]

from simfs.configfs import ConfigfsTree, OpenAttribute
from simfs.configfs.tree import MISSING
from simfs.klog import KernelLog


def _pid() -> int:
    return fuse.fuse_get_context()[2]


class ThreadStatePins:
    """One Python thread state per libfuse worker thread, for the thread's whole life.

    ctypes runs every callback that arrives on a thread Python did not start between
    ``PyGILState_Ensure`` and ``PyGILState_Release``. For such a thread the pair makes and
    frees a whole ``PyThreadState`` per call, and its frame stack is mmap'd and munmap'd
    each time: on a small VM that alone is a third of an attribute read's cost
    (docs/performance.md). One extra ``PyGILState_Ensure``, taken on the first callback
    in a thread and never released, keeps the state; later callbacks find and reuse it.

    A worker that libfuse ends (it ends idle ones beyond ten) leaves its pinned state
    behind: the states of threads that no longer exist are freed at the next pin.
    Threads Python knows (the main thread, ``threading`` threads) are never pinned: they
    free their own state. ``SIMFS_NO_TSTATE_PIN=1`` turns the whole thing off.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._states: dict[int, int] = {}  # native thread id -> PyThreadState* it pinned
        self._lock = threading.Lock()
        self.enabled = False
        if os.environ.get("SIMFS_NO_TSTATE_PIN"):
            return
        try:
            api = ctypes.pythonapi
            self._ensure = api.PyGILState_Ensure
            self._ensure.restype = ctypes.c_int
            self._this = api.PyGILState_GetThisThreadState
            self._this.restype = ctypes.c_void_p
            self._clear = api.PyThreadState_Clear
            self._clear.argtypes = [ctypes.c_void_p]
            self._delete = api.PyThreadState_Delete
            self._delete.argtypes = [ctypes.c_void_p]
            libc = ctypes.CDLL(None, use_errno=True)
            self._tgkill = libc.tgkill
            self._tgkill.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            # the threads Python started: CPython's private registry, looked up by name
            # since it may be missing (AttributeError: no pinning then)
            self._known = getattr(threading, "_active")
        except (AttributeError, OSError):
            return
        self.enabled = True

    def pin(self) -> None:
        """Called first thing in every callback (the GIL is held)."""
        if getattr(self._local, "pinned", False) or not self.enabled:
            return
        self._local.pinned = True  # pinned now, or a thread that must not be
        if threading.get_ident() in self._known:
            return
        tid = threading.get_native_id()
        state = self._this()
        if not state:
            return
        with self._lock:
            self._reap(tid, state)
            self._ensure()  # the reference that is never released
            self._states[tid] = state

    def _reap(self, tid: int, state: int) -> None:
        """Free the pinned states of worker threads that have ended."""
        pid = os.getpid()
        for other, other_state in list(self._states.items()):
            if other_state == state:
                continue
            if other != tid:  # a thread id in use again is this thread's: the old one ended
                if self._tgkill(pid, other, 0) == 0 or ctypes.get_errno() != errno.ESRCH:
                    continue  # alive (or unknown): keep it
            del self._states[other]
            self._clear(other_state)
            self._delete(other_state)


# -- the kernel's entry and attribute cache -----------------------------------------------------
#: How long the kernel may trust a name or a stat without asking (seconds). The daemon tells it
#: to forget exactly what changed (KernelCache), so this only bounds how long a change the
#: tree failed to announce could stay visible. Negative entries are never cached: a name that
#: appears is seen at once without a notification.
ENTRY_TIMEOUT = 30.0
ATTR_TIMEOUT = 30.0
FUSE_ROOT_ID = 1
#: How long a store's write waits for the invalidations its side effects queued, before it
#: replies (bounded: a stuck notification must not hang the writer).
FLUSH_WAIT = 2.0


class KernelCache:
    """Tells the kernel to forget entries that changed behind its back.

    The tree calls :meth:`changed` (a configfs listener) for every entry added to or removed
    from a group, whoever makes the change: a FUSE request, a store's side effect, the SCSI
    engine or the iSCSI server. The kernel already keeps its own cache right for the entry a
    request names (mkdir, rmdir, symlink, unlink), so that one is skipped; every other change
    is queued, and a thread sends libfuse's ``notify_inval_entry`` for the name (the kernel
    drops the dentry and everything below it) and ``notify_inval_inode`` for the parent (its
    st_nlink). Notifications never run inside a request handler: the kernel takes the
    parent directory's lock to handle one, and the VFS holds that lock while a lookup,
    mkdir, rmdir, symlink or unlink in it waits for our reply (libfuse's documented
    deadlock). A write (a store) waits after its store until its own side effects are
    notified, so the writer sees them as soon as write(2) returns; no directory lock is
    held across a write.

    libfuse's high-level API has no "invalidate this name" call (libfuse 3's
    ``fuse_invalidate_path`` only forgets an inode's attributes), so the low-level calls are
    reached with ctypes on the library the binding loaded, libfuse 2 (through the session's
    channel) or 3 (through the session). They need the parent's node id: high-level libfuse
    reports it as st_ino (simfs does not mount with ``use_ino``), so the thread stats the
    parent through the mount.
    """

    def __init__(self, mountpoint: str):
        self.mountpoint = mountpoint
        self._local = threading.local()
        self._cond = threading.Condition()
        self._queued = 0  # sequence of the last queued change
        self._done = 0  # sequence of the last notified change
        self._pending: list[tuple[int, str, str]] = []
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self._target = None  # the channel (libfuse 2) or session (libfuse 3)
        self._inval_entry = self._inval_inode = None
        self.sent = 0  # entries notified (for tests and the bench)

    @staticmethod
    def supported(lib) -> bool:
        """Whether the loaded libfuse can notify (2.8 and later can)."""
        return all(hasattr(lib, name) for name in (
            "fuse_get_session", "fuse_lowlevel_notify_inval_entry",
            "fuse_lowlevel_notify_inval_inode"))

    # -- set up, from init() (a request: fuse_get_context is valid there) --------------------------
    def start(self, lib) -> bool:
        try:
            version = lib.fuse_version()
            f = lib.fuse_get_context().contents.fuse
            get_session = lib.fuse_get_session
            get_session.restype, get_session.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
            session = get_session(f)
            if version < 30:
                next_chan = lib.fuse_session_next_chan
                next_chan.restype = ctypes.c_void_p
                next_chan.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
                target = next_chan(session, None)
            else:
                target = session
            entry = lib.fuse_lowlevel_notify_inval_entry
            entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
            inode = lib.fuse_lowlevel_notify_inval_inode
            inode.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64]
        except (AttributeError, OSError, ValueError):
            return False
        if not target:
            return False
        self._target, self._inval_entry, self._inval_inode = target, entry, inode
        self._thread = threading.Thread(target=self._run, name="simfs-kcache", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    # -- the tree's side (under the tree's lock: cheap, never blocks) ---------------------------------
    def own(self, path: Optional[str]) -> None:
        """Mark the entry the current request itself makes or removes (None: done)."""
        self._local.own = path

    def changed(self, parent, name: str) -> None:
        if self._thread is None:
            return  # not mounted yet, or libfuse cannot notify: nothing to tell
        base = parent.path()
        if getattr(self._local, "own", None) == (f"{base}/{name}" if base else name):
            return  # the kernel updates its cache for the request's own entry itself
        with self._cond:
            self._queued += 1
            self._pending.append((self._queued, base, name))
            self._local.last = self._queued
            self._cond.notify_all()

    def flush_mine(self) -> None:
        """Wait until the changes the current thread queued are notified (bounded)."""
        last = getattr(self._local, "last", 0)
        if not last or self._thread is None:
            return
        self._local.last = 0
        with self._cond:
            self._cond.wait_for(lambda: self._done >= last or self._stop, FLUSH_WAIT)

    # -- the notifying thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stop)
                if self._stop:
                    return
                batch, self._pending = self._pending, []
            for base, name in dict.fromkeys((b, n) for _seq, b, n in batch):
                try:
                    self._forget(base, name)
                except Exception:  # noqa: BLE001 - one bad entry must not stop the thread
                    pass
            with self._cond:
                self._done = batch[-1][0]
                self._cond.notify_all()

    def _forget(self, base: str, name: str) -> None:
        if base:
            try:
                parent = os.lstat(os.path.join(self.mountpoint, base)).st_ino
            except OSError:
                return  # the parent went too: forgetting it (queued as well) forgets this
        else:
            parent = FUSE_ROOT_ID
        raw = name.encode()
        self._inval_entry(self._target, parent, raw, len(raw))  # -ENOENT: was not cached
        self._inval_inode(self._target, parent, -1, 0)  # attributes only (st_nlink)
        self.sent += 1


class SimfsOperations(fuse.Operations):
    """fusepy operations for one mounted tree."""

    use_ns = True

    def __init__(self, tree: ConfigfsTree, mountpoint: str, log: KernelLog,
                 on_ready=None, on_destroy=None):
        self.tree = tree
        self.mountpoint = os.path.realpath(mountpoint)
        self.log = log
        self._handles: dict[int, OpenAttribute] = {}
        self._next_fh = itertools.count(1)
        self._on_ready = on_ready
        self._on_destroy = on_destroy
        self._pins = ThreadStatePins()
        self.kcache = KernelCache(self.mountpoint)
        tree.add_listener(self.kcache.changed)

    def __call__(self, op, *args):
        self._pins.pin()
        trace = self.tree.trace  # simfs trace: who asked, while someone listens
        if trace is not None:
            trace.local.pid = _pid()
        try:
            # fusepy's Operations.__call__ checks hasattr first: fusepy only registers the
            # callbacks this class has, so the check never fails; one layer less per request
            return getattr(self, op)(*args)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not take the mount down
            self.log.err(f"simfs: internal error in {op}{args[:1]}: {type(e).__name__}: {e}")
            raise fuse.FuseOSError(errno.EIO) from e

    # -- lifecycle --------------------------------------------------------------------
    def init(self, path):
        if not self.kcache.start(fuse._libfuse) and KernelCache.supported(fuse._libfuse):
            self.log.err("simfs: libfuse's cache notifications cannot be reached: a change "
                         f"not made through the mount may stay unseen for {ENTRY_TIMEOUT:.0f} s")
        if self._on_ready:
            self._on_ready()

    def destroy(self, path):
        self.kcache.stop()
        self.tree.remove_listener(self.kcache.changed)
        if self._on_destroy:
            self._on_destroy()

    # -- metadata ---------------------------------------------------------------------
    def getattr(self, path, fh=None):
        return self.tree.getattr(path)

    def readdir(self, path, fh):
        return [".", ".."] + self.tree.readdir(path)

    def readlink(self, path):
        return self.tree.readlink(path)

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def access(self, path, amode):
        self.tree.getattr(path)
        return 0

    def chmod(self, path, mode):
        self.tree.setattr(path, mode=mode)
        return 0

    def chown(self, path, uid, gid):
        self.tree.setattr(path, uid=uid, gid=gid)
        return 0

    def utimens(self, path, times=None):
        self.tree.getattr(path)
        return 0

    def truncate(self, path, length, fh=None):
        # truncate(2) of an attribute: configfs accepts it and stores nothing. (O_TRUNC at
        # open comes with OPEN itself: the mount asks for atomic_o_trunc.)
        self.tree.getattr(path)
        return 0

    def getxattr(self, path, name, position=0):
        # configfs has no extended attributes: getxattr(2) fails with EOPNOTSUPP. ENOSYS
        # makes the kernel answer that itself from now on and stop asking; it asks for
        # security.capability before every truncating open otherwise (a round trip per
        # `echo > attr`).
        raise fuse.FuseOSError(errno.ENOSYS)

    # -- namespace --------------------------------------------------------------------
    # The kernel updates its own cache for the entry a request makes or removes: marked as
    # the request's own, only the changes it causes elsewhere are notified.
    def mkdir(self, path, mode):
        self.kcache.own(path.strip("/"))
        try:
            self.tree.mkdir(path)
        finally:
            self.kcache.own(None)
        return 0

    def rmdir(self, path):
        self.kcache.own(path.strip("/"))
        try:
            self.tree.rmdir(path)
        finally:
            self.kcache.own(None)
        return 0

    def symlink(self, target, source):
        """``ln -s source target``: configfs resolves the source from the caller's cwd."""
        self.kcache.own(target.strip("/"))
        try:
            self.tree.symlink(target, self._resolve_link_target(source))
        finally:
            self.kcache.own(None)
        return 0

    def unlink(self, path):
        self.kcache.own(path.strip("/"))
        try:
            self.tree.unlink(path)
        finally:
            self.kcache.own(None)
        return 0

    def rename(self, old, new):
        self.tree.rename(old, new)

    def link(self, target, source):
        raise fuse.FuseOSError(errno.EPERM)

    def mknod(self, path, mode, dev):
        raise fuse.FuseOSError(errno.EPERM)

    def create(self, path, mode, fi=None):
        self.tree.create(path)

    # -- attribute files --------------------------------------------------------------------
    def open(self, path, fi):
        # The opener's pid is not asked here: only a store needs the caller's pid, and
        # write() passes the writer's own.
        handle = self.tree.open(path, fi.flags)
        fh = next(self._next_fh)  # one bytecode under the GIL: no lock needed
        self._handles[fh] = handle
        fi.fh = fh
        fi.direct_io = 1  # attributes are generated per read: never from the page cache
        return 0

    def read(self, path, size, offset, fi):
        return self._handles[fi.fh].read(size, offset)

    def write(self, path, data, offset, fi):
        n = self._handles[fi.fh].write(data, _pid())
        self.kcache.flush_mine()  # entries the store added or removed: gone from the cache first
        return n

    def flush(self, path, fi):
        # configfs applies a store at write(2) and has nothing to do at close. ENOSYS tells
        # the kernel so once: it stops sending FLUSH (one round trip less per open/close)
        # and close(2) still returns 0.
        raise fuse.FuseOSError(errno.ENOSYS)

    def release(self, path, fi):
        self._handles.pop(fi.fh, None)
        return 0

    # -- helpers -------------------------------------------------------------------------------
    def _resolve_link_target(self, source: str) -> Optional[str]:
        """The tree path a symlink's text names, or None when it is outside this mount."""
        if not os.path.isabs(source):
            try:
                cwd = os.readlink(f"/proc/{_pid()}/cwd")
            except OSError:
                cwd = "/"
            source = os.path.join(cwd, source)
        source = os.path.normpath(source)
        if source == self.mountpoint:
            return "/"
        if source.startswith(self.mountpoint + "/"):
            return source[len(self.mountpoint):]
        if not os.path.lexists(source):
            return MISSING  # ENOENT, once configfs has checked the link's directory
        return None


def mount(ops: SimfsOperations, mountpoint: str, foreground: bool = True,
          allow_other: bool = False, debug: bool = False) -> None:
    """Run the FUSE loop (returns when unmounted).

    No ``use_ino``: libfuse then reports its node ids as st_ino, which KernelCache needs.
    """
    cache = KernelCache.supported(fuse._libfuse)  # no notifications: no caching either
    fuse.FUSE(ops, mountpoint, raw_fi=True, foreground=foreground, nothreads=False,
              fsname="configfs", subtype="simfs", default_permissions=False,
              attr_timeout=ATTR_TIMEOUT if cache else 0,
              entry_timeout=ENTRY_TIMEOUT if cache else 0, negative_timeout=0,
              # O_TRUNC travels in OPEN: no SETATTR round trip per `echo > attr`
              atomic_o_trunc=True,
              allow_other=allow_other, debug=debug)


__all__ = ["KernelCache", "SimfsOperations", "mount", "st"]
