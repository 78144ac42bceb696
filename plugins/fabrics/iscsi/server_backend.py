"""The configfs tree as the iSCSI server sees it (:class:`TreeIscsiBackend`): the portals to
listen on, SendTargets, the login's target/TPG/ACL lookup (iscsi_target_locate_portal), and
per session a :class:`TpgView` that runs commands on the nexus, task management and
I_T nexus loss."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Optional, Sequence

from simfs.scsi import pr
from simfs.scsi import status as S
from simfs.scsi.command import Nexus, Result
from simfs.scsi.engine import ScsiEngine
from simfs.core import tmr
from simfs.core.fabric import all_tpgs, fabric_modules

from simfs_plugins.fabrics.iscsi import stats
from simfs_plugins.fabrics.iscsi.auth import NodeAuth
from simfs_plugins.fabrics.iscsi.constants import (NA_AUTHENTICATION_INHERITED,
                                                   NA_DATAOUT_TIMEOUT, NA_NOPIN_RESPONSE_TIMEOUT,
                                                   NA_NOPIN_TIMEOUT)
from simfs_plugins.fabrics.iscsi.portals import IscsiNp
from simfs_plugins.fabrics.iscsi.tpg_configfs import tpg_attrib

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.core import TargetCore
    from simfs.core.tpg import SePortalGroup


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


def np_matches(np: IscsiNp, portal: tuple) -> bool:
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


def _aptpl_at_login(acl: "NodeAcl") -> None:
    """A demo-mode ACL has its LUNs mapped when the login makes it (core_tpg_add_node_to_devs
    -> core_scsi3_check_aptpl_registration): APTPL registrations waiting for the initiator
    come back then, before its first command, so another nexus sees them at once."""
    for mapped_lun, deve in list(acl.deves.items()):
        dev = deve.lun.dev
        if dev is not None and dev.pr.pre_registrations:
            pr.check_aptpl_registration(dev, deve.lun, acl.name, mapped_lun)


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
        #: (ISID, LUN) -> (port, Nexus): the nexus commands of that LUN run on
        self._nexus_cache: dict = {}
        with self._lock():
            self.params: dict[str, str] = dict(tpg.private["params"])
            ta = tpg_attrib(tpg)
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
            self.dataout_timeout = na.get("dataout_timeout", NA_DATAOUT_TIMEOUT)

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
            stats.tiqn_stats(self.tpg.wwn).login(0, 0)  # iscsit_collect_login_stats: accepted

    def session_removed(self, isid: Any) -> None:
        with self._lock():
            self._nexus_loss(_isid_text(isid))
            self.tpg.remove_session(self.acl, _isid_text(isid))

    def logout_received(self, reason: int) -> None:
        """A Logout Request arrived (iscsit_handle_logout_cmd counts it by reason)."""
        with self._lock():
            stats.tiqn_stats(self.tpg.wwn).logout(reason)

    def connection_timed_out(self, initiator: str) -> None:
        """A connection of ``initiator`` failed on a timeout (an unanswered NOP-In ping):
        iscsit_fill_cxn_timeout_err_stats counts it in the IQN's iscsi_sess_err."""
        with self._lock():
            stats.tiqn_stats(self.tpg.wwn).cxn_timeout(initiator)

    def _nexus_loss(self, isid: Optional[str]) -> None:
        """I_T nexus loss: an SPC-2 reservation this session held is released (the kernel
        releases a closing session's reservations, target_release_reservation)."""
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
    def tmr_lun(self, lun: int) -> bool:
        """transport_lookup_tmr_lun: whether this ACL maps ``lun`` to a device (a TMF knows
        no virtual LUN 0); when not, the kernel's debug line."""
        with self._lock():
            if tmr.lookup_deve(self.acl, lun) is not None:
                return True
        self.core.log.debug(self._non_existent_lun(lun, "for"))
        return False

    def _non_existent_lun(self, lun: int, by: str) -> str:
        """transport_lookup_cmd_lun's (``by`` "from") or transport_lookup_tmr_lun's ("for")
        line for a LUN this ACL has not mapped; the initiator's name ends it from 5.8."""
        who = (f" {by} {self.acl.name}"
               if self.core.kernel.has("non_existent_lun_names_initiator") else "")
        return (f"TARGET_CORE[{self.tpg.fabric_name}]: Detected NON_EXISTENT_LUN Access for "
                f"0x{lun:08x}{who}")

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
        route = self._route(isid, lun)
        if isinstance(route, Result):
            return route
        engine, nexus, dev = route
        # the engine counts the command where the kernel's core does (simfs.scsi.stats)
        return engine.submit(nexus, dev, cdb, data_out, data_length=data_length,
                             data_direction=data_direction)

    def submit_many(self, isid: Any, lun: int, cmds: Sequence[tuple]) -> list:
        """Commands for one LUN in order, each ``(cdb, data_out, data_length,
        data_direction)``: what :meth:`submit` gives each one after the other (a Result, or
        the exception it raised), the LUN looked up once (ScsiEngine.submit_many)."""
        route = self._route(isid, lun)
        if isinstance(route, Result):
            # no such LUN: every command is refused, and logged, as submit refuses it
            return [route] + [self.submit(isid, lun, c, d, data_length=n, data_direction=w)
                              for c, d, n, w in cmds[1:]]
        engine, nexus, dev = route
        return engine.submit_many(nexus, dev, cmds)

    def _route(self, isid: Any, lun: int):
        """(engine, nexus, device) for a command to mapped LUN ``lun`` of session ``isid``,
        or the NON_EXISTENT_LUN Result (its line logged) when the ACL has no such LUN."""
        with self._lock():
            deve = self.acl.deves.get(lun)
            if deve is not None and deve.lun.dev is not None:
                port, read_only = deve.lun, deve.lun_access_ro
            elif lun == 0 and self.tpg.virt_lun0() is not None:
                deve, port, read_only = None, self.tpg.virt_lun0(), True
            else:
                from simfs.scsi import sense
                self.core.log.err(self._non_existent_lun(lun, "from"))
                e = sense.NON_EXISTENT_LUN()
                return Result(status=S.CHECK_CONDITION, sense=sense.build_sense(e))
            # A nexus is immutable: one per (ISID, LUN, port) serves every command.
            cache = self._nexus_cache
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
            return _engine(self.core), nexus, port.dev


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
                    a = tpg_attrib(tpg)
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

    def login_failed(self, target_name: str, tpg: Any, initiator: str, peer: Any,
                     status_class: int, status_detail: int) -> None:
        """A login refusal was sent: counted on the IQN once the login had found its TPG
        (iscsit_collect_login_stats through iscsit_snmp_get_tiqn), which an ACL refusal
        (0x0202, raised by :meth:`login` itself) also had."""
        with self._lock():
            wwn = getattr(getattr(tpg, "tpg", None), "wwn", None)
            if wwn is None and (status_class, status_detail) == (
                    ISCSI_STATUS_CLS_INITIATOR_ERR, ISCSI_LOGIN_STATUS_TGT_FORBIDDEN):
                fmod = fabric_modules(self.core).get("iscsi")
                wwn = fmod.wwns.get(target_name) if fmod is not None else None
            if wwn is not None and "stats" in wwn.private:
                stats.tiqn_stats(wwn).login(status_class, status_detail, initiator, peer)

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
                        and any(np_matches(np, portal) for np in t.nps)), None)
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
            if acl.dynamic:
                _aptpl_at_login(acl)
            return TpgView(self, tpg, acl)
