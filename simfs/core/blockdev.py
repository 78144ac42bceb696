"""Facts about a real block device, read the way the kernel's queue limits expose them."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
BLKPBSZGET = 0x127B


@dataclass
class BlockDevice:
    """An open block device: its identity, size and queue limits."""

    fd: int
    path: str
    major: int
    minor: int
    name: str
    size: int
    logical_block_size: int
    physical_block_size: int
    max_hw_sectors: int  # in 512-byte units
    nr_requests: int
    discard_max_bytes: int
    discard_granularity: int
    discard_alignment: int
    write_zeroes_max_bytes: int
    rotational: bool

    def refresh_size(self) -> int:
        buf = fcntl.ioctl(self.fd, BLKGETSIZE64, b"\0" * 8)
        self.size = struct.unpack("Q", buf)[0]
        return self.size


def _queue_value(sysdir: Path, name: str, default: int = 0) -> int:
    try:
        return int((sysdir / "queue" / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _sysfs_dir(major: int, minor: int) -> Path:
    d = Path(f"/sys/dev/block/{major}:{minor}")
    # A partition keeps its queue in the parent disk's directory.
    if not (d / "queue").exists() and (d / "partition").exists():
        return d.resolve().parent
    return d


def is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def describe(fd: int, path: str) -> BlockDevice:
    """Read size, block sizes and queue limits of the block device open on ``fd``."""
    st = os.fstat(fd)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    sysdir = _sysfs_dir(major, minor)
    try:
        name = Path(f"/sys/dev/block/{major}:{minor}").resolve().name
    except OSError:
        name = os.path.basename(path)
    size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
    lbs = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))[0]
    try:
        pbs = struct.unpack("I", fcntl.ioctl(fd, BLKPBSZGET, b"\0" * 4))[0]
    except OSError:
        pbs = lbs
    return BlockDevice(
        fd=fd, path=path, major=major, minor=minor, name=name, size=size,
        logical_block_size=lbs, physical_block_size=pbs,
        max_hw_sectors=_queue_value(sysdir, "max_hw_sectors_kb", 512) * 2,
        nr_requests=_queue_value(sysdir, "nr_requests", 128),
        discard_max_bytes=_queue_value(sysdir, "discard_max_bytes"),
        discard_granularity=_queue_value(sysdir, "discard_granularity"),
        discard_alignment=_queue_value(sysdir, "discard_alignment"),
        write_zeroes_max_bytes=_queue_value(sysdir, "write_zeroes_max_bytes"),
        rotational=bool(_queue_value(sysdir, "rotational", 1)),
    )


def configure_unmap_from_queue(dev, bd: BlockDevice) -> bool:
    """target_configure_unmap_from_queue: copy the queue's discard limits into attrib/."""
    if not bd.discard_max_bytes:
        return False
    a = dev.attrib
    bs = a.block_size or a.hw_block_size or bd.logical_block_size
    a.max_unmap_lba_count = (bd.discard_max_bytes // 512) >> max(0, bs.bit_length() - 10)
    a.max_unmap_block_desc_count = 1
    a.unmap_granularity = bd.discard_granularity // bs
    a.unmap_granularity_alignment = bd.discard_alignment // bs
    return True
