"""The emulated-port fabrics through a real mount: vhost (drivers/vhost/scsi.c), xen-pvscsi
(drivers/xen/xen-scsiback.c), tcm_remote (drivers/target/tcm_remote/) and usb_gadget
(drivers/usb/gadget/function/f_tcm.c) — module loading, WWN and TPG rules, the nexus file,
their attributes; every refusal with its errno, log line and an unchanged tree."""
from __future__ import annotations

import errno
import itertools
import os
import re
import subprocess

import pytest

from fabric_checks import modprobe, refused_unchanged
from helpers import mount, umount
from test_fabric_tree import logged, make_dev, refused

_n = itertools.count()


@pytest.fixture(scope="module")
def m():
    mnt = mount("modern", ["--wwn", "usb_gadget=tcm.0"])
    for mod in ("tcm_vhost", "xen-scsiback", "tcm_remote", "tcm_usb_gadget"):
        modprobe(mnt, mod)
    mnt.ok(f"mkdir {mnt.root}/target/vhost {mnt.root}/target/xen-pvscsi "
           f"{mnt.root}/target/remote {mnt.root}/target/usb_gadget")
    yield mnt
    umount(mnt)


def naa() -> str:
    return f"naa.5001405{next(_n):09x}"


def test_fabric_needs_its_module(mnt):
    """Only iscsi and loopback autoload; the others are EINVAL until modprobe."""
    for name in ("vhost", "xen-pvscsi", "remote", "usb_gadget"):
        refused(mnt, f"mkdir {mnt.root}/target/{name}", errno.EINVAL,
                f"target_core_get_fabric\\(\\) failed for {re.escape(name)}")
        assert not os.path.exists(f"{mnt.root}/target/{name}")
    lines = logged(mnt, f"simfs modprobe {mnt.root} tcm_vhost && mkdir {mnt.root}/target/vhost")
    assert "Target_Core_ConfigFS: REGISTER -> Located fabric: vhost" in lines
    assert any(re.fullmatch(r"TCM_VHOST fabric module v0\.1 on \S+/\S+ on \S+", ln)
               for ln in lines), lines


def test_versions(m):
    assert re.fullmatch(r"TCM_VHOST fabric module v0\.1 on \S+/\S+ on \S+\n",
                        m.read("target/vhost/version"))
    assert re.fullmatch(r"xen-pvscsi fabric module v0\.1 on \S+/\S+ on \S+\n",
                        m.read("target/xen-pvscsi/version"))
    assert m.read("target/remote/version") == "TCM Remote Fabric module v0.1\n"
    assert m.read("target/usb_gadget/version") == "usb-gadget fabric module\n"


@pytest.mark.parametrize("prefix, proto, name", [("naa.", "SAS", "6"), ("fc.", "FCP", "0"),
                                                 ("iqn.", "iSCSI", "5"), ("my-naa.", "SAS", "6")])
def test_vhost_wwn_prefixes(m, prefix, proto, name):
    w = f"{prefix}5001405{next(_n):09x}"
    lines = logged(m, f"mkdir {m.root}/target/vhost/{w}")
    assert lines[-1] == f"TCM_VHost_ConfigFS: Allocated emulated Target {proto} Address: {w}"
    lines = logged(m, f"mkdir {m.root}/target/vhost/{w}/tpgt_255")
    addr = w[3:] if prefix == "fc." else w
    assert lines[0] == (f"TARGET_CORE[vhost]: Allocated portal_group for endpoint: {addr}, "
                        f"Proto: {name}, Portal Tag: 255")
    assert sorted(os.listdir(f"{m.root}/target/vhost/{w}/tpgt_255")) == [
        "acls", "attrib", "auth", "lun", "nexus", "np", "param", "rtpi"]  # rtpi: every TPG, 6.3+
    assert os.listdir(f"{m.root}/target/vhost/{w}/tpgt_255/attrib") == ["fabric_prot_type"]
    assert sorted(os.listdir(f"{m.root}/target/vhost/{w}")) == ["fabric_statistics", "param",
                                                                "tpgt_255"]


def test_vhost_wwn_refused(m):
    v = "target/vhost"
    refused_unchanged(m, f"mkdir {m.root}/{v}/5001405abcdef", errno.EINVAL,
                      "Unable to locate prefix for emulated Target Port: 5001405abcdef", v)
    long = "naa." + "a" * 252
    refused_unchanged(m, f"mkdir {m.root}/{v}/{long}", errno.EINVAL,
                      f"Emulated {long} Address: SAS, exceeds max: 256", v)


@pytest.mark.parametrize("name", ["tpgt_256", "tpg_1", "tpgt_0x1", "tpgt_", "tpgt_-1"])
def test_vhost_tpgt_refused(m, name):
    w = f"target/vhost/{naa()}"
    m.ok(f"mkdir {m.root}/{w}")
    refused_unchanged(m, f"mkdir {m.root}/{w}/{name}", errno.EINVAL, None, w)


def test_vhost_nexus(m):
    t = f"target/vhost/{naa()}/tpgt_1"
    m.ok(f"mkdir -p {m.root}/{t}")
    refused(m, f"cat {m.root}/{t}/nexus", errno.ENODEV, None)
    refused_unchanged(m, f"echo NULL > {m.root}/{t}/nexus", errno.ENODEV, None, t)
    refused_unchanged(m, f"echo fc.5001405000000001 > {m.root}/{t}/nexus", errno.EINVAL,
                      r"Passed FCP Initiator Port fc\.5001405000000001", t)
    refused_unchanged(m, f"echo 5001405000000001 > {m.root}/{t}/nexus", errno.EINVAL,
                      r"Unable to locate prefix for emulated Initiator Port: 5001405000000001",
                      t)
    refused_unchanged(m, f"printf naa.{'1' * 252} > {m.root}/{t}/nexus", errno.EINVAL,
                      r"Emulated NAA Sas Address: naa\.1{252}, exceeds max: 256", t)
    lines = logged(m, f"echo naa.5001405000000001 > {m.root}/{t}/nexus")
    assert "vhost_TPG[1] - Added DYNAMIC ACL with TCQ Depth: 1 for vhost Initiator Node: " \
           "naa.5001405000000001" in lines
    assert m.read(f"{t}/nexus") == "naa.5001405000000001\n"
    refused_unchanged(m, f"echo naa.5001405000000002 > {m.root}/{t}/nexus", errno.EEXIST,
                      "tpg->tpg_nexus already exists", t)
    dev = make_dev(m, f"vh{next(_n)}")
    m.ok(f"mkdir {m.root}/{t}/lun/lun_0 && ln -s {dev} {m.root}/{t}/lun/lun_0/x")
    refused_unchanged(m, f"echo NULL > {m.root}/{t}/nexus", errno.EBUSY,
                      "Unable to remove TCM_vhost I_T Nexus with active TPG port count: 1", t)
    m.ok(f"rm {m.root}/{t}/lun/lun_0/x && rmdir {m.root}/{t}/lun/lun_0")
    lines = logged(m, f"echo NULL > {m.root}/{t}/nexus")
    assert lines == ["TCM_vhost_ConfigFS: Removing I_T Nexus to emulated SAS Initiator Port: "
                     "naa.5001405000000001"]
    refused(m, f"cat {m.root}/{t}/nexus", errno.ENODEV, None)


def test_vhost_fabric_prot_type(m):
    t = f"target/vhost/{naa()}/tpgt_1"
    m.ok(f"mkdir -p {m.root}/{t}")
    assert m.read(f"{t}/attrib/fabric_prot_type") == "0\n"
    m.ok(f"echo 3 > {m.root}/{t}/attrib/fabric_prot_type")
    assert m.read(f"{t}/attrib/fabric_prot_type") == "3\n"
    refused_unchanged(m, f"echo 2 > {m.root}/{t}/attrib/fabric_prot_type", errno.EINVAL,
                      "Invalid vhost_scsi fabric_prot_type: 2", t)
    refused_unchanged(m, f"echo x > {m.root}/{t}/attrib/fabric_prot_type", errno.EINVAL,
                      "kstrtoul\\(\\) returned -22 for fabric_prot_type", t)


def test_xen_pvscsi(m):
    w = f"target/xen-pvscsi/{naa()}"
    lines = logged(m, f"mkdir {m.root}/{w}")
    assert lines[-1] == f"Allocated emulated Target SAS Address: {os.path.basename(w)}"
    m.ok(f"mkdir {m.root}/{w}/tpgt_65535")
    refused_unchanged(m, f"mkdir {m.root}/{w}/tpgt_65536", errno.EINVAL, None, w)
    refused_unchanged(m, f"mkdir {m.root}/target/xen-pvscsi/naa.{'5' * 28}", errno.EINVAL,
                      r"Emulated naa\.5{28} Address: SAS, exceeds max: 32",
                      "target/xen-pvscsi")
    t = f"{w}/tpgt_65535"
    assert m.read(f"{t}/param/alias") == "\n"
    m.ok(f"echo my-guest > {m.root}/{t}/param/alias")
    assert m.read(f"{t}/param/alias") == "my-guest\n"
    refused_unchanged(m, f"printf {'a' * 32} > {m.root}/{t}/param/alias", errno.EINVAL,
                      r"param alias: a{32}, exceeds max: 32", t)
    m.ok(f"echo naa.5001405000000009 > {m.root}/{t}/nexus")
    assert m.read(f"{t}/nexus") == "naa.5001405000000009\n"
    dev = make_dev(m, f"xen{next(_n)}")
    m.ok(f"mkdir {m.root}/{t}/lun/lun_0 && ln -s {dev} {m.root}/{t}/lun/lun_0/x")
    refused_unchanged(m, f"echo NULL > {m.root}/{t}/nexus", errno.EBUSY,
                      "Unable to remove xen-pvscsi I_T Nexus with active TPG port count: 1", t)


@pytest.mark.parametrize("name, proto, addr", [("naa.5001405a", "SAS", "naa.5001405a"),
                                               ("fc.5001405b", "FCP", "5001405b"),
                                               ("0x5001405c", "SRP", "5001405c"),
                                               ("iqn.2026-12.org.simfs:r", "iSCSI",
                                                "iqn.2026-12.org.simfs:r")])
def test_remote(m, name, proto, addr):
    w = f"{m.root}/target/remote/{name}{next(_n)}"
    lines = logged(m, f"mkdir {w}")
    assert lines[-1] == f"TCM_Remote_ConfigFS: Allocated emulated Target {proto} Address: " \
                        f"{os.path.basename(w)}"
    lines = logged(m, f"mkdir {w}/tpgt_31")
    assert lines[-1] == (f"TCM_Remote_ConfigFS: Allocated Emulated {proto} Target Port "
                         f"{os.path.basename(w)},t,0x001f")
    assert f"endpoint: {addr}" in lines[0]
    rel = os.path.relpath(w, m.root)
    refused_unchanged(m, f"mkdir {w}/tpgt_32", errno.EINVAL,
                      "Passed tpgt: 32 exceeds TL_TPGS_PER_HBA: 32", rel)
    refused_unchanged(m, f"mkdir {w}/tpg_1", errno.EINVAL,
                      'Unable to locate "tpgt_#" directory group', rel)
    assert not os.path.exists(f"{w}/tpgt_31/nexus")


def test_usb_gadget(m):
    u = "target/usb_gadget"
    refused_unchanged(m, f"mkdir {m.root}/{u}/5001405abc", errno.EINVAL, None, u)
    refused_unchanged(m, f"mkdir {m.root}/{u}/naa.", errno.EINVAL, None, u)
    refused_unchanged(m, f"mkdir {m.root}/{u}/naa.{'1' * 32}", errno.EINVAL, None, u)
    w = f"{u}/naa.{'2' * 31}"
    m.ok(f"mkdir {m.root}/{w} && mkdir {m.root}/{w}/tpgt_0x10")  # base 0
    lines = logged(m, f"ls {m.root}/{w}")
    assert lines == [] and sorted(os.listdir(f"{m.root}/{w}/tpgt_0x10")) == [
        "acls", "attrib", "auth", "enable", "lun", "nexus", "np", "param", "rtpi"]
    # one tcm function instance (TPG_INSTANCES): a second TPG has none left
    w2 = f"{u}/{naa()}"
    m.ok(f"mkdir {m.root}/{w2}")
    refused_unchanged(m, f"mkdir {m.root}/{w2}/tpgt_1", errno.EINVAL, None, u)
    t = f"{w}/tpgt_0x10"
    refused_unchanged(m, f"echo fc.1234 > {m.root}/{t}/nexus", errno.EINVAL,
                      "Missing 'naa.' prefix", t)
    refused_unchanged(m, f"printf naa.{'3' * 28} > {m.root}/{t}/nexus", errno.EINVAL,
                      r"Emulated NAA Sas Address: naa\.3{28}, exceeds max: 32", t)
    m.ok(f"echo naa.5001405000000077 > {m.root}/{t}/nexus && echo 1 > {m.root}/{t}/enable")
    assert m.read(f"{t}/nexus") == "naa.5001405000000077\n"
    dev = make_dev(m, f"usb{next(_n)}")
    m.ok(f"mkdir {m.root}/{t}/lun/lun_0 && ln -s {dev} {m.root}/{t}/lun/lun_0/x")
    refused_unchanged(m, f"echo NULL > {m.root}/{t}/nexus", errno.EPERM,
                      "Unable to remove Host I_T Nexus with active TPG port count: 1", t)
    # fabric_init_nodeacl refuses after the core logged the ACL: it logs its deletion too
    refused_unchanged(m, f"mkdir {m.root}/{t}/acls/iqn.2026-12.org.example:x", errno.EINVAL,
                      r"usb_gadget_TPG\[16\] - Deleted ACL with TCQ Depth: 1 for usb_gadget "
                      r"Initiator Node: iqn\.2026-12\.org\.example:x", t)
    m.ok(f"mkdir {m.root}/{t}/acls/naa.5001405000000078")
    m.ok(f"rm {m.root}/{t}/lun/lun_0/x && rmdir {m.root}/{t}/lun/lun_0")
    lines = logged(m, f"echo NULL > {m.root}/{t}/nexus")
    assert lines[0] == "Removing I_T Nexus to Initiator Port: naa.5001405000000077"


def test_modprobe_command_and_run_shim(mnt):
    """``simfs modprobe``; the shim simfs run puts on PATH (``modprobe [-q] MODULE``, ``-a``
    for several, ``-r`` and unknown modules succeed quietly); an unreachable daemon."""
    shim = ["python", "-m", "simfs.cli.modprobe", mnt.state_dir]
    mnt.ok(" ".join(shim + ["-q", "target_core_mod"]))
    mnt.ok(" ".join(shim + ["-r", "tcm_fc"]))
    refused(mnt, f"mkdir {mnt.root}/target/fc", errno.EINVAL,
            "target_core_get_fabric\\(\\) failed for fc")
    mnt.ok(" ".join(shim + ["-a", "tcm_fc", "xen-scsiback"]))
    mnt.ok(f"mkdir {mnt.root}/target/fc {mnt.root}/target/xen-pvscsi")
    mnt.ok(f"simfs modprobe {mnt.root} tcm_remote && mkdir {mnt.root}/target/remote")
    r = subprocess.run(["simfs", "modprobe", "/nonexistent-mount", "tcm_vhost"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot reach the daemon" in r.stderr
