"""tcm_qla2xxx's NPIV template (drivers/scsi/qla2xxx/tcm_qla2xxx.c), ``target/qla2xxx_npiv``:
a virtual FC port (an NPIV vport) created on a physical qla2xxx port for each target. The
same module as ``qla2xxx`` registers it (``modprobe tcm_qla2xxx`` loads both); rtslib-fb and
targetcli do not know it, so it is driven from the shell.

* ``mkdir qla2xxx_npiv/<phys>@<npiv_wwpn>:<npiv_wwnn>``: ``<phys>`` is a physical port's
  name as qla2xxx takes it (``xx:xx:..``, lower case); after the ``@`` two 16-digit hex
  numbers (either case) joined by ``:``. No ``@``: "Unable to locate NPIV '@' separator".
  The physical port must exist (``--wwn qla2xxx=...``) and its ``qla2xxx`` target's
  ``tpgt_1`` must be enabled ("qla2xxx base_lport or tpg_1 not available"); every refusal
  is EINVAL. The target port's name is ``naa.<npiv_wwpn>``.
* ``tpgt_N``: N in base 10, at most 65535, any number of them. Files: ``enable`` (the
  module's own before 5.16, as qla2xxx's; the core's after); no ``attrib/`` files.
* Node ACLs are named by the initiator's WWPN, as for qla2xxx.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import ConfigfsError
from simfs.core.fabric import (FabricModule, FabricOps, SeWwn, fabric_modules, hardware_ports,
                               register_template)
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib
from simfs_plugins.fabrics import qla2xxx

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup

#: the NPIV part after '@': 16 hex digits, ':', 16 hex digits (store_fc_host_vport_create)
NPIV_LEN = 16 + 1 + 16
HEX = frozenset("0123456789abcdefABCDEF")
TPG_ATTRIB = {"generate_node_acls": 1, "demo_mode_write_protect": 1,
              "cache_dynamic_acls": 1, "demo_mode_login_only": 1}


def parse_npiv(text: str) -> tuple[int, int]:
    """tcm_qla2xxx_npiv_parse_wwn: (npiv_wwpn, npiv_wwnn); ValueError when malformed."""
    if text.endswith("\n"):
        text = text[:-1]
    if len(text) != NPIV_LEN or text[16] != ":":
        raise ValueError(text)
    wwpn, wwnn = text[:16], text[17:]
    if not set(wwpn) <= HEX or not set(wwnn) <= HEX:
        raise ValueError(text)
    return int(wwpn, 16), int(wwnn, 16)


def _base_tpg_enabled(fmod: FabricModule, phys: int) -> bool:
    """The physical port's qla2xxx target exists and its tpgt_1 is enabled (the vport is
    created through it)."""
    base = fabric_modules(fmod.core).get(qla2xxx.FABRIC.name)
    if base is None:
        return False
    for wwn in base.wwns.values():
        if wwn.private.get("wwpn") == phys:
            return any(t.tpgt == 1 and t.enabled for t in wwn.tpgs.values())
    return False


class Qla2xxxNpiv(FabricOps):
    name = "qla2xxx_npiv"
    fabric_name = "qla2xxx_npiv"
    module = "tcm_qla2xxx"
    wwn_attrs = qla2xxx.FABRIC.wwn_attrs
    #: tcm_qla2xxx_npiv_tpg_enable_store (before 5.16): qla2xxx's rules, no configfs pin
    tpg_base_attrs = (lib.own_enable_attr(lib.OwnEnable(
        bad_number="kstrtoul() returned {rc}", bad_value="Illegal value for tpg_enable: {val}",
        again_on=errno.EEXIST)),)
    versioned = {"tpg_base": "qla2xxx_npiv_tpg_base"}
    has_enable = True

    def load(self, fmod: FabricModule) -> None:
        # the module's load line came with the qla2xxx template; this one registers next
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        phys_name, at, npiv = name.partition("@")
        if not at:
            raise ConfigfsError(errno.EINVAL, "Unable to locate NPIV '@' separator")
        try:
            phys, _ = lib.parse_fc_wwn(phys_name, strict=True,
                                       namelen=qla2xxx.TCM_QLA2XXX_NAMELEN)
            wwpn, wwnn = parse_npiv(npiv)
        except (lib.WwnSyntax, ValueError):
            raise ConfigfsError(errno.EINVAL, None) from None
        if f"{phys:016x}" not in hardware_ports(fmod.core, qla2xxx.FABRIC.name):
            raise ConfigfsError(errno.EINVAL, None)  # qlt_lport_register: no such HBA
        if not _base_tpg_enabled(fmod, phys):
            raise ConfigfsError(errno.EINVAL, "qla2xxx base_lport or tpg_1 not available")
        wwn = SeWwn(fmod, name, address=f"naa.{wwpn:016x}")
        wwn.private.update(phys=phys, wwpn=wwpn, wwnn=wwnn)
        return wwn

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        tpgt = lib.fc_tpgt(name)
        return tpgt

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(attrib=dict(TPG_ATTRIB))

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        pass  # qlt_enable_vha / qlt_stop_phase1+2 on the vport

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_FCP

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return tpg.tpgt

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg.private["attrib"]["generate_node_acls"])

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg.private["attrib"]["cache_dynamic_acls"])

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg.private["attrib"]["demo_mode_write_protect"])

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        qla2xxx.FABRIC.init_nodeacl(acl)


FABRIC = Qla2xxxNpiv()
