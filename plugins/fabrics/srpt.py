"""ib_srpt (drivers/infiniband/ulp/srpt/ib_srpt.c), ``target/srpt``: SCSI RDMA Protocol
targets on InfiniBand/RoCE ports. The ports are the machine's: ``simfs mount --wwn
srpt=fe80:0000:0000:0000:0002:c903:0003:1235`` (a port's GID 0) — ``simfs run`` shows it
under /sys/class/infiniband.

* ``mkdir srpt/<name>``: the name must be a port's GUID name (``0002:c903:0003:1235``, the
  interface ID in four groups) or its GID name (``0x`` and 32 hex digits) → else EINVAL.
* TPGs may have any name and there may be several; their tag is always 1. ``enable``.
* ``attrib/`` belongs to the RDMA port (both names and all their TPGs share it):
  srp_max_rdma_size 65536 [65536..16777216], srp_max_rsp_size 256 [40..1024],
  srp_sq_size 4096 [4..65535] (EINVAL outside, with the kernel's message), use_srq 0 (0/1).
* ``discovery_auth/rdma_cm_port``: the RDMA/CM listener port for the whole module (u16, 0).
* Node ACLs are named by the initiator port: a GUID ``%hx:%hx:%hx:%hx``, an even number of
  hex digits with or without ``0x``, or an IPv4/IPv6 address — else "invalid initiator port
  ID" and EINVAL. No demo mode.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import (FabricModule, FabricOps, SeWwn, hardware_ports, obj,
                               register_template)
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup

MIN_SRPT_SRQ_SIZE, MAX_SRPT_SRQ_SIZE = 4, 65535
DEFAULT_MAX_RDMA_SIZE, MAX_SRPT_RDMA_SIZE = 65536, 1 << 24
MIN_MAX_RSP_SIZE, DEFAULT_MAX_RSP_SIZE, MAX_SRPT_RSP_SIZE = 40, 256, 1024
DEF_SRPT_SQ_SIZE = 4096
HEX = "0123456789abcdef"


def guid_name(gid: str) -> str:
    iid = gid[16:]
    return ":".join(iid[i:i + 4] for i in range(0, 16, 4))


def gid_name(gid: str) -> str:
    return "0x" + gid


def _port(g: Group) -> dict:
    """The RDMA port's attributes, whatever level ``g`` is at (tpg attrib)."""
    tpg: "SePortalGroup" = obj(g)
    return tpg.wwn.fmod.state["ports"][tpg.wwn.private["gid"]]


# -- attrib/ (per RDMA port) ------------------------------------------------------------------------
def _ranged(name: str, lo: int, lo_name: str, hi: int, hi_name: str) -> Attribute:
    def store(g: Group, buf: bytes) -> None:
        try:
            val = kparse.kstrtoul(buf, 0)
        except ConfigfsError as e:
            raise ConfigfsError(errno.EINVAL, f"kstrtoul() failed with ret: {-e.errno}") from None
        if val > hi:
            raise ConfigfsError(errno.EINVAL, f"val: {val} exceeds {hi_name}: {hi}")
        if val < lo:
            raise ConfigfsError(errno.EINVAL, f"val: {val} smaller than {lo_name}: {lo}")
        _port(g)[name] = val

    return Attribute(name, lambda g: f"{_port(g)[name]}\n", store)


def _store_use_srq(g: Group, buf: bytes) -> None:
    val = kparse.kstrtoul(buf, 0)  # its errno as it is
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, None)
    _port(g)["use_srq"] = val


ATTRIB = (
    _ranged("srp_max_rdma_size", DEFAULT_MAX_RDMA_SIZE, "DEFAULT_MAX_RDMA_SIZE",
            MAX_SRPT_RDMA_SIZE, "MAX_SRPT_RDMA_SIZE"),
    _ranged("srp_max_rsp_size", MIN_MAX_RSP_SIZE, "MIN_MAX_RSP_SIZE", MAX_SRPT_RSP_SIZE,
            "MAX_SRPT_RSP_SIZE"),
    _ranged("srp_sq_size", MIN_SRPT_SRQ_SIZE, "MIN_SRPT_SRQ_SIZE", MAX_SRPT_SRQ_SIZE,
            "MAX_SRPT_SRQ_SIZE"),
    Attribute("use_srq", lambda g: f"{_port(g)['use_srq']}\n", _store_use_srq),
)


def _store_rdma_cm_port(g: Group, buf: bytes) -> None:
    obj(g).state["rdma_cm_port"] = kparse.kstrtou16(buf, 0)


# -- initiator port IDs -------------------------------------------------------------------------------
def _scan_hx(s: str, i: int) -> tuple[bool, int]:
    """One vsscanf ``%hx``: blanks skipped, a hex digit needed, an "0x" prefix allowed."""
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    if i >= len(s) or s[i].lower() not in HEX:
        return False, i
    if s[i] == "0" and s[i + 1:i + 2].lower() == "x":
        i += 2
    while i < len(s) and s[i].lower() in HEX:
        i += 1
    return True, i


def _is_guid(name: str) -> bool:
    i = 0
    for n in range(4):
        if n:
            if name[i:i + 1] != ":":
                return False
            i += 1
        ok, i = _scan_hx(name, i)
        if not ok:
            return False
    return True


def _is_port_id(name: str) -> bool:
    p = name[2:] if name[:2].lower() == "0x" else name
    if len(p) % 2:
        return False
    count = min(len(p) // 2, 16)
    return all(c.lower() in HEX for c in p[:2 * count])


def _is_ipv4(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and p.isascii()
                                   for p in parts)


def _is_ipv6(s: str) -> bool:
    import ipaddress
    addr, pct, scope = s.partition("%")
    if pct and not (scope.isascii() and scope.isdigit()):
        return False
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return False
    return True


def valid_initiator_port_id(name: str) -> bool:
    """srpt_init_nodeacl: a GUID, else a 128-bit port ID, else an IP address."""
    return _is_guid(name) or _is_port_id(name) or _is_ipv4(name) or _is_ipv6(name)


class Srpt(FabricOps):
    name = "srpt"
    fabric_name = "srpt"
    module = "ib_srpt"
    wwn_attrs = (Attribute("version", lambda g: "\n"),)
    discovery_attrs = (Attribute("rdma_cm_port", lambda g: f"{obj(g).state['rdma_cm_port']}\n",
                                 _store_rdma_cm_port),)
    tpg_attrib_attrs = ATTRIB
    has_enable = True
    #: srpt_tpg_enable_store (before 5.16)
    tpg_base_attrs = (lib.own_enable_attr(lib.OwnEnable(
        bad_number="Unable to extract srpt_tpg_store_enable",
        bad_value="Illegal value for srpt_tpg_store_enable: {val}")),)
    versioned = {"tpg_base": "srpt_tpg_base"}

    def hw_port(self, value: str) -> str:
        v = value.strip().lower()
        for prefix in ("ib.", "0x"):
            if v.startswith(prefix):
                v = v[len(prefix):]
        v = v.replace(":", "")
        if len(v) != 32 or any(c not in HEX for c in v):
            raise ValueError(f"{value!r} is not an RDMA port GID (e.g. "
                             "fe80:0000:0000:0000:0002:c903:0003:1235)")
        return v

    def load(self, fmod: FabricModule) -> None:
        fmod.state.update(rdma_cm_port=0, ports={})
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        for gid in hardware_ports(fmod.core, self.name):
            if name in (guid_name(gid), gid_name(gid)):
                break
        else:
            raise ConfigfsError(errno.EINVAL, None)
        fmod.state["ports"].setdefault(gid, {
            "srp_max_rdma_size": DEFAULT_MAX_RDMA_SIZE, "srp_max_rsp_size": DEFAULT_MAX_RSP_SIZE,
            "srp_sq_size": DEF_SRPT_SQ_SIZE, "use_srq": 0})
        wwn = SeWwn(fmod, name)
        wwn.private["gid"] = gid
        return wwn

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        return 1  # srpt_get_tag: every TPG's tag

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        pass  # srpt_set_enabled: logs initiators out when disabled

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_SRP

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return True

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return True

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        if acl.dynamic or valid_initiator_port_id(acl.name):
            return
        raise lib.refuse_acl(acl, errno.EINVAL, f"invalid initiator port ID {acl.name}")


FABRIC = Srpt()
