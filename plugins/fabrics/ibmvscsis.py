"""ibmvscsis (drivers/scsi/ibmvscsi_tgt/ibmvscsi_tgt.c), ``target/ibmvscsis``: virtual SCSI
server adapters of an IBM Power partition. The adapters are the machine's: ``simfs mount
--wwn ibmvscsis=30000003`` (a vio unit address); ``simfs run`` shows them under
/sys/module/ibmvscsis as rtslib-fb expects.

* ``mkdir ibmvscsis/<unit>``: the name must be an adapter's device name → else EINVAL.
  The protocol is SRP.
* ``tpgt_N``: ``tpgt_`` then a u16 in any base. The TPG is part of the adapter: one per
  target (a second one is refused, EINVAL, where the kernel would reuse the first's memory).
* ``enable``; no nexus file (the client partition's login makes the I_T nexus); demo mode
  with cached dynamic ACLs. rtslib-fb gives it no ACLs.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError
from simfs.core import kparse
from simfs.core.fabric import FabricModule, FabricOps, SeWwn, hardware_ports, register_template
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.tpg import SePortalGroup

IBMVSCSIS_VERSION = "v0.2"


class Ibmvscsis(FabricOps):
    name = "ibmvscsis"
    fabric_name = "ibmvscsis"
    module = "ibmvscsis"
    wwn_attrs = (Attribute("version", lambda g: f"{IBMVSCSIS_VERSION}\n"),)
    has_enable = True
    #: ibmvscsis_tpg_enable_store (before 5.16; dev_err lines)
    tpg_base_attrs = (lib.own_enable_attr(lib.OwnEnable(
        bad_number="Unable to extract srpt_tpg_store_enable",
        bad_value="Illegal value for srpt_tpg_store_enable", dev_prefix="ibmvscsis")),)
    versioned = {"tpg_base": "ibmvscsis_tpg_base"}

    def hw_port(self, value: str) -> str:
        v = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{1,16}", v):
            raise ValueError(f"{value!r} is not a vio unit address (e.g. 30000003)")
        return v

    def load(self, fmod: FabricModule) -> None:
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        if name not in hardware_ports(fmod.core, self.name):
            raise ConfigfsError(errno.EINVAL, None)
        return SeWwn(fmod, name)

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        if not name.startswith("tpgt_"):
            raise ConfigfsError(errno.EINVAL, None)
        try:
            tpgt = kparse.kstrtou16(name[5:], 0)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, None) from None
        if wwn.tpgs:
            raise ConfigfsError(errno.EEXIST, None)
        return tpgt

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        pass  # ibmvscsis_enable_change_state / the server going down: always 0

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_SRP

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return True

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return True


FABRIC = Ibmvscsis()
