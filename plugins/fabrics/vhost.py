"""vhost-scsi (drivers/vhost/scsi.c), ``target/vhost``: targets a QEMU guest's virtio-scsi
controller attaches to (module vhost_scsi, alias tcm_vhost).

* ``mkdir vhost/<wwn>``: the name must *contain* ``naa.`` (SAS), else ``fc.`` (FCP; the port
  name skips three characters), else ``iqn.`` (iSCSI), else EINVAL; 256 characters or more
  → EINVAL.
* ``tpgt_N``: ``tpgt_`` then N in base 10, N < 256 (VHOST_SCSI_MAX_TARGET); several TPGs.
* TPG files: ``nexus`` (the one I_T nexus: an initiator port of the target's protocol makes it,
  ``NULL`` drops it — EBUSY while LUNs are linked, ENODEV when there is none);
  ``attrib/fabric_prot_type`` (0, 1 or 3). Explicit node ACLs, and demo mode with cached
  dynamic ACLs for the nexus' initiator; no ``enable``, no portals.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError
from simfs.core import kparse
from simfs.core.fabric import FabricModule, SeWwn, register_template
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.tpg import SePortalGroup

VHOST_SCSI_VERSION = "v0.1"
VHOST_SCSI_NAMELEN = 256
VHOST_SCSI_MAX_TARGET = 256

NEXUS = lib.NexusRules(
    namelen=VHOST_SCSI_NAMELEN, prefixes="proto", busy_errno=errno.EBUSY,
    busy_msg="Unable to remove TCM_vhost I_T Nexus with active TPG port count: {count}",
    removing_msg="TCM_vhost_ConfigFS: Removing I_T Nexus to emulated {proto} Initiator Port: "
                 "{name}")


def _version(g) -> str:
    core = g.obj.core
    sysname, machine, release = core.profile.uname()
    # until 6.17 the string lacked the space before the second "on" ("x86_64on 6.1.0")
    on = " on" if core.kernel.has("vhost_version_space") else "on"
    return f"TCM_VHOST fabric module {VHOST_SCSI_VERSION} on {sysname}/{machine}{on} {release}\n"


class Vhost(lib.EmulatedPortFabricOps):
    name = "vhost"
    nexus_rules = NEXUS
    fabric_name = "vhost"
    module = "vhost_scsi"
    aliases = ("tcm_vhost",)
    wwn_attrs = (Attribute("version", _version),)
    tpg_base_attrs = (lib.nexus_attr(NEXUS),)
    tpg_attrib_attrs = (lib.prot_type_attr("vhost_scsi", "tv_fabric_prot_type"),)

    def load(self, fmod: FabricModule) -> None:
        sysname, machine, release = fmod.core.profile.uname()
        fmod.log.debug(f"TCM_VHOST fabric module {VHOST_SCSI_VERSION} on {sysname}/{machine} "
                       f"on {release}")
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        found = lib.emulated_prefix(name)
        if found is None:
            raise ConfigfsError(errno.EINVAL,
                                f"Unable to locate prefix for emulated Target Port: {name}")
        proto, off = found
        if len(name) >= VHOST_SCSI_NAMELEN:
            # the kernel passes name and protocol in swapped order
            raise ConfigfsError(errno.EINVAL, f"Emulated {name} Address: {lib.proto_name(proto)}, "
                                f"exceeds max: {VHOST_SCSI_NAMELEN}")
        wwn = SeWwn(fmod, name, address=name[off:])
        wwn.private["proto_id"] = proto
        fmod.log.debug(f"TCM_VHost_ConfigFS: Allocated emulated Target {lib.proto_name(proto)} "
                       f"Address: {name}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        wwn.log.debug(f"TCM_VHost_ConfigFS: Deallocating emulated Target "
                      f"{lib.proto_name(wwn.private['proto_id'])} Address: {wwn.address}")

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        if not name.startswith("tpgt_"):
            raise ConfigfsError(errno.EINVAL, None)
        try:
            tpgt = kparse.kstrtou16(name[5:], 10)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, None) from None
        if tpgt >= VHOST_SCSI_MAX_TARGET:
            raise ConfigfsError(errno.EINVAL, None)
        return tpgt

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(nexus=None, port_count=0, tv_fabric_prot_type=0)


FABRIC = Vhost()
