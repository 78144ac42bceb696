"""xen-scsiback (drivers/xen/xen-scsiback.c), ``target/xen-pvscsi``: SCSI targets a Xen
guest's pvscsi frontend reaches (module xen-scsiback; it loads only in a Xen domain — simfs
behaves as one).

* ``mkdir xen-pvscsi/<wwn>``: ``naa.`` (SAS), else ``fc.`` (FCP, three characters skipped),
  else ``iqn.`` (iSCSI) anywhere in the name, else EINVAL; 32 characters or more → EINVAL.
* ``tpgt_N``: ``tpgt_`` then any u16 in base 10.
* TPG files: ``nexus`` (as vhost's, names under 32 characters; EBUSY while LUNs are linked),
  ``param/alias`` (under 32 characters; a trailing newline is dropped). Demo mode with
  cached dynamic ACLs; rtslib-fb gives it no ACLs.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FabricModule, SeWwn, obj, register_template
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.tpg import SePortalGroup

VSCSI_VERSION = "v0.1"
VSCSI_NAMELEN = 32

NEXUS = lib.NexusRules(
    namelen=VSCSI_NAMELEN, prefixes="proto", busy_errno=errno.EBUSY,
    busy_msg="Unable to remove xen-pvscsi I_T Nexus with active TPG port count: {count}",
    removing_msg="Removing I_T Nexus to emulated {proto} Initiator Port: {name}")


def _version(g) -> str:
    sysname, machine, release = g.obj.core.profile.uname()
    return f"xen-pvscsi fabric module {VSCSI_VERSION} on {sysname}/{machine} on {release}\n"


def _store_alias(g: Group, buf: bytes) -> None:
    page = kparse.cstr(buf)
    if len(page) >= VSCSI_NAMELEN:
        raise ConfigfsError(errno.EINVAL, f"param alias: {page}, exceeds max: {VSCSI_NAMELEN}")
    obj(g).private["param_alias"] = kparse.strip_one_newline(page)


class XenPvscsi(lib.EmulatedPortFabricOps):
    name = "xen-pvscsi"
    nexus_rules = NEXUS
    fabric_name = "xen-pvscsi"
    module = "xen_scsiback"
    aliases = ("xen-backend:vscsi",)
    wwn_attrs = (Attribute("version", _version),)
    tpg_base_attrs = (lib.nexus_attr(NEXUS),)
    tpg_param_attrs = (Attribute("alias", lambda g: f"{obj(g).private['param_alias']}\n",
                                 _store_alias),)

    def load(self, fmod: FabricModule) -> None:
        sysname, machine, release = fmod.core.profile.uname()
        fmod.log.debug(f"xen-pvscsi: fabric module {VSCSI_VERSION} on {sysname}/{machine} on "
                       f"{release}")
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        found = lib.emulated_prefix(name)
        if found is None:
            raise ConfigfsError(errno.EINVAL,
                                f"Unable to locate prefix for emulated Target Port: {name}")
        proto, off = found
        if len(name) >= VSCSI_NAMELEN:
            raise ConfigfsError(errno.EINVAL, f"Emulated {name} Address: {lib.proto_name(proto)}, "
                                f"exceeds max: {VSCSI_NAMELEN}")
        wwn = SeWwn(fmod, name, address=name[off:])
        wwn.private["proto_id"] = proto
        fmod.log.debug(f"Allocated emulated Target {lib.proto_name(proto)} Address: {name}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        wwn.log.debug(f"Deallocating emulated Target {lib.proto_name(wwn.private['proto_id'])} "
                      f"Address: {wwn.address}")

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        if not name.startswith("tpgt_"):
            raise ConfigfsError(errno.EINVAL, None)
        try:
            return kparse.kstrtou16(name[5:], 10)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, None) from None

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(nexus=None, port_count=0, param_alias="")


FABRIC = XenPvscsi()
