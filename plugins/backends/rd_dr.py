"""rd_dr: the v3.0 engine's "direct" RAM disk (pages mapped straight into the SGLs).

Removed from the kernel in the 3.x series; only the v3.0 profile registers it. Its
control plane is rd_mcp's.
"""

from __future__ import annotations

from simfs_plugins.backends.rd_mcp import RdDevice, RdMcpBackend


class RdDrBackend(RdMcpBackend):
    name = "rd_dr"
    inquiry_prod = "RAMDISK-DR"
    profiles = frozenset({"v3.0"})
    v3_hba_type = 5
    makeup = "rd_direct"
    copy_mode = "DIRECT"

    def alloc_device(self, dev) -> RdDevice:
        return RdDevice(dev, self)


BACKEND = RdDrBackend()
