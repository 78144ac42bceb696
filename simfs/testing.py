"""Building blocks for tests that drive the target core and SCSI engine without a mount.

Sans-I/O: a :class:`TargetCore` with its configfs tree, driven through the tree's own
mkdir/write calls (the same code paths FUSE reaches), plus an engine and nexus helpers.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from simfs.klog import KernelLog
from simfs.scsi import Nexus, ScsiEngine, TargetPort
from simfs.core.core import TargetCore
from simfs.core.fabric import TARGET_PROT_ALL
from simfs.core.profile import MODERN, Profile


class Sim:
    """A target core, its tree and a SCSI engine, for one test."""

    def __init__(self, state_dir: Optional[Path] = None, profile: Profile = MODERN):
        #: a state directory Sim made itself is removed again by close()
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="simfs-sim-"))
        self.log = KernelLog()
        self.core = TargetCore(profile, log=self.log, state_dir=self.state_dir)
        self.tree = self.core.build_tree()
        self.engine = ScsiEngine(self.core)
        self._rtpi = 0

    # -- configfs, as a shell user would drive it ------------------------------------------
    def mkdir(self, path: str) -> None:
        self.tree.mkdir(path)

    def write(self, path: str, text: str) -> None:
        self.tree.write_attr(path, text.encode())

    def read(self, path: str) -> str:
        return self.tree.read_attr(path).decode()

    def rd_device(self, hba: str = "rd_mcp_0", name: str = "rd0", pages: int = 2048,
                  serial: Optional[str] = "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4"):
        """An enabled rd_mcp device (8 MiB by default) with a unit serial; returns it."""
        base = f"/target/core/{hba}"
        if not self._exists(base):
            self.mkdir(base)
        self.mkdir(f"{base}/{name}")
        self.write(f"{base}/{name}/control", f"rd_pages={pages}")
        if serial is not None:
            self.write(f"{base}/{name}/wwn/vpd_unit_serial", serial)
        self.write(f"{base}/{name}/enable", "1")
        return self.core.hbas[hba].devices[name]

    def fileio_device(self, path: Path, size: int = 16 << 20, hba: str = "fileio_0",
                      name: str = "f0", buffered: bool = False):
        base = f"/target/core/{hba}"
        if not self._exists(base):
            self.mkdir(base)
        self.mkdir(f"{base}/{name}")
        ctl = f"fd_dev_name={path},fd_dev_size={size}"
        if buffered:
            ctl += ",fd_buffered_io=1"
        self.write(f"{base}/{name}/control", ctl)
        self.write(f"{base}/{name}/enable", "1")
        return self.core.hbas[hba].devices[name]

    def _exists(self, path: str) -> bool:
        try:
            self.tree.lookup(path)
            return True
        except OSError:
            return False

    # -- ports and nexuses -------------------------------------------------------------------
    def port(self, dev, fabric: str = "iSCSI", wwn: str = "iqn.2003-01.org.linux-iscsi.sim:t1",
             tpgt: int = 1, lun: int = 0) -> TargetPort:
        """A target port exporting ``dev`` (stands in for a fabric LUN until fabrics land):
        joins the device's default target port group and counts as an export."""
        from simfs.scsi import status as S
        self._rtpi += 1
        proto = {"iSCSI": S.PROTO_ISCSI, "loopback": S.PROTO_SAS, "FC": S.PROTO_FCP}.get(
            fabric, S.PROTO_SAS)
        # a "loopback" port passes T10-PI as tcm_loop's sessions do
        p = TargetPort(fabric=fabric, proto_id=proto, wwn=wwn, tpgt=tpgt, rtpi=self._rtpi,
                       lun=lun, tg_pt_gp=dev.default_tg_pt_gp, dev=dev,
                       sup_prot_ops=TARGET_PROT_ALL if fabric == "loopback" else 0)
        dev.luns.append(p)
        dev.export_count += 1
        gp = dev.default_tg_pt_gp
        if gp is not None and hasattr(gp, "members"):
            gp.members.append(p)
        return p

    def nexus(self, initiator: str, port: TargetPort, isid: Optional[str] = None) -> Nexus:
        return Nexus(initiator=initiator, port=port, isid=isid)

    def close(self) -> None:
        self.core.shutdown()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "Sim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
