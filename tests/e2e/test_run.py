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


def test_a_missing_command_is_status_127_with_the_shells_message(tmp_path):
    r = run(tmp_path, "no-such-command-for-simfs")
    assert r.returncode == 127
    assert r.stderr == "simfs run: no-such-command-for-simfs: No such file or directory\n"
    script = tmp_path / "not-executable.sh"
    script.write_text("echo never\n")
    script.chmod(0o644)
    r = run(tmp_path, str(script))
    assert r.returncode == 126
    assert r.stderr == f"simfs run: {script}: Permission denied\n"


def test_etc_target_is_private_and_persists(tmp_path):
    host_had = os.path.exists("/etc/target")
    r = run(tmp_path, "sh", "-c", "mkdir -p /etc/target && echo saved > /etc/target/x.json")
    assert r.returncode == 0, r.stderr
    assert os.path.exists("/etc/target") == host_had
    assert (tmp_path / "st/etc/target/x.json").read_text() == "saved\n"
    r = run(tmp_path, "cat", "/etc/target/x.json")  # the next run sees it again
    assert r.stdout == "saved\n"


def test_dbroot_starts_at_etc_target_as_on_a_kernel(tmp_path):
    """The kernel starts dbroot at /etc/target when that is a directory (it is, in the
    run's own /etc): an APTPL file written there is kept in the state dir, not on the host."""
    t = "/sys/kernel/config/target"
    script = (f"cat {t}/dbroot; mkdir -p {t}/core/rd_mcp_0/r0; "
              f"echo rd_pages=64 > {t}/core/rd_mcp_0/r0/control; "
              f"echo abc > {t}/core/rd_mcp_0/r0/wwn/vpd_unit_serial; "
              f"echo 1 > {t}/core/rd_mcp_0/r0/enable; simfs scsi /sys/kernel/config "
              "rd_mcp_0/r0 persist --register --sa-key 0x1 --aptpl >/dev/null")
    r = run(tmp_path, "sh", "-ec", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/etc/target\n"
    assert "sa_res_key=1\n" in (tmp_path / "st/etc/target/pr/aptpl_abc").read_text()
    assert not os.path.exists("/etc/target/pr/aptpl_abc")


def test_v3_profile_and_log(tmp_path):
    r = subprocess.run(["simfs", "run", "--profile", "v3.0", "--state-dir", str(tmp_path / "st"),
                        "--", "sh", "-c", "mkdir /sys/kernel/config/target/core/rd_mcp_0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    assert "PLUGIN_TRANSPORT[6] - rd_mcp registered" in log
    assert "CORE_HBA[0] - Attached Ramdisk HBA" in log


def test_unprivileged_user(unprivileged):
    """As an ordinary user: a user + mount namespace, no root, no kernel module."""
    r = unprivileged.simfs_run("mkdir /sys/kernel/config/target/core/fileio_0 && "
                               "cat /sys/kernel/config/target/core/fileio_0/hba_info", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HBA Index: 1 plugin: fileio version: v5.0\n"
    assert os.path.isdir(os.path.join(unprivileged.home, ".local/state/simfs/run/modern/mount"))


def test_unprivileged_run_cannot_open_what_its_user_cannot(unprivileged):
    """Backing files are opened with the user's rights: a root-only file is refused."""
    secret = "/root/simfs-secret.img"
    with open(secret, "wb") as f:
        f.truncate(1 << 20)
    os.chmod(secret, 0o600)
    try:
        c = "/sys/kernel/config/target/core/fileio_0/f"
        r = unprivileged.simfs_run(f"mkdir -p {c} && echo fd_dev_name={secret},"
                                   f"fd_dev_size=1048576 > {c}/control && echo 1 > {c}/enable",
                                   timeout=60)
        assert r.returncode != 0
        assert "Permission denied" in r.stderr
    finally:
        os.unlink(secret)


def test_rtslib_module_check_sees_the_target_modules(tmp_path):
    """rtslib-fb reads /proc/modules before it loads a module; inside the namespace the
    target modules are there (bind-mounted over the host's list, or, on a kernel without
    module support, answered to Python tools), and the host's /proc/modules is unchanged."""
    host = open("/proc/modules").read() if os.path.exists("/proc/modules") else None
    r = run(tmp_path, "python3", "-c",
            "from rtslib import utils; print(' '.join(utils.list_loaded_kernel_modules()))")
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    for name in ("target_core_mod", "target_core_iblock", "target_core_file",
                 "iscsi_target_mod", "tcm_loop"):
        assert name in loaded, loaded
    now = open("/proc/modules").read() if os.path.exists("/proc/modules") else None
    assert (now is None) == (host is None) and "target_core_mod" not in (now or "")


def test_targetcli_fabric_create_gets_past_the_module_check(tmp_path):
    """`targetcli /vhost create` (rtslib: mkdir target/vhost, then the module check) never
    fails on /proc/modules: it creates the target where simfs has the fabric, and
    otherwise fails as a machine with the module loaded and no such fabric would."""
    r = run(tmp_path, "targetcli", "/vhost", "create", timeout=120)
    out = r.stdout + r.stderr
    assert "/proc/modules" not in out and "Traceback" not in out, out
    if r.returncode == 0 and "Created target" in out:
        return
    assert "Could not create VhostFabricModule in configFS" in out, out


def test_targetcli_with_a_long_state_dir(tmp_path):
    """The private D-Bus socket does not live in the state directory: a long path there
    (over a Unix socket's 107 bytes) must not cost targetcli its bus."""
    long = tmp_path / ("d" * 60) / ("e" * 40)
    r = subprocess.run(["simfs", "run", "--state-dir", str(long), "--", "targetcli", "ls"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "o- backstores" in r.stdout, r.stdout + r.stderr
