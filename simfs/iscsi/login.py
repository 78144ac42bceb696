"""The login phase (RFC 7143 §6.3, §11.12-13) as drivers/target/iscsi/iscsi_target_nego.c runs it.

:class:`LoginMachine` is sans-I/O: :meth:`feed` takes one Login Request and returns what to
send back and whether the login goes on, failed (send, then close) or completed (full feature
phase). The server wires it to a socket.

Stages: security (CSG 0) -> operational (CSG 1) -> full feature (NSG 3). The target answers
each request with the keys of iscsi_encode_text_output; it moves on (T bit, NSG) only when
the initiator asked to and every key it proposed was answered. Authentication is required
when the backend says so (``auth['enforce']``: the TPG's ``attrib/authentication`` or the ACL's
override; ``discovery_auth()['enforce']`` for discovery sessions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from simfs.iscsi import pdu as P
from simfs.iscsi import text as T
from simfs.iscsi.chap import ChapError, ChapServer
from simfs.iscsi.errors import LoginRefused
from simfs.iscsi.report import Reporter

MAX_KEY_VALUE_PAIRS = 8192


class LoginFailed(Exception):
    """The login fails: ``why`` is the kernel's log line (logged at ``level``; "" when the
    backend already logged it), the response carries the status unless ``send`` is False."""

    def __init__(self, status_class: int, status_detail: int, why: str = "",
                 send: bool = True, level: str = "err", lines: tuple = ()):
        super().__init__(why)
        self.status_class = status_class
        self.status_detail = status_detail
        self.send = send
        self.level = level
        #: lines logged before ``why`` (level, text)
        self.lines = lines


@dataclass
class LoginResult:
    """What :meth:`LoginMachine.feed` produced."""

    bhs: Optional[bytearray] = None
    data: bytes = b""
    #: "continue", "fail" (close after sending) or "complete"
    state: str = "continue"


@dataclass
class LoginContext:
    """What the server knows about the connection and its sessions."""

    backend: Any
    portal: tuple
    #: find an existing session: (isid_bytes, tsih) -> Session or None
    find_session: Callable[[bytes, int], Any]
    #: session reinstatement: (isid, initiator, discovery, tpg key) -> None
    reinstate: Callable[..., None]
    #: a fresh TSIH for a TPG key
    new_tsih: Callable[[Any], int]
    cmdsn_depth: Callable[[Any], int] = lambda tpg: 64
    #: kernel-style log lines
    log: Reporter = field(default_factory=Reporter)
    #: the initiator's address (the target's login statistics keep a refused one)
    peer: Any = None


class LoginMachine:
    def __init__(self, ctx: LoginContext):
        self.ctx = ctx
        self.first = True
        self.current_stage = 0
        self.isid = b""
        self.itt = 0
        self.tsih = 0
        self.cid = 0
        self.statsn = int.from_bytes(os.urandom(4), "big")
        self.exp_cmdsn = 0
        self.max_cmdsn = 0
        self.params: Optional[T.ParamList] = None
        self.discovery = False
        #: the session index the server gave this leading login (it holds it till the end)
        self.session_index: Optional[int] = None
        self.initiator = ""
        self.target_name = ""
        self.tpg = None
        self.auth: dict = {}
        self.auth_complete = False
        self.chap: Optional[ChapServer] = None
        self.checked_existing = False
        self.existing_session = None  # for a TSIH != 0 login (connection add)
        self.session_params: Optional[T.SessionParams] = None
        self.first_response_flags = 0
        #: InitiatorName as the initiator wrote it (the ACL lookup uses it lower-cased)
        self.initiator_name = ""
        #: why the login failed (the first kernel line), for the trace
        self.failure = ""
        self._header_checked: Optional[P.Pdu] = None

    # -- the driver ---------------------------------------------------------------------------
    def header(self, req: P.Pdu) -> Optional[LoginResult]:
        """iscsi_target_check_login_request: the checks on the header alone, made before
        the data segment is read; a failure (to send, then close) or None to read on."""
        try:
            self._check_header(req)
        except LoginFailed as e:
            return self._failed(e)
        self._header_checked = req
        return None

    def feed(self, req: P.Pdu) -> LoginResult:
        try:
            if self._header_checked is not req:
                self._check_header(req)
            return self._feed(req)
        except LoginFailed as e:
            return self._failed(e)

    def _failed(self, e: LoginFailed) -> LoginResult:
        log = self.ctx.log
        for level, text in e.lines:
            log.line(level, text)
        if str(e):
            log.line(e.level, str(e))
        self.failure = next((t for lv, t in e.lines), "") or str(e) or \
            self.failure or f"status 0x{e.status_class:02x}{e.status_detail:02x}"
        # iscsi_target_login_sess_out: every failed login of a new session
        log.err("iSCSI Login negotiation failed.")
        count = getattr(self.ctx.backend, "login_failed", None)  # iscsit_collect_login_stats
        if count is not None and e.send and not self.discovery:
            count(self.target_name, self.tpg, self.initiator_name, self.ctx.peer,
                  e.status_class, e.status_detail)
        if not e.send:
            return LoginResult(state="fail")
        return LoginResult(bhs=self._rsp(0, e.status_class, e.status_detail, 0),
                           state="fail")

    def _check_header(self, req: P.Pdu) -> None:
        if req.opcode != P.OP_LOGIN_REQ:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              f"Received unknown opcode 0x{req.opcode:02x}.")
        if self.first:
            self._check_flags(req)
        else:
            self._check_request(req)
        if req.dlength > MAX_KEY_VALUE_PAIRS:
            raise LoginFailed(0, 0, "Login request payload exceeds default "
                              f"MaxRecvDataSegmentLength: {MAX_KEY_VALUE_PAIRS}, protocol "
                              "error.", send=False)

    def _rsp(self, flags: int, scls: int, sdet: int, dlen: int) -> bytearray:
        h = P.build_login_rsp(flags, self.isid or b"\0" * 6, self.tsih if scls == 0 else 0,
                              self.itt, self.statsn, self.exp_cmdsn, self.max_cmdsn, scls, sdet,
                              dlen)
        self.statsn = (self.statsn + 1) & 0xFFFFFFFF
        return h

    def _feed(self, req: P.Pdu) -> LoginResult:
        if self.first:
            self._first_pdu(req)
        rsp_flags = 0
        if req.csg == 0:
            out, rsp_flags = self._csg_zero(req)
        elif req.csg == 1:
            out, rsp_flags = self._csg_one(req)
            rsp_flags |= 1 << 2
        else:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              f"Illegal CSG: {req.csg} received from Initiator")
        self.first = False
        if rsp_flags & P.LOGIN_TRANSIT and (rsp_flags & 3) == 3:
            self.tsih = self.tsih or self.ctx.new_tsih(self.tpg)
            self.session_params = T.SessionParams.from_list(self.params)
            bhs = self._rsp(rsp_flags, 0, 0, len(out))
            return LoginResult(bhs=bhs, data=out, state="complete")
        return LoginResult(bhs=self._rsp(rsp_flags, 0, 0, len(out)), data=out)

    # -- first request: iscsi_target_locate_portal + zero_tsih_s1/s2 -----------------------------
    def _first_pdu(self, req: P.Pdu) -> None:
        self.isid = req.isid
        self.itt = req.itt
        self.tsih = req.tsih
        self.cid = req.cid
        self.exp_cmdsn = req.cmdsn
        self.max_cmdsn = req.cmdsn
        self.current_stage = req.csg
        self.version = (req.version_max, req.version_min)
        if req.version_max != 0 or req.version_min != 0:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_NO_VERSION,
                              "Unsupported iSCSI IETF Pre-RFC Revision, version Min/Max "
                              f"0x{req.version_min:02x}/0x{req.version_max:02x}, rejecting "
                              "login.")
        keys = {}
        try:
            for k, v in T.parse_text(req.data):
                keys.setdefault(k, v)
        except T.NegotiationError as e:
            raise LoginFailed(0, 0, str(e), send=False) from e
        i_name, s_type, t_name = (keys.get("InitiatorName"), keys.get("SessionType"),
                                  keys.get("TargetName"))
        leading = self.tsih == 0
        if i_name is None:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_MISSING_FIELDS,
                              "InitiatorName key not received in first login request.")
        self.initiator_name = i_name
        self.initiator = i_name.lower()
        if s_type is None and leading:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_MISSING_FIELDS,
                              "SessionType key not received in first login request.")
        self.discovery = s_type == "Discovery"
        backend = self.ctx.backend
        if not self.discovery:
            if t_name is None:
                raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_MISSING_FIELDS,
                                  "TargetName key not received in first login request while "
                                  "SessionType=Normal.")
            self.target_name = t_name
            try:
                self.tpg = backend.login(t_name, self.ctx.portal, self.initiator)
            except LoginRefused as e:
                # the backend logged its refusal (iscsi_target_locate_portal's line)
                self.failure = e.reason
                raise LoginFailed(e.status_class, e.status_detail, "") from e
            self.auth = dict(getattr(self.tpg, "auth", None) or {})
            values = dict(getattr(self.tpg, "params", None) or {})
        else:
            self.auth = dict(backend.discovery_auth() or {})
            # the discovery TPG's AuthMethod: CHAP when enforce_discovery_auth is 1, else
            # CHAP,None (iscsit_load_discovery_tpg and the enforce_discovery_auth store)
            values = {"AuthMethod": "CHAP" if self.auth.get("enforce") else "CHAP,None"}
        if not leading:
            sess = self.ctx.find_session(self.isid, self.tsih)
            if sess is None:
                raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_NO_SESSION,
                                  "Initiator attempting to add a connection to a non-existent "
                                  "session, rejecting iSCSI Login.")
            self.existing_session = sess
            # MaxConnections is 1 on every session this target negotiates
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_ISID_ERROR,
                              "Adding additional connection to this session would exceed "
                              "MaxConnections 1, login failed.")
        self.params = T.ParamList(values, discovery=self.discovery)
        if not self.discovery:
            self.params.set("TargetPortalGroupTag", str(getattr(self.tpg, "tpgt", 1)))
            self.params.set("ErrorRecoveryLevel", "0")
            depth = self.ctx.cmdsn_depth(self.tpg)
            self.max_cmdsn = (self.exp_cmdsn + depth - 1) & 0xFFFFFFFF

    def _check_flags(self, req: P.Pdu) -> None:
        if req.cont and req.transit:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              "Login request has both ISCSI_FLAG_LOGIN_CONTINUE and "
                              "ISCSI_FLAG_LOGIN_TRANSIT set, protocol error.")
        csg, nsg = req.csg, req.nsg
        if nsg == 2 or csg >= 2 or (req.transit and nsg <= csg):
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              f"Illegal login_req->flags Combination, CSG: {csg}, NSG: {nsg}, "
                              f"ISCSI_FLAG_LOGIN_TRANSIT: {req.flags & P.LOGIN_TRANSIT}.")

    def _check_request(self, req: P.Pdu) -> None:
        """iscsi_target_check_login_request for the second and later requests."""
        self._check_flags(req)
        if req.csg != self.current_stage:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              f"Initiator unexpectedly changed login stage from "
                              f"{self.current_stage} to {req.csg}, login failed.")
        if (req.version_max, req.version_min) != self.version:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              "Login request changed Version Max/Min unexpectedly to "
                              f"0x{req.version_max:02x}/0x{req.version_min:02x}, protocol "
                              "error")
        if req.isid != self.isid:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              "Login request changed ISID unexpectedly, protocol error.")
        if req.itt != self.itt:
            # the kernel prints the itt_t as it came off the wire (big-endian bytes, read as
            # a little-endian number)
            raw = int.from_bytes(req.itt.to_bytes(4, "big"), "little")
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                              f"Login request changed ITT unexpectedly to 0x{raw:08x}, "
                              "protocol error.")

    def _check_first_request(self) -> None:
        """iscsi_target_check_first_request: SessionType (and InitiatorName) were declared."""
        st = self.params.params["SessionType"]
        if not st.has(T.S_ACCEPTOR):
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_MISSING_FIELDS,
                              "SessionType key not received in first login request.")
        if st.value == "Discovery":
            return
        if not self.params.params["InitiatorName"].has(T.S_ACCEPTOR):
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_MISSING_FIELDS,
                              "InitiatorName key not received in first login request.")

    @property
    def auth_required(self) -> bool:
        return bool(self.auth.get("enforce"))

    def _existing_instances(self) -> None:
        """Session reinstatement, checked once and only after authentication."""
        if self.checked_existing:
            return
        self.checked_existing = True
        if self.tsih == 0:
            self.ctx.reinstate(self.isid, self.initiator, self.discovery, self.tpg)

    # -- CSG 0: security ----------------------------------------------------------------------
    def _csg_zero(self, req: P.Pdu) -> tuple[bytes, int]:
        pl = self.params
        auth_param = pl.params["AuthMethod"]
        phase = T.PHASE_SECURITY | T.PHASE_DECLARATIVE
        try:
            has_auth_keys = pl.decode(phase, req.data)
        except T.NegotiationError as e:
            # iscsi_target_handle_csg_zero returns -1 without a response: the kernel drops
            raise LoginFailed(0, 0, str(e), send=False) from e
        if has_auth_keys:
            if self.auth_complete:
                raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR,
                                  "Initiator has already been successfully authenticated, "
                                  f"but is still sending {auth_param.value} keys.")
            return self._do_authentication(req)
        if not req.dlength:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_AUTH_FAILED,
                              "Initiator sent zero length security payload, login failed")
        if self.first:
            self._check_first_request()
        out = pl.encode(phase)
        flags = 0
        if pl.check_negotiated():
            if self.auth_required:
                if auth_param.value.startswith("None"):
                    raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_AUTH_FAILED,
                                      "Initiator sent AuthMethod=None but Target is enforcing "
                                      "iSCSI Authentication, login failed.")
                if not self.auth_complete:
                    return out, 0
            if req.transit and req.nsg == 1:
                flags = P.LOGIN_TRANSIT | 1
                self.current_stage = 1
        return out, flags

    def _do_authentication(self, req: P.Pdu) -> tuple[bytes, int]:
        method = self.params["AuthMethod"]
        if "CHAP" in method and method != "None":
            keys = {}
            for k, v in T.parse_text(req.data):
                keys.setdefault(k, v)
            if self.chap is None:
                self.chap = ChapServer(self.auth)
            try:
                out_keys, done = self.chap.step(keys)
            except ChapError as e:
                # chap_main_loop's reason, then iscsi_target_do_authentication's line
                raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_AUTH_FAILED,
                                  "Security negotiation failed.",
                                  lines=((e.level, str(e)),)) from e
            out = T.encode_text(out_keys)
            if not done:
                return out, 0
        elif method == "None":
            out = b""
        else:  # SRP, KRB5, SPKM: unsupported
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_AUTH_FAILED,
                              "Security negotiation failed.")
        self.auth_complete = True
        flags = 0
        if req.transit and req.nsg == 1:
            flags = P.LOGIN_TRANSIT | 1
            self.current_stage = 1
        self._existing_instances()
        return out, flags

    # -- CSG 1: operational -------------------------------------------------------------------
    def _csg_one(self, req: P.Pdu) -> tuple[bytes, int]:
        pl = self.params
        phase = T.PHASE_OPERATIONAL | T.PHASE_DECLARATIVE
        try:
            pl.decode(phase, req.data)
        except T.NegotiationError as e:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_INIT_ERR, str(e)) from e
        if self.first:
            self._check_first_request()
        self._existing_instances()
        out = pl.encode(phase)
        if self.auth_required and not self.auth_complete:
            raise LoginFailed(P.STATUS_INITIATOR_ERR, P.LOGIN_AUTH_FAILED,
                              "Initiator is requesting CSG: 1, has not been successfully "
                              "authenticated, and the Target is enforcing iSCSI "
                              "Authentication, login failed.")
        flags = 0
        if pl.check_negotiated() and req.transit and req.nsg == 3:
            flags = P.LOGIN_TRANSIT | 3
        return out, flags
