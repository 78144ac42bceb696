"""iSCSI PDU fuzzing: malformed PDUs drop that connection, never the server or others.

A logged-in session keeps doing I/O while other connections send garbage: random bytes,
BHSs with random opcodes and lengths, truncated PDUs, bad header digests, CmdSNs out of
the window, data for unknown tasks. After each, the healthy session still reads and writes.
"""
from __future__ import annotations

import os
import random
import socket
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from iscsi_fake import FakeBackend  # noqa: E402
from helpers import RawInitiator, free_port  # noqa: E402

from simfs.iscsi import IscsiServer  # noqa: E402
from simfs.iscsi import pdu as P  # noqa: E402

CASES = int(os.environ.get("SIMFS_FUZZ_ISCSI", "150"))


@pytest.fixture(scope="module")
def server():
    b = FakeBackend(luns=1)
    port = free_port()
    b.portal_list = [("127.0.0.1", port)]
    srv = IscsiServer(b)
    srv.start()
    srv.sync_portals()
    yield port
    srv.stop()
    b.close()


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 200))
    bhs = bytearray(rng.randbytes(48))
    if kind == 1:  # a plausible opcode with random fields
        bhs[0] = rng.choice([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1C, 0x3F])
    elif kind == 2:  # a huge data segment length, then nothing
        bhs[0] = 0x01
        bhs[5:8] = b"\xff\xff\xff"
    elif kind == 3:  # a truncated BHS
        return bytes(bhs[:rng.randrange(1, 48)])
    elif kind == 4:  # an AHS length beyond the PDU
        bhs[0] = 0x01
        bhs[4] = 0xFF
    else:  # a login request with garbage text
        bhs[0] = 0x43
        bhs[1] = 0x87
        bhs[4] = 0
        data = rng.randbytes(rng.randrange(0, 100))
        bhs[5:8] = len(data).to_bytes(3, "big")
        return bytes(bhs) + data + b"\0" * ((4 - len(data) % 4) % 4)
    return bytes(bhs)


def _healthy(ini: RawInitiator, n: int) -> None:
    block = struct.pack(">Q", n) * 64
    status, _, _ = ini.scsi(bytes([0x2A, 0, 0, 0, 0, 7, 0, 0, 1, 0]), write=block)
    assert status == 0
    status, data, _ = ini.scsi(bytes([0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0]), read_len=512)
    assert status == 0 and data == block


def test_garbage_never_hurts_other_sessions(server):
    rng = random.Random(0x15C5)
    good = RawInitiator(server)
    good.full_login()
    for n in range(CASES):
        s = socket.create_connection(("127.0.0.1", server), timeout=5)
        try:
            s.sendall(_garbage(rng))
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            try:
                while s.recv(4096):  # a Reject/login response or the close
                    pass
            except (socket.timeout, ConnectionError):
                pass
        finally:
            s.close()
        if n % 10 == 0:
            _healthy(good, n)
    _healthy(good, CASES)
    good.close()


def test_protocol_errors_inside_a_session(server):
    """A logged-in connection that misbehaves is dropped or rejected; the server goes on."""
    rng = random.Random(7)
    for case in range(12):
        bad = RawInitiator(server)
        bad.full_login()
        if case % 3 == 0:  # Data-Out for a task that does not exist
            bad.send(P.build_data_out(True, 0, 0xDEAD, 0x1234, bad.statsn, 0, 0, 512),
                     b"\0" * 512)
        elif case % 3 == 1:  # a CmdSN far outside the window: silently dropped
            bad.cmdsn += 1 << 30
            bad.send(P.build_scsi_cmd(P.F_FINAL, 0, 0x77, 0, bad.cmdsn, bad.statsn,
                                      bytes(6), 0))
        else:  # random bytes after login
            bad.sock.sendall(rng.randbytes(100))
        bad.close()
        probe = RawInitiator(server)
        probe.full_login()
        _healthy(probe, case)
        probe.close()
