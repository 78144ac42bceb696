"""user:file — blocks in a file, as tcmu-runner's file handler keeps them.

dev_config ``file/PATH``: the file is opened read/write and created (mode 0600) when missing;
reads past its end return zeros; it is never truncated or grown to the device size (it
stays sparse). Failed system calls end the command with MEDIUM ERROR (the handler API's
default for an OSError).
"""

from __future__ import annotations

import errno
import os
from typing import Optional

from simfs.core.storage import punch_hole
from simfs_plugins.handlers import Device, Handler


class FileHandler(Handler):
    subtype = "file"
    name = "File-backed Handler"
    cfg_desc = "The path to the file to use as a backstore."

    def check_config(self, cfgstring: str) -> Optional[str]:
        # tcmu-runner's file handler checks nothing here; simfs tells targetcli early what
        # open() would refuse
        path = cfgstring.partition("/")[2]
        if not path:
            return "no path after file/"
        if os.path.isdir(path):
            return f"{path} is a directory"
        parent = os.path.dirname(os.path.abspath(path)) or "/"
        if not os.path.exists(path) and not os.path.isdir(parent):
            return f"{parent} does not exist"
        return None

    def open(self, dev: Device) -> None:
        path = dev.config
        if not path:
            dev.log.err("no configuration found in cfgstring")
            raise OSError(errno.EINVAL, "no path")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            dev.log.err(f"could not open {path}: {e.strerror}")
            raise
        dev.private = fd

    def close(self, dev: Device) -> None:
        if isinstance(dev.private, int):
            os.close(dev.private)
            dev.private = None

    def read(self, dev: Device, offset: int, length: int) -> bytes:
        try:
            return os.pread(dev.private, length, offset)  # short at EOF: zeros follow
        except OSError as e:
            dev.log.err(f"read failed: {e.strerror}")
            raise

    def write(self, dev: Device, offset: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(dev.private, view, offset)
                view, offset = view[n:], offset + n
        except OSError as e:
            dev.log.err(f"write failed: {e.strerror}")
            raise

    def flush(self, dev: Device) -> None:
        try:
            os.fsync(dev.private)
        except OSError:
            dev.log.err("sync failed")
            raise

    def unmap(self, dev: Device, offset: int, length: int) -> None:
        # simfs's addition: punch a hole so unmapped blocks read back as zeros
        try:
            punch_hole(dev.private, offset, length)
        except OSError as e:
            dev.log.err(f"unmap failed: {e.strerror}")
            raise

    def reconfig(self, dev: Device, key: str, value) -> None:
        if key != "dev_size":  # the file grows as it is written; nothing to do for a size
            raise OSError(errno.EOPNOTSUPP, key)


HANDLER = FileHandler()
