"""iSCSI statistics (iscsi_target_stat.c): ``<iqn>/fabric_statistics/iscsi_instance``,
``iscsi_sess_err``, ``iscsi_tgt_attr``, ``iscsi_login_stats``, ``iscsi_logout_stats``, and an
ACL's ``fabric_statistics/iscsi_sess_stats``.

The counters are the target IQN's (iscsi_tiqn): logins are counted once the login has found
its TPG (iscsit_collect_login_stats: a success, or the status class/detail of the refusal
sent), logouts by reason (Close Session is normal, anything else abnormal). Every file is
``%u``/``%s`` plus a newline, in the kernel's order; the files are the same from 4.18 to
6.18. A session's files are empty while the ACL has no session (the show returns 0 bytes).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from simfs.configfs import Attribute, Group
from simfs.core.fabric import FixedGroup, obj

from simfs_plugins.fabrics.iscsi.constants import ISCSIT_VERSION

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.wwn import SeWwn

ISCSI_DRAFT20_VERSION = 0x00  # min_ver/max_ver: what the kernel prints
ISCSI_INST_NUM_NODES = 1
ISCSI_INST_DESCR = "Storage Engine Target"
ISCSI_DISCONTINUITY_TIME = 0
ISCSI_NODE_INDEX = 1
NONE = "None"
HZ = 250  # Debian's CONFIG_HZ: last_fail_time is jiffies * 100 / HZ in 32 bits

# iscsi_target_stat.h
ISCSI_SESS_ERR_DIGEST, ISCSI_SESS_ERR_CXN_TIMEOUT, ISCSI_SESS_ERR_PDU_FORMAT = 1, 2, 3
ISCSI_LOGIN_FAIL_OTHER, ISCSI_LOGIN_FAIL_REDIRECT, ISCSI_LOGIN_FAIL_AUTHORIZE = 2, 3, 4
ISCSI_LOGIN_FAIL_AUTHENTICATE, ISCSI_LOGIN_FAIL_NEGOTIATE = 5, 6

# login status class/detail (RFC 7143)
_SUCCESS, _REDIRECT, _INITIATOR_ERR = 0x00, 0x01, 0x02
_INIT_ERR, _AUTH_FAILED, _TGT_FORBIDDEN = 0x00, 0x01, 0x02


@dataclass
class TiqnStats:
    """iscsi_tiqn's sess_err_stats, login_stats and logout_stats."""

    digest_errors: int = 0
    cxn_timeout_errors: int = 0
    pdu_format_errors: int = 0
    last_sess_failure_type: int = 0
    last_sess_fail_rem_name: str = ""
    accepts: int = 0
    other_fails: int = 0
    redirects: int = 0
    authorize_fails: int = 0
    authenticate_fails: int = 0
    negotiate_fails: int = 0
    last_fail_type: int = 0
    last_fail_time: Optional[float] = None  # time.monotonic(): the kernel's jiffies
    last_intr_fail_name: str = ""
    last_intr_fail_family: int = 0
    last_intr_fail_addr: str = ""
    normal_logouts: int = 0
    abnormal_logouts: int = 0

    def login(self, status_class: int, status_detail: int, initiator: str = "",
              peer: Any = None) -> None:
        """iscsit_collect_login_stats: a login response with this status was sent."""
        if status_class == _SUCCESS:
            self.accepts += 1
            return
        if status_class == _REDIRECT:
            self.redirects += 1
            self.last_fail_type = ISCSI_LOGIN_FAIL_REDIRECT
        elif status_class == _INITIATOR_ERR and status_detail == _AUTH_FAILED:
            self.authenticate_fails += 1
            self.last_fail_type = ISCSI_LOGIN_FAIL_AUTHENTICATE
        elif status_class == _INITIATOR_ERR and status_detail == _TGT_FORBIDDEN:
            self.authorize_fails += 1
            self.last_fail_type = ISCSI_LOGIN_FAIL_AUTHORIZE
        elif status_class == _INITIATOR_ERR and status_detail == _INIT_ERR:
            self.negotiate_fails += 1
            self.last_fail_type = ISCSI_LOGIN_FAIL_NEGOTIATE
        else:
            self.other_fails += 1
            self.last_fail_type = ISCSI_LOGIN_FAIL_OTHER
        self.last_intr_fail_name = (initiator or "Unknown")[:223]
        ip = str(peer[0]) if peer else ""
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]  # a v4-mapped peer is printed as IPv4
        self.last_intr_fail_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.last_intr_fail_addr = ip
        self.last_fail_time = time.monotonic()

    def cxn_timeout(self, initiator: str) -> None:
        """iscsit_fill_cxn_timeout_err_stats: a connection of ``initiator`` timed out (the
        only session error the kernel counts: digest_errors and format_errors stay 0)."""
        self.cxn_timeout_errors = (self.cxn_timeout_errors + 1) & 0xFFFFFFFF
        self.last_sess_failure_type = ISCSI_SESS_ERR_CXN_TIMEOUT
        self.last_sess_fail_rem_name = initiator[:223]  # ISCSI_IQN_LEN with its NUL

    def logout(self, reason: int) -> None:
        """iscsit_handle_logout_cmd: reason 0 (close the session) is a normal logout."""
        if reason == 0:
            self.normal_logouts += 1
        else:
            self.abnormal_logouts += 1


def tiqn_stats(wwn: "SeWwn") -> TiqnStats:
    """The IQN's counters (made with the wwn)."""
    return wwn.private.setdefault("stats", TiqnStats())


def _u(fn: Callable[["SeWwn"], Any]) -> Callable[[Group], str]:
    return lambda g: f"{fn(obj(g))}\n"


def _inst(wwn: "SeWwn") -> int:
    return wwn.private["tiqn_index"]


def _portals(wwn: "SeWwn") -> int:
    return sum(len(tpg.nps) for tpg in wwn.tpgs.values())  # tiqn_num_tpg_nps


def _sessions(wwn: "SeWwn") -> int:
    return sum(len(acl.sessions) for tpg in wwn.tpgs.values()  # tiqn_nsessions
               for acl in tpg.acls.values())


def _fail_sess(wwn: "SeWwn") -> int:
    s = tiqn_stats(wwn)
    return (s.digest_errors + s.cxn_timeout_errors + s.pdu_format_errors) & 0xFFFFFFFF


def _login_fails(wwn: "SeWwn") -> int:
    s = tiqn_stats(wwn)
    return (s.redirects + s.authorize_fails + s.authenticate_fails + s.negotiate_fails
            + s.other_fails) & 0xFFFFFFFF


def _last_fail_time(wwn: "SeWwn") -> int:
    """Hundredths of a second since boot, computed in 32 bits as the kernel does (so it
    wraps after about two days of uptime at HZ=250)."""
    t = tiqn_stats(wwn).last_fail_time
    if t is None:
        return 0
    jiffies = int(t * HZ) & 0xFFFFFFFF
    return ((jiffies * 100) & 0xFFFFFFFF) // HZ


def _fail_intr_addr(wwn: "SeWwn") -> str:
    s = tiqn_stats(wwn)
    return s.last_intr_fail_addr if s.last_intr_fail_family else "(einval)"  # %pISc, no family


def _stat(name: str) -> Callable[["SeWwn"], Any]:
    return lambda wwn: getattr(tiqn_stats(wwn), name)


INSTANCE_ATTRS = (
    Attribute("inst", _u(_inst)),
    Attribute("min_ver", _u(lambda w: ISCSI_DRAFT20_VERSION)),
    Attribute("max_ver", _u(lambda w: ISCSI_DRAFT20_VERSION)),
    Attribute("portals", _u(_portals)),
    Attribute("nodes", _u(lambda w: ISCSI_INST_NUM_NODES)),
    Attribute("sessions", _u(_sessions)),
    Attribute("fail_sess", _u(_fail_sess)),
    Attribute("fail_type", _u(_stat("last_sess_failure_type"))),
    Attribute("fail_rem_name", _u(lambda w: tiqn_stats(w).last_sess_fail_rem_name or NONE)),
    Attribute("disc_time", _u(lambda w: ISCSI_DISCONTINUITY_TIME)),
    Attribute("description", _u(lambda w: ISCSI_INST_DESCR)),
    Attribute("vendor", _u(lambda w: "Datera, Inc. iSCSI-Target")),
    Attribute("version", _u(lambda w: ISCSIT_VERSION)),
)
SESS_ERR_ATTRS = (
    Attribute("inst", _u(_inst)),
    Attribute("digest_errors", _u(_stat("digest_errors"))),
    Attribute("cxn_errors", _u(_stat("cxn_timeout_errors"))),
    Attribute("format_errors", _u(_stat("pdu_format_errors"))),
)
TGT_ATTR_ATTRS = (
    Attribute("inst", _u(_inst)),
    Attribute("indx", _u(lambda w: ISCSI_NODE_INDEX)),
    Attribute("login_fails", _u(_login_fails)),
    Attribute("last_fail_time", _u(_last_fail_time)),
    Attribute("last_fail_type", _u(_stat("last_fail_type"))),
    Attribute("fail_intr_name", _u(lambda w: tiqn_stats(w).last_intr_fail_name or NONE)),
    Attribute("fail_intr_addr_type", _u(lambda w: "ipv6" if tiqn_stats(w).last_intr_fail_family
                                        == socket.AF_INET6 else "ipv4")),
    Attribute("fail_intr_addr", _u(_fail_intr_addr)),
)
LOGIN_STATS_ATTRS = (
    Attribute("inst", _u(_inst)),
    Attribute("indx", _u(lambda w: ISCSI_NODE_INDEX)),
    Attribute("accepts", _u(_stat("accepts"))),
    Attribute("other_fails", _u(_stat("other_fails"))),
    Attribute("redirects", _u(_stat("redirects"))),
    Attribute("authorize_fails", _u(_stat("authorize_fails"))),
    Attribute("authenticate_fails", _u(_stat("authenticate_fails"))),
    Attribute("negotiate_fails", _u(_stat("negotiate_fails"))),
)
LOGOUT_STATS_ATTRS = (
    Attribute("inst", _u(_inst)),
    Attribute("indx", _u(lambda w: ISCSI_NODE_INDEX)),
    Attribute("normal_logouts", _u(_stat("normal_logouts"))),
    Attribute("abnormal_logouts", _u(_stat("abnormal_logouts"))),
)


def wwn_stat_groups(wwn: "SeWwn") -> list[Group]:
    """``<iqn>/fabric_statistics/``'s five groups (iscsi_wwn_stat_grps), in the kernel's order."""
    return [FixedGroup("iscsi_instance", wwn, INSTANCE_ATTRS),
            FixedGroup("iscsi_sess_err", wwn, SESS_ERR_ATTRS),
            FixedGroup("iscsi_tgt_attr", wwn, TGT_ATTR_ATTRS),
            FixedGroup("iscsi_login_stats", wwn, LOGIN_STATS_ATTRS),
            FixedGroup("iscsi_logout_stats", wwn, LOGOUT_STATS_ATTRS)]


# -- the ACL's iscsi_sess_stats ------------------------------------------------------------------
def _nacl_sess(acl: "NodeAcl") -> Any:
    """se_nacl->nacl_sess (the session registered last): the server's session, which
    keeps the counters (index, cmd_pdus ... as the kernel's iscsit_session)."""
    sessions = list(acl.sessions.values())
    if not sessions:
        return None
    return getattr(sessions[-1], "fabric_sess", None)


def _sess(name: str) -> Callable[[Group], str]:
    def read(g: Group) -> str:
        sess = _nacl_sess(obj(g))
        return "" if sess is None else f"{getattr(sess, name, 0)}\n"
    return read


SESS_STATS_ATTRS = (
    Attribute("inst", lambda g: f"{obj(g).tpg.wwn.private['tiqn_index']}\n"),
    Attribute("node", lambda g: "" if _nacl_sess(obj(g)) is None
              else f"{ISCSI_NODE_INDEX}\n"),  # a Normal session
    Attribute("indx", _sess("index")),
    Attribute("cmd_pdus", _sess("cmd_pdus")),
    Attribute("rsp_pdus", _sess("rsp_pdus")),
    Attribute("txdata_octs", _sess("tx_data_octets")),
    Attribute("rxdata_octs", _sess("rx_data_octets")),
    Attribute("conn_digest_errors", _sess("conn_digest_errors")),
    Attribute("conn_timeout_errors", _sess("conn_timeout_errors")),
)


def acl_stat_groups(acl: "NodeAcl") -> list[Group]:
    return [FixedGroup("iscsi_sess_stats", acl, SESS_STATS_ATTRS)]
