"""Text keys (RFC 7143 §6, §13): ``key=value\\0`` parsing and the kernel's negotiation.

:class:`ParamList` reproduces drivers/target/iscsi/iscsi_target_parameters.c: the same
parameter table (phase, scope, sender, type, initial values), the same states (acceptor,
proposer, reply-optional, response-sent), the same result functions (min for MaxBurstLength,
FirstBurstLength, MaxOutstandingR2T, MaxConnections, DefaultTime2Retain, ErrorRecoveryLevel;
max for DefaultTime2Wait; AND for ImmediateData, OR for InitialR2T and the in-order keys;
first proposer value the target supports for value lists), the same integrity rules and the
same output order (the table's), so the bytes a target sends match the kernel's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

KEY_MAXLEN = 64
VALUE_MAXLEN = 255

YES, NO, NONE, NOTUNDERSTOOD, IRRELEVANT, REJECT = ("Yes", "No", "None", "NotUnderstood",
                                                     "Irrelevant", "Reject")

PHASE_SECURITY, PHASE_OPERATIONAL, PHASE_DECLARATIVE, PHASE_FFP0 = 1, 2, 4, 8
SENDER_INITIATOR, SENDER_TARGET, SENDER_BOTH, SENDER_RECEIVER = 1, 2, 3, 4
SCOPE_CONNECTION, SCOPE_SESSION = 1, 2
T_BOOL_AND, T_BOOL_OR, T_NUMBER, T_STRING, T_LIST = "and", "or", "num", "str", "list"

S_ACCEPTOR, S_NEGOTIATE, S_PROPOSER, S_IRRELEVANT = 0x01, 0x02, 0x04, 0x08
S_REJECT, S_REPLY_OPTIONAL, S_RESPONSE_GOT, S_RESPONSE_SENT = 0x10, 0x20, 0x40, 0x80

_P, _O, _D, _F = PHASE_SECURITY, PHASE_OPERATIONAL, PHASE_DECLARATIVE, PHASE_FFP0
_I, _T, _B = SENDER_INITIATOR, SENDER_TARGET, SENDER_BOTH

#: (name, initial, phase, scope, sender, type, range) in iscsi_create_default_params order
PARAM_TABLE = [
    ("AuthMethod", "CHAP", _P, SCOPE_CONNECTION, _B, T_LIST, "auth"),
    ("HeaderDigest", "CRC32C,None", _O, SCOPE_CONNECTION, _B, T_LIST, "digest"),
    ("DataDigest", "CRC32C,None", _O, SCOPE_CONNECTION, _B, T_LIST, "digest"),
    ("MaxConnections", "1", _O, SCOPE_SESSION, _B, T_NUMBER, (1, 65535)),
    ("SendTargets", "All", _F, SCOPE_SESSION, _I, T_STRING, "utf8"),
    ("TargetName", "LIO.Target", _D, SCOPE_SESSION, _B, T_STRING, "iscsiname"),
    ("InitiatorName", "LIO.Initiator", _D, SCOPE_SESSION, _I, T_STRING, "iscsiname"),
    ("TargetAlias", "LIO Target", _D, SCOPE_SESSION, _T, T_STRING, "utf8"),
    ("InitiatorAlias", "LIO Initiator", _D, SCOPE_SESSION, _I, T_STRING, "utf8"),
    ("TargetAddress", "0.0.0.0:0000,0", _D, SCOPE_SESSION, _T, T_STRING, "address"),
    ("TargetPortalGroupTag", "1", _D, SCOPE_SESSION, _T, T_NUMBER, (0, 65535)),
    ("InitialR2T", YES, _O, SCOPE_SESSION, _B, T_BOOL_OR, None),
    ("ImmediateData", YES, _O, SCOPE_SESSION, _B, T_BOOL_AND, None),
    ("MaxXmitDataSegmentLength", "262144", _O, SCOPE_CONNECTION, _B, T_NUMBER, (512, 16777215)),
    ("MaxRecvDataSegmentLength", "8192", _O, SCOPE_CONNECTION, _B, T_NUMBER, (512, 16777215)),
    ("MaxBurstLength", "262144", _O, SCOPE_SESSION, _B, T_NUMBER, (512, 16777215)),
    ("FirstBurstLength", "65536", _O, SCOPE_SESSION, _B, T_NUMBER, (512, 16777215)),
    ("DefaultTime2Wait", "2", _O, SCOPE_SESSION, _B, T_NUMBER, (0, 3600)),
    ("DefaultTime2Retain", "20", _O, SCOPE_SESSION, _B, T_NUMBER, (0, 3600)),
    ("MaxOutstandingR2T", "1", _O, SCOPE_SESSION, _B, T_NUMBER, (1, 65535)),
    ("DataPDUInOrder", YES, _O, SCOPE_SESSION, _B, T_BOOL_OR, None),
    ("DataSequenceInOrder", YES, _O, SCOPE_SESSION, _B, T_BOOL_OR, None),
    ("ErrorRecoveryLevel", "0", _O, SCOPE_SESSION, _B, T_NUMBER, (0, 2)),
    ("SessionType", "Normal", _D, SCOPE_SESSION, _I, T_STRING, "sessiontype"),
    ("IFMarker", NO, _O, SCOPE_CONNECTION, _B, T_BOOL_AND, None),
    ("OFMarker", NO, _O, SCOPE_CONNECTION, _B, T_BOOL_AND, None),
    ("IFMarkInt", REJECT, _O, SCOPE_CONNECTION, _B, T_STRING, "utf8"),
    ("OFMarkInt", REJECT, _O, SCOPE_CONNECTION, _B, T_STRING, "utf8"),
    ("RDMAExtensions", NO, _O, SCOPE_SESSION, _B, T_BOOL_AND, None),
    ("InitiatorRecvDataSegmentLength", "262144", _O, SCOPE_CONNECTION, _B, T_NUMBER,
     (512, 16777215)),
    ("TargetRecvDataSegmentLength", "8192", _O, SCOPE_CONNECTION, _B, T_NUMBER,
     (512, 16777215)),
]
DEFAULTS = {row[0]: row[1] for row in PARAM_TABLE}

#: keys set to "negotiate" by iscsi_set_keys_to_negotiate (non-iSER); markers get "reject"
_NEGOTIATE = {"AuthMethod", "HeaderDigest", "DataDigest", "MaxConnections", "TargetAlias",
              "TargetPortalGroupTag", "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength",
              "MaxBurstLength", "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain",
              "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
              "ErrorRecoveryLevel", "SessionType"}
_REJECTED = {"IFMarker", "OFMarker", "IFMarkInt", "OFMarkInt"}
#: iscsi_set_keys_irrelevant_for_discovery
_IRRELEVANT_FOR_DISCOVERY = {"MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                             "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder",
                             "DataSequenceInOrder", "ErrorRecoveryLevel", "DefaultTime2Wait",
                             "DefaultTime2Retain", "IFMarker", "OFMarker", "IFMarkInt",
                             "OFMarkInt", "RDMAExtensions", "InitiatorRecvDataSegmentLength",
                             "TargetRecvDataSegmentLength"}
_AUTH_KEYS = {"CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R", "SRP_U", "SRP_N", "SRP_g",
              "SRP_s", "SRP_A", "SRP_B", "SRP_M", "SRP_HM"}


class NegotiationError(Exception):
    """iscsi_decode_text_input failed: the kernel answers INITIATOR_ERR/INIT_ERR (or drops)."""


def parse_text(data) -> list[tuple[str, str]]:
    """``key=value\\0...`` into ordered pairs; a pair without ``=`` is a NegotiationError."""
    out = []
    for item in bytes(data).split(b"\0"):
        if not item:
            continue
        s = item.decode("utf-8", "replace")
        if "=" not in s:
            raise NegotiationError('Unable to locate "=" separator for key, ignoring request.')
        k, v = s.split("=", 1)
        out.append((k, v))
    return out


def encode_text(pairs) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


@dataclass
class Param:
    name: str
    value: str
    phase: int
    scope: int
    sender: int
    type: str
    range: object
    state: int = 0

    def has(self, s: int) -> bool:
        return bool(self.state & s)


class ParamList:
    """One connection's parameter list during login (the kernel's conn->param_list)."""

    def __init__(self, values: Optional[dict] = None, discovery: bool = False):
        self.params: dict[str, Param] = {}
        vals = dict(DEFAULTS)
        for k, v in (values or {}).items():
            if k in vals and v is not None:
                vals[k] = str(v)
        for name, _init, phase, scope, sender, typ, rng in PARAM_TABLE:
            p = Param(name, vals[name], phase, scope, sender, typ, rng)
            if name in _NEGOTIATE:
                p.state = S_NEGOTIATE
            elif name in _REJECTED:
                p.state = S_REJECT
            self.params[name] = p
        self.extra: list[tuple[str, str]] = []
        #: the initiator's MaxRecvDataSegmentLength (conn_ops->MaxRecvDataSegmentLength)
        self.initiator_mrdsl: Optional[int] = None
        if discovery:
            self.set_irrelevant_for_discovery()

    def set_irrelevant_for_discovery(self) -> None:
        for n in _IRRELEVANT_FOR_DISCOVERY:
            self.params[n].state &= ~S_NEGOTIATE

    def __getitem__(self, name: str) -> str:
        return self.params[name].value

    def set(self, name: str, value: str) -> None:
        """iscsi_change_param_value: the target overrides a value (e.g. TargetPortalGroupTag)."""
        self.params[name].value = value

    # -- decode ------------------------------------------------------------------------------
    def decode(self, phase: int, data) -> bool:
        """iscsi_decode_text_input; returns True when an authentication key is present
        (security phase), which hands the PDU to the authentication code."""
        for key, value in parse_text(data):
            if phase & PHASE_SECURITY and key in _AUTH_KEYS:
                return True
            p = self._check_key(key, phase)
            if p is None:
                if len(value) > VALUE_MAXLEN:
                    raise NegotiationError(f'Value for notunderstood key "{key}" exceeds '
                                           f'{VALUE_MAXLEN}, protocol error.')
                self.extra.append((key, NOTUNDERSTOOD))
                continue
            self._check_value(p, value)
            if p.has(S_PROPOSER):
                self._proposer_state(p, value)
                p.state |= S_RESPONSE_GOT
            else:
                self._acceptor_state(p, value)
                p.state |= S_ACCEPTOR
        return False

    def _check_key(self, key: str, phase: int) -> Optional[Param]:
        if len(key) > KEY_MAXLEN:
            return None
        p = self.params.get(key)
        if p is None:
            return None
        if not p.sender & SENDER_INITIATOR:
            return None  # "Key may not be sent to target, protocol error."
        if p.has(S_ACCEPTOR):
            return None  # "received twice"
        if not p.phase & phase:
            return None  # "may not be negotiated during ... phase"
        return p

    def _check_value(self, p: Param, value: str) -> None:
        if value == REJECT:
            if p.name in ("IFMarkInt", "OFMarkInt"):
                p.state |= S_REJECT
                return
            raise NegotiationError(f"Received {p.name}={value}")
        if value == IRRELEVANT:
            p.state |= S_IRRELEVANT
            return
        if value == NOTUNDERSTOOD:
            raise NegotiationError(f'Standard iSCSI key "{p.name}" cannot be answered with '
                                   f'"{value}", protocol error.')
        values = value.split(",")
        if len(values) > 1 and p.type != T_LIST:
            raise NegotiationError(f'Detected value separator ",", but key "{p.name}" does '
                                   f'not allow a value list, protocol error.')
        for v in values:
            if len(v) > VALUE_MAXLEN:
                raise NegotiationError(f'Value for key "{p.name}" exceeds {VALUE_MAXLEN}')
            if p.type in (T_BOOL_AND, T_BOOL_OR):
                if v not in (YES, NO):
                    raise NegotiationError(f'Illegal value for "{p.name}", must be either '
                                           f'"Yes" or "No".')
            elif p.type == T_NUMBER:
                n = _strtoul(v)
                lo, hi = p.range
                if not lo <= n <= hi:
                    raise NegotiationError(f'Illegal value for "{p.name}", must be between '
                                           f'{lo} and {hi}.')
            elif not p.has(S_PROPOSER):
                if p.range == "auth" and v not in ("KRB5", "SPKM1", "SPKM2", "SRP", "CHAP",
                                                   NONE):
                    raise NegotiationError(f'Illegal value for "{p.name}"')
                if p.range == "digest" and v not in ("CRC32C", NONE):
                    raise NegotiationError(f'Illegal value for "{p.name}", must be "CRC32C" '
                                           f'or "None".')
                if p.range == "sessiontype" and v not in ("Discovery", "Normal"):
                    raise NegotiationError(f'Illegal value for "{p.name}", must be '
                                           f'"Discovery" or "Normal".')

    def _acceptor_state(self, p: Param, value: str) -> None:
        if p.has(S_REJECT):
            return
        if p.type == T_BOOL_AND:
            if not (value == YES and p.value == YES):
                p.value = NO
                if value != YES:
                    p.state |= S_REPLY_OPTIONAL
        elif p.type == T_BOOL_OR:
            if value == YES or p.value == YES:
                p.value = YES
                if value == YES:
                    p.state |= S_REPLY_OPTIONAL
        elif p.type == T_NUMBER:
            acc, prop = _strtoul(p.value), _strtoul(value)
            if p.name in ("MaxConnections", "MaxBurstLength", "FirstBurstLength",
                          "MaxOutstandingR2T", "DefaultTime2Retain", "ErrorRecoveryLevel"):
                p.value = str(acc) if prop > acc else value
            elif p.name == "DefaultTime2Wait":
                p.value = str(acc) if acc > prop else value
            else:
                p.value = value
            if p.name == "MaxRecvDataSegmentLength":
                # the initiator's value limits what the target sends; the target answers
                # with its own receive limit, the MaxXmitDataSegmentLength parameter
                self.initiator_mrdsl = _strtoul(p.value)
                p.value = self.params["MaxXmitDataSegmentLength"].value
        elif p.type == T_LIST:
            chosen = None
            accepted = p.value.split(",")
            for v in value.split(","):
                if v in accepted:
                    chosen = v
                    break
            if chosen is None:
                raise NegotiationError(f'Proposer\'s value list "{value}" contains no valid '
                                       f'values from Acceptor\'s value list "{p.value}".')
            p.value = chosen
        elif p.phase & PHASE_DECLARATIVE:
            p.value = value
            p.state |= S_REPLY_OPTIONAL

    def _proposer_state(self, p: Param, value: str) -> None:
        if p.has(S_RESPONSE_GOT):
            raise NegotiationError(f'Received key "{p.name}" twice, protocol error.')
        if p.type == T_LIST:
            if "," in value:
                raise NegotiationError(f'Illegal "," in response for "{p.name}".')
            if value not in p.value.split(","):
                raise NegotiationError(f'Illegal response for "{p.name}".')
        p.value = value

    # -- encode ------------------------------------------------------------------------------
    def _integrity(self, phase: int) -> None:
        ps = [p for p in self.params.values() if p.phase & phase]
        normal = any(p.name == "SessionType" and p.value == "Normal" for p in ps)
        erl = next((_strtoul(p.value) for p in ps if p.name == "ErrorRecoveryLevel"), 0)
        dsio = any(p.name == "DataSequenceInOrder" and p.value == YES for p in ps)
        mbl = next((_strtoul(p.value) for p in ps if p.name == "MaxBurstLength"), 0)
        for p in ps:
            if not normal and not p.has(S_ACCEPTOR):
                continue
            if p.name == "MaxOutstandingR2T" and dsio and erl > 0 and p.value != "1":
                p.value = "1"
            if p.name == "MaxConnections" and not normal and p.value != "1":
                p.value = "1"
            if p.name == "FirstBurstLength" and _strtoul(p.value) > mbl:
                p.value = str(mbl)

    def encode(self, phase: int) -> bytes:
        """iscsi_encode_text_output for the target (answers, then its own proposals, then
        NotUnderstood answers)."""
        self._integrity(phase)
        out = []
        for p in self.params.values():
            if not p.sender & SENDER_TARGET:
                continue
            if (p.has(S_ACCEPTOR) and not p.has(S_RESPONSE_SENT)
                    and not p.has(S_REPLY_OPTIONAL) and p.phase & phase):
                out.append((p.name, p.value))
                p.state |= S_RESPONSE_SENT
                continue
            if (p.has(S_NEGOTIATE) and not p.has(S_ACCEPTOR) and not p.has(S_PROPOSER)
                    and p.phase & phase):
                out.append((p.name, p.value))
                p.state |= S_PROPOSER
                self._proposer_optional_reply(p)
        out.extend(self.extra)
        self.extra = []
        return encode_text(out)

    @staticmethod
    def _proposer_optional_reply(p: Param) -> None:
        """iscsi_check_proposer_for_optional_reply (login_keys_workaround=1, the default)."""
        if p.type == T_BOOL_AND:
            if p.value == NO:
                p.state |= S_REPLY_OPTIONAL
        elif p.type == T_BOOL_OR:
            if p.value == YES:
                p.state |= S_REPLY_OPTIONAL
            if p.name == "ImmediateData":
                p.state |= S_REPLY_OPTIONAL
        elif p.type == T_NUMBER:
            if p.name in ("MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength",
                          "DefaultTime2Wait", "DefaultTime2Retain", "MaxConnections"):
                p.state |= S_REPLY_OPTIONAL
        elif p.phase & PHASE_DECLARATIVE:
            p.state |= S_REPLY_OPTIONAL

    def check_negotiated(self) -> bool:
        """iscsi_check_negotiated_keys: every key the target proposed got its answer."""
        for p in self.params.values():
            if (p.has(S_NEGOTIATE) and p.has(S_PROPOSER) and not p.has(S_RESPONSE_GOT)
                    and not p.has(S_REPLY_OPTIONAL) and not p.phase & PHASE_DECLARATIVE):
                return False
        return True


def _strtoul(s: str) -> int:
    """simple_strtoul(s, NULL, 0): leading digits in base 0 (0x hex, 0 octal); junk stops."""
    s = s.strip()
    base = 10
    if s[:2].lower() == "0x":
        s, base = s[2:], 16
    elif s[:1] == "0" and len(s) > 1:
        s, base = s[1:], 8
    digits = "0123456789abcdef"[:base]
    n = 0
    for ch in s.lower():
        d = digits.find(ch)
        if d < 0:
            break
        n = n * base + d
    return n & 0xFFFFFFFF


@dataclass
class SessionParams:
    """The negotiated values a session runs with (iscsi_set_session/connection_parameters)."""

    header_digest: bool = False
    data_digest: bool = False
    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    #: the initiator's receive limit: Data-In / Text / NOP-In payloads are cut to this
    max_xmit_dsl: int = 8192
    #: the target's receive limit (what the target declared)
    max_recv_dsl: int = 262144
    max_burst: int = 262144
    first_burst: int = 65536
    time2wait: int = 2
    time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_seq_in_order: bool = True
    erl: int = 0
    target_alias: str = ""
    initiator_alias: str = ""

    @classmethod
    def from_list(cls, pl: ParamList) -> "SessionParams":
        g = pl.__getitem__
        return cls(
            header_digest=g("HeaderDigest") == "CRC32C",
            data_digest=g("DataDigest") == "CRC32C",
            max_connections=_strtoul(g("MaxConnections")),
            initial_r2t=g("InitialR2T") == YES,
            immediate_data=g("ImmediateData") == YES,
            max_xmit_dsl=pl.initiator_mrdsl or 8192,
            max_recv_dsl=_strtoul(g("MaxXmitDataSegmentLength")),
            max_burst=_strtoul(g("MaxBurstLength")),
            first_burst=_strtoul(g("FirstBurstLength")),
            time2wait=_strtoul(g("DefaultTime2Wait")),
            time2retain=_strtoul(g("DefaultTime2Retain")),
            max_outstanding_r2t=_strtoul(g("MaxOutstandingR2T")),
            data_pdu_in_order=g("DataPDUInOrder") == YES,
            data_seq_in_order=g("DataSequenceInOrder") == YES,
            erl=_strtoul(g("ErrorRecoveryLevel")),
            target_alias=g("TargetAlias"),
            # iscsi_set_session_parameters: only a key the initiator sent is kept
            initiator_alias=(g("InitiatorAlias") if pl.params["InitiatorAlias"].has(
                S_ACCEPTOR | S_PROPOSER) else ""),
        )
