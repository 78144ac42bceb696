"""pscsi: SCSI passthrough to a real Linux SCSI device (target_core_pscsi.c).

The device is found by host/channel/target/lun in sysfs (``/sys/class/scsi_device``),
its INQUIRY identity read from there, and disks opened exclusively through the
device's ``udev_path``. ALUA and persistent reservations are passed through.

simfs extension (v3.0 profile only): the seed's ``echo 3 > pscsi_0/sdd/fd`` may name a
block device that is not SCSI (a loop device standing in for /dev/sdd); simfs then
passes commands through to an emulated disk on that device and says so in the log.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from simfs.configfs import ConfigfsError
from simfs.core.backend import (ALL_EXEC_OPS, TRANSPORT_FLAG_PASSTHROUGH,
                                  TRANSPORT_FLAG_PASSTHROUGH_ALUA,
                                  TRANSPORT_FLAG_PASSTHROUGH_PGR, TYPE_NO_LUN, Backend,
                                  BackendDevice)
from simfs.core.blockdev import describe
from simfs.core.kparse import Token, match_int, tokenize
from simfs.core.storage import FdStorage

PSCSI_VERSION = "v4.0"
PHV_VIRTUAL_HOST_ID = 0
PHV_LLD_SCSI_HOST_NO = 1

TOKENS = [Token(k, f"{k}=%d") for k in ("scsi_host_id", "scsi_channel_id", "scsi_target_id",
                                        "scsi_lun_id")]
SCSI_HOSTS = Path("/sys/class/scsi_host")
SCSI_DEVICES = Path("/sys/class/scsi_device")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


class PscsiHba:
    def __init__(self, host_id: int):
        self.host_id = host_id
        self.mode = PHV_VIRTUAL_HOST_ID
        self.lld_host: str | None = None  # "hostN" when in PHBA mode


class PscsiDevice(BackendDevice):
    # simfs emulates SBC over the SCSI device's data path with every handler
    exec_ops = ALL_EXEC_OPS

    def __init__(self, dev):
        super().__init__(dev)
        self.host_id = 0
        self.channel_id = self.target_id = self.lun_id = 0
        self.flags: set[str] = set()
        self.sd: dict | None = None  # the attached SCSI device, from sysfs
        self.storage: FdStorage | None = None
        self.emulated = False
        dev.log.debug(f"PSCSI: Allocated pdv: {dev.core.profile.kptr(self)} for {dev.name}")

    @property
    def phv(self) -> PscsiHba:
        return self.dev.hba.private

    def set_configfs_dev_params(self, buf: bytes) -> None:
        phv, log = self.phv, self.log
        known = 0
        for key, arg, _ in tokenize(buf, TOKENS):
            if key is None:
                continue
            known += 1
            value = match_int(arg)
            if key == "scsi_host_id":
                if phv.mode == PHV_LLD_SCSI_HOST_NO:
                    raise ConfigfsError(errno.EINVAL, f"PSCSI[{phv.host_id}]: Unable to accept "
                                        "scsi_host_id while phv_mode == PHV_LLD_SCSI_HOST_NO")
                self.host_id = value
                self.flags.add("host")
                log.debug(f"PSCSI[{phv.host_id}]: Referencing SCSI Host ID: {value}")
            else:
                what = key[5:-3]  # channel / target / lun
                setattr(self, f"{what}_id", value)
                self.flags.add(what)
                label = {"channel": "Channel", "target": "Target", "lun": "LUN"}[what]
                log.debug(f"PSCSI[{phv.host_id}]: Referencing SCSI {label} ID: {value}")
        if not known and self.dev.core.kernel.has("control_needs_known_key"):
            raise ConfigfsError(errno.EINVAL, None)  # v3.0: "params ? count : -EINVAL"

    def configure_device(self) -> None:
        phv, dev = self.phv, self.dev
        if not {"channel", "target", "lun"} <= self.flags:
            raise ConfigfsError(errno.EINVAL, "Missing scsi_channel_id=, scsi_target_id= and "
                                "scsi_lun_id= parameters")
        if phv.lld_host is None:
            if phv.mode == PHV_LLD_SCSI_HOST_NO:
                raise ConfigfsError(errno.ENODEV, "pSCSI: Unable to locate struct Scsi_Host for "
                                    "PHV_LLD_SCSI_HOST_NO")
            if dev.udev_path is None:
                raise ConfigfsError(errno.EINVAL, "pSCSI: udev_path attribute has not been set "
                                    "before ENABLE=1")
            if "host" not in self.flags:
                if dev.hba.dev_count:
                    raise ConfigfsError(errno.EEXIST,
                                        "pSCSI: Unable to set hba_mode with active devices")
                # pscsi_pmode_enable_hba() logs and returns -EINVAL when the host is
                # missing; pscsi_configure_device() turns any result but 1 into -ENODEV.
                try:
                    enabled = dev.backend.pmode_enable_hba(dev.hba, 1)
                except ConfigfsError as e:
                    raise ConfigfsError(errno.ENODEV, e.reason) from None
                if enabled != 1:
                    raise ConfigfsError(errno.ENODEV)
                dev.hba.pscsi_mode = True
                host_no = phv.host_id
            else:
                if not (SCSI_HOSTS / f"host{self.host_id}").exists():
                    raise ConfigfsError(errno.EINVAL,
                                        f"pSCSI: Unable to locate pdv_host_id: {self.host_id}")
                host_no = self.host_id
        else:
            if phv.mode == PHV_VIRTUAL_HOST_ID:
                raise ConfigfsError(errno.EEXIST, "pSCSI: PHV_VIRTUAL_HOST_ID set while struct "
                                    "Scsi_Host exists")
            host_no = int(phv.lld_host[4:])
        hctl = f"{host_no}:{self.channel_id}:{self.target_id}:{self.lun_id}"
        sdir = SCSI_DEVICES / hctl / "device"
        if not sdir.exists():
            raise ConfigfsError(errno.ENODEV, f"pSCSI: Unable to locate {hctl}")
        self._attach_sysfs(sdir, hctl, dev.udev_path)

    def _attach_sysfs(self, sdir: Path, hctl: str, path: str | None) -> None:
        dev, a = self.dev, self.dev.attrib
        sd = {"type": int(_read(sdir / "type", "0")), "vendor": _read(sdir / "vendor"),
              "model": _read(sdir / "model"), "rev": _read(sdir / "rev"),
              "queue_depth": int(_read(sdir / "queue_depth", "1") or 1)}
        if sd["type"] in (0x00, 0x14) and path:
            try:
                fd = os.open(path, os.O_RDWR | os.O_EXCL)
            except OSError as e:
                raise ConfigfsError(e.errno, "pSCSI: blkdev_get_by_path() failed") from None
            bd = describe(fd, path)
            a.hw_block_size = min(bd.logical_block_size, 512) or 512
            a.hw_max_sectors = bd.max_hw_sectors
            self.storage = FdStorage(fd, sync_writes=False, is_block=True)
            self.log.debug(f"CORE_PSCSI[{self.phv.host_id}] - Added TYPE_DISK for {hctl}")
        else:
            a.hw_block_size = 512
            a.hw_max_sectors = 1024
        a.hw_queue_depth = sd["queue_depth"]
        self.sd = sd
        dev.wwn.vendor, dev.wwn.model, dev.wwn.revision = sd["vendor"][:8], sd["model"][:16], \
            sd["rev"][:4]

    def attach_fd(self, fd_path: str, fd_num: int) -> None:
        """v3.0: locate the SCSI device from a descriptor (TYPE_DISK / TYPE_ROM)."""
        dev = self.dev
        try:
            path = os.readlink(fd_path)
            st = os.stat(fd_path)
        except OSError:
            raise ConfigfsError(errno.EBADF, f"PSCSI: descriptor {fd_num} of the writer is not "
                                "open") from None
        if stat.S_ISCHR(st.st_mode):
            raise ConfigfsError(errno.ENOSYS, "SCSI Character Device unsupported via "
                                "configfs/fd  method.  Use configfs/control instead")
        if not stat.S_ISBLK(st.st_mode):
            raise ConfigfsError(errno.ENODEV, "PSCSI: File destriptor is not SCSI block or "
                                "character device, ignoring")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.claimed = (major, minor)
        scsi = Path(f"/sys/dev/block/{major}:{minor}/device/scsi_device")
        log = self.log
        if scsi.exists():
            hctl = next(scsi.iterdir()).name
            h, c, t, l = (int(x) for x in hctl.split(":"))
            self.host_id, self.channel_id, self.target_id, self.lun_id = h, c, t, l
            log.info(f"PSCSI: Claiming {dev.core.profile.kptr(self)} Major:Minor - "
                     f"{major}:{minor}")
            self._attach_sysfs(Path(f"/sys/dev/block/{major}:{minor}/device"), hctl, path)
            return
        # Not SCSI (a loop device standing in for a disk): emulate a disk passed through.
        try:
            fd = os.open(path, os.O_RDWR | os.O_EXCL)
        except OSError as e:
            raise ConfigfsError(e.errno, f"PSCSI: claiming {path} failed: {e.strerror}") \
                from None
        bd = describe(fd, path)
        self.emulated = True
        self.storage = FdStorage(fd, sync_writes=False, is_block=True)
        self.host_id, self.channel_id, self.target_id, self.lun_id = self.phv.host_id, 0, 0, 0
        a = dev.attrib
        a.hw_block_size = bd.logical_block_size
        a.hw_max_sectors = bd.max_hw_sectors
        a.max_sectors = min(bd.max_hw_sectors, 1024)
        a.hw_queue_depth = 32
        self.sd = {"type": 0, "vendor": "SIMFS", "model": bd.name.upper()[:16], "rev": "1.0",
                   "queue_depth": 32}
        dev.wwn.vendor, dev.wwn.model, dev.wwn.revision = "SIMFS", bd.name.upper()[:16], "1.0"
        log.info(f"PSCSI: Claiming {dev.core.profile.kptr(self)} Major:Minor - {major}:{minor}")
        log.warn(f"simfs: {path} is not a SCSI device; pscsi passes commands through to an "
                 "emulated disk on it")

    def legacy_activation(self) -> tuple[str, str | None]:
        hctl = f"{self.channel_id}/{self.target_id}/{self.lun_id}"
        return (f"CORE_PSCSI[{self.phv.host_id}] - Activating Device with TCQ: "
                f"{self.dev.attrib.hw_queue_depth} at SCSI Location (Channel/Target/LUN) {hctl}",
                f"CORE_PSCSI[{self.phv.host_id}] - Added TYPE_DISK for {self.channel_id}:"
                f"{self.target_id}:{self.lun_id}")

    def legacy_release(self) -> str | None:
        claimed = getattr(self, "claimed", None)
        if claimed is None:
            return None
        return f"PSCSI: Releasing Major:Minor - {claimed[0]}:{claimed[1]}"

    def destroy_device(self) -> None:
        if self.storage is not None:
            self.storage.close()
            self.storage = None

    def show_configfs_dev_params(self) -> str:
        host = "PHBA Mode" if self.phv.mode == PHV_LLD_SCSI_HOST_NO else str(self.host_id)
        text = (f"SCSI Device Bus Location: Channel ID: {self.channel_id} Target ID: "
                f"{self.target_id} LUN: {self.lun_id} Host ID: {host}\n")
        sd = self.sd
        if sd is None:
            return text
        if not self.dev.core.kernel.has("pscsi_info_claimed"):
            return text + (f"        Vendor: {sd['vendor'][:8]} Model: {sd['model'][:16]} "
                           f"Rev: {sd['rev'][:4]}\n")
        # v3.0 printed the fixed-width INQUIRY fields, then who holds a disk's block device
        text += (f"        Vendor: {sd['vendor']:<8.8} Model: {sd['model']:<16.16} "
                 f"Rev: {sd['rev']:<4.4}")
        if sd["type"] != 0x00:
            return text + "\n"
        return text + ("   CLAIMED: PSCSI\n" if self.storage is not None else "   \n")

    def get_device_type(self) -> int:
        return self.sd["type"] if self.sd is not None else TYPE_NO_LUN

    def get_blocks(self) -> int:
        # pscsi reports the bdev's 512-byte sector count (not a last LBA).
        if self.storage is None:
            return 0
        return os.lseek(self.storage.fd, 0, os.SEEK_END) // 512

    def read(self, offset: int, length: int) -> bytes:
        return self.storage.read(offset, length)  # type: ignore[union-attr]

    def write(self, offset: int, data, fua: bool = False) -> None:
        self.storage.write(offset, data, fua)  # type: ignore[union-attr]

    def flush(self) -> None:
        self.storage.flush()  # type: ignore[union-attr]


class PscsiBackend(Backend):
    name = "pscsi"
    kernel_module = "target_core_pscsi"
    attrib_list = "passthrough"
    transport_flags_default = (TRANSPORT_FLAG_PASSTHROUGH | TRANSPORT_FLAG_PASSTHROUGH_ALUA
                               | TRANSPORT_FLAG_PASSTHROUGH_PGR)
    v3_hba_type = 1

    def attach_hba(self, hba) -> None:
        hba.private = PscsiHba(hba.host_id)
        stack = hba.core.profile.core_version
        if hba.core.profile.legacy:
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Linux-iSCSI.org SCSI HBA Driver v3.0 on "
                         f"Generic Target Core Stack {stack}")
            hba.log.info(f"CORE_HBA[{hba.hba_id}] - Attached SCSI HBA to Generic Target Core "
                         "with TCQ Depth: 127 MaxSectors: 8192")
            return
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - TCM SCSI HBA Driver {PSCSI_VERSION} on "
                      f"Generic Target Core Stack {stack}")
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Attached SCSI HBA to Generic")

    def detach_hba(self, hba) -> None:
        phv: PscsiHba = hba.private
        if phv.lld_host:
            hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Detached SCSI HBA: {phv.lld_host} from "
                          "Generic Target Core")
        else:
            hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Detached Virtual SCSI HBA from Generic "
                          "Target Core")

    def pmode_enable_hba(self, hba, flag: int) -> int:
        phv: PscsiHba = hba.private
        if not flag:
            if phv.lld_host:
                name = _read(SCSI_HOSTS / phv.lld_host / "proc_name", "Unknown")
                hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Disabled pSCSI HBA Passthrough {name}")
            phv.lld_host = None
            phv.mode = PHV_VIRTUAL_HOST_ID
            return 0
        host = SCSI_HOSTS / f"host{phv.host_id}"
        if not host.exists():
            raise ConfigfsError(errno.EINVAL, "pSCSI: Unable to locate SCSI Host for "
                                f"phv_host_id: {phv.host_id}")
        phv.lld_host = host.name
        phv.mode = PHV_LLD_SCSI_HOST_NO
        hba.log.debug(f"CORE_HBA[{hba.hba_id}] - Enabled pSCSI HBA Passthrough "
                      f"{_read(host / 'proc_name', 'Unknown')}")
        return 1

    def alloc_device(self, dev) -> PscsiDevice:
        return PscsiDevice(dev)


BACKEND = PscsiBackend()
