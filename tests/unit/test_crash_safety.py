"""Crash safety of what simfs keeps on disk, and durability of acknowledged writes.

* APTPL (``<dbroot>/pr/aptpl_<serial>``) and ALUA metadata (``<dbroot>/alua/...``) are
  written with write + fsync + rename (target/core.py atomic_write): a writer killed with
  SIGKILL at any moment leaves the old complete file or the new complete file, never half
  of one. A child process runs a Sim that rewrites both files as fast as it can; the
  parent kills it after random delays, many times, and checks what is on disk.
* fileio: a WRITE acknowledged with FUA, or followed by SYNCHRONIZE CACHE, has been made
  durable: O_DSYNC devices write synchronously, buffered ones call fdatasync - checked by
  counting the os.fdatasync calls and the open flags (no strace needed).
"""
from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

from simfs.scsi import cdbs
from simfs.scsi import status as S
from simfs.testing import Sim

SERIAL = "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4"

WRITER = textwrap.dedent(f"""
    import sys, os
    from pathlib import Path
    from simfs.testing import Sim
    from simfs.scsi import cdbs
    state = Path(sys.argv[1])
    sim = Sim(state_dir=state)
    db = Path(sim.core.dbroot)
    (db / "pr").mkdir(parents=True, exist_ok=True)
    dev = sim.rd_device(serial="{SERIAL}")
    (db / "alua" / "tpgs_{SERIAL}").mkdir(parents=True, exist_ok=True)
    gp = "/target/core/rd_mcp_0/rd0/alua/default_tg_pt_gp"
    sim.write(gp + "/alua_write_metadata", "1")
    port = sim.port(dev)
    nx = [sim.nexus(f"iqn.1994-05.com.example:node{{i}}", port) for i in range(6)]
    print("ready", db, flush=True)
    i = 0
    while True:
        i += 1
        # grow and shrink the registration list, so each write differs in length
        n = i % 6
        cdb, data = cdbs.pr_out(0x06, sa_key=0x1000 + i, aptpl=True)  # REGISTER AND IGNORE
        sim.engine.submit(nx[n], dev, cdb, data)
        if i % 3 == 0:
            cdb, data = cdbs.pr_out(0x06, sa_key=0, aptpl=True)       # unregister
            sim.engine.submit(nx[(n + 2) % 6], dev, cdb, data)
        sim.write(gp + "/alua_access_state", str((0, 1, 2, 3)[i % 4]))
""")


def check_aptpl(data: bytes) -> None:
    assert data.endswith(b"\0"), data[-40:]
    text = data[:-1].decode()
    if text.startswith("No Registrations or Reservations"):
        return
    starts = text.count("PR_REG_START: ")
    ends = text.count("PR_REG_END: ")
    assert starts == ends >= 1, text
    assert text.endswith(f"PR_REG_END: {ends - 1}\n"), text[-80:]
    for n in range(starts):
        block = text.split(f"PR_REG_START: {n}\n", 1)[1].split(f"PR_REG_END: {n}\n", 1)[0]
        for key in ("initiator_fabric=", "initiator_node=", "sa_res_key=", "res_holder=",
                    "target_node=", "tpgt=", "port_rtpi=", "target_lun="):
            assert key in block, (key, block)


def check_alua(data: bytes) -> None:
    text = data.decode()
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3, text
    assert lines[0] == "tg_pt_gp_id=0"
    assert lines[1] in {f"alua_access_state=0x{s:02x}" for s in (0, 1, 2, 3)}, lines
    assert lines[2].startswith("alua_access_status=0x"), lines


def test_sigkill_never_leaves_half_a_file(tmp_path):
    rng = random.Random(7)
    state = tmp_path / "state"
    kills = checked = 0
    deadline = time.monotonic() + 25
    dbroot = None
    # at least 20 kills however slow the machine is; up to 60 while time allows
    while kills < 60 and (kills < 20 or time.monotonic() < deadline):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(state)],
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.startswith("ready"), line
        dbroot = line.split(None, 1)[1].strip()
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        kills += 1
        aptpl = os.path.join(dbroot, "pr", f"aptpl_{SERIAL}")
        alua = os.path.join(dbroot, "alua", f"tpgs_{SERIAL}", "default_tg_pt_gp")
        if os.path.exists(aptpl):
            with open(aptpl, "rb") as f:
                check_aptpl(f.read())
            checked += 1
        if os.path.exists(alua):
            with open(alua, "rb") as f:
                check_alua(f.read())
            checked += 1
    assert kills >= 20 and checked >= kills // 2, (kills, checked)
    print(f"\ncrash safety: {kills} SIGKILLs, {checked} files checked whole")
    # leftovers of killed writers are only atomic_write's own temporaries (.name.XXXX),
    # never a half-written file under the real name
    for sub in ("pr", f"alua/tpgs_{SERIAL}"):
        for name in os.listdir(os.path.join(dbroot, sub)):
            assert name in (f"aptpl_{SERIAL}", "default_tg_pt_gp") or name.startswith("."), name


def test_atomic_write_syncs_before_rename(tmp_path, monkeypatch):
    """The order that makes a crash safe: data written, fsync'd, then renamed."""
    from simfs.core import core
    calls = []
    real = {n: getattr(os, n) for n in ("write", "fsync", "replace")}
    for n in real:
        monkeypatch.setattr(core.os, n, lambda *a, _n=n: (calls.append(_n), real[_n](*a))[1])
    core.atomic_write(tmp_path / "f", b"hello")
    # data synced before the rename; the directory synced after it (power-loss safety)
    assert [c for c in calls if c in ("write", "fsync", "replace")] == ["write", "fsync",
                                                                        "replace", "fsync"]
    assert (tmp_path / "f").read_bytes() == b"hello"


# -- durability of acknowledged writes (fileio) ---------------------------------------------------
def write10(lba, n, flags=0):
    return struct.pack(">BBIBHB", 0x2A, flags, lba, 0, n, 0)


def _count_fdatasync(monkeypatch):
    from simfs.core import storage
    count = []
    real = os.fdatasync
    monkeypatch.setattr(storage.os, "fdatasync", lambda fd: (count.append(fd), real(fd))[1])
    return count


def test_fileio_o_dsync_by_default(tmp_path, monkeypatch):
    """Without fd_buffered_io the file is opened O_DSYNC: every acknowledged WRITE is on
    stable storage when it completes (target_core_file.c fd_configure_device)."""
    opened = []
    real_open = os.open
    from simfs_plugins.backends import fileio
    monkeypatch.setattr(fileio.os, "open", lambda p, f, *a: (opened.append((str(p), f)),
                                                             real_open(p, f, *a))[1])
    sim = Sim(state_dir=tmp_path / "s")
    img = tmp_path / "d.img"
    dev = sim.fileio_device(img, size=1 << 20)
    flags = [f for p, f in opened if p == str(img)]
    assert flags and all(f & os.O_DSYNC for f in flags)
    nx = sim.nexus("iqn.x:a", sim.port(dev))
    assert sim.engine.submit(nx, dev, write10(4, 1), b"\x5a" * 512).ok
    with open(img, "rb") as f:
        f.seek(4 * 512)
        assert f.read(512) == b"\x5a" * 512
    sim.close()


def test_fileio_buffered_fua_and_sync_cache_reach_fdatasync(tmp_path, monkeypatch):
    """fd_buffered_io=1 (write cache on): a FUA write and SYNCHRONIZE CACHE each call
    fdatasync before they are acknowledged (fd_execute_rw's vfs_fsync_range for FUA,
    fd_execute_sync_cache); a plain buffered write does not."""
    count = _count_fdatasync(monkeypatch)
    sim = Sim(state_dir=tmp_path / "s")
    dev = sim.fileio_device(tmp_path / "d.img", size=1 << 20, buffered=True)
    nx = sim.nexus("iqn.x:a", sim.port(dev))
    sub = sim.engine.submit
    assert dev.attrib.emulate_write_cache == 1  # buffered fileio advertises WCE
    assert sub(nx, dev, write10(0, 1), bytes(512)).ok
    assert count == []
    assert sub(nx, dev, write10(1, 1, flags=0x08), bytes(512)).ok  # FUA
    assert len(count) == 1
    assert sub(nx, dev, cdbs.synchronize_cache_16()).ok
    assert len(count) == 2
    res = sub(nx, dev, bytes([0x35] + [0] * 9))  # SYNCHRONIZE CACHE(10)
    assert res.status == S.GOOD and len(count) == 3
    sim.close()
