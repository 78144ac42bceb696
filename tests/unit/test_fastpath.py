"""The engine's READ/WRITE fast path (simfs.scsi.fastpath) changes how long a command takes,
never what it does.

Every scenario is played twice on two trees built the same way, once with the fast path and
once without it (its opcode set emptied), through the iSCSI fabric's real command entry
(TpgView.submit: the dynamic ACL, its mapping, the fabric's length and direction). Both runs
must give the same statuses, sense, data, kernel-log lines, device and port counters and
unit attention queues. A last test checks that a plain READ/WRITE does take the fast path.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from plugins.fabrics.iscsi.server_backend import TreeIscsiBackend
from simfs.scsi import cdbs, engine as engine_mod, fastpath, faults, state
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_OUT
from simfs.testing import Sim

IQN = "iqn.2003-01.org.linux-iscsi.sim:fast"
T = f"/target/iscsi/{IQN}/tpgt_1"
DEV = "/target/core/rd_mcp_0/rd0"
A, B = "iqn.1994-05.com.example:a", "iqn.1994-05.com.example:b"
ISID_A, ISID_B = "23d000000001", "23d000000002"
BLOCKS = 2048 * 8  # rd_pages=2048: 8 MiB of 512-byte blocks


def rw10(op: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, blocks, 0) + bytes(6)


def rw16(op: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, blocks, 0, 0)


class Rig:
    """An rd_mcp LUN 0 in a demo-mode iSCSI TPG; initiators A and B logged in."""

    def __init__(self, tmp: Path, write_protect: bool = False):
        self.sim = sim = Sim(state_dir=tmp)
        self.dev = sim.rd_device()
        sim.mkdir("/target/iscsi")
        sim.mkdir(f"/target/iscsi/{IQN}")
        sim.mkdir(T)
        sim.mkdir(f"{T}/lun/lun_0")
        sim.tree.symlink(f"{T}/lun/lun_0/d", DEV)
        sim.mkdir(f"{T}/np/127.0.0.1:3260")
        for k, v in (("authentication", "0"), ("generate_node_acls", "1"),
                     ("cache_dynamic_acls", "1"),
                     ("demo_mode_write_protect", "1" if write_protect else "0")):
            sim.write(f"{T}/attrib/{k}", v)
        sim.write(f"{T}/enable", "1")
        backend = TreeIscsiBackend(sim.core)
        self.views = {}
        for ini, isid in ((A, ISID_A), (B, ISID_B)):
            v = backend.login(IQN, ("127.0.0.1", 3260), ini)
            v.session_added(isid)
            self.views[ini] = (v, isid)

    def cmd(self, ini: str, cdb: bytes, data: bytes = b"", edtl=None, direction=None):
        v, isid = self.views[ini]
        if edtl is None:
            edtl = len(data) if data else 4096
        if direction is None:
            direction = DATA_OUT if data else DATA_IN
        return v.submit(isid, 0, cdb, data, data_length=edtl, data_direction=direction)

    def observe(self) -> dict:
        """Everything a command may change, as plain values."""
        dev = self.dev
        st = state.peek(dev)
        port = dev.luns[0]
        log = re.sub(r"^\[ *[0-9.]+\] ", "", self.sim.log.text(), flags=re.M)
        log = re.sub(r"\b(0x)?[0-9a-f]{16}\b", "PTR", log)
        tpg = self.views[A][0].tpg
        uas = {acl.name: list(acl.deves[0].ua_list) for acl in tpg.acls.values()
               if 0 in acl.deves}
        return dict(counters=(dev.num_cmds, dev.read_bytes, dev.write_bytes, port.cmd_pdus,
                              port.tx_data_octets, port.rx_data_octets),
                    uas=uas, nexuses=sorted(k[:2] for k in st.nexuses) if st else None,
                    log=log.splitlines())


def _scenario_plain(r: Rig) -> None:
    pass


def _scenario_ua(r: Rig) -> None:
    # B resets the LUN: A gets 29h/03h (BUS DEVICE RESET FUNCTION OCCURRED) queued
    v, isid = r.views[B]
    v.task_management(isid, 5, 0, 0)


def _scenario_reservation(r: Rig) -> None:
    for ini, key in ((A, 0xA), (B, 0xB)):
        cdb, params = cdbs.pr_out(0x00, sa_key=key)       # REGISTER
        assert r.cmd(ini, cdb, params).status == S.GOOD
    cdb, params = cdbs.pr_out(0x01, key=0xB, pr_type=1)    # B: RESERVE, Write Exclusive
    assert r.cmd(B, cdb, params).status == S.GOOD


def _scenario_registrants_only(r: Rig) -> None:
    cdb, params = cdbs.pr_out(0x00, sa_key=0xB)
    assert r.cmd(B, cdb, params).status == S.GOOD
    cdb, params = cdbs.pr_out(0x01, key=0xB, pr_type=6)    # Exclusive Access, Registrants Only
    assert r.cmd(B, cdb, params).status == S.GOOD


def _scenario_spc2(r: Rig) -> None:
    assert r.cmd(B, bytes([S.RESERVE, 0, 0, 0, 0, 0]), edtl=0,
                 direction="none").status == S.GOOD


def _alua(state_no: int):
    def setup(r: Rig) -> None:
        gp = f"{DEV}/alua/default_tg_pt_gp"
        r.sim.write(f"{gp}/alua_access_type", "3")
        r.sim.write(f"{gp}/alua_access_state", str(state_no))
    return setup


def _scenario_offline_port(r: Rig) -> None:
    r.sim.write(f"{T}/lun/lun_0/alua_tg_pt_offline", "1")


def _fault(kind: str):
    def setup(r: Rig) -> None:
        faults.inject(r.dev, kind, 0 if kind == "latency" else None)
    return setup


def _scenario_fault_cleared(r: Rig) -> None:
    faults.inject(r.dev, "eio-read")
    faults.inject(r.dev, "clear")


def _scenario_write_cache(r: Rig) -> None:
    r.sim.write(f"{DEV}/attrib/emulate_write_cache", "1")


SCENARIOS = {
    "plain": _scenario_plain,
    "unit attention": _scenario_ua,
    "write exclusive by another": _scenario_reservation,
    "exclusive access, registrants only": _scenario_registrants_only,
    "SPC-2 reservation": _scenario_spc2,
    "ALUA active/non-optimized": _alua(1),
    "ALUA standby": _alua(2),
    "ALUA unavailable": _alua(3),
    "ALUA transitioning": _alua(15),
    "port offline": _scenario_offline_port,
    "fault eio-read": _fault("eio-read"),
    "fault eio-write": _fault("eio-write"),
    "fault offline": _fault("offline"),
    "fault latency 0": _fault("latency"),
    "fault cleared": _scenario_fault_cleared,
    "write cache on (FUA allowed)": _scenario_write_cache,
}

DATA = bytes(range(256)) * 16  # 4096 bytes


def steps(setup) -> list:
    """The commands every scenario runs, as (initiator, cdb, data, edtl, direction): a
    first READ from each initiator (the full pipeline meets the nexus), the scenario's
    setup (a callable), then the cases, mostly from A."""
    R10, W10, R16, W16 = S.READ_10, S.WRITE_10, S.READ_16, S.WRITE_16

    def c(ini, cdb, data=b"", edtl=None, direction=None):
        return ini, cdb, data, edtl, direction
    return [
        c(A, rw10(R10, 0, 8)),
        c(B, rw10(R10, 0, 8)),
        setup,
        c(A, rw10(W10, 8, 8), DATA),
        c(A, rw10(R10, 8, 8)),
        c(A, rw16(W16, 16, 8), DATA[::-1]),
        c(A, rw16(R16, 16, 8)),
        c(A, rw10(R10, 8, 8, flags=0x08)),              # FUA
        c(A, rw10(W10, 8, 8, flags=0x10), DATA),        # DPO
        c(A, rw10(R10, 8, 8, flags=0x20)),              # RDPROTECT 1
        c(A, rw10(R10, BLOCKS - 4, 8)),                 # past the end
        c(A, rw16(R16, (1 << 64) - 2, 8)),              # LBA wraps
        c(A, rw10(R10, 0, 0), edtl=0),                  # no blocks
        c(A, rw10(R10, 0, 8), edtl=2048),               # EDTL below the CDB's length
        c(A, rw10(R10, 0, 4), edtl=4096),               # EDTL above it
        c(A, rw10(W10, 0, 8), DATA[:2048], edtl=2048),  # a write's data short of the CDB
        c(A, rw10(W10, 0, 4), DATA, edtl=4096),         # longer than the CDB
        c(A, rw10(R10, 0, 8), direction=DATA_OUT, edtl=4096),
        c(A, rw10(R10, 24, 8)),
        c(A, rw10(W10, 40, 8), DATA),
        c(A, rw16(R16, 40, 8)),
        c(A, bytes([S.TEST_UNIT_READY, 0, 0, 0, 0, 0]), edtl=0, direction="none"),
        c(A, rw10(R10, 40, 8)),
        c(B, rw10(W10, 32, 8), DATA),
        c(B, rw10(R10, 32, 8)),
        c(A, rw10(R10, 32, 8)),
    ]


def commands(r: Rig, setup, runs: bool = False) -> list:
    """Play :func:`steps`: one command at a time through TpgView.submit, or (``runs``) each
    initiator's consecutive commands together through TpgView.submit_many."""
    out = []
    group: list = []

    def flush():
        if not group:
            return
        ini = group[0][0]
        v, isid = r.views[ini]
        cmds = []
        for _, cdb, data, edtl, direction in group:
            if edtl is None:
                edtl = len(data) if data else 4096
            if direction is None:
                direction = DATA_OUT if data else DATA_IN
            cmds.append((cdb, data, edtl, direction))
        for res in v.submit_many(isid, 0, cmds):
            out.append((res.status, bytes(res.sense), bytes(res.data)))
        group.clear()

    for step in steps(setup):
        if callable(step):
            flush()
            step(r)
        elif runs:
            if group and group[0][0] != step[0]:
                flush()
            group.append(step)
        else:
            ini, cdb, data, edtl, direction = step
            res = r.cmd(ini, cdb, data, edtl=edtl, direction=direction)
            out.append((res.status, bytes(res.sense), bytes(res.data)))
    flush()
    return out


def _play(tmp: Path, setup, fast: bool, monkeypatch, runs: bool = False, **rig_kw) -> tuple:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(fastpath, "OPCODES", frozenset())
        r = Rig(tmp, **rig_kw)
        results = commands(r, setup, runs)
        seen = r.observe()
        r.sim.close()
    return results, seen


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fast_path_answers_as_the_full_pipeline(tmp_path, monkeypatch, name):
    setup = SCENARIOS[name]
    fast = _play(tmp_path / "fast", setup, True, monkeypatch)
    full = _play(tmp_path / "full", setup, False, monkeypatch)
    assert fast[0] == full[0]
    assert fast[1] == full[1]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_runs_answer_as_commands_one_at_a_time(tmp_path, monkeypatch, name):
    """ScsiEngine.submit_many (a run checked once under one lock) against submit, one
    command after the other, both with the fast path."""
    setup = SCENARIOS[name]
    runs = _play(tmp_path / "runs", setup, True, monkeypatch, runs=True)
    alone = _play(tmp_path / "alone", setup, True, monkeypatch)
    assert runs[0] == alone[0]
    assert runs[1] == alone[1]


def test_runs_answer_as_commands_one_at_a_time_on_a_read_only_mapping(tmp_path, monkeypatch):
    runs = _play(tmp_path / "runs", _scenario_plain, True, monkeypatch, runs=True,
                 write_protect=True)
    alone = _play(tmp_path / "alone", _scenario_plain, True, monkeypatch, write_protect=True)
    assert runs == alone


def test_fast_path_answers_as_the_full_pipeline_on_a_read_only_mapping(tmp_path, monkeypatch):
    fast = _play(tmp_path / "fast", _scenario_plain, True, monkeypatch, write_protect=True)
    full = _play(tmp_path / "full", _scenario_plain, False, monkeypatch, write_protect=True)
    assert fast == full
    # the writes were refused (DATA PROTECT, WRITE PROTECTED), the reads were not
    statuses = [s for s, _, _ in fast[0]]
    assert statuses[2] == S.CHECK_CONDITION and statuses[3] == S.GOOD


def test_plain_reads_and_writes_take_the_fast_path(tmp_path, monkeypatch):
    r = Rig(tmp_path)
    full = []
    real = engine_mod.ScsiEngine._submit
    monkeypatch.setattr(engine_mod.ScsiEngine, "_submit",
                        lambda self, *a, **kw: full.append(a[2][0]) or real(self, *a, **kw))
    assert r.cmd(A, rw10(S.READ_10, 0, 8)).status == S.GOOD   # first: meets the nexus
    assert full == [S.READ_10]
    assert r.cmd(A, rw10(S.WRITE_10, 0, 8), DATA).status == S.GOOD
    res = r.cmd(A, rw16(S.READ_16, 0, 8))
    assert res.status == S.GOOD and res.data == DATA
    assert r.cmd(A, rw10(S.READ_10, 0, 8, flags=0x08)).status == S.CHECK_CONDITION  # FUA
    assert full == [S.READ_10, S.READ_10]
    # every command that reached the LUN counts in the device by its expected length
    # (transport_lookup_cmd_lun), the read refused for its FUA bit too; the LUN's in_cmds
    # counts the CDBs that parsed, its octets the transfers that ended GOOD
    assert r.dev.num_cmds == 4 and r.dev.read_bytes == 12288 and r.dev.write_bytes == 4096
    port = r.dev.luns[0]
    assert (port.cmd_pdus, port.tx_data_octets, port.rx_data_octets) == (3, 8192, 4096)
    r.sim.close()


def test_a_run_stops_at_the_first_command_the_fast_path_cannot_take(tmp_path, monkeypatch):
    r = Rig(tmp_path)
    lengths = []
    real = fastpath.submit_run
    monkeypatch.setattr(fastpath, "submit_run",
                        lambda *a, **kw: (lambda out: lengths.append(len(out)) or out)(
                            real(*a, **kw)))
    commands(r, _scenario_plain, runs=True)
    # A: the first READ meets the nexus (full); B the same; then A's 23 commands: four
    # plain ones, the eleven refused or odd ones each alone (each after a try that ran
    # nothing), three plain ones, TEST UNIT READY alone, one; then B's two, A's one
    assert lengths == [0, 0, 4] + [0] * 11 + [3, 0, 1, 2, 1]
    r.sim.close()
