"""usb_f_tcm (drivers/usb/gadget/function/f_tcm.c), ``target/usb_gadget``: the target side
of a USB gadget's mass storage (BOT/UAS) function. A TPG needs a ready ``tcm`` function
instance of the gadget: ``simfs mount --wwn usb_gadget=NAME`` provides one (the kernel has
room for one, TPG_INSTANCES).

* ``mkdir usb_gadget/<wwn>``: the name must contain ``naa.`` followed by 1 to 31 characters
  → else EINVAL; the target port's name is what follows ``naa.``.
* ``tpgt_N``: ``tpgt_`` then a u16 in any base; no free function instance → EINVAL.
* TPG files: ``enable``, ``nexus`` (an initiator port containing ``naa.``, under 32
  characters; ``NULL`` drops it — EPERM while LUNs are linked). Demo mode without cached
  dynamic ACLs. Node ACL names follow the wwn rule.
* rtslib-fb leaves this fabric out of its list: targetcli does not show it.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, Optional

from simfs.configfs import Attribute, ConfigfsError
from simfs.core import kparse
from simfs.core.fabric import (FabricModule, SeWwn, all_tpgs, hardware_ports,
                               register_template)
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup

USBG_NAMELEN = 32
TPG_INSTANCES = 1

NEXUS = lib.NexusRules(
    namelen=USBG_NAMELEN, prefixes="naa", busy_errno=errno.EPERM,
    busy_msg="Unable to remove Host I_T Nexus with active TPG port count: {count}",
    removing_msg="Removing I_T Nexus to Initiator Port: {name}")


def check_wwn(name: str) -> Optional[str]:
    """usbg_check_wwn: what follows ``naa.``, if it is 1 to 31 characters long."""
    at = name.find("naa.")
    if at < 0:
        return None
    rest = name[at + 4:]
    return rest if 0 < len(rest) <= USBG_NAMELEN - 1 else None


class UsbGadget(lib.NexusFabricOps):
    name = "usb_gadget"
    nexus_rules = NEXUS
    fabric_name = "usb_gadget"
    module = "usb_f_tcm"
    aliases = ("tcm_usb_gadget",)
    wwn_attrs = (Attribute("version", lambda g: "usb-gadget fabric module\n"),)
    #: tcm_usbg_tpg_enable_store (before 5.16): strtobool, a repeat is EINVAL
    tpg_base_attrs = (lib.own_enable_attr(lib.OwnEnable(parse="strtobool",
                                                        again_on=errno.EINVAL,
                                                        again_off=errno.EINVAL, fmt="%u")),
                      lib.nexus_attr(NEXUS))
    versioned = {"tpg_base": "usb_gadget_tpg_base"}
    has_enable = True

    def hw_port(self, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError(f"{value!r} is not a gadget function instance name (e.g. tcm.0)")
        return value

    def load(self, fmod: FabricModule) -> None:
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        port = check_wwn(name)
        if port is None:
            raise ConfigfsError(errno.EINVAL, None)
        return SeWwn(fmod, name, address=port)

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        if not name.startswith("tpgt_"):
            raise ConfigfsError(errno.EINVAL, None)
        try:
            tpgt = kparse.kstrtou16(name[5:], 0)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, None) from None
        ready = hardware_ports(wwn.core, self.name)[:TPG_INSTANCES]
        if len(list(all_tpgs(wwn.core, self.name))) >= len(ready):
            raise ConfigfsError(errno.ENODEV, None)  # no free, ready tcm function instance
        return tpgt

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(nexus=None, port_count=0)

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        pass  # usbg_attach: a configfs-made function has no register callback

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_SAS  # "SPC doesn't assign a protocol identifier for USB-SCSI"

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        if not acl.dynamic and check_wwn(acl.name) is None:
            raise lib.refuse_acl(acl, errno.EINVAL)


FABRIC = UsbGadget()
