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
            self._known = threading._active  # type: ignore[attr-defined]  # threads Python started
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
        self._handles_lock = threading.Lock()
        self._on_ready = on_ready
        self._on_destroy = on_destroy
        self._pins = ThreadStatePins()

    def __call__(self, op, *args):
        self._pins.pin()
        trace = self.tree.trace  # simfs trace: who asked, while someone listens
        if trace is not None:
            trace.local.pid = _pid()
        try:
            return super().__call__(op, *args)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not take the mount down
            self.log.err(f"simfs: internal error in {op}{args[:1]}: {type(e).__name__}: {e}")
            raise fuse.FuseOSError(errno.EIO) from e

    # -- lifecycle --------------------------------------------------------------------
    def init(self, path):
        if self._on_ready:
            self._on_ready()

    def destroy(self, path):
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
        # O_TRUNC on an attribute: configfs accepts it and stores nothing.
        self.tree.getattr(path)
        return 0

    # -- namespace --------------------------------------------------------------------
    def mkdir(self, path, mode):
        self.tree.mkdir(path)
        return 0

    def rmdir(self, path):
        self.tree.rmdir(path)
        return 0

    def symlink(self, target, source):
        """``ln -s source target``: configfs resolves the source from the caller's cwd."""
        self.tree.symlink(target, self._resolve_link_target(source))
        return 0

    def unlink(self, path):
        self.tree.unlink(path)
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
        handle = self.tree.open(path, fi.flags, _pid())
        with self._handles_lock:
            fh = next(self._next_fh)
            self._handles[fh] = handle
        fi.fh = fh
        fi.direct_io = 1  # attributes are generated per read: never from the page cache
        return 0

    def read(self, path, size, offset, fi):
        return self._handles[fi.fh].read(size, offset)

    def write(self, path, data, offset, fi):
        return self._handles[fi.fh].write(data, _pid())

    def flush(self, path, fi):
        return 0

    def release(self, path, fi):
        with self._handles_lock:
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
    """Run the FUSE loop (returns when unmounted)."""
    fuse.FUSE(ops, mountpoint, raw_fi=True, foreground=foreground, nothreads=False,
              fsname="configfs", subtype="simfs", default_permissions=False,
              attr_timeout=0, entry_timeout=0, negative_timeout=0,
              allow_other=allow_other, debug=debug)


__all__ = ["SimfsOperations", "mount", "st"]
