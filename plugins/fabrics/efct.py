"""efct (drivers/scsi/elx/efct/efct_lio.c, Linux 5.14+), ``target/efct``: Emulex/Broadcom FC
HBAs in target mode. Port names come from ``simfs mount --wwn efct=10:00:00:10:9b:1a:2b:3c``.

* ``mkdir efct/<wwpn>``: eight ``%02hhx`` fields joined by ``:`` (either case); then an HBA
  with that port name must exist ("cannot find EFCT for base wwpn ...") → else EINVAL. The
  target port's name is ``naa.`` and the colon-separated bytes.
* ``tpgt_N``: N in base 10, at most 65535.
* TPG files: its own ``enable`` (0 or 1, else EINVAL; off at first); ``attrib/``:
  generate_node_acls, cache_dynamic_acls, demo_mode_write_protect, demo_mode_login_only,
  session_deletion_wait (1), prod_mode_write_protect (0) — 0 or 1, a number that does not
  parse keeps its errno. No ``version`` file. Demo mode is always on.
* Node ACLs named like the wwn (EINVAL otherwise).
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

ATTRIB_DEFAULTS = {"generate_node_acls": 1, "cache_dynamic_acls": 1,
                   "demo_mode_write_protect": 1, "prod_mode_write_protect": 0,
                   "demo_mode_login_only": 1, "session_deletion_wait": 1}


def parse_wwn(name: str) -> int:
    b = lib.sscanf_hex_bytes(name, ":")
    if b is None:
        raise ConfigfsError(errno.EINVAL, None)
    return int.from_bytes(b, "big")


def _show_enable(g: Group) -> str:
    return f"{int(obj(g).private['enabled'])}\n"


def _store_enable(g: Group, buf: bytes) -> None:
    try:
        op = kparse.kstrtoul(buf, 0)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if op not in (0, 1):
        raise ConfigfsError(errno.EINVAL, None)
    obj(g).private["enabled"] = bool(op)


class Efct(FabricOps):
    name = "efct"
    fabric_name = "efct"
    kernel_row = "fabric_efct"  # the driver came with 5.14
    module = "efct"
    tpg_base_attrs = (Attribute("enable", _show_enable, _store_enable),)
    tpg_attrib_attrs = tuple(lib.bool_attrib(n, "%u", lambda e: e) for n in ATTRIB_DEFAULTS)

    def hw_port(self, value: str) -> str:
        return lib.hw_fc_port(value)

    def load(self, fmod: FabricModule) -> None:
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        wwpn = parse_wwn(name)
        if f"{wwpn:016x}" not in hardware_ports(fmod.core, self.name):
            raise ConfigfsError(errno.ENXIO, f"cannot find EFCT for base wwpn {name}")
        wwn = SeWwn(fmod, name, address="naa." + lib.format_fc_wwn(wwpn))
        wwn.private["wwpn"] = wwpn
        return wwn

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        tpgt = lib.fc_tpgt(name)
        return tpgt

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(attrib=dict(ATTRIB_DEFAULTS), enabled=False)

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_FCP

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return True

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return True

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg.private["attrib"]["demo_mode_write_protect"])

    def prod_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg.private["attrib"]["prod_mode_write_protect"])

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        if acl.dynamic:
            return
        try:
            parse_wwn(acl.name)
        except ConfigfsError as e:
            raise lib.refuse_acl(acl, e.errno) from None


FABRIC = Efct()
