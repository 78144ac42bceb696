"""Persistent reservations through the SCSI engine (simfs/scsi/pr.py).

Kernel reference: drivers/target/target_core_pr.c (modern: core_scsi3_emulate_pro_*,
core_scsi3_pri_*, core_scsi3_pr_seq_non_holder, core_scsi3_update_aptpl_buf),
target_core_fabric_lib.c (TransportIDs), target_core_configfs.c (pr/ files).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from simfs.core import kernels
from simfs.scsi import cdbs
from simfs.scsi import status as S
from simfs.testing import Sim

DEVP = "/target/core/rd_mcp_0/rd0/pr"
SERIAL = "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4"
TGT = "iqn.2003-01.org.linux-iscsi.sim:t1"
IA, IB, IC = ("iqn.1994-05.com.redhat:aa", "iqn.1994-05.com.redhat:bb",
              "iqn.1994-05.com.redhat:cc")
ISID_A, ISID_B, ISID_C = "400001370000", "400001370001", "400001370002"
KA, KB, KC = 0xAAAA000000000001, 0xBBBB, 0xCCCC

REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_ABORT, RIEK, MOVE = range(8)
TYPES = [1, 3, 5, 6, 7, 8]
TYPE_NAMES = {1: "Write Exclusive Access", 3: "Exclusive Access",
              5: "Write Exclusive Access, Registrants Only",
              6: "Exclusive Access, Registrants Only",
              7: "Write Exclusive Access, All Registrants",
              8: "Exclusive Access, All Registrants"}


class Env:
    def __init__(self, tmp: Path, fabric: str = "iSCSI", kernel=None):
        self.sim = Sim(state_dir=tmp) if kernel is None else Sim(state_dir=tmp, profile=kernel)
        self.dev = self.sim.rd_device()
        self.p1 = self.sim.port(self.dev, fabric=fabric, wwn=TGT, tpgt=1)
        self.a = self.sim.nexus(IA, self.p1, isid=ISID_A)
        self.b = self.sim.nexus(IB, self.p1, isid=ISID_B)
        self.c = self.sim.nexus(IC, self.p1, isid=ISID_C)
        for n in (self.a, self.b, self.c):  # log in: the "ACL" exists, LUN mapped
            assert self.tur(n).status == S.GOOD

    def submit(self, nexus, cdb, data=b""):
        return self.sim.engine.submit(nexus, self.dev, cdb, data)

    def out(self, nexus, sa, **kw):
        cdb, params = cdbs.pr_out(sa, **kw)
        return self.submit(nexus, cdb, params)

    def out_raw(self, nexus, sa, params, pr_type=0):
        cdb = struct.pack(">BBBxxIB", S.PERSISTENT_RESERVE_OUT, sa, pr_type, len(params), 0)
        return self.submit(nexus, cdb, params)

    def pin(self, nexus, sa, alloc=8192):
        r = self.submit(nexus, cdbs.pr_in(sa, alloc))
        assert r.status == S.GOOD, r
        return r.data

    def tur(self, nexus):
        return self.submit(nexus, cdbs.test_unit_ready())

    def read(self, nexus):
        return self.submit(nexus, cdbs.read_16(0, 1))

    def write(self, nexus):
        return self.submit(nexus, cdbs.write_16(0, 1), bytes(512))

    def file(self, name):
        return self.sim.read(f"{DEVP}/{name}")

    @property
    def gen(self):
        probe = self.sim.nexus("iqn.probe", self.p1, isid="1")   # never has a UA pending
        return struct.unpack(">I", self.pin(probe, 0)[:4])[0]

    def log_has(self, line):
        return any(ln.endswith("] " + line) for ln in self.sim.log.lines)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.sim.close()


def ok(r):
    assert r.status == S.GOOD, (r.status, r.sense_tuple())


def conflict(r):
    assert r.status == S.RESERVATION_CONFLICT and r.sense == b"", r


def check(r, key, asc, ascq):
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (key, asc, ascq), \
        (r.status, r.sense_tuple())


def ua(r, ascq):
    check(r, S.UNIT_ATTENTION, 0x2A, ascq)


def keys_of(data):
    gen, n = struct.unpack(">II", data[:8])
    return gen, [struct.unpack(">Q", data[8 + i:16 + i])[0] for i in range(0, n, 8)]


def iscsi_tid(name, isid=None):
    body = name.encode() + ((b",i,0x" + isid.encode()) if isid else b"") + b"\0"
    body += bytes(-len(body) & 3)
    return bytes([0x45 if isid else 0x05, 0]) + struct.pack(">H", len(body)) + body


# -- REGISTER, READ KEYS, generation ------------------------------------------------------
def test_register_read_keys_and_files(env):
    assert env.pin(env.a, 0) == bytes(8)  # generation 0, no keys: 8 bytes only
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    data = env.pin(env.a, 0)
    assert data == (b"\x00\x00\x00\x02\x00\x00\x00\x10" + struct.pack(">QQ", KA, KB))
    # allocation length: data truncated, ADDITIONAL LENGTH still 16
    assert env.pin(env.a, 0, alloc=12) == data[:12]
    assert env.file("res_pr_generation") == "0x00000002\n"
    assert env.file("res_pr_registered_i_pts") == (
        "SPC-3 PR Registrations:\n"
        f"iSCSI Node: {IA},i,0x{ISID_A} Key: 0xaaaa000000000001 PRgen: 0x00000000\n"
        f"iSCSI Node: {IB},i,0x{ISID_B} Key: 0x000000000000bbbb PRgen: 0x00000001\n")
    assert env.file("res_holder") == "No SPC-3 Reservation holder\n"
    assert env.log_has(f"SPC-3 PR [iSCSI] Service Action: REGISTER Initiator Node: "
                       f"{IA},i,0x{ISID_A}")
    assert env.log_has(f"SPC-3 PR [iSCSI] registration on Target Port: {TGT},0x0001")
    assert env.log_has("SPC-3 PR [iSCSI] for SINGLE TCM Subsystem rd_mcp Object Target Port(s)")
    assert env.log_has("SPC-3 PR [iSCSI] SA Res Key: 0x000000000000bbbb PRgeneration: "
                       "0x00000001  APTPL: 0")


def test_generation_rules(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))                       # +1
    ok(env.out(env.b, RIEK, sa_key=KB))                           # +1
    assert env.gen == 2
    ok(env.out(env.a, REGISTER, key=KA, sa_key=0x77))             # key change +1
    assert env.gen == 3
    assert "Key: 0x0000000000000077 PRgen: 0x00000002" in env.file("res_pr_registered_i_pts")
    assert env.log_has(f"SPC-3 PR [iSCSI] REGISTER: Changed Reservation Key for {IA} to: "
                       f"0x0000000000000077 PRgeneration: 0x00000002")
    ok(env.out(env.b, RIEK, sa_key=0x99))                         # RIEK key change +1
    assert env.gen == 4
    ok(env.out(env.a, RESERVE, key=0x77, pr_type=1))              # +0
    ok(env.out(env.a, RELEASE, key=0x77, pr_type=1))              # +0
    assert env.gen == 4
    ok(env.out(env.b, REGISTER, key=0x99, sa_key=0))              # unregister +0
    assert env.gen == 4
    ok(env.out(env.c, REGISTER, sa_key=0))                        # not registered, key 0: no-op
    assert env.gen == 4
    ok(env.out(env.c, REGISTER, sa_key=KC))
    ok(env.out(env.a, PREEMPT, key=0x77, sa_key=KC, pr_type=1))   # +1
    assert env.gen == 6
    ok(env.out(env.a, CLEAR, key=0x77))                           # +1
    assert env.gen == 7
    assert env.file("res_pr_registered_i_pts") == "SPC-3 PR Registrations:\nNone\n"


def test_register_errors(env):
    conflict(env.out(env.a, REGISTER, key=5, sa_key=KA))   # unregistered, key != 0
    ok(env.out(env.a, REGISTER, sa_key=KA))
    conflict(env.out(env.a, REGISTER, key=KA + 1, sa_key=7))
    ok(env.out(env.a, RIEK, key=KA + 1, sa_key=KA))         # RIEK ignores the key
    # parameter list length must be 24 without SPEC_I_PT
    check(env.out_raw(env.a, REGISTER, bytes(23)), S.ILLEGAL_REQUEST, 0x1A, 0)
    check(env.out_raw(env.a, REGISTER, bytes(28)), S.ILLEGAL_REQUEST, 0x1A, 0)
    # SPEC_I_PT only with REGISTER, and not from a registered nexus
    check(env.out(env.a, RESERVE, key=KA, pr_type=1, spec_i_pt=True), S.ILLEGAL_REQUEST, 0x26, 0)
    params = cdbs.pr_out(REGISTER, key=KA, sa_key=1, spec_i_pt=True)[1] + struct.pack(">I", 0)
    check(env.out_raw(env.a, REGISTER, params), S.ILLEGAL_REQUEST, 0x26, 0)
    # unknown service action
    check(env.out(env.a, 0x08, key=KA), S.ILLEGAL_REQUEST, 0x24, 0)
    # RESERVE with an unknown type; RESERVE with a scope
    check(env.out(env.a, RESERVE, key=KA, pr_type=2), S.ILLEGAL_REQUEST, 0x24, 0)
    check(env.out(env.a, RESERVE, key=KA, pr_type=1, scope=1), S.ILLEGAL_REQUEST, 0x26, 0)
    # RESERVE / RELEASE / CLEAR from an unregistered nexus: LOGICAL UNIT COMMUNICATION FAILURE
    for sa in (RESERVE, RELEASE, CLEAR):
        check(env.out(env.b, sa, pr_type=1), S.NOT_READY, 0x08, 0)
    assert env.log_has("SPC-3 PR: Unable to locate PR_REGISTERED *pr_reg for RESERVE")
    # PREEMPT from an unregistered nexus: conflict
    conflict(env.out(env.b, PREEMPT, sa_key=KA, pr_type=1))


# -- PR IN formats ------------------------------------------------------------------------------
def test_report_capabilities(env):
    assert env.pin(env.a, 2) == bytes([0, 8, 0x1D, 0x90, 0xEA, 0x01, 0, 0])
    check(env.submit(env.a, cdbs.pr_in(2, alloc=5)), S.ILLEGAL_REQUEST, 0x24, 0)
    check(env.submit(env.a, cdbs.pr_in(0, alloc=7)), S.ILLEGAL_REQUEST, 0x24, 0)
    check(env.submit(env.a, cdbs.pr_in(4)), S.ILLEGAL_REQUEST, 0x24, 0)


@pytest.mark.parametrize("t", TYPES)
def test_read_reservation(env, t):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    assert env.pin(env.b, 1) == b"\x00\x00\x00\x01\x00\x00\x00\x00"
    ok(env.out(env.a, RESERVE, key=KA, pr_type=t))
    key = 0 if t in (7, 8) else KA
    assert env.pin(env.b, 1) == (b"\x00\x00\x00\x01\x00\x00\x00\x10" + struct.pack(">Q", key)
                                 + bytes([0, 0, 0, 0, 0, t, 0, 0]))
    # allocation length below 22: header only, the rest zero (the kernel's goto err)
    assert env.pin(env.b, 1, alloc=16) == b"\x00\x00\x00\x01\x00\x00\x00\x10" + bytes(8)
    assert env.file("res_pr_type") == f"SPC-3 Reservation Type: {TYPE_NAMES[t]}\n"
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IA},i,0x{ISID_A}\n"
    assert env.file("res_pr_holder_tg_port") == (
        f"SPC-3 Reservation: iSCSI Target Node Endpoint: {TGT}\n"
        "SPC-3 Reservation: Relative Port Identifier Tag: 1 iSCSI Portal Group Tag: 1 "
        "iSCSI Logical Unit: 0\n")
    assert env.file("res_pr_all_tgt_pts") == "SPC-3 Reservation: Single Target Port registration\n"
    assert env.log_has(f"SPC-3 PR [iSCSI] Service Action: RESERVE created new reservation "
                       f"holder TYPE: {TYPE_NAMES[t]} ALL_TG_PT: 0")
    assert env.log_has(f"SPC-3 PR [iSCSI] RESERVE Node: {IA},i,0x{ISID_A}")


def test_read_full_status(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=3))
    data = env.pin(env.c, 3)
    tid_a, tid_b = iscsi_tid(IA, ISID_A), iscsi_tid(IB, ISID_B)
    # iSCSI port TransportID: 45h, length = name + ",i,0x" + 12 + NUL padded to 4
    assert len(tid_a) == 4 + 44 and tid_a[:4] == b"\x45\x00\x00\x2c"
    desc_a = struct.pack(">Q", KA) + bytes(4) + bytes([0x01, 0x03]) + bytes(4) \
        + struct.pack(">HI", 1, len(tid_a)) + tid_a
    desc_b = struct.pack(">Q", KB) + bytes(4) + bytes([0x00, 0x00]) + bytes(4) \
        + struct.pack(">HI", 1, len(tid_b)) + tid_b
    assert data == struct.pack(">II", 2, len(desc_a) + len(desc_b)) + desc_a + desc_b
    # the kernel stops at a descriptor whose TransportID no longer fits the allocation length
    small = env.pin(env.c, 3, alloc=8)
    assert small == struct.pack(">II", 2, 0)
    assert env.log_has("SPC-3 PRIN READ_FULL_STATUS ran out of buffer: 8")
    part = env.pin(env.c, 3, alloc=80)
    assert part[:8] == struct.pack(">II", 2, len(desc_a))   # b's 48-byte TID + 72 > 80


def test_read_full_status_all_registrants(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.b, RESERVE, key=KB, pr_type=8))
    data = env.pin(env.a, 3)
    d0 = data[8:]
    d1 = d0[24 + struct.unpack(">I", d0[20:24])[0]:]
    # every registrant is shown as holder of the All Registrants reservation
    assert d0[12:14] == b"\x01\x08" and d1[12:14] == b"\x01\x08"


# -- the access table (core_scsi3_pr_seq_non_holder) -----------------------------------------
WE_TYPES = (1, 5, 7)


def expect_conflict(t, who, op):
    if who == "holder":
        return False
    if who == "registrant":
        if t in (5, 6, 7, 8):
            return False
        return op == "write" or t == 3
    # non-registrant
    return op == "write" or t not in WE_TYPES


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("who", ["holder", "registrant", "non-registrant"])
@pytest.mark.parametrize("op", ["read", "write"])
def test_access_table(env, t, who, op):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=t))
    n = {"holder": env.a, "registrant": env.b, "non-registrant": env.c}[who]
    r = env.read(n) if op == "read" else env.write(n)
    if expect_conflict(t, who, op):
        conflict(r)
    else:
        ok(r)
    # always allowed: TEST UNIT READY, INQUIRY, PR IN, REGISTER
    ok(env.tur(n))
    ok(env.submit(n, cdbs.inquiry()))
    env.pin(n, 0)
    # MODE SENSE: registered, or a Write Exclusive type
    r = env.submit(n, cdbs.mode_sense_10(0x3F))
    if who == "non-registrant" and t not in WE_TYPES:
        conflict(r)
    else:
        ok(r)


@pytest.mark.parametrize("version", kernels.VERSIONS)
def test_read_capacity_10_from_unregistered_nexus_under_exclusive_access(tmp_path, version):
    # core_scsi3_pr_seq_non_holder lists READ CAPACITY(10) in newer kernels only (the
    # version table's pr_non_holder_read_capacity)
    k = kernels.get(version)
    env = Env(tmp_path, kernel=k)
    try:
        ok(env.out(env.a, REGISTER, sa_key=KA))
        ok(env.out(env.a, RESERVE, key=KA, pr_type=3))
        r = env.submit(env.c, cdbs.read_capacity_10())
        if k.has("pr_non_holder_read_capacity"):
            ok(r)
            assert env.log_has("Allowing explicit CDB: 0x25 for Exclusive Access "
                               "reservation holder")
        else:
            conflict(r)
        # READ CAPACITY(16) (SERVICE ACTION IN(16)) is not in the list: a conflict everywhere
        conflict(env.submit(env.c, cdbs.read_capacity_16()))
    finally:
        env.sim.close()


def test_conflict_log_and_isid_mismatch(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=3))
    conflict(env.write(env.c))
    assert env.log_has(f"DMA_TO_DEVICE Conflict for unregistered nexus {IC} CDB: 0x8a for "
                       f"Exclusive Access reservation")
    # same initiator, another ISID: not the holder (and not registered)
    a2 = env.sim.nexus(IA, env.p1, isid="400001370009")
    conflict(env.read(a2))
    ok(env.read(env.a))
    # RESERVE / REGISTER AND MOVE from a non-holder conflict at the access check
    ok(env.out(env.b, REGISTER, sa_key=KB))
    conflict(env.out(env.b, RESERVE, key=KB, pr_type=3))
    conflict(env.out(env.c, CLEAR, key=0))


# -- RESERVE / RELEASE rules -------------------------------------------------------------------
def test_reserve_release_rules(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=5))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=5))           # same type: GOOD, no change
    conflict(env.out(env.a, RESERVE, key=KA, pr_type=6))     # changing the type
    conflict(env.out(env.a, RESERVE, key=KB, pr_type=5))     # wrong key
    ok(env.out(env.b, RELEASE, key=KB, pr_type=5))           # registrant, not holder: GOOD
    assert env.file("res_pr_type").endswith("Registrants Only\n")
    conflict(env.out(env.a, RELEASE, key=KB, pr_type=5))     # wrong key
    conflict(env.out(env.a, RELEASE, key=KA, pr_type=6))     # wrong type
    ok(env.out(env.a, RELEASE, key=KA, pr_type=5))
    assert env.file("res_holder") == "No SPC-3 Reservation holder\n"
    assert env.log_has("SPC-3 PR [iSCSI] Service Action: explicit RELEASE cleared reservation "
                       "holder TYPE: Write Exclusive Access, Registrants Only ALL_TG_PT: 0")
    ua(env.tur(env.b), 0x04)          # RESERVATIONS RELEASED to the other registrants
    ok(env.tur(env.b))
    ok(env.tur(env.a))                # not to the releasing nexus
    ok(env.tur(env.c))                # nor to unregistered ones


@pytest.mark.parametrize("t, expect_ua", [(1, False), (3, False), (5, True), (6, True),
                                          (7, True), (8, True)])
def test_release_unit_attention_by_type(env, t, expect_ua):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=t))
    ok(env.out(env.a, RELEASE, key=KA, pr_type=t))
    r = env.tur(env.b)
    if expect_ua:
        ua(r, 0x04)
    else:
        ok(r)


def test_unregister_holder_implicit_release(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=6))
    ok(env.out(env.a, REGISTER, key=KA, sa_key=0))
    assert env.file("res_holder") == "No SPC-3 Reservation holder\n"
    assert env.log_has("SPC-3 PR [iSCSI] Service Action: implicit RELEASE cleared reservation "
                       "holder TYPE: Exclusive Access, Registrants Only ALL_TG_PT: 0")
    ua(env.tur(env.b), 0x04)
    _, keys = keys_of(env.pin(env.b, 0))
    assert keys == [KB]


def test_unregister_all_registrants_holder_passes_on(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.c, REGISTER, sa_key=KC))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=7))
    ok(env.out(env.a, REGISTER, key=KA, sa_key=0))
    # the All Registrants reservation stays, held by the next registration
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IB},i,0x{ISID_B}\n"
    assert env.file("res_pr_type") == "SPC-3 Reservation Type: Write Exclusive Access, All Registrants\n"
    ok(env.tur(env.b))                    # no UA for an All Registrants unregister
    conflict(env.write(env.a))            # a is no longer registered
    ok(env.write(env.c))


# -- PREEMPT, PREEMPT AND ABORT, CLEAR ------------------------------------------------------------
@pytest.mark.parametrize("sa", [PREEMPT, PREEMPT_ABORT])
def test_preempt_holder(env, sa):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.c, REGISTER, sa_key=KC))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=1))
    resets = env.dev.num_resets
    ok(env.out(env.b, sa, key=KB, sa_key=KA, pr_type=3))
    assert env.gen == 4
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IB},i,0x{ISID_B}\n"
    assert env.file("res_pr_type") == "SPC-3 Reservation Type: Exclusive Access\n"
    _, keys = keys_of(env.pin(env.b, 0))
    assert keys == [KB, KC]
    ua(env.tur(env.a), 0x05)     # REGISTRATIONS PREEMPTED for the preempted nexus
    ua(env.tur(env.c), 0x04)     # type changed: RESERVATIONS RELEASED to the others
    ok(env.tur(env.b))
    suffix = "_AND_ABORT" if sa == PREEMPT_ABORT else ""
    assert env.log_has(f"SPC-3 PR [iSCSI] Service Action: PREEMPT{suffix} created new "
                       f"reservation holder TYPE: Exclusive Access ALL_TG_PT: 0")
    assert env.log_has(f"SPC-3 PR [iSCSI] PREEMPT{suffix} from Node: {IB},i,0x{ISID_B}")
    if sa == PREEMPT_ABORT:
        assert env.dev.num_resets == resets + 1
        assert env.log_has("LUN_RESET: Preempt starting for [rd_mcp], tas: 1")
        assert env.log_has("LUN_RESET: Preempt for [rd_mcp] Complete")
    else:
        assert env.dev.num_resets == resets


def test_preempt_same_type_no_released_ua(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.c, REGISTER, sa_key=KC))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=5))
    ok(env.out(env.b, PREEMPT, key=KB, sa_key=KA, pr_type=5))
    ua(env.tur(env.a), 0x05)
    ok(env.tur(env.c))


def test_preempt_registrations_only(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.c, REGISTER, sa_key=KB))   # c shares b's key
    ok(env.out(env.a, RESERVE, key=KA, pr_type=1))
    ok(env.out(env.a, PREEMPT, key=KA, sa_key=KB, pr_type=3))
    # the reservation is unchanged; both KB registrations are gone
    assert env.file("res_pr_type") == "SPC-3 Reservation Type: Write Exclusive Access\n"
    gen, keys = keys_of(env.pin(env.a, 0))
    assert keys == [KA] and gen == 4
    ua(env.tur(env.b), 0x05)
    ua(env.tur(env.c), 0x05)
    conflict(env.out(env.a, PREEMPT, key=KA, sa_key=0x1234, pr_type=1))  # matches nothing
    check(env.out(env.a, PREEMPT, key=KA, sa_key=0, pr_type=1), S.ILLEGAL_REQUEST, 0x26, 0)
    check(env.out(env.a, PREEMPT, key=KA, sa_key=KA, pr_type=2), S.ILLEGAL_REQUEST, 0x24, 0)
    conflict(env.out(env.a, PREEMPT, key=KB, sa_key=KA, pr_type=1))      # wrong own key


def test_preempt_all_registrants_zero_key(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.c, REGISTER, sa_key=KC))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=8))
    ok(env.out(env.b, PREEMPT, key=KB, sa_key=0, pr_type=1))
    _, keys = keys_of(env.pin(env.b, 0))
    assert keys == [KB]
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IB},i,0x{ISID_B}\n"
    assert env.file("res_pr_type") == "SPC-3 Reservation Type: Write Exclusive Access\n"
    ua(env.tur(env.a), 0x05)
    ua(env.tur(env.c), 0x05)


def test_clear(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=3))
    conflict(env.out(env.b, CLEAR, key=KA))   # wrong key
    ok(env.out(env.b, CLEAR, key=KB))
    ua(env.tur(env.a), 0x03)                  # RESERVATIONS PREEMPTED
    ok(env.tur(env.b))
    assert env.pin(env.a, 0) == struct.pack(">II", 3, 0)
    assert env.pin(env.a, 1) == struct.pack(">II", 3, 0)
    for f, text in [("res_holder", "No SPC-3 Reservation holder\n"),
                    ("res_pr_registered_i_pts", "SPC-3 PR Registrations:\nNone\n"),
                    ("res_pr_generation", "0x00000003\n")]:
        assert env.file(f) == text
    assert env.log_has("SPC-3 PR [iSCSI] Service Action: CLEAR complete")


def test_ua_interlock_and_request_sense(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.b, REGISTER, sa_key=KB))
    ok(env.out(env.b, CLEAR, key=KB))
    # INQUIRY is not blocked by the pending UA; REQUEST SENSE reports and clears it
    ok(env.submit(env.a, cdbs.inquiry()))
    r = env.submit(env.a, cdbs.request_sense())
    ok(r)
    assert (r.data[2] & 0xF, r.data[12], r.data[13]) == (S.UNIT_ATTENTION, 0x2A, 0x03)
    ok(env.tur(env.a))


# -- REGISTER AND MOVE --------------------------------------------------------------------------
def move_params(key, sa_key, rtpi, tid, unreg=False, aptpl=False):
    return (struct.pack(">QQxB", key, sa_key, (2 if unreg else 0) | int(aptpl))
            + struct.pack(">HI", rtpi, len(tid)) + tid)


@pytest.mark.parametrize("unreg", [False, True])
def test_register_and_move(env, unreg):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=1))
    p = move_params(KA, KB, env.p1.rtpi, iscsi_tid(IB, ISID_B), unreg=unreg)
    ok(env.out_raw(env.a, MOVE, p))
    gen, keys = keys_of(env.pin(env.b, 0))
    assert keys == ([KB] if unreg else [KA, KB]) and gen == 2
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IB},i,0x{ISID_B}\n"
    assert env.file("res_pr_type") == "SPC-3 Reservation Type: Write Exclusive Access\n"
    assert env.pin(env.b, 1)[8:] == struct.pack(">Q", KB) + bytes([0, 0, 0, 0, 0, 1, 0, 0])
    ok(env.write(env.b))
    conflict(env.write(env.a))
    assert env.log_has("SPC-3 PR [iSCSI] Service Action: REGISTER_AND_MOVE created new "
                       "reservation holder TYPE: Write Exclusive Access on object RTPI: 1  "
                       "PRGeneration: 0x00000001")
    assert env.log_has(f"SPC-3 PR Successfully moved reservation from iSCSI Fabric Node: "
                       f"{IA},i,0x{ISID_A} -> iSCSI Fabric Node: {IB} {ISID_B}")


def test_register_and_move_errors(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    tid = iscsi_tid(IB, ISID_B)
    rtpi = env.p1.rtpi
    # no reservation: INVALID FIELD IN CDB (the kernel's choice)
    check(env.out_raw(env.a, MOVE, move_params(KA, KB, rtpi, tid)), S.ILLEGAL_REQUEST, 0x24, 0)
    ok(env.out(env.a, RESERVE, key=KA, pr_type=1))
    conflict(env.out_raw(env.a, MOVE, move_params(KA + 1, KB, rtpi, tid)))
    check(env.out_raw(env.a, MOVE, move_params(KA, 0, rtpi, tid)), S.ILLEGAL_REQUEST, 0x26, 0)
    check(env.out_raw(env.a, MOVE, move_params(KA, KB, 99, tid)), S.ILLEGAL_REQUEST, 0x26, 0)
    check(env.out_raw(env.a, MOVE, move_params(KA, KB, rtpi, iscsi_tid(IA, ISID_A))),
          S.ILLEGAL_REQUEST, 0x26, 0)        # the TransportID is the calling nexus
    check(env.out_raw(env.a, MOVE, move_params(KA, KB, rtpi, iscsi_tid("iqn.nobody", "1"))),
          S.ILLEGAL_REQUEST, 0x26, 0)        # no such ACL
    bad = move_params(KA, KB, rtpi, tid)[:-4]
    check(env.out_raw(env.a, MOVE, bad), S.ILLEGAL_REQUEST, 0x26, 0)   # tid length mismatch
    ok(env.out(env.a, RELEASE, key=KA, pr_type=1))
    ok(env.out(env.a, RESERVE, key=KA, pr_type=7))
    conflict(env.out_raw(env.a, MOVE, move_params(KA, KB, rtpi, tid)))  # All Registrants
    assert env.file("res_holder") == f"SPC-3 Reservation: iSCSI Initiator: {IA},i,0x{ISID_A}\n"


# -- SPEC_I_PT --------------------------------------------------------------------------------------
def test_spec_i_pt(env):
    tids = iscsi_tid(IB, ISID_B) + iscsi_tid(IC, ISID_C)
    params = cdbs.pr_out(REGISTER, sa_key=KA, spec_i_pt=True)[1] + struct.pack(">I", len(tids)) + tids
    ok(env.out_raw(env.a, REGISTER, params))
    assert env.file("res_pr_registered_i_pts") == (
        "SPC-3 PR Registrations:\n"
        f"iSCSI Node: {IA},i,0x{ISID_A} Key: 0xaaaa000000000001 PRgen: 0x00000000\n"
        f"iSCSI Node: {IB},i,0x{ISID_B} Key: 0xaaaa000000000001 PRgen: 0x00000001\n"
        f"iSCSI Node: {IC},i,0x{ISID_C} Key: 0xaaaa000000000001 PRgen: 0x00000002\n")
    assert env.log_has(f"SPC-3 PR [iSCSI] SPEC_I_PT: Successfully registered Transport ID for "
                       f"Node: {IB},i,0x{ISID_B} Mapped LUN: 0")
    # b can now reserve with the key a registered for it
    ok(env.out(env.b, RESERVE, key=KA, pr_type=1))


def test_spec_i_pt_errors(env):
    def reg(tids, tpdl=None):
        p = cdbs.pr_out(REGISTER, sa_key=KA, spec_i_pt=True)[1]
        return env.out_raw(env.a, REGISTER,
                           p + struct.pack(">I", len(tids) if tpdl is None else tpdl) + tids)
    check(reg(iscsi_tid("iqn.unknown", "1")), S.ILLEGAL_REQUEST, 0x26, 0)
    check(reg(iscsi_tid(IB, ISID_B), tpdl=4), S.ILLEGAL_REQUEST, 0x26, 0)
    # enforce_pr_isids: an iSCSI TransportID without an ISID is refused
    check(reg(iscsi_tid(IB)), S.ILLEGAL_REQUEST, 0x26, 0)
    assert env.log_has(f"SPC-PR: enforce_pr_isids is set but a isid has not been sent in the "
                       f"SPEC_I_PT data for {IB}.")
    # nothing was registered by the failed commands
    assert env.pin(env.a, 0) == bytes(8)


# -- ALL_TG_PT: one initiator through two target ports ------------------------------------------------
LB_WWN = "naa.5001405aaaaaaaa1"
LB_I = "naa.5001405111111111"
LB_J = "naa.5001405222222222"


@pytest.fixture
def lb(tmp_path):
    sim = Sim(state_dir=tmp_path)
    dev = sim.rd_device()
    p1 = sim.port(dev, fabric="loopback", wwn=LB_WWN, tpgt=1)
    p2 = sim.port(dev, fabric="loopback", wwn="naa.5001405aaaaaaaa2", tpgt=1)
    e = Env.__new__(Env)
    e.sim, e.dev, e.p1, e.p2 = sim, dev, p1, p2
    e.a, e.a2 = sim.nexus(LB_I, p1), sim.nexus(LB_I, p2)
    e.b = sim.nexus(LB_J, p1)
    e.c = sim.nexus("naa.5001405333333333", p2)
    for n in (e.a, e.a2, e.b, e.c):
        ok(e.tur(n))
    yield e
    sim.close()


def sas_tid(name):
    return bytes([0x06, 0, 0, 0]) + bytes.fromhex(name[4:]) + bytes(12)


def test_all_tg_pt_registration(lb):
    ok(lb.out(lb.a, REGISTER, sa_key=KA, all_tg_pt=True))
    gen, keys = keys_of(lb.pin(lb.b, 0))
    assert gen == 2 and keys == [KA, KA]           # one registration per target port
    assert lb.file("res_pr_registered_i_pts") == (
        "SPC-3 PR Registrations:\n"
        f"loopback Node: {LB_I} Key: 0xaaaa000000000001 PRgen: 0x00000000\n"
        f"loopback Node: {LB_I} Key: 0xaaaa000000000001 PRgen: 0x00000001\n")
    assert lb.sim.log.text().count("for ALL TCM Subsystem rd_mcp Object Target Port(s)") == 2
    data = lb.pin(lb.b, 3)
    desc = struct.pack(">Q", KA) + bytes(4) + bytes([0x02, 0]) + bytes(4) + struct.pack(">HI", 0, 24)
    assert data == struct.pack(">II", 2, 96) + (desc + sas_tid(LB_I)) * 2
    ok(lb.out(lb.a, RESERVE, key=KA, pr_type=1))
    assert lb.file("res_pr_all_tgt_pts") == "SPC-3 Reservation: All Target Ports registration\n"
    # through the other port the initiator is a registered non-holder
    ok(lb.read(lb.a2))
    conflict(lb.write(lb.a2))
    ok(lb.write(lb.a))
    conflict(lb.write(lb.c))
    # unregistering needs ALL_TG_PT=1 again
    check(lb.out(lb.a2, REGISTER, key=KA, sa_key=0), S.ILLEGAL_REQUEST, 0x24, 0)


def test_all_tg_pt_unregister_frees_siblings(lb):
    ok(lb.out(lb.a, REGISTER, sa_key=KA, all_tg_pt=True))
    ok(lb.out(lb.b, REGISTER, sa_key=KB))
    ok(lb.out(lb.a2, RESERVE, key=KA, pr_type=6))
    assert lb.file("res_holder") == f"SPC-3 Reservation: loopback Initiator: {LB_I}\n"
    assert lb.file("res_pr_holder_tg_port").startswith(
        "SPC-3 Reservation: loopback Target Node Endpoint: naa.5001405aaaaaaaa2\n")
    # the port-1 registration may not go while its sibling holds the reservation
    conflict(lb.out(lb.a, REGISTER, key=KA, sa_key=0, all_tg_pt=True))
    ok(lb.out(lb.a2, REGISTER, key=KA, sa_key=0, all_tg_pt=True))
    ua(lb.tur(lb.b), 0x04)
    _, keys = keys_of(lb.pin(lb.b, 0))
    assert keys == [KB]


def test_preempt_from_other_initiator_port(lb):
    """Three initiators over two ports: c (port 2) preempts a's All Target Ports holder."""
    ok(lb.out(lb.a, REGISTER, sa_key=KA, all_tg_pt=True))
    ok(lb.out(lb.c, REGISTER, sa_key=KC))
    ok(lb.out(lb.a, RESERVE, key=KA, pr_type=1))
    ok(lb.out(lb.c, PREEMPT_ABORT, key=KC, sa_key=KA, pr_type=1))
    _, keys = keys_of(lb.pin(lb.c, 0))
    assert keys == [KC]
    ua(lb.tur(lb.a), 0x05)
    ua(lb.tur(lb.a2), 0x05)
    ok(lb.write(lb.c))
    conflict(lb.write(lb.a2))


# -- SPC-2 RESERVE / RELEASE ----------------------------------------------------------------------
RESERVE6, RELEASE6 = bytes([0x16, 0, 0, 0, 0, 0]), bytes([0x17, 0, 0, 0, 0, 0])


def test_spc2_reserve_release(env):
    ok(env.submit(env.a, RESERVE6))
    assert env.file("res_type") == "SPC2_RESERVATIONS\n"
    assert env.file("res_holder") == f"SPC-2 Reservation: iSCSI Initiator: {IA}\n"
    conflict(env.tur(env.b))
    conflict(env.read(env.b))
    ok(env.submit(env.b, cdbs.inquiry()))
    ok(env.submit(env.b, RELEASE6))           # not the holder: GOOD, nothing released
    conflict(env.submit(env.b, RESERVE6))
    ok(env.write(env.a))
    # another ISID of the holder's initiator is not the holder
    conflict(env.tur(env.sim.nexus(IA, env.p1, isid="400001370009")))
    # every PR command conflicts while an SPC-2 reservation is held, the holder's too
    conflict(env.submit(env.a, cdbs.pr_in(0)))
    conflict(env.out(env.a, REGISTER, sa_key=KA))
    assert env.log_has("Received PERSISTENT_RESERVE CDB while legacy SPC-2 reservation is "
                       "held, returning RESERVATION_CONFLICT")
    ok(env.submit(env.a, RELEASE6))
    assert env.log_has(f"SCSI-2 Released reservation for iSCSI LUN: 0 -> MAPPED LUN: 0 for {IA}")
    assert env.file("res_type") == "SPC3_PERSISTENT_RESERVATIONS\n"
    ok(env.tur(env.b))
    check(env.submit(env.a, bytes([0x56, 3, 0, 0, 0, 0, 0, 0, 0, 0])),
          S.ILLEGAL_REQUEST, 0x20, 0)         # RESERVE(10) LongID + 3rdPty


def test_spc2_with_registrations_crh(env):
    ok(env.out(env.a, REGISTER, sa_key=KA))
    conflict(env.submit(env.b, RESERVE6))      # unregistered while registrations exist
    assert env.log_has("Received legacy SPC-2 RESERVE/RELEASE while active SPC-3 "
                       "registrations exist, returning RESERVATION_CONFLICT")
    conflict(env.submit(env.a, RESERVE6))      # registered, no reservation
    ok(env.out(env.a, RESERVE, key=KA, pr_type=5))
    ok(env.submit(env.a, RESERVE6))            # PR holder: GOOD, nothing changes
    ok(env.submit(env.a, RELEASE6))
    assert env.file("res_type") == "SPC3_PERSISTENT_RESERVATIONS\n"
    assert env.file("res_pr_type").endswith("Registrants Only\n")


# -- APTPL --------------------------------------------------------------------------------------------
def aptpl_file(e):
    return (Path(e.sim.core.dbroot) / "pr" / f"aptpl_{SERIAL}").read_bytes()


def test_aptpl_file_and_restore(tmp_path):
    e = Env(tmp_path)
    ok(e.out(e.a, REGISTER, sa_key=KA, aptpl=True))
    assert e.file("res_aptpl_active") == "APTPL Bit Status: Activated\n"
    assert e.pin(e.a, 2)[3] == 0x91          # PTPL_A
    ok(e.out(e.b, REGISTER, sa_key=KB, aptpl=True))
    ok(e.out(e.a, RESERVE, key=KA, pr_type=6))
    assert e.log_has("SPC-3 PR: Set APTPL Bit Activated")
    text = aptpl_file(e)
    assert text == (
        "PR_REG_START: 0\ninitiator_fabric=iSCSI\n"
        f"initiator_node={IA}\ninitiator_sid={ISID_A}\nsa_res_key={KA}\nres_holder=1\n"
        "res_type=06\nres_scope=00\nres_all_tg_pt=0\nmapped_lun=0\n"
        f"target_fabric=iSCSI\ntarget_node={TGT}\ntpgt=1\nport_rtpi=1\ntarget_lun=0\n"
        "PR_REG_END: 0\n"
        "PR_REG_START: 1\ninitiator_fabric=iSCSI\n"
        f"initiator_node={IB}\ninitiator_sid={ISID_B}\nsa_res_key={KB}\nres_holder=0\n"
        "res_all_tg_pt=0\nmapped_lun=0\n"
        f"target_fabric=iSCSI\ntarget_node={TGT}\ntpgt=1\nport_rtpi=1\ntarget_lun=0\n"
        "PR_REG_END: 1\n\0").encode()
    path = Path(e.sim.core.dbroot) / "pr" / f"aptpl_{SERIAL}"
    assert path.stat().st_mode & 0o777 == 0o600
    e.sim.close()

    # a fresh core (remount): rtslib-style restore through res_aptpl_metadata, one write
    # per PR_REG_START..PR_REG_END block, before the LUNs are exported
    sim = Sim(state_dir=tmp_path)
    dev = sim.rd_device()
    blocks = text.rstrip(b"\0").decode().split("PR_REG_START: ")[1:]
    for blk in blocks:
        lines = [ln for ln in blk.splitlines()[1:] if "=" in ln]
        sim.write(f"{DEVP}/res_aptpl_metadata", ",".join(lines))
    assert sim.read(f"{DEVP}/res_pr_registered_i_pts") == "SPC-3 PR Registrations:\nNone\n"
    p1 = sim.port(dev, fabric="iSCSI", wwn=TGT, tpgt=1)
    a, b = sim.nexus(IA, p1, isid=ISID_A), sim.nexus(IB, p1, isid=ISID_B)
    # b logs in first: its registration comes back, no reservation yet
    assert sim.engine.submit(b, dev, cdbs.test_unit_ready()).status == S.GOOD
    assert sim.read(f"{DEVP}/res_holder") == "No SPC-3 Reservation holder\n"
    assert sim.engine.submit(a, dev, cdbs.test_unit_ready()).status == S.GOOD
    assert sim.read(f"{DEVP}/res_holder") == \
        f"SPC-3 Reservation: iSCSI Initiator: {IA},i,0x{ISID_A}\n"
    assert sim.read(f"{DEVP}/res_pr_type") == \
        "SPC-3 Reservation Type: Exclusive Access, Registrants Only\n"
    assert sim.read(f"{DEVP}/res_aptpl_active") == "APTPL Bit Status: Activated\n"
    regs = sim.read(f"{DEVP}/res_pr_registered_i_pts")
    assert f"iSCSI Node: {IA},i,0x{ISID_A} Key: 0xaaaa000000000001" in regs
    assert f"iSCSI Node: {IB},i,0x{ISID_B} Key: 0x000000000000bbbb" in regs
    assert sim.read(f"{DEVP}/res_pr_generation") == "0x00000002\n"
    data = sim.engine.submit(b, dev, cdbs.pr_in(1)).data
    assert data[8:] == struct.pack(">Q", KA) + bytes([0, 0, 0, 0, 0, 6, 0, 0])
    assert any("Service Action: APTPL RESERVE created new reservation holder TYPE: Exclusive "
               "Access, Registrants Only ALL_TG_PT: 0" in ln for ln in sim.log.lines)
    # the restored registrations behave: b is a registrant of an RO reservation
    assert sim.engine.submit(b, dev, cdbs.write_16(0, 1), bytes(512)).status == S.GOOD
    # and REGISTER with APTPL=0 turns APTPL off and empties the file
    cdb, params = cdbs.pr_out(REGISTER, key=KB, sa_key=KC)
    assert sim.engine.submit(b, dev, cdb, params).status == S.GOOD
    assert sim.read(f"{DEVP}/res_aptpl_active") == "APTPL Bit Status: Disabled\n"
    assert (Path(sim.core.dbroot) / "pr" / f"aptpl_{SERIAL}").read_bytes() == \
        b"No Registrations or Reservations\n\0"
    sim.close()


def test_aptpl_metadata_refused_while_exported(env):
    with pytest.raises(OSError):
        env.sim.write(f"{DEVP}/res_aptpl_metadata",
                      f"initiator_node={IA},sa_res_key=1,target_node={TGT}")


def test_force_pr_aptpl(tmp_path):
    sim = Sim(state_dir=tmp_path)
    dev = sim.rd_device()
    sim.write("/target/core/rd_mcp_0/rd0/attrib/force_pr_aptpl", "1")
    p = sim.port(dev, fabric="iSCSI", wwn=TGT)
    a = sim.nexus(IA, p, isid=ISID_A)
    cdb, params = cdbs.pr_out(REGISTER, sa_key=1)
    assert sim.engine.submit(a, dev, cdb, params).status == S.GOOD
    assert sim.read(f"{DEVP}/res_aptpl_active") == "APTPL Bit Status: Activated\n"
    assert b"sa_res_key=1\nres_holder=0\n" in \
        (Path(sim.core.dbroot) / "pr" / f"aptpl_{SERIAL}").read_bytes()
    sim.close()


# -- emulate_pr=0 ---------------------------------------------------------------------------------
def test_emulate_pr_off(tmp_path):
    sim = Sim(state_dir=tmp_path)
    dev = sim.rd_device()
    sim.write("/target/core/rd_mcp_0/rd0/attrib/emulate_pr", "0")
    p = sim.port(dev, fabric="iSCSI", wwn=TGT)
    a = sim.nexus(IA, p, isid=ISID_A)
    for cdb in (cdbs.pr_in(0), cdbs.pr_out(REGISTER, sa_key=1)[0], RESERVE6, RELEASE6):
        r = sim.engine.submit(a, dev, cdb, bytes(24))
        assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x20, 0)
    assert sim.read(f"{DEVP}/res_type") == "SPC_RESERVATIONS_DISABLED\n"
    sim.close()
