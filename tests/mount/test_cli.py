"""The ``simfs`` command: mount, umount, dmesg, as a user runs them."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

from helpers import sh


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["simfs", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def _is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def test_mount_prints_where_and_returns_when_ready(tmp_path):
    mp, st = tmp_path / "mp", tmp_path / "st"
    mp.mkdir()
    r = _run("mount", "--state-dir", str(st), str(mp))
    try:
        assert r.returncode == 0, r.stderr
        assert f"export TARGET={mp}/target/core" in r.stdout
        # Ready means the tree answers at once, with the module-load lines logged.
        assert sorted(os.listdir(mp / "target")) == ["core", "dbroot", "version"]
        log = _run("dmesg", str(mp)).stdout
        assert "Target Engine Core ConfigFS Infrastructure v5.0" in log or \
            "TARGET_CORE" in log
        assert (st / "dmesg.log").read_text() == log  # the log is a file in the state dir
        assert (mp / "target/dbroot").read_text() == f"{st}/var/target\n"
    finally:
        assert _run("umount", str(mp)).returncode == 0
    assert not _is_mounted(str(mp))


def test_mount_refuses_a_missing_mountpoint(tmp_path):
    r = _run("mount", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a directory" in r.stderr


def test_dmesg_without_a_mountpoint_needs_exactly_one_mount(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"))
    r = _run("dmesg", env=env)
    assert r.returncode == 2 and "no simfs mount is active" in r.stderr
    mp = tmp_path / "mp"
    mp.mkdir()
    assert _run("mount", "--quiet", str(mp), env=env).returncode == 0
    try:
        r = _run("dmesg", env=env)
        assert r.returncode == 0 and "TARGET_CORE[0]: Loading" in r.stdout
    finally:
        _run("umount", str(mp), env=env)
    assert not list((tmp_path / "xdg/simfs/active").glob("*.json"))


def test_umount_after_the_daemon_was_killed(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"))
    mp = tmp_path / "mp"
    mp.mkdir()
    assert _run("mount", "--quiet", str(mp), env=env).returncode == 0
    rec = json.loads(next((tmp_path / "xdg/simfs/active").glob("*.json")).read_text())
    os.kill(rec["pid"], signal.SIGKILL)
    time.sleep(0.2)
    assert "not connected" in sh(f"ls {mp}").stderr
    r = _run("umount", str(mp), env=env)
    assert r.returncode == 0, r.stderr
    assert not _is_mounted(str(mp))
    assert os.listdir(mp) == []


def test_dmesg_follow_prints_new_lines(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    assert _run("mount", "--quiet", "--state-dir", str(tmp_path / "st"), str(mp)).returncode == 0
    try:
        p = subprocess.Popen(["simfs", "dmesg", "--follow", str(mp)], stdout=subprocess.PIPE)
        try:
            os.mkdir(mp / "target/core/rd_mcp_7")
            deadline = time.monotonic() + 10
            seen = ""
            fd = p.stdout.fileno()
            while "Attached HBA to" not in seen and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.2)[0]:
                    seen += os.read(fd, 65536).decode()
            assert "CORE_HBA[1] - Attached HBA to Generic Target Core" in seen
        finally:
            p.kill()
            p.wait()
    finally:
        _run("umount", str(mp))
