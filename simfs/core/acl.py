"""Node ACLs and mapped LUNs: ``tpgt_N/acls/<initiator>/`` and ``.../lun_<M>/``
(target_core_tpg.c node ACLs, target_core_device.c se_dev_entry mappings, the nacl and
mappedlun parts of target_core_fabric_configfs.c, mapped-LUN statistics of
target_core_stat.c).

Kernel facts kept here:

* an explicit ACL whose name a demo-mode login already uses *replaces* the dynamic one
  ("Replacing dynamic ACL"); a second explicit one is EEXIST;
* the ACL's queue depth is the fabric's default (tcm_loop: 1, iSCSI: default_cmdsn_depth);
* ``acls/<I>/lun_<M>``: the name must start ``lun_`` (EINVAL), then kstrtoull;
* mapped-LUN link checks: not a fabric LUN → EFAULT; LUN not linked → EINVAL; LUN of
  another wwn or tpgt → EINVAL; the mapped LUN number already mapped to another LUN, or
  already mapped explicitly → EINVAL;
* the mapping is read-only when the ACL already had a (demo-mode) mapping that was, or
  when prod_mode_write_protect is set, or when the LUN is read-only;
* a new mapping queues 3Fh/0Eh REPORTED LUNS DATA HAS CHANGED to the initiator's other
  mapped LUNs, and applies matching APTPL pre-registrations;
* ``write_protect`` reads empty while nothing is mapped; writes must be 0 or 1 (EINVAL,
  no message), and are accepted (and logged) even while unmapped;
* mapped-LUN statistics answer ENODEV while nothing is mapped.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FixedGroup, ObjGroup, obj

if TYPE_CHECKING:
    from simfs.core.lun import SeLun
    from simfs.core.tpg import SePortalGroup, Session

TRANSPORT_IQN_LEN = 224


class DevEntry:
    """se_dev_entry: one LUN mapped for one node ACL at one mapped LUN number."""

    def __init__(self, acl: "NodeAcl", lun: "SeLun", mapped_lun: int, read_only: bool,
                 lacl: Optional["SeLunAcl"]):
        self.acl = acl
        self.lun = lun
        self.mapped_lun = mapped_lun
        self.lun_access_ro = bool(read_only)
        self.lacl = lacl
        self.creation_time = time.clock_gettime(time.CLOCK_BOOTTIME)
        self.attach_count = 1
        self.total_cmds = 0
        self.read_bytes = 0
        self.write_bytes = 0
        #: se_dev_entry ua_list: the unit attentions pending on this mapping, one queue for
        #: every session of the ACL; the engine (simfs.scsi.ua) orders and reports them
        self.ua_list: list[tuple[int, int]] = []


class NodeAcl:
    """se_node_acl: an initiator allowed into a TPG (explicit, or dynamic in demo mode)."""

    def __init__(self, tpg: "SePortalGroup", name: str, dynamic: bool = False):
        self.tpg = tpg
        self.core = tpg.core
        self.name = name[:TRANSPORT_IQN_LEN - 1]
        self.dynamic = dynamic
        self.tag = ""
        depth = tpg.ops.default_depth(tpg)
        if not depth:
            tpg.log.warn(f"Queue depth for {tpg.fabric_name} Initiator Node: {self.name} is 0,"
                         "defaulting to 1.")
            depth = 1
        self.queue_depth = depth
        self.acl_index = self.core.next_scsi_index("auth_intr")
        #: mapped LUN number -> mapping, in mapping order
        self.deves: dict[int, DevEntry] = {}
        self.sessions: dict[Optional[str], "Session"] = {}
        self.private: dict[str, Any] = {}
        tpg.ops.init_nodeacl(self)

    @property
    def log(self):
        return self.tpg.log

    def _prefix(self) -> str:
        return f"{self.tpg.fabric_name}_TPG[{self.tpg.tpgt}]"

    def log_added(self) -> None:
        self.log.debug(f"{self._prefix()} - Added {'DYNAMIC' if self.dynamic else ''} ACL with "
                       f"TCQ Depth: {self.queue_depth} for {self.tpg.fabric_name} Initiator "
                       f"Node: {self.name}")

    # -- unit attentions --------------------------------------------------------------------
    def ua(self, deve: DevEntry, asc: int, ascq: int) -> None:
        """core_scsi3_ua_allocate on ``deve``: one queue for every session of this ACL
        through its LUN, kept for sessions yet to come."""
        if deve.lun.dev is None:
            return
        self.core.events.ua_allocate(deve, asc, ascq)

    def luns_data_has_changed(self, new: Optional[DevEntry], skip_new: bool) -> None:
        """target_luns_data_has_changed: 3Fh/0Eh to this ACL's mappings."""
        for deve in list(self.deves.values()):
            if skip_new and deve is new:
                continue
            self.ua(deve, 0x3F, 0x0E)

    # -- mappings (core_enable/disable_device_list_for_node) ----------------------------------
    def enable_deve(self, lun: "SeLun", mapped_lun: int, read_only: bool,
                    lacl: Optional["SeLunAcl"]) -> DevEntry:
        orig = self.deves.get(mapped_lun)
        if orig is not None:
            if orig.lun is not lun:
                raise ConfigfsError(errno.EINVAL, "Existing orig->se_lun doesn't match new lun "
                                    f"for dynamic -> explicit NodeACL conversion: {self.name}")
            if orig.lacl is not None:
                raise ConfigfsError(errno.EINVAL, "Detected existing explicit "
                                    "se_lun_acl->se_lun_group reference for "
                                    f"{self.name} mapped_lun: {mapped_lun}, failing")
            orig.lacl = lacl
            orig.lun_access_ro = bool(read_only)
            return orig
        deve = DevEntry(self, lun, mapped_lun, read_only, lacl)
        self.deves[mapped_lun] = deve
        lun.deves.append(deve)
        self.luns_data_has_changed(deve, skip_new=True)
        return deve

    def disable_deve(self, deve: DevEntry) -> None:
        if self.deves.get(deve.mapped_lun) is deve:
            del self.deves[deve.mapped_lun]
        if deve in deve.lun.deves:
            deve.lun.deves.remove(deve)
        if deve.lacl is not None and deve.lacl.lun is deve.lun:
            deve.lacl.mapped = False
        self.luns_data_has_changed(None, skip_new=False)

    def add_to_devs(self, only: Optional["SeLun"]) -> None:
        """core_tpg_add_node_to_devs: map every (or one) TPG LUN at its own number."""
        tpg = self.tpg
        for lun in tpg.linked_luns():
            if only is not None and lun is not only:
                continue
            ro = bool(tpg.ops.demo_mode_write_protect(tpg)) or bool(lun.dev.read_only)
            tpg.log.debug(f"TARGET_CORE[{tpg.fabric_name}]->TPG[{tpg.tpgt}]_LUN[{lun.lun}] - "
                          f"Adding {'READ-ONLY' if ro else 'READ-WRITE'} access for LUN in "
                          "Demo Mode")
            try:
                self.enable_deve(lun, lun.lun, ro, None)
            except ConfigfsError as e:
                if e.reason:
                    tpg.log.err(e.reason)

    def report_luns(self) -> list[int]:
        """REPORT LUNS order: the newest mapping first (hlist_add_head)."""
        return [m for m in reversed(list(self.deves))]

    # -- life -------------------------------------------------------------------------------
    def free(self) -> None:
        for deve in list(self.deves.values()):
            if deve in deve.lun.deves:
                deve.lun.deves.remove(deve)
        self.deves.clear()
        self.sessions.clear()

    def delete(self) -> None:
        """core_tpg_del_initiator_node_acl (rmdir acls/<I>)."""
        tpg = self.tpg
        if tpg.acls.get(self.name) is self:
            del tpg.acls[self.name]
        self.free()
        tpg.log.debug(f"{self._prefix()} - Deleted ACL with TCQ Depth: {self.queue_depth} for "
                      f"{tpg.fabric_name} Initiator Node: {self.name}")


def add_initiator_node_acl(tpg: "SePortalGroup", name: str) -> NodeAcl:
    """core_tpg_add_initiator_node_acl: mkdir ``acls/<name>``."""
    acl = tpg.acls.get(name)
    if acl is not None:
        if acl.dynamic:
            acl.dynamic = False
            tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}] - Replacing dynamic ACL for {name}")
            return acl
        raise ConfigfsError(errno.EEXIST, f"ACL entry for {tpg.fabric_name} Initiator Node "
                            f"{name} already exists for TPG {tpg.tpgt}, ignoring request.")
    acl = NodeAcl(tpg, name)
    tpg.acls[name] = acl
    acl.log_added()
    return acl


# -- mapped LUNs ------------------------------------------------------------------------------------
class SeLunAcl:
    """se_lun_acl: the ``acls/<I>/lun_<M>`` item."""

    def __init__(self, acl: NodeAcl, name: str, mapped_lun: int):
        self.acl = acl
        self.name = name
        self.mapped_lun = mapped_lun
        self.lun: Optional["SeLun"] = None
        self.mapped = False

    def deve(self) -> Optional[DevEntry]:
        return self.acl.deves.get(self.mapped_lun)


def _show_write_protect(g: Group) -> str:
    deve = obj(g).deve()
    return "" if deve is None else f"{int(deve.lun_access_ro)}\n"


def _store_write_protect(g: Group, buf: bytes) -> None:
    lacl: SeLunAcl = obj(g)
    wp = kparse.kstrtoul(buf, 0)
    if wp not in (0, 1):
        raise ConfigfsError(errno.EINVAL, None)
    deve = lacl.deve()
    if deve is not None:
        deve.lun_access_ro = bool(wp)
    tpg = lacl.acl.tpg
    tpg.log.debug(f"{tpg.fabric_name}_ConfigFS: Changed Initiator ACL: {lacl.acl.name} Mapped "
                  f"LUN: {lacl.mapped_lun} Write Protect bit to {'ON' if wp else 'OFF'}")


def _mapped(g: Group) -> DevEntry:
    deve = obj(g).deve()
    if deve is None:
        raise ConfigfsError(errno.ENODEV, None)
    return deve


def _stat(name: str, fn) -> Attribute:
    def show(g: Group) -> str:
        deve = _mapped(g)
        return fn(deve, deve.acl, deve.acl.tpg)
    return Attribute(name, show)


def _session(deve: DevEntry):
    if not deve.acl.sessions:
        raise ConfigfsError(errno.ENODEV, None)
    return next(iter(deve.acl.sessions.values()))


def _ctime(deve: DevEntry) -> str:
    return f"{int(deve.creation_time * 100) & 0xFFFFFFFF}\n"


SCSI_AUTH_INTR_ATTRS = (
    _stat("inst", lambda d, a, t: f"{t.ops.inst_index(t)}\n"),
    _stat("dev", lambda d, a, t: f"{d.lun.dev.dev_index if d.lun.dev else 0}\n"),
    _stat("port", lambda d, a, t: f"{t.tpgt}\n"),
    _stat("indx", lambda d, a, t: f"{a.acl_index}\n"),
    _stat("dev_or_port", lambda d, a, t: "1\n"),
    _stat("intr_name", lambda d, a, t: f"{a.name}\n"),
    _stat("map_indx", lambda d, a, t: "0\n"),
    _stat("att_count", lambda d, a, t: f"{d.attach_count}\n"),
    _stat("num_cmds", lambda d, a, t: f"{d.total_cmds}\n"),
    _stat("read_mbytes", lambda d, a, t: f"{d.read_bytes >> 20}\n"),
    _stat("write_mbytes", lambda d, a, t: f"{d.write_bytes >> 20}\n"),
    _stat("hs_num_cmds", lambda d, a, t: "0\n"),
    _stat("creation_time", lambda d, a, t: _ctime(d)),
    _stat("row_status", lambda d, a, t: "Ready\n"),
)

SCSI_ATT_INTR_PORT_ATTRS = (
    _stat("inst", lambda d, a, t: f"{t.ops.inst_index(t)}\n"),
    _stat("dev", lambda d, a, t: f"{d.lun.dev.dev_index if d.lun.dev else 0}\n"),
    _stat("port", lambda d, a, t: f"{t.tpgt}\n"),
    _stat("indx", lambda d, a, t: f"{_session(d).sid}\n"),
    _stat("port_auth_indx", lambda d, a, t: f"{a.acl_index}\n"),
    _stat("port_ident", lambda d, a, t:
          f"{a.name}+i+{t.ops.initiator_sid(_session(d).isid)}\n"),
)


class MappedLunGroup(ObjGroup[SeLunAcl]):
    """``acls/<I>/lun_<M>``: write_protect, statistics/, one symlink to a TPG LUN."""

    __slots__ = ()

    def __init__(self, lacl: SeLunAcl):
        super().__init__(lacl.name, lacl, (Attribute("write_protect", _show_write_protect,
                                                     _store_write_protect),))
        stats = self.add_default_group(FixedGroup("statistics", lacl))
        stats.add_default_group(FixedGroup("scsi_auth_intr", lacl, SCSI_AUTH_INTR_ATTRS))
        stats.add_default_group(FixedGroup("scsi_att_intr_port", lacl, SCSI_ATT_INTR_PORT_ATTRS))

    def allow_link(self, name: str, target: Group) -> None:
        from simfs.core.lun import LunGroup
        lacl: SeLunAcl = self.obj
        acl = lacl.acl
        tpg = acl.tpg
        if not isinstance(target, LunGroup):
            raise ConfigfsError(errno.EFAULT, "Bad lun_ci, not a valid lun_ci pointer: "
                                f"{tpg.core.profile.kptr(target)}")
        lun = target.obj
        if lun.dev is None:
            raise ConfigfsError(errno.EINVAL, "Source se_lun->lun_se_dev does not exist")
        if lun.tpg.wwn.name != tpg.wwn.name:
            raise ConfigfsError(errno.EINVAL,
                                f"Illegal Initiator ACL SymLink outside of {tpg.wwn.name}")
        if lun.tpg.name != tpg.name:
            raise ConfigfsError(errno.EINVAL, f"Illegal Initiator ACL Symlink outside of "
                                f"{tpg.wwn.name} TPGT: {tpg.name}")
        deve = acl.deves.get(lacl.mapped_lun)
        if deve is not None:
            ro = deve.lun_access_ro
        else:
            ro = bool(tpg.ops.prod_mode_write_protect(tpg))
        if lun.lun_access_ro:
            ro = True
        lacl.lun = lun
        try:
            acl.enable_deve(lun, lacl.mapped_lun, ro, lacl)
        except ConfigfsError:
            lacl.lun = None
            raise
        lacl.mapped = True
        tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}]_LUN[{lun.lun}->{lacl.mapped_lun}] - "
                      f"Added {'RO' if ro else 'RW'} ACL for InitiatorNode: {acl.name}")
        tpg.core.events.check_aptpl_registration(lun.dev, lun, acl.name, lacl.mapped_lun)

    def drop_link(self, link) -> None:
        lacl: SeLunAcl = self.obj
        lun = getattr(link.target, "obj", None)
        deve = lacl.deve()
        if lun is None or deve is None or deve.lacl is not lacl or deve.lun is not lun:
            return  # this link never made the mapping (refused, or already gone)
        acl = lacl.acl
        tpg = acl.tpg
        acl.disable_deve(deve)
        lacl.lun = None
        lacl.mapped = False
        tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}]_LUN[{lun.lun}] - Removed ACL for "
                      f"InitiatorNode: {acl.name} Mapped LUN: {lacl.mapped_lun}")


class NodeAclGroup(ObjGroup[NodeAcl]):
    """``acls/<I>``: fabric ACL attributes, attrib/ auth/ param/ fabric_statistics/, lun_<M>."""

    __slots__ = ()

    def __init__(self, acl: NodeAcl):
        ops = acl.tpg.ops
        super().__init__(acl.name, acl, ops.acl_base_attrs)
        self.add_default_group(ObjGroup("attrib", acl, ops.attrs(acl.core.kernel, "acl_attrib")))
        self.add_default_group(ObjGroup("auth", acl, ops.acl_auth_attrs))
        self.add_default_group(ObjGroup("param", acl, ops.acl_param_attrs))
        stats = self.add_default_group(ObjGroup("fabric_statistics", acl))
        for g in ops.acl_stat_groups(acl):
            stats.add_default_group(g)

    def make_group(self, name: str) -> Group:
        acl: NodeAcl = self.obj
        if not name.startswith("lun_"):
            raise ConfigfsError(errno.EINVAL, f'Unable to locate "lun_" from buf: {name} '
                                f"name: {name}")
        mapped_lun = kparse.kstrtoull(name[4:], 0)
        return MappedLunGroup(SeLunAcl(acl, name, mapped_lun))
