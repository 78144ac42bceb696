"""The TPG's files (iscsi_target_configfs.c lio_target_tpg_*, iscsi_target_tpg.c iscsit_ta_*):
``attrib/``, ``param/``, ``auth/``, and the base files ``enable`` (before 5.16) and
``dynamic_sessions``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import obj

from simfs_plugins.fabrics.iscsi.auth import auth_attrs
from simfs_plugins.fabrics.iscsi.constants import (
    TA_AUTHENTICATION, TA_CACHE_DYNAMIC_ACLS, TA_DEFAULT_CMDSN_DEPTH,
    TA_DEFAULT_CMDSN_DEPTH_MAX, TA_DEFAULT_CMDSN_DEPTH_MIN, TA_DEFAULT_ERL,
    TA_DEFAULT_FABRIC_PROT_TYPE, TA_DEFAULT_LOGIN_KEYS_WORKAROUND, TA_DEFAULT_T10_PI,
    TA_DEFAULT_TPG_ENABLED_SENDTARGETS, TA_DEMO_MODE_DISCOVERY, TA_DEMO_MODE_WRITE_PROTECT,
    TA_GENERATE_NODE_ACLS, TA_LOGIN_TIMEOUT, TA_LOGIN_TIMEOUT_MAX, TA_LOGIN_TIMEOUT_MIN,
    TA_NETIF_TIMEOUT, TA_NETIF_TIMEOUT_MAX, TA_NETIF_TIMEOUT_MIN, TA_PROD_MODE_WRITE_PROTECT)
from simfs_plugins.fabrics.iscsi.params import TPG_PARAM_KEYS, change_param_value, update_param

if TYPE_CHECKING:
    from simfs.core.tpg import SePortalGroup


# -- attrib/ --------------------------------------------------------------------------------------
def _tpg(g: Group) -> "SePortalGroup":
    return obj(g)


def tpg_attrib(tpg: "SePortalGroup") -> dict:
    return tpg.private["attrib"]


def _bool_ta(name: str, msg: str) -> Callable:
    def setter(tpg: "SePortalGroup", val: int) -> None:
        if val not in (0, 1):
            raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
        tpg_attrib(tpg)[name] = val
        tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - {msg}: {'ON' if val else 'OFF'}")
    return setter


def ta_authentication(tpg: "SePortalGroup", val: int) -> None:
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
    tpg_attrib(tpg)["authentication"] = val
    tpg.log.debug(f"{'Enforcing' if val else 'Disabling'} iSCSI Authentication Methods for "
                  f"TPG: {tpg.tpgt}.")


def _ta_range(name: str, lo: int, hi: int, what: str, small: str, done: str) -> Callable:
    def setter(tpg: "SePortalGroup", val: int) -> None:
        if val > hi:
            raise ConfigfsError(errno.EINVAL, f"Requested {what} {val} larger than maximum {hi}")
        if val < lo:
            raise ConfigfsError(errno.EINVAL, f"Requested {small} {val} smaller than minimum {lo}")
        tpg_attrib(tpg)[name] = val
        tpg.log.debug(done.format(val=val, tpgt=tpg.tpgt))
    return setter


def _ta_generate_node_acls(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
    a = tpg_attrib(tpg)
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
    tpg_attrib(tpg)["default_cmdsn_depth"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Set Default CmdSN TCQ Depth to {val}")


def _ta_cache_dynamic_acls(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {val}")
    a = tpg_attrib(tpg)
    if a["generate_node_acls"] == 1 and val == 0:
        tpg.log.debug("Skipping cache_dynamic_acls=0 when generate_node_acls=1")
        return
    a["cache_dynamic_acls"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Cache Dynamic Initiator Portal Group ACLs "
                  f"{'Enabled' if val else 'Disabled'}")


def _ta_default_erl(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1, 2):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for default_erl: {val}")
    tpg_attrib(tpg)["default_erl"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - DefaultERL: {val}")


def _ta_fabric_prot_type(tpg: "SePortalGroup", val: int) -> None:
    if val not in (0, 1, 3):
        raise ConfigfsError(errno.EINVAL, f"Illegal value for fabric_prot_type: {val}")
    tpg_attrib(tpg)["fabric_prot_type"] = val
    tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - T10 Fabric Protection Type: {val}")


TPG_ATTRIBS = (
    ("authentication", TA_AUTHENTICATION, ta_authentication),
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
        return f"{tpg_attrib(_tpg(g))[name]}\n"

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
TPG_AUTH_ATTRS = auth_attrs(lambda g: _tpg(g).private["demo_auth"], check_len=False)


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
