"""fileio: blocks in a file, or in a block device opened as a file (target_core_file.c).

The file is opened read/write, created mode 0600 if missing, never truncated or
extended to ``fd_dev_size`` (it stays sparse), and opened O_DSYNC unless
``fd_buffered_io=1``.
"""

from __future__ import annotations

import errno
import os
import stat

from simfs.configfs import ConfigfsError
from simfs.core.backend import ALL_EXEC_OPS, Backend, StorageDevice
from simfs.core.blockdev import configure_unmap_from_queue, describe
from simfs.core.kparse import Token, kstrtoull, match_int, tokenize
from simfs.core.storage import FdStorage

FD_VERSION = "4.0"
FD_MAX_DEV_NAME = 256
FD_MAX_DEVICE_QUEUE_DEPTH = 128
FD_BLOCKSIZE = 512
FD_MAX_BYTES = 8388608

TOKENS = [Token("fd_dev_name", "fd_dev_name=%s"), Token("fd_dev_size", "fd_dev_size=%s"),
          Token("fd_buffered_io", "fd_buffered_io=%d"), Token("fd_async_io", "fd_async_io=%d")]


class FdHost:
    def __init__(self, host_id: int):
        self.host_id = host_id
        self.dev_id_count = 0


class FileioDevice(StorageDevice):
    exec_ops = ALL_EXEC_OPS
    #: fd_execute_rw refuses a single I/O above FD_MAX_BYTES (iovec count limit)
    max_io_bytes = FD_MAX_BYTES

    def __init__(self, dev):
        super().__init__(dev)
        self.dev_name = ""
        self.dev_size = 0
        self.has_path = False
        self.has_size = False
        self.buffered = False
        self.async_io = False
        self.dev_id = 0
        self.block_size = FD_BLOCKSIZE
        self.bd = None
        ptr = dev.core.profile.kptr(dev.name)
        dev.log.debug(f"FILEIO: Allocated fd_dev for {ptr}")

    @property
    def host(self) -> FdHost:
        return self.dev.hba.private

    def set_configfs_dev_params(self, buf: bytes) -> None:
        log, kernel = self.log, self.dev.core.kernel
        tokens = kernel.value("fileio_control_tokens")
        strict = kernel.has("control_needs_known_key")
        params = 0
        for key, arg, _ in tokenize(buf, TOKENS):
            if key not in tokens:
                continue
            if key == "fd_dev_name":
                self.dev_name = arg[:FD_MAX_DEV_NAME - 1]
                self.has_path = True
                log.debug(f"FILEIO: Referencing Path: {self.dev_name}")
            elif key == "fd_dev_size":
                try:
                    self.dev_size = kstrtoull(arg, 0)
                except ConfigfsError as e:
                    if strict:
                        # v3.0 logs the failure and goes on with the next key
                        log.err("strict_strtoull() failed for fd_dev_size=")
                        continue
                    raise ConfigfsError(e.errno, "kstrtoull() failed for fd_dev_size=") from None
                self.has_size = True
                log.debug(f"FILEIO: Referencing Size: {self.dev_size} bytes")
            elif key == "fd_buffered_io":
                value = match_int(arg)
                if value != 1:
                    raise ConfigfsError(errno.EINVAL, f"bogus fd_buffered_io={value} value")
                self.buffered = True
                log.debug("FILEIO: Using buffered I/O operations for struct fd_dev")
            elif key == "fd_async_io":
                value = match_int(arg)
                if value != 1:
                    raise ConfigfsError(errno.EINVAL, f"bogus fd_async_io={value} value")
                self.async_io = True
                log.debug("FILEIO: Using async I/O operations for struct fd_dev")
            params += 1
        if not params and strict:
            raise ConfigfsError(errno.EINVAL, None)  # v3.0: "params ? count : -EINVAL"

    def _open(self, path: str) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_LARGEFILE
        if self.buffered:
            self.log.debug("FILEIO: Disabling O_DSYNC, using buffered FILEIO")
        else:
            flags |= os.O_DSYNC
        try:
            return os.open(path, flags, 0o600)
        except OSError as e:
            raise ConfigfsError(e.errno, f"filp_open({self.dev_name}) failed") from None

    def configure_device(self) -> None:
        if not self.has_path:
            raise ConfigfsError(errno.EINVAL, "Missing fd_dev_name=")
        self._configure_fd(self._open(self.dev_name))

    def _configure_fd(self, fd: int) -> None:
        dev, a, log = self.dev, self.dev.attrib, self.log
        st = os.fstat(fd)
        try:
            if stat.S_ISBLK(st.st_mode):
                bd = describe(fd, self.dev_name)
                self.bd = bd
                self.block_size = bd.logical_block_size
                size = bd.size - self.block_size
                if dev.legacy:
                    log.info(f"FILEIO: Claiming {dev.core.profile.kptr(self)} Major:Minor - "
                             f"{bd.major}:{bd.minor}")
                    log.info(f"FILEIO: Using size: {size} bytes from struct block_device "
                             f"blocks: {size // self.block_size} hardsect_size: "
                             f"{self.block_size}")
                    self.dev_size = size
                else:
                    log.debug(f"FILEIO: Using size: {size} bytes from struct block_device "
                              f"blocks: {size // self.block_size} logical_block_size: "
                              f"{self.block_size}")
                    a.block_size = self.block_size
                a.max_write_same_len = 0xFFFF
                a.is_nonrot = int(not bd.rotational)
            else:
                if stat.S_ISDIR(st.st_mode):
                    raise ConfigfsError(errno.EISDIR, f"filp_open({self.dev_name}) failed")
                if not self.has_size:
                    raise ConfigfsError(errno.EINVAL, "FILEIO: Missing fd_dev_size= parameter, "
                                        "and no backing struct block_device")
                self.block_size = FD_BLOCKSIZE
                a.max_write_same_len = 0x1000
        except Exception:
            os.close(fd)
            raise
        a.hw_block_size = self.block_size
        a.hw_max_sectors = 1024 if dev.legacy else FD_MAX_BYTES // self.block_size
        a.max_sectors = 1024
        depth = dev.core.kernel.value("virtual_queue_depth")
        a.hw_queue_depth = depth[0] if depth else FD_MAX_DEVICE_QUEUE_DEPTH
        if self.buffered:
            a.emulate_write_cache = 1
            log.debug("FILEIO: Forcing setting of emulate_write_cache=1 with "
                      "FDBD_HAS_BUFFERED_IO_WCE")
        self.storage = FdStorage(fd, sync_writes=not self.buffered,
                                 is_block=stat.S_ISBLK(st.st_mode))
        host = self.host
        self.dev_id = host.dev_id_count
        host.dev_id_count += 1
        if not dev.legacy:
            log.debug(f"CORE_FILE[{host.host_id}] - Added TCM FILEIO Device ID: {self.dev_id} "
                      f"at {self.dev_name}, {self.dev_size} total bytes")

    def attach_fd(self, fd_path: str, fd_num: int) -> None:
        try:
            self.dev_name = os.readlink(fd_path)
        except OSError:
            raise ConfigfsError(errno.EBADF, f"FILEIO: descriptor {fd_num} of the writer is "
                                "not open") from None
        self.has_path = True
        fd = self._open(fd_path)
        self._configure_fd(fd)

    def legacy_activation(self) -> tuple[str, str | None]:
        host, vendor = self.host, self.dev.core.kernel.value("backend_info_vendor")
        return (f"CORE_FILE[{host.host_id}] - Activating Device with TCQ: 0 at FILEIO Device "
                f"ID: {self.dev_id}",
                f"CORE_FILE[{host.host_id}] - Added {vendor} FILEIO Device ID: {self.dev_id} at "
                f"{self.dev_name}, {self.dev_size} total bytes")

    def legacy_release(self) -> str | None:
        bd = self.bd
        if bd is None:
            return None
        return f"FILEIO: Releasing Major:Minor - {bd.major}:{bd.minor}"

    def destroy_device(self) -> None:
        if self.storage is not None:
            self.storage.close()
            self.storage = None
        self.free_prot()

    def configure_unmap(self) -> bool:
        """fd_configure_unmap: a block device's queue limits, or fixed limits for a file."""
        if self.storage is None:
            return False
        if self.bd is not None:
            return configure_unmap_from_queue(self.dev, self.bd)
        a = self.dev.attrib
        a.max_unmap_lba_count = 0x2000  # UNMAP emulation limited to 8k LBAs per command
        a.max_unmap_block_desc_count = 1
        a.unmap_granularity = 1
        a.unmap_granularity_alignment = 0
        return True

    # T10-PI: "<fd_dev_name>.protection", 8 bytes per block (fd_init_prot / fd_format_prot)
    def init_prot(self) -> None:
        if self.bd is not None:
            raise ConfigfsError(errno.ENOSYS, "FILEIO Protection emulation only supported on "
                                "!S_ISBLK")
        if getattr(self, "prot_fd", None) is not None:
            return
        path = f"{self.dev_name}.protection"
        flags = os.O_RDWR | os.O_CREAT | os.O_LARGEFILE | (0 if self.buffered else os.O_DSYNC)
        try:
            self.prot_fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise ConfigfsError(e.errno, f"filp_open({path}) failed") from None

    def free_prot(self) -> None:
        fd, self.prot_fd = getattr(self, "prot_fd", None), None
        if fd is not None:
            os.close(fd)

    def format_prot(self) -> None:
        if getattr(self, "prot_fd", None) is None:
            raise ConfigfsError(errno.ENODEV, "Unable to locate fd_dev->fd_prot_file")
        total = (self.get_blocks() + 1) * 8
        self.log.debug(f"Using FILEIO protection buffer of {min(total, 1 << 20)} bytes")
        chunk = b"\xff" * min(total, 1 << 20)
        off = 0
        while off < total:
            n = min(len(chunk), total - off)
            os.pwrite(self.prot_fd, chunk[:n], off)
            off += n

    def show_configfs_dev_params(self) -> str:
        kernel = self.dev.core.kernel
        text = (f"{kernel.value('backend_info_vendor')} FILEIO ID: {self.dev_id}        File: "
                f"{self.dev_name}  Size: {self.dev_size}  ")
        if kernel.value("fileio_info_tail") == "claimed":
            # a block device is claimed by fileio itself; a plain file has nothing to say
            return text + ("CLAIMED: FILEIO" if self.bd is not None else "") + "\n"
        mode = "Buffered-WCE" if self.buffered else "O_DSYNC"
        return text + f"Mode: {mode} Async: {int(self.async_io)}\n"

    def get_blocks(self) -> int:
        size = self.dev_size
        if self.bd is not None and self.storage is not None:
            size = self.bd.refresh_size()
        bs = self.dev.attrib.block_size or FD_BLOCKSIZE
        return (size - bs) // bs

    # data path: StorageDevice's, on self.storage

    # failure log lines (fd_execute_rw, fd_execute_unmap, fd_execute_sync_cache, ...)
    def log_io_too_large(self, length: int) -> None:
        self.log.err(f"FILEIO: Not able to process I/O of {length} bytes due toFD_MAX_BYTES: "
                     f"{FD_MAX_BYTES} iovec count limitation")

    def log_rw_error(self, write: bool, err: int, nbytes: int, exc: Exception) -> None:
        if write:
            self.log.err(f"fd_do_rw() write returned {err}")
        elif self.bd is not None:
            self.log.err(f"fd_do_rw() returned {err}, expecting {nbytes} for S_ISBLK")
        else:
            self.log.err(f"fd_do_rw() returned {err} for non S_ISBLK")

    def log_flush_error(self, err: int) -> None:
        self.log.err(f"FILEIO: vfs_fsync_range() failed: {err}")

    def log_discard_error(self, err: int) -> None:
        if self.bd is not None:
            self.log.warn(f"FILEIO: blkdev_issue_discard() failed: {err}")
        else:
            self.log.warn(f"FILEIO: fallocate() failed: {err}")

    def log_write_same_error(self, err: int) -> None:
        self.log.err(f"vfs_iter_write() returned {err} for write same")

    def describe_storage(self) -> str:
        return self.dev_name


class FileioBackend(Backend):
    name = "fileio"
    kernel_module = "target_core_file"
    inquiry_prod = "FILEIO"
    inquiry_rev = FD_VERSION
    v3_hba_type = 7

    def attach_hba(self, hba) -> None:
        hba.private = FdHost(hba.host_id)
        stack = hba.core.profile.core_version
        if hba.core.profile.legacy:
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Linux-iSCSI.org FILEIO HBA Driver 3.0 on "
                         f"Generic Target Core Stack {stack}")
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Attached FILEIO HBA: {hba.host_id} to "
                         "Generic Target Core with TCQ Depth: 256 MaxSectors: 1024")
            return
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - TCM FILEIO HBA Driver {FD_VERSION} on Generic "
                      f"Target Core Stack {stack}")
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Attached FILEIO HBA: {hba.host_id} to Generic")

    def detach_hba(self, hba) -> None:
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Detached FILEIO HBA: {hba.host_id} from "
                      "Generic Target Core")

    def alloc_device(self, dev) -> FileioDevice:
        return FileioDevice(dev)


BACKEND = FileioBackend()
