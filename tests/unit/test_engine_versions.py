"""The SCSI engine's version rows (simfs.core.kernels): EXTENDED COPY / RECEIVE COPY RESULTS,
REPORT SUPPORTED OPERATION CODES and target_cmd_size_check's residual rules, each version
against its own kernel source.

Kernel references: target_core_xcopy.c (5.10.223, 6.1.192, 6.12.117; the pre-5.11 device
lookup over every device), target_core_transport.c target_cmd_size_check (5.10: no residual
for refused commands, data cut on underflow, the 512-byte rule; 6.1+: residual first),
target_core_spc.c (RSOC from 6.2).
"""
from __future__ import annotations

import os
import struct

import pytest

from simfs.core import kernels
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT
from simfs.testing import Sim

from test_xcopy import (INVALID_OPCODE, LUCF, NOT_REACHABLE, INVALID_CDB, Env, cscd,  # noqa: I
                        params, rcr_cdb, rw16, seg)

IU = (S.ILLEGAL_REQUEST, 0x0E, 0x03)
OLD = ("4.18",)


@pytest.fixture(params=kernels.VERSIONS)
def venv(request):
    e = VEnv(request.param)
    yield e
    e.sim.close()


class VEnv(Env):
    """test_xcopy's two rd devices on one TPG, on the kernel version ``name``."""

    def __init__(self, name: str, pages: int = 2048):
        self.name = name
        self.sim = Sim(profile=kernels.get(name))
        self.a = self.sim.rd_device(name="rd0", pages=pages, serial="1111aaaa-0001")
        self.b = self.sim.rd_device(name="rd1", pages=pages, serial="2222bbbb-0002")
        self.pa = self.sim.port(self.a, lun=0)
        self.pb = self.sim.port(self.b, lun=1)
        self.na = self.sim.nexus("iqn.1994-05.com.redhat:init1", self.pa)
        self.nb = self.sim.nexus("iqn.1994-05.com.redhat:init1", self.pb)


# -- EXTENDED COPY ------------------------------------------------------------------------------
def test_lookup_scope(venv):
    """An enabled device exported nowhere: before 5.11 any device of the system was a copy
    target; from 5.11 only what the initiator reaches (here: its TPG's LUNs)."""
    c = venv.sim.rd_device(name="rd2", serial="3333cccc-0003")
    data = os.urandom(4096)
    venv.write(venv.a, 0, data)
    r = venv.xcopy(venv.a, params([cscd(venv.a), cscd(c)], [seg(0, 1, 8)]))
    if venv.name == "4.18":
        assert r.ok
        pt = venv.sim.port(c, lun=2)
        assert venv.submit(c, rw16(0x88, 0, 8), nexus=venv.sim.nexus("i", pt)).data == data
    else:
        assert not r.ok
        assert "Unable to locate 0xe4 descriptor for EXTENDED_COPY" in venv.log()


def test_lookup_before_5_11_skips_devices_without_3pc(venv):
    if venv.name != "4.18":
        pytest.skip("the system-wide lookup is 4.18's")
    c = venv.sim.rd_device(name="rd2", serial="3333cccc-0003")
    venv.sim.write("/target/core/rd_mcp_0/rd2/attrib/emulate_3pc", "0")
    r = venv.xcopy(venv.a, params([cscd(venv.a), cscd(c)], [seg(0, 1, 8)]))
    assert r.sense_tuple() == LUCF
    assert "XCOPY: emulate_3pc disabled on se_dev" in venv.log()


@pytest.mark.parametrize("case", ["not_reachable", "too_many_segments", "past_the_end"])
def test_failure_sense_and_log_line(venv, case):
    """Before 5.15 every failure found in the work item answered LOGICAL UNIT COMMUNICATION
    FAILURE with the "Setting X-COPY CHECK_CONDITION" line; later the reason itself."""
    a, b = venv.a, venv.b
    if case == "not_reachable":
        plist, want, rc = params([cscd(a), cscd(naa=b"\x60" + bytes(15))], [seg()]), \
            NOT_REACHABLE, 0
    elif case == "too_many_segments":
        plist, want, rc = params([cscd(a), cscd(b)], [seg(), seg()]), \
            (S.ILLEGAL_REQUEST, 0x26, 0x08), 0
    else:
        plist, want, rc = params([cscd(a), cscd(b)], [seg(0, 1, 8, 0, b.get_blocks() - 1)]), \
            NOT_REACHABLE, -22
    r = venv.xcopy(a, plist)
    if venv.name in ("4.18", "5.14"):
        assert r.sense_tuple() == LUCF
        assert (f"target_xcopy_do_work: rc: {rc}, Setting X-COPY CHECK_CONDITION -> "
                "sending response") in venv.log()
        assert "XCOPY operation failed" not in venv.log()
    else:
        assert r.sense_tuple() == want
        assert f"target_xcopy_do_work: rc: {rc}, sense: " in venv.log()
        assert "Setting X-COPY CHECK_CONDITION" not in venv.log()
    assert venv.read(b, 0, 8) == bytes(4096)  # nothing written


#: blocks per chunk: 1024 (< 5.7), 4096 (5.7 .. 6.1.0), 16 MiB (6.2, and Debian's 6.1.y)
CHUNK = {"4.18": 1024, "5.14": 4096, "6.1": 32768, "6.12": 32768, "6.18": 32768}


@pytest.mark.parametrize("nolb,room", [(3000, 2000), (6000, 5000)])
def test_chunk_size_decides_what_a_failed_copy_left(nolb, room):
    """A copy running off the end stops at its first failing chunk; the chunks before it
    stay copied (target_xcopy_do_work)."""
    for name in kernels.VERSIONS:
        e = VEnv(name)
        try:
            for lba in (0, 1023, 4095):
                e.write(e.a, lba, bytes([lba % 251 + 1]) * 512)
            dst = e.b.get_blocks() + 1 - room
            r = e.xcopy(e.a, params([cscd(e.a), cscd(e.b)], [seg(0, 1, nolb, 0, dst)]))
            assert not r.ok
            chunk = CHUNK[name]
            done = (room // chunk) * chunk if chunk < nolb else 0
            for lba in (0, 1023, 4095):
                got = e.read(e.b, dst + lba, 1) if lba < room else None
                if got is not None:
                    assert (got != bytes(512)) == (lba < done), (name, lba, done)
            if chunk == 32768:
                assert f"max_blocks: {chunk} end_lba: {nolb}" in e.log()
            else:
                assert f"max_nolb: {chunk} end_lba: {nolb}" in e.log()
        finally:
            e.sim.close()


def test_v3_0_has_no_extended_copy():
    sim = Sim(profile=kernels.get("v3.0"))
    try:
        dev = sim.rd_device()
        nexus = sim.nexus("iqn.1994-05.com.redhat:init1", sim.port(dev))
        for cdb in (bytes([0x83]) + bytes(15), rcr_cdb()):
            r = sim.engine.submit(nexus, dev, cdb)
            assert r.sense_tuple() == INVALID_OPCODE
    finally:
        sim.close()


# -- RECEIVE COPY RESULTS and REPORT SUPPORTED OPERATION CODES (6.2) --------------------------
def test_receive_copy_results_with_3pc_off(venv):
    venv.sim.write("/target/core/rd_mcp_0/rd0/attrib/emulate_3pc", "0")
    r = venv.submit(venv.a, rcr_cdb())
    if kernels.get(venv.name).has("rcr_3pc_check"):
        assert r.sense_tuple() == INVALID_OPCODE
        assert "Third-party copy operations explicitly disabled" in venv.log()
    else:
        assert r.ok and r.data[4] == 0x01  # SNLID: the operating parameters
    # EXTENDED COPY itself is refused on every version
    r = venv.xcopy(venv.a, params([cscd(venv.a), cscd(venv.b)], [seg()]))
    assert r.sense_tuple() == INVALID_OPCODE
    assert "EXTENDED_COPY operation explicitly disabled" in venv.log()


def test_report_supported_operation_codes_from_6_2(venv):
    cdb = bytes([S.MAINTENANCE_IN, S.MI_REPORT_SUPPORTED_OPERATION_CODES, 0, 0, 0, 0,
                 0, 0, 4, 0, 0, 0])
    r = venv.submit(venv.a, cdb)
    if venv.name in ("6.12", "6.18"):
        assert r.ok and len(r.data) > 4
    else:
        assert r.sense_tuple() == INVALID_OPCODE


# -- target_cmd_size_check ----------------------------------------------------------------------
class SizeEnv:
    def __init__(self, name: str, block_size: int = 512):
        self.sim = Sim(profile=kernels.get(name))
        base = "/target/core/fileio_0"
        self.sim.mkdir(base)
        self.sim.mkdir(f"{base}/f0")
        self.sim.write(f"{base}/f0/control",
                       f"fd_dev_name={self.sim.state_dir / 'f0.img'},fd_dev_size={8 << 20}")
        self.sim.write(f"{base}/f0/wwn/vpd_unit_serial", "4444dddd-0004")
        self.sim.write(f"{base}/f0/enable", "1")
        if block_size != 512:
            self.sim.write(f"{base}/f0/attrib/block_size", str(block_size))
        self.dev = self.sim.core.hbas["fileio_0"].devices["f0"]
        self.nexus = self.sim.nexus("iqn.1994-05.com.redhat:init1", self.sim.port(self.dev))
        while not self.submit(bytes(6)).ok:  # unit attentions out of the way
            pass
        self.sim.log.lines.clear()

    def submit(self, cdb, data=b"", length=None, direction=None):
        length = len(data) if length is None else length
        direction = direction or (DATA_OUT if data else DATA_NONE)
        return self.sim.engine.submit(self.nexus, self.dev, bytes(cdb), data,
                                      data_length=length, data_direction=direction)

    def logged(self, text) -> bool:
        return any(text in ln for ln in self.sim.log.lines)

    def read(self, lba, n):
        r = self.submit(rw16(0x88, lba, n), length=n * self.dev.attrib.block_size,
                        direction=DATA_IN)
        assert r.ok
        return r.data


@pytest.fixture(params=kernels.VERSIONS)
def size_env(request):
    e = SizeEnv(request.param)
    e.name = request.param
    yield e
    e.sim.close()


@pytest.mark.parametrize("sent", [1024, 4096])
def test_write_data_cdb_residual(size_env, sent):
    """WRITE(10) of 4 blocks (2048 bytes) with another length sent: refused on every
    version, with 5/24h/00h and no residual before 5.12, 5/0Eh/03h and the residual after."""
    e = size_env
    r = e.submit(bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 4, 0]), b"\xaa" * sent)
    assert e.logged(f"Expected Transfer Length: {sent} does not match SCSI CDB Length: 2048")
    assert e.logged("Rejecting underflow/overflow for WRITE data CDB")
    if e.name in OLD:
        assert r.sense_tuple() == INVALID_CDB and not r.residual
    else:
        assert r.sense_tuple() == IU and r.residual
    assert e.read(0, 8) == bytes(4096)


def _pr_out_register(cdb_len: int, n: int) -> tuple[bytes, bytes]:
    cdb = struct.pack(">BBBxxIB", S.PERSISTENT_RESERVE_OUT, 0, 0, cdb_len, 0)
    return cdb, (bytes(8) + (0x1234).to_bytes(8, "big") + bytes(8)).ljust(n, b"\0")[:n]


def test_write_control_underflow_cut_before_5_12(size_env):
    """PR OUT REGISTER with 32 bytes sent and 24 in the CDB: before 5.12 the data was cut
    to 24 bytes and the registration made; later the 32 bytes are a PARAMETER LIST LENGTH
    ERROR and nothing is registered."""
    e = size_env
    r = e.submit(*_pr_out_register(24, 32))
    keys = e.submit(bytes([S.PERSISTENT_RESERVE_IN, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]),
                    length=0x20, direction=DATA_IN)
    n = struct.unpack(">I", keys.data[4:8])[0] // 8
    if e.name in OLD:
        assert r.ok and n == 1
    else:
        assert r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x1A, 0) and n == 0


def test_write_control_overflow_refused_without_residual_before_5_12(size_env):
    e = size_env
    r = e.submit(*_pr_out_register(24, 16))
    assert r.sense_tuple() == INVALID_CDB
    assert e.logged("Rejecting overflow for WRITE control CDB")
    assert r.residual == (e.name not in OLD)


@pytest.mark.parametrize("name", kernels.VERSIONS)
def test_non_512_block_device_refuses_residuals_before_5_12(name):
    """On a 4096-byte-block device every residual was refused before 5.12: INQUIRY with
    an allocation length the fabric does not expect, SYNCHRONIZE CACHE with no data."""
    e = SizeEnv(name, block_size=4096)
    try:
        inq = e.submit(bytes([0x12, 0, 0, 0, 255, 0]), length=8, direction=DATA_IN)
        sync = e.submit(bytes([0x35, 0, 0, 0, 0, 0, 0, 0, 8, 0]))
        line = ("Failing OVERFLOW/UNDERFLOW for LBA op CDB on non 512-byte sector setup "
                "subsystem plugin: fileio")
        assert e.logged("Expected Transfer Length: 8 does not match SCSI CDB Length: 255")
        if name in OLD:
            assert inq.sense_tuple() == INVALID_CDB and not inq.residual
            assert sync.sense_tuple() == INVALID_CDB and not sync.residual
            assert e.logged(line)
        else:
            assert inq.ok and sync.ok
            assert not e.logged(line)
        # a matching length is fine everywhere
        assert e.submit(bytes([0x12, 0, 0, 0, 36, 0]), length=36, direction=DATA_IN).ok
    finally:
        e.sim.close()
