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
    assert (tmp_path / "st/etc/target/x.json").read_text() == "saved\n"
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


def test_unprivileged_user(tmp_path):
    """As an ordinary user: a user + mount namespace, no root, no kernel module.

    Needs (as root, once): /dev/fuse mode 0666 — distributions ship it so, these machines
    have 0600, so this test sets it — and a throwaway user. The user runs Debian's python3
    with simfs's dependencies from Debian packages (.ci/run installs them)."""
    import pwd
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root to create the throwaway user")
    py = "/usr/bin/python3"
    deps = subprocess.run([py, "-c", "import fusepy, loguru, psutil, sortedcontainers"],
                          capture_output=True)
    if deps.returncode != 0:
        pytest.skip("Debian's python3 lacks python3-fusepy/loguru/psutil/sortedcontainers")
    user = "simfs-test"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", user], check=True)
    os.chmod("/dev/fuse", 0o666)  # what distributions ship; see the docstring
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    home = pwd.getpwnam(user).pw_dir
    r = subprocess.run(["runuser", "-u", user, "--", "env", f"HOME={home}",
                        f"PYTHONPATH={src}", py, "-m", "simfs", "run", "--", "sh", "-c",
                        "mkdir /sys/kernel/config/target/core/fileio_0 && "
                        "cat /sys/kernel/config/target/core/fileio_0/hba_info"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HBA Index: 1 plugin: fileio version: v5.0\n"
    assert os.path.isdir(os.path.join(home, ".local/state/simfs/run/modern/mount"))


def test_unprivileged_run_cannot_open_what_its_user_cannot(tmp_path):
    """Backing files are opened with the user's rights: a root-only file is refused."""
    import pwd
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root to create the throwaway user and the root-only file")
    py = "/usr/bin/python3"
    if subprocess.run([py, "-c", "import fusepy, loguru, psutil, sortedcontainers"],
                      capture_output=True).returncode:
        pytest.skip("Debian's python3 lacks simfs's dependencies")
    user = "simfs-test"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", user], check=True)
    os.chmod("/dev/fuse", 0o666)
    secret = "/root/simfs-secret.img"
    with open(secret, "wb") as f:
        f.truncate(1 << 20)
    os.chmod(secret, 0o600)
    try:
        c = "/sys/kernel/config/target/core/fileio_0/f"
        script = (f"mkdir -p {c} && echo fd_dev_name={secret},fd_dev_size=1048576 > {c}/control"
                  f" && echo 1 > {c}/enable")
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        home = pwd.getpwnam(user).pw_dir
        r = subprocess.run(["runuser", "-u", user, "--", "env", f"HOME={home}",
                            f"PYTHONPATH={src}", py, "-m", "simfs", "run", "--", "bash", "-c",
                            script], capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode != 0
        assert "Permission denied" in r.stderr
    finally:
        os.unlink(secret)
