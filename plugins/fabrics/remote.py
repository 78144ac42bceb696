"""tcm_remote (drivers/target/tcm_remote/, Linux 6.4+), ``target/remote``: the configfs
image of a target served by another node of a cluster — no data path, no sessions.

* ``mkdir remote/<wwn>``: ``naa.`` (SAS), else ``fc.`` (FCP, three characters skipped), else
  ``0x`` (SRP, two skipped), else ``iqn.`` (iSCSI), anywhere in the name, else EINVAL;
  256 characters or more → EINVAL.
* ``tpgt_N``: ``tpgt_`` then N in base 10, N < 32 (TL_TPGS_PER_HBA).
* No TPG files of its own; explicit ACLs only (no demo mode).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError
from simfs.core.fabric import FabricModule, FabricOps, SeWwn, register_template
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.lun import SeLun
    from simfs.core.tpg import SePortalGroup

TCM_REMOTE_VERSION = "v0.1"
TL_WWN_ADDR_LEN = 256
PREFIXES = (("naa.", S.PROTO_SAS, 0), ("fc.", S.PROTO_FCP, 3), ("0x", S.PROTO_SRP, 2),
            ("iqn.", S.PROTO_ISCSI, 0))


class Remote(FabricOps):
    name = "remote"
    fabric_name = "remote"
    kernel_row = "fabric_remote"  # tcm_remote came with 6.4
    module = "tcm_remote"
    wwn_attrs = (Attribute("version", lambda g: f"TCM Remote Fabric module {TCM_REMOTE_VERSION}\n"),)

    def load(self, fmod: FabricModule) -> None:
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        found = lib.emulated_prefix(name, PREFIXES)
        if found is None:
            raise ConfigfsError(errno.EINVAL,
                                f"Unable to locate prefix for emulated Target Port: {name}")
        proto, off = found
        if len(name) >= TL_WWN_ADDR_LEN:
            raise ConfigfsError(errno.EINVAL, f"Emulated NAA {name} Address: "
                                f"{lib.proto_name(proto)}, exceeds max: {TL_WWN_ADDR_LEN}")
        wwn = SeWwn(fmod, name, address=name[off:])
        wwn.private["proto_id"] = proto
        fmod.log.debug(f"TCM_Remote_ConfigFS: Allocated emulated Target {lib.proto_name(proto)} "
                       f"Address: {name}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        wwn.log.debug(f"TCM_Remote_ConfigFS: Deallocating emulated Target "
                      f"{lib.proto_name(wwn.private['proto_id'])} Address: {wwn.address}")

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        return lib.loop_tpgt(name)

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.log.debug(f"TCM_Remote_ConfigFS: Allocated Emulated {lib.proto_name(tpg.proto_id)} "
                      f"Target Port {tpg.wwn.name},t,0x{tpg.tpgt:04x}")

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.log.debug(f"TCM_Remote_ConfigFS: Deallocated Emulated {lib.proto_name(tpg.proto_id)} "
                      f"Target Port {tpg.wwn.name},t,0x{tpg.tpgt:04x}")

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return tpg.wwn.private["proto_id"]

    def post_link(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        tpg.log.debug(f"TCM_Remote_ConfigFS: Port Link LUN {lun.lun} Successful")

    def pre_unlink(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        tpg.log.debug(f"TCM_Remote_ConfigFS: Port Unlink LUN {lun.lun} Successful")


FABRIC = Remote()
