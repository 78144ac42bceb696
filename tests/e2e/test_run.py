"""``simfs run``: a command sees simfs at /sys/kernel/config, and nothing leaks out."""
from __future__ import annotations

import os
import subprocess

import pytest


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


CFS = "/sys/kernel/config/target"
#: prints the target's lines of /proc/modules, |-separated, as rtslib-fb reads the file (on
#: a kernel without module support Python tools get the run's list from its sitecustomize)
SHOW_MODULES = """
from simfs.cli.proc_modules import module_names
mine = module_names()
with open("/proc/modules") as f:
    print(*[x for x in f.read().splitlines() if x.split()[0] in mine], sep="|")
"""


def modules_script(tmp_path, *steps: str) -> str:
    """A script printing the run's target modules, then after each step its exit status
    and the modules again."""
    show = tmp_path / "show_modules.py"
    show.write_text(SHOW_MODULES)
    out = [f"python3 {show}"]
    for step in steps:
        out += [f"{step}; echo \"rc $?\"", f"python3 {show}"]
    return "\n".join(out)


def loaded(line: str) -> list[str]:
    return [x.split()[0] for x in line.split("|") if x]


def test_proc_modules_lists_what_is_loaded_as_it_loads(tmp_path):
    """A freshly booted machine: target_core_mod alone. mkdir target/iscsi loads
    iscsi_target_mod (the kernel's request_module), modprobe loads a fabric module, the
    first HBA the four backend modules; newest first, each using target_core_mod. The
    host's /proc/modules is unchanged."""
    host = open("/proc/modules").read() if os.path.exists("/proc/modules") else None
    r = run(tmp_path, "bash", "-c", modules_script(
        tmp_path, f"mkdir {CFS}/iscsi", "modprobe tcm_vhost", f"mkdir {CFS}/core/fileio_0",
        "modprobe -q target_core_mod"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "target_core_mod 0 0 - Live 0x0000000000000000"
    assert lines[1:3] == ["rc 0", "iscsi_target_mod 0 0 - Live 0x0000000000000000|"
                          "target_core_mod 0 1 iscsi_target_mod, Live 0x0000000000000000"]
    assert lines[3] == "rc 0" and loaded(lines[4]) == [
        "vhost_scsi", "iscsi_target_mod", "target_core_mod"]
    assert lines[5] == "rc 0" and loaded(lines[6]) == [
        "target_core_user", "target_core_pscsi", "target_core_file", "target_core_iblock",
        "vhost_scsi", "iscsi_target_mod", "target_core_mod"]
    assert lines[6].endswith("|target_core_mod 0 6 target_core_user,target_core_pscsi,"
                             "target_core_file,target_core_iblock,vhost_scsi,"
                             "iscsi_target_mod, Live 0x0000000000000000")
    assert lines[7:] == ["rc 0", lines[6]]  # already loaded: nothing changes
    now = open("/proc/modules").read() if os.path.exists("/proc/modules") else None
    assert now == host


@pytest.mark.parametrize("version,efct,remote", [
    ("4.18", False, False), ("5.14", True, False), ("6.1", True, False),
    ("6.12", True, True), ("6.18", True, True)])
def test_proc_modules_has_only_the_versions_modules(tmp_path, version, efct, remote):
    """efct came with 5.14, tcm_remote with 6.4: on a kernel without them modprobe fails
    with its FATAL line and /proc/modules never lists them; a module that exists is listed
    once it is loaded."""
    r = subprocess.run(["simfs", "run", "--kernel", version, "--state-dir",
                        str(tmp_path / "st"), "--", "bash", "-c",
                        modules_script(tmp_path, "modprobe efct", "modprobe tcm_remote")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert loaded(lines[0]) == ["target_core_mod"]
    assert lines[1] == f"rc {0 if efct else 1}"
    assert lines[3] == f"rc {0 if remote else 1}"
    assert loaded(lines[4]) == ["tcm_remote"] * remote + ["efct"] * efct + ["target_core_mod"]
    release = os.uname().release
    missing = [m for m, have in (("efct", efct), ("tcm_remote", remote)) if not have]
    assert r.stderr == "".join(f"modprobe: FATAL: Module {m} not found in directory "
                               f"/lib/modules/{release}\n" for m in missing)


def test_v3_0_has_target_core_mod_alone(tmp_path):
    """The 2009 engine had its backends inside target_core_mod and no fabric module."""
    r = subprocess.run(["simfs", "run", "--kernel", "v3.0", "--state-dir",
                        str(tmp_path / "st"), "--", "bash", "-c",
                        modules_script(tmp_path, f"mkdir {CFS}/core/rd_mcp_0",
                                       "modprobe -q tcm_vhost")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["target_core_mod 0 0 - Live 0x0000000000000000",
                                     "rc 0", "target_core_mod 0 0 - Live 0x0000000000000000",
                                     "rc 1", "target_core_mod 0 0 - Live 0x0000000000000000"]


@pytest.mark.parametrize("version", ["4.18", "5.14", "6.1"])
@pytest.mark.parametrize("load", ["modprobe iscsi_target_mod", f"mkdir {CFS}/iscsi"])
def test_dbroot_can_be_set_until_a_fabric_module_loads(tmp_path, version, load):
    """Right after boot a tool may point dbroot elsewhere; up to 5.18 the kernel refuses
    it once any fabric module is registered (EINVAL, "db_root: cannot be changed: target
    drivers registered", dbroot kept), from 5.19 only once a device exists."""
    script = (f"mkdir -p /var/tmp/x /var/tmp/y; echo /var/tmp/x > {CFS}/dbroot; "
              f"echo \"rc $?\"; {load}; echo /var/tmp/y > {CFS}/dbroot; echo \"rc $?\"; "
              f"cat {CFS}/dbroot")
    r = subprocess.run(["simfs", "run", "--kernel", version, "--state-dir",
                        str(tmp_path / "st"), "--", "bash", "-c", script],
                       capture_output=True, text=True, timeout=60)
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    refused = version in ("4.18", "5.14")
    if refused:
        assert r.stdout == "rc 0\nrc 1\n/var/tmp/x\n", r.stdout + r.stderr
        assert r.stderr == "bash: line 1: echo: write error: Invalid argument\n"
        assert "db_root: cannot be changed: target drivers registered\n" in log
    else:
        assert r.stdout == "rc 0\nrc 0\n/var/tmp/y\n", r.stdout + r.stderr
        assert "db_root: cannot be changed" not in log
    assert "db_root set to /var/tmp/x" in log


def test_wwn_of_a_driver_the_kernel_has_not_is_refused(tmp_path):
    """efct came with 5.14: a 4.18 machine with an efct port cannot exist. simfs run and
    simfs mount refuse it before anything is mounted or run; 5.14 takes it."""
    marker = tmp_path / "ran"
    wwn = "efct=10:00:00:10:9b:1a:2b:3c"
    r = subprocess.run(["simfs", "run", "--kernel", "4.18", "--wwn", wwn, "--state-dir",
                        str(tmp_path / "st"), "--", "touch", str(marker)],
                       capture_output=True, text=True, timeout=60)
    want = (f"--wwn {wwn}: --kernel 4.18 has no efct driver (it came with Linux 5.14); "
            "choose a later --kernel or leave this port out\n")
    assert (r.returncode, r.stderr) == (2, "simfs run: " + want)
    assert not marker.exists() and not (tmp_path / "st").exists()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["simfs", "mount", "--kernel", "4.18", "--wwn", wwn, str(mnt)],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (2, "simfs: " + want)
    assert not os.path.ismount(mnt)
    r = subprocess.run(["simfs", "run", "--kernel", "5.14", "--wwn", wwn, "--state-dir",
                        str(tmp_path / "st"), "--", "sh", "-c",
                        "cat /sys/class/fc_host/host*/port_name"], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "0x100000109b1a2b3c\n"), r.stderr


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
