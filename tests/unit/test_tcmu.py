"""user: (TCMU) backstores and their handlers, in-process: the runner's add_device (errno,
log line, nothing changed on refusal), handler I/O through the engine, tcmu-runner's status
-> sense table, whole-CDB handlers, resize with the capacity-changed unit attention."""
from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given, settings, HealthCheck, strategies as st

from simfs.configfs import ConfigfsError
from simfs.daemon.tcmu_dbus import check_config
from simfs.scsi import cdbs
from simfs.scsi import status as S
from simfs.testing import Sim
from simfs_plugins.handlers import STATUS_SENSE, Handler, HandlerError, Status, \
    discover_handlers
from test_fuzz_configfs import snapshot

DEV = "/target/core/user_1/u0"
INIT = "iqn.1994-05.com.example:a"


class MemHandler(Handler):
    """A handler kept in memory, whose failures a test chooses."""

    subtype = "mem"
    cfg_desc = "mem/<anything>"

    def __init__(self):
        self.fail: BaseException | None = None
        self.closed = 0

    def check_config(self, cfgstring):
        return "refused by mem" if cfgstring.endswith("/bad") else None

    def open(self, dev):
        if dev.config == "broken":
            dev.log.err("mem cannot open broken")
            raise OSError(errno.EIO, "broken")
        dev.private = bytearray(dev.size)

    def close(self, dev):
        self.closed += 1

    def read(self, dev, offset, length):
        if self.fail:
            raise self.fail
        return bytes(dev.private[offset:offset + length])

    def write(self, dev, offset, data):
        if self.fail:
            raise self.fail
        dev.private[offset:offset + len(data)] = data

    def handle_cmd(self, dev, cmd):
        if cmd.cdb[0] == 0xC0:  # a vendor command only this handler knows
            return b"mem:" + cmd.initiator.encode()
        return None


@pytest.fixture
def mem():
    h = MemHandler()
    discover_handlers()["mem"] = h
    yield h
    discover_handlers().pop("mem", None)


@pytest.fixture
def sim():
    s = Sim()
    s.mkdir("/target/core/user_1")
    s.mkdir(DEV)
    yield s
    s.close()


def enable(sim, cfg: str, size: int = 1 << 20):
    sim.write(f"{DEV}/control", f"dev_config={cfg},dev_size={size}")
    sim.write(f"{DEV}/enable", "1")
    dev = sim.core.hbas["user_1"].devices["u0"]
    nx = sim.nexus(INIT, sim.port(dev))
    return lambda cdb, data=b"": sim.engine.submit(nx, dev, cdb, data)


def read10(lba, n):
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + n.to_bytes(2, "big") + b"\0"


def write10(lba, n):
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + n.to_bytes(2, "big") + b"\0"


# -- the file handler ---------------------------------------------------------------------------
def test_file_handler_round_trip(sim, tmp_path):
    sub = enable(sim, f"file/{tmp_path}/u0.img")
    r = sub(cdbs.inquiry())
    assert r.data[8:36] == b"LIO-ORG TCMU device     0002"  # tcmu-runner's identity
    assert sim.read(f"{DEV}/wwn/product_id") == "\n"         # configfs keeps the kernel's
    data = os.urandom(1024)
    assert sub(write10(3, 2), data).status == S.GOOD
    with open(tmp_path / "u0.img", "rb") as f:
        f.seek(3 * 512)
        assert f.read(1024) == data
    assert sub(read10(3, 2)).data == data
    assert sub(read10(100, 1)).data == bytes(512)  # past the file's end: zeros
    assert sub(bytes([0x35] + [0] * 9)).status == S.GOOD  # SYNCHRONIZE CACHE -> fsync


def test_rmdir_closes_the_handler_and_frees_the_uio_minor(sim, mem):
    sim.write(f"{DEV}/control", "dev_config=mem/x,dev_size=1048576")
    sim.write(f"{DEV}/enable", "1")
    sim.tree.rmdir(DEV)
    assert mem.closed == 1
    sim.mkdir(DEV)
    sim.write(f"{DEV}/control", "dev_config=nosuch/x")
    with pytest.raises(ConfigfsError):
        sim.write(f"{DEV}/enable", "1")
    assert any("could not find handler for uio0" in ln for ln in list(sim.log.lines)[-3:])


# -- add_device refusals: ENOENT, the runner's log line, nothing changed -----------------------
@pytest.mark.parametrize("cfg,line", [
    (None, "tcmu-runner: invalid cfgstring"),
    ("nosuch/x", "tcmu-runner: could not find handler for uio0"),
    ("file/", "tcmu-runner: check_config failed for uio0 because of no path after file/"),
    ("file//no/such/dir/x.img",
     "tcmu-runner: check_config failed for uio0 because of /no/such/dir does not exist"),
    ("file//tmp", "tcmu-runner: check_config failed for uio0 because of /tmp is a directory"),
    ("mem/bad", "tcmu-runner: check_config failed for uio0 because of refused by mem"),
    ("mem/broken", "tcmu-runner: handler open failed for uio0"),
])
def test_refused_enable(sim, mem, cfg, line):
    if cfg is not None:
        sim.write(f"{DEV}/control", f"dev_config={cfg},dev_size=1048576")
    before = snapshot(sim)
    mark = len(sim.log.lines)
    with pytest.raises(ConfigfsError) as ei:
        sim.write(f"{DEV}/enable", "1")
    assert ei.value.errno == errno.ENOENT
    assert any(line in ln for ln in list(sim.log.lines)[mark:]), list(sim.log.lines)[mark:]
    assert snapshot(sim) == before
    if cfg == "mem/broken":
        assert any("tcmu-runner: mem/u0: mem cannot open broken" in ln for ln in sim.log.lines)


def test_no_reply_wanted_enables_without_a_handler(sim):
    sim.write(f"{DEV}/control", "dev_config=nosuch/x,nl_reply_supported=-1,dev_size=1048576")
    sim.write(f"{DEV}/enable", "1")  # the kernel does not wait; the runner still complains
    assert any("could not find handler for uio0" in ln for ln in sim.log.lines)
    dev = sim.core.hbas["user_1"].devices["u0"]
    r = sim.engine.submit(sim.nexus(INIT, sim.port(dev)), dev, read10(0, 1))
    assert r.sense_tuple() == (S.NOT_READY, 0x08, 0x00)  # nothing serves the ring


# -- tcmu-runner's status -> SCSI status and sense -------------------------------------------------
@pytest.mark.parametrize("status", list(Status))
def test_status_becomes_sense(sim, mem, status):
    sub = enable(sim, "mem/x")
    mem.fail = HandlerError(status, info=7 if status == Status.MISCOMPARE else None)
    r = sub(read10(0, 1))
    scsi, key, asc, ascq = STATUS_SENSE[status]
    assert r.status == scsi
    if scsi == S.CHECK_CONDITION:
        assert r.sense_tuple() == (key, asc, ascq)
    else:
        assert not r.sense


@pytest.mark.parametrize("cdb,tup", [(read10(0, 1), (0x3, 0x11, 0x00)),
                                     (write10(0, 1), (0x3, 0x0C, 0x00))])
def test_oserror_is_a_medium_error(sim, mem, cdb, tup):
    sub = enable(sim, "mem/x")
    mem.fail = OSError(errno.EIO, "gone")
    r = sub(cdb, bytes(512) if cdb[0] == 0x2A else b"")
    assert r.sense_tuple() == tup


def test_other_exceptions_are_lun_communication_failures(sim, mem):
    sub = enable(sim, "mem/x")
    mem.fail = ZeroDivisionError("oops")
    assert sub(read10(0, 1)).sense_tuple() == (S.NOT_READY, 0x08, 0x00)
    assert any("handler read raised ZeroDivisionError" in ln for ln in sim.log.lines)


# -- whole CDBs -------------------------------------------------------------------------------
def test_handle_cmd_sees_what_the_kernel_passes_up(sim, mem):
    sub = enable(sim, "mem/x")
    r = sub(bytes([0xC0] + [0] * 9))
    assert r.status == S.GOOD and r.data == f"mem:{INIT}".encode()
    r = sub(bytes([0xC1] + [0] * 9))  # neither the handler nor the engine knows it
    assert r.sense_tuple() == (S.ILLEGAL_REQUEST, 0x20, 0x00)
    assert any("Command 0xc1 not supported" in ln for ln in sim.log.lines)
    assert sub(cdbs.report_luns()).status == S.GOOD  # the kernel keeps REPORT LUNS


# -- resize -----------------------------------------------------------------------------------
def test_resize_raises_capacity_changed_once(sim, tmp_path):
    sub = enable(sim, f"file/{tmp_path}/r.img", size=1 << 20)
    assert sub(cdbs.read_capacity_10()).data[:4] == (2047).to_bytes(4, "big")
    sim.write(f"{DEV}/attrib/dev_size", str(2 << 20))
    assert sub(cdbs.inquiry()).status == S.GOOD  # INQUIRY never sees the runner's UA
    assert sub(cdbs.read_capacity_10()).sense_tuple() == (S.UNIT_ATTENTION, 0x2A, 0x09)
    assert sub(cdbs.read_capacity_10()).data[:4] == (4095).to_bytes(4, "big")


def test_resize_without_reconfig_is_refused(sim, mem):
    enable(sim, "mem/x")
    with pytest.raises(ConfigfsError) as ei:
        sim.write(f"{DEV}/attrib/dev_size", str(2 << 20))
    assert ei.value.errno == errno.EOPNOTSUPP
    assert any("Unable to reconfigure device" in ln for ln in sim.log.lines)
    assert sim.read(f"{DEV}/attrib/dev_size") == "1048576\n"


# -- D-Bus CheckConfig's answers ----------------------------------------------------------------
def test_check_config_answers(mem):
    file = discover_handlers()["file"]
    assert check_config(file, "file//tmp/x.img") == (True, "success")
    assert check_config(file, "file//no/such/x") == (False, "/no/such does not exist")
    assert check_config(mem, "mem/bad") == (False, "refused by mem")


# -- fuzzed cfgstrings: enabled, or ENOENT with a runner line and nothing changed ----------------
@given(prefix=st.sampled_from(["", "file/", "fil/", "mem/", "nosuch/", "/"]),
       rest=st.text(max_size=40))
@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_fuzzed_cfgstrings(tmp_path_factory, prefix, rest):
    h = MemHandler()
    discover_handlers()["mem"] = h
    base = tmp_path_factory.mktemp("fz")
    # file/ paths stay inside a temporary folder (the handler creates what it opens)
    cfg = prefix + (f"{base}/{rest.replace('..', '')}" if prefix == "file/" else rest)
    s = Sim()
    try:
        s.mkdir("/target/core/user_1")
        s.mkdir(DEV)
        try:
            s.write(f"{DEV}/attrib/dev_config", cfg)
        except ConfigfsError as e:
            assert e.errno in (errno.EINVAL, errno.EFAULT)  # empty, too long: no runner
            return
        s.write(f"{DEV}/attrib/dev_size", "1048576")
        before, mark = snapshot(s), len(s.log.lines)
        try:
            s.write(f"{DEV}/enable", "1")
        except ConfigfsError as e:
            assert e.errno == errno.ENOENT
            assert any(ln.split("] ", 1)[1].startswith("tcmu-runner: ")
                       for ln in list(s.log.lines)[mark:])
            assert snapshot(s) == before
        else:
            assert s.read(f"{DEV}/enable") == "1\n"
    finally:
        s.close()
        discover_handlers().pop("mem", None)
