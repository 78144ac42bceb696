"""ALUA in the command path: access-state filtering, REPORT / SET TARGET PORT GROUPS,
unit attentions after transitions, LU groups, metadata files and the lba_map.

Kernel reference: drivers/target/target_core_alua.c (target_alua_state_check,
core_alua_state_{standby,unavailable,transition,lba_dependent},
target_emulate_report_target_port_groups, target_emulate_set_target_port_groups,
core_alua_check_transition, core_alua_do_port_transition, core_alua_queue_state_change_ua,
core_alua_set_tg_pt_secondary_state) and SPC-4 6.36 / 6.45 (RTPG / STPG parameter data).
"""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from simfs.scsi import alua
from simfs.scsi import status as S
from simfs.scsi.command import Command
from simfs.testing import Sim

NR, IR, UA = S.NOT_READY, S.ILLEGAL_REQUEST, S.UNIT_ATTENTION
STANDBY_SENSE = (NR, 0x04, 0x0B)
UNAVAIL_SENSE = (NR, 0x04, 0x0C)
TRANS_SENSE = (NR, 0x04, 0x0A)
OFFLINE_SENSE = (NR, 0x04, 0x12)
INVALID_CDB = (IR, 0x24, 0x00)
INVALID_PARAM = (IR, 0x26, 0x00)
INVALID_OPCODE = (IR, 0x20, 0x00)
AASC = (UA, 0x2A, 0x06)

BASE = "/target/core/rd_mcp_0/rd0"

# -- CDBs --------------------------------------------------------------------------------------
TUR = bytes(6)
INQUIRY = bytes([S.INQUIRY, 0, 0, 0, 96, 0])
REPORT_LUNS = struct.pack(">BBBxxxIBB", S.REPORT_LUNS, 0, 0, 4096, 0, 0)
READ_CAP10 = bytes([S.READ_CAPACITY]) + bytes(9)
READ_CAP16 = struct.pack(">BBQIBB", S.SERVICE_ACTION_IN_16, S.SAI_READ_CAPACITY_16, 0, 32, 0, 0)
MODE_SENSE6 = bytes([S.MODE_SENSE, 0x08, 0x3F, 0, 0xFF, 0])
MODE_SENSE10 = struct.pack(">BBBBxxxHB", S.MODE_SENSE_10, 0x08, 0x3F, 0, 0xFF, 0)
REQUEST_SENSE = bytes([S.REQUEST_SENSE, 0, 0, 0, 18, 0])
PR_IN = struct.pack(">BBxxxxxHB", S.PERSISTENT_RESERVE_IN, 0, 8192, 0)


def read10(lba: int, n: int) -> bytes:
    return struct.pack(">BBIBHB", S.READ_10, 0, lba, 0, n, 0)


def write10(lba: int, n: int) -> bytes:
    return struct.pack(">BBIBHB", S.WRITE_10, 0, lba, 0, n, 0)


def rtpg(alloc: int = 4096, ext: bool = False) -> bytes:
    sa = S.MI_REPORT_TARGET_PGS | (0x20 if ext else 0)
    return struct.pack(">BBxxxxIxx", S.MAINTENANCE_IN, sa, alloc)


def stpg(param_len: int) -> bytes:
    return struct.pack(">BBxxxxIxx", S.MAINTENANCE_OUT, S.MO_SET_TARGET_PGS, param_len)


def stpg_data(*descs: tuple[int, int]) -> bytes:
    return bytes(4) + b"".join(struct.pack(">BxH", st, ident) for st, ident in descs)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def sleeps(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(alua, "sleep", calls.append)
    return calls


class Rig:
    """One rd device, two target port groups (default id 0, gp_b id 2), two ports."""

    def __init__(self, tmp: Path):
        self.sim = Sim(state_dir=tmp)
        self.dev = self.sim.rd_device()
        self.sim.mkdir(f"{BASE}/alua/gp_b")
        self.sim.write(f"{BASE}/alua/gp_b/tg_pt_gp_id", "2")
        self.gp_a = self.dev.default_tg_pt_gp
        self.gp_b = next(g for g in self.dev.tg_pt_gps if g.name == "gp_b")
        self.p1 = self.sim.port(self.dev, wwn="iqn.2003-01.org.linux-iscsi.sim:t1", tpgt=1)
        self.p2 = self.sim.port(self.dev, wwn="iqn.2003-01.org.linux-iscsi.sim:t1", tpgt=2)
        alua.set_port_group(self.p2, self.gp_b)
        self.a = self.sim.nexus("iqn.1994-05.com.redhat:a", self.p1)
        self.b = self.sim.nexus("iqn.1994-05.com.redhat:b", self.p1)
        self.c = self.sim.nexus("iqn.1994-05.com.redhat:c", self.p2)
        self.a2 = self.sim.nexus("iqn.1994-05.com.redhat:a", self.p2)

    def submit(self, nexus, cdb, data=b""):
        return self.sim.engine.submit(nexus, self.dev, cdb, data)

    def set_state(self, gp, state: int) -> None:
        self.sim.write(f"{BASE}/alua/{gp.name}/alua_access_state", str(state))

    def read(self, gp, attr: str) -> str:
        return self.sim.read(f"{BASE}/alua/{gp.name}/{attr}")

    def pending(self, nexus):
        return self.sim.engine.unit_attentions(self.dev).pending(nexus.key())

    def check(self, nexus, cdb, lba=None, nblocks=0):
        """state_check alone, as the engine runs it after parsing; returns the sense or None."""
        cmd = Command(nexus=nexus, dev=self.dev, cdb=cdb, lba=lba, nblocks=nblocks)
        try:
            alua.state_check(cmd)
        except alua.SenseError as e:
            return (e.key, e.asc, e.ascq)
        return None

    def touch(self, *nexuses):
        """Let each nexus reach the device (the engine records it in state_check)."""
        for n in nexuses:
            self.check(n, INQUIRY)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.sim.close()


def supported(rig: Rig, cdb: bytes, data: bytes = b"") -> bool:
    """False while spc.py/sbc.py do not implement ``cdb`` yet (its tests then skip)."""
    probe = rig.sim.nexus("iqn.probe", rig.p1)
    saved = rig.gp_a.access_state
    rig.gp_a.access_state = alua.AO
    try:
        res = rig.submit(probe, cdb, data)
    finally:
        rig.gp_a.access_state = saved
        alua.forget_nexus(probe, rig.dev)
    return res.sense_tuple() != INVALID_OPCODE


# -- per-state command filtering (state_check, as the engine calls it) ---------------------------
ALLOWED = {
    # state: set of CDB names allowed
    alua.STANDBY: {"INQUIRY", "REPORT_LUNS", "READ_CAP10", "READ_CAP16", "MODE_SENSE6", "RTPG",
                   "STPG", "REQUEST_SENSE", "PR_IN"},
    alua.UNAVAILABLE: {"INQUIRY", "REPORT_LUNS", "RTPG", "STPG", "REQUEST_SENSE"},
    alua.TRANSITION: {"INQUIRY", "REPORT_LUNS", "RTPG", "REQUEST_SENSE"},
}
CDBS = {"TUR": TUR, "INQUIRY": INQUIRY, "REPORT_LUNS": REPORT_LUNS, "READ_CAP10": READ_CAP10,
        "READ_CAP16": READ_CAP16, "MODE_SENSE6": MODE_SENSE6, "MODE_SENSE10": MODE_SENSE10,
        "READ10": read10(0, 1), "WRITE10": write10(0, 1), "RTPG": rtpg(), "STPG": stpg(8),
        "REQUEST_SENSE": REQUEST_SENSE, "PR_IN": PR_IN}
REFUSAL = {alua.STANDBY: STANDBY_SENSE, alua.UNAVAILABLE: UNAVAIL_SENSE,
           alua.TRANSITION: TRANS_SENSE}


@pytest.mark.parametrize("state", [alua.STANDBY, alua.UNAVAILABLE, alua.TRANSITION])
def test_state_filters_commands(rig, state):
    rig.set_state(rig.gp_a, state)
    assert rig.read(rig.gp_a, "alua_access_state") == f"{state}\n"
    for name, cdb in CDBS.items():
        got = rig.check(rig.a, cdb)
        want = None if name in ALLOWED[state] else REFUSAL[state]
        assert got == want, (name, got)
    # the other group's port is unaffected
    assert rig.check(rig.c, read10(0, 1)) is None


def test_maintenance_out_byte1_compared_whole(rig):
    """core_alua_state_standby compares MAINTENANCE OUT's byte 1 whole; IN masks 0x1f."""
    rig.set_state(rig.gp_a, alua.STANDBY)
    assert rig.check(rig.a, bytes([S.MAINTENANCE_OUT, 0x2A]) + bytes(10)) == STANDBY_SENSE
    assert rig.check(rig.a, bytes([S.MAINTENANCE_IN, 0x2A]) + bytes(10)) is None
    assert rig.check(rig.a, bytes([S.MAINTENANCE_IN, 0x0C]) + bytes(10)) == STANDBY_SENSE


def test_active_states_allow_everything(rig, sleeps):
    for state in (alua.AO, alua.ANO):
        rig.set_state(rig.gp_a, state)
        for name, cdb in CDBS.items():
            assert rig.check(rig.a, cdb) is None, name
    # ANO: the delay is recorded (SCF_ALUA_NON_OPTIMIZED), but a modern kernel checks it in
    # target_submit() before the ALUA check runs, so nothing sleeps.
    cmd = Command(nexus=rig.a, dev=rig.dev, cdb=TUR)
    alua.state_check(cmd)
    assert cmd.ctx["alua_nonop_delay"] == 100
    assert sleeps == []


def test_ano_delay_when_enabled(rig, sleeps, monkeypatch):
    monkeypatch.setattr(alua, "NONOP_DELAY_SLEEPS", True)
    rig.sim.write(f"{BASE}/alua/default_tg_pt_gp/nonop_delay_msecs", "250")
    rig.set_state(rig.gp_a, alua.ANO)
    assert rig.check(rig.a, read10(0, 1)) is None
    assert sleeps == [0.25]


def test_primary_offline_is_invalid_cdb_field(rig):
    rig.set_state(rig.gp_a, alua.OFFLINE)
    assert rig.read(rig.gp_a, "alua_access_state") == "14\n"
    assert rig.check(rig.a, INQUIRY) == INVALID_CDB
    assert rig.check(rig.a, TUR) == INVALID_CDB
    assert "Unknown ALUA access state: 0x0e" in rig.sim.log.text()


def test_secondary_offline_blocks_everything(rig):
    rig.p1.offline = True
    for name, cdb in CDBS.items():
        assert rig.check(rig.a, cdb) == OFFLINE_SENSE, name
    assert rig.check(rig.c, INQUIRY) is None


def test_internal_and_passthrough_devices_skip(rig):
    lun0 = rig.sim.core.lun0_dev
    rig.gp_a.access_state = alua.STANDBY
    port = alua.TargetPort(tg_pt_gp=rig.gp_a, offline=True)
    cmd = Command(nexus=rig.sim.nexus("iqn.x", port), dev=lun0, cdb=read10(0, 1))
    alua.state_check(cmd)  # internal HBA: no ALUA at all


def test_sense_bytes_through_engine(rig):
    """RTPG is allowed in Standby, STPG is not in Transitioning: real sense bytes."""
    rig.set_state(rig.gp_a, alua.TRANSITION)
    res = rig.submit(rig.a, rtpg())
    assert res.ok
    res = rig.submit(rig.a, stpg(8), stpg_data((alua.AO, 0)))
    assert res.status == S.CHECK_CONDITION
    assert res.sense[0] == 0x70 and res.sense[2] == NR and res.sense[7] == 0x0A
    assert (res.sense[12], res.sense[13]) == (0x04, 0x0A)
    out = subprocess.run(["sg_decode_sense", res.sense.hex(" ")], capture_output=True, text=True)
    if out.returncode == 0:
        assert "Not Ready" in out.stdout and "asymmetric access state transition" in out.stdout


@pytest.mark.parametrize("name", ["TUR", "INQUIRY", "READ10", "WRITE10", "READ_CAP10",
                                  "REPORT_LUNS"])
def test_engine_commands_per_state(rig, name):
    cdb = CDBS[name]
    data = bytes(512) if name == "WRITE10" else b""
    if not supported(rig, cdb, data):
        pytest.skip(f"{name} not implemented by spc.py/sbc.py yet")
    for state in (alua.AO, alua.ANO, alua.STANDBY, alua.UNAVAILABLE, alua.TRANSITION):
        rig.set_state(rig.gp_a, state)
        rig.sim.engine.unit_attentions(rig.dev).drop(rig.a.key())
        res = rig.submit(rig.a, cdb, data)
        if state in (alua.AO, alua.ANO) or name in ALLOWED[state]:
            assert res.ok, (state, res.sense_tuple())
        else:
            assert res.sense_tuple() == REFUSAL[state], state


# -- REPORT TARGET PORT GROUPS -----------------------------------------------------------------
def test_rtpg_bytes(rig):
    rig.sim.write(f"{BASE}/alua/gp_b/preferred", "1")
    rig.set_state(rig.gp_b, alua.STANDBY)
    res = rig.submit(rig.a, rtpg(4096))
    assert res.ok
    d = res.data
    assert len(d) == 4 + 12 + 12
    assert struct.unpack(">I", d[0:4])[0] == 24          # RETURN DATA LENGTH: descriptors only
    a = d[4:16]
    assert a[0] == 0x00                                   # PREF=0, Active/Optimized
    assert a[1] == 0xCF                                   # T O U S AN AO (no LBD)
    assert a[2:4] == b"\x00\x00"                          # default_tg_pt_gp id 0
    assert a[4] == 0 and a[5] == 0 and a[6] == 0          # reserved, status None, vendor
    assert a[7] == 1                                      # target port count
    assert a[8:12] == b"\x00\x00\x00\x01"                 # RTPI 1
    b = d[16:28]
    assert b[0] == 0x80 | alua.STANDBY                    # PREF bit + Standby
    assert b[1] == 0xCF
    assert b[2:4] == b"\x00\x02"
    assert b[5] == 2                                      # Altered by Implicit ALUA
    assert b[7] == 1
    assert b[8:12] == b"\x00\x00\x00\x02"


def test_rtpg_two_ports_one_group_and_empty_groups(rig):
    alua.set_port_group(rig.p2, rig.gp_a)              # gp_b now has no member: skipped
    rig.sim.mkdir(f"{BASE}/alua/no_id")                 # a group without id is never listed
    d = rig.submit(rig.a, rtpg()).data
    assert struct.unpack(">I", d[:4])[0] == 16
    assert d[4 + 7] == 2
    assert d[12:20] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
    assert len(d) == 20


def test_rtpg_extended_header(rig):
    rig.sim.write(f"{BASE}/alua/default_tg_pt_gp/implicit_trans_secs", "17")
    rig.sim.write(f"{BASE}/alua/gp_b/implicit_trans_secs", "99")
    d = rig.submit(rig.a, rtpg(4096, ext=True)).data
    assert struct.unpack(">I", d[:4])[0] == 24
    assert d[4] == 0x10 and d[5] == 17 and d[6:8] == b"\0\0"
    assert d[8 + 2:8 + 4] == b"\x00\x00" and d[20 + 2:20 + 4] == b"\x00\x02"
    assert rig.submit(rig.c, rtpg(4096, ext=True)).data[5] == 99  # per receiving port's group


def test_rtpg_extended_header_sends_return_data_length_plus_4(rig):
    # target_complete_cmd_with_length(rd_len + 4): the extended header's 4 bytes come off
    # the end, here the last port's RTPI
    d = rig.submit(rig.a, rtpg(4096, ext=True)).data
    assert struct.unpack(">I", d[:4])[0] == 24 and len(d) == 28
    assert rig.submit(rig.a, rtpg(4096)).data[:4] == b"\x00\x00\x00\x18"
    assert len(rig.submit(rig.a, rtpg(4096)).data) == 28


def test_rtpg_allocation_length(rig):
    assert rig.submit(rig.a, rtpg(3)).sense_tuple() == INVALID_CDB
    assert rig.submit(rig.a, rtpg(7, ext=True)).sense_tuple() == INVALID_CDB
    assert rig.submit(rig.a, rtpg(4)).data == b"\x00\x00\x00\x18"
    # a descriptor that does not fit is left out whole, still counted in the length
    d = rig.submit(rig.a, rtpg(4 + 12 + 11)).data
    assert d[:4] == b"\x00\x00\x00\x18" and len(d) == 16 and d[4 + 8:4 + 12] == b"\0\0\0\1"
    # a later descriptor that fits is packed where the skipped one would have gone
    alua.set_port_group(rig.p2, rig.gp_a)
    p3 = rig.sim.port(rig.dev, tpgt=3)
    alua.set_port_group(p3, rig.gp_b)
    d = rig.submit(rig.a, rtpg(4 + 12)).data
    assert d[:4] == struct.pack(">I", 16 + 12) and d[4 + 2:4 + 4] == b"\x00\x02"
    assert d[4 + 8:4 + 12] == b"\0\0\0\3"


# -- SET TARGET PORT GROUPS --------------------------------------------------------------------
def test_stpg_primary_transition(rig):
    res = rig.submit(rig.a, stpg(8), stpg_data((alua.STANDBY, 2)))
    assert res.ok, res.sense_tuple()
    assert rig.gp_b.access_state == alua.STANDBY
    assert rig.read(rig.gp_b, "alua_access_state") == "2\n"
    assert rig.read(rig.gp_b, "alua_access_status") == "Altered by Explicit STPG\n"
    assert rig.submit(rig.a, rtpg()).data[16 + 5] == 1
    log = rig.sim.log.text()
    assert ("Successful explicit ALUA transition TG PT Group: gp_b ID: 2 from primary access "
            "state Active/Optimized to Standby") in log
    # two descriptors in one list
    res = rig.submit(rig.a, stpg(12), stpg_data((alua.ANO, 0), (alua.UNAVAILABLE, 2)))
    assert res.ok
    assert (rig.gp_a.access_state, rig.gp_b.access_state) == (alua.ANO, alua.UNAVAILABLE)


def test_stpg_secondary_offline_by_rtpi(rig):
    res = rig.submit(rig.a, stpg(8), stpg_data((alua.OFFLINE, 2)))
    assert res.ok
    assert rig.p2.offline and not rig.p1.offline
    assert rig.p2.secondary_status == 1
    assert rig.gp_b.access_state == alua.AO
    assert rig.check(rig.c, INQUIRY) == OFFLINE_SENSE
    assert ("Successful explicit ALUA transition TG PT Group: gp_b ID: 2 to secondary access "
            "state: OFFLINE") in rig.sim.log.text()


def test_stpg_secondary_metadata(rig):
    rig.p2.secondary_write_md = 1
    path = (Path(rig.sim.core.dbroot) / "alua" / "iSCSI" /
            "iqn.2003-01.org.linux-iscsi.sim:t1+2" / "lun_0")
    # the kernel never creates the directory: the write fails, the transition does not
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.OFFLINE, 2))).ok
    assert f"filp_open({path}) for ALUA metadata failed" in rig.sim.log.text()
    assert rig.p2.offline
    path.parent.mkdir(parents=True)
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.OFFLINE, 2))).ok
    assert path.read_text() == "alua_tg_pt_offline=1\nalua_tg_pt_status=0x01\n"


@pytest.mark.parametrize("data, want", [
    (stpg_data((0x5, 0)), INVALID_PARAM),                 # unknown state
    (stpg_data((alua.TRANSITION, 0)), INVALID_PARAM),     # never explicitly
    (stpg_data((alua.LBA_DEPENDENT, 0)), INVALID_PARAM),  # LBD not supported by default
    (stpg_data((alua.STANDBY, 7)), INVALID_PARAM),        # no such group id
    (stpg_data((alua.OFFLINE, 9)), INVALID_PARAM),        # no such RTPI
    (bytes(3), INVALID_PARAM),                            # list shorter than its header
])
def test_stpg_errors(rig, data, want):
    res = rig.submit(rig.a, stpg(len(data)), data)
    assert res.sense_tuple() == want
    assert (rig.gp_a.access_state, rig.gp_b.access_state) == (alua.AO, alua.AO)
    assert not rig.p1.offline and not rig.p2.offline


def test_stpg_parameter_list_longer_than_data(rig):
    res = rig.submit(rig.a, stpg(16), stpg_data((alua.STANDBY, 2)))
    assert res.sense_tuple() == INVALID_CDB
    assert rig.gp_b.access_state == alua.AO


def test_stpg_explicit_disabled(rig):
    rig.sim.write(f"{BASE}/alua/default_tg_pt_gp/alua_access_type", "1")
    res = rig.submit(rig.a, stpg(8), stpg_data((alua.STANDBY, 2)))
    assert res.sense_tuple() == INVALID_OPCODE
    assert rig.gp_b.access_state == alua.AO
    assert ("Unable to process SET_TARGET_PORT_GROUPS while TPGS_EXPLICIT_ALUA is disabled"
            in rig.sim.log.text())
    # the port in gp_b still may
    assert rig.submit(rig.c, stpg(8), stpg_data((alua.STANDBY, 0))).ok


def test_stpg_state_checked_against_both_groups(rig):
    # the sender's group lacks Standby: refused before any lookup
    rig.sim.write(f"{BASE}/alua/default_tg_pt_gp/alua_support_standby", "0")
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.STANDBY, 2))).sense_tuple() == INVALID_PARAM
    assert "ALUA access state Standby not supported" in rig.sim.log.text()
    # the target group lacks Unavailable: core_alua_do_port_transition refuses it
    rig.sim.write(f"{BASE}/alua/gp_b/alua_support_unavailable", "0")
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.UNAVAILABLE, 2))).sense_tuple() == \
        INVALID_PARAM
    assert rig.gp_b.access_state == alua.AO


def test_stpg_not_atomic(rig):
    """Descriptors before a bad one stay applied (the kernel walks the list in order)."""
    res = rig.submit(rig.a, stpg(12), stpg_data((alua.STANDBY, 2), (alua.STANDBY, 9)))
    assert res.sense_tuple() == INVALID_PARAM
    assert rig.gp_b.access_state == alua.STANDBY


# -- unit attentions ---------------------------------------------------------------------------
def test_configfs_transition_queues_ua_for_group_nexuses(rig):
    rig.touch(rig.a, rig.b, rig.c)
    rig.set_state(rig.gp_a, alua.STANDBY)
    assert rig.pending(rig.a) == [(0x2A, 0x06)]
    assert rig.pending(rig.b) == [(0x2A, 0x06)]
    assert rig.pending(rig.c) == []
    # reported once on the next command, then cleared (emulate_ua_intlck_ctrl=0)
    assert rig.submit(rig.a, rtpg()).sense_tuple() == AASC
    assert rig.submit(rig.a, rtpg()).ok
    # writing the same state again changes nothing and queues nothing
    rig.set_state(rig.gp_a, alua.STANDBY)
    assert rig.pending(rig.a) == []
    assert rig.pending(rig.b) == [(0x2A, 0x06)]


def test_stpg_ua_skips_sender(rig):
    rig.touch(rig.a, rig.b, rig.c, rig.a2)
    # a (on p1) changes gp_b, whose LUN is p2: c gets the UA, a's own nexus on p2 does not
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.STANDBY, 2))).ok
    assert rig.pending(rig.c) == [(0x2A, 0x06)]
    assert rig.pending(rig.a2) == []
    assert rig.pending(rig.a) == [] and rig.pending(rig.b) == []
    assert rig.submit(rig.c, rtpg()).sense_tuple() == AASC


def test_stpg_ua_skips_whole_receiving_lun(rig):
    """tg_pt_gp_alua_lun: every nexus on the LUN the STPG arrived on is skipped."""
    rig.touch(rig.a, rig.b, rig.c)
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.ANO, 0))).ok
    assert rig.pending(rig.a) == [] and rig.pending(rig.b) == []
    # an implicit change afterwards reaches everyone again
    rig.set_state(rig.gp_a, alua.AO)
    assert rig.pending(rig.a) == [(0x2A, 0x06)] and rig.pending(rig.b) == [(0x2A, 0x06)]


def test_install_is_idempotent(rig):
    alua.install(rig.sim.engine)
    alua.install(rig.sim.core)
    rig.touch(rig.a)
    calls = []
    real = alua.queue_state_change_ua
    try:
        alua.queue_state_change_ua = lambda gp: (calls.append(gp), real(gp))
        rig.set_state(rig.gp_a, alua.STANDBY)
    finally:
        alua.queue_state_change_ua = real
    # queued when the group enters Transitioning and again at the new state
    assert calls == [rig.gp_a, rig.gp_a]
    assert rig.pending(rig.a) == [(0x2A, 0x06)]


# -- LU groups and metadata --------------------------------------------------------------------
def _second_device(rig):
    dev2 = rig.sim.rd_device(name="rd1", serial="b6d1dec2-0000-4000-8000-000000000002")
    base2 = "/target/core/rd_mcp_0/rd1"
    rig.sim.mkdir(f"{base2}/alua/gp_b")
    rig.sim.write(f"{base2}/alua/gp_b/tg_pt_gp_id", "2")
    gp2 = next(g for g in dev2.tg_pt_gps if g.name == "gp_b")
    port = rig.sim.port(dev2, tpgt=2, lun=1)
    alua.set_port_group(port, gp2)
    return dev2, gp2, port


def test_lu_group_moves_same_id_groups(rig):
    dev2, gp2, port = _second_device(rig)
    # in default_lu_gp the groups stay independent
    rig.set_state(rig.gp_b, alua.STANDBY)
    assert gp2.access_state == alua.AO
    rig.sim.mkdir("/target/core/alua/lu_gps/lg1")
    rig.sim.write("/target/core/alua/lu_gps/lg1/lu_gp_id", "1")
    rig.sim.write(f"{BASE}/alua_lu_gp", "lg1")
    rig.sim.write("/target/core/rd_mcp_0/rd1/alua_lu_gp", "lg1")
    rig.set_state(rig.gp_b, alua.UNAVAILABLE)
    assert gp2.access_state == alua.UNAVAILABLE
    assert rig.sim.read("/target/core/rd_mcp_0/rd1/alua/gp_b/alua_access_state") == "3\n"
    assert rig.gp_a.access_state == alua.AO
    assert ("Successfully processed LU Group: lg1 all ALUA TG PT Group IDs: 2 implicit "
            "transition to primary state: Unavailable") in rig.sim.log.text()
    # STPG on rd0: rd1's group follows, and the sender gets the UA there (alua_nacl is only
    # recorded on the group the STPG addressed)
    sender_on_dev2 = rig.sim.nexus("iqn.1994-05.com.redhat:a", port)
    alua.state_check(Command(nexus=sender_on_dev2, dev=dev2, cdb=INQUIRY))
    rig.touch(rig.a2)
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.ANO, 2))).ok
    assert gp2.access_state == alua.ANO
    assert gp2.access_status == 1
    assert rig.sim.engine.unit_attentions(dev2).pending(sender_on_dev2.key()) == [(0x2A, 0x06)]
    assert rig.pending(rig.a2) == []


def test_metadata_written_on_transition(rig):
    rig.sim.write(f"{BASE}/alua/gp_b/alua_write_metadata", "1")
    path = Path(rig.sim.core.dbroot) / "alua" / f"tpgs_{rig.dev.wwn.unit_serial}" / "gp_b"
    rig.set_state(rig.gp_b, alua.ANO)  # tpgs_<serial>/ missing: logged, state still changes
    assert f"filp_open({path}) for ALUA metadata failed" in rig.sim.log.text()
    assert rig.gp_b.access_state == alua.ANO
    path.parent.mkdir(parents=True)
    rig.set_state(rig.gp_b, alua.STANDBY)
    assert path.read_text() == "tg_pt_gp_id=2\nalua_access_state=0x02\nalua_access_status=0x02\n"
    assert rig.submit(rig.a, stpg(8), stpg_data((alua.UNAVAILABLE, 2))).ok
    assert path.read_text() == "tg_pt_gp_id=2\nalua_access_state=0x03\nalua_access_status=0x01\n"
    # Transitioning (implicit only) stops before the metadata write
    rig.set_state(rig.gp_b, alua.TRANSITION)
    assert "0x03" in path.read_text()
    assert not (path.parent / "default_tg_pt_gp").exists()


# -- LBA dependent -----------------------------------------------------------------------------
def _lbd(rig, text: str):
    rig.sim.write(f"{BASE}/lba_map", text)
    rig.sim.write(f"{BASE}/alua/default_tg_pt_gp/alua_access_type", "1")
    rig.set_state(rig.gp_a, alua.LBA_DEPENDENT)
    assert rig.read(rig.gp_a, "alua_access_state") == "4\n"


def test_lba_dependent_ranges(rig):
    _lbd(rig, "0 0\n0 99 0:O 2:S\n100 199 0:S 2:O\n200 299 0:U 2:A\n")
    chk = rig.check
    assert chk(rig.a, read10(0, 100), lba=0, nblocks=100) is None
    assert chk(rig.a, read10(100, 1), lba=100, nblocks=1) == STANDBY_SENSE
    assert chk(rig.a, write10(95, 10), lba=95, nblocks=10) == STANDBY_SENSE  # crosses into 100
    assert chk(rig.a, read10(250, 1), lba=250, nblocks=1) == UNAVAIL_SENSE
    assert chk(rig.a, read10(300, 1), lba=300, nblocks=1) == UNAVAIL_SENSE   # unmapped LBA
    assert chk(rig.a, read10(300, 0), lba=300, nblocks=0) is None            # no blocks
    # commands without LBAs are never filtered
    assert chk(rig.a, TUR) is None and chk(rig.a, READ_CAP10) is None
    # gp_b's port is not LBA dependent; its map column only matters for gp_b
    rig.gp_b.access_state = alua.LBA_DEPENDENT
    assert chk(rig.c, read10(0, 1), lba=0, nblocks=1) == STANDBY_SENSE
    assert chk(rig.c, read10(100, 1), lba=100, nblocks=1) is None
    assert rig.submit(rig.a, rtpg()).data[4 + 1] == 0xDF  # LBD supported bit now set


def test_lba_dependent_segments(rig):
    # segment size 10, multiplier 2: the map repeats every 20 blocks
    _lbd(rig, "10 2\n0 9 0:O\n10 19 0:U\n")
    chk = rig.check
    assert chk(rig.a, read10(25, 1), lba=25, nblocks=1) is None
    assert chk(rig.a, read10(35, 1), lba=35, nblocks=1) == UNAVAIL_SENSE
    # the walk steps a whole segment from the command's first LBA: 25 -> 35
    assert chk(rig.a, read10(25, 10), lba=25, nblocks=10) is None
    assert chk(rig.a, read10(25, 11), lba=25, nblocks=11) == UNAVAIL_SENSE


def test_lba_dependent_engine_read(rig):
    if not supported(rig, read10(0, 1)):
        pytest.skip("READ(10) not implemented by sbc.py yet")
    _lbd(rig, "0 0\n0 99 0:O\n100 16383 0:S\n")
    assert rig.submit(rig.a, read10(0, 8)).ok
    assert rig.submit(rig.a, read10(96, 8)).sense_tuple() == STANDBY_SENSE


def test_rmdir_group_returns_luns_to_default(rig):
    rig.set_state(rig.gp_b, alua.STANDBY)
    assert rig.check(rig.c, read10(0, 1)) == STANDBY_SENSE
    rig.sim.tree.rmdir(f"{BASE}/alua/gp_b")
    assert rig.p2.tg_pt_gp is rig.gp_a and rig.p2 in rig.gp_a.members
    assert rig.check(rig.c, read10(0, 1)) is None
    d = rig.submit(rig.a, rtpg()).data
    assert d[:4] == b"\x00\x00\x00\x10" and d[4 + 7] == 2
