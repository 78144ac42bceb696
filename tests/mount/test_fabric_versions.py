"""The fabric modules per kernel version, through a real mount: which modules exist (efct
from 5.14, tcm_remote from 6.4), the TPG files in kernel order, and each fabric's own
``enable`` before 5.16 (qla2xxx, srpt, usb_gadget, ibmvscsis) with its errno, log line and
unchanged state; on 4.18 an enabled qla2xxx TPG cannot be removed."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from fabric_checks import modprobe, refused_unchanged
from helpers import mount, sh, umount
from test_fabric_tree import refused

from simfs.core import kernels

QLA = "21:00:00:24:ff:31:4c:48"
EFCT = "10:00:00:10:9b:1a:2b:3c"
GID = "fe80:0000:0000:0000:0002:c903:0003:1235"
GID_NAME = "0xfe800000000000000002c90300031235"
OWN_ENABLE = ("4.18", "5.14")  # before the generic enable of 5.16


def files(path: str) -> list[str]:
    """The regular files of a directory in the order of the kernel's attribute table
    (configfs lists newest first: readdir shows the table reversed)."""
    return [e for e in reversed(os.listdir(path)) if os.path.isfile(os.path.join(path, e))]


@pytest.fixture(scope="module", params=kernels.VERSIONS)
def m(request):
    # an efct port only where the driver exists (a 4.18 machine with one is refused)
    efct = ["--wwn", f"efct={EFCT}"] if kernels.get(request.param).has("fabric_efct") else []
    mnt = mount(request.param, ["--wwn", f"qla2xxx={QLA}", *efct, "--wwn", f"srpt={GID}",
                                "--wwn", "ibmvscsis=30000003", "--wwn", "usb_gadget=tcm.0"])
    for mod in ("tcm_qla2xxx", "ib_srpt", "ibmvscsis", "tcm_usb_gadget"):
        modprobe(mnt, mod)
    t = f"{mnt.root}/target"
    mnt.ok(f"mkdir -p {t}/qla2xxx/{QLA}/tpgt_1 {t}/srpt/{GID_NAME}/tpgt_1 "
           f"{t}/ibmvscsis/30000003/tpgt_1 {t}/usb_gadget/naa.5001405000000001/tpgt_1")
    yield mnt
    umount(mnt)


def _has_module(m, module: str, fabric: str) -> bool:
    subprocess.run(["simfs", "modprobe", m.root, module], capture_output=True, text=True)
    return sh(f"mkdir {m.root}/target/{fabric}").returncode == 0


def test_efct_from_5_14_and_remote_from_6_4(m):
    k = kernels.get(m.profile)
    for module, fabric, row in (("efct", "efct", "fabric_efct"),
                                ("tcm_remote", "remote", "fabric_remote")):
        if k.has(row):
            assert _has_module(m, module, fabric)
        else:
            refused(m, f"mkdir {m.root}/target/{fabric}", errno.EINVAL,
                    rf"target_core_get_fabric\(\) failed for {fabric}")
            assert not os.path.exists(f"{m.root}/target/{fabric}")


#: tpgt_N files in kernel order: the fabric's own, then the core's enable (5.16+), rtpi (6.3+)
TPG_FILES = {
    "qla2xxx": {"old": ["enable", "dynamic_sessions", "fabric_prot_type"],
                "new": ["dynamic_sessions", "fabric_prot_type", "enable"]},
    "srpt": {"old": ["enable"], "new": ["enable"]},
    "ibmvscsis": {"old": ["enable"], "new": ["enable"]},
    "usb_gadget": {"old": ["enable", "nexus"], "new": ["nexus", "enable"]},
}
TPGS = {"qla2xxx": f"qla2xxx/{QLA}/tpgt_1", "srpt": f"srpt/{GID_NAME}/tpgt_1",
        "ibmvscsis": "ibmvscsis/30000003/tpgt_1",
        "usb_gadget": "usb_gadget/naa.5001405000000001/tpgt_1"}


@pytest.mark.parametrize("fabric", sorted(TPGS))
def test_tpg_files_in_kernel_order(m, fabric):
    want = list(TPG_FILES[fabric]["old" if m.profile in OWN_ENABLE else "new"])
    if kernels.get(m.profile).has("tpg_rtpi"):
        want.append("rtpi")
    assert files(f"{m.root}/target/{TPGS[fabric]}") == want


def test_qla2xxx_enable(m):
    t = f"target/{TPGS['qla2xxx']}"
    e = f"{m.root}/{t}/enable"
    if m.profile not in OWN_ENABLE:
        m.ok(f"echo 1 > {e} && echo 1 > {e}")  # the generic file: a repeat is a no-op
        m.ok(f"echo 0 > {e}")
        return
    refused_unchanged(m, f"echo 2 > {e}", errno.EINVAL, "Illegal value for tpg_enable: 2", t)
    refused_unchanged(m, f"echo yes > {e}", errno.EINVAL, "kstrtoul\\(\\) returned -22", t)
    m.ok(f"echo 0 > {e}")  # disabling a disabled TPG is accepted
    m.ok(f"echo 1 > {e}")
    assert m.read(f"{t}/enable") == "1\n"
    refused_unchanged(m, f"echo 1 > {e}", errno.EEXIST, None, t)
    if m.profile == "4.18":
        # enabling took a configfs dependency on the TPG
        refused_unchanged(m, f"rmdir {m.root}/{t}", errno.EBUSY, None, "target/qla2xxx")
    m.ok(f"echo 0 > {e}")
    assert m.read(f"{t}/enable") == "0\n"
    m.ok(f"echo 1 > {e} && echo 0 > {e}")


def test_srpt_enable(m):
    t = f"target/{TPGS['srpt']}"
    e = f"{m.root}/{t}/enable"
    if m.profile not in OWN_ENABLE:
        refused_unchanged(m, f"echo 5 > {e}", errno.EINVAL, None, t)  # kstrtobool
        return
    refused_unchanged(m, f"echo 5 > {e}", errno.EINVAL,
                      "Illegal value for srpt_tpg_store_enable: 5", t)
    refused_unchanged(m, f"echo on > {e}", errno.EINVAL,
                      "Unable to extract srpt_tpg_store_enable", t)
    m.ok(f"echo 1 > {e} && echo 1 > {e}")  # a repeat is accepted
    assert m.read(f"{t}/enable") == "1\n"
    m.ok(f"echo 0 > {e}")


def test_ibmvscsis_enable(m):
    t = f"target/{TPGS['ibmvscsis']}"
    e = f"{m.root}/{t}/enable"
    if m.profile not in OWN_ENABLE:
        return
    refused_unchanged(m, f"echo 7 > {e}", errno.EINVAL,
                      "ibmvscsis 30000003: Illegal value for srpt_tpg_store_enable", t)
    m.ok(f"echo 1 > {e}")
    assert m.read(f"{t}/enable") == "1\n"
    m.ok(f"echo 0 > {e}")


def test_usb_gadget_enable(m):
    t = f"target/{TPGS['usb_gadget']}"
    e = f"{m.root}/{t}/enable"
    if m.profile not in OWN_ENABLE:
        m.ok(f"echo 0 > {e}")  # the generic file: the current state again is a no-op
        return
    refused_unchanged(m, f"echo 0 > {e}", errno.EINVAL, None, t)  # already off
    refused_unchanged(m, f"echo x > {e}", errno.EINVAL, None, t)
    m.ok(f"echo 1 > {e}")
    assert m.read(f"{t}/enable") == "1\n"
    refused_unchanged(m, f"echo y > {e}", errno.EINVAL, None, t)  # already on
    m.ok(f"echo 0 > {e}")


def test_qla2xxx_npiv(m):
    """The NPIV template of tcm_qla2xxx: ``<phys>@<wwpn>:<wwnn>``, only on a physical port
    whose qla2xxx tpgt_1 is enabled."""
    n = "target/qla2xxx_npiv"
    m.ok(f"mkdir -p {m.root}/{n}")
    npiv = "2100001b32a1b2c3:2000001b32a1b2c3"
    base = f"{m.root}/target/{TPGS['qla2xxx']}/enable"
    refused_unchanged(m, f"mkdir {m.root}/{n}/{QLA}", errno.EINVAL,
                      "Unable to locate NPIV '@' separator", n)
    refused_unchanged(m, f"mkdir {m.root}/{n}/{QLA}@{npiv}", errno.EINVAL,
                      "qla2xxx base_lport or tpg_1 not available", n)
    m.ok(f"echo 1 > {base}")
    for bad in (f"{QLA}@{npiv[:-1]}", f"{QLA}@{npiv.replace(':', '-')}",
                f"{QLA}@{npiv[:-1]}g", f"21:00:00:24:ff:31:4c:49@{npiv}"):
        refused_unchanged(m, f"mkdir {m.root}/{n}/{bad}", errno.EINVAL, None, n)
    w = f"{n}/{QLA}@{npiv.upper()}"  # either case after the '@'
    m.ok(f"mkdir {m.root}/{w} && mkdir {m.root}/{w}/tpgt_7")
    refused_unchanged(m, f"mkdir {m.root}/{w}/tpgt_65536", errno.EINVAL, None, w)
    t = f"{m.root}/{w}/tpgt_7"
    want = ["enable"] + (["rtpi"] if kernels.get(m.profile).has("tpg_rtpi") else [])
    assert files(t) == want
    assert os.listdir(f"{t}/attrib") == []
    if m.profile in OWN_ENABLE:
        refused_unchanged(m, f"echo 3 > {t}/enable", errno.EINVAL,
                          "Illegal value for tpg_enable: 3", w)
        m.ok(f"echo 1 > {t}/enable")
        refused_unchanged(m, f"echo 1 > {t}/enable", errno.EEXIST, None, w)
        m.ok(f"echo 0 > {t}/enable")
    m.ok(f"mkdir {t}/acls/21:00:00:24:ff:00:00:01")
    # the core logs the ACL added, then deleted when the fabric refuses its name
    refused(m, f"mkdir {t}/acls/iqn.1994-05.com.redhat:x", errno.EINVAL,
            r"qla2xxx_npiv_TPG\[7\] - Deleted ACL with TCQ Depth: 1 for qla2xxx_npiv "
            r"Initiator Node: iqn\.1994-05\.com\.redhat:x")
    assert not os.path.exists(f"{t}/acls/iqn.1994-05.com.redhat:x")
    m.ok(f"rmdir {t}/acls/21:00:00:24:ff:00:00:01 {t} {m.root}/{w}")
    m.ok(f"echo 0 > {base}")


def test_vhost_version_string(m):
    """vhost's wwn-level version: the space before the second "on" came with 6.17."""
    modprobe(m, "tcm_vhost")
    m.ok(f"mkdir -p {m.root}/target/vhost")
    sysname, machine, release = os.uname()[0], os.uname()[4], os.uname()[2]
    sep = " on" if m.profile == "6.18" else "on"
    assert m.read("target/vhost/version") == \
        f"TCM_VHOST fabric module v0.1 on {sysname}/{machine}{sep} {release}\n"
