"""tcm_fc (drivers/target/tcm_fc/), ``target/fc``: FCoE targets over libfc local ports
(module tcm_fc; rtslib-fb calls the fabric tcm_fc).

* ``mkdir fc/<wwpn>``: the WWPN strictly as ``xx:xx:xx:xx:xx:xx:xx:xx`` in lower-case hex
  (tcm_fc does not ask libfc whether the port exists); a WWPN already configured under
  another spelling → EINVAL.
* ``tpgt_1`` only ("a single TPG=1 is used for HW port mappings"); other numbers → EINVAL.
* Node ACLs named by the initiator's WWPN (same strict syntax, else EINVAL), with
  ``port_name``, ``node_name`` (hex digits, any case, no colons; a refused write is EPERM,
  as the store returns -1) and ``tag``. No demo mode, no TPG files, no ``enable``.
* ``--wwn tcm_fc=PORT`` gives the machine an FCoE port, which ``simfs run`` shows under
  /sys/class/fc_host for rtslib-fb.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FabricModule, FabricOps, SeWwn, obj, register_template
from simfs.scsi import status as S
from simfs_plugins.fabrics import fabric_lib as lib

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup

FT_VERSION = "0.4"
FT_NAMELEN = 32
UINT_MAX = 0xFFFFFFFF


def _version(g) -> str:
    sysname, machine, release = g.obj.core.profile.uname()
    return f"TCM FC {FT_VERSION} on {sysname}/{machine} on {release}\n"


def _wwn_attr(key: str) -> Attribute:
    def show(g: Group) -> str:
        return lib.format_fc_wwn(obj(g).private[key]) + "\n"

    def store(g: Group, buf: bytes) -> Optional[int]:
        page = kparse.cstr(buf)
        try:
            wwn, used = lib.parse_fc_wwn(page, strict=False, namelen=FT_NAMELEN)
        except lib.WwnSyntax as e:
            obj(g).log.debug(e.debug)
            raise ConfigfsError(errno.EPERM, None) from None  # the store returns -1
        if used == 0:
            return 0
        obj(g).private[key] = wwn
        return used

    return Attribute(key, show, store)


class TcmFc(FabricOps):
    name = "fc"
    fabric_name = "fc"
    module = "tcm_fc"
    wwn_attrs = (Attribute("version", _version),)
    acl_base_attrs = (_wwn_attr("port_name"), _wwn_attr("node_name"), lib.acl_tag_attr())

    def hw_port(self, value: str) -> str:
        return lib.hw_fc_port(value)

    def load(self, fmod: FabricModule) -> None:
        register_template(fmod)

    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        fmod.log.debug(f"add wwn {name}")
        try:
            wwpn, _ = lib.parse_fc_wwn(name, strict=True, namelen=FT_NAMELEN)
        except lib.WwnSyntax as e:
            fmod.log.debug(e.debug)
            raise ConfigfsError(errno.EINVAL, None) from None
        if any(w.private.get("wwpn") == wwpn for w in fmod.wwns.values()):
            raise ConfigfsError(errno.EINVAL, None)
        wwn = SeWwn(fmod, name, address=lib.format_fc_wwn(wwpn))
        wwn.private["wwpn"] = wwpn
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        wwn.log.debug(f"del wwn {wwn.address}")

    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        wwn.log.debug(f"tcm_fc: add tpg {name}")
        if not name.startswith("tpgt_"):
            raise ConfigfsError(errno.EINVAL, None)
        try:
            index = kparse.kstrtoul(name[5:], 10)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, None) from None
        if index > UINT_MAX:
            raise ConfigfsError(errno.EINVAL, None)
        if index != 1:
            raise ConfigfsError(errno.EINVAL, "Error, a single TPG=1 is used for HW port mappings")
        return index

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.log.debug(f"del tpg {tpg.name}")

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_FCP

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return tpg.tpgt

    def init_nodeacl(self, acl: "NodeAcl") -> None:
        acl.private.update(port_name=0, node_name=0)
        if acl.dynamic:
            return
        try:
            wwpn, _ = lib.parse_fc_wwn(acl.name, strict=True, namelen=FT_NAMELEN)
        except lib.WwnSyntax as e:
            raise lib.refuse_acl(acl, errno.EINVAL, debug=e.debug) from None
        acl.private["port_name"] = wwpn


FABRIC = TcmFc()
