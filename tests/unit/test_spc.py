"""SPC commands through the engine: INQUIRY/VPD, MODE SENSE/SELECT, REQUEST SENSE, REPORT LUNS,
REPORT SUPPORTED OPERATION CODES, dispatch and errors (target_core_spc.c behaviour).

Byte layouts are checked field by field and, where sg3_utils can decode a buffer offline
(sg_inq/sg_vpd --inhex --raw, sg_decode_sense), by the outside decoder's text too.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from simfs.scsi import status as S
from simfs.scsi.engine import scsi_state
from simfs.testing import Sim

SERIAL = "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4"
NAA = "6001405a5c0cdc1d4f54d2790d2b1f0c"
TWWN = "iqn.2003-01.org.linux-iscsi.sim:t1"
INIT = "iqn.1994-05.com.redhat:init1"
RD = "/target/core/rd_mcp_0/rd0"

ILLEGAL = S.ILLEGAL_REQUEST
INVALID_FIELD = (ILLEGAL, 0x24, 0x00)
INVALID_OPCODE = (ILLEGAL, 0x20, 0x00)
INVALID_PARAM_LIST = (ILLEGAL, 0x26, 0x00)
PARAM_LIST_LENGTH = (ILLEGAL, 0x1A, 0x00)

needs_sg3 = pytest.mark.skipif(shutil.which("sg_vpd") is None, reason="sg3_utils missing")


class Env:
    def __init__(self, serial=SERIAL, before_export=None):
        self.sim = Sim()
        self.dev = self.sim.rd_device(serial=serial)
        if before_export:
            before_export(self)
        self.port = self.sim.port(self.dev, wwn=TWWN)
        self.nexus = self.sim.nexus(INIT, self.port)

    def submit(self, cdb, data=b"", nexus=None):
        return self.sim.engine.submit(nexus or self.nexus, self.dev, bytes(cdb), data)

    def ok(self, cdb, data=b""):
        r = self.submit(cdb, data)
        assert r.status == S.GOOD, (r.status, r.sense_tuple())
        return r.data

    def fails(self, cdb, data=b""):
        r = self.submit(cdb, data)
        assert r.status == S.CHECK_CONDITION
        return r.sense_tuple()

    def log(self):
        return self.sim.log.text()


@pytest.fixture
def env():
    e = Env()
    yield e
    e.sim.close()


def inquiry(page=None, alloc=0xFF):
    if page is None:
        return [0x12, 0, 0, alloc >> 8, alloc & 0xFF, 0]
    return [0x12, 1, page, alloc >> 8, alloc & 0xFF, 0]


def decode(tool, data, tmp_path, *args):
    f = tmp_path / "page.bin"
    f.write_bytes(data)
    out = subprocess.run([tool, f"--inhex={f}", "--raw", *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- TEST UNIT READY / dispatch ------------------------------------------------------------------
def test_test_unit_ready(env):
    assert env.ok([0, 0, 0, 0, 0, 0]) == b""


@pytest.mark.parametrize("cdb", [
    [0x4D, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0],                 # LOG SENSE: parsed, no handler
    [0xA3, 0x05, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],           # REPORT IDENTIFYING INFORMATION
    [0xA4, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],           # MAINTENANCE OUT, not STPG
    [0xA4, 0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],           # STPG compares the whole byte 1
    [0xC0, 0, 0, 0, 0, 0],
])
def test_unhandled_opcodes_are_invalid_opcode(env, cdb):
    assert env.fails(cdb) == INVALID_OPCODE


@pytest.mark.parametrize("cdb", [
    [0x5E, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0],
    [0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0],
    [0x16, 0, 0, 0, 0, 0],
    [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
])
def test_pr_and_spc2_reservations_need_emulate_pr(env, cdb):
    env.dev.attrib.emulate_pr = 0
    assert env.fails(cdb, bytes(24)) == INVALID_OPCODE


# -- standard INQUIRY ----------------------------------------------------------------------------
def test_standard_inquiry_bytes(env):
    d = env.ok(inquiry())
    assert len(d) == 96
    assert d[0] == 0x00                      # direct access
    assert d[1] == 0x00                      # not removable
    assert d[2] == 0x06                      # SPC-4
    assert d[3] == 0x02                      # response format 2, HiSup 0
    assert d[4] == 91
    assert d[5] == 0x80 | 0x30 | 0x08        # SCCS, TPGS implicit+explicit, 3PC
    assert d[6] == 0x00                      # one export: no MULTIP
    assert d[7] == 0x02                      # CmdQue
    assert d[8:16] == b"LIO-ORG "
    assert d[16:32] == b"RAMDISK-MCP     "
    assert d[32:36] == b"4.0 "
    assert d[36:58] == bytes(22)
    assert d[58:60] == b"\x00\xa0"           # SAM-5
    assert d[60:62] == b"\x09\x60"           # iSCSI
    assert d[62:64] == b"\x04\x60"           # SPC-4
    assert d[64:66] == b"\x04\xc0"           # SBC-3
    assert d[66:] == bytes(30)


@needs_sg3
def test_standard_inquiry_sg_inq(env, tmp_path):
    text = decode("sg_inq", env.ok(inquiry()), tmp_path)
    assert "version=0x06  [SPC-4]" in text
    assert "SCCS=1" in text and "TPGS=3" in text and "3PC=1" in text
    assert "MultiP=0" in text and "CmdQue=1" in text
    assert "Vendor identification: LIO-ORG" in text
    assert "Product identification: RAMDISK-MCP" in text
    assert "Product revision level: 4.0" in text
    assert "Peripheral device type: disk" in text


def test_inquiry_follows_identity_alua_and_exports():
    def setup(e):
        e.sim.write(f"{RD}/wwn/vendor_id", "ACME")
        e.sim.write(f"{RD}/wwn/product_id", "WIDGET-DISK-0123")
        e.sim.write(f"{RD}/wwn/revision", "9z")
        e.sim.write(f"{RD}/attrib/emulate_3pc", "0")
    e = Env(before_export=setup)
    try:
        e.dev.default_tg_pt_gp.access_type = 0x10      # implicit only
        d = e.ok(inquiry())
        assert d[8:36] == b"ACME    WIDGET-DISK-01239z  "
        assert d[5] == 0x80 | 0x10
        assert d[6] == 0
        e.dev.default_tg_pt_gp.access_type = 0          # ALUA off: TPGS 0, SCCS stays
        e.sim.port(e.dev, wwn=TWWN, lun=1)              # a second export: MULTIP
        d = e.ok(inquiry())
        assert d[5] == 0x80
        assert d[6] == 0x10
    finally:
        e.sim.close()


def test_inquiry_transport_descriptor_per_protocol():
    e = Env()
    try:
        fc = e.sim.port(e.dev, fabric="FC", wwn="naa.21000024ff000001")
        d = e.submit(inquiry(), nexus=e.sim.nexus("naa.21000024ff000002", fc)).data
        assert d[60:62] == b"\x0a\x40"                   # FCP-4
        sas = e.sim.port(e.dev, fabric="loopback", wwn="naa.5001405000000001")
        d = e.submit(inquiry(), nexus=e.sim.nexus("naa.5001405000000002", sas)).data
        assert d[60:62] == b"\x0c\x60"                   # SAS-3
        sas.proto_id = 0x8                               # unknown: 0 and a warning
        d = e.submit(inquiry(), nexus=e.sim.nexus("naa.5001405000000002", sas)).data
        assert d[60:62] == b"\x00\x00"
        assert ("Cannot find VERSION DESCRIPTOR value for unknown SCSI transport PROTOCOL "
                "IDENTIFIER 0x8") in e.log()
    finally:
        e.sim.close()


def test_inquiry_allocation_length_truncates(env):
    assert env.ok(inquiry(alloc=36)) == env.ok(inquiry())[:36]
    assert env.ok(inquiry(alloc=0)) == b""
    assert len(env.ok(inquiry(0x83, alloc=10))) == 10


def test_inquiry_errors(env):
    assert env.fails([0x12, 0, 0x80, 0, 0xFF, 0]) == INVALID_FIELD
    assert "INQUIRY with EVPD==0 but PAGE CODE=80" in env.log()
    assert env.fails(inquiry(0x89)) == INVALID_FIELD
    assert "Unknown VPD Code: 0x89" in env.log()
    assert env.fails(inquiry(0xB4)) == INVALID_FIELD


# -- VPD pages ----------------------------------------------------------------------------------
def test_vpd_00_lists_pages_only_with_a_serial(env):
    assert env.ok(inquiry(0x00)) == bytes([0, 0, 0, 8, 0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1,
                                           0xB2, 0xB3])
    e = Env(serial=None)
    try:
        assert e.ok(inquiry(0x00)) == bytes([0, 0, 0, 0])
        assert e.ok(inquiry(0x80)) == bytes([0, 0x80, 0, 0])
    finally:
        e.sim.close()


@needs_sg3
def test_vpd_00_sg_vpd(env, tmp_path):
    text = decode("sg_vpd", env.ok(inquiry(0x00)), tmp_path)
    for name in ("Unit serial number", "Device identification", "Extended inquiry data",
                 "Block limits (SBC)", "Block device characteristics (SBC)",
                 "Logical block provisioning (SBC)", "Referrals (SBC)"):
        assert name in text


def test_vpd_80_unit_serial(env):
    d = env.ok(inquiry(0x80))
    assert d[:4] == bytes([0, 0x80, 0, len(SERIAL) + 1])
    assert d[4:] == SERIAL.encode() + b"\0"


def test_vpd_83_layout(env):
    d = env.ok(inquiry(0x83))
    assert d[0:2] == b"\x00\x83"
    assert int.from_bytes(d[2:4], "big") == len(d) - 4
    o = 4
    # NAA IEEE Registered Extended
    assert d[o:o + 4] == bytes([0x01, 0x03, 0x00, 0x10])
    assert d[o + 4:o + 20].hex() == NAA
    o += 20
    # T10 vendor id: vendor padded to 8, then product:serial and a NUL
    t10 = b"LIO-ORG RAMDISK-MCP:" + SERIAL.encode() + b"\0"
    assert d[o:o + 4] == bytes([0x02, 0x01, 0x00, len(t10)])
    assert d[o + 4:o + 4 + len(t10)] == t10
    o += 4 + len(t10)
    # relative target port (iSCSI, PIV, target port)
    assert d[o:o + 8] == bytes([0x51, 0x94, 0, 4, 0, 0, 0, env.port.rtpi])
    o += 8
    # target port group: the default group, id 0
    assert d[o:o + 8] == bytes([0x51, 0x95, 0, 4, 0, 0, 0, 0])
    o += 8
    # logical unit group: no protocol id, no PIV, association LU
    assert d[o:o + 8] == bytes([0x01, 0x06, 0, 4, 0, 0, 0, 0])
    o += 8
    name = f"{TWWN},t,0x0001".encode() + b"\0"
    name += bytes(-len(name) % 4)
    assert d[o:o + 4] == bytes([0x53, 0x98, 0, len(name)])
    assert d[o + 4:o + 4 + len(name)] == name
    o += 4 + len(name)
    tgt = TWWN.encode() + b"\0"
    tgt += bytes(-len(tgt) % 4)
    assert d[o:o + 4] == bytes([0x53, 0xA8, 0, len(tgt)])
    assert d[o + 4:o + 4 + len(tgt)] == tgt
    assert o + 4 + len(tgt) == len(d)


@needs_sg3
def test_vpd_83_sg_vpd(env, tmp_path):
    text = decode("sg_vpd", env.ok(inquiry(0x83)), tmp_path)
    assert f"0x{NAA}" in text
    assert "vendor id: LIO-ORG" in text
    assert f"vendor specific: RAMDISK-MCP:{SERIAL}" in text
    assert "Relative target port: 0x1" in text
    assert "Target port group: 0x0" in text
    assert "Logical unit group: 0x0" in text
    assert "transport: Internet SCSI (iSCSI)" in text
    assert f"{TWWN},t,0x0001" in text
    assert "Target device that contains addressed lu:" in text


def test_vpd_83_without_serial_has_no_naa():
    e = Env(serial=None)
    try:
        d = e.ok(inquiry(0x83))
        # first designator is the bare T10 vendor id: 8 bytes + NUL
        assert d[4:17] == bytes([0x02, 0x01, 0x00, 9]) + b"LIO-ORG \0"
        assert d[17:21] == bytes([0x51, 0x94, 0, 4])
    finally:
        e.sim.close()


def test_vpd_83_company_id_and_groups():
    def setup(e):
        e.sim.write(f"{RD}/wwn/company_id", "0xabcdef")
    e = Env(before_export=setup)
    try:
        d = e.ok(inquiry(0x83))
        assert d[8:24].hex() == "6abcdef" + "a5c0cdc1d4f54d2790d2b1f0c"
        gp = e.dev.default_tg_pt_gp
        gp.id = 0x1234
        e.dev.lu_gp.id = 0x42
        d = e.ok(inquiry(0x83))
        assert bytes([0x51, 0x95, 0, 4, 0, 0, 0x12, 0x34]) in d
        assert bytes([0x01, 0x06, 0, 4, 0, 0, 0, 0x42]) in d
        # a LUN without a target port group has no port group designator
        e.port.tg_pt_gp = None
        d = e.ok(inquiry(0x83))
        assert bytes([0x51, 0x95]) not in d
        assert bytes([0x01, 0x06, 0, 4, 0, 0, 0, 0x42]) in d
    finally:
        e.sim.close()


def test_vpd_86_extended_inquiry(env):
    d = env.ok(inquiry(0x86))
    assert len(d) == 64
    assert d[:4] == bytes([0, 0x86, 0, 0x3C])
    assert d[4] == 0 and d[5] == 0x07 and d[6] == 0 and d[8] == 0
    env.dev.attrib.emulate_write_cache = 1
    d = env.ok(inquiry(0x86))
    assert d[6] == 0x01                                  # V_SUP


@needs_sg3
def test_vpd_86_sg_vpd(env, tmp_path):
    env.dev.attrib.emulate_write_cache = 1
    text = decode("sg_vpd", env.ok(inquiry(0x86)), tmp_path)
    assert "HEADSUP=1 ORDSUP=1 SIMPSUP=1" in text
    assert "V_SUP=1" in text


def test_vpd_b0_b1_b2_b3_rd(env):
    a = env.dev.attrib
    d = env.ok(inquiry(0xB0))
    assert len(d) == 20
    assert d[:4] == bytes([0, 0xB0, 0, 0x10])
    assert d[4] == 0x01 and d[5] == 0x01                 # WSNZ, CAW length 1
    assert d[6:8] == b"\x00\x01"
    assert int.from_bytes(d[8:12], "big") == a.hw_max_sectors * a.hw_block_size // a.block_size
    assert int.from_bytes(d[12:16], "big") == a.optimal_sectors
    a.emulate_caw = 0
    assert env.ok(inquiry(0xB0))[5] == 0
    d = env.ok(inquiry(0xB1))
    assert d[:4] == bytes([0, 0xB1, 0, 0x3C]) and len(d) == 64
    assert d[5] == (1 if a.is_nonrot else 0)
    assert env.ok(inquiry(0xB2)) == bytes([0, 0xB2, 0, 4, 0, 0, 0, 0])
    d = env.ok(inquiry(0xB3))
    assert d == bytes([0, 0xB3, 0, 0x0C]) + bytes(12)


def test_vpd_b0_b2_thin_provisioning(tmp_path):
    sim = Sim()
    try:
        dev = sim.fileio_device(tmp_path / "f0.img")
        sim.write("/target/core/fileio_0/f0/attrib/emulate_tpu", "1")
        sim.write("/target/core/fileio_0/f0/attrib/emulate_tpws", "1")
        sim.write("/target/core/fileio_0/f0/attrib/unmap_granularity_alignment", "4")
        port = sim.port(dev, wwn=TWWN)
        n = sim.nexus(INIT, port)
        a = dev.attrib
        d = sim.engine.submit(n, dev, bytes(inquiry(0xB0))).data
        assert len(d) == 64 and d[3] == 0x3C
        assert int.from_bytes(d[20:24], "big") == a.max_unmap_lba_count != 0
        assert int.from_bytes(d[24:28], "big") == a.max_unmap_block_desc_count
        assert int.from_bytes(d[28:32], "big") == a.unmap_granularity
        assert d[32:36] == bytes([0x80, 0, 0, 4])        # UGAVALID + alignment
        assert int.from_bytes(d[36:44], "big") == a.max_write_same_len
        d = sim.engine.submit(n, dev, bytes(inquiry(0xB2))).data
        assert d[5] == 0x80 | 0x40 | 0x20 | (0x04 if a.unmap_zeroes_data else 0)
        if shutil.which("sg_vpd"):
            text = decode("sg_vpd", d, tmp_path)
            assert "Unmap command supported (LBPU): 1" in text
            assert "Write same (16) with unmap bit supported (LBPWS): 1" in text
    finally:
        sim.close()


# -- MODE SENSE ----------------------------------------------------------------------------------
def ms6(page, sub=0, pc=0, dbd=False, alloc=0xFF):
    return [0x1A, 0x08 if dbd else 0, (pc << 6) | page, sub, alloc, 0]


def ms10(page, sub=0, pc=0, dbd=False, llba=False, alloc=0x200):
    return [0x5A, (0x08 if dbd else 0) | (0x10 if llba else 0), (pc << 6) | page, sub, 0, 0, 0,
            alloc >> 8, alloc & 0xFF, 0]


RWR = bytes([0x01, 0x0A]) + bytes(10)
CACHING = bytes([0x08, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20]) + bytes(7)
CONTROL = bytes([0x0A, 0x0A, 0x02, 0x10, 0x00, 0x40, 0, 0, 0xFF, 0xFF, 0, 30])
IEC = bytes([0x1C, 0x0A]) + bytes(10)


def test_mode_sense6_all_pages(env):
    d = env.ok(ms6(0x3F))
    blocks = env.dev.bdev.get_blocks()
    assert d[0] == len(d) - 1 == 3 + 8 + 12 + 20 + 12 + 12
    assert d[1:4] == bytes([0, 0x00, 8])                 # medium, no WP/DPOFUA, bd length
    assert d[4:12] == blocks.to_bytes(4, "big") + (512).to_bytes(4, "big")
    assert d[12:] == RWR + CACHING + CONTROL + IEC


def test_mode_sense_single_pages_and_dbd(env):
    assert env.ok(ms6(0x08, dbd=True)) == bytes([23, 0, 0, 0]) + CACHING
    assert env.ok(ms6(0x0A, dbd=True))[4:] == CONTROL
    assert env.ok(ms6(0x01, dbd=True))[4:] == RWR
    assert env.ok(ms6(0x1C, dbd=True))[4:] == IEC
    d = env.ok(ms10(0x0A, dbd=True))
    assert d[:8] == bytes([0, 6 + 12, 0, 0, 0, 0, 0, 0]) and d[8:] == CONTROL


def test_mode_sense10_block_descriptors(env):
    blocks = env.dev.bdev.get_blocks()
    d = env.ok(ms10(0x01))
    assert d[:8] == bytes([0, 14 + 12, 0, 0, 0, 0, 0, 8])
    assert d[8:16] == blocks.to_bytes(4, "big") + (512).to_bytes(4, "big")
    assert d[16:] == RWR
    # LLBAA on a small device: the short descriptor all the same
    assert env.ok(ms10(0x01, llba=True)) == d


def test_mode_sense_write_cache_fua_and_wp(env):
    env.dev.attrib.emulate_write_cache = 1
    d = env.ok(ms6(0x08))
    assert d[2] == 0x10                                  # DPOFUA
    assert d[12 + 2] == 0x04                             # WCE
    env.dev.attrib.emulate_fua_write = 0
    assert env.ok(ms6(0x08))[2] == 0x00
    env.port.write_protect = True
    assert env.ok(ms6(0x08))[2] == 0x80
    assert env.ok(ms10(0x08))[3] == 0x80


def test_mode_sense_control_page_attributes():
    def setup(e):
        e.sim.write(f"{RD}/attrib/emulate_ua_intlck_ctrl", "2")
        e.sim.write(f"{RD}/attrib/emulate_tas", "0")
    e = Env(before_export=setup)
    try:
        p = e.ok(ms6(0x0A, dbd=True))[4:]
        assert p[4] == 0x30 and p[5] == 0x00
        e.dev.attrib.emulate_ua_intlck_ctrl = 1
        e.dev.attrib.emulate_rest_reord = 1
        p = e.ok(ms6(0x0A, dbd=True))[4:]
        assert p[3] == 0x00 and p[4] == 0x20
    finally:
        e.sim.close()


def test_mode_sense_page_control(env):
    env.dev.attrib.emulate_write_cache = 1
    changeable = env.ok(ms6(0x3F, pc=1, dbd=True))[4:]
    assert changeable == (bytes([0x01, 0x0A]) + bytes(10) + bytes([0x08, 0x12]) + bytes(18)
                          + bytes([0x0A, 0x0A]) + bytes(10) + bytes([0x1C, 0x0A]) + bytes(10))
    current = env.ok(ms6(0x3F, pc=0, dbd=True))
    assert env.ok(ms6(0x3F, pc=2, dbd=True)) == current
    # no SAVING PARAMETERS NOT SUPPORTED: saved values are the current ones
    assert env.ok(ms6(0x3F, pc=3, dbd=True)) == current
    assert env.ok(ms6(0x3F, sub=0xFF, dbd=True)) == current


def test_mode_sense_errors_and_truncation(env):
    assert env.fails(ms6(0x3F, sub=0x01)) == INVALID_FIELD
    assert "MODE_SENSE: Invalid subpage code: 0x01" in env.log()
    assert env.fails(ms6(0x19)) == INVALID_FIELD         # unknown page: 24h/00h
    assert "MODE SENSE: unimplemented page/subpage: 0x19/0x00" in env.log()
    assert env.fails(ms6(0x08, sub=0x01)) == INVALID_FIELD
    assert env.fails(ms6(0x03)) == INVALID_FIELD         # page 3: refused without a log line
    assert "0x03/0x00" not in env.log()
    full = env.ok(ms6(0x3F))
    assert env.ok(ms6(0x3F, alloc=4)) == full[:4]


def test_mode_sense_sg_decode_sense_of_failure(env):
    r = env.submit(ms6(0x19))
    assert r.sense[0] == 0x70 and r.sense[2] == ILLEGAL and r.sense[12:14] == b"\x24\x00"
    if shutil.which("sg_decode_sense"):
        out = subprocess.run(["sg_decode_sense", *[f"{b:02x}" for b in r.sense]],
                             capture_output=True, text=True, timeout=30).stdout
        assert "Illegal Request" in out and "Invalid field in cdb" in out


# -- MODE SELECT ---------------------------------------------------------------------------------
def msel6(data, pf=True):
    return [0x15, 0x10 if pf else 0, 0, 0, len(data), 0], data


def msel10(data, pf=True):
    return [0x55, 0x10 if pf else 0, 0, 0, 0, 0, 0, len(data) >> 8, len(data) & 0xFF, 0], data


def test_mode_select_accepts_only_the_current_page(env):
    ctl = env.ok(ms6(0x0A, dbd=True))[4:]
    assert env.ok(*msel6(bytes(4) + ctl)) == b""
    assert env.ok(*msel10(bytes(8) + ctl)) == b""
    caching = env.ok(ms6(0x08, dbd=True))[4:]
    assert env.ok(*msel6(bytes(4) + caching)) == b""
    wce = bytearray(caching)
    wce[2] |= 0x04                                       # try to turn the write cache on
    assert env.fails(*msel6(bytes(4) + bytes(wce))) == INVALID_PARAM_LIST
    assert env.dev.attrib.emulate_write_cache == 0
    ps = bytearray(ctl)
    ps[0] |= 0x80                                        # PS bit as MODE SENSE never sets it
    assert env.fails(*msel6(bytes(4) + bytes(ps))) == INVALID_PARAM_LIST


def test_mode_select_errors(env):
    ctl = env.ok(ms6(0x0A, dbd=True))[4:]
    assert env.fails(*msel6(bytes(4) + ctl, pf=False)) == INVALID_FIELD
    assert env.fails(*msel6(bytes(5))) == PARAM_LIST_LENGTH    # < header + 2
    assert env.fails(*msel6(bytes(4) + ctl[:6])) == PARAM_LIST_LENGTH
    assert env.fails(*msel6(bytes(4) + bytes([0x19, 0x0A]) + bytes(10))) == INVALID_FIELD
    # a block descriptor is not skipped: the kernel reads the page at byte 4 regardless
    assert env.fails(*msel6(bytes([0, 0, 0, 8]) + bytes(8) + ctl)) == INVALID_FIELD
    # empty parameter list: nothing to do
    assert env.ok([0x15, 0x10, 0, 0, 0, 0]) == b""
    # the CDB asks for more than the initiator sent
    assert env.fails([0x15, 0x10, 0, 0, 16, 0], bytes(8)) == INVALID_FIELD


# -- REQUEST SENSE -------------------------------------------------------------------------------
def test_request_sense_reports_and_clears_ua(env):
    ua = scsi_state(env.dev).ua
    ua.allocate(env.nexus.key(), 0x2A, 0x06)
    d = env.ok([0x03, 0, 0, 0, 252, 0])
    assert len(d) == 252
    assert d[0] == 0x70 and d[2] == S.UNIT_ATTENTION and d[7] == 0x0A
    assert d[12:14] == b"\x2a\x06"
    assert d[18:] == bytes(252 - 18)
    assert ua.pending(env.nexus.key()) == []
    assert env.ok([0, 0, 0, 0, 0, 0]) == b""             # no UA left to block TUR
    d = env.ok([0x03, 0, 0, 0, 18, 0])
    assert d == bytes([0x70, 0, S.NO_SENSE, 0, 0, 0, 0, 0x0A]) + bytes(10)
    if shutil.which("sg_decode_sense"):
        ua.allocate(env.nexus.key(), 0x2A, 0x06)
        d = env.ok([0x03, 0, 0, 0, 18, 0])
        out = subprocess.run(["sg_decode_sense", *[f"{b:02x}" for b in d]],
                             capture_output=True, text=True, timeout=30).stdout
        assert "Unit Attention" in out and "Asymmetric access state changed" in out


def test_request_sense_ua_is_per_nexus(env):
    other = env.sim.nexus("iqn.1994-05.com.redhat:init2", env.port)
    scsi_state(env.dev).ua.allocate(other.key(), 0x29, 0x00)
    d = env.ok([0x03, 0, 0, 0, 18, 0])
    assert d[2] == S.NO_SENSE
    d = env.submit([0x03, 0, 0, 0, 18, 0], nexus=other).data
    assert d[2] == S.UNIT_ATTENTION and d[12:14] == b"\x29\x00"


def test_request_sense_allocation_length_0_keeps_the_ua(env):
    # spc_emulate_request_sense: no buffer to map is LOGICAL UNIT COMMUNICATION FAILURE,
    # before the UA is looked at
    ua = scsi_state(env.dev).ua
    ua.allocate(env.nexus.key(), 0x2A, 0x06)
    assert env.fails([0x03, 0, 0, 0, 0, 0]) == (S.NOT_READY, 0x08, 0x00)
    assert ua.pending(env.nexus.key()) == [(0x2A, 0x06)]
    # an iSCSI initiator's EDTL of 0 with an allocation length in the CDB: the same
    r = env.sim.engine.submit(env.nexus, env.dev, bytes([0x03, 0, 0, 0, 18, 0]),
                              data_length=0, data_direction="none")
    assert r.sense_tuple() == (S.NOT_READY, 0x08, 0x00)
    assert ua.pending(env.nexus.key()) == [(0x2A, 0x06)]
    d = env.ok([0x03, 0, 0, 0, 18, 0])
    assert d[2] == S.UNIT_ATTENTION and d[12:14] == b"\x2a\x06"


def test_request_sense_desc_bit_refused(env):
    assert env.fails([0x03, 0x01, 0, 0, 18, 0]) == INVALID_FIELD
    assert "REQUEST_SENSE description emulation not supported" in env.log()


# -- REPORT LUNS ---------------------------------------------------------------------------------
def report_luns(alloc=0x100):
    return [0xA0, 0, 0, 0, 0, 0] + list(alloc.to_bytes(4, "big")) + [0, 0]


def test_report_luns_single(env):
    assert env.ok(report_luns()) == bytes([0, 0, 0, 8, 0, 0, 0, 0]) + bytes(8)


def test_report_luns_lists_the_tpgs_luns(env):
    dev2 = env.sim.rd_device(name="rd1")
    env.sim.port(dev2, wwn=TWWN, lun=3)
    env.sim.port(dev2, wwn="iqn.2003-01.org.linux-iscsi.sim:other", lun=7)
    d = env.ok(report_luns())
    assert d[:8] == bytes([0, 0, 0, 16, 0, 0, 0, 0])
    assert d[8:16] == bytes(8)
    assert d[16:24] == bytes([0, 3, 0, 0, 0, 0, 0, 0])
    # the list length stays whole when the allocation length cuts the list
    assert env.ok(report_luns(alloc=12)) == d[:12]
    dev3 = env.sim.rd_device(name="rd2")
    env.sim.port(dev3, wwn=TWWN, lun=300)
    d = env.ok(report_luns())
    assert d[24:32] == bytes([0x01, 0x2C, 0, 0, 0, 0, 0, 0])   # int_to_scsilun, no flat bit


# -- REPORT SUPPORTED OPERATION CODES ------------------------------------------------------------
def rsoc(opts=0, op=0, sa=0, rctd=False, alloc=0x1000):
    return ([0xA3, 0x0C, (0x80 if rctd else 0) | opts, op, sa >> 8, sa & 0xFF]
            + list(alloc.to_bytes(4, "big")) + [0, 0])


def _descs(d, size=8):
    out = []
    for o in range(4, len(d), size):
        out.append((d[o], int.from_bytes(d[o + 2:o + 4], "big"), d[o + 5] & 1,
                    int.from_bytes(d[o + 6:o + 8], "big")))
    return out


def test_rsoc_all_commands_rd(env):
    d = env.ok(rsoc())
    assert int.from_bytes(d[:4], "big") == len(d) - 4
    descs = _descs(d)
    ops = [(op, sa) for op, sa, _, _ in descs]
    # rd_mcp has no write-same/unmap handlers and no LBA map: those are left out
    assert (0x41, 0) not in ops and (0x93, 0) not in ops and (0x7F, 0x0D) not in ops
    assert (0x42, 0) not in ops and (0x9E, 0x13) not in ops
    assert ops[:10] == [(0x08, 0), (0x28, 0), (0xA8, 0), (0x88, 0), (0x0A, 0), (0x2A, 0),
                        (0x2E, 0), (0xAA, 0), (0x8A, 0), (0x8E, 0)]
    assert ops[-3:] == [(0xA3, 0x0A), (0xA3, 0x0C), (0xA4, 0x0A)]
    assert (0x83, 0) in ops and (0x84, 0x03) in ops       # 3PC on
    assert len(descs) == 52 - 5
    by = {(op, sa): (v, size) for op, sa, v, size in descs}
    assert by[(0x12, 0)] == (0, 6)
    assert by[(0x5F, 0x07)] == (1, 10)
    assert by[(0x89, 0)] == (0, 16)


def test_rsoc_rctd_and_gating(env):
    d = env.ok(rsoc(rctd=True))
    n = (len(d) - 4) // 20
    assert (len(d) - 4) % 20 == 0 and n == 47
    assert d[4 + 5] & 0x02                               # CTDP
    assert d[12:24] == bytes([0, 0x0A]) + bytes(10)
    a = env.dev.attrib
    a.emulate_caw = a.emulate_3pc = 0
    env.dev.default_tg_pt_gp.access_type = 0x10          # implicit only: no STPG
    ops = [(op, sa) for op, sa, _, _ in _descs(env.ok(rsoc()))]
    assert (0x89, 0) not in ops and (0x83, 0) not in ops and (0x84, 3) not in ops
    assert (0xA4, 0x0A) not in ops
    a.emulate_pr = 0
    ops = [(op, sa) for op, sa, _, _ in _descs(env.ok(rsoc()))]
    # READ KEYS and READ RESERVATION carry no gate in the kernel's table
    assert [o for o in ops if o[0] in (0x5E, 0x5F, 0x16, 0x17, 0x56, 0x57)] == [(0x5E, 0),
                                                                               (0x5E, 1)]


def test_rsoc_fileio_lists_write_same_and_unmap(tmp_path):
    sim = Sim()
    try:
        dev = sim.fileio_device(tmp_path / "f0.img")
        n = sim.nexus(INIT, sim.port(dev, wwn=TWWN))
        ops = [(op, sa) for op, sa, _, _ in _descs(sim.engine.submit(n, dev, bytes(rsoc())).data)]
        assert (0x41, 0) in ops and (0x93, 0) in ops and (0x7F, 0x0D) in ops
        assert (0x42, 0) not in ops                      # UNMAP needs emulate_tpu
        sim.write("/target/core/fileio_0/f0/attrib/emulate_tpu", "1")
        ops = [(op, sa) for op, sa, _, _ in _descs(sim.engine.submit(n, dev, bytes(rsoc())).data)]
        assert (0x42, 0) in ops
    finally:
        sim.close()


def test_rsoc_one_command(env):
    assert env.ok(rsoc(1, 0x12)) == bytes([0, 3, 0, 6, 0x12, 0x01, 0xFF, 0xFF, 0xFF, 0])
    d = env.ok(rsoc(1, 0x12, rctd=True))
    assert d[1] == 0x83 and d[10:] == bytes([0, 0x0A]) + bytes(10)
    assert env.ok(rsoc(1, 0xC0)) == bytes([0, 1])        # not supported
    assert env.ok(rsoc(1, 0x41)) == bytes([0, 1])        # rd: WRITE SAME disabled
    assert env.fails(rsoc(1, 0x5E)) == INVALID_FIELD     # opcode has service actions
    assert env.ok(rsoc(2, 0x5E, 0)) == bytes([0, 3, 0, 10, 0x5E, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF,
                                              0])
    assert env.fails(rsoc(2, 0x12)) == INVALID_FIELD     # no service actions
    assert env.ok(rsoc(2, 0x5E, 9)) == bytes([0, 1])
    assert env.ok(rsoc(3, 0xA3, 0x0C))[4:16] == bytes([0xA3, 0x0C, 0x87] + [0xFF] * 7 + [0, 0])
    assert env.ok(rsoc(3, 0x12, 0)) == env.ok(rsoc(1, 0x12))
    # REPORTING OPTIONS is masked to two bits: 4 reads as 0 (all commands)
    assert env.ok(rsoc(4)) == env.ok(rsoc(0))


def test_rsoc_dpofua_usage_bits(env):
    assert env.ok(rsoc(1, 0x28))[5] == 0xE0              # no write cache: no DPO/FUA
    env.dev.attrib.emulate_write_cache = 1
    assert env.ok(rsoc(1, 0x28))[5] == 0xF8
    assert env.ok(rsoc(1, 0x08))[5] == 0x1F              # READ(6) has no update hook


def test_rsoc_disabled(env):
    env.dev.attrib.emulate_rsoc = 0
    assert env.fails(rsoc()) == INVALID_OPCODE


def test_large_device_long_lba_descriptor_and_descriptor_sense(tmp_path):
    """Past 2^32 blocks: LONGLBA descriptor (with the kernel's 17-byte count, so the first
    page starts at byte 21 and overwrites the end of the BLOCK LENGTH field), D_SENSE in the
    control page and descriptor-format REQUEST SENSE data."""
    sim = Sim()
    try:
        dev = sim.fileio_device(tmp_path / "big.img", size=3 << 40)
        port = sim.port(dev, wwn=TWWN)
        n = sim.nexus(INIT, port)
        blocks = dev.bdev.get_blocks()
        assert blocks > 0xFFFFFFFF

        def sub(cdb):
            r = sim.engine.submit(n, dev, bytes(cdb))
            assert r.status == S.GOOD
            return r.data
        d = sub(ms10(0x01, llba=True))
        assert len(d) == 21 + 12
        assert d[:2] == (21 + 12 - 2).to_bytes(2, "big")
        assert d[4] == 0x01 and d[7] == 16
        assert d[8:16] == blocks.to_bytes(8, "big")
        assert d[20] == 0x00                             # block length MSB; 512 lost under page
        assert d[21:] == RWR
        # without LLBAA: the short descriptor saturates at 0xffffffff
        d = sub(ms10(0x01))
        assert d[8:16] == b"\xff\xff\xff\xff" + (512).to_bytes(4, "big")
        d = sub(ms6(0x0A, dbd=True))
        assert d[4 + 2] == 0x02 | 0x04                   # GLTSD + D_SENSE
        scsi_state(dev).ua.allocate(n.key(), 0x29, 0x07)
        d = sub([0x03, 0, 0, 0, 8, 0])
        assert d == bytes([0x72, S.UNIT_ATTENTION, 0x29, 0x07, 0, 0, 0, 0])
    finally:
        sim.close()


def test_protection_bits_need_a_pi_passing_session(env):
    """PROTECT, SPT/GRD_CHK/REF_CHK and ATO follow pi_prot_type only on sessions that pass
    T10-PI (tcm_loop's); iSCSI over TCP never shows them."""
    env.dev.attrib.pi_prot_type = 1
    assert env.ok(inquiry())[5] & 0x01 == 0
    assert env.ok(inquiry(0x86))[4] == 0
    loop = env.sim.port(env.dev, fabric="loopback", wwn="naa.5001405000000009")
    nx = env.sim.nexus("naa.500140500000000a", loop)
    assert env.submit(inquiry(), nexus=nx).data[5] & 0x01
    assert env.submit(inquiry(0x86), nexus=nx).data[4] == 0x05 | 0x18
    assert env.submit(ms6(0x0A, dbd=True), nexus=nx).data[4 + 5] == 0x40 | 0x80
    env.dev.attrib.pi_prot_type = 3
    assert env.submit(inquiry(0x86), nexus=nx).data[4] == 0x04 | 0x18
    env.dev.attrib.pi_prot_type = 0
    assert env.submit(inquiry(0x86), nexus=nx).data[4] == 0
    assert env.submit(ms6(0x0A, dbd=True), nexus=nx).data[4 + 5] == 0x40


def test_mode_sense_wp_for_read_only_device(env):
    env.dev.read_only = True
    assert env.ok(ms6(0x01))[2] & 0x80
