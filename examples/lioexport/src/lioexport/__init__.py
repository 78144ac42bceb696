"""lioexport: export files as iSCSI LUNs on the Linux SCSI target (LIO), through rtslib-fb.

An example of a tool whose tests run against simfs instead of the kernel (see tests/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rtslib_fb import (LUN, TPG, FabricModule, FileIOStorageObject, MappedLUN,
                       NetworkPortal, NodeACL, RTSRoot, Target)

__all__ = ["Export", "export", "exports", "unexport"]


@dataclass
class Export:
    """One exported file: target ``iqn`` serves ``path`` as LUN 0 on ``portal``."""

    iqn: str
    path: str
    size: int
    portal: str
    initiators: list[str] = field(default_factory=list)


def _name(iqn: str) -> str:
    """The backstore name for a target: its IQN's last part, made configfs-safe."""
    return "x-" + "".join(c if c.isalnum() else "_" for c in iqn.rsplit(":", 1)[-1])[:60]


def export(root: RTSRoot, path: str, iqn: str, portal: str = "127.0.0.1:3260",
           size: int | None = None, initiators: tuple[str, ...] = ()) -> Export:
    """Export ``path`` as LUN 0 of a new iSCSI target ``iqn`` listening on ``portal``.

    With ``initiators`` only those may log in (one ACL each, LUN 0 mapped read-write);
    without, any initiator may (demo mode). ``size`` is needed when ``path`` does not exist.
    """
    host, _, port = portal.rpartition(":")
    so = FileIOStorageObject(_name(iqn), path, size=size)
    target = Target(FabricModule("iscsi"), iqn)
    tpg = TPG(target, 1)
    lun = LUN(tpg, 0, so)
    NetworkPortal(tpg, host, int(port))
    if initiators:
        tpg.set_attribute("generate_node_acls", "0")
        for name in initiators:
            MappedLUN(NodeACL(tpg, name), 0, lun)
    else:
        tpg.set_attribute("generate_node_acls", "1")
        tpg.set_attribute("demo_mode_write_protect", "0")
    tpg.set_attribute("authentication", "0")
    tpg.enable = True
    return Export(iqn, path, so.size, portal, list(initiators))


def exports(root: RTSRoot) -> list[Export]:
    """Every iSCSI target with a fileio LUN 0, however it was made."""
    out = []
    for target in root.targets:
        if target.fabric_module.name != "iscsi":
            continue
        for tpg in target.tpgs:
            luns = {lun.lun: lun for lun in tpg.luns}
            so = luns[0].storage_object if 0 in luns else None
            if so is None or so.plugin != "fileio":
                continue
            portals = [f"{p.ip_address}:{p.port}" for p in tpg.network_portals]
            out.append(Export(target.wwn, so.udev_path, so.size, portals[0] if portals else "",
                              sorted(acl.node_wwn for acl in tpg.node_acls)))
    return out


def unexport(root: RTSRoot, iqn: str) -> None:
    """Remove target ``iqn`` and the backstores only it used (the files stay)."""
    for target in root.targets:
        if target.wwn == iqn:
            used = [lun.storage_object for tpg in target.tpgs for lun in tpg.luns]
            target.delete()
            for so in used:
                if not any(True for _ in so.attached_luns):
                    so.delete()
            return
    raise LookupError(f"no target {iqn}")
