"""Target portal groups: ``target/<fabric>/<wwn>/tpgt_N/`` (target_core_tpg.c and the
tpg part of target_core_fabric_configfs.c).

``tpgt_N/`` holds ``lun/``, ``np/``, ``acls/``, ``attrib/``, ``auth/``, ``param/`` default
groups, the generic ``enable`` (when the fabric implements enable, as in ≥5.16 kernels)
and the fabric's own tpg attributes. Demo mode (dynamic node ACLs) and sessions live
here too: a fabric logging an initiator in calls :meth:`SePortalGroup.check_initiator_node_acl`
(core_tpg_check_initiator_node_acl), then :meth:`SePortalGroup.add_session`.
"""

from __future__ import annotations

import errno
import itertools
from typing import TYPE_CHECKING, Any, Optional

from simfs.configfs import Attribute, ConfigfsError, Group, owner
from simfs.core import kparse
from simfs.core.fabric import FixedGroup, ObjGroup, obj

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.fabric import SeWwn
    from simfs.core.lun import SeLun

_session_ids = itertools.count(1)


class Session:
    """se_session: one logged-in I_T nexus of a node ACL (iSCSI: one ISID)."""

    def __init__(self, acl: "NodeAcl", isid: Optional[str]):
        self.acl = acl
        self.isid = isid
        self.sid = next(_session_ids)
        #: the fabric's own session object (se_session->fabric_sess_ptr), if it has one
        self.fabric_sess: Any = None


class SePortalGroup:
    """se_portal_group: one TPG with its LUNs, node ACLs, network portals and sessions."""

    def __init__(self, wwn: "SeWwn", tpgt: int, name: str):
        self.wwn = wwn
        self.fmod = wwn.fmod
        self.ops = wwn.ops
        self.core = wwn.core
        self.tpgt = tpgt
        self.name = name
        self.luns: dict[str, "SeLun"] = {}
        self.acls: dict[str, "NodeAcl"] = {}
        self.nps: list[Any] = []
        self.enabled = False
        #: tpg_rtpi (6.3+): 0 until the first enable; rtpi_manual when written by the user
        self.rtpi = 0
        self.rtpi_manual = False
        self.private: dict[str, Any] = {}
        self._virt_lun0: Optional["SeLun"] = None
        self.proto_id = self.ops.proto_id(self)
        self.log.debug(f"TARGET_CORE[{self.fabric_name}]: Allocated portal_group for endpoint: "
                       f"{wwn.address}, Proto: {self.proto_id}, Portal Tag: {tpgt}")

    # -- names ------------------------------------------------------------------------------
    @property
    def log(self):
        return self.core.log

    @property
    def fabric_name(self) -> str:
        return self.ops.fabric_name

    @property
    def wwn_name(self) -> str:
        """tpg_get_wwn."""
        return self.wwn.address

    def deregister(self) -> None:
        self.deregister_rtpi()
        self.ops.drop_tpg(self)
        for acl in list(self.acls.values()):
            acl.free()
        self.acls.clear()
        self.log.debug(f"TARGET_CORE[{self.fabric_name}]: Deallocating portal_group for endpoint:"
                       f" {self.wwn_name}, Proto: {self.proto_id}, Portal Tag: {self.tpgt}")

    # -- relative target port ids (6.3+: one per TPG, from one pool for every fabric) -----------
    def register_rtpi(self) -> None:
        """target_tpg_register_rtpi: the written id if free, else the lowest free one."""
        pool = self.core.tpg_rtpis
        if self.rtpi_manual:
            if not pool.claim(self.rtpi, self):
                raise ConfigfsError(errno.EINVAL, f"{self.fabric_name}_TPG[{self.tpgt}] - Can "
                                    f"not set RTPI {_c_alt_hex(self.rtpi)}, it is already busy")
            return
        val = pool.alloc(self, 1, 0xFFFF)
        if val is None:
            raise ConfigfsError(errno.EBUSY, None)
        self.rtpi = val

    def deregister_rtpi(self) -> None:
        """target_tpg_deregister_rtpi: the id goes back to the pool; tpg_rtpi keeps it."""
        if self.rtpi and self.enabled and self.core.tpg_rtpis.get(self.rtpi) is self:
            self.core.tpg_rtpis.remove(self.rtpi)

    def set_enabled(self, op: bool) -> None:
        """target_tpg_enable / target_tpg_disable (the generic enable of 5.16+)."""
        if op:
            if self.core.kernel.has("tpg_rtpi"):
                self.register_rtpi()
            try:
                self.ops.enable_tpg(self, True)
            except ConfigfsError:
                if self.core.kernel.has("tpg_rtpi") and \
                        self.core.tpg_rtpis.get(self.rtpi) is self:
                    self.core.tpg_rtpis.remove(self.rtpi)
                raise
            self.enabled = True
        else:
            if self.core.kernel.has("tpg_rtpi"):
                self.deregister_rtpi()
            self.ops.enable_tpg(self, False)
            self.enabled = False

    # -- LUNs -------------------------------------------------------------------------------
    def linked_luns(self) -> list["SeLun"]:
        """The linked LUNs in tpg_lun_hlist order: the newest link first."""
        linked = [lun for lun in self.luns.values() if lun.dev is not None]
        return sorted(linked, key=lambda lun: -lun.link_seq)

    def virt_lun0(self) -> Optional["SeLun"]:
        """tpg_virt_lun0: the read-only LUN 0 an initiator without a LUN 0 mapping reaches."""
        dev = getattr(self.core, "lun0_dev", None)
        if dev is None:
            return None
        if self._virt_lun0 is None:
            from simfs.core.lun import SeLun
            lun = SeLun(self, "lun_0", 0)
            lun.dev = dev
            lun.lun_access_ro = True
            lun.virtual_lun0 = True
            self._virt_lun0 = lun
        return self._virt_lun0

    # -- node ACLs and demo mode ------------------------------------------------------------
    def demo_mode(self) -> bool:
        return bool(self.ops.demo_mode(self))

    def find_acl(self, name: str) -> Optional["NodeAcl"]:
        return self.acls.get(name)

    def check_initiator_node_acl(self, name: str) -> Optional["NodeAcl"]:
        """core_tpg_check_initiator_node_acl: the explicit ACL, else (demo mode) a dynamic one."""
        from simfs.core.acl import NodeAcl
        acl = self.acls.get(name)
        if acl is not None:
            return acl
        if not self.demo_mode():
            return None
        acl = NodeAcl(self, name, dynamic=True)
        self.acls[name] = acl
        acl.add_to_devs(None)
        acl.log_added()
        return acl

    def add_session(self, acl: "NodeAcl", isid: Optional[str]) -> Session:
        sess = acl.sessions.get(isid)
        if sess is None:
            sess = Session(acl, isid)
            acl.sessions[isid] = sess
        return sess

    def remove_session(self, acl: "NodeAcl", isid: Optional[str]) -> None:
        acl.sessions.pop(isid, None)
        if acl.dynamic and not acl.sessions and not self.ops.demo_mode_cache(self):
            # a dynamic ACL without cache_dynamic_acls goes with its last session
            if self.acls.get(acl.name) is acl:
                del self.acls[acl.name]
            acl.free()

    def sessions(self) -> list[Session]:
        return [s for acl in self.acls.values() for s in acl.sessions.values()]


# -- tpgt_N attributes ----------------------------------------------------------------------------
def _c_alt_hex(val: int) -> str:
    """C's ``%#x``: ``0`` for zero, ``0x1f`` otherwise."""
    return f"{val:#x}" if val else "0"


def _show_enable(g: Group) -> str:
    return f"{int(obj(g).enabled)}\n"


def _store_enable(g: Group, buf: bytes) -> None:
    tpg: SePortalGroup = obj(g)
    op = kparse.kstrtobool(buf)
    if tpg.enabled == op:
        return
    tpg.set_enabled(op)


def _show_rtpi(g: Group) -> str:
    return f"{_c_alt_hex(obj(g).rtpi)}\n"


def _store_rtpi(g: Group, buf: bytes) -> None:
    tpg: SePortalGroup = obj(g)
    val = kparse.kstrtou16(buf, 0)
    if val == 0:
        raise ConfigfsError(errno.EINVAL, None)
    if tpg.enabled:
        # pr_info without a newline: the next line of the log continues it in dmesg
        raise ConfigfsError(errno.EINVAL, f"{tpg.fabric_name}_TPG[{tpg.tpgt}] - Can not change "
                            "RTPI on enabled TPG")
    tpg.rtpi = val
    tpg.rtpi_manual = True


ENABLE_ATTR = Attribute("enable", _show_enable, _store_enable)
RTPI_ATTR = Attribute("rtpi", _show_rtpi, _store_rtpi)


def tpg_base_table(tpg: SePortalGroup) -> tuple[Attribute, ...]:
    """The fabric's own files, then the core's (enable if the fabric enables, rtpi)."""
    kernel, ops = tpg.core.kernel, tpg.ops
    generic = tuple(a for a in kernel.table("tpg_base", (ENABLE_ATTR, RTPI_ATTR))
                    if a is not ENABLE_ATTR or ops.has_enable)
    return ops.attrs(kernel, "tpg_base") + generic


class TpgGroup(ObjGroup["SePortalGroup"]):
    """``<wwn>/tpgt_N``."""

    __slots__ = ()

    def __init__(self, tpg: SePortalGroup):
        ops, kernel = tpg.ops, tpg.core.kernel
        super().__init__(tpg.name, tpg, tpg_base_table(tpg))
        self.add_default_group(LunsGroup(tpg))
        self.add_default_group(NpsGroup(tpg))
        self.add_default_group(AclsGroup(tpg))
        self.add_default_group(ObjGroup("attrib", tpg, ops.attrs(kernel, "tpg_attrib")))
        self.add_default_group(ObjGroup("auth", tpg, ops.tpg_auth_attrs))
        self.add_default_group(ObjGroup("param", tpg, ops.tpg_param_attrs))


class LunsGroup(ObjGroup["SePortalGroup"]):
    """``tpgt_N/lun``: mkdir ``lun_<L>`` (target_fabric_make_lun)."""

    __slots__ = ()

    def __init__(self, tpg: SePortalGroup):
        super().__init__("lun", tpg)

    def make_group(self, name: str) -> Group:
        from simfs.core.lun import LunGroup, SeLun
        tpg: SePortalGroup = self.obj
        if not name.startswith("lun_"):
            raise ConfigfsError(errno.EINVAL, "Unable to locate '_\" in \"lun_$LUN_NUMBER\"")
        try:
            unpacked = kparse.kstrtoull(name[4:], 0)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, None) from None
        lun = SeLun(tpg, name, unpacked)
        tpg.luns[name] = lun
        return LunGroup(lun)

    def drop_item(self, child: Group) -> None:
        tpg: SePortalGroup = self.obj
        tpg.luns.pop(child.name, None)


class NpsGroup(ObjGroup["SePortalGroup"]):
    """``tpgt_N/np``: mkdir ``<portal>`` (target_fabric_make_np)."""

    __slots__ = ()

    def __init__(self, tpg: SePortalGroup):
        super().__init__("np", tpg)

    def make_group(self, name: str) -> Group:
        tpg: SePortalGroup = self.obj
        if not tpg.ops.has_np:
            raise ConfigfsError(errno.ENOSYS, "tf->tf_ops.fabric_make_np is NULL")
        try:
            np = tpg.ops.make_np(tpg, name)
        except ConfigfsError as e:
            # target_fabric_make_np: any failure of the fabric's make_np is -EINVAL
            raise ConfigfsError(errno.EINVAL, e.reason) from None
        tpg.nps.append(np)
        return ObjGroup(name, np, tpg.ops.np_attrs)

    def drop_item(self, child: Group) -> None:
        tpg: SePortalGroup = self.obj
        np = owner(child, ObjGroup).obj
        if np in tpg.nps:
            tpg.nps.remove(np)
        tpg.ops.drop_np(tpg, np)


class AclsGroup(ObjGroup["SePortalGroup"]):
    """``tpgt_N/acls``: mkdir ``<initiator>`` (target_fabric_make_nodeacl)."""

    __slots__ = ()

    def __init__(self, tpg: SePortalGroup):
        super().__init__("acls", tpg)

    def make_group(self, name: str) -> Group:
        from simfs.core.acl import NodeAclGroup, add_initiator_node_acl
        tpg: SePortalGroup = self.obj
        acl = add_initiator_node_acl(tpg, name)
        return NodeAclGroup(acl)

    def drop_item(self, child: Group) -> None:
        from simfs.core.acl import NodeAclGroup
        owner(child, NodeAclGroup).obj.delete()


__all__ = ["SePortalGroup", "Session", "TpgGroup", "FixedGroup"]
