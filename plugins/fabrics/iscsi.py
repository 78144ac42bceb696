"""The iSCSI fabric (drivers/target/iscsi: iscsi_target_configfs.c, iscsi_target_tpg.c,
iscsi_target_nodeattrib.c, iscsi_target_parameters.c), ``target/iscsi``, and the
interface the iSCSI server uses: :class:`TreeIscsiBackend`.

Which files each kernel version has (netif_timeout, ACL authentication, cpus_allowed_list,
iSCSI's own ``enable`` before 5.16) is the version table's (simfs.core.kernels); the
behaviour of each file is here:

* ``target/iscsi/``: ``lio_version``, ``discovery_auth/`` (userid, password,
  authenticate_target, userid_mutual, password_mutual, enforce_discovery_auth);
* any wwn name is accepted (iscsit_add_tiqn: shorter than 224 bytes, else EINVAL);
* ``tpgt_`` is searched anywhere in the name, the rest is a u16 (base 0);
* TPG ``attrib/`` is u32 (kstrtou32's errno), then the range checks of iscsit_ta_*;
  ``generate_node_acls=1`` forces ``cache_dynamic_acls=1``, and ``cache_dynamic_acls=0`` is
  silently ignored while generate_node_acls=1;
* ``authentication`` edits ``param/AuthMethod`` (1 removes ``None`` from the list, 0 appends
  ``,None``); the initial AuthMethod is ``CHAP``; enabling a TPG with authentication=1
  turns a lone ``None`` into ``CHAP``;
* ``param/`` stores go through iscsi_change_param_value: unknown keys, bad booleans,
  out-of-range numbers (simple_strtoul, trailing junk ignored), list values outside the
  allowed set → EINVAL; one trailing white-space character is dropped;
* auth strings keep what was written (a trailing newline included) and are shown with
  ``%s\\n``; ``NULL…`` clears the flag; ACL and discovery auth refuse 256 bytes or more;
* ``np/<ip>:<port>``: any failure is EINVAL (the generic make_np hides the fabric's
  errno: > 256 characters, a missing ``]`` or ``:port``, a malformed address, or a portal
  already used by a TPG of the same IQN);
* ``acls/<I>/cmdsn_depth`` > 512 → EINVAL; ``tag`` shown with ``%s`` (keeps its newline).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.scsi import status as S
from simfs.scsi.command import Nexus, Result
from simfs.scsi.engine import ScsiEngine
from simfs.core import kparse, tmr
from simfs.core.idr import Idr
from simfs.core.fabric import (FabricModule, FabricOps, FixedGroup, SeWwn, all_tpgs,
                              fabric_modules, obj, register_template)

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.core import TargetCore
    from simfs.core.tpg import SePortalGroup

ISCSIT_VERSION = "v4.1.0"
ISCSI_IQN_LEN = 224
MAX_PORTAL_LEN = 256
AUTH_BUF = 256  # MAX_USER_LEN / MAX_PASS_LEN
MAX_ACL_TAG_SIZE = 64
VALUE_MAXLEN = 255
KEY_MAXLEN = 63

# iscsi_target_core.h defaults and limits
TA_AUTHENTICATION = 1
TA_LOGIN_TIMEOUT, TA_LOGIN_TIMEOUT_MAX, TA_LOGIN_TIMEOUT_MIN = 15, 30, 5
TA_NETIF_TIMEOUT, TA_NETIF_TIMEOUT_MAX, TA_NETIF_TIMEOUT_MIN = 2, 15, 2
TA_GENERATE_NODE_ACLS = 0
TA_DEFAULT_CMDSN_DEPTH, TA_DEFAULT_CMDSN_DEPTH_MAX, TA_DEFAULT_CMDSN_DEPTH_MIN = 64, 512, 1
TA_CACHE_DYNAMIC_ACLS = 0
TA_DEMO_MODE_WRITE_PROTECT = 1
TA_PROD_MODE_WRITE_PROTECT = 0
TA_DEMO_MODE_DISCOVERY = 1
TA_DEFAULT_ERL = 0
TA_DEFAULT_T10_PI = 0
TA_DEFAULT_FABRIC_PROT_TYPE = 0
TA_DEFAULT_TPG_ENABLED_SENDTARGETS = 1
TA_DEFAULT_LOGIN_KEYS_WORKAROUND = 1

NA_DATAOUT_TIMEOUT, NA_DATAOUT_TIMEOUT_MAX, NA_DATAOUT_TIMEOUT_MIX = 3, 60, 2
NA_DATAOUT_TIMEOUT_RETRIES, NA_DATAOUT_TIMEOUT_RETRIES_MAX, NA_DATAOUT_TIMEOUT_RETRIES_MIN = \
    5, 15, 1
NA_NOPIN_TIMEOUT, NA_NOPIN_TIMEOUT_MAX, NA_NOPIN_TIMEOUT_MIN = 15, 60, 3
NA_NOPIN_RESPONSE_TIMEOUT, NA_NOPIN_RESPONSE_TIMEOUT_MAX, NA_NOPIN_RESPONSE_TIMEOUT_MIN = \
    30, 60, 3
NA_DEFAULT_ERL_MAX = 2
NA_AUTHENTICATION_INHERITED = -1

NAF_USERID_SET, NAF_PASSWORD_SET, NAF_USERID_IN_SET, NAF_PASSWORD_IN_SET = 1, 2, 4, 8

# -- hook for the iSCSI server: portals appeared/disappeared/were enabled -------------------------
def _portals_changed(core: "TargetCore") -> None:
    try:
        core.events.iscsi_portals_changed()
    except Exception as e:  # noqa: BLE001 - a server hook never breaks configfs
        core.log.err(f"simfs: iscsi_portals_changed hook failed: {e}")


# -- iSCSI parameters (iscsi_target_parameters.c) ----------------------------------------------------
BOOL_AND, BOOL_OR, NUMBER, STRING, LIST = "and", "or", "num", "str", "list"
AUTH_VALUES = ("KRB5", "SPKM1", "SPKM2", "SRP", "CHAP", "None")
DIGEST_VALUES = ("CRC32C", "None")

#: (key, initial value, type, range) in the kernel's list order
PARAMS = (
    ("AuthMethod", "CHAP", LIST, "auth"),
    ("HeaderDigest", "CRC32C,None", LIST, "digest"),
    ("DataDigest", "CRC32C,None", LIST, "digest"),
    ("MaxConnections", "1", NUMBER, (1, 65535)),
    ("SendTargets", "All", STRING, None),
    ("TargetName", "LIO.Target", STRING, None),
    ("InitiatorName", "LIO.Initiator", STRING, None),
    ("TargetAlias", "LIO Target", STRING, None),
    ("InitiatorAlias", "LIO Initiator", STRING, None),
    ("TargetAddress", "0.0.0.0:0000,0", STRING, None),
    ("TargetPortalGroupTag", "1", NUMBER, (0, 65535)),
    ("InitialR2T", "Yes", BOOL_OR, None),
    ("ImmediateData", "Yes", BOOL_AND, None),
    ("MaxXmitDataSegmentLength", "262144", NUMBER, (512, 16777215)),
    ("MaxRecvDataSegmentLength", "8192", NUMBER, (512, 16777215)),
    ("MaxBurstLength", "262144", NUMBER, (512, 16777215)),
    ("FirstBurstLength", "65536", NUMBER, (512, 16777215)),
    ("DefaultTime2Wait", "2", NUMBER, (0, 3600)),
    ("DefaultTime2Retain", "20", NUMBER, (0, 3600)),
    ("MaxOutstandingR2T", "1", NUMBER, (1, 65535)),
    ("DataPDUInOrder", "Yes", BOOL_OR, None),
    ("DataSequenceInOrder", "Yes", BOOL_OR, None),
    ("ErrorRecoveryLevel", "0", NUMBER, (0, 2)),
    ("SessionType", "Normal", STRING, "sessiontype"),
    ("IFMarker", "No", BOOL_AND, None),
    ("OFMarker", "No", BOOL_AND, None),
    ("IFMarkInt", "2048~65535", STRING, None),
    ("OFMarkInt", "2048~65535", STRING, None),
    ("RDMAExtensions", "No", BOOL_AND, None),
    ("InitiatorRecvDataSegmentLength", "262144", NUMBER, (512, 16777215)),
    ("TargetRecvDataSegmentLength", "262144", NUMBER, (512, 16777215)),
)
_PARAM_DEF = {p[0]: p for p in PARAMS}
#: the keys the TPG's param/ directory shows, in the kernel's attribute order
TPG_PARAM_KEYS = ("AuthMethod", "HeaderDigest", "DataDigest", "MaxConnections", "TargetAlias",
                  "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength",
                  "MaxXmitDataSegmentLength", "MaxBurstLength", "FirstBurstLength",
                  "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T",
                  "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel", "IFMarker",
                  "OFMarker", "IFMarkInt", "OFMarkInt")
ACL_PARAM_KEYS = ("MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                  "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain",
                  "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
                  "ErrorRecoveryLevel")


def default_params() -> dict[str, str]:
    return {key: init for key, init, _, _ in PARAMS}


def _c_int(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _check_value(log, key: str, value: str) -> None:
    """iscsi_check_value for a configfs store (raises on a refusal, after its log line)."""
    _, _, kind, rng = _PARAM_DEF[key]

    def fail(msg: str):
        log.err(msg)
        raise ConfigfsError(errno.EINVAL, None)

    if value == "Reject":
        if key in ("IFMarkInt", "OFMarkInt"):
            return
        fail(f"Received {key}={value}")
    if value == "Irrelevant":
        log.debug(f"Received {key}={value}")
        return
    if value == "NotUnderstood":
        fail(f"Received illegal offer {key}={value}")
    for part in value.split(",") if kind == LIST else [value]:
        if kind != LIST and "," in part:
            fail(f'Detected value separator ",", but key "{key}" does not allow a value list, '
                 "protocol error.")
        if len(part) > VALUE_MAXLEN:
            fail(f'Value for key "{key}" exceeds {VALUE_MAXLEN}, protocol error.')
        if kind in (BOOL_AND, BOOL_OR):
            if part not in ("Yes", "No"):
                fail(f'Illegal value for "{key}", must be either "Yes" or "No".')
        elif kind == NUMBER:
            num, _ = kparse.simple_strtoull(part, 0)
            num = _c_int(num)
            lo, hi = rng
            if num < lo or num > hi:
                fail(f'Illegal value for "{key}", must be between {lo} and {hi}.')
        elif rng == "auth":
            if part not in AUTH_VALUES:
                fail(f'Illegal value for "{key}", must be "KRB5", "SPKM1", "SPKM2", "SRP", '
                     '"CHAP" or "None".')
        elif rng == "digest":
            if part not in DIGEST_VALUES:
                fail(f'Illegal value for "{key}", must be "CRC32C" or "None".')
        elif rng == "sessiontype":
            if part not in ("Discovery", "Normal"):
                fail(f'Illegal value for "{key}", must be "Discovery" or "Normal".')


def update_param(log, params: dict, key: str, value: str) -> None:
    params[key] = value
    log.debug(f"iSCSI Parameter updated to {key}={value}")


def change_param_value(log, params: dict, keyvalue: str) -> None:
    """iscsi_change_param_value(keyvalue, param_list, check_key=1)."""
    if "=" not in keyvalue:
        log.err('Unable to locate "=" separator for key, ignoring request.')
        raise ConfigfsError(errno.EINVAL, None)
    key, value = keyvalue.split("=", 1)
    if len(key) > KEY_MAXLEN:
        log.err(f'Length of key name "{key}" exceeds {KEY_MAXLEN}.')
        raise ConfigfsError(errno.EINVAL, None)
    if key not in params:
        log.err(f'Unable to locate key "{key}".')
        raise ConfigfsError(errno.EINVAL, None)
    _check_value(log, key, value)
    update_param(log, params, key, value)
    log.debug(f"Updated {key} to {value}")


# -- module-wide state (iscsit_global) ----------------------------------------------------------------
class NodeAuth:
    """iscsi_node_auth: CHAP credentials of an ACL, of a TPG (demo mode), of discovery."""

    def __init__(self) -> None:
        self.userid = ""
        self.password = ""
        self.userid_mutual = ""
        self.password_mutual = ""
        self.naf_flags = 0
        self.authenticate_target = 0
        self.enforce_discovery_auth = 0

    def as_dict(self, enforce: bool) -> dict:
        return dict(enforce=bool(enforce), userid=self.userid, password=self.password,
                    userid_mutual=self.userid_mutual, password_mutual=self.password_mutual,
                    authenticate_target=bool(self.authenticate_target))


_AUTH_FLAGS = {"userid": NAF_USERID_SET, "password": NAF_PASSWORD_SET,
               "userid_mutual": NAF_USERID_IN_SET, "password_mutual": NAF_PASSWORD_IN_SET}


def _auth_attrs(get_auth: Callable[[Group], NodeAuth], check_len: bool) -> tuple:
    """userid, password, authenticate_target, userid_mutual, password_mutual."""
    def str_attr(name: str) -> Attribute:
        flag = _AUTH_FLAGS[name]

        def show(g: Group) -> str:
            return f"{getattr(get_auth(g), name)}\n"

        def store(g: Group, buf: bytes) -> None:
            auth = get_auth(g)
            if check_len and len(buf) >= AUTH_BUF:
                raise ConfigfsError(errno.EINVAL, None)
            value = kparse.cstr(buf)[:AUTH_BUF - 1]
            setattr(auth, name, value)
            if value.startswith("NULL"):
                auth.naf_flags &= ~flag
            else:
                auth.naf_flags |= flag
            both = NAF_USERID_IN_SET | NAF_PASSWORD_IN_SET
            auth.authenticate_target = 1 if auth.naf_flags & both == both else 0
        return Attribute(name, show, store)

    return (str_attr("userid"), str_attr("password"),
            Attribute("authenticate_target", lambda g: f"{get_auth(g).authenticate_target}\n"),
            str_attr("userid_mutual"), str_attr("password_mutual"))


def _fmod_of(g: Group) -> FabricModule:
    return obj(g)


def _disc_auth(g: Group) -> NodeAuth:
    return _fmod_of(g).state["discovery_auth"]


def _show_enforce(g: Group) -> str:
    return f"{_disc_auth(g).enforce_discovery_auth}\n"


def _store_enforce(g: Group, buf: bytes) -> None:
    fmod = _fmod_of(g)
    try:
        op = kparse.kstrtou32(buf, 0)
    except ConfigfsError:
        raise ConfigfsError(errno.EINVAL, None) from None
    if op not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for enforce_discovery_auth: {op}")
    params = fmod.state["discovery_params"]
    auth = fmod.state["discovery_auth"]
    if op:
        update_param(fmod.log, params, "AuthMethod", "CHAP")
        fmod.state["discovery_authentication"] = 1
        auth.enforce_discovery_auth = 1
        fmod.log.debug("LIO-CORE[0] Successfully enabled authentication enforcement for iSCSI "
                       "Discovery TPG")
    else:
        update_param(fmod.log, params, "AuthMethod", "CHAP,None")
        fmod.state["discovery_authentication"] = 0
        auth.enforce_discovery_auth = 0
        fmod.log.debug("LIO-CORE[0] Successfully disabled authentication enforcement for iSCSI "
                       "Discovery TPG")


DISCOVERY_ATTRS = _auth_attrs(_disc_auth, check_len=True) + (
    Attribute("enforce_discovery_auth", _show_enforce, _store_enforce),)


# -- TPG attrib/ (iscsi_target_tpg.c iscsit_ta_*) -------------------------------------------------------
def _tpg(g: Group) -> "SePortalGroup":
    return obj(g)


def _ta(tpg: "SePortalGroup") -> dict:
    return tpg.private["attrib"]


def _bool_ta(name: str, msg: str) -> Callable:
    def setter(tpg: "SePortalGroup", val: int) -> None:
        if val not in (0, 1):
            raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
        _ta(tpg)[name] = val
        tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - {msg}: {'ON' if val else 'OFF'}")
    return setter


def _ta_authentication(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for authentication parameter: {val}, "
                            "ignoring request.")
    params = tpg.private["params"]
    method = params["AuthMethod"]
    if val:
        idx = method.find("None")
        if idx >= 0:
            if method[idx + 4:idx + 5] == ",":
                new = method[idx + 5:] if idx == 0 else method[:idx - 1] + method[idx + 4:]
            else:
                new = method[:idx - 1] if idx > 0 else ""
            update_param(tpg.log, params, "AuthMethod", new)
    else:
        if "None" not in method:
            update_param(tpg.log, params, "AuthMethod", (method + ",None")[:255])
    _ta(tpg)["authentication"] = val
    tpg.log.debug(f"{'Enforcing' if val else 'Disabling'} iSCSI Authentication Methods for "
                  f"TPG: {tpg.tpgt}.")


def _ta_range(name: str, lo: int, hi: int, what: str, small: str, done: str) -> Callable:
    def setter(tpg: "SePortalGroup", val: int) -> None:
        if val > hi:
            raise ConfigfsError(errno.EINVAL, f"Requested {what} {val} larger than maximum {hi}")
        if val < lo:
            raise ConfigfsError(errno.EINVAL, f"Requested {small} {val} smaller than minimum {lo}")
        _ta(tpg)[name] = val
        tpg.log.debug(done.format(val=val, tpgt=tpg.tpgt))
    return setter


def _ta_generate_node_acls(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
    a = _ta(tpg)
    a["generate_node_acls"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Generate Initiator Portal Group ACLs: "
                  f"{'Enabled' if val else 'Disabled'}")
    if val == 1 and a["cache_dynamic_acls"] == 0:
        tpg.log.debug("Explicitly setting cache_dynamic_acls=1 when generate_node_acls=1")
        a["cache_dynamic_acls"] = 1


def _ta_default_cmdsn_depth(tpg: "SePortalGroup", val: int) -> None:
    if val > TA_DEFAULT_CMDSN_DEPTH_MAX:
        raise ConfigfsError(errno.EINVAL, f"Requested Default Queue Depth: {val} larger than "
                            f"maximum {TA_DEFAULT_CMDSN_DEPTH_MAX}")
    if val < TA_DEFAULT_CMDSN_DEPTH_MIN:
        raise ConfigfsError(errno.EINVAL, f"Requested Default Queue Depth: {val} smaller than "
                            f"minimum {TA_DEFAULT_CMDSN_DEPTH_MIN}")
    _ta(tpg)["default_cmdsn_depth"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Set Default CmdSN TCQ Depth to {val}")


def _ta_cache_dynamic_acls(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
    a = _ta(tpg)
    if a["generate_node_acls"] == 1 and val == 0:
        tpg.log.debug("Skipping cache_dynamic_acls=0 when generate_node_acls=1")
        return
    a["cache_dynamic_acls"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Cache Dynamic Initiator Portal Group ACLs "
                  f"{'Enabled' if val else 'Disabled'}")


def _ta_default_erl(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1, 2):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for default_erl: {val}")
    _ta(tpg)["default_erl"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - DefaultERL: {val}")


def _ta_fabric_prot_type(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1, 3):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for fabric_prot_type: {val}")
    _ta(tpg)["fabric_prot_type"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - T10 Fabric Protection Type: {val}")


TPG_ATTRIBS = (
    ("authentication", TA_AUTHENTICATION, _ta_authentication),
    ("login_timeout", TA_LOGIN_TIMEOUT,
     _ta_range("login_timeout", TA_LOGIN_TIMEOUT_MIN, TA_LOGIN_TIMEOUT_MAX, "Login Timeout",
               "Logout Timeout", "Set Logout Timeout to {val} for Target Portal Group {tpgt}")),
    ("netif_timeout", TA_NETIF_TIMEOUT,
     _ta_range("netif_timeout", TA_NETIF_TIMEOUT_MIN, TA_NETIF_TIMEOUT_MAX,
               "Network Interface Timeout", "Network Interface Timeout",
               "Set Network Interface Timeout to {val} for Target Portal Group {tpgt}")),
    ("generate_node_acls", TA_GENERATE_NODE_ACLS, _ta_generate_node_acls),
    ("default_cmdsn_depth", TA_DEFAULT_CMDSN_DEPTH, _ta_default_cmdsn_depth),
    ("cache_dynamic_acls", TA_CACHE_DYNAMIC_ACLS, _ta_cache_dynamic_acls),
    ("demo_mode_write_protect", TA_DEMO_MODE_WRITE_PROTECT,
     _bool_ta("demo_mode_write_protect", "Demo Mode Write Protect bit")),
    ("prod_mode_write_protect", TA_PROD_MODE_WRITE_PROTECT,
     _bool_ta("prod_mode_write_protect", "Production Mode Write Protect bit")),
    ("demo_mode_discovery", TA_DEMO_MODE_DISCOVERY,
     _bool_ta("demo_mode_discovery", "Demo Mode Discovery bit")),
    ("default_erl", TA_DEFAULT_ERL, _ta_default_erl),
    ("t10_pi", TA_DEFAULT_T10_PI, _bool_ta("t10_pi", "T10 Protection information bit")),
    ("fabric_prot_type", TA_DEFAULT_FABRIC_PROT_TYPE, _ta_fabric_prot_type),
    ("tpg_enabled_sendtargets", TA_DEFAULT_TPG_ENABLED_SENDTARGETS,
     _bool_ta("tpg_enabled_sendtargets", "TPG enabled bit required for SendTargets")),
    ("login_keys_workaround", TA_DEFAULT_LOGIN_KEYS_WORKAROUND,
     _bool_ta("login_keys_workaround", "TPG enabled bit for login keys workaround")),
)


def _tpg_attrib_attr(name: str, setter: Callable) -> Attribute:
    def show(g: Group) -> str:
        return f"{_ta(_tpg(g))[name]}\n"

    def store(g: Group, buf: bytes) -> None:
        val = kparse.kstrtou32(buf, 0)
        setter(_tpg(g), val)
    return Attribute(name, show, store)


TPG_ATTRIB_ATTRS = tuple(_tpg_attrib_attr(n, f) for n, _, f in TPG_ATTRIBS)


# -- TPG param/ and auth/ ----------------------------------------------------------------------------
def _tpg_param_attr(key: str) -> Attribute:
    def show(g: Group) -> str:
        return f"{_tpg(g).private['params'][key]}\n"

    def store(g: Group, buf: bytes) -> None:
        tpg = _tpg(g)
        text = f"{key}={kparse.cstr(buf)}"[:4095]
        if text and text[-1] in " \t\n\r\v\f":
            text = text[:-1]
        change_param_value(tpg.log, tpg.private["params"], text)
    return Attribute(key, show, store)


TPG_PARAM_ATTRS = tuple(_tpg_param_attr(k) for k in TPG_PARAM_KEYS)
TPG_AUTH_ATTRS = _auth_attrs(lambda g: _tpg(g).private["demo_auth"], check_len=False)


# -- TPG base: dynamic_sessions -----------------------------------------------------------------------
def _show_dynamic_sessions(g: Group) -> str:
    tpg = _tpg(g)
    out = ""
    for sess in tpg.sessions():
        if sess.acl.dynamic:
            line = f"{sess.acl.name}\n"
            if len(out) + len(line) > 4096:
                break
            out += line
    return out


def _store_old_enable(g: Group, buf: bytes) -> None:
    """lio_target_tpg_enable_store (before 5.16): 0 or 1, and no repeat."""
    tpg = _tpg(g)
    op = kparse.kstrtou32(buf, 0)
    if op not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for tpg_enable: {op}")
    if op and tpg.enabled:
        raise ConfigfsError(errno.EINVAL, f"iSCSI target portal group: {tpg.tpgt} is already "
                            "active, ignoring request.")
    if not op and not tpg.enabled:
        raise ConfigfsError(errno.EINVAL, f"iSCSI Target Portal Group: {tpg.tpgt} is already "
                            "inactive, ignoring request.")
    tpg.ops.enable_tpg(tpg, bool(op))


TPG_BASE_ATTRS = (
    Attribute("enable", lambda g: f"{int(_tpg(g).enabled)}\n", _store_old_enable),
    Attribute("dynamic_sessions", _show_dynamic_sessions),
)


# -- target/iscsi/cpus_allowed_list ----------------------------------------------------------------
def _cpulist(cpus: set[int]) -> str:
    """``%*pbl``: ranges of consecutive CPUs, comma-separated."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ",".join(out)


def _nr_cpu_ids() -> int:
    return os.cpu_count() or 1


def _parse_cpulist(text: str) -> set[int]:
    """cpulist_parse: ``0-3,5``; EINVAL for anything else, ERANGE past the last CPU id."""
    text = text.split("\n", 1)[0]
    cpus: set[int] = set()
    if not text.strip():
        return cpus
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ConfigfsError(errno.EINVAL, None)
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b:
            raise ConfigfsError(errno.EINVAL, None)
        if b >= _nr_cpu_ids():
            raise ConfigfsError(errno.ERANGE, None)
        cpus.update(range(a, b + 1))
    return cpus


def _show_cpus_allowed(g: Group) -> str:
    fmod: FabricModule = obj(g)
    return f"{_cpulist(fmod.state.setdefault('cpus_allowed', set(range(_nr_cpu_ids()))))}\n"


def _store_cpus_allowed(g: Group, buf: bytes) -> None:
    fmod: FabricModule = obj(g)
    fmod.state["cpus_allowed"] = _parse_cpulist(kparse.cstr(buf))


WWN_ATTRS = (
    Attribute("lio_version", lambda g: f"Datera Inc. iSCSI Target {ISCSIT_VERSION}\n"),
    Attribute("cpus_allowed_list", _show_cpus_allowed, _store_cpus_allowed),
)


# -- network portals -------------------------------------------------------------------------------
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


def _parse_portal(name: str) -> tuple[str, int, int]:
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


# -- ACL files (lio_target_nacl_*) ------------------------------------------------------------------
def _acl(g: Group) -> "NodeAcl":
    return obj(g)


def _nacl_sess(acl: "NodeAcl"):
    """se_nacl->nacl_sess: the session registered last (None without one)."""
    sessions = list(acl.sessions.values())
    return sessions[-1] if sessions else None


def _show_info(g: Group) -> str:
    """lio_target_nacl_info_show: the ACL's session, its CmdSN values and connections."""
    acl = _acl(g)
    sess = _nacl_sess(acl)
    if sess is None:
        return f"No active iSCSI Session for Initiator Endpoint: {acl.name}\n"
    fs = sess.fabric_sess
    if fs is None:  # a session without the iSCSI server behind it (simfs scsi, tests)
        isid = bytes.fromhex(sess.isid or "000000000000")
        return (f"InitiatorName: {acl.name}\nInitiatorAlias: \n"
                f"LIO Session ID: {sess.sid}   ISID: 0x{isid.hex(' ')}  TSIH: {sess.sid}  "
                "SessionType: Normal\nSession State: TARG_SESS_STATE_LOGGED_IN\n")
    params = getattr(fs, "params", None)
    alias = getattr(params, "initiator_alias", "") or ""
    exp, mx = fs.exp_cmdsn, fs.max_cmdsn
    # sess->init_task_tag holds the login ITT as it came off the wire (big-endian) and is
    # printed as a host u32: byte-swapped on the little-endian machines LIO runs on
    itt = int.from_bytes(fs.login_itt.to_bytes(4, "big"), "little")
    out = [f"InitiatorName: {fs.initiator_name}\n", f"InitiatorAlias: {alias}\n",
           f"LIO Session ID: {fs.sid}   ISID: 0x{bytes(fs.isid).hex(' ')}  TSIH: {fs.tsih}  "
           "SessionType: Normal\n",
           "Session State: TARG_SESS_STATE_LOGGED_IN\n",
           "---------------------[iSCSI Session Values]-----------------------\n",
           "  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT\n",
           f" 0x{fs.cmdsn_window:08x}   0x{(mx - exp + 1) & 0xFFFFFFFF:08x}   0x{exp:08x}   "
           f"0x{mx:08x}   0x{itt:08x}   0x{fs.ttt:08x}\n",
           "----------------------[iSCSI Connections]-------------------------\n"]
    conn = fs.conn
    if conn is not None:
        peer = conn.peer[0] if conn.peer else ""
        if peer.startswith("::ffff:") and "." in peer:
            peer = peer[7:]  # %pISc: a v4-mapped peer is an IPv4 address
        out.append(f"CID: {conn.cid}  Connection State: TARG_CONN_STATE_LOGGED_IN\n")
        out.append(f"   Address {peer} TCP  StatSN: 0x{conn.statsn:08x}\n")
    return "".join(out)


def _show_cmdsn_depth(g: Group) -> str:
    return f"{_acl(g).queue_depth}\n"


def _store_cmdsn_depth(g: Group, buf: bytes) -> None:
    acl = _acl(g)
    depth = kparse.kstrtou32(buf, 0)
    if depth > TA_DEFAULT_CMDSN_DEPTH_MAX:
        raise ConfigfsError(errno.EINVAL, f"Passed cmdsn_depth: {depth} exceeds "
                            f"TA_DEFAULT_CMDSN_DEPTH_MAX: {TA_DEFAULT_CMDSN_DEPTH_MAX}")
    tpg = acl.tpg
    if acl.queue_depth != depth:
        # target_set_nacl_queue_depth: 0 becomes 1 (and the sessions still go)
        acl.queue_depth = depth
        if not depth:
            tpg.log.warn(f"Queue depth for {tpg.fabric_name} Initiator Node: {acl.name} is 0,"
                         "defaulting to 1.")
            acl.queue_depth = 1
        acl.sessions.clear()  # target_shutdown_sessions: force reinstatement
        tpg.log.debug(f"Successfully changed queue depth to: {acl.queue_depth} for Initiator "
                      f"Node: {acl.name} on {tpg.fabric_name} Target Portal Group: {tpg.tpgt}")
    tpg.log.debug(f"LIO_Target_ConfigFS: {tpg.wwn.name}/{tpg.name} Set CmdSN Window: {depth} "
                  f"forInitiatorName: {acl.name}")


def _store_tag(g: Group, buf: bytes) -> None:
    acl = _acl(g)
    tag = kparse.cstr(buf)
    if len(tag) >= MAX_ACL_TAG_SIZE:
        raise ConfigfsError(errno.EINVAL, None)
    acl.tag = "" if tag.startswith("NULL") else tag


ACL_BASE_ATTRS = (
    Attribute("info", _show_info),
    Attribute("cmdsn_depth", _show_cmdsn_depth, _store_cmdsn_depth),
    Attribute("tag", lambda g: _acl(g).tag, _store_tag),
)


def _na(name: str, check: Callable[[int], Optional[str]], done: str) -> Attribute:
    def show(g: Group) -> str:
        return f"{_acl(g).private['attrib'][name]}\n"

    def store(g: Group, buf: bytes) -> None:
        acl = _acl(g)
        val = kparse.kstrtou32(buf, 0)
        why = check(val)
        if why:
            raise ConfigfsError(errno.EINVAL, why)
        acl.private["attrib"][name] = val
        acl.log.debug(done.format(val=val, name=acl.name))
    return Attribute(name, show, store)


def _range(what: str, lo: int, hi: int, zero_ok: bool = False) -> Callable[[int], Optional[str]]:
    def check(v: int) -> Optional[str]:
        if v > hi:
            return f"Requested {what} {v} larger than maximum {hi}"
        if v < lo and not (zero_ok and v == 0):
            return f"Requested {what} {v} smaller than minimum {lo}"
        return None
    return check


def _onezero(what: str) -> Callable[[int], Optional[str]]:
    return lambda v: None if v in (0, 1) else f"Requested {what}: {v} not 0 or 1"


ACL_ATTRIB_ATTRS = (
    _na("dataout_timeout", _range("DataOut Timeout", NA_DATAOUT_TIMEOUT_MIX,
                                  NA_DATAOUT_TIMEOUT_MAX),
        "Set DataOut Timeout to {val} for Initiator Node {name}"),
    _na("dataout_timeout_retries", _range("DataOut Timeout Retries",
                                          NA_DATAOUT_TIMEOUT_RETRIES_MIN,
                                          NA_DATAOUT_TIMEOUT_RETRIES_MAX),
        "Set DataOut Timeout Retries to {val} for Initiator Node {name}"),
    _na("default_erl", lambda v: None if v <= NA_DEFAULT_ERL_MAX else
        f"Requested default ERL: {v} larger than maximum {NA_DEFAULT_ERL_MAX}",
        "Set use ERL0 flag to {val} for Initiator Node {name}"),
    _na("nopin_timeout", _range("NopIn Timeout", NA_NOPIN_TIMEOUT_MIN, NA_NOPIN_TIMEOUT_MAX,
                                zero_ok=True),
        "Set NopIn Timeout to {val} for Initiator Node {name}"),
    _na("nopin_response_timeout", _range("NopIn Response Timeout",
                                         NA_NOPIN_RESPONSE_TIMEOUT_MIN,
                                         NA_NOPIN_RESPONSE_TIMEOUT_MAX),
        "Set NopIn Response Timeout to {val} for Initiator Node {name}"),
    _na("random_datain_pdu_offsets", _onezero("Random DataIN PDU Offsets"),
        "Set Random DataIN PDU Offsets to {val} for Initiator Node {name}"),
    _na("random_datain_seq_offsets", _onezero("Random DataIN Sequence Offsets"),
        "Set Random DataIN Sequence Offsets to {val} for Initiator Node {name}"),
    _na("random_r2t_offsets", _onezero("Random R2T Offsets"),
        "Set Random R2T Offsets to {val} for Initiator Node {name}"),
)

def _show_acl_authentication(g: Group) -> str:
    return f"{_acl(g).private['attrib'].get('authentication', NA_AUTHENTICATION_INHERITED)}\n"


def _store_acl_authentication(g: Group, buf: bytes) -> None:
    val = kparse.kstrtos32(buf, 0)
    if val not in (0, 1, NA_AUTHENTICATION_INHERITED):
        raise ConfigfsError(errno.EINVAL, None)  # returned without a word in the log
    _acl(g).private["attrib"]["authentication"] = val


ACL_ATTRIB_ATTRS += (
    Attribute("authentication", _show_acl_authentication, _store_acl_authentication),)

ACL_AUTH_ATTRS = _auth_attrs(lambda g: _acl(g).private["auth"], check_len=True)


def _acl_param_attr(key: str) -> Attribute:
    def show(g: Group) -> str:
        acl = _acl(g)
        if not acl.sessions:
            return "No Active iSCSI Session\n"
        sp = getattr(_nacl_sess(acl).fabric_sess, "params", None)
        if sp is not None:  # sess->sess_ops: what the login negotiated, printed %u
            return f"{int(getattr(sp, _SESS_OPS[key]))}\n"
        value = acl.tpg.private["params"].get(key, "")
        if value in ("Yes", "No"):
            value = "1" if value == "Yes" else "0"
        return f"{value}\n"
    return Attribute(key, show)


#: ACL param/ key -> the negotiated session value (simfs.iscsi.text.SessionParams)
_SESS_OPS = {"MaxConnections": "max_connections", "InitialR2T": "initial_r2t",
             "ImmediateData": "immediate_data", "MaxBurstLength": "max_burst",
             "FirstBurstLength": "first_burst", "DefaultTime2Wait": "time2wait",
             "DefaultTime2Retain": "time2retain", "MaxOutstandingR2T": "max_outstanding_r2t",
             "DataPDUInOrder": "data_pdu_in_order", "DataSequenceInOrder": "data_seq_in_order",
             "ErrorRecoveryLevel": "erl"}

ACL_PARAM_ATTRS = tuple(_acl_param_attr(k) for k in ACL_PARAM_KEYS)


# -- the fabric ------------------------------------------------------------------------------------
class Iscsi(FabricOps):
    name = "iscsi"
    fabric_name = "iSCSI"
    module = "iscsi_target_mod"
    wwn_attrs = WWN_ATTRS
    discovery_attrs = DISCOVERY_ATTRS
    tpg_base_attrs = TPG_BASE_ATTRS
    tpg_attrib_attrs = TPG_ATTRIB_ATTRS
    tpg_auth_attrs = TPG_AUTH_ATTRS
    tpg_param_attrs = TPG_PARAM_ATTRS
    np_attrs = NP_ATTRS
    acl_base_attrs = ACL_BASE_ATTRS
    acl_attrib_attrs = ACL_ATTRIB_ATTRS
    acl_auth_attrs = ACL_AUTH_ATTRS
    acl_param_attrs = ACL_PARAM_ATTRS
    has_enable = True
    has_np = True
    versioned = {"wwn": "iscsi_wwn", "tpg_base": "iscsi_tpg_base",
                 "tpg_attrib": "iscsi_tpg_attrib", "acl_attrib": "iscsi_acl_attrib"}
    default_submit_type = 1  # TARGET_DIRECT_SUBMIT
    direct_submit_supported = 1

    def load(self, fmod: FabricModule) -> None:
        log = fmod.log
        log.debug(f"iSCSI-Target {ISCSIT_VERSION}")
        register_template(fmod)
        params = default_params()
        params["AuthMethod"] = "CHAP,None"
        fmod.state.update(discovery_auth=NodeAuth(), discovery_params=params,
                          discovery_authentication=0)
        log.debug("CORE[0] - Allocated Discovery TPG")

    # wwn
    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        if len(name) >= ISCSI_IQN_LEN:
            raise ConfigfsError(errno.EINVAL, f"Target IQN exceeds {ISCSI_IQN_LEN} bytes")
        wwn = SeWwn(fmod, name)
        # tiqn_idr: the lowest free index from 0, iSCSI's own (not the SCSI-MIB counters)
        wwn.private["tiqn_index"] = fmod.state.setdefault("tiqn_idr", Idr()).alloc(
            wwn, 0, 0x7FFFFFFF)
        fmod.log.debug(f"CORE[0] - Added iSCSI Target IQN: {name}")
        fmod.log.debug(f"LIO_Target_ConfigFS: REGISTER -> {name}")
        fmod.log.debug(f"LIO_Target_ConfigFS: REGISTER -> Allocated Node: {name}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        if "tiqn_index" in wwn.private:
            wwn.fmod.state["tiqn_idr"].remove(wwn.private["tiqn_index"])
        wwn.log.debug(f"LIO_Target_ConfigFS: DEREGISTER -> {wwn.name}")
        wwn.log.debug(f"CORE[0] - Deleted iSCSI Target IQN: {wwn.name}")

    def wwn_stat_groups(self, wwn: SeWwn) -> list[Group]:
        return [FixedGroup(n, wwn) for n in ("iscsi_instance", "iscsi_sess_err",
                                            "iscsi_tgt_attr", "iscsi_login_stats",
                                            "iscsi_logout_stats")]

    # tpg
    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        idx = name.find("tpgt_")
        if idx < 0:
            raise ConfigfsError(errno.EINVAL, 'Unable to locate "tpgt_#" directory group')
        try:
            return kparse.kstrtou16(name[idx + 5:], 0)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, None) from None

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_ISCSI

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(attrib={n: d for n, d, _ in TPG_ATTRIBS}, params=default_params(),
                           demo_auth=NodeAuth())
        log = tpg.log
        log.debug(f"CORE[{tpg.wwn.name}]_TPG[{tpg.tpgt}] - Added iSCSI Target Portal Group")
        log.debug(f"LIO_Target_ConfigFS: REGISTER -> {tpg.wwn.name}")
        log.debug(f"LIO_Target_ConfigFS: REGISTER -> Allocated TPG: {tpg.name}")

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.log.debug("LIO_Target_ConfigFS: DEREGISTER -> Releasing TPG")
        was_enabled = tpg.enabled
        tpg.enabled = False
        tpg.log.debug(f"CORE[{tpg.wwn.name}]_TPG[{tpg.tpgt}] - Deleted iSCSI Target Portal Group")
        if was_enabled and tpg.nps:
            _portals_changed(tpg.core)

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        if enable:
            params = tpg.private["params"]
            if _ta(tpg)["authentication"]:
                if params["AuthMethod"] == "None":
                    update_param(tpg.log, params, "AuthMethod", "CHAP")
                _ta_authentication(tpg, 1)
            tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Enabled iSCSI Target Portal Group")
        else:
            for acl in list(tpg.acls.values()):  # force=1: every session is released
                for isid in list(acl.sessions):
                    tpg.remove_session(acl, isid)
            tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Disabled iSCSI Target Portal Group")
        tpg.enabled = enable
        _portals_changed(tpg.core)

    def make_np(self, tpg: "SePortalGroup", name: str) -> IscsiNp:
        ip, port, family = _parse_portal(name)
        np = IscsiNp(tpg, name, ip, port, family)
        tpg.log.debug(f"LIO_Target_ConfigFS: REGISTER -> {tpg.wwn.name} TPGT: {tpg.tpgt} "
                      f"PORTAL: {name}")
        for other in tpg.wwn.tpgs.values():
            if any(n.key() == np.key() for n in other.nps):
                raise ConfigfsError(errno.EEXIST, f"Network Portal: {_pisc(np)} already "
                                    f"exists on a different TPG on {tpg.wwn.name}")
        if not any(n.key() == np.key() for t in all_tpgs(tpg.core, "iscsi") for n in t.nps):
            tpg.log.debug(f"CORE[0] - Added Network Portal: {np.sockaddr_text()} on iSCSI/TCP")
        tpg.log.debug(f"CORE[{tpg.wwn.name}] - Added Network Portal: {np.sockaddr_text()},"
                      f"{tpg.tpgt} on iSCSI/TCP")
        tpg.log.debug("LIO_Target_ConfigFS: addnptotpg done!")
        if tpg.enabled:
            _portals_changed_later(tpg.core)
        return np

    def drop_np(self, tpg: "SePortalGroup", np: IscsiNp) -> None:
        log = tpg.log
        log.debug(f"LIO_Target_ConfigFS: DEREGISTER -> {tpg.wwn.name} TPGT: {tpg.tpgt} "
                  f"PORTAL: {np.sockaddr_text()}")
        log.debug(f"CORE[{tpg.wwn.name}] - Removed Network Portal: {np.sockaddr_text()},"
                  f"{tpg.tpgt} on iSCSI/TCP")
        if not any(n.key() == np.key() for t in all_tpgs(tpg.core, "iscsi") for n in t.nps):
            log.debug(f"CORE[0] - Removed Network Portal: {np.sockaddr_text()} on iSCSI/TCP")
        log.debug("LIO_Target_ConfigFS: delnpfromtpg done!")
        if tpg.enabled:
            _portals_changed(tpg.core)

    # demo mode
    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return bool(_ta(tpg)["generate_node_acls"])

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return bool(_ta(tpg)["cache_dynamic_acls"])

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(_ta(tpg)["demo_mode_write_protect"])

    def prod_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(_ta(tpg)["prod_mode_write_protect"])

    def default_depth(self, tpg: "SePortalGroup") -> int:
        return _ta(tpg)["default_cmdsn_depth"]

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return tpg.wwn.private["tiqn_index"]

    # ACLs
    def init_nodeacl(self, acl: "NodeAcl") -> None:
        acl.private["attrib"] = dict(
            dataout_timeout=NA_DATAOUT_TIMEOUT, dataout_timeout_retries=NA_DATAOUT_TIMEOUT_RETRIES,
            default_erl=_ta(acl.tpg)["default_erl"], nopin_timeout=NA_NOPIN_TIMEOUT,
            nopin_response_timeout=NA_NOPIN_RESPONSE_TIMEOUT, random_datain_pdu_offsets=0,
            random_datain_seq_offsets=0, random_r2t_offsets=0,
            authentication=NA_AUTHENTICATION_INHERITED)
        acl.private["auth"] = NodeAuth()

    def acl_stat_groups(self, acl: "NodeAcl") -> list[Group]:
        return [FixedGroup("iscsi_sess_stats", acl)]

    def initiator_sid(self, isid: Optional[str]) -> str:
        return isid or ""


def _pisc(np: IscsiNp) -> str:
    """%pISc: the address without the port."""
    return np.ip


def _portals_changed_later(core: "TargetCore") -> None:
    """The np group is in the tree only after make_np returns: tell the server just after."""
    lock = core.tree_lock

    def run() -> None:
        with lock:
            pass
        _portals_changed(core)
    threading.Thread(target=run, name="simfs-iscsi-portals", daemon=True).start()


FABRIC = Iscsi()


# =====================================================================================================
# The interface the iSCSI server uses
# =====================================================================================================
ISCSI_STATUS_CLS_INITIATOR_ERR = 0x02
ISCSI_STATUS_CLS_TARGET_ERR = 0x03
ISCSI_LOGIN_STATUS_TGT_FORBIDDEN = 0x02
ISCSI_LOGIN_STATUS_TGT_NOT_FOUND = 0x03
ISCSI_LOGIN_STATUS_SVC_UNAVAILABLE = 0x01


try:  # the server's exception, when the server is installed: one class for both sides
    from simfs.iscsi.errors import LoginRefused
except ImportError:  # pragma: no cover - the fabric tree without the server
    class LoginRefused(Exception):  # type: ignore[no-redef]
        """A login the target answers with a non-zero status class/detail."""

        def __init__(self, status_class: int, status_detail: int, reason: str = ""):
            super().__init__(reason)
            self.status_class = status_class
            self.status_detail = status_detail
            self.reason = reason


def _isid_text(isid: Any) -> Optional[str]:
    if isid is None:
        return None
    if isinstance(isid, (bytes, bytearray)):
        return bytes(isid).hex()
    if isinstance(isid, int):
        return f"{isid:012x}"
    return str(isid).lower()


def _addr_text(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _np_matches(np: IscsiNp, portal: tuple) -> bool:
    ip, port = portal[0], int(portal[1])
    if np.port != port:
        return False
    try:
        want = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    mine = ipaddress.ip_address(np.ip)
    if mine == want:
        return True
    if mine.is_unspecified and mine.version == want.version:
        return True
    # a v4-mapped address arriving on an IPv6 wildcard socket
    return mine.is_unspecified and mine.version == 6 and getattr(want, "ipv4_mapped", None) \
        is not None


def _engine(core: "TargetCore"):
    """The core's SCSI engine (a new engine registers itself as core.engine)."""
    return core.engine if core.engine is not None else ScsiEngine(core)


class TpgView:
    """What one login sees: the TPG, the ACL it was admitted with, and a way to run commands."""

    def __init__(self, backend: "TreeIscsiBackend", tpg: "SePortalGroup", acl: "NodeAcl"):
        self.backend = backend
        self.core = backend.core
        self.tpg = tpg
        self.acl = acl
        self.tpgt = tpg.tpgt
        self.target_name = tpg.wwn.name
        self.initiator = acl.name
        with self._lock():
            self.params: dict[str, str] = dict(tpg.private["params"])
            ta = _ta(tpg)
            auth = tpg.private["demo_auth"] if acl.dynamic else acl.private["auth"]
            # iscsi_conn_auth_required: an explicit ACL's own authentication wins unless -1
            required = ta["authentication"]
            own = acl.private.get("attrib", {}).get("authentication", NA_AUTHENTICATION_INHERITED)
            if not acl.dynamic and own != NA_AUTHENTICATION_INHERITED:
                required = own
            self.auth: dict = auth.as_dict(enforce=bool(required))
            self.attrib: dict = dict(ta)
            self.queue_depth = acl.queue_depth
            #: what the server's session uses (the ACL's cmdsn_depth and node attributes)
            self.cmdsn_depth = acl.queue_depth
            na = acl.private.get("attrib", {})
            self.nopin_timeout = na.get("nopin_timeout", NA_NOPIN_TIMEOUT)
            self.nopin_response_timeout = na.get("nopin_response_timeout",
                                                 NA_NOPIN_RESPONSE_TIMEOUT)

    def _lock(self):
        return self.core.tree_lock

    # -- LUNs -----------------------------------------------------------------------------------
    def luns(self) -> list[int]:
        with self._lock():
            return self.acl.report_luns()

    def report_luns_for(self, initiator: str) -> list[int]:
        with self._lock():
            acl = self.tpg.acls.get(initiator)
            return acl.report_luns() if acl is not None else []

    def device_key(self, lun: int) -> Any:
        """The device behind mapped LUN ``lun`` (the server runs its commands on that
        device's worker), or None when no device is there (answered at once)."""
        with self._lock():
            deve = self.acl.deves.get(lun)
            if deve is not None and deve.lun.dev is not None:
                return deve.lun.dev
            lun0 = self.tpg.virt_lun0() if lun == 0 else None
            return getattr(lun0, "dev", None)

    def sync_cache(self, lun: int) -> bool:
        """Whether the device behind ``lun`` has a SYNCHRONIZE CACHE of its own (the
        kernel's execute_sync_cache: the command then has a size, hence residuals)."""
        from simfs.scsi import sbc
        dev = self.device_key(lun)
        return dev is not None and sbc.exec_ops(dev).sync_cache

    def block_size(self, lun: int) -> int:
        """The logical block size behind mapped LUN ``lun`` (512 when unmapped)."""
        with self._lock():
            deve = self.acl.deves.get(lun)
            if deve is None or deve.lun.dev is None:
                return 512
            return deve.lun.dev.attrib.block_size

    # -- sessions ---------------------------------------------------------------------------------
    def session_added(self, isid: Any, session: Any = None) -> None:
        """A login completed; ``session`` is the server's session (the ACL's ``info``
        shows it, as the kernel's se_session->fabric_sess_ptr)."""
        with self._lock():
            sess = self.tpg.add_session(self.acl, _isid_text(isid))
            sess.fabric_sess = session

    def session_removed(self, isid: Any) -> None:
        with self._lock():
            self._nexus_loss(_isid_text(isid))
            self.tpg.remove_session(self.acl, _isid_text(isid))

    def _nexus_loss(self, isid: Optional[str]) -> None:
        """I_T nexus loss: an SPC-2 reservation this session held is released (the kernel
        releases a closing session's reservations, target_release_reservation)."""
        from simfs.scsi import pr
        for deve in list(self.acl.deves.values()):
            dev = deve.lun.dev
            if dev is None:
                continue
            holder = pr.runtime(dev).spc2
            if holder is not None and holder.initiator == self.acl.name \
                    and holder.isid == isid and holder.port is deve.lun:
                pr.release_spc2(dev)
                dev.log.debug(f"SCSI-2 Released reservation for I_T nexus loss of "
                              f"{self.acl.name}")

    # -- task management (target_tmr_work) ------------------------------------------------------
    def task_management(self, isid: Any, function: int, lun: int, ref_itt: int) -> int:
        """The core side of a TMF; returns the iSCSI response code (0 FUNCTION COMPLETE)."""
        if function != tmr.TMR_LUN_RESET:  # the others act on the task set only
            return 0
        _engine(self.core)  # its hooks do the engine's part of the reset
        with self._lock():
            deve = tmr.lookup_deve(self.acl, lun)
            if deve is None:
                return 2  # LUN DOES NOT EXIST
            tmr.lun_reset(deve.lun.dev)
        return 0

    def abort(self) -> None:
        """The login failed after the ACL lookup: a dynamic ACL without sessions goes away."""
        with self._lock():
            acl = self.acl
            if acl.dynamic and not acl.sessions and not self.tpg.ops.demo_mode_cache(self.tpg):
                if self.tpg.acls.get(acl.name) is acl:
                    del self.tpg.acls[acl.name]
                acl.free()

    # -- commands ---------------------------------------------------------------------------------
    def submit(self, isid: Any, lun: int, cdb: bytes, data_out: bytes = b"", *,
               data_length: Optional[int] = None, data_direction: Optional[str] = None) -> Result:
        lock = self._lock()
        with lock:
            deve = self.acl.deves.get(lun)
            if deve is not None and deve.lun.dev is not None:
                port, read_only = deve.lun, deve.lun_access_ro
            elif lun == 0 and self.tpg.virt_lun0() is not None:
                deve, port, read_only = None, self.tpg.virt_lun0(), True
            else:
                from simfs.scsi import sense
                e = sense.NON_EXISTENT_LUN()
                return Result(status=S.CHECK_CONDITION, sense=sense.build_sense(e))
            # A nexus is immutable: one per (ISID, LUN, port) serves every command.
            cache = self.__dict__.setdefault("_nexus_cache", {})
            key = (isid, lun)
            hit = cache.get(key)
            if hit is not None and hit[0] is port and hit[1].read_only == read_only:
                nexus = hit[1]
            else:
                # the ACL rides on the nexus: REPORT LUNS lists its mapped LUNs, EXTENDED
                # COPY finds its other device among them
                nexus = Nexus(initiator=self.acl.name, port=port, isid=_isid_text(isid),
                              mapped_lun=lun, read_only=read_only, acl=self.acl)
                if len(cache) >= 1024:
                    cache.clear()
                cache[key] = (port, nexus)
            engine = _engine(self.core)
        res = engine.submit(nexus, port.dev, cdb, data_out, data_length=data_length,
                            data_direction=data_direction)
        with lock:
            port.cmd_pdus += 1
            if deve is not None:
                deve.total_cmds += 1
            if res.ok:
                if data_out:
                    port.rx_data_octets += len(data_out)
                    if deve is not None:
                        deve.write_bytes += len(data_out)
                if res.data:
                    port.tx_data_octets += len(res.data)
                    if deve is not None:
                        deve.read_bytes += len(res.data)
        return res


class TreeIscsiBackend:
    """The configfs tree as the iSCSI server sees it: portals, SendTargets, logins."""

    def __init__(self, core: "TargetCore"):
        self.core = core

    def _lock(self):
        return self.core.tree_lock

    def _tpgs(self) -> list["SePortalGroup"]:
        return list(all_tpgs(self.core, "iscsi"))

    def portals(self) -> list[tuple[str, int]]:
        """Every np of every enabled TPG (each address once)."""
        with self._lock():
            seen: list[tuple[str, int]] = []
            for tpg in self._tpgs():
                if not tpg.enabled:
                    continue
                for np in tpg.nps:
                    key = (np.ip, np.port)
                    if key not in seen:
                        seen.append(key)
            return seen

    def discovery_auth(self) -> dict:
        with self._lock():
            fmod = fabric_modules(self.core).get("iscsi")
            if fmod is None:
                return NodeAuth().as_dict(enforce=False)
            auth: NodeAuth = fmod.state["discovery_auth"]
            return auth.as_dict(enforce=bool(auth.enforce_discovery_auth))

    def discovery(self, initiator: str, portal: tuple) -> list[tuple[str, list[str]]]:
        """iscsit_build_sendtargets_response (SendTargets=All) for a session on ``portal``."""
        out: list[tuple[str, list[str]]] = []
        with self._lock():
            fmod = fabric_modules(self.core).get("iscsi")
            if fmod is None:
                return out
            for wwn in fmod.wwns.values():
                addrs: list[str] = []
                printed = False
                for tpg in wwn.tpgs.values():
                    a = _ta(tpg)
                    if (not a["generate_node_acls"] and not a["demo_mode_discovery"]
                            and not (initiator in tpg.acls and not tpg.acls[initiator].dynamic)):
                        continue
                    if not tpg.enabled and a["tpg_enabled_sendtargets"]:
                        continue
                    for np in tpg.nps:
                        printed = True
                        ip, port = np.ip, np.port
                        if ipaddress.ip_address(ip).is_unspecified and portal:
                            ip, port = str(portal[0]).strip("[]"), int(portal[1])
                        addrs.append(f"{_addr_text(ip, port)},{tpg.tpgt}")
                if printed:
                    out.append((wwn.name, addrs))
        return out

    def login(self, target_name: str, portal: tuple, initiator: str) -> TpgView:
        """iscsi_target_locate_portal for a Normal session; raises :class:`LoginRefused`."""
        with self._lock():
            log = self.core.log
            fmod = fabric_modules(self.core).get("iscsi")
            wwn = fmod.wwns.get(target_name) if fmod is not None else None
            if wwn is None:
                why = f"Unable to locate Target IQN: {target_name} in Storage Node"
                log.err(why)
                raise LoginRefused(ISCSI_STATUS_CLS_TARGET_ERR,
                                   ISCSI_LOGIN_STATUS_SVC_UNAVAILABLE, why)
            log.debug(f"Located Storage Object: {wwn.name}")
            tpg = next((t for t in wwn.tpgs.values() if t.enabled
                        and any(_np_matches(np, portal) for np in t.nps)), None)
            if tpg is None:
                why = f"Unable to locate Target Portal Group on {target_name}"
                log.err(why)
                raise LoginRefused(ISCSI_STATUS_CLS_TARGET_ERR,
                                   ISCSI_LOGIN_STATUS_SVC_UNAVAILABLE, why)
            log.debug(f"Located Portal Group Object: {tpg.tpgt}")
            acl = tpg.check_initiator_node_acl(initiator)
            if acl is None:
                why = (f"iSCSI Initiator Node: {initiator} is not authorized to access iSCSI "
                       f"target portal group: {tpg.tpgt}.")
                log.err(why)
                raise LoginRefused(ISCSI_STATUS_CLS_INITIATOR_ERR,
                                   ISCSI_LOGIN_STATUS_TGT_FORBIDDEN, why)
            return TpgView(self, tpg, acl)
