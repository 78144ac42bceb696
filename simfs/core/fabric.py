"""Fabric modules in the tree: ``target/<fabric>/`` and ``target/<fabric>/<wwn>/``
(target_core_configfs.c's fabric registration and target_core_fabric_configfs.c).

A fabric plugin is one module of ``simfs_plugins.fabrics`` defining ``FABRIC``, an
instance of :class:`FabricOps` (the kernel's ``target_core_fabric_ops``): its names, the
attribute tables it adds at each level, and the hooks the generic code calls (make_wwn,
make_tpg, make_np, enable, demo-mode checks, post_link/pre_unlink). Everything else —
TPGs, LUNs, ACLs, mapped LUNs, statistics — is generic and lives in tpg.py, lun.py and
acl.py.

Kernel facts kept here (modern target_core_configfs.c / target_core_fabric_configfs.c):

* ``mkdir target/<name>`` looks the fabric up by alias or name; when it is not loaded it
  tries ``request_module`` for ``iscsi*`` (iscsi_target_mod) and ``loopback*`` (tcm_loop)
  only; a name nobody registers is EINVAL.
* every fabric directory gets a ``discovery_auth`` default group (empty for fabrics
  without discovery attributes);
* any failure of the fabric's make_wwn/make_tpg becomes EINVAL;
* ``<wwn>/`` holds ``fabric_statistics/`` (where fabrics add their own groups) and
  ``param/cmd_completion_affinity``.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, Generic, Iterable, Mapping, Optional, Sequence, TypeVar

from simfs.configfs import Attribute, ConfigfsError, Group, owner
from simfs.core import kernels, kparse

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.core import TargetCore
    from simfs.core.lun import SeLun
    from simfs.core.tpg import SePortalGroup


# -- the plugin interface ---------------------------------------------------------------------
# enum target_prot_op (include/target/target_core_base.h): what a session does with T10-PI
TARGET_PROT_NORMAL = 0
TARGET_PROT_DIN_INSERT, TARGET_PROT_DOUT_INSERT = 1 << 0, 1 << 1
TARGET_PROT_DIN_STRIP, TARGET_PROT_DOUT_STRIP = 1 << 2, 1 << 3
TARGET_PROT_DIN_PASS, TARGET_PROT_DOUT_PASS = 1 << 4, 1 << 5
TARGET_PROT_ALL = 0x3F


class FabricOps:
    """One fabric module: the kernel's target_core_fabric_ops, restated.

    Attribute tables are tuples of :class:`Attribute`; their show/store receive the
    group, whose ``obj`` is the state object of that level (the module, the wwn, the
    tpg, the np, the node ACL).
    """

    #: directory name under target/ (fabric_alias, else fabric_name)
    name: str = ""
    #: tfo->fabric_name: what logs, members files and statistics print
    fabric_name: str = ""
    #: the kernel module request_module() would load for it
    module: str = ""
    #: other names ``modprobe`` knows that module by (MODULE_ALIAS)
    aliases: Sequence[str] = ()
    profiles: Sequence[str] = ("modern",)
    #: a boolean row of simfs.core.kernels the version must have for the module to exist
    #: (``"fabric_efct"``); empty: every version of ``profiles``
    kernel_row: str = ""
    wwn_attrs: Sequence[Attribute] = ()
    discovery_attrs: Sequence[Attribute] = ()
    tpg_base_attrs: Sequence[Attribute] = ()
    tpg_attrib_attrs: Sequence[Attribute] = ()
    tpg_auth_attrs: Sequence[Attribute] = ()
    tpg_param_attrs: Sequence[Attribute] = ()
    np_attrs: Sequence[Attribute] = ()
    acl_base_attrs: Sequence[Attribute] = ()
    acl_attrib_attrs: Sequence[Attribute] = ()
    acl_auth_attrs: Sequence[Attribute] = ()
    acl_param_attrs: Sequence[Attribute] = ()
    #: fabric_enable_tpg exists: the generic ``enable`` attribute is shown
    has_enable: bool = False
    #: fabric_make_np exists
    has_np: bool = False
    #: levels whose files differ between kernels: level -> group of the version table
    #: (``{"tpg_attrib": "iscsi_tpg_attrib"}``); the level's ``<level>_attrs`` hold every
    #: file any version has, and the table picks this version's, in its order
    versioned: Mapping[str, str] = {}
    #: wwn/param/default_submit_type and direct_submit_supported (6.10+)
    default_submit_type: int = 0
    direct_submit_supported: int = 0
    #: the sessions' sup_prot_ops (TARGET_PROT_*): what the fabric does with T10-PI, given
    #: at target_setup_session; the engine reports PI only through ports that pass it
    sup_prot_ops: int = TARGET_PROT_NORMAL

    def attrs(self, kernel, level: str) -> tuple[Attribute, ...]:
        """The attribute files of ``level`` (``"wwn"``, ``"tpg_base"`` ...) in ``kernel``."""
        own = tuple(getattr(self, f"{level}_attrs"))
        group = self.versioned.get(level)
        if group is None or kernel.legacy:
            return own
        return kernel.table(group, own)

    # module life
    def load(self, fmod: "FabricModule") -> None:
        """Module init: log what the module logs, set up module-wide state in fmod.state."""

    # hardware (``simfs mount --wwn FABRIC=PORT``)
    def hw_port(self, value: str) -> str:
        """The canonical name of a hardware port this fabric drives; ValueError if invalid."""
        raise ValueError(f"{self.name} drives no hardware ports")

    # wwn
    def make_wwn(self, fmod: "FabricModule", name: str) -> "SeWwn":
        raise NotImplementedError

    def drop_wwn(self, wwn: "SeWwn") -> None:
        """Log and forget fabric-private state of ``wwn``."""

    def wwn_stat_groups(self, wwn: "SeWwn") -> list[Group]:
        return []

    # tpg
    def make_tpg(self, wwn: "SeWwn", name: str) -> int:
        """Parse ``tpgt_N``; return N (raise ConfigfsError to refuse)."""
        raise NotImplementedError

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        """After core_tpg_register: fabric-private defaults and the fabric's log lines."""

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        pass

    def proto_id(self, tpg: "SePortalGroup") -> int:
        raise NotImplementedError

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        raise ConfigfsError(errno.EINVAL)

    def make_np(self, tpg: "SePortalGroup", name: str) -> Any:
        raise ConfigfsError(errno.ENOSYS, "tf->tf_ops.fabric_make_np is NULL")

    def drop_np(self, tpg: "SePortalGroup", np: Any) -> None:
        pass

    # demo mode / defaults
    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return False

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return False

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return False

    def prod_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return False

    def default_depth(self, tpg: "SePortalGroup") -> int:
        return 1

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return 1

    # node ACLs
    def init_nodeacl(self, acl: "NodeAcl") -> None:
        """set_default_node_attributes: fabric-private ACL state."""

    def acl_stat_groups(self, acl: "NodeAcl") -> list[Group]:
        return []

    def initiator_sid(self, isid: Optional[str]) -> str:
        return ""

    # LUN link hooks
    def post_link(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        pass

    def pre_unlink(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        pass


# -- discovery ------------------------------------------------------------------------------
def discover_fabrics() -> list[FabricOps]:
    """Every fabric plugin available to this installation (``simfs.fabrics``)."""
    from simfs.core.registry import discover_plugins

    return discover_plugins("simfs.fabrics", FabricOps)


class FabricModule:
    """A loaded fabric module: its ops, module-wide state, and its wwns."""

    def __init__(self, core: "TargetCore", ops: FabricOps):
        self.core = core
        self.ops = ops
        self.state: dict[str, Any] = {}
        self.wwns: dict[str, SeWwn] = {}

    @property
    def log(self):
        return self.core.log


def fabric_modules(core: "TargetCore") -> dict[str, FabricModule]:
    """The fabric modules loaded in ``core`` (they stay loaded after rmdir, like modules)."""
    return core.fabric_modules


def available_fabrics(core: "TargetCore") -> dict[str, FabricOps]:
    """The fabric plugins this kernel has: a fabric module the version table dates (efct,
    remote) only from the release that brought it."""
    if core.fabric_plugins is None:
        core.fabric_plugins = {ops.name: ops for ops in discover_fabrics()
                               if in_kernel(ops, core.kernel)}
    return core.fabric_plugins


def in_kernel(ops: FabricOps, kernel) -> bool:
    """Whether kernel version ``kernel`` (simfs.core.kernels) has the fabric module ``ops``."""
    return kernel.family in ops.profiles and (not ops.kernel_row or kernel.has(ops.kernel_row))


def _first_release(ops: FabricOps) -> str:
    """The release that brought a dated fabric module ("" when every version has it)."""
    return next((c.since for c in kernels.CHANGES if c.key == ops.kernel_row and c.value), "")


def _get_fabric(core: "TargetCore", name: str) -> Optional[FabricModule]:
    """target_core_get_fabric: a *loaded* module whose alias or name equals ``name``
    (before 5.0 only the module's own name, ``tfo->name``)."""
    for fmod in fabric_modules(core).values():
        names = (fmod.ops.name, fmod.ops.fabric_name) \
            if core.kernel.has("fabric_alias_lookup") else (fmod.ops.name,)
        if name in names:
            return fmod
    return None


def _autoload(core: "TargetCore", name: str) -> None:
    """The hardcoded request_module() calls of target_core_register_fabric."""
    log = core.log
    log.debug(f"target_core_register_fabric() trying autoload for {name}")
    if name.startswith("iscsi"):
        want = "iscsi_target_mod"
    elif name.startswith("loopback"):
        want = "tcm_loop"
    else:
        return
    ops = next((o for o in available_fabrics(core).values() if o.module == want), None)
    if ops is None:
        log.debug(f"request_module() failed for {want}.ko: -2")
        raise ConfigfsError(errno.EINVAL, f"target_core_get_fabric() failed for {name}")
    _register(core, ops)


def _register(core: "TargetCore", ops: FabricOps) -> None:
    """The fabric module's init: its template registers (target_register_template)."""
    fmod = FabricModule(core, ops)
    fabric_modules(core)[ops.name] = fmod
    ops.load(fmod)
    core.module_loaded(ops.module)


def provides_module(ops: FabricOps, module: str) -> bool:
    """Whether the fabric plugin ``ops`` is kernel module ``module`` (modprobe treats ``-``
    and ``_`` alike)."""
    want = module.replace("-", "_")
    return want in {n.replace("-", "_") for n in (ops.module, *ops.aliases)}


def load_module(core: "TargetCore", module: str) -> list[str]:
    """``modprobe MODULE``: register the fabrics that module provides. Returns their names;
    [] when no fabric plugin of this kernel is that module."""
    loaded = []
    for ops in available_fabrics(core).values():
        if not provides_module(ops, module):
            continue
        if ops.name not in fabric_modules(core):
            _register(core, ops)
        loaded.append(ops.name)
    return loaded


def parse_hardware_ports(specs: Iterable[str], kernel=None) -> dict[str, list[str]]:
    """``FABRIC=PORT`` specs (``--wwn``) as {fabric: [canonical port, ...]}; ValueError names
    a bad one, or one whose driver ``kernel`` (a version of simfs.core.kernels) does not
    have: no such machine exists (an Emulex port on 4.18 is lpfc's, an initiator's)."""
    ports: dict[str, list[str]] = {}
    plugins = {}
    for ops in discover_fabrics():  # by directory name, and by module name (fc = tcm_fc)
        plugins.setdefault(ops.module, ops)
        plugins[ops.name] = ops
    for spec in specs:
        fabric, eq, value = spec.partition("=")
        ops = plugins.get(fabric)
        if not eq or ops is None:
            raise ValueError(f"--wwn wants FABRIC=PORT with a known fabric, not {spec!r}")
        if kernel is not None and not in_kernel(ops, kernel):
            since = _first_release(ops)
            raise ValueError(f"--wwn {spec}: --kernel {kernel.name} has no {ops.module} "
                             "driver" + (f" (it came with Linux {since})" if since else "")
                             + "; choose a later --kernel or leave this port out")
        port = ops.hw_port(value)
        if port not in ports.setdefault(ops.name, []):
            ports[ops.name].append(port)
    return ports


def set_hardware_ports(core: "TargetCore", specs: Iterable[str]) -> None:
    """The hardware ports of this "machine" (parse_hardware_ports)."""
    core.hardware_ports = parse_hardware_ports(specs)


def hardware_ports(core: "TargetCore", fabric: str) -> list[str]:
    """The canonical names of ``fabric``'s hardware ports (set_hardware_ports)."""
    return list(core.hardware_ports.get(fabric, ()))


def make_fabric_group(core: "TargetCore", name: str) -> Group:
    """target_core_register_fabric: ``mkdir target/<name>``."""
    fmod = _get_fabric(core, name)
    if fmod is None:
        _autoload(core, name)
        fmod = _get_fabric(core, name)
    if fmod is None:
        raise ConfigfsError(errno.EINVAL, f"target_core_get_fabric() failed for {name}")
    log = core.log
    log.debug(f"Target_Core_ConfigFS: REGISTER -> Located fabric: {fmod.ops.fabric_name}")
    log.debug(f"Target_Core_ConfigFS: REGISTER tfc_wwn_cit -> {core.profile.kptr(fmod)}")
    group = FabricGroup(fmod, name)
    log.debug(f"Target_Core_ConfigFS: REGISTER -> Allocated Fabric: {name}")
    return group


# -- small helpers shared by the fabric groups ---------------------------------------------------
T = TypeVar("T")


class ObjGroup(Group, Generic[T]):
    """A group whose attributes act on one state object (``obj``); a subclass names the
    object's type (``ObjGroup["SePortalGroup"]``) so ``owner(g, TpgGroup).obj`` is typed."""

    __slots__ = ("obj", "_table")

    def __init__(self, name: str, obj: T, table: Sequence[Attribute] = ()):
        super().__init__(name)
        self.obj = obj
        self._table = tuple(table)

    def attribute_table(self):
        return self._table


class FixedGroup(ObjGroup[Any]):
    """A statistics-style default group: mkdir below it is ENOSYS."""

    __slots__ = ()

    def make_group(self, name: str) -> Group:
        raise ConfigfsError(errno.ENOSYS, f"configfs: mkdir {self.path()}/{name}: statistics "
                            "groups are fixed")


def obj(g: Group) -> Any:
    """The state object of the :class:`ObjGroup` an attribute lives in."""
    return owner(g, ObjGroup).obj


# -- target/<fabric> ---------------------------------------------------------------------------
class FabricGroup(ObjGroup["FabricModule"]):
    """``target/<fabric>``: the fabric's wwn-level attributes, discovery_auth/, and wwns."""

    __slots__ = ()

    def __init__(self, fmod: FabricModule, name: str):
        super().__init__(name, fmod, fmod.ops.attrs(fmod.core.kernel, "wwn"))
        self.add_default_group(ObjGroup("discovery_auth", fmod, fmod.ops.discovery_attrs))

    def make_group(self, name: str) -> Group:
        fmod: FabricModule = self.obj
        try:
            wwn = fmod.ops.make_wwn(fmod, name)
        except ConfigfsError as e:
            raise ConfigfsError(errno.EINVAL, e.reason) from None
        fmod.wwns[name] = wwn
        return WwnGroup(wwn)

    def drop_item(self, child: Group) -> None:
        wwn = owner(child, WwnGroup).obj
        wwn.fmod.ops.drop_wwn(wwn)
        wwn.fmod.wwns.pop(wwn.name, None)

    def release(self) -> None:
        log = self.obj.log
        log.debug(f"Target_Core_ConfigFS: DEREGISTER -> Releasing tf: {self.obj.ops.fabric_name}")
        log.debug(f"Target_Core_ConfigFS: DEREGISTER -> Releasing ci {self.name}")


# -- target/<fabric>/<wwn> -----------------------------------------------------------------------
SE_COMPL_AFFINITY_CPUID = -1
SE_COMPL_AFFINITY_CURR_CPU = -2


class SeWwn:
    """se_wwn: one target endpoint name (an IQN, a tcm_loop SAS/FC/iSCSI address)."""

    def __init__(self, fmod: FabricModule, name: str, address: Optional[str] = None):
        self.fmod = fmod
        self.ops = fmod.ops
        self.core = fmod.core
        self.name = name
        #: what tpg_get_wwn returns (tcm_loop drops the "fc." prefix)
        self.address = address if address is not None else name
        #: by configfs name (two names may parse to one tag, e.g. tpgt_1 and tpgt_01)
        self.tpgs: dict[str, "SePortalGroup"] = {}
        self.cmd_compl_affinity = SE_COMPL_AFFINITY_CPUID
        self.private: dict[str, Any] = {}

    @property
    def log(self):
        return self.core.log


def _show_affinity(g: Group) -> str:
    return f"{obj(g).cmd_compl_affinity}\n"


def _store_affinity(g: Group, buf: bytes) -> None:
    wwn: SeWwn = obj(g)
    try:
        val = kparse.kstrtoint(buf, 0)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if val in (SE_COMPL_AFFINITY_CPUID, SE_COMPL_AFFINITY_CURR_CPU):
        wwn.cmd_compl_affinity = val
        return
    online = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(
        range(os.cpu_count() or 1))
    if val < 0 or val >= (os.cpu_count() or 1) or val not in online:
        raise ConfigfsError(errno.EINVAL, "Command completion value must be between "
                            f"{SE_COMPL_AFFINITY_CPUID} and {SE_COMPL_AFFINITY_CURR_CPU} or an "
                            "online CPU.")
    wwn.cmd_compl_affinity = val


WWN_PARAM_ATTRS = (
    Attribute("cmd_completion_affinity", _show_affinity, _store_affinity),
    Attribute("default_submit_type", lambda g: f"{obj(g).ops.default_submit_type}\n"),
    Attribute("direct_submit_supported", lambda g: f"{obj(g).ops.direct_submit_supported}\n"),
)


class WwnGroup(ObjGroup["SeWwn"]):
    """``target/<fabric>/<wwn>``: fabric_statistics/, param/, and ``tpgt_N`` groups."""

    __slots__ = ()

    def __init__(self, wwn: SeWwn):
        super().__init__(wwn.name, wwn)
        stats = self.add_default_group(ObjGroup("fabric_statistics", wwn))
        for g in wwn.ops.wwn_stat_groups(wwn):
            stats.add_default_group(g)
        params = wwn.core.kernel.table("wwn_param", WWN_PARAM_ATTRS)
        if params:  # the param/ group came with its first file (5.12)
            self.add_default_group(ObjGroup("param", wwn, params))

    def make_group(self, name: str) -> Group:
        from simfs.core.tpg import SePortalGroup, TpgGroup
        wwn: SeWwn = self.obj
        try:
            tpgt = wwn.ops.make_tpg(wwn, name)
        except ConfigfsError as e:
            raise ConfigfsError(errno.EINVAL, e.reason) from None
        tpg = SePortalGroup(wwn, tpgt, name)
        wwn.tpgs[name] = tpg
        wwn.ops.init_tpg(tpg)
        return TpgGroup(tpg)

    def drop_item(self, child: Group) -> None:
        from simfs.core.tpg import TpgGroup
        tpg = owner(child, TpgGroup).obj
        tpg.deregister()
        wwn: SeWwn = self.obj
        if wwn.tpgs.get(tpg.name) is tpg:
            del wwn.tpgs[tpg.name]


def all_tpgs(core: "TargetCore", fabric: Optional[str] = None) -> Iterable["SePortalGroup"]:
    for fmod in fabric_modules(core).values():
        if fabric is not None and fmod.ops.name != fabric:
            continue
        for wwn in fmod.wwns.values():
            yield from wwn.tpgs.values()


if TYPE_CHECKING:  # re-exported names for type checkers
    from simfs.core.tpg import SePortalGroup  # noqa: F811


_CITS = ("discovery", "wwn", "wwn_fabric_stats", "wwn_param", "tpg", "tpg_base", "tpg_port",
         "tpg_port_stat", "tpg_lun", "tpg_np", "tpg_np_base", "tpg_attrib", "tpg_auth",
         "tpg_param", "tpg_nacl", "tpg_nacl_base", "tpg_nacl_attrib", "tpg_nacl_auth",
         "tpg_nacl_param", "tpg_nacl_stat", "tpg_mappedlun", "tpg_mappedlun_stat")


def register_template(fmod: FabricModule) -> None:
    """target_register_template: target_fabric_setup_cits logs each config_item_type."""
    has_param = bool(fmod.core.kernel.files("wwn_param"))
    for name in _CITS:
        if name != "wwn_param" or has_param:
            fmod.log.debug(f"Setup generic {name}")
