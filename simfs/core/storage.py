"""Data-path helpers shared by backends that keep data in a file descriptor or in RAM."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import struct

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
BLKDISCARD = 0x1277
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a range of a regular file (what fileio does for UNMAP)."""
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def discard(fd: int, offset: int, length: int) -> None:
    """BLKDISCARD on a block device (iblock UNMAP)."""
    fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", offset, length))


class FdStorage:
    """Blocks kept in an open file or block device; short reads past EOF read as zeros."""

    def __init__(self, fd: int, sync_writes: bool, is_block: bool):
        self.fd = fd
        self.sync_writes = sync_writes
        self.is_block = is_block

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def readinto(self, offset: int, view: memoryview) -> None:
        n = os.preadv(self.fd, [view], offset)
        if n < len(view):
            view[n:] = bytes(len(view) - n)

    def write(self, offset: int, data, fua: bool = False) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        if fua and not self.sync_writes:
            os.fdatasync(self.fd)

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def unmap(self, offset: int, length: int) -> None:
        if self.is_block:
            discard(self.fd, offset, length)
        else:
            punch_hole(self.fd, offset, length)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RamStorage:
    """RAM that costs nothing until written: an anonymous, unreserved mapping.

    Untouched pages read as zeros without being allocated; UNMAP gives pages back.
    """

    def __init__(self, size: int):
        self.size = size
        try:
            self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                                 | MAP_NORESERVE)
        except (OSError, OverflowError, ValueError) as e:
            raise OSError(errno.ENOMEM, f"cannot map {size} bytes: {e}") from None

    def read(self, offset: int, length: int) -> bytes:
        return self.map[offset:offset + length]

    def readinto(self, offset: int, view: memoryview) -> None:
        view[:] = memoryview(self.map)[offset:offset + len(view)]

    def write(self, offset: int, data, fua: bool = False) -> None:
        self.map[offset:offset + len(data)] = data

    def flush(self) -> None:
        pass

    def unmap(self, offset: int, length: int) -> None:
        start = (offset + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        end = (offset + length) // mmap.PAGESIZE * mmap.PAGESIZE
        if start > offset:
            self.map[offset:min(start, offset + length)] = bytes(min(start, offset + length)
                                                                 - offset)
        if end > start:
            self.map.madvise(mmap.MADV_DONTNEED, start, end - start)
        if end >= start and offset + length > end:
            self.map[end:offset + length] = bytes(offset + length - end)

    def close(self) -> None:
        self.map.close()
