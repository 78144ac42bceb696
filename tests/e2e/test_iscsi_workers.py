"""Commands run on a worker per device: a reset waits for what the device is doing, an
aborted command that has not started never runs, and the connection keeps reading."""
from __future__ import annotations

import os
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
from simfs.scsi import faults  # noqa: E402


@pytest.fixture
def target():
    b = FakeBackend(luns=2)
    port = free_port()
    b.portal_list = [("127.0.0.1", port)]
    srv = IscsiServer(b)
    srv.start()
    srv.sync_portals()
    yield b, port
    srv.stop()
    b.close()


def _immediate_login(ini: RawInitiator) -> None:
    """full_login with ImmediateData=Yes, so a WRITE's data rides with it."""
    base = [("InitiatorName", "iqn.2026-01.test:raw"),
            ("TargetName", "iqn.2003-01.org.linux-iscsi.sim:t1"),
            ("SessionType", "Normal"), ("AuthMethod", "None")]
    ini.login(base, 0, 1)
    rsp, _ = ini.login([("HeaderDigest", "None"), ("DataDigest", "None"),
                        ("MaxRecvDataSegmentLength", "4096"), ("ImmediateData", "Yes"),
                        ("InitialR2T", "No"), ("MaxBurstLength", "8192"),
                        ("FirstBurstLength", "4096"), ("MaxOutstandingR2T", "1"),
                        ("ErrorRecoveryLevel", "0")], 1, 3)
    assert rsp.bhs[1] & 0x83 == 0x83
    ini.exp_cmdsn = rsp.u32(28)


def test_lun_reset_waits_for_the_device_and_drops_what_did_not_start(target):
    b, port = target
    dev = b.ports[0].dev
    ini = RawInitiator(port)
    _immediate_login(ini)
    old = struct.pack(">Q", 1) * 64
    assert ini.scsi(bytes([0x2A, 0, 0, 0, 0, 9, 0, 0, 1, 0]), write=old)[0] == 0
    faults.inject(dev, "latency", 600)
    try:
        t0 = time.monotonic()
        # a write that starts (and sleeps), then one queued behind it on the same device
        ini.itt += 1
        first = ini.itt
        bhs = P.build_scsi_cmd(P.F_FINAL | P.CMD_WRITE, 0, first, 512, ini.cmdsn, ini.statsn,
                               bytes([0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0]), 512)
        ini.send(bhs, struct.pack(">Q", 2) * 64)
        ini.cmdsn += 1
        time.sleep(0.1)
        ini.itt += 1
        second = ini.itt
        bhs = P.build_scsi_cmd(P.F_FINAL | P.CMD_WRITE, 0, second, 512, ini.cmdsn,
                               ini.statsn, bytes([0x2A, 0, 0, 0, 0, 9, 0, 0, 1, 0]), 512)
        ini.send(bhs, struct.pack(">Q", 3) * 64)
        ini.cmdsn += 1
        # LOGICAL UNIT RESET (immediate): both are aborted
        tmf = P.build_generic(P.OP_TMF_REQ, P.F_FINAL | P.TMF_LOGICAL_UNIT_RESET, 0x999,
                              w20=P.RSVD_TAG, cmdsn=ini.cmdsn, exp_statsn=ini.statsn, lun=0,
                              immediate=True)
        ini.send(tmf)
        rsp = ini.recv()
        waited = time.monotonic() - t0
        # the only response: the reset's, after the running write finished on the device
        assert rsp.opcode == P.OP_TMF_RSP and rsp.itt == 0x999 and rsp.bhs[2] == 0
        assert waited >= 0.5
        ini.statsn = rsp.u32(24) + 1
    finally:
        faults.inject(dev, "clear")
    # the queued write never ran; the running one did
    status, data, _ = ini.scsi(bytes([0x28, 0, 0, 0, 0, 9, 0, 0, 1, 0]), read_len=512)
    if status == 2:  # the reset's unit attention first
        status, data, _ = ini.scsi(bytes([0x28, 0, 0, 0, 0, 9, 0, 0, 1, 0]), read_len=512)
    assert status == 0 and data == old
    status, data, _ = ini.scsi(bytes([0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0]), read_len=512)
    assert status == 0 and data == struct.pack(">Q", 2) * 64
    ini.close()


def test_the_reader_goes_on_while_a_device_sleeps(target):
    """One session, two LUNs on two devices: a READ of LUN 1 is answered while a READ of
    the slow LUN 0, sent first, still sleeps."""
    b, port = target
    ini = RawInitiator(port)
    ini.full_login()
    faults.inject(b.ports[0].dev, "latency", 800)
    try:
        t0 = time.monotonic()
        for lun, itt in ((0, 0x501), (1, 0x502)):
            bhs = P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, lun, itt, 512, ini.cmdsn,
                                   ini.statsn, bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 0)
            ini.send(bhs)
            ini.cmdsn += 1
        order = []
        while len(order) < 2:
            p = ini.recv()
            if p.opcode == P.OP_DATA_IN and p.flags & P.DATAIN_STATUS:
                order.append((p.itt, time.monotonic() - t0))
        assert [itt for itt, _ in order] == [0x502, 0x501]
        assert order[0][1] < 0.4 <= 0.7 < order[1][1]
    finally:
        faults.inject(b.ports[0].dev, "clear")
    ini.close()


def _reads(ini: RawInitiator, blocks: int, itts: range) -> None:
    """READ(10)s of ``blocks`` 512-byte blocks to LUN 0, sent in one write; waits for their
    statuses."""
    pdus = b""
    for itt in itts:
        pdus += bytes(P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, 0, itt, blocks * 512, ini.cmdsn,
                                       ini.statsn, struct.pack(">BBIBHB", 0x28, 0, 0, 0,
                                                               blocks, 0), 0))
        ini.cmdsn += 1
    ini.sock.sendall(pdus)
    done = set()
    while len(done) < len(itts):
        p = ini.recv()
        if p.opcode == P.OP_DATA_IN and p.flags & P.DATAIN_STATUS or p.opcode == P.OP_SCSI_RSP:
            done.add(p.itt)
    assert done == set(itts)


@pytest.mark.parametrize("blocks, together, on_worker", [
    (8, 4, False),     # small transfers run on the loop however many come together
    (512, 1, False),   # a large one alone: a thread hop would only add its latency
    (512, 4, True),    # large ones together: their copies go to the device's worker
])
def test_where_reads_run(target, blocks, together, on_worker):
    """A READ to an idle device runs on the event loop, except a large one (over 128 KiB)
    while other commands of the connection are in flight: that goes to the device's
    worker thread, so its copy overlaps the loop's work."""
    b, port = target
    ini = RawInitiator(port)
    ini.full_login()
    del b.threads[:]
    _reads(ini, blocks, range(0x700, 0x700 + together))
    workers = [name for op, name in b.threads if op == 0x28 and name.startswith("simfs-dev")]
    assert len([t for t in b.threads if t[0] == 0x28]) == together
    assert bool(workers) == on_worker
    ini.close()
