"""A SCSI Command run as it is parsed (ConnectionMachine.runner) answers as the general path.

The general path makes a Task, sequences it, queues an Execute action, and the driver runs
it and calls ``complete``. With a runner, a READ/WRITE(10/16) that is the last PDU received,
carries all its data and is next in CmdSN order runs at once instead. Each scenario plays
the same byte stream into two machines, one with a runner and one driven through its
actions, and compares everything an initiator or ``configfs`` could see: the bytes sent,
sequence numbers, session counters, tasks kept, log lines, and the order of the commands
the TPG ran. No socket: the machine is sans-I/O (the e2e tests run the real server)."""
from __future__ import annotations

import struct

import pytest

from simfs.iscsi import pdu as P
from simfs.iscsi.machine import ConnectionMachine, Task
from simfs.iscsi.session import Session
from simfs.iscsi.text import SessionParams
from simfs.scsi.command import DATA_IN, DATA_OUT, Result

from test_iscsi_session_machine import Log, cmd, read10, wire, write10

BS = 512


class Tpg:
    """Answers from the CDB alone, and records what it ran."""

    tpgt = 1
    target_name = "iqn.2026-12.test:t"

    def __init__(self):
        self.ran: list = []

    def luns(self):
        return [0, 1]

    def block_size(self, lun):
        return BS

    def sync_cache(self, lun):
        return True

    def submit(self, isid, lun, cdb, data_out=b"", *, data_length=None, data_direction=None):
        self.ran.append((lun, bytes(cdb), bytes(data_out), data_length, data_direction))
        op = cdb[0]
        if lun == 1:
            raise OSError("a backend bug")
        blocks = int.from_bytes(cdb[7:9] if op < 0x80 else cdb[10:14], "big")
        lba = int.from_bytes(cdb[2:6] if op < 0x80 else cdb[2:10], "big")
        if lba >= 1000:  # LBA OUT OF RANGE
            return Result(status=0x02, sense=bytes([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0,
                                                    0x21, 0]))
        if op in (0x28, 0x88):
            n = blocks * BS if lba != 500 else blocks * BS // 2  # lba 500: a short read
            return Result(data=bytes((lba + i) & 0xFF for i in range(n)))
        return Result()


class Runner:
    """What the server's Connection does (now_key/run), with a switch for "not now"."""

    def __init__(self, tpg, sess):
        self.tpg, self.sess = tpg, sess
        self.busy = False
        self.ran = 0

    def now_key(self, task: Task):
        task.block_size = BS
        return None if self.busy else ("dev", task.lun)

    def run(self, task: Task, key):
        self.ran += 1
        return self.tpg.submit(self.sess.isid_str, task.lun, task.cdb, task.data_out(),
                               data_length=task.edtl,
                               data_direction=DATA_OUT if task.write else DATA_IN)


def rig(runner: bool, **params):
    kw = dict(immediate_data=True, initial_r2t=False, max_recv_dsl=8192, max_xmit_dsl=8192,
              max_burst=16384, first_burst=8192, max_outstanding_r2t=1)
    kw.update(params)
    tpg = Tpg()
    sess = Session(None, b"\x80\0\0\0\0\1", 1, "iqn.2026-12.test:i", Tpg.target_name, tpg,
                   False, SessionParams(**kw), 1, 64, ("127.0.0.1", 3260))
    log = Log()
    m = ConnectionMachine(sess, statsn=10, cid=0, log=log)
    r = None
    if runner:
        r = m.runner = Runner(tpg, sess)
    return m, sess, log, tpg, r


def drive(m: ConnectionMachine, r) -> None:
    """The driver's part of the general path: each Execute, in order, as the session runs a
    command on the loop (block size known, exceptions answered as backend failures)."""
    for a in m.take_actions():
        a.task.block_size = BS
        try:
            res = m.sess.tpg.submit(*a.args, **a.kw)
        except Exception as e:  # noqa: BLE001
            m.failed(a.task, e)
        else:
            m.complete(a.task, res)


def seen(m, sess, log, tpg) -> dict:
    return {"out": b"".join(bytes(b) for b in m.take_output()), "statsn": m.statsn,
            "exp": sess.exp_cmdsn, "max": sess.max_cmdsn, "cmd_pdus": sess.cmd_pdus,
            "rsp_pdus": sess.rsp_pdus, "tx": sess.tx_data_octets, "rx": sess.rx_data_octets,
            "tasks": sorted(m.tasks), "ooo": sorted(m.ooo), "closing": m.closing,
            "lines": list(log.lines), "ran": list(tpg.ran)}


def read16(lba, blocks):
    return bytes([0x88, 0, *struct.pack(">Q", lba), *struct.pack(">I", blocks), 0, 0])


def write16(lba, blocks):
    return bytes([0x8A, 0, *struct.pack(">Q", lba), *struct.pack(">I", blocks), 0, 0])


def on_lun1(pdu: bytes) -> bytes:
    return pdu[:8] + bytes([0, 1, 0, 0, 0, 0, 0, 0]) + pdu[16:]


def data(n, seed=7):
    return bytes((seed + i) & 0xFF for i in range(n))


#: name -> list of feeds (each a byte string handed over at once), and rig parameters
SCENARIOS = {
    "read10": ([cmd(1, 1, read10(8, 8), 4096, read=True)], {}),
    "read16": ([cmd(1, 1, read16(8, 8), 4096, read=True)], {}),
    "write10 immediate": ([cmd(1, 1, write10(8, 8), 4096, write=True, data=data(4096))], {}),
    "write16 immediate": ([cmd(1, 1, write16(8, 8), 4096, write=True, data=data(4096))], {}),
    "write with odd length": ([cmd(1, 1, write10(8, 3), 1535, write=True, data=data(1535))],
                              {}),
    "several, one by one": ([cmd(i, i, read10(i, 1), BS, read=True) for i in range(1, 6)], {}),
    "several in one feed": ([b"".join(cmd(i, i, read10(i, 1), BS, read=True)
                                      for i in range(1, 6))], {}),
    "read cut into Data-Ins": ([cmd(1, 1, read10(0, 64), 32768, read=True)], {}),
    "read beyond MaxBurstLength": ([cmd(1, 1, read10(0, 32), 16384, read=True)],
                                   {"max_burst": 8192}),
    "read beyond MaxBurstLength in one PDU's room": (
        [cmd(1, 1, read10(0, 32), 16384, read=True)],
        {"max_burst": 8192, "max_xmit_dsl": 65536, "max_recv_dsl": 65536}),
    "edtl above the CDB": ([cmd(1, 1, read10(0, 1), 1024, read=True)], {}),
    "edtl below the CDB": ([cmd(1, 1, read10(0, 4), 1024, read=True)], {}),
    "write edtl above the CDB": ([cmd(1, 1, write10(0, 1), 1024, write=True,
                                      data=data(1024))], {}),
    "a short read": ([cmd(1, 1, read10(500, 8), 4096, read=True)], {}),
    "check condition": ([cmd(1, 1, read10(2000, 1), BS, read=True),
                         cmd(2, 2, write10(2000, 1), BS, write=True, data=data(BS))], {}),
    "backend raises": ([on_lun1(cmd(1, 1, read10(0, 1), BS, read=True))], {}),
    "cmdsn ahead, then the gap": ([cmd(2, 2, read10(2, 1), BS, read=True),
                                   cmd(1, 1, read10(1, 1), BS, read=True)], {}),
    "a NOP-Out waits for the gap": ([wire(P.build_generic(P.OP_NOOP_OUT, P.F_FINAL, 9,
                                                          w20=P.RSVD_TAG, cmdsn=2)),
                                     cmd(1, 1, read10(1, 1), BS, read=True)], {}),
    "cmdsn below the window": ([cmd(1, 1, read10(1, 1), BS, read=True),
                                cmd(2, 1, read10(1, 1), BS, read=True)], {}),
    "cmdsn above maxcmdsn": ([cmd(1, 100, read10(1, 1), BS, read=True)], {}),
    "write with R2T": ([cmd(1, 1, write10(0, 16), 8192, write=True, data=data(4096))],
                       {"first_burst": 4096}),
    "write without immediate data": ([cmd(1, 1, write10(0, 1), BS, write=True,
                                          data=data(BS))], {"immediate_data": False}),
    "immediate beyond FirstBurstLength": ([cmd(1, 1, write10(0, 8), 4096, write=True,
                                               data=data(4096))], {"first_burst": 2048}),
    "read with data attached": ([cmd(1, 1, read10(0, 1), BS, read=True, data=data(4))], {}),
    "read and write bits": ([cmd(1, 1, read10(0, 1), BS, read=True, write=True)], {}),
    "no final bit": ([cmd(1, 1, read10(0, 1), BS, read=True, final=False)], {}),
    "edtl 0": ([cmd(1, 1, read10(0, 1), 0, read=True)], {}),
    "immediate bit": ([bytes([0x41]) + cmd(1, 1, read10(0, 1), BS, read=True)[1:]], {}),
    "another opcode": ([cmd(1, 1, bytes([0x08, 0, 0, 1, 1, 0]), BS, read=True),
                        cmd(2, 2, bytes([0x12, 0, 0, 0, 36, 0]), 36, read=True)], {}),
    "reused ITT in flight": ([cmd(1, 1, write10(0, 16), 8192, write=True, data=data(4096)),
                              cmd(1, 2, read10(0, 1), BS, read=True)], {"first_burst": 4096}),
    "header digest": ([cmd(1, 1, read10(0, 1), BS, read=True)], {"header_digest": "CRC32C"}),
}


def _play(name: str, runner: bool, busy: bool = False):
    feeds, params = SCENARIOS[name]
    hd = params.get("header_digest")
    m, sess, log, tpg, r = rig(runner, **params)
    if hd:
        from simfs.iscsi import digest as D
        feeds = [f[:48] + D.digest(f[:48]) + f[48:] for f in feeds]
    if r is not None:
        r.busy = busy
    views = []
    for f in feeds:
        m.feed(f)
        drive(m, r)
        views.append(seen(m, sess, log, tpg))
    return views, (r.ran if r is not None else 0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_run_now_answers_as_the_general_path(name):
    general, _ = _play(name, runner=False)
    now, _ = _play(name, runner=True)
    assert now == general
    busy, ran = _play(name, runner=True, busy=True)
    assert busy == general and ran == 0  # the driver said "not now": the general path


@pytest.mark.parametrize("name,runs", [
    ("read10", 1), ("read16", 1), ("write10 immediate", 1), ("write16 immediate", 1),
    ("several, one by one", 5), ("several in one feed", 0), ("read cut into Data-Ins", 1),
    ("check condition", 2), ("backend raises", 1), ("edtl above the CDB", 1),
    ("cmdsn ahead, then the gap", 0), ("a NOP-Out waits for the gap", 0), ("write with R2T", 0), ("immediate bit", 0),
    ("header digest", 0), ("reused ITT in flight", 0),
])
def test_what_runs_now(name, runs):
    """The shortcut is taken where it may be (so the comparison above tests it), and only
    there: commands that arrive together keep their order through the general path, and a
    command whose data is still to come, a gap in CmdSN, digests or another task in flight
    take it too."""
    _, ran = _play(name, runner=True)
    assert ran == runs


@pytest.mark.parametrize("op", ["read", "write"])
@pytest.mark.parametrize("blocks,edtl,n", [(8, 4096, 4096), (8, 4096, 2048), (8, 8192, 4096),
                                           (16, 4096, 4096), (0, 4096, 0), (8, 4096, 0)])
def test_completion_with_a_known_block_size_answers_as_asking_the_tpg(op, blocks, edtl, n):
    """``complete`` tells a transfer that is exactly what the CDB and EDTL asked from the
    task's block size; its answer equals the residual computation that asks the TPG."""
    outs = []
    for bs in (BS, None):
        m, sess, log, tpg, _ = rig(False, max_xmit_dsl=65536, max_burst=65536)
        write = op == "write"
        cdb = (write10 if write else read10)(0, blocks) + bytes(6)
        t = Task(1, 1, 0, bytes(8), cdb, edtl, not write, write)
        t.block_size = bs
        m.tasks[1] = t
        m.complete(t, Result(data=b"" if write else data(n)))
        outs.append(seen(m, sess, log, tpg))
    assert outs[0] == outs[1]


def test_a_read_longer_than_maxburstlength_is_two_bursts_though_one_pdu_could_hold_it():
    """Data-In is cut at MaxBurstLength as well as at MaxRecvDataSegmentLength: each burst
    ends with the F bit, the status rides on the last PDU only."""
    m, sess, log, tpg, _ = rig(True, max_burst=8192, max_xmit_dsl=65536, max_recv_dsl=65536)
    m.feed(cmd(1, 1, read10(0, 32), 16384, read=True))
    raw = b"".join(bytes(b) for b in m.take_output())
    first, second = P.Pdu(raw[:48]), P.Pdu(raw[48 + 8192:96 + 8192])
    assert (first.opcode, first.dlength, first.u32(40)) == (P.OP_DATA_IN, 8192, 0)
    assert first.flags & (P.F_FINAL | P.DATAIN_STATUS) == P.F_FINAL
    assert (second.dlength, second.u32(36), second.u32(40)) == (8192, 1, 8192)
    assert second.flags & (P.F_FINAL | P.DATAIN_STATUS) == P.F_FINAL | P.DATAIN_STATUS
    assert len(raw) == 2 * 48 + 16384 and sess.tx_data_octets == 16384
