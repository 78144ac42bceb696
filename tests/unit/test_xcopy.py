"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS through the engine (target_core_xcopy.c).

Every refusal is checked three ways: the sense data, the kernel's log line, and the
destination left as it was.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from simfs.scsi import status as S
from simfs.scsi import vpd, xcopy
from simfs.scsi.command import Nexus
from simfs.scsi.engine import scsi_state
from simfs.testing import Sim

TWWN = "iqn.2003-01.org.linux-iscsi.sim:t1"
INIT = "iqn.1994-05.com.redhat:init1"
ILLEGAL = S.ILLEGAL_REQUEST
INVALID_OPCODE = (ILLEGAL, 0x20, 0x00)
INVALID_CDB = (ILLEGAL, 0x24, 0x00)
INVALID_PARAM = (ILLEGAL, 0x26, 0x00)
PLLE = (ILLEGAL, 0x1A, 0x00)
TOO_MANY_TGT = (ILLEGAL, 0x26, 0x06)
UNSUP_TGT = (ILLEGAL, 0x26, 0x07)
TOO_MANY_SEG = (ILLEGAL, 0x26, 0x08)
UNSUP_SEG = (ILLEGAL, 0x26, 0x09)
NOT_REACHABLE = (S.COPY_ABORTED, 0x0D, 0x02)
LUCF = (S.NOT_READY, 0x08, 0x00)


def cscd(dev=None, naa=None, code_set=1, assoc_type=0x03, length=16) -> bytes:
    d = bytearray(32)
    d[0], d[4], d[5], d[7] = 0xE4, code_set, assoc_type, length
    d[8:24] = naa if naa is not None else vpd.naa_6h(dev)
    d[29:32] = (512).to_bytes(3, "big")
    return bytes(d)


def seg(stdi=0, dtdi=1, nolb=8, src_lba=0, dst_lba=0, kind=0x02, desc_len=0x18) -> bytes:
    d = bytearray(28)
    d[0], d[2:4] = kind, desc_len.to_bytes(2, "big")
    d[4:6], d[6:8] = stdi.to_bytes(2, "big"), dtdi.to_bytes(2, "big")
    d[10:12] = nolb.to_bytes(2, "big")
    d[12:20], d[20:28] = src_lba.to_bytes(8, "big"), dst_lba.to_bytes(8, "big")
    return bytes(d)


def params(cscds, segs, inline=0, tdll=None, sdll=None) -> bytes:
    t, s = b"".join(cscds), b"".join(segs)
    h = bytearray(16)
    h[0] = 1  # list identifier (only logged)
    h[2:4] = (len(t) if tdll is None else tdll).to_bytes(2, "big")
    h[8:12] = (len(s) if sdll is None else sdll).to_bytes(4, "big")
    h[12:16] = inline.to_bytes(4, "big")
    return bytes(h) + t + s


def xcopy_cdb(n: int, sa: int = 0) -> bytes:
    return bytes([0x83, sa]) + bytes(8) + n.to_bytes(4, "big") + bytes(2)


def rcr_cdb(sa=3, list_id=0, alloc=1024) -> bytes:
    return bytes([0x84, sa, list_id]) + bytes(7) + alloc.to_bytes(4, "big") + bytes(2)


def rw16(op, lba, n) -> bytes:
    return bytes([op, 0]) + lba.to_bytes(8, "big") + n.to_bytes(4, "big") + bytes(2)


@dataclass
class Deve:
    lun: object
    #: the mapping's unit attentions (the engine reads them on every command)
    ua_list: list = field(default_factory=list)
    #: the mapping's counters (the engine counts every command in them)
    total_cmds: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass
class Acl:
    """What the engine reads of a node ACL: its mapped LUNs, newest first."""

    deves: dict = field(default_factory=dict)

    def report_luns(self):
        return list(reversed(list(self.deves)))


class Env:
    def __init__(self, pages=2048):
        self.sim = Sim()
        self.a = self.sim.rd_device(name="rd0", pages=pages, serial="1111aaaa-0001")
        self.b = self.sim.rd_device(name="rd1", pages=pages, serial="2222bbbb-0002")
        self.pa = self.sim.port(self.a, wwn=TWWN, lun=0)
        self.pb = self.sim.port(self.b, wwn=TWWN, lun=1)
        self.na = self.sim.nexus(INIT, self.pa)
        self.nb = self.sim.nexus(INIT, self.pb)

    def submit(self, dev, cdb, data=b"", nexus=None):
        nexus = nexus or (self.na if dev is self.a else self.nb)
        return self.sim.engine.submit(nexus, dev, cdb, data)

    def write(self, dev, lba, data):
        assert self.submit(dev, rw16(0x8A, lba, len(data) // 512), data).ok

    def read(self, dev, lba, n):
        r = self.submit(dev, rw16(0x88, lba, n))
        assert r.ok
        return r.data

    def xcopy(self, dev, plist, nexus=None, n=None, sa=0):
        return self.submit(dev, xcopy_cdb(len(plist) if n is None else n, sa), plist, nexus)

    def log(self) -> str:
        return self.sim.log.text()


@pytest.fixture
def env():
    e = Env()
    yield e
    e.sim.close()


def test_copy_pulls_from_the_other_device(env):
    data = os.urandom(8 * 512)
    env.write(env.a, 100, data)
    # received on the destination (b): the source is found among the port group's LUNs
    r = env.xcopy(env.b, params([cscd(env.a), cscd(env.b)], [seg(0, 1, 8, 100, 7)]))
    assert r.ok and r.data == b""
    assert env.read(env.b, 7, 8) == data
    assert env.read(env.b, 6, 1) == bytes(512) and env.read(env.b, 15, 1) == bytes(512)
    assert "XCOPY: Processed 1 segment descriptors, length: 28" in env.log()
    assert "XCOPY: Processed 2 target descriptors, length: 64" in env.log()


def test_copy_pushes_to_the_other_device_and_within_one(env):
    data = os.urandom(4 * 512)
    env.write(env.a, 0, data)
    assert env.xcopy(env.a, params([cscd(env.a), cscd(env.b)], [seg(0, 1, 4, 0, 50)])).ok
    assert env.read(env.b, 50, 4) == data
    # one descriptor naming the local device as source and destination
    assert env.xcopy(env.a, params([cscd(env.a)], [seg(0, 0, 4, 0, 900)])).ok
    assert env.read(env.a, 900, 4) == data


def test_zero_blocks_and_zero_length_do_nothing(env):
    assert env.xcopy(env.a, params([cscd(env.a), cscd(env.b)], [seg(0, 1, 0, 0, 10**9)])).ok
    assert env.xcopy(env.a, b"").ok
    assert env.submit(env.a, xcopy_cdb(0)).ok


def test_lookup_walks_the_acl_only(env):
    """With a node ACL the other device must be mapped to it (the kernel since 5.11 walks
    the session's lun_entry_hlist); a device of the same portal group is not enough."""
    data = os.urandom(512)
    env.write(env.a, 3, data)
    plist = params([cscd(env.a), cscd(env.b)], [seg(0, 1, 1, 3, 3)])
    only_a = Nexus(initiator=INIT, port=env.pa, acl=Acl({0: Deve(env.pa)}))
    r = env.xcopy(env.a, plist, nexus=only_a)
    assert r.sense_tuple() == NOT_REACHABLE
    assert env.read(env.b, 3, 1) == bytes(512)
    assert "Unable to locate 0xe4 descriptor for EXTENDED_COPY" in env.log()
    both = Nexus(initiator=INIT, port=env.pa, acl=Acl({0: Deve(env.pa), 1: Deve(env.pb)}))
    assert env.xcopy(env.a, plist, nexus=both).ok
    assert env.read(env.b, 3, 1) == data


def test_emulate_3pc_off_refuses_both_commands(env):
    env.sim.write("/target/core/rd_mcp_0/rd0/attrib/emulate_3pc", "0")
    plist = params([cscd(env.a), cscd(env.b)], [seg(0, 1, 1, 0, 0)])
    env.write(env.a, 0, b"\x55" * 512)
    assert env.xcopy(env.a, plist).sense_tuple() == INVALID_OPCODE
    assert "EXTENDED_COPY operation explicitly disabled" in env.log()
    assert env.submit(env.a, rcr_cdb()).sense_tuple() == INVALID_OPCODE
    assert env.read(env.b, 0, 1) == bytes(512)
    # the other device without 3PC is not found either
    r = env.xcopy(env.b, plist)
    assert r.sense_tuple() == NOT_REACHABLE
    assert "XCOPY: emulate_3pc disabled on se_dev" in env.log()
    # parsed before the check: a pending unit attention is reported first
    scsi_state(env.a).ua.allocate(env.na.key(), 0x29, 0x03)
    assert env.xcopy(env.a, plist).sense_tuple() == (S.UNIT_ATTENTION, 0x29, 0x03)


def test_lid4_and_short_header(env):
    assert env.xcopy(env.a, bytes(32), sa=1).sense_tuple() == INVALID_OPCODE
    assert "EXTENDED_COPY(LID4) not supported" in env.log()
    assert env.xcopy(env.a, bytes(15)).sense_tuple() == PLLE
    assert "XCOPY parameter truncation: length 15 < hdr_len 16" in env.log()


def test_cdb_longer_than_the_data_is_refused(env):
    plist = params([cscd(env.a), cscd(env.b)], [seg()])
    r = env.xcopy(env.a, plist, n=len(plist) + 1)
    assert r.sense_tuple() == INVALID_CDB
    assert "Rejecting overflow for WRITE control CDB" in env.log()


def _refusals(e: Env):
    A, B = cscd(e.a), cscd(e.b)
    return [
        (params([A, B], [seg()], tdll=64, sdll=1000), PLLE,
         "XCOPY descriptor list length 1064 exceeds maximum 1024"),
        (params([A, B], [seg()], inline=512), INVALID_PARAM,
         "XCOPY with non zero inline data length"),
        (params([A, B], [seg()])[:-1], PLLE,
         "XCOPY parameter truncation: data length 107 too small for tdll: 64 sdll: 28 "
         "inline_dl: 0"),
        (params([A, B], [seg()[:20]]), UNSUP_SEG,
         "XCOPY segment descriptor list length is not multiple of 28"),
        (params([A, B], [seg(), seg()]), TOO_MANY_SEG,
         "XCOPY supports 1 segment descriptor(s), sdll: 56 too large.."),
        (params([A, B], [seg(kind=0x03)]), UNSUP_SEG,
         "XCOPY unsupported segment descriptortype: 0x03"),
        (params([A, B], [seg(desc_len=0x14)]), INVALID_PARAM,
         "XCOPY segment desc 0x02: Illegal desc_len: 20"),
        (params([A, B], [seg(dtdi=0x800)]), INVALID_PARAM,
         "XCOPY segment desc 0x02: unsupported CSCD ID > 0x7ff; stdi: 0 dtdi: 2048"),
        (params([A, B], []), INVALID_PARAM, None),
        (params([A[:16]], [seg()]), UNSUP_TGT,
         "XCOPY target descriptor list length is not multiple of 32"),
        (params([A, B, B], [seg()]), TOO_MANY_TGT,
         "XCOPY target descriptor supports a maximum two src/dest descriptors, tdll: 96 "
         "too large.."),
        (params([b"\xe0" + A[1:], B], [seg()]), UNSUP_TGT,
         "XCOPY unsupported descriptor type code: 0xe0"),
        (params([cscd(e.a, code_set=2), B], [seg()]), INVALID_PARAM,
         "XCOPY 0xe4: code set of non binary type not supported"),
        (params([cscd(e.a, assoc_type=0x13), B], [seg()]), INVALID_PARAM,
         "XCOPY 0xe4: association other than LUN not supported"),
        (params([cscd(e.a, assoc_type=0x01), B], [seg()]), INVALID_PARAM,
         "XCOPY 0xe4: designator type unsupported: 0x01"),
        (params([cscd(e.a, length=8), B], [seg()]), INVALID_PARAM,
         "XCOPY 0xe4: invalid desig_len: 8"),
        (params([cscd(naa=b"\x50" + bytes(15)), B], [seg()]), INVALID_PARAM,
         "XCOPY 0xe4: Unsupported DESIGNATOR TYPE: 0x50"),
        (params([A], [seg()]), NOT_REACHABLE, "Unable to locate 0xe4 descriptor"),
        (params([B, B], [seg()]), NOT_REACHABLE,
         "XCOPY CSCD descriptor IDs not found in CSCD list - stdi: 0 dtdi: 1"),
        # no CSCD descriptor at all: neither index names the local device
        (params([], [seg()]), NOT_REACHABLE,
         "XCOPY CSCD descriptor IDs not found in CSCD list - stdi: 0 dtdi: 1"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_parameter_list_refusals(env, case):
    plist, want, line = _refusals(env)[case]
    env.write(env.a, 0, b"\xaa" * 4096)
    r = env.xcopy(env.a, plist)
    assert r.sense_tuple() == want
    if line is not None:
        assert line in env.log()
    tcm = {PLLE: 19, INVALID_PARAM: 9, UNSUP_SEG: 28, TOO_MANY_SEG: 27, UNSUP_TGT: 26,
           TOO_MANY_TGT: 25, NOT_REACHABLE: 24}[want]
    assert f"target_xcopy_do_work: rc: 0, sense: {tcm}, XCOPY operation failed" in env.log()
    assert env.read(env.b, 0, 8) == bytes(4096)


def test_block_size_mismatch_is_communication_failure(env):
    base = "/target/core/fileio_0"
    env.sim.mkdir(base)
    env.sim.mkdir(f"{base}/c0")
    env.sim.write(f"{base}/c0/control",
                  f"fd_dev_name={env.sim.state_dir / 'c.img'},fd_dev_size={8 << 20}")
    env.sim.write(f"{base}/c0/wwn/vpd_unit_serial", "3333cccc-0003")
    env.sim.write(f"{base}/c0/enable", "1")
    env.sim.write(f"{base}/c0/attrib/block_size", "4096")  # allowed until it is exported
    c = env.sim.core.hbas["fileio_0"].devices["c0"]
    assert c.attrib.block_size == 4096
    env.sim.port(c, wwn=TWWN, lun=2)
    r = env.xcopy(env.a, params([cscd(env.a), cscd(c)], [seg(0, 1, 1, 0, 0)]))
    assert r.sense_tuple() == LUCF
    assert ("XCOPY: Non matching src_dev block_size: 512 + dst_dev block_size: 4096 "
            "currently unsupported") in env.log()


def test_copy_past_the_end_is_copy_aborted_and_writes_nothing(env):
    env.write(env.a, 0, b"\x11" * 4096)
    last = env.b.get_blocks()
    r = env.xcopy(env.a, params([cscd(env.a), cscd(env.b)], [seg(0, 1, 8, 0, last - 1)]))
    assert r.sense_tuple() == NOT_REACHABLE
    assert f"cmd exceeds last lba {last + 1} (lba {last - 1}, sectors 8)" in env.log()
    assert "target_xcopy_do_work: rc: -22, sense: 24, XCOPY operation failed" in env.log()
    assert env.read(env.b, last - 1, 2) == bytes(1024)


def test_chunks_before_a_failure_stay_copied():
    """16 MiB chunks: a 40000-block copy whose second chunk runs off the end leaves the
    first 32768 blocks copied (the kernel stops at the failing pass-through command)."""
    e = Env(pages=16384)  # 64 MiB each
    try:
        first = os.urandom(512)
        e.write(e.a, 0, first)
        e.write(e.a, 32767, b"\x22" * 512)
        dst = e.b.get_blocks() + 1 - 35000
        r = e.xcopy(e.a, params([cscd(e.a), cscd(e.b)], [seg(0, 1, 40000, 0, dst)]))
        assert r.sense_tuple() == NOT_REACHABLE
        assert e.read(e.b, dst, 1) == first
        assert e.read(e.b, dst + 32767, 1) == b"\x22" * 512
    finally:
        e.sim.close()


def test_reservation_of_another_initiator_stops_the_copy(env):
    """The copy's own session holds no registration: a Write Exclusive reservation on the
    destination makes its WRITE(16) conflict."""
    from simfs.scsi import cdbs
    other = env.sim.nexus("iqn.1994-05.com.redhat:other", env.pb)
    cdb, prm = cdbs.pr_out(0, sa_key=0x1234)
    assert env.sim.engine.submit(other, env.b, cdb, prm).ok
    cdb, prm = cdbs.pr_out(1, key=0x1234, pr_type=1)
    assert env.sim.engine.submit(other, env.b, cdb, prm).ok
    env.write(env.a, 0, b"\x33" * 512)
    r = env.xcopy(env.a, params([cscd(env.a), cscd(env.b)], [seg(0, 1, 1, 0, 0)]))
    assert r.sense_tuple() == NOT_REACHABLE
    assert env.sim.engine.submit(other, env.b, rw16(0x88, 0, 1)).data == bytes(512)


def test_receive_copy_results_operating_parameters(env):
    r = env.submit(env.a, rcr_cdb(alloc=1024))
    assert r.ok and len(r.data) == 1024
    d = r.data
    assert int.from_bytes(d[0:4], "big") == 42 and d[4] == 1
    assert int.from_bytes(d[8:10], "big") == 2 and int.from_bytes(d[10:12], "big") == 1
    assert int.from_bytes(d[12:16], "big") == 1024
    assert int.from_bytes(d[16:20], "big") == 256 << 20
    assert d[20:34] == bytes(14) and int.from_bytes(d[34:36], "big") == 1 and d[36] == 1
    assert d[37:40] == bytes([9, 9, 9]) and d[43] == 2 and d[44:46] == b"\x02\xe4"
    assert d[46:] == bytes(1024 - 46)
    assert env.submit(env.a, rcr_cdb(alloc=60)).data == d[:60]


@pytest.mark.parametrize("cdb,line", [
    (rcr_cdb(alloc=53), "Receive Copy Results Op Parameters length too small: 53"),
    (rcr_cdb(list_id=1), "Receive Copy Results with non zero list identifier not supported"),
    (rcr_cdb(sa=0), "Unsupported SA for receive copy results: 0x00"),
    (rcr_cdb(sa=1), "Unsupported SA for receive copy results: 0x01"),
    (rcr_cdb(sa=4), "Unsupported SA for receive copy results: 0x04"),
])
def test_receive_copy_results_refusals(env, cdb, line):
    assert env.submit(env.a, cdb).sense_tuple() == INVALID_CDB
    assert line in env.log()


def test_report_supported_opcodes_lists_3pc_while_enabled(env):
    one = bytes([0xA3, 0x0C, 0x02, 0x83, 0, 0, 0, 0, 1, 0, 0, 0])
    assert env.submit(env.a, one).data[1] & 0x07 == 3  # supported per standard
    env.sim.write("/target/core/rd_mcp_0/rd0/attrib/emulate_3pc", "0")
    assert env.submit(env.a, one).data[1] & 0x07 == 1  # not supported


def test_opposite_copies_take_the_io_locks_in_one_order(env):
    import threading
    env.write(env.a, 0, b"\x44" * 512)
    env.write(env.b, 10, b"\x55" * 512)
    results = []

    def run(dev, plist):
        results.append(env.xcopy(dev, plist).ok)

    t1 = threading.Thread(target=run, args=(env.a, params([cscd(env.a), cscd(env.b)],
                                                          [seg(0, 1, 1, 0, 20)])))
    t2 = threading.Thread(target=run, args=(env.b, params([cscd(env.b), cscd(env.a)],
                                                          [seg(0, 1, 1, 10, 30)])))
    for t in (t1, t2):
        t.start()
    for t in (t1, t2):
        t.join(timeout=30)
    assert results == [True, True]
    assert env.read(env.b, 20, 1) == b"\x44" * 512 and env.read(env.a, 30, 1) == b"\x55" * 512


def test_xcopy_module_limits_match_the_kernel():
    assert (xcopy.RCR_OP_MAX_TARGET_DESC_COUNT, xcopy.RCR_OP_MAX_SG_DESC_COUNT,
            xcopy.RCR_OP_MAX_DESC_LIST_LEN, xcopy.XCOPY_MAX_BYTES) == (2, 1, 1024, 16 << 20)
