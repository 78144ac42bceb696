"""What several fabric plugins share: FC WWPN parsing (tcm_fc, tcm_qla2xxx, efct), the
emulated-port prefixes (vhost, xen-pvscsi, tcm_remote), the one-nexus ``nexus`` file
(vhost, xen-pvscsi, usb_gadget), 0/1 TPG attributes (tcm_qla2xxx, efct), node ACL tags.

Not a fabric itself (no ``FABRIC``): no entry point names it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FabricOps, obj
from simfs.scsi import status as S

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.lun import SeLun
    from simfs.core.tpg import SePortalGroup

U64 = (1 << 64) - 1
PROTO_NAMES = {S.PROTO_SAS: "SAS", S.PROTO_SRP: "SRP", S.PROTO_FCP: "FCP",
               S.PROTO_ISCSI: "iSCSI"}


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, "Unknown")


# -- tcm_loop's TPG names (loopback, and remote, which copies it) ---------------------------------
#: TL_TPGS_PER_HBA
TL_TPGS_PER_HBA = 32


def loop_tpgt(name: str) -> int:
    """tcm_loop_make_naa_tpg: ``tpgt_`` then N in base 10, N < TL_TPGS_PER_HBA."""
    if not name.startswith("tpgt_"):
        raise ConfigfsError(errno.EINVAL, 'Unable to locate "tpgt_#" directory group')
    try:
        tpgt = kparse.kstrtoul(name[5:], 10)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if tpgt >= TL_TPGS_PER_HBA:
        raise ConfigfsError(errno.EINVAL, f"Passed tpgt: {tpgt} exceeds TL_TPGS_PER_HBA: "
                            f"{TL_TPGS_PER_HBA}")
    return tpgt


# -- the FC drivers' TPG names (tcm_qla2xxx, its NPIV ports, efct) ------------------------------
USHRT_MAX = 0xFFFF


def fc_tpgt(name: str) -> int:
    """``tpgt_`` then N in base 10, N <= USHRT_MAX; anything else EINVAL, no log line."""
    if not name.startswith("tpgt_"):
        raise ConfigfsError(errno.EINVAL, None)
    try:
        tpgt = kparse.kstrtoul(name[5:], 10)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if tpgt > USHRT_MAX:
        raise ConfigfsError(errno.EINVAL, None)
    return tpgt


# -- FC world wide names --------------------------------------------------------------------------
class WwnSyntax(ValueError):
    """A refused WWN; ``debug`` is the parser's pr_debug line (err, len, pos, byte)."""

    def __init__(self, debug: str):
        super().__init__(debug)
        self.debug = debug


def parse_fc_wwn(name: str, strict: bool, namelen: int = 32) -> tuple[int, int]:
    """ft_parse_wwn / tcm_qla2xxx_parse_wwn: (wwn, characters consumed).

    Strict (directory names): eight bytes of two lower-case hex digits joined by ``:``;
    the byte counting lets a ninth digit slip in after the eighth byte, as the kernel's
    does. Not strict (the ACL port_name/node_name files): hex digits of either case, no
    separators. At most ``namelen - 1`` characters are looked at; a newline right before
    the end is skipped; the value keeps its low 64 bits.
    """
    wwn = pos = byte = 0
    i = 0
    err = 4
    while i < namelen - 1:
        c = name[i] if i < len(name) else "\0"
        if c == "\n" and i + 1 >= len(name):
            i += 1
            continue
        if strict:
            at_sep = pos == 2
            pos += 1
            if at_sep:
                byte += 1
                if byte - 1 < 7:
                    pos = 0
                    if c == ":":
                        i += 1
                        continue
                    err = 1
                    break
        if c == "\0":
            if strict and byte != 8:
                err = 2
                break
            return wwn, i
        d = "0123456789abcdef".find(c.lower()) if len(c) == 1 else -1
        if d < 0 or (strict and c.isupper()):
            err = 3
            break
        wwn = ((wwn << 4) | d) & U64
        i += 1
    raise WwnSyntax(f"err {err} len {i} pos {pos} byte {byte}")


def format_fc_wwn(wwn: int) -> str:
    """ft_format_wwn: ``xx:xx:xx:xx:xx:xx:xx:xx``."""
    return ":".join(f"{b:02x}" for b in wwn.to_bytes(8, "big"))


def hw_fc_port(value: str) -> str:
    """A ``--wwn`` FC port: ``21:00:...``, ``0x2100...``, ``naa.2100...`` or 16 hex digits;
    canonical form: 16 lower-case hex digits."""
    v = value.strip().lower()
    for prefix in ("naa.", "0x"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    v = v.replace(":", "")
    if len(v) != 16 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(f"{value!r} is not an FC port name (8 bytes, e.g. 21:00:00:24:ff:31:4c:48)")
    return v


def sscanf_hex_bytes(name: str, sep: str, count: int = 8) -> Optional[bytes]:
    """vsscanf of ``%02hhx`` fields joined by ``sep`` (efct): leading blanks skipped, at most
    two digits a field, "0x" eating a field's width; None unless every field converts."""
    out = []
    i = 0
    for n in range(count):
        if n and sep:
            if name[i:i + 1] != sep:
                return None
            i += 1
        while i < len(name) and name[i] in " \t\n\v\f\r":
            i += 1
        if i >= len(name) or name[i].lower() not in "0123456789abcdef":
            return None
        if name[i] == "0" and name[i + 1:i + 2].lower() == "x":
            out.append(0)
            i += 2
            continue
        j = i
        while j < len(name) and j - i < 2 and name[j].lower() in "0123456789abcdef":
            j += 1
        out.append(int(name[i:j], 16))
        i = j
    return bytes(out)


# -- emulated target ports (vhost, xen-pvscsi, tcm_remote) ---------------------------------------
EMULATED_PREFIXES = (("naa.", S.PROTO_SAS, 0), ("fc.", S.PROTO_FCP, 3), ("iqn.", S.PROTO_ISCSI, 0))


def emulated_prefix(name: str, prefixes=EMULATED_PREFIXES) -> Optional[tuple[int, int]]:
    """The first prefix found *anywhere* in ``name`` (strstr): (protocol id, offset to skip)."""
    for prefix, proto, off in prefixes:
        if prefix in name:
            return proto, off
    return None


# -- the nexus file -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NexusRules:
    """How one fabric's ``tpgt_N/nexus`` behaves."""
    namelen: int
    #: "proto": naa./fc./iqn. matching the port's protocol (vhost, xen); "naa": must contain naa.
    prefixes: str
    busy_errno: int
    busy_msg: str          # with {count}
    removing_msg: str      # with {proto} and {name}
    make_errno: int = errno.ENOMEM


def nexus_of(tpg: "SePortalGroup"):
    return tpg.private.get("nexus")


def show_nexus(g: Group) -> str:
    nexus = nexus_of(obj(g))
    if nexus is None:
        raise ConfigfsError(errno.ENODEV, None)
    return f"{nexus.acl.name}\n"


def drop_nexus(tpg: "SePortalGroup", rules: NexusRules) -> None:
    nexus = nexus_of(tpg)
    if nexus is None:
        raise ConfigfsError(errno.ENODEV, None)
    count = tpg.private.get("port_count", 0)
    if count:
        raise ConfigfsError(rules.busy_errno, rules.busy_msg.format(count=count))
    tpg.log.debug(rules.removing_msg.format(proto=proto_name(tpg.proto_id), name=nexus.acl.name))
    tpg.private["nexus"] = None
    tpg.remove_session(nexus.acl, None)


def make_nexus(tpg: "SePortalGroup", name: str, rules: NexusRules) -> None:
    if nexus_of(tpg) is not None:
        tpg.log.debug("tpg->tpg_nexus already exists")
        raise ConfigfsError(errno.EEXIST, None)
    acl = tpg.check_initiator_node_acl(name)
    if acl is None:
        raise ConfigfsError(rules.make_errno,
                            f"core_tpg_check_initiator_node_acl() failed for {name}")
    tpg.private["nexus"] = tpg.add_session(acl, None)


def nexus_attr(rules: NexusRules) -> Attribute:
    """``tpgt_N/nexus``: an initiator port name makes the I_T nexus, ``NULL`` drops it."""

    def store(g: Group, buf: bytes) -> None:
        tpg: "SePortalGroup" = obj(g)
        page = kparse.cstr(buf)
        if page.startswith("NULL"):
            drop_nexus(tpg, rules)
            return
        if len(page) >= rules.namelen:
            raise ConfigfsError(errno.EINVAL, f"Emulated NAA Sas Address: {page}, exceeds max: "
                                f"{rules.namelen}")
        i_port = page
        if rules.prefixes == "naa":
            if "naa." not in i_port:
                raise ConfigfsError(errno.EINVAL, "Missing 'naa.' prefix")
            port = i_port
        else:
            port = _proto_checked_port(tpg, i_port)
        if port.endswith("\n"):  # the kernel clears i_port's newline, which port points into
            port = port[:-1]
        make_nexus(tpg, port, rules)

    return Attribute("nexus", show_nexus, store)


def _proto_checked_port(tpg: "SePortalGroup", i_port: str) -> str:
    for prefix, proto, off, kind in (("naa.", S.PROTO_SAS, 0, "SAS"), ("fc.", S.PROTO_FCP, 3, "FCP"),
                                     ("iqn.", S.PROTO_ISCSI, 0, "iSCSI")):
        if prefix in i_port:
            if tpg.proto_id != proto:
                raise ConfigfsError(errno.EINVAL, f"Passed {kind} Initiator Port {i_port} does "
                                    f"not match target port protoid: {proto_name(tpg.proto_id)}")
            return i_port[off:]
    raise ConfigfsError(errno.EINVAL,
                        f"Unable to locate prefix for emulated Initiator Port: {i_port}")


def count_links(tpg: "SePortalGroup", delta: int) -> None:
    """fabric_post_link / fabric_pre_unlink: the TPG's port count (guards the nexus)."""
    tpg.private["port_count"] = tpg.private.get("port_count", 0) + delta


class NexusFabricOps(FabricOps):
    """A fabric whose TPG has one I_T nexus made through ``tpgt_N/nexus`` (vhost, xen-pvscsi,
    usb_gadget): demo mode, the nexus dropped with the TPG, LUN links counted against it."""

    nexus_rules: NexusRules

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        try:
            drop_nexus(tpg, self.nexus_rules)
        except ConfigfsError:
            pass

    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return True

    def post_link(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        count_links(tpg, +1)

    def pre_unlink(self, tpg: "SePortalGroup", lun: "SeLun") -> None:
        count_links(tpg, -1)


class EmulatedPortFabricOps(NexusFabricOps):
    """A nexus fabric whose protocol comes from the WWN's prefix (naa./fc./iqn.: vhost,
    xen-pvscsi) and whose dynamic ACLs are cached."""

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return tpg.wwn.private["proto_id"]

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return True


# -- 0/1 TPG attributes (tcm_qla2xxx, efct) -----------------------------------------------------------
def bool_attrib(name: str, fmt: str, errno_of_kstrtoul: Callable[[int], int]) -> Attribute:
    """A 0/1 tpg attribute kept in ``tpg.private["attrib"][name]``.

    ``errno_of_kstrtoul`` maps kstrtoul's errno to what the store returns (tcm_qla2xxx
    always says EINVAL; efct passes it on).
    """

    def show(g: Group) -> str:
        return fmt % obj(g).private["attrib"][name] + "\n"

    def store(g: Group, buf: bytes) -> None:
        try:
            val = kparse.kstrtoul(buf, 0)
        except ConfigfsError as e:
            raise ConfigfsError(errno_of_kstrtoul(e.errno),
                                f"kstrtoul() failed with ret: {-e.errno}") from None
        if val not in (0, 1):
            raise ConfigfsError(errno.EINVAL, f"Illegal boolean value {val}")
        obj(g).private["attrib"][name] = val

    return Attribute(name, show, store)


def prot_type_attr(fabric: str, key: str = "fabric_prot_type") -> Attribute:
    """``fabric_prot_type``: 0, 1 or 3 (T10-PI for devices without it)."""

    def show(g: Group) -> str:
        return f"{obj(g).private[key]}\n"

    def store(g: Group, buf: bytes) -> None:
        try:
            val = kparse.kstrtoul(buf, 0)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, f"kstrtoul() returned -{e.errno} for fabric_prot_type") \
                from None
        if val not in (0, 1, 3):
            raise ConfigfsError(errno.EINVAL, f"Invalid {fabric} fabric_prot_type: {val}")
        obj(g).private[key] = val

    return Attribute("fabric_prot_type", show, store)


# -- node ACLs --------------------------------------------------------------------------------------
MAX_ACL_TAG_SIZE = 64


def acl_tag_attr() -> Attribute:
    """``acls/<I>/tag`` (core_tpg_set_initiator_node_tag): shown as stored, ``NULL`` clears."""

    def store(g: Group, buf: bytes) -> None:
        acl: "NodeAcl" = obj(g)
        tag = kparse.cstr(buf)
        if len(tag) >= MAX_ACL_TAG_SIZE:
            raise ConfigfsError(errno.EINVAL, None)
        acl.tag = "" if tag.startswith("NULL") else tag

    return Attribute("tag", lambda g: obj(g).tag, store)


def refuse_acl(acl: "NodeAcl", err: int, reason: Optional[str] = None,
               debug: Optional[str] = None) -> ConfigfsError:
    """fabric_init_nodeacl failed: the kernel had logged the ACL as added, then the fabric
    its complaint (``reason``, or a pr_debug ``debug``), then the ACL's deletion."""
    acl.log_added()
    tpg = acl.tpg
    if debug:
        tpg.log.debug(debug)
    if reason:
        tpg.log.err(reason)
    tpg.log.debug(f"{tpg.fabric_name}_TPG[{tpg.tpgt}] - Deleted ACL with TCQ Depth: "
                  f"{acl.queue_depth} for {tpg.fabric_name} Initiator Node: {acl.name}")
    return ConfigfsError(err, None)


# -- a fabric's own tpgt_N/enable (before 5.16) ----------------------------------------------------
@dataclass(frozen=True)
class OwnEnable:
    """How one fabric's ``enable`` store behaved before the core's generic one (5.16)
    replaced them: how it parses, what it logs, and what a repeat of the current state
    does."""

    #: "kstrtoul" (base 0, then 0 or 1) or "strtobool"
    parse: str = "kstrtoul"
    #: log line when the number does not parse ({rc}: kstrtoul's return), None: no line
    bad_number: Optional[str] = None
    #: log line for a number other than 0 and 1 ({val})
    bad_value: Optional[str] = None
    #: errno of enabling an enabled TPG (0: accepted, nothing done)
    again_on: int = 0
    #: errno of disabling a disabled TPG
    again_off: int = 0
    #: show format of the state (0/1)
    fmt: str = "%d"
    #: the log lines carry dev_err's "<driver> <device>: " prefix (the wwn's name)
    dev_prefix: str = ""
    #: the table row that says enabling pins the TPG (configfs_depend_item: rmdir EBUSY)
    pin_row: str = ""


def own_enable_attr(rules: OwnEnable) -> Attribute:
    """``tpgt_N/enable`` as the fabric kept it itself before 5.16 (see :class:`OwnEnable`);
    the state change goes through the core's TPG enable like the later generic file."""

    def show(g: Group) -> str:
        return rules.fmt % int(obj(g).enabled) + "\n"

    def store(g: Group, buf: bytes) -> None:
        tpg: "SePortalGroup" = obj(g)
        pre = f"{rules.dev_prefix} {tpg.wwn.name}: " if rules.dev_prefix else ""
        if rules.parse == "strtobool":
            op = kparse.kstrtobool(buf)
        else:
            try:
                val = kparse.kstrtoul(buf, 0)
            except ConfigfsError as e:
                line = rules.bad_number.format(rc=-e.errno) if rules.bad_number else None
                raise ConfigfsError(errno.EINVAL, pre + line if line else None) from None
            if val not in (0, 1):
                line = rules.bad_value.format(val=val) if rules.bad_value else None
                raise ConfigfsError(errno.EINVAL, pre + line if line else None)
            op = bool(val)
        if op == tpg.enabled:
            err = rules.again_on if op else rules.again_off
            if err:
                raise ConfigfsError(err, None)
            return
        tpg.set_enabled(op)
        if rules.pin_row and tpg.core.kernel.has(rules.pin_row):
            g.pinned_by += 1 if op else -1  # type: ignore[attr-defined]

    return Attribute("enable", show, store)
