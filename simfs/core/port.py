"""The target port a command arrives through (the kernel's ``se_lun`` as the SCSI engine sees it).

Declared in the core because a fabric LUN (:class:`simfs.core.lun.SeLun`) *is* one; the
engine (``simfs.scsi.command``) and ports made without a fabric (the ``simfs scsi`` CLI,
tests) use the same class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simfs.core.t10.spc import PROTO_SAS


@dataclass(eq=False)
class TargetPort:
    """The target side of a nexus: a fabric's portal group and the LUN the command named.

    The kernel's ``se_lun`` (with its ``se_portal_group``). Fabrics make these when a LUN
    links a device; the ``simfs scsi`` CLI uses the device's LUNs, or a loopback-style port.
    """

    fabric: str = "loopback"
    proto_id: int = PROTO_SAS
    wwn: str = "naa.5001405000000001"
    tpgt: int = 1
    #: relative target port identifier (unique per device across its LUNs)
    rtpi: int = 1
    lun: int = 0
    #: the device's target port group this LUN belongs to (an alua.TgPtGp) or None
    tg_pt_gp: Any = None
    #: ALUA secondary state: LUN offline (alua_tg_pt_offline) and why (alua_tg_pt_status)
    offline: bool = False
    secondary_status: int = 0
    #: LUN opened read-only for this initiator (mapped LUN write_protect)
    write_protect: bool = False
    #: the device this LUN exports (an SeDevice), None while unlinked
    dev: Any = None
    #: the fabric's sup_prot_ops for its sessions through this port (FabricOps.sup_prot_ops)
    sup_prot_ops: int = 0
    #: the TPG's virtual LUN 0 (tpg_virt_lun0): what an initiator without a LUN 0 reaches
    virtual_lun0: bool = False
    #: lun_stats: commands whose CDB parsed, bytes received (writes) and sent (reads)
    cmd_pdus: int = 0
    rx_data_octets: int = 0
    tx_data_octets: int = 0

    def name(self) -> str:
        """``<wwn>,t,0x<tpgt>``: the SCSI name string of this target port."""
        return f"{self.wwn},t,0x{self.tpgt:04x}"

    def set_tg_pt_gp(self, gp) -> None:
        """Move this LUN into target port group ``gp`` (target_swap_tg_pt_gp)."""
        old = self.tg_pt_gp
        if old is not None and self in old.members:
            old.members.remove(self)
        self.tg_pt_gp = gp
        if gp is not None and self not in gp.members:
            gp.members.append(self)

    def member_path(self) -> str:
        """How a target port group's ``members`` file lists this LUN."""
        return f"{self.fabric}/{self.wwn}/tpgt_{self.tpgt}/lun_{self.lun}"
