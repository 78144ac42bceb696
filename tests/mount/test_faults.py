"""Injected device faults (docs/faults.md): sans-I/O through the engine, then over a real
mount with ``simfs fault`` and ``simfs scsi``.

Expected sense: fileio's fd_execute_rw returns TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE
when fd_do_rw() fails (any errno, ENOSPC included), iblock's failed bios end in
target_complete_failure_work with the same reason; both are NOT READY 08h/00h. An
offline LU answers as an ALUA secondary-offline LUN: NOT READY 04h/12h.
"""
from __future__ import annotations

import struct
import subprocess
import time

import pytest

from simfs.scsi import faults
from simfs.scsi import status as S
from simfs.testing import Sim

LUN_COMM_FAILURE = (S.NOT_READY, 0x08, 0x00)
OFFLINE = (S.NOT_READY, 0x04, 0x12)


def read10(lba, n):
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, n, 0)


def write10(lba, n):
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, n, 0)


SYNC10 = bytes([0x35] + [0] * 9)
TUR = bytes(6)
INQUIRY = bytes([0x12, 0, 0, 0, 36, 0])


@pytest.fixture(params=["fileio", "rd_mcp"])
def env(request, tmp_path):
    sim = Sim(state_dir=tmp_path / "state")
    if request.param == "fileio":
        dev = sim.fileio_device(tmp_path / "f.img", size=1 << 20)
    else:
        dev = sim.rd_device(pages=256)
    nx = sim.nexus("iqn.1994-05.com.example:a", sim.port(dev))

    def run(cdb, data=b""):
        return sim.engine.submit(nx, dev, cdb, data)

    yield sim, dev, run
    sim.close()


def test_eio_read(env):
    sim, dev, run = env
    assert run(write10(1, 1), b"\xab" * 512).ok
    faults.inject(dev, "eio-read")
    res = run(read10(1, 1))
    assert res.status == S.CHECK_CONDITION and res.sense_tuple() == LUN_COMM_FAILURE
    assert run(write10(2, 1), b"\xcd" * 512).ok  # writes still work
    assert run(TUR).ok and run(INQUIRY).ok       # non-data commands are unaffected
    if dev.backend.name == "fileio":
        assert "fd_do_rw() returned -5 for non S_ISBLK" in sim.log.text()
    faults.inject(dev, "clear")
    res = run(read10(1, 1))
    assert res.ok and res.data == b"\xab" * 512   # the data survived the fault


def test_eio_write_fails_writes_and_flushes(env):
    _sim, dev, run = env
    faults.inject(dev, "eio-write")
    res = run(write10(3, 1), b"\x11" * 512)
    assert res.sense_tuple() == LUN_COMM_FAILURE
    res = run(SYNC10)
    if dev.backend.name == "fileio":
        assert res.sense_tuple() == LUN_COMM_FAILURE
    else:
        assert res.ok  # rd_mcp has no sync op: SYNCHRONIZE CACHE never reaches storage
    assert run(read10(3, 1)).ok
    faults.inject(dev, "clear")
    assert run(read10(3, 1)).data == bytes(512)  # the failed write left nothing behind


def test_nospace(env):
    _sim, dev, run = env
    faults.inject(dev, "nospace")
    assert run(write10(0, 1), b"\x22" * 512).sense_tuple() == LUN_COMM_FAILURE
    assert run(read10(0, 1)).ok
    assert faults.describe(dev)["hits"] == {"nospace": 1}


def test_vanish_fails_all_storage_io(env):
    _sim, dev, run = env
    faults.inject(dev, "vanish")
    assert run(read10(0, 1)).sense_tuple() == LUN_COMM_FAILURE
    assert run(write10(0, 1), bytes(512)).sense_tuple() == LUN_COMM_FAILURE
    assert run(INQUIRY).ok  # the target still answers for the LU
    faults.inject(dev, "clear")
    assert run(read10(0, 1)).ok


def test_offline_refuses_everything(env):
    _sim, dev, run = env
    faults.inject(dev, "offline")
    for cdb in (TUR, INQUIRY, read10(0, 1)):
        res = run(cdb)
        assert res.status == S.CHECK_CONDITION and res.sense_tuple() == OFFLINE
    faults.inject(dev, "clear")
    assert run(TUR).ok


def test_latency(env, monkeypatch):
    _sim, dev, run = env
    slept = []
    monkeypatch.setattr(faults, "sleep", slept.append)
    faults.inject(dev, "latency", 250)
    assert run(read10(0, 1)).ok
    assert run(TUR).ok  # no data: no delay
    assert slept == [0.25]
    with pytest.raises(ValueError):
        faults.inject(dev, "latency", -1)
    with pytest.raises(ValueError):
        faults.inject(dev, "bogus")


def test_faults_are_logged(env):
    sim, dev, _run = env
    faults.inject(dev, "eio-read")
    faults.inject(dev, "clear")
    text = sim.log.text()
    name = f"{dev.hba.name}/{dev.name}"
    assert f"simfs fault: {name}: injected eio-read" in text
    assert f"simfs fault: {name}: cleared (eio-read)" in text
    assert faults.describe(dev)["active"] == []


# -- over a real mount --------------------------------------------------------------------------
def simfs(*args, check=True):
    r = subprocess.run(["simfs", *args], capture_output=True, text=True, timeout=60,
                       check=False)
    if check:
        assert r.returncode in (0, 3), r.stderr
    return r


@pytest.mark.mount
def test_fault_cli_over_a_mount(mnt, fileio_dev):
    dev = "fileio_0/disk0"
    r = simfs("scsi", mnt.root, dev, "write", "0", "--data", "ee" * 512)
    assert "Status: GOOD" in r.stdout
    mark = mnt.log_mark()
    r = simfs("fault", mnt.root, dev, "eio-read")
    assert "eio-read" in r.stdout
    r = simfs("scsi", mnt.root, dev, "read", "0")
    assert "CHECK CONDITION" in r.stdout and r.returncode == 3
    assert "NOT READY" in r.stdout.upper()
    log = mnt.log_since(mark)
    assert "injected eio-read" in log
    assert "fd_do_rw() returned -5 for non S_ISBLK" in log

    simfs("fault", mnt.root, dev, "nospace")
    r = simfs("scsi", mnt.root, dev, "write", "1", "--data", "ff" * 512)
    assert r.returncode == 3
    assert "fd_do_rw() write returned -28" in mnt.log_since(mark)

    simfs("fault", mnt.root, dev, "offline")
    r = simfs("scsi", mnt.root, dev, "tur")
    assert r.returncode == 3

    r = simfs("fault", mnt.root, dev)
    assert "offline" in r.stdout and "nospace" in r.stdout and "command(s) hit" in r.stdout

    simfs("fault", mnt.root, dev, "clear")
    r = simfs("scsi", mnt.root, dev, "read", "0")
    assert "Status: GOOD" in r.stdout and "ee" * 16 in r.stdout

    # latency: the command waits, configfs does not
    simfs("fault", mnt.root, dev, "latency", "1500")
    p = subprocess.Popen(["simfs", "scsi", mnt.root, dev, "read", "0"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    t0 = time.monotonic()
    mnt.read(f"{fileio_dev}/attrib/block_size")
    assert time.monotonic() - t0 < 1.0
    out, _ = p.communicate(timeout=30)
    assert "Status: GOOD" in out
    simfs("fault", mnt.root, dev, "clear")

    # errors: unknown device, bad latency; the daemon keeps serving
    r = simfs("fault", mnt.root, "fileio_0/nope", "offline", check=False)
    assert r.returncode == 1 and "no device" in r.stderr
    r = simfs("fault", mnt.root, dev, "latency", "99999999", check=False)
    assert r.returncode == 1
    r = simfs("fault", mnt.root, dev, "latency", check=False)
    assert r.returncode == 2
    assert mnt.read(f"{fileio_dev}/enable").strip() == "1"


@pytest.mark.mount
def test_fault_cli_after_clear_lists_no_hits(mnt, fileio_dev):
    """Once cleared, a fault's hit count goes with it: `simfs fault DEV` shows nothing
    active and no count, and a fault set again counts from zero."""
    dev = fileio_dev.removeprefix("target/core/")
    simfs("fault", mnt.root, dev, "eio-read")
    assert simfs("scsi", mnt.root, dev, "read", "0", check=False).returncode == 3
    assert "eio-read: 1 command(s) hit" in simfs("fault", mnt.root, dev).stdout
    simfs("fault", mnt.root, dev, "clear")
    assert simfs("fault", mnt.root, dev).stdout == f"{dev}: no faults\n"
    simfs("fault", mnt.root, dev, "eio-read")
    assert simfs("fault", mnt.root, dev).stdout == f"{dev}: eio-read\n"
    simfs("scsi", mnt.root, dev, "read", "0", check=False)
    assert simfs("fault", mnt.root, dev).stdout == (f"{dev}: eio-read\n"
                                                    "  eio-read: 1 command(s) hit\n")
