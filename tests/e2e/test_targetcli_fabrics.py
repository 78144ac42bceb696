"""Unmodified targetcli (Debian's targetcli-fb, rtslib-fb) on every fabric it knows, inside
``simfs run`` with hardware ports from ``--wwn``: it lists each fabric, creates a target,
TPG, LUN and (where rtslib-fb has them) an ACL in each, and saveconfig/restoreconfig round
trips are identical."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("targetcli") is None,
                                reason="Debian's targetcli-fb is not installed")

WWNS = ["qla2xxx=21:00:00:24:ff:31:4c:48", "efct=10:00:00:10:9b:1a:2b:3c",
        "tcm_fc=20:00:00:11:22:33:44:55", "srpt=fe80:0000:0000:0000:0002:c903:0003:1235",
        "ibmvscsis=30000003"]
#: fabric -> (target wwn as targetcli names it, TPG path below the target, ACL or None)
TARGETS = {
    "qla2xxx": ("naa.21000024ff314c48", "", "naa.21000024ff314c49"),
    "efct": ("naa.100000109b1a2b3c", "", "naa.100000109b1a2b3d"),
    "tcm_fc": ("naa.2000001122334455", "", "naa.1000000000c91122"),
    "srpt": ("ib.fe800000000000000002c90300031235", "", "ib.fe800000000000000002c90300031236"),
    "ibmvscsis": ("30000003", "", None),
    "vhost": ("naa.5001405aaaaaaaa1", "/tpg1", "naa.5001405aaaaaaaa9"),
    "xen-pvscsi": ("naa.5001405aaaaaaaa2", "/tpg1", None),
}


def simfs_run(state, script: str, wwns=WWNS, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = ["simfs", "run", "--state-dir", str(state)]
    for w in wwns:
        cmd += ["--wwn", w]
    return subprocess.run(cmd + ["--", "bash", "-ec", script], capture_output=True, text=True,
                          timeout=timeout)


def _mask_nexus(ls: str) -> str:
    # restoreconfig makes new nexus WWNs (vhost, xen-pvscsi), as on a kernel: not saved
    return re.sub(r"\[naa\.[0-9a-f]{16}(, |\])", r"[naa.<nexus>\1", ls)


def test_every_fabric_created_saved_and_restored(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    steps = ["targetcli /backstores/ramdisk create r0 16M",
             f"targetcli ls / 1 > {out}/ls_top.txt"]
    for fabric, (wwn, tpg, acl) in TARGETS.items():
        steps.append(f"targetcli /{fabric} create {wwn}")
        steps.append(f"targetcli /{fabric}/{wwn}{tpg}/luns create /backstores/ramdisk/r0")
        if acl:
            steps.append(f"targetcli /{fabric}/{wwn}{tpg}/acls create {acl}")
    steps += [f"targetcli ls > {out}/ls1.txt", "targetcli saveconfig",
              f"cp /etc/rtslib-fb-target/saveconfig.json {out}/save1.json",
              "targetcli clearconfig confirm=True", f"targetcli ls > {out}/ls_empty.txt",
              "targetcli restoreconfig /etc/rtslib-fb-target/saveconfig.json",
              f"targetcli ls > {out}/ls2.txt", f"targetcli saveconfig {out}/save2.json"]
    r = simfs_run(tmp_path / "st", "\n".join(steps))
    assert r.returncode == 0, r.stdout + r.stderr
    top = (out / "ls_top.txt").read_text()
    for fabric in TARGETS:
        assert re.search(rf"o- {re.escape(fabric)} \.+ \[Targets: 0\]", top), top
    ls1 = (out / "ls1.txt").read_text()
    for fabric, (wwn, tpg, acl) in TARGETS.items():
        assert f"o- {wwn} " in ls1, (fabric, ls1)
        if acl:
            assert f"o- {acl} " in ls1, (fabric, ls1)
    assert ls1.count("[ramdisk/r0 (default_tg_pt_gp)]") == len(TARGETS)
    assert ls1.count("[lun0 ramdisk/r0 (rw)]") == sum(1 for t in TARGETS.values() if t[2])
    for fabric in TARGETS:
        assert re.search(rf"o- {re.escape(fabric)} \.+ \[Targets: 1\]", ls1), (fabric, ls1)
    assert "[Targets: 0]" in (out / "ls_empty.txt").read_text()
    assert _mask_nexus(ls1) == _mask_nexus((out / "ls2.txt").read_text())
    save1 = json.loads((out / "save1.json").read_text())
    assert save1 == json.loads((out / "save2.json").read_text())
    assert sorted(t["fabric"] for t in save1["targets"]) == sorted(TARGETS)
    srpt = next(t for t in save1["targets"] if t["fabric"] == "srpt")
    assert srpt["tpgs"][0]["attributes"] == {"srp_max_rdma_size": 65536, "srp_max_rsp_size": 256,
                                             "srp_sq_size": 4096, "use_srq": 0}
    qla = next(t for t in save1["targets"] if t["fabric"] == "qla2xxx")
    assert qla["tpgs"][0]["enable"] is True
    assert qla["tpgs"][0]["attributes"]["generate_node_acls"] == 1


def test_hardware_fabrics_are_listed_only_with_their_ports(tmp_path):
    r = simfs_run(tmp_path / "st", "targetcli ls / 1", wwns=[])
    assert r.returncode == 0, r.stderr
    for fabric in ("vhost", "xen-pvscsi", "iscsi", "loopback"):
        assert f"o- {fabric} " in r.stdout
    for fabric in ("qla2xxx", "efct", "tcm_fc", "srpt", "ibmvscsis"):
        assert f"o- {fabric} " not in r.stdout, r.stdout


def test_sys_shows_the_ports_inside_only(tmp_path):
    script = ("cat /sys/class/fc_host/host*/port_name | sort; "
              "basename $(readlink -f /sys/class/fc_host/host*/../../../driver) | sort; "
              "cat /sys/class/infiniband/*/ports/*/gids/0; "
              "cat /sys/module/ibmvscsis/drivers/vio:ibmvscsis/*/devspec")
    r = simfs_run(tmp_path / "st", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[:3] == ["0x100000109b1a2b3c", "0x2000001122334455", "0x21000024ff314c48"]
    assert "fe80:0000:0000:0000:0002:c903:0003:1235" in lines
    assert "/vdevice/v-scsi-host@30000003" in lines
    assert not os.path.exists("/sys/class/fc_host/host0") or not any(
        "21000024ff314c48" in open(p).read() for p in
        (f"/sys/class/fc_host/{h}/port_name" for h in os.listdir("/sys/class/fc_host")))


UDEV_CHECK = """import ctypes, os
lib = ctypes.CDLL("libudev.so.1")
lib.udev_new.restype = lib.udev_device_new_from_syspath.restype = ctypes.c_void_p
lib.udev_device_new_from_syspath.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
udev = lib.udev_new()
for name in sorted(os.listdir("/sys/class/block"))[:3]:
    path = os.path.realpath("/sys/class/block/" + name)
    print(name, bool(lib.udev_device_new_from_syspath(udev, path.encode())))
"""


def test_libudev_still_finds_the_machines_devices(tmp_path):
    """The ports' /sys entries sit in an overlay on /sys/devices; libudev takes a device
    only from sysfs itself (fstatfs), so the machine's own devices stay sysfs: pyudev (and
    rtslib-fb 2.2's block backstore check) still finds them."""
    if not os.path.isdir("/sys/class/block") or not os.listdir("/sys/class/block"):
        pytest.skip("no block devices in this machine's sysfs")
    r = simfs_run(tmp_path / "st", f"/usr/bin/python3 -c '{UDEV_CHECK}'; "
                  "cat /sys/class/fc_host/host*/port_name")
    assert r.returncode == 0, r.stderr
    found = [line for line in r.stdout.splitlines() if not line.startswith("0x")]
    assert found and all(line.endswith(" True") for line in found), r.stdout
    assert "0x21000024ff314c48" in r.stdout  # and the ports are still there


def test_fabric_modules_load_on_demand_in_a_run(tmp_path):
    """A run is a freshly booted machine: `mkdir target/vhost` is EINVAL (the kernel loads
    no vhost module on mkdir) with target_core_register_fabric's line and no directory,
    until `modprobe tcm_vhost`, as rtslib-fb does; `remote` likewise with tcm_remote."""
    cfs = "/sys/kernel/config/target"
    script = (f"mkdir {cfs}/vhost || echo refused; ls {cfs}; modprobe tcm_vhost; "
              f"mkdir {cfs}/vhost; cat {cfs}/vhost/version; mkdir {cfs}/remote || echo refused; "
              f"modprobe -q tcm_remote; mkdir {cfs}/remote; ls {cfs}")
    r = simfs_run(tmp_path / "st", script, wwns=[])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["refused", "core", "dbroot", "version"], r.stdout  # no vhost/
    assert "TCM_VHOST fabric module v0.1 on " in r.stdout
    assert r.stdout.count("refused") == 2
    assert sorted(lines[-5:]) == ["core", "dbroot", "remote", "version", "vhost"]
    assert r.stderr.count("Invalid argument") == 2
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    assert "target_core_get_fabric() failed for vhost" in log
    assert "target_core_get_fabric() failed for remote" in log


def test_hardware_ports_without_root(unprivileged):
    """As an ordinary user (a user namespace) the /sys overlays still show the ports."""
    r = subprocess.run(
        ["runuser", "-u", unprivileged.user, "--", "env", f"HOME={unprivileged.home}",
         unprivileged.python, "-m", "simfs", "run", "--wwn", WWNS[0], "--wwn", WWNS[3], "--",
         "bash", "-ec", "cat /sys/class/fc_host/*/port_name /sys/class/infiniband/*/ports/1/"
         "gids/0; targetcli /qla2xxx create naa.21000024ff314c48"],
        capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["0x21000024ff314c48",
                                        "fe80:0000:0000:0000:0002:c903:0003:1235",
                                        "Created target naa.21000024ff314c48."]
