"""CHAP (RFC 1994 / RFC 7143 §12.1.3) as the kernel's iscsi_target_auth.c runs it.

Algorithms: CHAP_A 5 (MD5), 6 (SHA-1), 7 (SHA-256), 8 (SHA3-256); the target picks the first
value of the initiator's CHAP_A list it supports and ties the challenge length to the digest
size. CHAP_I is a per-TPG counter. Responses and challenges are accepted in hex (``0x``) or
base64 (``0b``). Mutual CHAP runs when the target has ``userid_mutual``/``password_mutual``
(``authenticate_target``) and the initiator sends CHAP_I/CHAP_C; an initiator that omits
CHAP_I stays one-way. An initiator challenge equal to the target's fails the login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
from typing import Optional

ALGORITHMS = {5: ("md5", 16), 6: ("sha1", 20), 7: ("sha256", 32), 8: ("sha3_256", 32)}
#: the kernel's crypto names, as its log lines print them
KERNEL_NAMES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha3_256": "sha3-256"}
MAX_CHAP_N_SIZE = 512
MAX_RESPONSE_LENGTH = 128  # hex digits of the largest digest, plus "0x"

_chap_ids = itertools.count(0)


class ChapError(Exception):
    """Authentication failed: the login answers 0x0201 (AUTHENTICATION FAILED). The message
    is the kernel's log line for the reason, logged at ``level``."""

    def __init__(self, msg: str, level: str = "err"):
        super().__init__(msg)
        self.level = level


def _decode_binary(value: str, what: str) -> bytes:
    """A CHAP_R or CHAP_C value (``0x`` hex or ``0b`` base64), with the kernel's lines."""
    if value[:2] in ("0x", "0X"):
        s = value[2:]
        if len(s) % 2:
            s = "0" + s
        try:
            out = binascii.unhexlify(s)
        except binascii.Error as e:
            raise ChapError(f"Malformed {what}: invalid HEX") from e
    elif value[:2] in ("0b", "0B"):
        try:
            out = base64.b64decode(value[2:], validate=True)
        except binascii.Error as e:
            raise ChapError(f"Malformed {what}: invalid BASE64") from e
    else:
        raise ChapError(f"Could not find {what}" + ("." if what == "CHAP_C" else ""))
    if what == "CHAP_C":
        if not out:
            raise ChapError("Unable to convert incoming challenge")
        if len(out) > 1024:
            raise ChapError("CHAP_C exceeds maximum binary size of 1024 bytes")
    return out


def _hash(alg: str, *parts: bytes) -> bytes:
    h = hashlib.new(alg)
    for p in parts:
        h.update(p)
    return h.digest()


class ChapServer:
    """One connection's CHAP exchange (the kernel's struct iscsi_chap)."""

    def __init__(self, auth: dict, chap_id: Optional[int] = None):
        self.auth = auth or {}
        self.state = "open"
        self.alg: Optional[str] = None
        self.digest_size = 0
        self.id = (next(_chap_ids) if chap_id is None else chap_id) & 0xFF
        self.challenge = b""

    @property
    def authenticate_target(self) -> bool:
        return bool(self.auth.get("userid_mutual") and self.auth.get("password_mutual"))

    def step(self, keys: dict[str, str]) -> tuple[list[tuple[str, str]], bool]:
        """Feed the initiator's keys; returns (keys to send, authentication complete)."""
        if self.state == "open":
            if not (self.auth.get("userid") and self.auth.get("password")):
                raise ChapError("CHAP user or password not set for Initiator ACL")
            a = keys.get("CHAP_A")
            if a is None:
                raise ChapError("Unable to locate CHAP_A key")
            chosen = None
            for tok in a.split(","):
                try:
                    n = int(tok, 10)
                except ValueError:
                    continue
                if n in ALGORITHMS:
                    chosen = n
                    break
            if chosen is None:
                raise ChapError("Unsupported CHAP_A value")
            self.alg, self.digest_size = ALGORITHMS[chosen]
            self.challenge = os.urandom(self.digest_size)
            self.state = "aic"
            return ([("CHAP_A", str(chosen)), ("CHAP_I", str(self.id)),
                     ("CHAP_C", "0x" + self.challenge.hex())], False)
        if self.state == "aic":
            return self._check_response(keys), True
        raise ChapError("unexpected CHAP state")

    def _check_response(self, keys: dict[str, str]) -> list[tuple[str, str]]:
        n = keys.get("CHAP_N")
        if n is None or n[:2] in ("0x", "0X"):
            raise ChapError("Could not find CHAP_N.")
        if len(n) >= MAX_CHAP_N_SIZE or n != self.auth.get("userid"):
            raise ChapError("CHAP_N values do not match!")
        r = keys.get("CHAP_R")
        if r is None:
            raise ChapError("Could not find CHAP_R.")
        client = _decode_binary(r, "CHAP_R")
        if len(client) != self.digest_size:
            raise ChapError("Malformed CHAP_R")
        expect = _hash(self.alg, bytes([self.id]), self.auth["password"].encode(),
                       self.challenge)
        if client != expect:
            raise ChapError(f"[server] {KERNEL_NAMES[self.alg]} Digests do not match!",
                            level="debug")
        self.state = "done"
        if not self.authenticate_target:
            return []
        ident = keys.get("CHAP_I")
        if ident is None:
            return []  # "Initiator uses One way authentication."
        try:
            i = int(ident[2:], 16) if ident[:2] in ("0x", "0X") else int(ident, 10)
        except ValueError as e:
            raise ChapError("kstrtoul() failed for CHAP identifier: -22") from e
        if i > 255:
            raise ChapError(f"chap identifier: {i} greater than 255")
        c = keys.get("CHAP_C")
        if c is None:
            raise ChapError("Could not find CHAP_C.")
        ichal = _decode_binary(c, "CHAP_C")
        if ichal == self.challenge:
            raise ChapError("initiator CHAP_C matches target CHAP_C, failing login attempt")
        resp = _hash(self.alg, bytes([i]), self.auth["password_mutual"].encode(), ichal)
        return [("CHAP_N", self.auth["userid_mutual"]), ("CHAP_R", "0x" + resp.hex())]


def chap_response(alg_id: int, ident: int, secret: str, challenge: bytes) -> bytes:
    """The initiator side's answer (tests)."""
    return _hash(ALGORITHMS[alg_id][0], bytes([ident]), secret.encode(), challenge)
