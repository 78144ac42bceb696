"""The fabric's transfer length and direction against a write control CDB (issue 17 item 12).

Kernel reference (6.12/6.17): target_cmd_size_check (target_core_transport.c) keeps the
fabric's data_length when it received more than the CDB asks for and refuses a write CDB
asking for more ("Rejecting overflow for WRITE control CDB"); transport_lookup_cmd_lun
(target_core_device.c) refuses on a read-only LUN only what the fabric marked DMA_TO_DEVICE.
"""

from __future__ import annotations

import struct

import pytest

from simfs.scsi import status as S
from simfs.scsi.command import DATA_NONE, DATA_OUT
from simfs.testing import Sim

TGT = "iqn.2003-01.org.linux-iscsi.sim:t1"
INIT = "iqn.1994-05.com.redhat:init1"
KEY = 0x1234
READ_KEYS = bytes([S.PERSISTENT_RESERVE_IN, 0, 0, 0, 0, 0, 0, 0x20, 0, 0])


class Env:
    def __init__(self):
        self.sim = Sim()
        self.dev = self.sim.rd_device()
        self.port = self.sim.port(self.dev, wwn=TGT)
        self.nexus = self.sim.nexus(INIT, self.port, isid="400001370000")
        self.submit(bytes(6))  # TEST UNIT READY: the first command's UA out of the way
        self.submit(bytes(6))

    def submit(self, cdb, data=b"", length=None, direction=None):
        if length is None:
            length = len(data)
        if direction is None:
            direction = DATA_OUT if data else DATA_NONE
        return self.sim.engine.submit(self.nexus, self.dev, bytes(cdb), data,
                                      data_length=length, data_direction=direction)

    def keys(self) -> int:
        r = self.sim.engine.submit(self.nexus, self.dev, READ_KEYS)
        assert r.status == S.GOOD
        return struct.unpack(">I", r.data[4:8])[0] // 8

    def logged(self, text) -> bool:
        return any(text in ln for ln in self.sim.log.lines)


@pytest.fixture
def env():
    e = Env()
    yield e
    e.sim.close()


def pr_out_register(cdb_len: int) -> bytes:
    return struct.pack(">BBBxxIB", S.PERSISTENT_RESERVE_OUT, 0, 0, cdb_len, 0)


def register_params(n: int) -> bytes:
    return (bytes(8) + KEY.to_bytes(8, "big") + bytes(8)).ljust(n, b"\0")[:n]


def test_pr_out_longer_data_than_cdb_is_parameter_list_length_error(env):
    r = env.submit(pr_out_register(24), register_params(32))
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x1A, 0)
    assert env.logged("Expected Transfer Length: 32 does not match SCSI CDB Length: 24")
    assert env.logged("SPC-PR: Received PR OUT illegal parameter list length: 32")
    assert env.keys() == 0  # nothing registered


def test_pr_out_shorter_data_than_cdb_is_invalid_cdb_field(env):
    r = env.submit(pr_out_register(24), register_params(16))
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x24, 0)
    assert env.logged("Rejecting overflow for WRITE control CDB")
    assert env.keys() == 0


def test_pr_out_matching_length_registers(env):
    assert env.submit(pr_out_register(24), register_params(24)).status == S.GOOD
    assert env.keys() == 1


def _caching_page(env) -> bytes:
    """MODE SELECT(6) parameter list: empty header and the current caching page."""
    ms = bytes([S.MODE_SENSE, 0x08, 0x08, 0, 255, 0])
    r = env.sim.engine.submit(env.nexus, env.dev, ms)
    assert r.status == S.GOOD
    page = r.data[4:]
    assert len(page) == 20
    return bytes(4) + page


def test_mode_select_length_0_reads_the_data_sent(env):
    unchanged = _caching_page(env)
    sel0 = bytes([S.MODE_SELECT, 0x10, 0, 0, 0, 0])
    assert env.submit(sel0, unchanged).status == S.GOOD
    changed = bytearray(unchanged)
    changed[4 + 2] ^= 0x04  # WCE
    r = env.submit(sel0, bytes(changed))
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x26, 0)
    # and with no data at all a length of 0 is a no-op
    assert env.submit(sel0).status == S.GOOD


def test_read_only_lun_refuses_only_fabric_data_out(env):
    env.port.write_protect = True
    sel0 = bytes([S.MODE_SELECT, 0x10, 0, 0, 0, 0])
    assert env.submit(sel0).status == S.GOOD
    r = env.submit(pr_out_register(0))
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x1A, 0)
    assert not env.logged("Detected WRITE_PROTECTED")
    # what the fabric marks as data-out is refused before the CDB is looked at
    r = env.submit(pr_out_register(24), register_params(24))
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (S.DATA_PROTECT, 0x27, 0)
    assert env.logged("Detected WRITE_PROTECTED LUN Access for 0x00000000")
    assert env.keys() == 0
