"""No unauthenticated client holds the door: every read before login ends within the login
timeout, a login PDU's AHS length is never waited for (as the kernel never reads it), and
only so many connections may be logging in at once, per portal and in all.

Each header field that announces a length (TotalAHSLength, byte 4; DataSegmentLength,
bytes 5-7) is fuzzed on a connection that then goes silent: the server answers or drops it
within the deadline, its log says why in the kernel's words, and a logged-in session
keeps working throughout.
"""
from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from iscsi_fake import FakeBackend  # noqa: E402
from test_iscsi_server import RawInitiator, free_port  # noqa: E402

from simfs.iscsi import IscsiServer  # noqa: E402
from simfs.iscsi import pdu as P  # noqa: E402
from simfs.iscsi.text import encode_text  # noqa: E402

TIMEOUT = 1.0  # the login deadline these servers use (the kernel's is 15 s)


class Lines:
    """A KernelLog stand-in: the lines the server wrote."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def _add(self, level, msg):
        self.lines.append((level, msg))

    def err(self, msg):
        self._add("err", msg)

    def warn(self, msg):
        self._add("warn", msg)

    def info(self, msg):
        self._add("info", msg)

    def debug(self, msg):
        self._add("debug", msg)

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture
def door():
    b = FakeBackend(luns=1)
    port = free_port()
    b.portal_list = [("127.0.0.1", port)]
    log = Lines()
    srv = IscsiServer(b, klog=log, login_timeout=TIMEOUT, max_logins_per_portal=4,
                      max_logins=6)
    srv.start()
    srv.sync_portals()
    yield srv, port, log
    srv.stop()
    b.close()


def _closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes; (closed in time, what it sent)."""
    s.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except socket.timeout:
        return False, got
    except ConnectionError:
        return True, got


def _login_header(ahs_words: int = 0, dlength: int = 0, opcode: int = 0x43) -> bytearray:
    bhs = P.build_login_req(b"\x80\x00\x00\x00\x00\x01", 0, 0x10, 0, 1, 0, 0, 1, True,
                            dlength)
    bhs[0] = opcode
    bhs[4] = ahs_words
    return bhs


def _healthy(good: RawInitiator, n: int) -> None:
    block = struct.pack(">Q", n) * 64
    assert good.scsi(bytes([0x2A, 0, 0, 0, 0, 3, 0, 0, 1, 0]), write=block)[0] == 0
    status, data, _ = good.scsi(bytes([0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0]), read_len=512)
    assert status == 0 and data == block


def test_ahs_length_then_silence_is_answered_at_once(door):
    """The issue's repro: a 48-byte login header with byte 4 = 255, then nothing. The kernel
    never reads a login PDU's AHS: the empty request lacks InitiatorName and is refused."""
    srv, port, log = door
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    s.sendall(bytes(_login_header(ahs_words=255)))
    closed, got = _closed_within(s, TIMEOUT / 2)
    s.close()
    assert closed, "the connection was held"
    assert time.monotonic() - t0 < TIMEOUT / 2
    rsp = P.Pdu(got[:48])
    assert rsp.opcode == P.OP_LOGIN_RSP and (rsp.bhs[36], rsp.bhs[37]) == (0x02, 0x07)
    assert "InitiatorName key not received in first login request." in log.text()
    assert "iSCSI Login negotiation failed." in log.text()


@pytest.mark.parametrize("stall", ["header", "data"])
def test_every_login_read_is_bounded(door, stall):
    """Half a header, or a header announcing 100 bytes of text and 10 of them: the
    connection goes when the login deadline passes, and the log says so."""
    srv, port, log = door
    s = socket.create_connection(("127.0.0.1", port))
    if stall == "header":
        s.sendall(bytes(_login_header())[:20])
    else:
        s.sendall(bytes(_login_header(dlength=100)) + b"InitiatorN")
    closed, got = _closed_within(s, TIMEOUT * 4)
    s.close()
    assert closed and got == b""
    assert "Entering iscsi_target_login_timeout >>>>>>>>>>>>>>>>>>>" in log.text()
    assert log.lines[-1] == ("err", "iSCSI Login negotiation failed.")


def test_a_login_spread_over_many_pdus_shares_one_deadline(door):
    """Each PDU on time is not enough: the deadline runs from the connection's start."""
    srv, port, log = door
    s = socket.create_connection(("127.0.0.1", port))
    keys = encode_text([("InitiatorName", "iqn.2026-01.test:slow"),
                        ("TargetName", "iqn.2003-01.org.linux-iscsi.sim:t1"),
                        ("SessionType", "Normal"), ("AuthMethod", "CHAP,None")])
    t0 = time.monotonic()
    s.settimeout(TIMEOUT * 4)
    # keys dribbled one byte per TIMEOUT/4: each read is short, the whole is too long
    s.sendall(bytes(_login_header(dlength=len(keys))))
    closed = False
    for i, byte in enumerate(keys):
        time.sleep(TIMEOUT / 4)
        try:
            s.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > TIMEOUT * 3:
            break
    if not closed:
        closed, _ = _closed_within(s, TIMEOUT)
    s.close()
    assert closed
    assert time.monotonic() - t0 < TIMEOUT * 3


def test_oversized_login_segment_is_dropped_before_it_is_read(door):
    srv, port, log = door
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(bytes(_login_header(dlength=8193)))
    closed, got = _closed_within(s, TIMEOUT / 2)
    s.close()
    assert closed and got == b""  # the kernel sends no response for this one
    assert ("Login request payload exceeds default MaxRecvDataSegmentLength: 8192, protocol "
            "error.") in log.text()


def test_a_non_login_pdu_before_login(door):
    srv, port, log = door
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(bytes(_login_header(opcode=0x01)))
    closed, got = _closed_within(s, TIMEOUT / 2)
    s.close()
    assert closed and (got[36], got[37]) == (0x02, 0x00)
    assert "Received unknown opcode 0x01." in log.text()


def test_connections_logging_in_are_capped(door):
    """Four silent connections fill the portal's allowance: the fifth is closed at once
    with a `simfs:` line; a logged-in session is not counted and keeps working; when the
    silent ones time out, logins are accepted again."""
    srv, port, log = door
    good = RawInitiator(port)
    good.full_login()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", port))
    closed, got = _closed_within(extra, TIMEOUT / 2)
    extra.close()
    assert closed and got == b""
    assert any(lv == "warn" and m.startswith("simfs: iSCSI: refusing a connection from "
                                             "127.0.0.1:")
               and "4 connections are logging in on this portal (the limit is 4)" in m
               for lv, m in log.lines)
    _healthy(good, 1)
    for s in silent:
        assert _closed_within(s, TIMEOUT * 4)[0]
        s.close()
    late = RawInitiator(port)
    late.full_login()
    _healthy(late, 2)
    late.close()
    good.close()


# -- fuzzing the fields that announce a length ----------------------------------------------
CASES = int(os.environ.get("SIMFS_FUZZ_ISCSI", "60"))


@pytest.mark.parametrize("field", ["TotalAHSLength", "DataSegmentLength"])
def test_length_fields_fuzzed(door, field):
    """Random values of one length field, a random part of what it announces, then
    silence: every connection is answered or dropped within the deadline (never held),
    the number of connections logging in returns to zero, a session keeps working."""
    srv, port, log = door
    rng = random.Random(hash(field) & 0xFFFF)
    good = RawInitiator(port)
    good.full_login()
    open_socks = []
    t0 = time.monotonic()
    for n in range(CASES):
        if field == "TotalAHSLength":
            bhs = _login_header(ahs_words=rng.randrange(256), dlength=rng.choice([0, 40]))
        else:
            dlen = rng.choice([rng.randrange(1, 8193), rng.randrange(8193, 1 << 24),
                               (1 << 24) - 1])
            bhs = _login_header(dlength=dlen)
        if rng.random() < 0.5:
            bhs[0] = rng.choice([0x01, 0x03, 0x04, 0x3F])  # other opcodes, same field
        announced = bhs[4] * 4 + int.from_bytes(bhs[5:8], "big")
        body = rng.randbytes(rng.randrange(0, min(announced, 300) + 1))
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(bytes(bhs) + body)
        open_socks.append(s)
        if len(open_socks) == 3:  # stay under the cap: each one must end on its own
            for o in open_socks:
                assert _closed_within(o, TIMEOUT * 4)[0], "a connection was held"
                o.close()
            open_socks = []
        if n % 20 == 0:
            _healthy(good, n)
    for o in open_socks:
        assert _closed_within(o, TIMEOUT * 4)[0], "a connection was held"
        o.close()
    deadline = time.monotonic() + 2
    while srv._logging_in and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv._logging_in == {}
    assert time.monotonic() - t0 < CASES * TIMEOUT  # nothing waited out more than its turn
    _healthy(good, CASES)
    good.close()
