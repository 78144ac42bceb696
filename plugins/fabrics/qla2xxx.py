"""tcm_qla2xxx (drivers/scsi/qla2xxx/tcm_qla2xxx.c), ``target/qla2xxx``: QLogic FC HBAs in
target mode. The HBAs are the machine's: ``simfs mount --wwn qla2xxx=21:00:00:24:ff:31:4c:48``
(repeatable) says which port names exist, and ``simfs run`` shows them under
/sys/class/fc_host as the qla2xxx driver would.

* ``mkdir qla2xxx/<wwpn>``: ``xx:xx:xx:xx:xx:xx:xx:xx`` in lower-case hex, and an HBA with
  that port name must exist → else EINVAL. The target port's name is ``naa.<16 hex>``.
* ``tpgt_1`` only (non-NPIV mode); ``enable`` (before 5.16 the module's own: 0 or 1,
  EEXIST when already enabled, and on 4.18 an enabled TPG cannot be removed); ``dynamic_sessions`` (read-only: initiators
  logged in through demo mode); ``fabric_prot_type`` (0, 1 or 3).
* ``attrib/``: generate_node_acls, cache_dynamic_acls, demo_mode_write_protect,
  demo_mode_login_only (1 by default), prod_mode_write_protect (0); each takes 0 or 1,
  anything else EINVAL. Demo mode follows generate_node_acls.
* Node ACLs are named by the initiator's WWPN (same syntax, else EINVAL).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.fabric import (FabricModule, FabricOps, SeWwn, hardware_ports, obj,
                               register_template)
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup

QLA2XXX_VERSION = "10.02.09.400-k"
TCM_QLA2XXX_NAMELEN = 32
#: tcm_qla2xxx_tpg_enable_store (before 5.16); until early 2019 enabling also pinned the TPG
OWN_ENABLE = lib.OwnEnable(bad_number="kstrtoul() returned {rc}",
                           bad_value="Illegal value for tpg_enable: {val}",
                           again_on=errno.EEXIST, pin_row="qla2xxx_enable_pins_tpg")
ATTRIB_DEFAULTS = {"generate_node_acls": 1, "cache_dynamic_acls": 1,
                   "demo_mode_write_protect": 1, "prod_mode_write_protect": 0,
                   "demo_mode_login_only": 1}


def _version(g) -> str:
    sysname, machine, release = g.obj.core.profile.uname()
    return (f"TCM QLOGIC QLA2XXX NPIV capable fabric module {QLA2XXX_VERSION} on "
            f"{sysname}/{machine} on {release}\n")


def _dynamic_sessions(g: Group) -> str:
    tpg: "SePortalGroup" = obj(g)
    return "".join(f"{acl.name}\n" for acl in tpg.acls.values()
                   if acl.dynamic for _ in acl.sessions.values())


def _attr(tpg: "SePortalGroup", name: str) -> int:
    return tpg.private["attrib"][name]


class Qla2xxx(FabricOps):
    name = "qla2xxx"
    fabric_name = "qla2xxx"
    module = "tcm_qla2xxx"
    wwn_attrs = (Attribute("version", _version),)
    tpg_base_attrs = (lib.own_enable_attr(OWN_ENABLE),
                      Attribute("dynamic_sessions", _dynamic_sessions),
                      lib.prot_type_attr("qla2xxx"))
    versioned = {"tpg_base": "qla2xxx_tpg_base"}
    tpg_attrib_attrs = tuple(lib.bool_attrib(n, "%d", lambda e: errno.EINVAL)
                             for n in ATTRIB_DEFAULTS)
    has_enable = True

    def hw_port(self, value: str) -> str:
        return lib.hw_fc_port(value)

    def load(self, fmod: FabricModule) -> None:
        sysname, machine, release = fmod.core.profile.uname()
        fmod.log.debug(f"TCM QLOGIC QLA2XXX fabric module {QLA2XXX_VERSION} on "
                       f"{sysname}/{machine} on {release}")
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        try:
            wwpn, _ = lib.parse_fc_wwn(name, strict=True, namelen=TCM_QLA2XXX_NAMELEN)
        except lib.WwnSyntax as e:
            fmod.log.debug(e.debug)
            raise ConfigfsError(errno.EINVAL, None) from None
        if f"{wwpn:016x}" not in hardware_ports(fmod.core, self.name):
            raise ConfigfsError(errno.ENODEV, None)  # qlt_lport_register: no such HBA
        wwn = SeWwn(fmod, name, address=f"naa.{wwpn:016x}")
        wwn.private["wwpn"] = wwpn
        return wwn

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        tpgt = lib.fc_tpgt(name)
        if tpgt != 1:
            raise ConfigfsError(errno.ENOSYS, "In non NPIV mode, a single TPG=1 is used for HW "
                                "port mappings")
        return tpgt

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(attrib=dict(ATTRIB_DEFAULTS), fabric_prot_type=0)

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        pass  # qlt_enable_vha / qlt_stop_phase1+2: the HBA's target mode

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_FCP

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return tpg.tpgt

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return bool(_attr(tpg, "generate_node_acls"))

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return bool(_attr(tpg, "cache_dynamic_acls"))

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(_attr(tpg, "demo_mode_write_protect"))

    def prod_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(_attr(tpg, "prod_mode_write_protect"))

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        if acl.dynamic:
            return
        try:
            lib.parse_fc_wwn(acl.name, strict=True, namelen=TCM_QLA2XXX_NAMELEN)
        except lib.WwnSyntax as e:
            raise lib.refuse_acl(acl, errno.EINVAL, debug=e.debug) from None


FABRIC = Qla2xxx()
