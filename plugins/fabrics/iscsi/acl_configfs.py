"""The ACL's files (lio_target_nacl_*, iscsi_target_nodeattrib.c): ``info``, ``cmdsn_depth``,
``tag``, ``attrib/``, ``auth/`` and ``param/``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import obj

from simfs_plugins.fabrics.iscsi.auth import auth_attrs
from simfs_plugins.fabrics.iscsi.constants import (
    MAX_ACL_TAG_SIZE, NA_AUTHENTICATION_INHERITED, NA_DATAOUT_TIMEOUT_MAX,
    NA_DATAOUT_TIMEOUT_MIX, NA_DATAOUT_TIMEOUT_RETRIES_MAX, NA_DATAOUT_TIMEOUT_RETRIES_MIN,
    NA_DEFAULT_ERL_MAX, NA_NOPIN_RESPONSE_TIMEOUT_MAX, NA_NOPIN_RESPONSE_TIMEOUT_MIN,
    NA_NOPIN_TIMEOUT_MAX, NA_NOPIN_TIMEOUT_MIN, TA_DEFAULT_CMDSN_DEPTH_MAX)
from simfs_plugins.fabrics.iscsi.params import ACL_PARAM_KEYS

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl


def _acl(g: Group) -> "NodeAcl":
    return obj(g)


def nacl_sess(acl: "NodeAcl"):
    """se_nacl->nacl_sess: the session registered last (None without one)."""
    sessions = list(acl.sessions.values())
    return sessions[-1] if sessions else None


def _show_info(g: Group) -> str:
    """lio_target_nacl_info_show: the ACL's session, its CmdSN values and connections."""
    acl = _acl(g)
    sess = nacl_sess(acl)
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

ACL_AUTH_ATTRS = auth_attrs(lambda g: _acl(g).private["auth"], check_len=True)


def _acl_param_attr(key: str) -> Attribute:
    def show(g: Group) -> str:
        acl = _acl(g)
        if not acl.sessions:
            return "No Active iSCSI Session\n"
        sp = getattr(nacl_sess(acl).fabric_sess, "params", None)
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
