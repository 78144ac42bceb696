"""CDB fuzzing of the SCSI engine (sans-I/O): whatever an initiator sends, ``submit``
answers with a SCSI status, never a Python exception.

Every non-GOOD answer is CHECK CONDITION with well-formed sense (fixed 70h/18 bytes, or
descriptor 72h for devices past 2^32 blocks) or RESERVATION CONFLICT (no sense).

A CDB shorter than its opcode's length is read as the kernel reads it: fabrics hand the
core a fixed, zero-filled CDB buffer (iSCSI's 16-byte BHS field, tcm_loop's scsi_cmnd
cdb) and ``target_cmd_init_cdb`` takes ``scsi_command_size(cdb)`` bytes of it, so a
truncated CDB must get exactly the answer of the same CDB zero-padded.

The short deterministic run is always on; ``SIMFS_FUZZ_LONG=1`` runs many more examples
with fresh randomness.
"""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfs.scsi import status as S
from simfs.scsi.engine import scsi_command_size
from simfs.testing import Sim

LONG = os.environ.get("SIMFS_FUZZ_LONG") == "1"
SETTINGS = settings(
    max_examples=5000 if LONG else 120,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
VALID_KEYS = {S.NO_SENSE, S.RECOVERED_ERROR, S.NOT_READY, S.MEDIUM_ERROR, S.HARDWARE_ERROR,
              S.ILLEGAL_REQUEST, S.UNIT_ATTENTION, S.DATA_PROTECT, S.ABORTED_COMMAND,
              S.MISCOMPARE, S.BLANK_CHECK, S.VOLUME_OVERFLOW}

# Every opcode the engine or the kernel names; fuzzing leans on them, plus any byte.
KNOWN_OPS = sorted({v for k, v in vars(S).items() if k.isupper() and isinstance(v, int)
                    and k.replace("_", "").isalnum() and 0 <= v <= 0xFF
                    and not k.startswith(("PROTO_", "SAI_", "MI_", "MO_"))} |
                   {0x01, 0x0B, 0x2B, 0xA8, 0xAA, 0x25, 0x9E, 0xA3, 0xA4})


class Env:
    """One Sim with an rd_mcp and a fileio device, each behind a port with 3 nexuses."""

    def __init__(self, tmp):
        self.sim = Sim(state_dir=tmp / "state")
        rd = self.sim.rd_device(pages=256)  # 1 MiB: WRITE SAME of the whole LU stays cheap
        fd = self.sim.fileio_device(tmp / "f0.img", size=1 << 20, buffered=True)
        base = "/target/core/fileio_0/f0/attrib"
        for attr in ("emulate_tpu", "emulate_tpws", "emulate_caw"):
            self.sim.write(f"{base}/{attr}", "1")
        self.devs = {"rd_mcp": rd, "fileio": fd}
        self.nexus = {}
        for name, dev in self.devs.items():
            port = self.sim.port(dev)
            self.nexus[name] = [self.sim.nexus(f"iqn.1994-05.com.example:i{i}", port,
                                               isid=f"00023d00000{i}") for i in range(3)]

    def submit(self, backend, who, cdb, data=b""):
        return self.sim.engine.submit(self.nexus[backend][who], self.devs[backend], cdb, data)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("fuzzcdb"))
    yield e
    e.sim.close()


def assert_well_formed(res, cdb):
    if res.status == S.GOOD:
        assert res.sense == b"", cdb.hex()
        return
    if res.status == S.RESERVATION_CONFLICT:
        assert res.sense == b"" and res.data == b"", cdb.hex()
        return
    assert res.status == S.CHECK_CONDITION, (hex(res.status), cdb.hex())
    s = res.sense
    assert s, cdb.hex()
    if s[0] & 0x7F == 0x72:
        assert len(s) == 8 + s[7], cdb.hex()
        assert s[1] & 0x0F in VALID_KEYS
    else:
        assert s[0] & 0x7F == 0x70 and len(s) == 18 and s[7] == 0x0A, (s.hex(), cdb.hex())
        assert s[2] & 0x0F in VALID_KEYS, (s.hex(), cdb.hex())
    assert res.data == b"", cdb.hex()


backends = st.sampled_from(["rd_mcp", "fileio"])
who = st.integers(0, 2)
data_out = st.one_of(st.just(b""), st.binary(max_size=64),
                     st.sampled_from([512, 1024, 4096, 24]).map(bytes),
                     st.binary(min_size=8, max_size=40))


@st.composite
def any_cdb(draw):
    """Any opcode, any length 0..32, random bytes."""
    return draw(st.binary(min_size=0, max_size=32))


@st.composite
def known_cdb(draw):
    """A known opcode, its usual length or a random one, mostly-zero fields (so the
    interesting values - small LBAs and lengths, single flag bits - come up often)."""
    op = draw(st.sampled_from(KNOWN_OPS))
    n = draw(st.one_of(st.sampled_from([6, 10, 12, 16, 32]), st.integers(1, 32)))
    body = bytearray(31)
    for i in draw(st.lists(st.integers(0, 30), max_size=6)):
        body[i] = draw(st.one_of(st.integers(0, 0xFF), st.sampled_from([1, 2, 8, 0x10, 0x80])))
    return (bytes([op]) + bytes(body))[:n]


@given(backend=backends, who=who, cdb=any_cdb(), data=data_out)
@SETTINGS
def test_random_cdbs(env, backend, who, cdb, data):
    assert_well_formed(env.submit(backend, who, cdb, data), cdb)


@given(backend=backends, who=who, cdb=known_cdb(), data=data_out)
@SETTINGS
def test_known_opcodes_random_fields(env, backend, who, cdb, data):
    assert_well_formed(env.submit(backend, who, cdb, data), cdb)


@given(backend=backends, who=who, lba=st.integers(0, 2100), n=st.integers(0, 8),
       op=st.sampled_from([0x28, 0x2A, 0x88, 0x8A, 0x08, 0x0A, 0xA8, 0xAA, 0x2E, 0x8E,
                           0x41, 0x93, 0x89, 0x2F, 0x8F, 0x35, 0x91]),
       flags=st.sampled_from([0, 0x08, 0x10, 0x02, 0x20]), short_data=st.booleans())
@SETTINGS
def test_block_commands_at_the_edges(env, backend, who, lba, n, op, flags, short_data):
    """Data commands around the last LBA (2047 for 1 MiB of 512-byte blocks)."""
    if op in (0x08, 0x0A):
        cdb = bytes([op, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, n, 0])
    elif op in (0xA8, 0xAA):
        cdb = struct.pack(">BBIIBB", op, flags, lba, n, 0, 0)
    elif op in (0x88, 0x8A, 0x8E, 0x8F, 0x91, 0x93):
        cdb = struct.pack(">BBQIBB", op, flags, lba, n, 0, 0)
    elif op == 0x89:
        cdb = struct.pack(">BBQ3xB2x", op, flags, lba, n)
    else:
        cdb = struct.pack(">BBIBHB", op, flags, lba, 0, n, 0)
    nbytes = 512 * n * (2 if op == 0x89 else 1)
    if op in (0x41, 0x93):
        nbytes = 512
    writes = op in (0x0A, 0x2A, 0x8A, 0xAA, 0x2E, 0x8E, 0x41, 0x93, 0x89)
    data = bytes(nbytes - (1 if short_data and nbytes else 0)) if writes else b""
    res = env.submit(backend, who, cdb, data)
    assert_well_formed(res, cdb)
    if res.status == S.GOOD and op in (0x28, 0x88, 0x08, 0xA8):
        assert len(res.data) == 512 * (n or (256 if op == 0x08 else 0))


# -- targeted: truncated CDBs ----------------------------------------------------------------
def _full_cdbs():
    """One sensible full-length CDB per known command, lengths set so they do something."""
    c = [
        bytes(6),                                               # TEST UNIT READY
        bytes([0x03, 0, 0, 0, 18, 0]),                          # REQUEST SENSE
        bytes([0x12, 0, 0, 0, 96, 0]),                          # INQUIRY
        bytes([0x12, 1, 0x83, 0, 0xFF, 0]),                     # INQUIRY VPD 83h
        bytes([0x1A, 0, 0x3F, 0, 0xFF, 0]),                     # MODE SENSE(6)
        bytes([0x5A, 0, 0x3F, 0, 0, 0, 0, 1, 0, 0]),            # MODE SENSE(10)
        bytes([0x15, 0x10, 0, 0, 0, 0]),                        # MODE SELECT(6)
        bytes([0x55, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]),            # MODE SELECT(10)
        bytes([0x25] + [0] * 9),                                # READ CAPACITY(10)
        bytes([0x9E, 0x10] + [0] * 8 + [0, 0, 0, 32, 0, 0]),    # READ CAPACITY(16)
        bytes([0x9E, 0x13] + [0] * 8 + [0, 0, 1, 0, 0, 0]),     # REPORT REFERRALS
        bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),         # REPORT LUNS
        bytes([0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),      # REPORT TARGET PGS
        bytes([0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),      # REPORT SUPPORTED OPCODES
        bytes([0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),      # SET TARGET PGS
        bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 64, 0]),              # PR IN READ KEYS
        bytes([0x5E, 1, 0, 0, 0, 0, 0, 0, 64, 0]),              # PR IN READ RESERVATION
        bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0]),              # PR OUT REGISTER
        bytes([0x16, 0, 0, 0, 0, 0]),                           # RESERVE(6)
        bytes([0x17, 0, 0, 0, 0, 0]),                           # RELEASE(6)
        bytes([0x56] + [0] * 9), bytes([0x57] + [0] * 9),       # RESERVE/RELEASE(10)
        bytes([0x08, 0, 0, 1, 1, 0]), bytes([0x0A, 0, 0, 1, 1, 0]),
        struct.pack(">BBIBHB", 0x28, 0, 1, 0, 1, 0), struct.pack(">BBIBHB", 0x2A, 0, 1, 0, 1, 0),
        struct.pack(">BBIIBB", 0xA8, 0, 1, 1, 0, 0), struct.pack(">BBIIBB", 0xAA, 0, 1, 1, 0, 0),
        struct.pack(">BBQIBB", 0x88, 0, 1, 1, 0, 0), struct.pack(">BBQIBB", 0x8A, 0, 1, 1, 0, 0),
        struct.pack(">BBIBHB", 0x2E, 0, 1, 0, 1, 0), struct.pack(">BBQIBB", 0x8E, 0, 1, 1, 0, 0),
        struct.pack(">BBIBHB", 0x2F, 0, 1, 0, 1, 0), struct.pack(">BBQIBB", 0x8F, 0, 1, 1, 0, 0),
        struct.pack(">BBIBHB", 0x35, 0, 1, 0, 1, 0), struct.pack(">BBQIBB", 0x91, 0, 1, 1, 0, 0),
        struct.pack(">BBIBHB", 0x41, 0, 1, 0, 1, 0), struct.pack(">BBQIBB", 0x93, 0, 1, 1, 0, 0),
        struct.pack(">BBQ3xB2x", 0x89, 0, 1, 1),                # COMPARE AND WRITE
        bytes([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]),              # UNMAP
        bytes([0x1B, 0, 0, 0, 1, 0]),                           # START STOP UNIT
        bytes([0x01, 0, 0, 0, 0, 0]), bytes([0x0B, 0, 0, 0, 0, 0]), bytes([0x2B] + [0] * 9),
        bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18, 0, 0x0D] + [0] * 18 + [0, 0, 0, 1]),  # WS(32)
    ]
    return c


@pytest.mark.parametrize("backend", ["rd_mcp", "fileio"])
def test_truncated_cdbs_read_as_zero_padded(env, backend):
    """Every prefix of every known CDB gets the answer of the zero-padded CDB (what the
    kernel sees in its fixed CDB buffer), never an exception."""
    tried = 0
    for full in _full_cdbs():
        for n in range(1, len(full)):
            cut = full[:n]
            padded = cut + bytes(max(0, max(scsi_command_size(cut), 32 if cut[0] == 0x7F
                                            else 0) - n))
            a = env.submit(backend, 1, cut)
            b = env.submit(backend, 1, padded)
            assert_well_formed(a, cut)
            assert (a.status, a.sense, a.data) == (b.status, b.sense, b.data), \
                (cut.hex(), a, b)
            tried += 1
    assert tried > 300


def test_empty_cdb_is_invalid_field(env):
    res = env.submit("rd_mcp", 0, b"")
    assert res.status == S.CHECK_CONDITION
    assert res.sense_tuple() == (S.ILLEGAL_REQUEST, 0x24, 0x00)


def test_oversized_variable_length_cdb_refused(env):
    """target_cmd_init_cdb: scsi_command_size() above SCSI_MAX_VARLEN_CDB_SIZE (260)."""
    cdb = bytes([0x7F, 0, 0, 0, 0, 0, 0, 0xFF]) + bytes(24)
    res = env.submit("rd_mcp", 0, cdb)
    assert res.sense_tuple() == (S.ILLEGAL_REQUEST, 0x24, 0x00)


def test_devices_still_serve_after_fuzzing(env):
    """After all of the above, both devices still answer READ CAPACITY and a READ."""
    for backend in ("rd_mcp", "fileio"):
        for who in range(3):
            # clear pending unit attentions and any reservation left by the fuzzing
            for _ in range(4):
                env.submit(backend, who, bytes([0x03, 0, 0, 0, 18, 0]))
        # INQUIRY is allowed whatever reservation, ALUA state or unit attention the
        # fuzzing left behind
        res = env.submit(backend, 0, bytes([0x12, 0, 0, 0, 36, 0]))
        assert res.status == S.GOOD and len(res.data) == 36
