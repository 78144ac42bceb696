"""iSCSI parameters as the TPG's ``param/`` files store them (iscsi_target_parameters.c:
iscsi_change_param_value, iscsi_check_value): the keys, their initial values, their checks."""

from __future__ import annotations

import errno

from simfs.configfs import ConfigfsError
from simfs.core import kparse

from simfs_plugins.fabrics.iscsi.constants import KEY_MAXLEN, VALUE_MAXLEN


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
