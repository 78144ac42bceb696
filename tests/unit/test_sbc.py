"""SBC commands through the engine (sim.engine.submit) on rd_mcp, fileio and iblock.

Expected values follow the modern kernel's target_core_sbc.c / target_core_file.c /
target_core_iblock.c / target_core_rd.c and target_cmd_size_check.
"""
from __future__ import annotations

import os
import subprocess
import struct

import pytest

from simfs.scsi import status as S
from simfs.testing import Sim

INI = "iqn.1994-05.com.redhat:init1"
GOOD = S.GOOD
CC = S.CHECK_CONDITION
ILLEGAL = S.ILLEGAL_REQUEST
INVALID_CDB = (ILLEGAL, 0x24, 0x00)
UNSUPPORTED = (ILLEGAL, 0x20, 0x00)
OUT_OF_RANGE = (ILLEGAL, 0x21, 0x00)
INVALID_CMD_IU = (ILLEGAL, 0x0E, 0x03)


# -- CDB builders --------------------------------------------------------------------------
def read10(lba, n, flags=0):
    return struct.pack(">BBIBHB", 0x28, flags, lba, 0, n, 0)


def write10(lba, n, flags=0):
    return struct.pack(">BBIBHB", 0x2A, flags, lba, 0, n, 0)


def read16(lba, n, flags=0):
    return struct.pack(">BBQIBB", 0x88, flags, lba, n, 0, 0)


def write16(lba, n, flags=0):
    return struct.pack(">BBQIBB", 0x8A, flags, lba, n, 0, 0)


def read12(lba, n):
    return struct.pack(">BBIIBB", 0xA8, 0, lba, n, 0, 0)


def write12(lba, n):
    return struct.pack(">BBIIBB", 0xAA, 0, lba, n, 0, 0)


def read6(lba, n):
    return bytes([0x08, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, n & 0xFF, 0])


def write6(lba, n):
    return bytes([0x0A, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, n & 0xFF, 0])


def write_same10(lba, n, flags=0):
    return struct.pack(">BBIBHB", 0x41, flags, lba, 0, n, 0)


def write_same16(lba, n, flags=0):
    return struct.pack(">BBQIBB", 0x93, flags, lba, n, 0, 0)


def unmap(param_len, anchor=0):
    return struct.pack(">BBIBHB", 0x42, anchor, 0, 0, param_len, 0)


def unmap_params(*ranges):
    descs = b"".join(struct.pack(">QII", lba, n, 0) for lba, n in ranges)
    return struct.pack(">HH4x", 6 + len(descs), len(descs)) + descs


def caw(lba, n=1, flags=0):
    return struct.pack(">BBQBBBBBB", 0x89, flags, lba, 0, 0, 0, n, 0, 0)


def rc10(lba=0, pmi=0):
    return struct.pack(">BBIHBB", 0x25, 0, lba, 0, pmi, 0)


def rc16(alloc=32):
    return struct.pack(">BBQIBB", 0x9E, 0x10, 0, alloc, 0, 0)


def sync10(lba=0, n=0, immed=0):
    return struct.pack(">BBIBHB", 0x35, immed, lba, 0, n, 0)


def sync16(lba=0, n=0):
    return struct.pack(">BBQIBB", 0x91, 0, lba, n, 0, 0)


def verify10(lba, n, bytchk=0):
    return struct.pack(">BBIBHB", 0x2F, bytchk << 1, lba, 0, n, 0)


def verify16(lba, n):
    return struct.pack(">BBQIBB", 0x8F, 0, lba, n, 0, 0)


# -- fixtures ------------------------------------------------------------------------------
class Rig:
    def __init__(self, sim, dev, port=None):
        self.sim, self.dev = sim, dev
        self.port = port or sim.port(dev)
        self.nexus = sim.nexus(INI, self.port)

    def run(self, cdb, data=b""):
        return self.sim.engine.submit(self.nexus, self.dev, cdb, data)

    def ok(self, cdb, data=b""):
        r = self.run(cdb, data)
        assert r.status == GOOD, (r, r.sense_tuple())
        return r.data

    def fails(self, cdb, data=b"", expect=None):
        r = self.run(cdb, data)
        assert r.status == CC, r
        if expect is not None:
            assert r.sense_tuple() == expect
        return r

    def log(self):
        return "\n".join(self.sim.log.lines)


@pytest.fixture
def sim(tmp_path):
    s = Sim(state_dir=tmp_path / "state")
    yield s
    s.close()


@pytest.fixture
def rd(sim):
    return Rig(sim, sim.rd_device())


def attr(sim, dev, name, value):
    sim.write(f"/target/core/{dev.hba.name}/{dev.name}/attrib/{name}", value)


@pytest.fixture
def fio(sim, tmp_path):
    path = tmp_path / "disk.img"
    dev = sim.fileio_device(path)
    r = Rig(sim, dev)
    r.path = path
    return r


def pattern(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


# -- READ / WRITE ----------------------------------------------------------------------------
def test_write_read_roundtrip_all_sizes_rd(rd):
    blk = pattern(512, 1)
    rd.ok(write6(1, 1), blk)
    rd.ok(write10(2, 1), blk[::-1])
    rd.ok(write12(3, 1), b"\x12" * 512)
    rd.ok(write16(4, 1), b"\x34" * 512)
    data = rd.ok(read16(1, 4))
    assert data == blk + blk[::-1] + b"\x12" * 512 + b"\x34" * 512
    assert rd.ok(read6(1, 1)) == blk
    assert rd.ok(read10(3, 1)) == b"\x12" * 512
    assert rd.ok(read12(4, 1)) == b"\x34" * 512
    # untouched blocks of an rd_mcp device read as zeros
    assert rd.ok(read10(100, 2)) == bytes(1024)


def test_read6_transfer_length_zero_means_256_blocks(rd):
    data = rd.ok(read6(0, 0))
    assert len(data) == 256 * 512
    # WRITE(6) too: 0 = 256 blocks, so a 512-byte buffer is an underflow of a data CDB
    rd.fails(write6(0, 0), b"x" * 512, INVALID_CMD_IU)
    rd.ok(write6(0, 0), b"\x5a" * (256 * 512))
    assert rd.ok(read10(255, 1)) == b"\x5a" * 512


def test_statistics_count_transferred_bytes(rd):
    before_r, before_w = rd.dev.read_bytes, rd.dev.write_bytes
    rd.ok(write10(0, 2), bytes(1024))
    rd.ok(read10(0, 3))
    assert rd.dev.write_bytes - before_w == 1024
    assert rd.dev.read_bytes - before_r == 1536


def test_lba_out_of_range(rd):
    last = rd.dev.get_blocks()
    assert last == 8 * 1024 * 1024 // 512 - 1
    rd.ok(read10(last, 1))
    rd.fails(read10(last, 2), expect=OUT_OF_RANGE)
    # zero blocks just past the end pass (lba + 0 == end), one further does not
    rd.ok(read10(last + 1, 0))
    rd.fails(read10(last + 2, 0), expect=OUT_OF_RANGE)
    rd.fails(write10(last, 2), bytes(1024), expect=OUT_OF_RANGE)
    # 64-bit wrap-around is caught too
    rd.fails(read16(2**64 - 1, 2), expect=OUT_OF_RANGE)
    assert f"cmd exceeds last lba {last + 1} (lba {last}, sectors 2)" in rd.log()
    # fixed-format sense, no INFORMATION
    r = rd.fails(read10(last, 2))
    assert r.sense[0] == 0x70 and r.sense[2] == ILLEGAL and r.sense[12:14] == b"\x21\x00"


def test_zero_length_rw_is_good(rd):
    assert rd.ok(read10(0, 0)) == b""
    rd.ok(write10(0, 0))


def test_transfer_length_mismatch_on_write(rd):
    # underflow and overflow of a WRITE data CDB: INVALID FIELD IN COMMAND IU
    rd.fails(write10(0, 1), bytes(1024), INVALID_CMD_IU)
    rd.fails(write10(0, 2), bytes(512), INVALID_CMD_IU)
    rd.fails(write10(0, 1), b"", INVALID_CMD_IU)
    assert "Rejecting underflow/overflow for WRITE data CDB" in rd.log()
    assert ("TARGET_CORE[iSCSI]: Expected Transfer Length: 1024 does not match SCSI CDB "
            "Length: 512 for SAM Opcode: 0x2a") in rd.log()
    # nothing was written
    assert rd.ok(read10(0, 2)) == bytes(1024)


def test_no_transfer_length_limit_at_parse(rd):
    # modern sbc_parse_cdb has no hw_max_sectors check: 8 MiB in one READ works on rd
    n = rd.dev.get_blocks() + 1
    assert n > rd.dev.attrib.hw_max_sectors or rd.dev.attrib.hw_max_sectors > 1024
    data = rd.ok(read16(0, 4096))
    assert len(data) == 4096 * 512


def test_fileio_io_above_fd_max_bytes_fails(fio):
    # 8 MiB is fine, one block more is refused by fd_execute_rw
    assert len(fio.ok(read16(0, 16384))) == 8 << 20
    fio.fails(read16(0, 16385), expect=(S.NOT_READY, 0x08, 0x00))
    assert ("FILEIO: Not able to process I/O of 8389120 bytes due toFD_MAX_BYTES: 8388608 "
            "iovec count limitation") in fio.log()


def test_write_protect_port_and_read_only_device(sim):
    dev = sim.rd_device()
    r = Rig(sim, dev)
    r.ok(write10(7, 1), b"\x01" * 512)
    r.port.write_protect = True
    r.fails(write10(7, 1), b"\x02" * 512, (S.DATA_PROTECT, 0x27, 0x00))
    # a write on a write-protected LUN is refused before its CDB is even looked at
    r.fails(write10(2**32 - 1, 9), b"\x02" * 512, (S.DATA_PROTECT, 0x27, 0x00))
    r.fails(write_same10(0, 1), b"\x02" * 512, (S.DATA_PROTECT, 0x27, 0x00))
    r.fails(caw(0), bytes(1024), (S.DATA_PROTECT, 0x27, 0x00))
    assert r.ok(read10(7, 1)) == b"\x01" * 512
    assert "TARGET_CORE[iSCSI]: Detected WRITE_PROTECTED LUN Access for 0x00000000" in r.log()
    r.port.write_protect = False
    dev.read_only = True
    r.fails(write16(7, 1), b"\x02" * 512, (S.DATA_PROTECT, 0x27, 0x00))
    assert r.ok(read10(7, 1)) == b"\x01" * 512


def test_fua_and_dpo_need_write_cache(fio):
    # fileio O_DSYNC: no write cache -> target_check_fua is false -> FUA/DPO refused
    fio.fails(write10(0, 1, flags=0x08), bytes(512), INVALID_CDB)
    fio.fails(read10(0, 1, flags=0x10), expect=INVALID_CDB)
    assert ("Got CDB: 0x2a with FUA bit set, but device does not advertise support for FUA "
            "write") in fio.log()
    assert "Got CDB: 0x28 with DPO bit set, but device does not advertise support for DPO" \
        in fio.log()


def test_fua_write_reaches_backend_with_buffered_fileio(sim, tmp_path):
    dev = sim.fileio_device(tmp_path / "b.img", buffered=True)
    assert dev.attrib.emulate_write_cache == 1
    r = Rig(sim, dev)
    calls = []
    real = dev.bdev.write

    def spy(offset, data, fua=False):
        calls.append((offset, len(data), fua))
        return real(offset, data, fua)

    dev.bdev.write = spy
    r.ok(write10(3, 1, flags=0x08), b"F" * 512)
    r.ok(write10(4, 1), b"G" * 512)
    assert calls == [(3 * 512, 512, True), (4 * 512, 512, False)]
    # FUA honoured on READ too (accepted), DPO accepted
    r.ok(read10(3, 1, flags=0x18))
    # emulate_fua_write=0 -> FUA refused again
    attr(sim, dev, "emulate_fua_write", "0")
    r.fails(write10(3, 1, flags=0x08), b"F" * 512, INVALID_CDB)


def test_protect_field_without_pi(rd):
    rd.fails(read10(0, 1, flags=0x20), expect=INVALID_CDB)
    assert ("CDB contains protect bit, but device + fabric does not advertise PROTECT=1 "
            "feature bit") in rd.log()


# -- fileio data lands in the file -------------------------------------------------------------
def test_fileio_write_changes_file_and_persists(sim, tmp_path, fio):
    blk = pattern(1024, 3)
    fio.ok(write10(10, 2), blk)
    with open(fio.path, "rb") as f:
        f.seek(10 * 512)
        assert f.read(1024) == blk
    assert fio.ok(read10(10, 2)) == blk
    # the file stays sparse and is never extended to fd_dev_size
    assert os.path.getsize(fio.path) == 12 * 512
    sim.close()
    assert fio.path.read_bytes()[5120:6144] == blk
    sim2 = Sim(state_dir=tmp_path / "state2")
    try:
        dev2 = sim2.fileio_device(fio.path)
        r2 = Rig(sim2, dev2)
        assert r2.ok(read10(10, 2)) == blk
        assert r2.ok(read10(0, 1)) == bytes(512)
    finally:
        sim2.close()


def test_fileio_block_size_4096(sim, tmp_path):
    path = tmp_path / "4k.img"
    dev = sim.fileio_device(path)
    attr(sim, dev, "block_size", "4096")
    r = Rig(sim, dev)
    assert dev.get_blocks() == (16 << 20) // 4096 - 1
    assert r.ok(rc10()) == struct.pack(">II", 4095, 4096)
    rc = r.ok(rc16())
    assert struct.unpack(">QI", rc[:12]) == (4095, 4096)
    blk = pattern(4096, 9)
    r.ok(write10(3, 1), blk)
    with open(path, "rb") as f:
        f.seek(3 * 4096)
        assert f.read(4096) == blk
    assert r.ok(read10(3, 1)) == blk
    r.fails(write10(3, 1), bytes(512), INVALID_CMD_IU)
    r.fails(read10(4095, 2), expect=OUT_OF_RANGE)
    assert dev.attrib.hw_block_size == 512


# -- READ CAPACITY ------------------------------------------------------------------------------
def test_read_capacity_10_and_16_rd(rd):
    assert rd.ok(rc10()) == bytes.fromhex("00003fff00000200")
    data = rd.ok(rc16())
    assert data == bytes.fromhex("0000000000003fff00000200") + bytes(20)
    # allocation length truncates
    assert rd.ok(rc16(alloc=12)) == bytes.fromhex("0000000000003fff00000200")
    # PMI=0 with a non-zero LBA: INVALID FIELD IN CDB (SBC-2 rule the kernel keeps)
    rd.fails(rc10(lba=5), expect=INVALID_CDB)
    assert rd.ok(rc10(lba=5, pmi=1)) == bytes.fromhex("00003fff00000200")


def test_read_capacity_beyond_32_bits(sim, tmp_path):
    path = tmp_path / "huge.img"
    dev = sim.fileio_device(path, size=3 << 40)
    r = Rig(sim, dev)
    last = (3 << 40) // 512 - 1
    assert r.ok(rc10()) == bytes.fromhex("ffffffff00000200")
    assert struct.unpack(">QI", r.ok(rc16())[:12]) == (last, 512)
    # the file is not extended to the device size
    assert os.path.getsize(path) == 0
    # devices beyond 2^32 blocks answer with descriptor-format sense
    res = r.fails(read16(last, 2))
    assert res.sense[0] == 0x72 and res.sense_tuple() == OUT_OF_RANGE


def test_read_capacity_16_lbpme_lbprz(sim, fio):
    dev = fio.dev
    assert fio.ok(rc16())[14] == 0x00
    attr(sim, dev, "emulate_tpws", "1")
    assert fio.ok(rc16())[14] == 0x80
    dev.attrib.unmap_zeroes_data = 1  # exported now: the attribute would refuse the write
    assert fio.ok(rc16())[14] == 0xC0
    attr(sim, dev, "emulate_tpws", "0")
    # LBPRZ only accompanies LBPME
    assert fio.ok(rc16())[14] == 0x00


def test_service_action_in_unsupported_sa(rd):
    # GET LBA STATUS is not emulated by the kernel: INVALID FIELD IN CDB
    rd.fails(struct.pack(">BBQIBB", 0x9E, 0x12, 0, 24, 0, 0), expect=INVALID_CDB)
    assert "Unsupported SA: 0x12" in rd.log()


def test_report_referrals(sim, rd):
    cdb = struct.pack(">BBQIBB", 0x9E, 0x13, 0, 64, 0, 0)
    rd.fails(cdb, expect=UNSUPPORTED)  # no LBA map
    path = f"/target/core/{rd.dev.hba.name}/{rd.dev.name}/lba_map"
    sim.write(path, "512 1\n0 511 0:O\n512 1023 0:S\n")
    data = rd.ok(cdb)
    assert data == (bytes.fromhex("00000030")
                    + bytes.fromhex("00000001") + (0).to_bytes(8, "big")
                    + (511).to_bytes(8, "big") + bytes.fromhex("00000000")
                    + bytes.fromhex("00000001") + (512).to_bytes(8, "big")
                    + (1023).to_bytes(8, "big") + bytes.fromhex("02000000"))
    rd.fails(struct.pack(">BBQIBB", 0x9E, 0x13, 0, 3, 0, 0), expect=INVALID_CDB)


def test_write_same_32(sim, fio):
    cdb = bytearray(32)
    cdb[0], cdb[7], cdb[9] = 0x7F, 0x18, 0x0D
    cdb[12:20] = (40).to_bytes(8, "big")
    cdb[28:32] = (2).to_bytes(4, "big")
    fio.ok(bytes(cdb), b"\x42" * 512)
    assert fio.ok(read10(40, 2)) == b"\x42" * 1024
    cdb[9] = 0x09  # another variable-length service action
    fio.fails(bytes(cdb), expect=UNSUPPORTED)
    assert "VARIABLE_LENGTH_CMD service action 0x0009 not supported" in fio.log()


# -- VERIFY / SYNCHRONIZE CACHE / misc ---------------------------------------------------------
def test_verify_is_a_range_checked_noop(rd):
    last = rd.dev.get_blocks()
    rd.ok(verify10(0, 8))
    rd.ok(verify16(last, 1))
    rd.fails(verify10(last, 2), expect=OUT_OF_RANGE)
    # BYTCHK=1 with data that does not match the medium: the kernel never compares
    rd.ok(write10(0, 1), b"\x11" * 512)
    rd.ok(verify10(0, 1, bytchk=1), b"\x22" * 512)
    # ... but a short data-out buffer for a control CDB is an overflow
    rd.fails(verify10(0, 2, bytchk=1), b"\x22" * 512, INVALID_CDB)


def test_verify_12_and_write_verify_12_unsupported(rd):
    rd.fails(struct.pack(">BBIIBB", 0xAF, 0, 0, 1, 0, 0), expect=UNSUPPORTED)
    rd.fails(struct.pack(">BBIIBB", 0xAE, 0, 0, 1, 0, 0), bytes(512), expect=UNSUPPORTED)


def test_write_and_verify_writes(fio):
    fio.ok(struct.pack(">BBIBHB", 0x2E, 0x02, 5, 0, 1, 0), b"V" * 512)
    fio.ok(struct.pack(">BBQIBB", 0x8E, 0x02, 6, 1, 0, 0), b"W" * 512)
    assert fio.ok(read10(5, 2)) == b"V" * 512 + b"W" * 512


def test_synchronize_cache(sim, fio, rd):
    flushed = []
    real = fio.dev.bdev.flush
    fio.dev.bdev.flush = lambda: (flushed.append(1), real())[1]
    fio.ok(sync10())
    fio.ok(sync16(100, 8))
    fio.ok(sync10(immed=0x02))
    assert len(flushed) == 3
    last = fio.dev.get_blocks()
    fio.fails(sync10(last, 2), expect=OUT_OF_RANGE)
    # rd_mcp has no execute_sync_cache: a no-op without any LBA check
    rd.ok(sync16(2**40, 1))


def test_start_stop_and_legacy_noops(rd):
    rd.ok(bytes([0x1B, 0x01, 0, 0, 0x01, 0]))
    rd.fails(bytes([0x1B, 0x00, 0, 0, 0x01, 0]), expect=INVALID_CDB)
    rd.fails(bytes([0x1B, 0x01, 0, 0, 0x00, 0]), expect=INVALID_CDB)
    rd.fails(bytes([0x1B, 0x01, 0, 0, 0x03, 0]), expect=INVALID_CDB)
    rd.ok(bytes([0x01, 0, 0, 0, 0, 0]))  # REZERO UNIT
    rd.ok(bytes([0x2B] + [0] * 9))  # SEEK(10)


# -- WRITE SAME --------------------------------------------------------------------------------
def test_write_same_fileio(fio):
    blk = pattern(512, 5)
    fio.ok(write16(9, 6), b"\xee" * (6 * 512))
    fio.ok(write_same10(10, 4), blk)
    assert fio.ok(read10(9, 6)) == b"\xee" * 512 + blk * 4 + b"\xee" * 512
    fio.ok(write_same16(20, 3), b"\x77" * 512)
    with open(fio.path, "rb") as f:
        f.seek(20 * 512)
        assert f.read(3 * 512) == b"\x77" * 1536


def test_write_same_checks(fio):
    last = fio.dev.get_blocks()
    assert fio.dev.attrib.max_write_same_len == 0x1000
    fio.fails(write_same10(0, 0), bytes(512), INVALID_CDB)  # WSNZ
    fio.fails(write_same16(0, 0x1001), bytes(512), INVALID_CDB)
    assert "WRITE_SAME sectors: 4097 exceeds max_write_same_len: 4096" in fio.log()
    fio.fails(write_same16(last, 2), bytes(512), OUT_OF_RANGE)
    fio.fails(write_same16(0, 1, flags=0x10), bytes(512), INVALID_CDB)  # ANCHOR
    fio.fails(write_same16(0, 1, flags=0x01), bytes(512), INVALID_CDB)  # NDOB
    fio.fails(write_same16(0, 1, flags=0x02), bytes(512), UNSUPPORTED)  # LBDATA
    fio.fails(write_same16(0, 1, flags=0x08), bytes(512), UNSUPPORTED)  # UNMAP w/o tpws
    assert "Got WRITE_SAME w/ UNMAP=1, but backend device has emulate_tpws disabled" \
        in fio.log()
    # the single block must be exactly one logical block
    fio.fails(write_same10(0, 1), bytes(256), INVALID_CDB)  # overflow of a control CDB
    fio.fails(write_same10(0, 1), bytes(1024), INVALID_CDB)  # illegal SGL at execute
    assert "WRITE_SAME: Illegal SGL t_data_nents: 1 length: 1024 block_size: 512" in fio.log()


def test_write_same_rd_not_supported(rd):
    # rd_mcp: max_write_same_len stays 0 and it has no execute_write_same
    rd.fails(write_same10(0, 1), bytes(512), INVALID_CDB)
    rd.dev.attrib.max_write_same_len = 0x10
    rd.fails(write_same10(0, 1), bytes(512), UNSUPPORTED)


def _allocated(path):
    return os.stat(path).st_blocks * 512


def test_write_same_unmap_punches_hole(sim, fio):
    attr(sim, fio.dev, "emulate_tpws", "1")
    fio.ok(write16(0, 2048), b"\xab" * (1 << 20))
    os.fsync(os.open(fio.path, os.O_RDONLY))
    before = _allocated(fio.path)
    assert before >= 1 << 20
    fio.ok(write_same16(0, 2048, flags=0x08), b"\x00" * 512)
    assert _allocated(fio.path) <= before - (1 << 20) + 4096
    assert fio.ok(read10(0, 8)) == bytes(4096)


# -- UNMAP -------------------------------------------------------------------------------------
def test_unmap_punches_holes_in_fileio_file(sim, fio):
    fio.fails(unmap(24), unmap_params((0, 8)), UNSUPPORTED)  # emulate_tpu=0
    assert "Got UNMAP, but backend device has emulate_tpu disabled" in fio.log()
    attr(sim, fio.dev, "emulate_tpu", "1")
    fio.ok(write16(0, 4096), b"\xcd" * (2 << 20))
    before = _allocated(fio.path)
    assert before >= 2 << 20
    fio.ok(unmap(24), unmap_params((1024, 2048)))
    after = _allocated(fio.path)
    assert after <= before - (1 << 20)
    assert fio.ok(read10(1024, 1)) == bytes(512)
    assert fio.ok(read10(1023, 1)) == b"\xcd" * 512
    assert fio.ok(read10(3072, 1)) == b"\xcd" * 512
    # the file keeps its size (FALLOC_FL_KEEP_SIZE)
    assert os.path.getsize(fio.path) == 2 << 20


def test_unmap_parameter_checks(sim, fio):
    attr(sim, fio.dev, "emulate_tpu", "1")
    a = fio.dev.attrib
    assert (a.max_unmap_lba_count, a.max_unmap_block_desc_count) == (0x2000, 1)
    last = fio.dev.get_blocks()
    fio.ok(unmap(0))  # empty parameter list: GOOD
    fio.fails(unmap(4), bytes(4), (ILLEGAL, 0x1A, 0x00))  # < 8: PARAMETER LIST LENGTH
    assert "UNMAP parameter list length 4 too small" in fio.log()
    fio.fails(unmap(40), unmap_params((0, 1), (8, 1)), (ILLEGAL, 0x26, 0x00))  # 2 > 1 desc
    fio.fails(unmap(24), unmap_params((0, 0x2001)), (ILLEGAL, 0x26, 0x00))
    fio.fails(unmap(24), unmap_params((last, 2)), OUT_OF_RANGE)
    fio.fails(unmap(24, anchor=1), unmap_params((0, 1)), INVALID_CDB)
    fio.ok(unmap(24), unmap_params((last, 1)))
    fio.ok(unmap(24), unmap_params((5, 0)))  # a zero range is skipped
    # parameter list longer than the data sent: overflow of a control CDB
    fio.fails(unmap(24), unmap_params((0, 1))[:16], INVALID_CDB)
    # bd_dl larger than the buffer: warned and ignored
    p = bytearray(unmap_params((0, 1)))
    p[2:4] = (64).to_bytes(2, "big")
    fio.ok(unmap(24), bytes(p))
    assert "UNMAP parameter list length 24 too small, ignoring bd_dl 64" in fio.log()


def test_unmap_rd_unsupported(sim, rd):
    attr(sim, rd.dev, "max_unmap_block_desc_count", "1")
    attr(sim, rd.dev, "emulate_tpu", "1")
    rd.fails(unmap(24), unmap_params((0, 1)), UNSUPPORTED)


# -- COMPARE AND WRITE -----------------------------------------------------------------------
def test_compare_and_write_match_and_miscompare(rd):
    old = b"A" * 512
    rd.ok(write10(5, 1), old)
    rd.ok(caw(5), old + b"B" * 512)
    assert rd.ok(read10(5, 1)) == b"B" * 512
    cmp = bytearray(b"B" * 512)
    cmp[100] = ord("X")
    r = rd.fails(caw(5), bytes(cmp) + b"C" * 512, (S.MISCOMPARE, 0x1D, 0x00))
    # INFORMATION = offset of the first differing byte (VALID set)
    assert r.sense[0] == 0xF0 and r.sense[3:7] == (100).to_bytes(4, "big")
    assert rd.ok(read10(5, 1)) == b"B" * 512
    assert "Detected MISCOMPARE at offset 100" in rd.log()
    # an outside decoder agrees (sg3_utils)
    dec = subprocess.run(["sg_decode_sense", "-n", r.sense.hex()], capture_output=True,
                         text=True, check=True).stdout
    assert "Sense key: Miscompare" in dec and "Miscompare during verify operation" in dec
    assert "Info fld=0x64 [100]" in dec


def test_compare_and_write_checks(sim, rd):
    last = rd.dev.get_blocks()
    rd.fails(caw(0, n=2), bytes(2048), INVALID_CDB)
    assert "COMPARE_AND_WRITE contains NoLB: 2 greater than 1" in rd.log()
    rd.fails(caw(0), bytes(512), INVALID_CMD_IU)  # data-out must be both halves
    rd.fails(caw(last + 1), bytes(1024), OUT_OF_RANGE)
    rd.ok(caw(0, n=0))  # NoLB 0 is not an error
    attr(sim, rd.dev, "emulate_caw", "0")
    rd.fails(caw(0), bytes(1024), UNSUPPORTED)
    assert ("se_device rd_mcp/rd0 (vpd_unit_serial a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4) "
            "reject COMPARE_AND_WRITE") in rd.log()


def test_compare_and_write_fileio(fio):
    fio.ok(write10(7, 1), b"1" * 512)
    fio.ok(caw(7), b"1" * 512 + b"2" * 512)
    with open(fio.path, "rb") as f:
        f.seek(7 * 512)
        assert f.read(512) == b"2" * 512


# -- iblock on a loop device -------------------------------------------------------------------
def test_iblock_loop_device(sim, loopdev):
    base = "/target/core/iblock_0/ib0"
    sim.mkdir("/target/core/iblock_0")
    sim.mkdir(base)
    sim.write(f"{base}/control", f"udev_path={loopdev}")
    sim.write(f"{base}/enable", "1")
    dev = sim.core.hbas["iblock_0"].devices["ib0"]
    r = Rig(sim, dev)
    assert r.ok(rc10()) == struct.pack(">II", (32 << 20) // 512 - 1, 512)
    rc = r.ok(rc16())
    assert struct.unpack(">QI", rc[:12]) == ((32 << 20) // 512 - 1, 512) and rc[13] == 0
    blk = pattern(2048, 11)
    r.ok(write10(100, 4), blk)
    assert r.ok(read10(100, 4)) == blk
    r.ok(sync10())
    fd = os.open(loopdev, os.O_RDONLY)
    try:
        assert os.pread(fd, 2048, 100 * 512) == blk
    finally:
        os.close(fd)
    r.ok(caw(100), blk[:512] + b"\x99" * 512)
    assert r.ok(read10(100, 1)) == b"\x99" * 512
