"""iblock: blocks on a real block device, claimed exclusively (target_core_iblock.c).

Test it with loop devices (``losetup``). ``O_EXCL`` on a block device is Linux's
claim: a mounted or otherwise claimed device answers EBUSY, as in the kernel.
"""

from __future__ import annotations

import errno
import os
import stat

from simfs.configfs import ConfigfsError
from simfs.core.backend import ALL_EXEC_OPS, TRANSPORT_FLAG_PASSTHROUGH_PGR, Backend, StorageDevice
from simfs.core.blockdev import BlockDevice, configure_unmap_from_queue, describe
from simfs.core.kparse import cstr, Token, kstrtoul, tokenize
from simfs.core.storage import FdStorage

IBLOCK_VERSION = "4.0"
SE_UDEV_PATH_LEN = 512

TOKENS = [Token("udev_path", "udev_path=%s"), Token("readonly", "readonly=%d"),
          Token("force", "force=%d")]


class IblockDevice(StorageDevice):
    exec_ops = ALL_EXEC_OPS
    #: iblock_execute_write_same needs the payload's scatterlist
    write_same_needs_payload = True

    def __init__(self, dev):
        super().__init__(dev)
        self.udev_path = ""
        self.has_udev_path = False
        self.readonly = False
        self.bd: BlockDevice | None = None
        dev.log.debug(f"IBLOCK: Allocated ib_dev for {dev.name}")

    def set_configfs_dev_params(self, buf: bytes) -> None:
        if self.dev.legacy:
            self._set_v3_params(buf)
            return
        for key, arg, _ in tokenize(buf, TOKENS):
            if key == "udev_path":
                if self.bd is not None:
                    raise ConfigfsError(errno.EEXIST,
                                        "Unable to set udev_path= while ib_dev->ibd_bd exists")
                self.udev_path = arg[:SE_UDEV_PATH_LEN - 1]
                self.has_udev_path = True
                self.log.debug(f"IBLOCK: Referencing UDEV path: {self.udev_path}")
            elif key == "readonly":
                try:
                    value = kstrtoul(arg, 0)
                except ConfigfsError as e:
                    raise ConfigfsError(e.errno, "kstrtoul() failed for readonly=") from None
                self.readonly = bool(value)
                self.log.debug(f"IBLOCK: readonly: {int(self.readonly)}")

    # -- v3.0: the block device named by major/minor ---------------------------------------
    def _set_v3_params(self, buf: bytes) -> None:
        """v3.0 matched each ``key=value`` by substring: ``iblock_major=`` is "major"."""
        params = 0
        for item in cstr(buf).replace("\n", ",").split(","):
            key, eq, value = item.partition("=")
            if not eq:
                break
            value = value.strip()
            if "udev_path" in key:
                self.udev_path, self.has_udev_path = value[:SE_UDEV_PATH_LEN - 1], True
                self.log.info(f"IBLOCK: Referencing UDEV path: {self.udev_path}")
            elif "major" in key or "minor" in key or "force" in key:
                what = "major" if "major" in key else "minor" if "minor" in key else "force"
                try:
                    number = kstrtoul(value, 0)
                except ConfigfsError:
                    self.log.err(f"tcm_strict_strtoul() failed for {what}=")
                    break
                if what == "force":
                    self.log.info(f"IBLOCK: Set force={number}")
                else:
                    setattr(self, f"v3_{what}", number)
                    self.log.info(f"IBLOCK: Referencing {what.capitalize()}: {number}")
            else:
                break
            params += 1
        if not params:
            raise ConfigfsError(errno.EINVAL)

    def _v3_node(self) -> str:
        """A block node for v3.0's major:minor (the kernel looked the device up directly)."""
        major, minor = getattr(self, "v3_major", None), getattr(self, "v3_minor", None)
        if major is None or minor is None:
            raise ConfigfsError(errno.EINVAL, "Missing iblock_major= and iblock_minor= "
                                "parameters")
        state_dir = self.dev.core.state_dir
        node = os.path.join(str(state_dir) if state_dir else "/tmp",
                            f"iblock-{major}-{minor}")
        if not os.path.exists(node):
            try:
                os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
            except OSError as e:
                raise ConfigfsError(e.errno, f"IBLOCK: Unable to locate block device "
                                    f"{major}:{minor}") from None
        self.log.info(f"IBLOCK: Claiming {self.dev.core.profile.kptr(self)} Major:Minor - "
                      f"{major}:{minor}")
        return node

    def configure_device(self) -> None:
        if self.dev.legacy and not self.has_udev_path:
            self._configure_path(self._v3_node())
            return
        if not self.has_udev_path:
            raise ConfigfsError(errno.EINVAL, "Missing udev_path= parameters for IBLOCK")
        self.log.debug(f"IBLOCK: Claiming struct block_device: {self.udev_path}")
        self._configure_path(self.udev_path)

    def _configure_path(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as e:
            raise ConfigfsError(e.errno, f"IBLOCK: cannot open {path}: {e.strerror}") from None
        if not stat.S_ISBLK(st.st_mode):
            raise ConfigfsError(errno.ENOTBLK, f"IBLOCK: {path} is not a block device")
        flags = (os.O_RDONLY if self.readonly else os.O_RDWR) | os.O_EXCL | os.O_LARGEFILE
        try:
            fd = os.open(path, flags)
        except OSError as e:
            raise ConfigfsError(e.errno, f"IBLOCK: claiming {path} failed: {e.strerror}") \
                from None
        self._configure_fd(fd, path)

    def _configure_fd(self, fd: int, path: str) -> None:
        dev, a = self.dev, self.dev.attrib
        try:
            bd = describe(fd, path)
        except OSError as e:
            os.close(fd)
            raise ConfigfsError(e.errno, f"IBLOCK: cannot query {path}: {e.strerror}") from None
        self.bd = bd
        if self.readonly:
            dev.read_only = True
        lbs = bd.logical_block_size
        a.hw_block_size = lbs
        a.hw_max_sectors = bd.max_hw_sectors * 512 // lbs
        kernel = dev.core.kernel
        cap = kernel.value("iblock_max_sectors_cap")
        if cap:
            a.hw_max_sectors = min(a.hw_max_sectors, cap)
        a.max_sectors = min(a.hw_max_sectors, 1024)
        depth = kernel.value("virtual_queue_depth")
        a.hw_queue_depth = depth[0] if depth else bd.nr_requests
        a.max_write_same_len = (bd.write_zeroes_max_bytes // 512) or 0xFFFF
        a.is_nonrot = int(not bd.rotational)
        self.storage = FdStorage(fd, sync_writes=False, is_block=True)
        if dev.legacy:
            log = self.log
            log.info(f"IBLOCK: Claiming struct block_device: {dev.core.profile.kptr(bd)}")
            log.info(f"IBLOCK: Created bio_set() for major/minor: {bd.major}:{bd.minor}")

    def configure_unmap(self) -> bool:
        return self.bd is not None and configure_unmap_from_queue(self.dev, self.bd)

    def get_write_cache(self) -> bool:
        try:
            with open(f"/sys/dev/block/{self.bd.major}:{self.bd.minor}/queue/write_cache") as f:
                return f.read().startswith("write back")
        except (OSError, AttributeError):
            return False

    def attach_fd(self, fd_path: str, fd_num: int) -> None:
        try:
            path = os.readlink(fd_path)
        except OSError:
            raise ConfigfsError(errno.EBADF, f"IBLOCK: descriptor {fd_num} of the writer is "
                                "not open") from None
        if not stat.S_ISBLK(os.stat(fd_path).st_mode):
            raise ConfigfsError(errno.ENODEV, "IBLOCK: S_ISBLK(inode->i_mode) failed for file "
                                f"descriptor: {fd_num}")
        self.udev_path = path
        self._configure_path(fd_path)

    def legacy_activation(self) -> tuple[str, str | None]:
        bd = self.bd
        return (f"CORE_iBLOCK[{self.dev.hba.host_id}] - Activating Device with TCQ: 0 at "
                f"Major: {bd.major} Minor {bd.minor}", None)

    def legacy_release(self) -> str | None:
        bd = self.bd
        if bd is None:
            return None
        return f"IBLOCK: Releasing Major:Minor - {bd.major}:{bd.minor}"

    def destroy_device(self) -> None:
        if self.storage is not None:
            self.storage.close()
            self.storage = None
        self.bd = None

    def show_configfs_dev_params(self) -> str:
        bd = self.bd
        if self.dev.legacy:
            text = f"iBlock device: {bd.name}" if bd is not None else ""
            text += f"  UDEV PATH: {self.udev_path}\n" if self.has_udev_path else "\n"
            major = bd.major if bd is not None else getattr(self, "v3_major", 0)
            minor = bd.minor if bd is not None else getattr(self, "v3_minor", 0)
            claimed = "  CLAIMED: IBLOCK" if bd is not None else ""
            return text + f"        Major: {major} Minor: {minor}{claimed}\n"
        text = ""
        if bd is not None:
            text += f"iBlock device: {bd.name}"
        if self.has_udev_path:
            text += f"  UDEV PATH: {self.udev_path}"
        text += f"  readonly: {int(self.readonly)}\n        "
        if bd is not None:
            text += f"Major: {bd.major} Minor: {bd.minor}  CLAIMED: IBLOCK\n"
        else:
            text += "Major: 0 Minor: 0\n"
        return text

    def get_blocks(self) -> int:
        bd = self.bd
        if bd is None:
            return 0
        lbs = bd.logical_block_size
        blocks = bd.refresh_size() // lbs - 1
        bs = self.dev.attrib.block_size or lbs
        if bs == lbs:
            return blocks
        # iblock_get_blocks rescales the *last LBA* by shifting (not the block count), so
        # 512-byte blocks emulated on a 4096-byte device end at 8*(N-1), not 8*N-1.
        shift = bs.bit_length() - lbs.bit_length()
        return blocks >> shift if shift > 0 else blocks << -shift

    # data path: StorageDevice's, on self.storage

    # geometry: the block queue's
    def get_lbppbe(self) -> int:
        """iblock_get_lbppbe: log2(physical / logical block size)."""
        bd = self.bd
        if bd is None:
            return 0
        per = max(1, bd.physical_block_size // max(1, bd.logical_block_size))
        return per.bit_length() - 1

    def get_alignment_offset_lbas(self) -> int:
        """iblock_get_alignment_offset_lbas: the queue's alignment offset in logical blocks."""
        bd = self.bd
        if bd is None:
            return 0
        try:
            with open(f"/sys/dev/block/{bd.major}:{bd.minor}/alignment_offset") as f:
                off = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0
        return 0 if off < 0 else off // bd.logical_block_size

    # failure log lines: a failed bio ends in target_complete_failure_work
    def log_rw_error(self, write: bool, err: int, nbytes: int, exc: Exception) -> None:
        self.log.err(f"bio error: {self.dev.core.profile.kptr(exc)},  err: {err}")

    def log_flush_error(self, err: int) -> None:
        self.log.err(f"IBLOCK: cache flush failed: {err}")

    def describe_storage(self) -> str:
        return self.udev_path


class IblockBackend(Backend):
    name = "iblock"
    kernel_module = "target_core_iblock"
    inquiry_prod = "IBLOCK"
    inquiry_rev = IBLOCK_VERSION
    v3_hba_type = 4

    def flags_changeable(self, kernel) -> int:
        # 6.3+: pgr_support=0 hands PR commands to the block device
        return TRANSPORT_FLAG_PASSTHROUGH_PGR if kernel.has("iblock_pgr_passthrough") else 0

    def attach_hba(self, hba) -> None:
        stack = hba.core.profile.core_version
        if hba.core.profile.legacy:
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Linux-iSCSI.org iBlock HBA Driver 3.0 on "
                         f"Generic Target Core Stack {stack}")
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Attached iBlock HBA: {hba.host_id} to "
                         "Generic Target Core TCQ Depth: 512")
            return
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - TCM iBlock HBA Driver {IBLOCK_VERSION} on "
                      f"Generic Target Core Stack {stack}")

    def detach_hba(self, hba) -> None:
        if hba.core.profile.legacy:
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Detached iBlock HBA: {hba.host_id} from "
                         "Generic Target Core")

    def alloc_device(self, dev) -> IblockDevice:
        return IblockDevice(dev)


BACKEND = IblockBackend()
