"""Fabric LUNs: ``tpgt_N/lun/lun_<L>/`` (the kernel's se_lun; target_core_fabric_configfs.c
tpg_port, core_dev_add_lun/core_tpg_add_lun, the per-LUN ALUA files of target_core_alua.c
and the port statistics of target_core_stat.c).

A :class:`SeLun` *is* the SCSI engine's :class:`~simfs.core.port.TargetPort`: linking a
device into ``lun_<L>/`` gives it a device, an RTPI, a target port group and an export.

Kernel facts kept here:

* link checks, in order: not a backstore device → EFAULT; device not enabled → ENODEV;
  LUN already linked → EEXIST;
* the RTPI (the version table's ``tpg_rtpi``): before 6.3 each link takes one from a
  per-device counter (``core_alloc_rtpi``: 1, 2, …, never 0, skipping values in use, not
  reused after an unlink); from 6.3 every LUN reports its TPG's ``tpg_rtpi``;
* the LUN joins the device's ``default_tg_pt_gp`` unless the device is on the internal
  HBA or passes ALUA through; joining or moving queues 3Fh/03h INQUIRY DATA HAS CHANGED
  to every initiator with the LUN mapped (__target_attach_tg_pt_gp);
* a read-only device makes the LUN read-only; in demo mode the LUN is mapped into every
  dynamic ACL at once;
* unlink: mappings through the LUN leave every ACL (3Fh/0Eh to the initiator's other
  LUNs), export_count drops, the LUN leaves its target port group;
* the four ALUA files and every port statistic answer ENODEV while unlinked.
"""

from __future__ import annotations

import errno
import itertools
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FixedGroup, ObjGroup, obj
from simfs.core.port import TargetPort

if TYPE_CHECKING:
    from simfs.core.acl import DevEntry
    from simfs.core.device import SeDevice
    from simfs.core.tpg import SePortalGroup

TG_PT_GROUP_NAME_BUF = 256
ALUA_STATUS_NONE, ALUA_STATUS_EXPLICIT, ALUA_STATUS_IMPLICIT = 0, 1, 2
_STATUS_NAMES = {0: "None", 1: "Altered by Explicit STPG", 2: "Altered by Implicit ALUA"}

class SeLun(TargetPort):
    """se_lun: a fabric LUN, and the target port the SCSI engine sees."""

    def __init__(self, tpg: "SePortalGroup", name: str, unpacked_lun: int):
        self.tpg = tpg
        self._dev_rtpi = 0
        super().__init__(fabric=tpg.fabric_name, proto_id=tpg.proto_id, wwn=tpg.wwn_name,
                         tpgt=tpg.tpgt, rtpi=0, lun=unpacked_lun,
                         sup_prot_ops=tpg.ops.sup_prot_ops)
        self.tpg = tpg
        self.group_name = name
        self.secondary_status = ALUA_STATUS_NONE
        self.secondary_write_md = 0
        #: se_dev_entry mappings that go through this LUN
        self.deves: list["DevEntry"] = []
        #: when the LUN was last linked (REPORT LUNS-style order: the newest link first)
        self.link_seq = 0
        # lun_stats: commands, bytes received (writes) and sent (reads)
        self.cmd_pdus = 0
        self.rx_data_octets = 0
        self.tx_data_octets = 0

    @property  # type: ignore[override]
    def rtpi(self) -> int:
        """The relative target port id the engine reports for this LUN."""
        if self.tpg.core.kernel.has("tpg_rtpi"):
            return self.tpg.rtpi
        return self._dev_rtpi

    @rtpi.setter
    def rtpi(self, value: int) -> None:
        self._dev_rtpi = value

    @property  # type: ignore[override]
    def write_protect(self) -> bool:
        """The LUN's own read-only flag (a mapping adds its own: Nexus.read_only)."""
        return self.lun_access_ro

    @write_protect.setter
    def write_protect(self, value: bool) -> None:
        self.lun_access_ro = bool(value)

    def member_path(self) -> str:
        return f"{self.fabric}/{self.wwn}/tpgt_{self.tpgt}/{self.group_name}"

    @property
    def log(self):
        return self.tpg.log


# -- link / unlink (core_dev_add_lun / core_dev_del_lun) -------------------------------------------
def _alloc_rtpi(lun: SeLun, dev: "SeDevice") -> None:
    used = {p._dev_rtpi for p in dev.luns}
    for _ in range(0x10000):
        val = (dev.rtpi_counter + 1) & 0xFFFF
        dev.rtpi_counter = val
        if val and val not in used:
            lun.rtpi = val
            return
    raise ConfigfsError(errno.ENOSPC, "Unable to allocate RTPI")


def attach_tg_pt_gp(lun: SeLun, gp) -> None:
    """__target_attach_tg_pt_gp: join ``gp``; UA 3Fh/03h to every mapping of the LUN."""
    lun.set_tg_pt_gp(gp)
    for deve in list(lun.deves):
        deve.acl.ua(deve, 0x3F, 0x03)


#: link order of LUNs (tpg_lun_hlist takes each new link at its head)
_LINK_SEQ = itertools.count(1)


def add_lun(tpg: "SePortalGroup", dev: "SeDevice", lun: SeLun) -> None:
    if not tpg.core.kernel.has("tpg_rtpi"):
        _alloc_rtpi(lun, dev)
    core = tpg.core
    if not dev.passthrough_alua and not dev.hba.internal:
        gp = dev.default_tg_pt_gp
        if gp is None and dev.legacy:
            gp = core.alua.global_tg_pt_gp
        if gp is not None:
            attach_tg_pt_gp(lun, gp)
    lun.dev = dev
    lun.link_seq = next(_LINK_SEQ)
    dev.export_count += 1
    dev.luns.append(lun)
    lun.lun_access_ro = bool(dev.read_only)
    tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}]_LUN[{lun.lun}] - Activated "
                  f"{tpg.fabric_name} Logical Unit from CORE HBA: {dev.hba.hba_id}")
    if tpg.demo_mode():
        for acl in list(tpg.acls.values()):
            if acl.dynamic:
                acl.add_to_devs(lun)


def del_lun(tpg: "SePortalGroup", lun: SeLun) -> None:
    dev = lun.dev
    tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}]_LUN[{lun.lun}] - Deactivating "
                  f"{tpg.fabric_name} Logical Unit from device object")
    for deve in list(lun.deves):
        deve.acl.disable_deve(deve)
    if dev is not None:
        dev.export_count -= 1
        if lun in dev.luns:
            dev.luns.remove(lun)
    lun.set_tg_pt_gp(None)
    lun.dev = None


# -- per-LUN ALUA files (target_core_alua.c) -----------------------------------------------------------
def _linked(g: Group) -> SeLun:
    lun: SeLun = obj(g)
    if lun.dev is None:
        raise ConfigfsError(errno.ENODEV, None)
    return lun


def _alua_refused(lun: SeLun) -> bool:
    dev = lun.dev
    return bool(dev.hba.internal or dev.passthrough_alua)


def _show_tg_pt_gp(g: Group) -> str:
    lun = _linked(g)
    gp = lun.tg_pt_gp
    if gp is None:
        return ""
    from simfs.core.alua import STATUS_NAMES, dump_state
    return (f"TG Port Alias: {gp.name}\nTG Port Group ID: {gp.id}\n"
            f"TG Port Primary Access State: {dump_state(gp.access_state)}\n"
            f"TG Port Primary Access Status: {STATUS_NAMES.get(gp.access_status, 'Unknown')}\n"
            f"TG Port Secondary Access State: {'Offline' if lun.offline else 'None'}\n"
            f"TG Port Secondary Access Status: "
            f"{_STATUS_NAMES.get(lun.secondary_status, 'Unknown')}\n")


def _store_tg_pt_gp(g: Group, buf: bytes) -> None:
    lun = _linked(g)
    if _alua_refused(lun):
        raise ConfigfsError(errno.ENODEV, None)
    if len(buf) > TG_PT_GROUP_NAME_BUF:
        raise ConfigfsError(errno.EINVAL, "ALUA Target Port Group alias too large!")
    dev = lun.dev
    name = kparse.cstr(buf).strip(" \t\n\r\v\f")
    new = None
    if name != "NULL":
        new = next((gp for gp in dev.tg_pt_gps if gp.valid_id and gp.name == name), None)
        if new is None:
            raise ConfigfsError(errno.ENODEV, None)
    tpg = lun.tpg
    where = f"{tpg.wwn_name}/tpgt_{tpg.tpgt}/{lun.group_name}"
    old = lun.tg_pt_gp
    move = False
    if old is not None:
        if new is None:
            tpg.log.debug(f"Target_Core_ConfigFS: Moving {where} from ALUA Target Port Group: "
                          f"alua/{old.name}, ID: {old.id} back to default_tg_pt_gp")
            attach_tg_pt_gp(lun, dev.default_tg_pt_gp)
            return
        move = True
    if new is None:
        return
    attach_tg_pt_gp(lun, new)
    tpg.log.debug(f"Target_Core_ConfigFS: {'Moving' if move else 'Adding'} {where} to ALUA "
                  f"Target Port Group: alua/{new.name}, ID: {new.id}")


def _show_offline(g: Group) -> str:
    return f"{int(_linked(g).offline)}\n"


def _store_offline(g: Group, buf: bytes) -> None:
    lun = _linked(g)
    if _alua_refused(lun):
        raise ConfigfsError(errno.ENODEV, None)
    try:
        val = kparse.kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, "Unable to extract alua_tg_pt_offline value") from None
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for alua_tg_pt_offline: {val}")
    if lun.tg_pt_gp is None or not lun.tpg.core.events.set_secondary_state(lun, False,
                                                                           bool(val)):
        raise ConfigfsError(errno.EINVAL, "Unable to complete secondary state transition")


def _show_status(g: Group) -> str:
    return f"{_linked(g).secondary_status}\n"


def _store_status(g: Group, buf: bytes) -> None:
    lun = _linked(g)
    try:
        val = kparse.kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, "Unable to extract alua_tg_pt_status") from None
    if val not in (ALUA_STATUS_NONE, ALUA_STATUS_EXPLICIT, ALUA_STATUS_IMPLICIT):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for alua_tg_pt_status: {val}")
    lun.secondary_status = val


def _show_write_md(g: Group) -> str:
    return f"{_linked(g).secondary_write_md}\n"


def _store_write_md(g: Group, buf: bytes) -> None:
    lun = _linked(g)
    try:
        val = kparse.kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, "Unable to extract alua_tg_pt_write_md") from None
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for alua_tg_pt_write_md: {val}")
    lun.secondary_write_md = val


LUN_ATTRS = (
    Attribute("alua_tg_pt_gp", _show_tg_pt_gp, _store_tg_pt_gp),
    Attribute("alua_tg_pt_offline", _show_offline, _store_offline),
    Attribute("alua_tg_pt_status", _show_status, _store_status),
    Attribute("alua_tg_pt_write_md", _show_write_md, _store_write_md),
)


# -- port statistics (target_core_stat.c) -----------------------------------------------------------
def _stat(name: str, fn) -> Attribute:
    def show(g: Group) -> str:
        lun = _linked(g)
        return fn(lun, lun.dev, lun.tpg)
    return Attribute(name, show)


SCSI_PORT_ATTRS = (
    _stat("inst", lambda lun, d, t: f"{d.hba.hba_index}\n"),
    _stat("dev", lambda lun, d, t: f"{d.dev_index}\n"),
    _stat("indx", lambda lun, d, t: f"{lun.rtpi}\n"),
    _stat("role", lambda lun, d, t: f"Device{d.dev_index}\n"),
    _stat("busy_count", lambda lun, d, t: "0\n"),
)

SCSI_TGT_PORT_ATTRS = (
    _stat("inst", lambda lun, d, t: f"{d.hba.hba_index}\n"),
    _stat("dev", lambda lun, d, t: f"{d.dev_index}\n"),
    _stat("indx", lambda lun, d, t: f"{lun.rtpi}\n"),
    _stat("name", lambda lun, d, t: f"{t.fabric_name}Port#{lun.rtpi}\n"),
    _stat("port_index", lambda lun, d, t: f"{t.wwn_name}+t+{t.tpgt}\n"),
    _stat("in_cmds", lambda lun, d, t: f"{lun.cmd_pdus}\n"),
    _stat("write_mbytes", lambda lun, d, t: f"{lun.rx_data_octets >> 20}\n"),
    _stat("read_mbytes", lambda lun, d, t: f"{lun.tx_data_octets >> 20}\n"),
    _stat("hs_in_cmds", lambda lun, d, t: "0\n"),
)

SCSI_TRANSPORT_ATTRS = (
    _stat("inst", lambda lun, d, t: f"{d.hba.hba_index}\n"),
    _stat("device", lambda lun, d, t: f"scsiTransport{t.fabric_name}\n"),
    _stat("indx", lambda lun, d, t: f"{t.ops.inst_index(t)}\n"),
    _stat("dev_name", lambda lun, d, t:
          f"{t.wwn_name}+{d.wwn.unit_serial if d.wwn.unit_serial else d.wwn.vendor}\n"),
    _stat("proto_id", lambda lun, d, t: f"{t.proto_id}\n"),
)


class LunGroup(ObjGroup[SeLun]):
    """``lun/lun_<L>``: one symlink to a backstore device, the ALUA files, statistics/."""

    __slots__ = ()

    def __init__(self, lun: SeLun):
        super().__init__(lun.group_name, lun, LUN_ATTRS)
        stats = self.add_default_group(FixedGroup("statistics", lun))
        stats.add_default_group(FixedGroup("scsi_port", lun, SCSI_PORT_ATTRS))
        stats.add_default_group(FixedGroup("scsi_tgt_port", lun, SCSI_TGT_PORT_ATTRS))
        stats.add_default_group(FixedGroup("scsi_transport", lun, SCSI_TRANSPORT_ATTRS))

    def allow_link(self, name: str, target: Group) -> None:
        from simfs.core.device import DeviceGroup
        lun: SeLun = self.obj
        tpg = lun.tpg
        if not isinstance(target, DeviceGroup):
            raise ConfigfsError(errno.EFAULT, "Bad se_dev_ci, not a valid se_dev_ci pointer: "
                                f"{tpg.core.profile.kptr(target)}")
        dev = target.dev
        if not dev.configured:
            raise ConfigfsError(errno.ENODEV, "se_device not configured yet, cannot port link")
        if lun.dev is not None:
            raise ConfigfsError(errno.EEXIST, "Port Symlink already exists")
        add_lun(tpg, dev, lun)
        tpg.ops.post_link(tpg, lun)

    def drop_link(self, link) -> None:
        lun: SeLun = self.obj
        if lun.dev is None or getattr(link.target, "dev", None) is not lun.dev:
            return  # a second link the kernel refused never reaches here
        lun.tpg.ops.pre_unlink(lun.tpg, lun)
        del_lun(lun.tpg, lun)
