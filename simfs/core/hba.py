"""HBAs (``core/<plugin>_<id>``): containers of backstore devices (target_core_hba.c)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group, owner
from simfs.core.backend import Backend
from simfs.core.dev_group import dev_of
from simfs.core.device import DeviceGroup, SeDevice
from simfs.core.kparse import kstrtoul

if TYPE_CHECKING:
    from simfs.core.core import TargetCore

TARGET_CORE_NAME_MAX_LEN = 64


class SeHba:
    """se_hba: one HBA, its backend, and the devices made in it."""

    def __init__(self, core: "TargetCore", name: str, backend: Backend, host_id: int,
                 hba_index: "int | None" = None):
        self.core = core
        self.name = name
        self.backend = backend
        self.host_id = host_id
        self.hba_id = 0  # assigned after attach_hba succeeds, as in core_alloc_hba
        self.hba_index = core.next_scsi_index("inst") if hba_index is None else hba_index
        self.dev_count = 0  # configured devices
        self.pscsi_mode = False
        self.internal = False  # HBA_FLAGS_INTERNAL_USE: the hidden virtual LUN 0 HBA
        self.private: object = None  # the backend's per-HBA data (fd_host, rd_host, ...)
        self.devices: dict[str, SeDevice] = {}

    @property
    def log(self):
        return self.core.log


def parse_hba_name(core: "TargetCore", name: str) -> tuple[str, int]:
    """target_core_call_addhbatotarget: ``<plugin>_<id>``, split at the second '_' if any."""
    if len(name) >= TARGET_CORE_NAME_MAX_LEN:
        raise ConfigfsError(errno.ENAMETOOLONG, f"Passed *name strlen(): {len(name)} exceeds "
                            f"TARGET_CORE_NAME_MAX_LEN: {TARGET_CORE_NAME_MAX_LEN}")
    first = name.find("_")
    if first < 0:
        raise ConfigfsError(errno.EINVAL, 'Unable to locate "_" for $SUBSYSTEM_PLUGIN_$HOST_ID')
    second = name.find("_", first + 1)
    cut = second if second >= 0 else first
    plugin, id_text = name[:cut], name[cut + 1:]
    try:
        host_id = kstrtoul(id_text, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"kstrtoul() returned -{e.errno} for plugin_dep_id") from None
    return plugin, host_id


def _hba(g: Group) -> SeHba:
    return owner(g, HbaGroup).hba


def _show_hba_info(g: Group) -> str:
    hba = _hba(g)
    return (f"HBA Index: {hba.hba_id} plugin: {hba.backend.name} version: "
            f"{hba.core.profile.plugin_version}\n")


def _show_hba_mode(g: Group) -> str:
    return f"{int(_hba(g).pscsi_mode)}\n"


def _store_hba_mode(g: Group, buf: bytes) -> None:
    hba = _hba(g)
    if not hba.backend.has_pmode():
        raise ConfigfsError(errno.EINVAL, f"{hba.name}: the {hba.backend.name} backend has no "
                            "passthrough (PHBA) mode")
    try:
        flag = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"Unable to extract hba mode flag: -{e.errno}") from None
    if hba.dev_count:
        raise ConfigfsError(errno.EINVAL, "Unable to set hba_mode with active devices")
    ret = hba.backend.pmode_enable_hba(hba, flag)
    hba.pscsi_mode = ret > 0


HBA_ATTRS = (
    Attribute("hba_info", _show_hba_info),
    Attribute("hba_mode", _show_hba_mode, _store_hba_mode),
)
V3_HBA_ATTRS = (Attribute("hba_info", _show_hba_info),)


class HbaGroup(Group):
    """``core/<plugin>_<id>``: mkdir makes a device."""

    __slots__ = ("hba",)

    def __init__(self, hba: SeHba):
        super().__init__(hba.name)
        self.hba = hba

    def attribute_table(self):
        return V3_HBA_ATTRS if self.hba.core.profile.legacy else HBA_ATTRS

    def make_group(self, name: str) -> Group:
        hba = self.hba
        dev = SeDevice(hba, name)
        hba.devices[name] = dev
        hba.core.target_devices += 1
        if hba.core.profile.legacy:
            hba.log.info(f"Target_Core_ConfigFS: Allocated se_subsystem_dev_t: "
                         f"{hba.core.profile.kptr(dev)} se_dev_su_ptr: "
                         f"{hba.core.profile.kptr(dev.bdev)}")
        return DeviceGroup(dev)

    def drop_item(self, child: Group) -> None:
        dev = dev_of(child)
        self.hba.devices.pop(dev.name, None)
        self.hba.core.target_devices -= 1
        core = self.hba.core
        if core.profile.legacy:
            # v3.0's target_core_drop_subdev
            if dev.configured:
                self.hba.log.info(f"Calling se_free_virtual_device() for se_dev_ptr: {dev.ptr}")
                dev.free()  # its log lines come between these two
            self.hba.log.info(f"Deallocating se_subsystem_dev_t: {core.profile.kptr(dev)}")

    def release(self) -> None:
        self.hba.core.delete_hba(self.hba)
