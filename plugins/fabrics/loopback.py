"""tcm_loop: the loopback fabric (drivers/target/loopback/tcm_loop.c), ``target/loopback``.

* ``mkdir loopback/<wwn>``: the name must *contain* ``naa.`` (SAS), else ``fc.`` (FCP; the
  target address drops the ``fc.``), else ``iqn.`` (iSCSI); none → EINVAL; 256 characters
  or more → EINVAL. Each wwn is a virtual Linux SCSI host (host numbers count up).
* ``tpgt_N``: the name must start with ``tpgt_``, N in base 10, N < 32 (TL_TPGS_PER_HBA).
* TPG files: ``nexus`` (the one I_T nexus; ``NULL`` drops it, EPERM while LUNs are linked),
  ``transport_status`` (online/offline), ``address`` (``<host>:0:<tpgt>``);
  ``attrib/fabric_prot_type`` (0, 1 or 3).
* Demo mode always on (a nexus gets a dynamic ACL with every LUN read-write), no network
  portals (``mkdir np/x`` → ENOSYS), no ACL attributes, no ``enable``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.scsi import status as S
from simfs.core import kparse
from simfs.core.fabric import (TARGET_PROT_ALL, FabricModule, FabricOps, SeWwn, obj,
                               register_template)
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.lun import SeLun
    from simfs.core.tpg import SePortalGroup

TL_WWN_ADDR_LEN = 256
TCM_LOOP_VERSION = "v2.1-rc2"
TCM_TRANSPORT_ONLINE, TCM_TRANSPORT_OFFLINE = 0, 1
# -- target/loopback/<wwn>/tpgt_N files -----------------------------------------------------------
def _nexus(tpg: "SePortalGroup"):
    return tpg.private.get("nexus")


def _show_nexus(g: Group) -> str:
    nexus = _nexus(obj(g))
    if nexus is None:
        raise ConfigfsError(errno.ENODEV, None)
    return f"{nexus.acl.name}\n"


def drop_nexus(tpg: "SePortalGroup") -> None:
    nexus = _nexus(tpg)
    if nexus is None:
        raise ConfigfsError(errno.ENODEV, None)
    count = tpg.private["port_count"]
    if count:
        raise ConfigfsError(errno.EPERM, "Unable to remove TCM_Loop I_T Nexus with active TPG "
                            f"port count: {count}")
    tpg.log.debug(f"TCM_Loop_ConfigFS: Removing I_T Nexus to emulated "
                  f"{lib.proto_name(tpg.proto_id)} Initiator Port: {nexus.acl.name}")
    tpg.private["nexus"] = None
    tpg.remove_session(nexus.acl, None)


def make_nexus(tpg: "SePortalGroup", name: str) -> None:
    if _nexus(tpg) is not None:
        tpg.log.debug("tl_tpg->tl_nexus already exists")
        raise ConfigfsError(errno.EEXIST, None)
    acl = tpg.check_initiator_node_acl(name)
    if acl is None:  # cannot happen: tcm_loop is always in demo mode
        raise ConfigfsError(errno.EINVAL, None)
    tpg.private["nexus"] = tpg.add_session(acl, None)
    tpg.log.debug(f"TCM_Loop_ConfigFS: Established I_T Nexus to emulated "
                  f"{lib.proto_name(tpg.proto_id)} Initiator Port: {name}")


def _store_nexus(g: Group, buf: bytes) -> None:
    tpg: SePortalGroup = obj(g)
    page = kparse.cstr(buf)
    if page.startswith("NULL"):
        drop_nexus(tpg)
        return
    if len(page) >= TL_WWN_ADDR_LEN:
        raise ConfigfsError(errno.EINVAL, f"Emulated NAA Sas Address: {page}, exceeds max: "
                            f"{TL_WWN_ADDR_LEN}")
    i_port = page
    proto = tpg.proto_id
    if "naa." in i_port:
        kind, want, port = "SAS", S.PROTO_SAS, i_port
    elif "fc." in i_port:
        kind, want, port = "FCP", S.PROTO_FCP, i_port[3:]
    elif "iqn." in i_port:
        kind, want, port = "iSCSI", S.PROTO_ISCSI, i_port
    else:
        raise ConfigfsError(errno.EINVAL,
                            f"Unable to locate prefix for emulated Initiator Port: {i_port}")
    if proto != want:
        raise ConfigfsError(errno.EINVAL, f"Passed {kind} Initiator Port {i_port} does not match "
                            f"target port protoid: {lib.proto_name(proto)}")
    if port.endswith("\n"):
        port = port[:-1]
    make_nexus(tpg, port)


def _show_transport_status(g: Group) -> str:
    status = obj(g).private["transport_status"]
    return "online\n" if status == TCM_TRANSPORT_ONLINE else "offline\n"


def _store_transport_status(g: Group, buf: bytes) -> None:
    tpg: SePortalGroup = obj(g)
    page = kparse.cstr(buf)
    if page.startswith("online"):
        tpg.private["transport_status"] = TCM_TRANSPORT_ONLINE
        return
    if page.startswith("offline"):
        tpg.private["transport_status"] = TCM_TRANSPORT_OFFLINE
        nexus = _nexus(tpg)
        if nexus is not None:  # core_allocate_nexus_loss_ua
            for deve in list(nexus.acl.deves.values()):
                nexus.acl.ua(deve, 0x29, 0x07)
        return
    raise ConfigfsError(errno.EINVAL, None)


def _show_address(g: Group) -> str:
    tpg: SePortalGroup = obj(g)
    return f"{tpg.wwn.private['host_no']}:0:{tpg.tpgt}\n"


class Loopback(FabricOps):
    name = "loopback"
    fabric_name = "loopback"
    #: tcm_loop_make_nexus: target_setup_session(..., TARGET_PROT_ALL, ...)
    sup_prot_ops = TARGET_PROT_ALL
    module = "tcm_loop"
    wwn_attrs = (Attribute("version", lambda g: f"TCM Loopback Fabric module "
                                               f"{TCM_LOOP_VERSION}\n"),)
    tpg_base_attrs = (
        Attribute("nexus", _show_nexus, _store_nexus),
        Attribute("transport_status", _show_transport_status, _store_transport_status),
        Attribute("address", _show_address),
    )
    # tcm_loop's store names qla2xxx in its refusal, as the kernel's does
    tpg_attrib_attrs = (lib.prot_type_attr("qla2xxx"),)
    default_submit_type = 2  # TARGET_QUEUE_SUBMIT
    direct_submit_supported = 0

    def load(self, fmod: FabricModule) -> None:
        fmod.state["host_no"] = 0
        fmod.log.debug("Initialized TCM Loop Core Bus")
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        off = 0
        if "naa." in name:
            proto = S.PROTO_SAS
        elif "fc." in name:
            proto, off = S.PROTO_FCP, 3
        elif "iqn." in name:
            proto = S.PROTO_ISCSI
        else:
            raise ConfigfsError(errno.EINVAL,
                                f"Unable to locate prefix for emulated Target Port: {name}")
        if len(name) >= TL_WWN_ADDR_LEN:
            raise ConfigfsError(errno.EINVAL, f"Emulated NAA {name} Address: "
                                f"{lib.proto_name(proto)}, exceeds max: {TL_WWN_ADDR_LEN}")
        wwn = SeWwn(fmod, name, address=name[off:])
        wwn.private["proto_id"] = proto
        host = fmod.state["host_no"]
        fmod.state["host_no"] = host + 1
        wwn.private["host_no"] = host
        fmod.log.debug(f"TCM_Loop_ConfigFS: Allocated emulated Target {lib.proto_name(proto)} "
                       f"Address: {name} at Linux/SCSI Host ID: {host}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        wwn.log.debug(f"TCM_Loop_ConfigFS: Deallocating emulated Target "
                      f"{lib.proto_name(wwn.private['proto_id'])} Address: {wwn.address} at "
                      f"Linux/SCSI Host ID: {wwn.private['host_no']}")

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        return lib.loop_tpgt(name)

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return tpg.wwn.private["proto_id"]

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(nexus=None, transport_status=TCM_TRANSPORT_ONLINE, port_count=0,
                           fabric_prot_type=0)
        tpg.log.debug(f"TCM_Loop_ConfigFS: Allocated Emulated {lib.proto_name(tpg.proto_id)} "
                      f"Target Port {tpg.wwn.name},t,0x{tpg.tpgt:04x}")

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        try:
            drop_nexus(tpg)
        except ConfigfsError:
            pass
        tpg.log.debug(f"TCM_Loop_ConfigFS: Deallocated Emulated {lib.proto_name(tpg.proto_id)} "
                      f"Target Port {tpg.wwn.name},t,0x{tpg.tpgt:04x}")

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return True

    def post_link(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        tpg.private["port_count"] += 1
        tpg.log.debug("TCM_Loop_ConfigFS: Port Link Successful")

    def pre_unlink(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        tpg.private["port_count"] -= 1
        tpg.log.debug("TCM_Loop_ConfigFS: Port Unlink Successful")


FABRIC = Loopback()
