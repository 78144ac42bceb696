"""``simfs run``: a command sees simfs at /sys/kernel/config, and nothing leaks out."""
from __future__ import annotations

import os
import subprocess


def run(tmp_path, *cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["simfs", "run", "--state-dir", str(tmp_path / "st"), "--", *cmd],
                          capture_output=True, text=True, timeout=timeout)


def test_configfs_is_simfs_inside_only(tmp_path):
    r = run(tmp_path, "bash", "-c",
            "cat /sys/kernel/config/target/version && modprobe target_core_mod && echo ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Target Engine Core ConfigFS Infrastructure v5.0 on Linux/")
    assert r.stdout.endswith("ok\n")
    assert not os.path.exists("/sys/kernel/config/target")  # the host never sees it


def test_exit_status_passes_through(tmp_path):
    assert run(tmp_path, "sh", "-c", "exit 7").returncode == 7


def test_etc_target_is_private_and_persists(tmp_path):
    host_had = os.path.exists("/etc/target")
    r = run(tmp_path, "sh", "-c", "mkdir -p /etc/target && echo saved > /etc/target/x.json")
    assert r.returncode == 0, r.stderr
    assert os.path.exists("/etc/target") == host_had
    assert (tmp_path / "st/etc-target/x.json").read_text() == "saved\n"
    r = run(tmp_path, "cat", "/etc/target/x.json")  # the next run sees it again
    assert r.stdout == "saved\n"


def test_v3_profile_and_log(tmp_path):
    r = subprocess.run(["simfs", "run", "--profile", "v3.0", "--state-dir", str(tmp_path / "st"),
                        "--", "sh", "-c", "mkdir /sys/kernel/config/target/core/rd_mcp_0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    assert "PLUGIN_TRANSPORT[6] - rd_mcp registered" in log
    assert "CORE_HBA[0] - Attached Ramdisk HBA" in log
