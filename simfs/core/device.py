"""Backstore devices (the kernel's ``se_device``) and their configfs directory.

``core/<hba>/<dev>/`` holds info, control, alias, udev_path, enable, alua_lu_gp and
lba_map, and the default groups action/, attrib/, pr/, wwn/, alua/ and statistics/
(target_core_configfs.c and target_core_device.c).
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.dev_group import DevGroup, dev_of
from simfs.core import kparse
from simfs.core.backend import (TRANSPORT_FLAG_PASSTHROUGH, TRANSPORT_FLAG_PASSTHROUGH_ALUA,
                      TRANSPORT_FLAG_PASSTHROUGH_PGR, BackendDevice)
from simfs.core.dev_attrib import DevAttrib, attrib_table
from simfs.core.pr_files import PrState
from simfs.core.stat import StatisticsGroup
from simfs.core.wwn import T10Wwn, VpdDescriptor

if TYPE_CHECKING:
    from simfs.core.hba import SeHba

PAGE_SIZE = 4096
SE_DEV_ALIAS_LEN = 512
SE_UDEV_PATH_LEN = 512

# scsi_device_type(): the SCSI peripheral device type names, padded to 17 characters as
# the kernel's table is (its log lines show the padding).
SCSI_DEVICE_TYPES = (
    "Direct-Access", "Sequential-Access", "Printer", "Processor", "WORM", "CD-ROM", "Scanner",
    "Optical Device", "Medium Changer", "Communications", "ASC IT8", "ASC IT8", "RAID",
    "Enclosure", "Direct-Access-RBC", "Optical card", "Bridge controller", "Object storage",
    "Automation/Drive", "Security Manager", "Direct-Access-ZBC",
)


def scsi_device_type(t: int) -> str:
    if t == 0x1E:
        name = "Well-known LUN"
    elif t == 0x1F:
        name = "No Device"
    elif t >= len(SCSI_DEVICE_TYPES):
        name = "Unknown"
    else:
        name = SCSI_DEVICE_TYPES[t]
    return f"{name:<17}"


class SeDevice:
    """One backstore object: its attributes, identity, and state the SCSI engine uses."""

    def __init__(self, hba: "SeHba", name: str):
        self.hba = hba
        self.core = hba.core
        self.name = name
        self.backend = hba.backend
        self.attrib = DevAttrib()
        self.wwn = T10Wwn(self)
        self.pr = PrState()
        self.transport_flags = self.backend.transport_flags_default
        self.configured = False
        self.freed = False
        self.export_count = 0
        self.dev_index = 0
        #: dev->queue_depth: only the attrib/queue_depth store sets it ("Max Queue Depth" in info).
        self.queue_depth = 0
        self.alias: Optional[str] = None
        self.udev_path: Optional[str] = None
        self.read_only = False
        self.firmware_serial = False
        self.emulated_serial = False
        #: ALUA: LU group membership exists only once configured (core_setup_alua).
        self.lu_gp_member = False
        self.lu_gp = None
        self.default_tg_pt_gp = None
        self.tg_pt_gp_counter = 0
        self.tg_pt_gps: list = []
        self.lba_map_segment = (0, 0)
        self.lba_map: list = []
        #: core_alloc_rtpi before 6.3: the device's last relative port id handed out
        self.rtpi_counter = 0
        self.creation_boottime = time.clock_gettime(time.CLOCK_BOOTTIME)
        self.num_resets = 0
        self.num_cmds = 0
        self.read_bytes = 0
        self.write_bytes = 0
        self.luns: list = []
        # Backend last: it may read the device's state.
        self.bdev: BackendDevice = self.backend.alloc_device(self)
        self.wwn.model = self.backend.inquiry_prod
        self.wwn.revision = "3.0" if self.legacy and self.backend.inquiry_rev else \
            self.backend.inquiry_rev

    # -- small helpers ----------------------------------------------------------------
    @property
    def legacy(self) -> bool:
        return self.core.profile.legacy

    @property
    def ptr(self) -> str:
        return self.core.profile.kptr(self)

    @property
    def log(self):
        return self.core.log

    def path(self) -> str:
        return f"{self.hba.name}/{self.name}"

    @property
    def passthrough_alua(self) -> bool:
        return bool(self.transport_flags & TRANSPORT_FLAG_PASSTHROUGH_ALUA)

    @property
    def passthrough_pgr(self) -> bool:
        return bool(self.transport_flags & TRANSPORT_FLAG_PASSTHROUGH_PGR)

    @property
    def passthrough(self) -> bool:
        return bool(self.transport_flags & TRANSPORT_FLAG_PASSTHROUGH)

    def get_blocks(self) -> int:
        return self.bdev.get_blocks()

    def refuse_if_exported(self, what: str, msg: Optional[str] = None) -> None:
        if self.export_count:
            raise ConfigfsError(errno.EINVAL, msg or (
                f"dev[{self.ptr}]: Unable to change SE Device {what} while export_count "
                f"is {self.export_count}"))

    # -- enable (target_configure_device) ----------------------------------------------
    def configure(self) -> None:
        if self.configured:
            raise ConfigfsError(errno.EEXIST, "se_dev->se_dev_ptr already set for storage object")
        self.bdev.configure_device()
        self.finish_configure()

    def finish_configure(self) -> None:
        """What the core does after the backend configured: the kernel's tail of enable."""
        core, a = self.core, self.attrib
        self.dev_index = core.alloc_dev_index()
        # v3.0 had no UNMAP emulation at all.
        if not self.legacy and self.bdev.has_configure_unmap() and self.bdev.configure_unmap():
            self.log.debug("Discard support available, but disabled by default.")
        a.block_size = a.hw_block_size
        a.queue_depth = a.hw_queue_depth
        if self.core.kernel.has("dev_queue_depth_at_enable"):
            self.queue_depth = a.hw_queue_depth
        alignment = max(1, PAGE_SIZE // a.hw_block_size) if a.hw_block_size else 1
        aligned = a.hw_max_sectors - a.hw_max_sectors % alignment
        if aligned != a.hw_max_sectors:
            self.log.info(f"Rounding down aligned max_sectors from {a.hw_max_sectors} to {aligned}")
        a.hw_max_sectors = aligned
        a.optimal_sectors = aligned
        self.creation_boottime = time.clock_gettime(time.CLOCK_BOOTTIME)
        if self.legacy:
            self._legacy_activate()
        else:
            core.alua.setup_device(self)
            self.dump_inquiry()
        self.hba.dev_count += 1
        self.configured = True

    def _legacy_activate(self) -> None:
        """The v3.0 engine's activation, with the log lines the seed shows."""
        log, name = self.log, self.backend.name
        if not self.emulated_serial and not self.firmware_serial:
            # v3.0 made up a serial for devices nobody named: "1234567890:<hba>_<dev>".
            self.wwn.unit_serial = f"1234567890:{self.hba.hba_id}_{self.hba.dev_count}"
        if self.passthrough_pgr:
            log.info(f"{name}: Using SPC_PASSTHROUGH, no reservation emulation")
        else:
            log.info(f"{name}: Using SPC3_PERSISTENT_RESERVATIONS emulation")
        self.core.alua.setup_device(self)
        activating, added = self.bdev.legacy_activation()
        log.info(activating)
        self.dump_inquiry()
        if not self.passthrough:
            self.dump_vpd()
        if added:
            log.info(added)

    def _legacy_deactivate(self) -> None:
        """v3.0's transport_generic_free_device: the plugin's deactivate line, then the
        release of a block device it claimed."""
        activating, _ = self.bdev.legacy_activation()
        self.log.info(activating.replace(" - Activating ", " - Deactivating ", 1))
        released = self.bdev.legacy_release()
        if released:
            self.log.info(released)

    def dump_vpd(self) -> None:
        """v3.0 read back the VPD 0x83 page it emulated at activation: it printed each
        designator and kept them in the list ``wwn/vpd_assoc_*`` show."""
        log, w = self.log, self.wwn
        log.info(f"T10 VPD Unit Serial Number: {w.unit_serial}")
        w.vpd = []
        if self.emulated_serial:
            w.vpd.append(VpdDescriptor(None, 0x00, 0x3, 0x1, w.naa_designator()))
        # T10 vendor id based: the 8-byte vendor field (NUL padded), the model, the serial
        vendor = w.vendor.encode().ljust(8, b"\0")[:8]
        w.vpd.append(VpdDescriptor(None, 0x00, 0x1, 0x2, vendor + w.model.encode() + b" "
                                   + w.unit_serial.encode() + b"\0"))
        log.info(f"T10 VPD Page Length: {sum(4 + len(d.ident) for d in w.vpd)}")
        for d in w.vpd:
            log.info(f"T10 VPD Identifer Length: {len(d.ident)}")
            for line in d.assoc_text().splitlines():
                log.info(line)

    def dump_inquiry(self) -> None:
        w, log = self.wwn, self.log
        if self.legacy:
            log.info(f"Vendor: {w.vendor} Model: {w.model} Revision: {w.revision}")
            log.info(f"Type: {scsi_device_type(self.bdev.get_device_type()).rstrip()} "
                     "ANSI SCSI revision: 05")
            return
        log.debug(f"  Vendor: {w.vendor:<8}")
        log.debug(f"  Model: {w.model:<16}")
        log.debug(f"  Revision: {w.revision:<4}")
        log.debug(f"  Type:   {scsi_device_type(self.bdev.get_device_type())} ")

    # -- rmdir (target_free_device) -----------------------------------------------------
    def free(self) -> None:
        if self.freed:
            return
        self.freed = True
        if self.configured:
            if self.legacy:
                self._legacy_deactivate()
            self.bdev.destroy_device()
            self.hba.dev_count -= 1
            self.core.free_dev_index(self.dev_index)
        self.core.alua.release_device(self)
        self.bdev.free_device()
        self.configured = False

    # -- info -------------------------------------------------------------------------------
    def info(self) -> str:
        """``info``: the core's status line (once there is a device), then the plugin's."""
        a, kernel = self.attrib, self.core.kernel
        backend_text = self.bdev.show_configfs_dev_params()
        if not self.configured and not kernel.value("dev_info_before_enable"):
            return backend_text
        status = "ACTIVATED" if self.export_count else "DEACTIVATED"
        # Nothing waits in simfs's queues between commands: 0 executing, every slot left.
        return kernel.value("dev_info_status").format(
            status=status, execute=0, left=self.queue_depth, max=self.queue_depth,
            block_size=a.block_size, max_sectors=a.max_sectors,
            hw_max_sectors=a.hw_max_sectors) + backend_text


# -- device-level attributes ------------------------------------------------------------------
def _dev(g: Group) -> SeDevice:
    return dev_of(g)


def _show_info(g: Group) -> str:
    return _dev(g).info()


def _store_control(g: Group, buf: bytes) -> None:
    _dev(g).bdev.set_configfs_dev_params(buf)


def _string_store(kind: str, limit: int):
    def store(g: Group, buf: bytes) -> int:
        dev = _dev(g)
        s = kparse.cstr(buf)
        if len(buf) > limit - 1:
            raise ConfigfsError(errno.EINVAL,
                                f"{kind} count: {len(buf)} exceeds "
                                f"{'SE_DEV_ALIAS_LEN' if kind == 'alias' else 'SE_UDEV_PATH_LEN'}"
                                f"-1: {limit - 1}")
        read_bytes = len(s)
        if not read_bytes:
            setattr(dev, kind, "" if getattr(dev, kind) is not None else None)
            raise ConfigfsError(errno.EINVAL, f"{kind}: empty value for {dev.path()}")
        value = s[:-1] if s.endswith("\n") else s
        setattr(dev, kind, value)
        dev.log.debug(f"Target_Core_ConfigFS: {dev.hba.name}/{dev.name} set {kind}: {value}")
        return read_bytes
    return store


def _string_show(kind: str):
    def show(g: Group) -> str:
        value = getattr(_dev(g), kind)
        return "" if value is None else value + "\n"
    return show


def _show_enable(g: Group) -> str:
    return f"{int(_dev(g).configured)}\n"


def _store_enable(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    if "1" not in kparse.cstr(buf):
        raise ConfigfsError(errno.EINVAL, 'For dev_enable ops, only valid value is "1"')
    if dev.configured or not dev.core.kernel.has("enable_failure_einval"):
        dev.configure()
    else:
        try:
            dev.configure()
        except ConfigfsError as e:
            # v3.0: "if (!(se_dev->se_dev_ptr = create_virtdevice(...))) return -EINVAL"
            raise ConfigfsError(errno.EINVAL, e.reason) from None
    if dev.legacy:
        dev.log.info(f"Target_Core_ConfigFS: Registered se_dev->se_dev_ptr: {dev.ptr}")


def _show_alua_lu_gp(g: Group) -> str:
    return _dev(g).core.alua.show_dev_lu_gp(_dev(g))


def _store_alua_lu_gp(g: Group, buf: bytes) -> None:
    _dev(g).core.alua.store_dev_lu_gp(_dev(g), buf)


def _show_lba_map(g: Group) -> str:
    return _dev(g).core.alua.show_lba_map(_dev(g))


def _store_lba_map(g: Group, buf: bytes) -> None:
    _dev(g).core.alua.store_lba_map(_dev(g), buf)


# v3.0: only iblock and pscsi implemented create_virtdevice_from_fd().
FD_CAPABLE_BACKENDS = frozenset({"iblock", "pscsi"})


def _store_fd(g: Group, buf: bytes) -> None:
    """v3.0's ``fd``: the number (3..7) of a descriptor open in the writing process.

    As in the v3.0 engine, every failure past the EEXIST check comes back as EINVAL,
    whatever the plugin's own reason; the log line says which.
    """
    dev = _dev(g)
    name = dev.backend.name
    if dev.configured:
        raise ConfigfsError(errno.EEXIST, "se_dev->se_dev_ptr already set, ignoring fd request")
    if name not in FD_CAPABLE_BACKENDS:
        raise ConfigfsError(errno.EINVAL, "se_subsystem_api_t->create_virtdevice_from_fd() "
                            f"NULL for: {name}")
    try:
        fd_num = kparse.kstrtoull(buf, 0)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, "tcm_strict_strtol() failed for fd") from None
    tag = name.upper()
    if not 3 <= fd_num <= 7:
        raise ConfigfsError(errno.EINVAL, f"{tag}: Illegal value of file descriptor: {fd_num}")
    tree_pid = dev.core.writer_pid()
    if not tree_pid or not os.path.lexists(f"/proc/{tree_pid}/fd/{fd_num}"):
        raise ConfigfsError(errno.EINVAL, f"{tag}: Unable to fget() fd: {fd_num}")
    try:
        dev.bdev.attach_fd(f"/proc/{tree_pid}/fd/{fd_num}", fd_num)
    except ConfigfsError as e:
        raise ConfigfsError(errno.EINVAL, e.reason) from None
    # attach_fd already claimed the storage: only the core's half of enable remains.
    dev.finish_configure()
    dev.log.info(f"Target_Core_ConfigFS: Registered {name} se_dev->se_dev_ptr: "
                 f"{dev.ptr} from fd")


DEV_ATTRS = (
    Attribute("info", _show_info),
    Attribute("control", None, _store_control),
    Attribute("alias", _string_show("alias"), _string_store("alias", SE_DEV_ALIAS_LEN)),
    Attribute("udev_path", _string_show("udev_path"),
              _string_store("udev_path", SE_UDEV_PATH_LEN)),
    Attribute("enable", _show_enable, _store_enable),
    Attribute("alua_lu_gp", _show_alua_lu_gp, _store_alua_lu_gp),
    Attribute("lba_map", _show_lba_map, _store_lba_map),
)

def needs_se_device(fn):
    """v3.0 kept these behind se_dev_ptr: ENODEV until the device is enabled."""
    def wrapped(g: Group, *args):
        if not _dev(g).configured:
            raise ConfigfsError(errno.ENODEV, None)
        return fn(g, *args)
    return wrapped


# The 2009 tree: no alias/udev_path/lba_map, enable write-only, and the fd hook
# (kernels.LEGACY_FILES["dev"] gives their order).
V3_DEV_ATTRS = (
    Attribute("alua_lu_gp", needs_se_device(_show_alua_lu_gp),
              needs_se_device(_store_alua_lu_gp)),
    Attribute("control", None, _store_control),
    Attribute("enable", None, _store_enable),
    Attribute("fd", None, _store_fd),
    Attribute("info", _show_info),
)


class DeviceGroup(DevGroup):
    """``core/<hba>/<dev>``."""

    __slots__ = ()

    def __init__(self, dev: SeDevice):
        super().__init__(dev.name, dev)
        from simfs.core.alua import TgPtGpsGroup
        from simfs.core.pr_files import PrGroup
        from simfs.core.wwn import WwnGroup
        from simfs.core.dev_attrib import ActionGroup, AttribGroup
        legacy = dev.legacy
        if not legacy:
            self.add_default_group(ActionGroup(dev))
        self.add_default_group(AttribGroup(dev))
        self.add_default_group(PrGroup(dev))
        self.add_default_group(WwnGroup(dev))
        if not legacy:
            self.add_default_group(TgPtGpsGroup(dev))
            self.add_default_group(StatisticsGroup(dev))

    def attribute_table(self):
        if self.dev.legacy:
            return self.dev.core.kernel.table("dev", V3_DEV_ATTRS)
        return DEV_ATTRS

    def release(self) -> None:
        self.dev.free()


__all__ = ["DeviceGroup", "SeDevice", "attrib_table"]
