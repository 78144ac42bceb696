"""Network portals: ``tpgt_N/np/<ip>:<port>`` (lio_target_call_addnptotpg,
iscsit_tpg_add_network_portal) and the hook that tells the iSCSI server where to listen."""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import all_tpgs, obj

from simfs_plugins.fabrics.iscsi.constants import MAX_PORTAL_LEN

if TYPE_CHECKING:
    from simfs.core.core import TargetCore
    from simfs.core.tpg import SePortalGroup


# -- hook for the iSCSI server: portals appeared/disappeared/were enabled -------------------------
def portals_changed(core: "TargetCore") -> None:
    try:
        core.events.iscsi_portals_changed()
    except Exception as e:  # noqa: BLE001 - a server hook never breaks configfs
        core.log.err(f"simfs: iscsi_portals_changed hook failed: {e}")


class IscsiNp:
    """iscsi_tpg_np: one network portal of one TPG."""

    def __init__(self, tpg: "SePortalGroup", name: str, ip: str, port: int, family: int):
        self.tpg = tpg
        self.name = name
        self.ip = ip
        self.port = port
        self.family = family
        self.iser = 0
        self.cxgbit = 0

    def sockaddr_text(self) -> str:
        """%pISpc."""
        return f"[{self.ip}]:{self.port}" if self.family == socket.AF_INET6 else \
            f"{self.ip}:{self.port}"

    def key(self) -> tuple:
        return (self.family, self.ip, self.port)


def parse_portal(name: str) -> tuple[str, int, int]:
    if len(name) > MAX_PORTAL_LEN:
        raise ConfigfsError(errno.EOVERFLOW, f"strlen(name): {len(name)} exceeds MAX_PORTAL_LEN:"
                            f" {MAX_PORTAL_LEN}")
    lb = name.find("[")
    if lb >= 0:
        rb = name.find("]", lb)
        if rb < 0:
            raise ConfigfsError(errno.EINVAL, 'Unable to locate trailing "]" in IPv6 iSCSI '
                                "network portal address")
        ip_str = name[lb + 1:rb]
        rest = name[rb + 1:]
        colon = rest.find(":")
        if colon < 0:
            raise ConfigfsError(errno.EINVAL, 'Unable to locate ":port" in IPv6 iSCSI network '
                                "portal address")
        port_str = rest[colon + 1:]
    else:
        colon = name.find(":")
        if colon < 0:
            raise ConfigfsError(errno.EINVAL, 'Unable to locate ":port" in IPv4 iSCSI network '
                                "portal address")
        ip_str, port_str = name[:colon], name[colon + 1:]
    # inet_pton_with_scope(AF_UNSPEC): IPv4 first, then IPv6; the port is a u16
    try:
        port = kparse.kstrtou16(port_str, 0)
        try:
            socket.inet_pton(socket.AF_INET, ip_str)
            family, ip = socket.AF_INET, str(ipaddress.IPv4Address(ip_str))
        except OSError:
            socket.inet_pton(socket.AF_INET6, ip_str)
            family, ip = socket.AF_INET6, str(ipaddress.IPv6Address(ip_str))
    except (OSError, ConfigfsError, ValueError):
        raise ConfigfsError(errno.EINVAL, f"malformed ip/port passed: {name}") from None
    return ip, port, family


def _np_driver_attr(name: str, module: str) -> Attribute:
    def show(g: Group) -> str:
        return f"{getattr(obj(g), name)}\n"

    def store(g: Group, buf: bytes) -> None:
        np: IscsiNp = obj(g)
        op = kparse.kstrtou32(buf, 0)
        if op not in (0, 1):
            raise ConfigfsError(errno.EINVAL, f"Illegal value for tpg_enable: {op}")
        if op:
            # simfs has no RDMA or Chelsio offload: the module never loads, and no
            # transport of that kind is registered to add the portal to.
            np.tpg.log.warn(f"Unable to request_module for {module}")
            raise ConfigfsError(errno.EINVAL, None)
        setattr(np, name, 0)
    return Attribute(name, show, store)


NP_ATTRS = (_np_driver_attr("iser", "ib_isert"), _np_driver_attr("cxgbit", "cxgbit"))


def _pisc(np: IscsiNp) -> str:
    """%pISc: the address without the port."""
    return np.ip


def portals_changed_later(core: "TargetCore") -> None:
    """The np group is in the tree only after make_np returns: tell the server just after."""
    lock = core.tree_lock

    def run() -> None:
        with lock:
            pass
        portals_changed(core)
    threading.Thread(target=run, name="simfs-iscsi-portals", daemon=True).start()


IP_FREEBIND = 15  # linux/in.h (the socket module does not name it)


def _overlaps(a: IscsiNp, b: IscsiNp) -> bool:
    """Whether two listening sockets on these addresses collide (EADDRINUSE): the same port
    and one address covers the other (a wildcard; an IPv6 wildcard takes IPv4 too, as
    the kernel's np sockets are not IPV6_V6ONLY)."""
    if a.port != b.port:
        return False
    ia, ib = ipaddress.ip_address(a.ip), ipaddress.ip_address(b.ip)
    if ia.version == ib.version:
        return ia == ib or ia.is_unspecified or ib.is_unspecified
    v6, v4 = (ia, ib) if ia.version == 6 else (ib, ia)
    mapped = v6.ipv4_mapped  # type: ignore[union-attr]
    return v6.is_unspecified or (mapped is not None and (v4.is_unspecified or mapped == v4))


def setup_np(core: "TargetCore", np: IscsiNp, probe: bool = True) -> None:
    """iscsit_setup_np: a new np's socket binds and listens at mkdir, with SO_REUSEADDR and
    IP_FREEBIND (an address not configured here binds all the same). A port another np
    holds, or another program listens on, fails here: the kernel logs "kernel_bind()
    failed: -98" and the mkdir fails (EINVAL, the generic make_np's errno).

    The server listens only for enabled TPGs, so simfs checks its own portals by rule and,
    when the TPG is enabled (``probe``), the rest of the machine with a probe socket on the
    addresses the server will listen on (``core.events.iscsi_listen_hosts``: the loopback
    addresses for a wildcard portal unless ``--listen-any``; none without an iSCSI server).
    A disabled TPG's portal is not probed: several simfs nodes on one host hold the same
    tree with only their own TPG enabled (docs/multinode.md)."""
    for tpg in all_tpgs(core, "iscsi"):
        if any(_overlaps(np, other) for other in tpg.nps):
            raise ConfigfsError(errno.EINVAL, f"kernel_bind() failed: -{errno.EADDRINUSE}")
    for host in core.events.iscsi_listen_hosts(np.ip) if probe else ():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6 if family == socket.AF_INET6
                                else socket.IPPROTO_IP, IP_FREEBIND, 1)
            except OSError:
                pass  # IPv6 freebind needs 4.15+: the bind below then decides
            try:
                sock.bind((host, np.port))
            except OSError as e:
                raise ConfigfsError(errno.EINVAL,
                                    f"kernel_bind() failed: -{e.errno}") from None
            try:
                sock.listen(1)
            except OSError as e:
                raise ConfigfsError(errno.EINVAL,
                                    f"kernel_listen() failed: -{e.errno}") from None


def make_np(tpg: "SePortalGroup", name: str) -> IscsiNp:
    """lio_target_call_addnptotpg."""
    ip, port, family = parse_portal(name)
    np = IscsiNp(tpg, name, ip, port, family)
    tpg.log.debug(f"LIO_Target_ConfigFS: REGISTER -> {tpg.wwn.name} TPGT: {tpg.tpgt} "
                  f"PORTAL: {name}")
    for other in tpg.wwn.tpgs.values():
        if any(n.key() == np.key() for n in other.nps):
            raise ConfigfsError(errno.EEXIST, f"Network Portal: {_pisc(np)} already "
                                f"exists on a different TPG on {tpg.wwn.name}")
    # iscsit_add_np: an np already listening is shared (iscsit_get_np), else a new socket
    if not any(n.key() == np.key() for t in all_tpgs(tpg.core, "iscsi") for n in t.nps):
        setup_np(tpg.core, np, probe=tpg.enabled)
        tpg.log.debug(f"CORE[0] - Added Network Portal: {np.sockaddr_text()} on iSCSI/TCP")
    tpg.log.debug(f"CORE[{tpg.wwn.name}] - Added Network Portal: {np.sockaddr_text()},"
                  f"{tpg.tpgt} on iSCSI/TCP")
    tpg.log.debug("LIO_Target_ConfigFS: addnptotpg done!")
    if tpg.enabled:
        portals_changed_later(tpg.core)
    return np


def drop_np(tpg: "SePortalGroup", np: IscsiNp) -> None:
    """lio_target_call_delnpfromtpg."""
    log = tpg.log
    log.debug(f"LIO_Target_ConfigFS: DEREGISTER -> {tpg.wwn.name} TPGT: {tpg.tpgt} "
              f"PORTAL: {np.sockaddr_text()}")
    log.debug(f"CORE[{tpg.wwn.name}] - Removed Network Portal: {np.sockaddr_text()},"
              f"{tpg.tpgt} on iSCSI/TCP")
    if not any(n.key() == np.key() for t in all_tpgs(tpg.core, "iscsi") for n in t.nps):
        log.debug(f"CORE[0] - Removed Network Portal: {np.sockaddr_text()} on iSCSI/TCP")
    log.debug("LIO_Target_ConfigFS: delnpfromtpg done!")
    if tpg.enabled:
        portals_changed(tpg.core)
