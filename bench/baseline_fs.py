"""The floor: the smallest fusepy filesystem that mounts with simfs's options.

It serves a fixed little tree (``target/core/rd_mcp_0/dev/attrib/<file>``, plus
``control``, ``enable``, ``info``) whose files hold a few bytes in a dict. ``mkdir``
of ``target/core/<hba>/<dev>`` makes another such device directory, with ``attrib/``
and ``wwn/`` as default groups (``rmdir`` takes it whole);
elsewhere it makes an empty directory, and creating a file makes it (so the seed's
script runs against it too). Every request does
the least work fusepy allows, so a cycle against it measures FUSE itself
(kernel round trips + libfuse + fusepy's ctypes marshalling + the GIL), which
bounds what simfs can do over the same binding.

Options, by default, are simfs's before kernel caching: raw_fi, multithreaded, attr/entry/
negative timeouts 0, ``direct_io`` set on every open, ``use_ns``. ``--pin`` adds
simfs's thread-state pin (``simfs.daemon.fuse_adapter.ThreadStatePins``), so the floor can
be priced with and without it. ``--cache`` is "plain fusepy, default caching": no timeout
options (libfuse's defaults, 1 s), no ``direct_io`` (the page cache, dropped at each open),
the floor simfs's cached mount is measured against. ``--cache --direct-io``: the same with
``direct_io`` on every open, as simfs's attribute files have (a diagnostic: it showed that
direct I/O is not what made simfs's cycles wait). The attribute files also sit at the
root (``/emulate_write_cache`` ...), for the floor at path depth 1.

Run: ``python3 bench/baseline_fs.py [--pin] [--cache [--direct-io]] MOUNTPOINT`` (foreground;
fusermount -u to stop).
``BASELINE_BINDING=mfusepy`` serves it through mfusepy instead (with
``FUSE_LIBRARY_NAME=fuse3`` for libfuse 3), to price the binding itself.
"""

from __future__ import annotations

import errno
import os
import stat as st
import sys
import threading
import time

if os.environ.get("BASELINE_BINDING") == "mfusepy":  # measured as an alternative binding
    import mfusepy as fuse  # type: ignore[import-not-found]
else:
    try:
        import fuse
    except ModuleNotFoundError:  # Debian's python3-fusepy names the same module "fusepy"
        import fusepy as fuse  # type: ignore[no-redef]

ATTRS = ("emulate_write_cache", "queue_depth", "block_size", "emulate_tpu")
DEV_FILES = ("control", "enable", "info")


class BaselineFS(fuse.Operations):
    use_ns = True

    def __init__(self, direct_io: bool = True) -> None:
        self.direct_io = int(direct_io)
        now = int(time.time() * 1e9)
        self.dirs: dict[str, dict[str, bool]] = {"/": {}}  # dir -> {name: is_dir}
        self.files: dict[str, bytes] = {}
        self._mu = threading.Lock()  # not "lock": fuse.Operations has a lock() op
        self._dir_stat = {"st_mode": st.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0,
                          "st_uid": 0, "st_gid": 0, "st_atime": now, "st_mtime": now,
                          "st_ctime": now}
        self._file_stat = dict(self._dir_stat, st_mode=st.S_IFREG | 0o644, st_nlink=1,
                               st_size=4096)
        for d in ("/target", "/target/core", "/target/core/rd_mcp_0"):
            self._add_dir(d)
        self._add_device("/target/core/rd_mcp_0/dev")
        for a in ATTRS:  # the same files at depth 1
            self._add_file(f"/{a}", b"1\n")

    def _add_dir(self, path: str) -> None:
        parent, name = path.rsplit("/", 1)
        self.dirs[parent or "/"][name] = True
        self.dirs[path] = {}

    def _add_file(self, path: str, data: bytes) -> None:
        parent, name = path.rsplit("/", 1)
        self.dirs[parent or "/"][name] = False
        self.files[path] = data

    def _add_device(self, path: str) -> None:
        self._add_dir(path)
        self._add_dir(path + "/attrib")
        self._add_dir(path + "/wwn")
        for f in DEV_FILES:
            self._add_file(f"{path}/{f}", b"0\n")
        for a in ATTRS:
            self._add_file(f"{path}/attrib/{a}", b"1\n")

    # -- metadata ---------------------------------------------------------------------
    def getattr(self, path, fh=None):
        if path in self.dirs:
            return self._dir_stat
        if path in self.files:
            return self._file_stat
        raise fuse.FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        try:
            return [".", ".."] + list(self.dirs[path])
        except KeyError:
            raise fuse.FuseOSError(errno.ENOENT) from None

    def mkdir(self, path, mode):
        with self._mu:
            if path in self.dirs or path in self.files:
                raise fuse.FuseOSError(errno.EEXIST)
            if path.startswith("/target/core/") and path.count("/") == 4:
                self._add_device(path)  # a device directory, with default groups as configfs
            else:
                self._add_dir(path)
        return 0

    def rmdir(self, path):
        with self._mu:
            if path not in self.dirs:
                raise fuse.FuseOSError(errno.ENOENT)
            self._drop(path)
        return 0

    def _drop(self, path: str) -> None:
        for name, is_dir in list(self.dirs[path].items()):
            if is_dir:
                self._drop(f"{path}/{name}")
            else:
                del self.files[f"{path}/{name}"]
        del self.dirs[path]
        parent, name = path.rsplit("/", 1)
        del self.dirs[parent or "/"][name]

    def create(self, path, mode, fi=None):
        # The seed script's `echo > file` on names this tree lacks: make the file.
        with self._mu:
            if path not in self.files:
                self._add_file(path, b"")
        fi.direct_io = self.direct_io
        return 0

    def truncate(self, path, length, fh=None):
        return 0

    # -- files --------------------------------------------------------------------------
    def open(self, path, fi):
        if path not in self.files:
            raise fuse.FuseOSError(errno.ENOENT)
        fi.direct_io = self.direct_io
        return 0

    def read(self, path, size, offset, fi):
        return self.files[path][offset:offset + size]

    def write(self, path, data, offset, fi):
        self.files[path] = bytes(data)
        return len(data)

    def flush(self, path, fi):
        return 0

    def release(self, path, fi):
        return 0

    def statfs(self, path):
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}


class PinnedBaselineFS(BaselineFS):
    def __init__(self, direct_io: bool = True) -> None:
        super().__init__(direct_io)
        from simfs.daemon.fuse_adapter import ThreadStatePins
        self._pins = ThreadStatePins()

    def __call__(self, op, *args):
        self._pins.pin()
        return super().__call__(op, *args)


def main(argv: list[str]) -> int:
    pin, cache = "--pin" in argv, "--cache" in argv
    dio = "--direct-io" in argv
    argv = [a for a in argv if a not in ("--pin", "--cache", "--direct-io")]
    if len(argv) != 1:
        print("usage: baseline_fs.py [--pin] [--cache [--direct-io]] MOUNTPOINT",
              file=sys.stderr)
        return 2
    ops = (PinnedBaselineFS if pin else BaselineFS)(direct_io=not cache or dio)
    timeouts = {} if cache else dict(attr_timeout=0, entry_timeout=0, negative_timeout=0)
    fuse.FUSE(ops, argv[0], raw_fi=True, foreground=True, nothreads=False,
              fsname="baselinefs", subtype="baseline", default_permissions=False, **timeouts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
