"""READ/WRITEs that arrive together run as one run (Connection._run_at_once through
TpgView.submit_many: the LUN looked up and the device checked once) and answer exactly as
when each runs alone.

Each stream is played into two connections on two trees built the same way, one whose TPG
view offers ``submit_many`` and one whose view hides it (so every command goes through
``submit`` alone), and everything an initiator or configfs could see is compared: every
byte sent, the device's and the LUN's counters, the session's counters, and the log. The
connections are the real asyncio driver around the real machine and TPG view; the
transport is a test double that keeps what is written (no socket here; the e2e tests run
the real server). A last test checks that what the reads of one loop iteration make leaves
in one write."""
from __future__ import annotations

import asyncio
import re
import struct

import pytest

from plugins.fabrics.iscsi.server_backend import TreeIscsiBackend
from simfs.iscsi import pdu as P
from simfs.iscsi.session import Connection, Session
from simfs.iscsi.text import SessionParams
from simfs.iscsi.workers import Completions, DeviceWorkers
from simfs.testing import Sim

IQN = "iqn.2003-01.org.linux-iscsi.sim:runs"
INI = "iqn.1994-05.com.example:runs"
T = f"/target/iscsi/{IQN}/tpgt_1"
BLOCKS = 2048 * 8  # rd_pages=2048


class Transport:
    def __init__(self):
        self.out = bytearray()
        self.writes: list[bytes] = []

    def get_extra_info(self, k):
        return None

    def set_write_buffer_limits(self, high):
        pass

    def set_protocol(self, p):
        pass

    def is_reading(self):
        return True

    def is_closing(self):
        return False

    def get_write_buffer_size(self):
        return 0

    def write(self, b):
        self.out += b
        self.writes.append(bytes(b))

    def close(self):
        pass


class Report:
    def __init__(self):
        self.lines = []

    def line(self, *a):
        self.lines.append(a)

    def err(self, msg):
        self.lines.append(("err", msg))

    def debug(self, msg):
        self.lines.append(("debug", msg))

    def event(self, *a, **kw):
        pass


class Alone:
    """A TPG view without submit_many: every command runs through submit by itself."""

    def __init__(self, view):
        self._view = view

    def __getattr__(self, name):
        if name == "submit_many":
            raise AttributeError(name)
        return getattr(self._view, name)


class Workers(DeviceWorkers):
    """The real device workers, counting what they were given."""

    jobs = 0

    def submit(self, *a, **kw):
        self.jobs += 1
        return super().submit(*a, **kw)


class Server:
    def __init__(self, loop):
        self.report = Report()
        self.workers = Workers()
        self.completions = Completions(loop)

    class backend:
        discovery = None

    def connection_closed(self, c):
        pass


def rw(op: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    if op in (0x28, 0x2A):
        return struct.pack(">BBIBHB", op, flags, lba, 0, blocks, 0) + bytes(6)
    return struct.pack(">BBQIBB", op, flags, lba, blocks, 0, 0)


def pdu(itt: int, cmdsn: int, cdb: bytes, edtl: int, data: bytes = b"", lun: int = 0,
        write: bool = False) -> bytes:
    flags = P.F_FINAL | (P.CMD_WRITE if write else P.CMD_READ if edtl else 0)
    bhs = P.build_scsi_cmd(flags, lun, itt, edtl, cmdsn, 0, cdb, len(data))
    return bytes(bhs) + data + P.PADDING[len(data) & 3]


def block(i: int, n: int = 4096) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(n))


def stream(name: str) -> list[list[tuple]]:
    """Batches (each arrives in one read) of (cdb, edtl, data, lun)."""
    R10, W10, R16, W16 = 0x28, 0x2A, 0x88, 0x8A
    if name == "32 reads":
        return [[(rw(R10, (i * 37) % 1000 * 8, 8), 4096, b"", 0) for i in range(32)]]
    if name == "32 writes, then the reads of what they wrote":
        return [[(rw(W10, i * 8, 8), 4096, block(i), 0) for i in range(32)],
                [(rw(R16, i * 8, 8), 4096, b"", 0) for i in range(32)]]
    if name == "odd ones among them":
        return [[(rw(R10, 0, 8), 4096, b"", 0),
                 (rw(W10, 8, 8), 4096, block(1), 0),
                 (rw(R10, 8, 8, flags=0x08), 4096, b"", 0),     # FUA
                 (rw(R10, 16, 8), 4096, b"", 0),
                 # TEST UNIT READY, on the worker; last of its batch, so that when each
                 # command after it runs does not depend on the worker thread's pace
                 (bytes(6), 0, b"", 0)],
                [(rw(R10, 16, 8), 4096, b"", 0),
                 (rw(R10, BLOCKS - 4, 8), 4096, b"", 0),        # past the end
                 (rw(R10, 24, 8), 4096, b"", 0),
                 (rw(R10, 24, 8), 2048, b"", 0),                # EDTL below the CDB's
                 (rw(R10, 32, 8), 4096, b"", 5),                # a LUN not mapped
                 (rw(R10, 32, 8), 4096, b"", 0),
                 (rw(W16, 40, 8), 4096, block(2), 0),
                 (rw(R16, 40, 8), 4096, b"", 0)]]
    if name == "more than one run's bytes":
        return [[(rw(W10, i * 128, 128), 65536, block(i, 65536), 0) for i in range(5)]
                + [(rw(R10, i * 128, 128), 65536, b"", 0) for i in range(5)]]
    raise KeyError(name)


STREAMS = ["32 reads", "32 writes, then the reads of what they wrote", "odd ones among them",
           "more than one run's bytes"]


def rig(tmp):
    """An rd_mcp LUN 0 in a demo-mode TPG, and the TPG view of initiator INI's login."""
    sim = Sim(state_dir=tmp)
    dev = sim.rd_device()
    for d in ("/target/iscsi", f"/target/iscsi/{IQN}", T, f"{T}/lun/lun_0",
              f"{T}/np/127.0.0.1:3260"):
        sim.mkdir(d)
    sim.tree.symlink(f"{T}/lun/lun_0/d", "/target/core/rd_mcp_0/rd0")
    for k, v in (("authentication", "0"), ("generate_node_acls", "1"),
                 ("demo_mode_write_protect", "0")):
        sim.write(f"{T}/attrib/{k}", v)
    sim.write(f"{T}/enable", "1")
    view = TreeIscsiBackend(sim.core).login(IQN, ("127.0.0.1", 3260), INI)
    return sim, dev, view


def deliver(c: Connection, raw: bytes) -> None:
    """What the event loop does with ``raw`` waiting in the socket: reads into what
    get_buffer offers, again while a read fills it, all in one loop iteration."""
    mv = memoryview(raw)
    while len(mv):
        buf = c.get_buffer(len(mv))
        k = min(len(buf), len(mv))
        buf[:k] = mv[:k]
        del buf
        mv = mv[k:]
        c.buffer_updated(k)


def connect(view, tpg, max_burst: int, first_burst: int, dsl: int = 262144):
    """A session of INI through ``tpg`` (``view`` or a wrapper of it), its connection in
    full feature phase (a running loop needed): (server, session, transport, connection)."""
    server = Server(asyncio.get_running_loop())
    params = SessionParams(immediate_data=True, initial_r2t=False, max_recv_dsl=dsl,
                           max_xmit_dsl=dsl, max_burst=max_burst, first_burst=first_burst)
    sess = Session(server, bytes.fromhex("23d000000001"), 1, INI, IQN, tpg, False,
                   params, 1, 64, ("127.0.0.1", 3260))
    view.session_added(sess.isid_str, sess)
    tr = Transport()
    c = Connection(server, tr, sess, 1, 0)
    c.nopin_timeout = 0
    c.start()
    return server, sess, tr, c


def play(tmp, name: str, runs: bool) -> dict:
    sim, dev, view = rig(tmp)
    tpg = view if runs else Alone(view)

    async def main():
        server, sess, tr, c = connect(view, tpg, max_burst=262144, first_burst=65536)
        itt, cmdsn = 0x10, sess.exp_cmdsn
        for batch in [[(rw(0x28, 0, 8), 4096, b"", 0)]] + stream(name):  # meets the nexus
            raw = b""
            for cdb, edtl, data, lun in batch:
                raw += pdu(itt, cmdsn, cdb, edtl, data, lun, write=bool(data))
                itt += 1
                cmdsn += 1
            sess.max_cmdsn = cmdsn + 64
            deliver(c, raw)
            for _ in range(500):
                if not c.m.tasks:
                    break
                await asyncio.sleep(0.001)
            assert not c.m.tasks
        server.workers.stop()
        return tr.out, sess, server.report.lines, server.workers.jobs

    out, sess, lines, jobs = asyncio.run(main())
    port = dev.luns[0]
    log = re.sub(r"^\[ *[0-9.]+\] ", "", sim.log.text(), flags=re.M)
    log = re.sub(r"\b(0x)?[0-9a-f]{16}\b", "PTR", log)  # the kernel's pointers differ
    seen = dict(out=bytes(out),
                counters=(dev.num_cmds, dev.read_bytes, dev.write_bytes, port.cmd_pdus,
                          port.tx_data_octets, port.rx_data_octets),
                session=(sess.cmd_pdus, sess.rsp_pdus, sess.tx_data_octets,
                         sess.rx_data_octets, sess.exp_cmdsn, sess.max_cmdsn),
                log=log.splitlines(), report=lines, worker_jobs=jobs)
    sim.close()
    return seen


@pytest.mark.parametrize("name", STREAMS)
def test_runs_answer_as_commands_run_alone(tmp_path, name):
    runs = play(tmp_path / "runs", name, True)
    alone = play(tmp_path / "alone", name, False)
    assert runs == alone
    assert runs["out"]  # something was answered
    # only what is not a READ/WRITE leaves the loop for a worker (the device was idle)
    assert runs["worker_jobs"] == (1 if name == "odd ones among them" else 0)


def test_reads_that_arrive_together_run_as_one_run(tmp_path, monkeypatch):
    calls = []
    real = TreeIscsiBackend.login

    def login(self, *a, **kw):
        view = real(self, *a, **kw)
        many = view.submit_many
        view.submit_many = lambda isid, lun, cmds: calls.append(len(cmds)) or many(
            isid, lun, cmds)
        return view
    monkeypatch.setattr(TreeIscsiBackend, "login", login)
    seen = play(tmp_path, "more than one run's bytes", True)
    # 64 KiB each: two per run (RUN_BYTES is 128 KiB), the fifth write with the first read
    assert calls == [2, 2, 2, 2, 2]
    assert seen["counters"][:3] == (11, 4096 + 5 * 65536, 5 * 65536)


def test_what_reads_that_fill_the_buffer_make_leaves_in_one_write(tmp_path):
    """Two 1 MiB WRITEs in flight, bursts of 256 KiB (MaxOutstandingR2T 1): the Data-Out
    of both first R2Ts arrives together, read in several reads that each fill what was
    offered; the two R2Ts they make leave together once the loop turns, not one each."""
    sim, _, view = rig(tmp_path)
    n = 1 << 18

    async def main():
        server, sess, tr, c = connect(view, view, max_burst=n, first_burst=n, dsl=n)
        deliver(c, pdu(0x10, 1, rw(0x28, 0, 8), 4096))          # meets the nexus
        deliver(c, pdu(0x11, 2, rw(0x2A, 0, 2048), 4 * n, block(1, n), write=True)
                + pdu(0x12, 3, rw(0x2A, 2048, 2048), 4 * n, block(2, n), write=True))
        await asyncio.sleep(0)
        r2ts = [P.Pdu(w[i:i + 48]) for w in tr.writes[1:] for i in range(0, len(w), 48)]
        assert [(p.opcode, p.itt) for p in r2ts] == [(P.OP_R2T, 0x11), (P.OP_R2T, 0x12)]
        before = len(tr.writes)
        burst = b"".join(
            bytes(P.build_data_out(True, 0, p.itt, p.u32(20), 0, 0, n, n)) + block(3, n)
            for p in r2ts)
        deliver(c, burst)
        assert len(tr.writes) == before        # nothing yet: the reads filled the buffer
        await asyncio.sleep(0)
        assert len(tr.writes) == before + 1    # both next R2Ts, in one write
        nxt = [P.Pdu(tr.writes[-1][i:i + 48]) for i in range(0, 96, 48)]
        assert [(p.opcode, p.itt, p.u32(40)) for p in nxt] == [(P.OP_R2T, 0x11, 2 * n),
                                                              (P.OP_R2T, 0x12, 2 * n)]
        assert len(tr.writes[-1]) == 96
        server.workers.stop()

    asyncio.run(main())
    sim.close()
