"""tcm_loop (``target/loopback``) through a real mount: WWN prefix detection, tpgt rules,
the nexus, transport_status, address, attrib/fabric_prot_type, no np support
(drivers/target/loopback/tcm_loop.c)."""
from __future__ import annotations

import errno
import itertools
import os
import re

import pytest

from helpers import sh
from test_fabric_tree import kernel_lines, logged, make_dev, refused

_n = itertools.count()
L = "target/loopback"


@pytest.fixture(scope="module")
def m(mnt_mod):
    mnt_mod.ok(f"mkdir -p {mnt_mod.root}/{L}")
    return mnt_mod


def wwn(m, prefix: str = "naa.", n: int | None = None) -> str:
    n = next(_n) if n is None else n
    return f"{m.root}/{L}/{prefix}50014052000000{n:02x}"


def test_version(m):
    assert m.read(f"{L}/version") == "TCM Loopback Fabric module v2.1-rc2\n"
    refused(m, f"echo x > {m.root}/{L}/version", errno.EACCES, None)


@pytest.mark.parametrize("prefix, proto, name", [
    ("naa.", "SAS", "6"), ("fc.", "FCP", "0"), ("iqn.", "iSCSI", "5"),
    ("my-naa.", "SAS", "6"),  # a substring search, not a prefix check
])
def test_wwn_prefix_detection(m, prefix, proto, name):
    w = wwn(m, prefix)
    lines = logged(m, f"mkdir {w}")
    assert re.fullmatch(rf"TCM_Loop_ConfigFS: Allocated emulated Target {proto} Address: "
                        rf"{re.escape(os.path.basename(w))} at Linux/SCSI Host ID: \d+",
                        lines[-1]), lines
    lines = logged(m, f"mkdir {w}/tpgt_3")
    base = os.path.basename(w)
    addr = base[3:] if prefix == "fc." else base
    assert lines == [f"TARGET_CORE[loopback]: Allocated portal_group for endpoint: {addr}, "
                     f"Proto: {name}, Portal Tag: 3",
                     f"TCM_Loop_ConfigFS: Allocated Emulated {proto} Target Port {base},t,0x0003"]


def test_wwn_without_prefix_is_einval(m):
    refused(m, f"mkdir {m.root}/{L}/5001405abcdef",
            errno.EINVAL, "Unable to locate prefix for emulated Target Port: 5001405abcdef")
    assert not os.path.exists(f"{m.root}/{L}/5001405abcdef")


@pytest.mark.parametrize("name, log", [
    ("tpgt_32", "Passed tpgt: 32 exceeds TL_TPGS_PER_HBA: 32"),
    ("tpgt_100", "Passed tpgt: 100 exceeds TL_TPGS_PER_HBA: 32"),
    ("tpg_1", 'Unable to locate "tpgt_#" directory group'),
    ("x_tpgt_1", 'Unable to locate "tpgt_#" directory group'),
    ("tpgt_0x1", None),   # base 10 only
    ("tpgt_", None),
])
def test_tpgt_refused(m, name, log):
    w = wwn(m)
    m.ok(f"mkdir {w}")
    refused(m, f"mkdir {w}/{name}", errno.EINVAL, log)


def test_tpgt_bounds_accepted(m):
    w = wwn(m)
    m.ok(f"mkdir {w} {w}/tpgt_0 {w}/tpgt_31")


def test_tpg_files_and_address(m):
    w = wwn(m)
    m.ok(f"mkdir {w} && mkdir {w}/tpgt_7")
    t = f"{w}/tpgt_7"
    addr = m.read(f"{t}/address")
    assert re.fullmatch(r"\d+:0:7\n", addr)
    w2 = wwn(m)
    m.ok(f"mkdir -p {w2}/tpgt_1")
    # each wwn is one more virtual SCSI host
    assert int(m.read(f"{w2[len(m.root) + 1:]}/tpgt_1/address").split(":")[0]) == \
        int(addr.split(":")[0]) + 1
    assert m.read(f"{t[len(m.root) + 1:]}/transport_status") == "online\n"
    assert m.read(f"{t[len(m.root) + 1:]}/attrib/fabric_prot_type") == "0\n"
    assert os.listdir(f"{t}/auth") == [] and os.listdir(f"{t}/param") == []
    assert not os.path.exists(f"{t}/enable")
    refused(m, f"mkdir {t}/np/127.0.0.1:3260", errno.ENOSYS, "tf->tf_ops.fabric_make_np is NULL")


def test_transport_status(m):
    t = f"{wwn(m)}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    m.ok(f"echo offline > {t}/transport_status")
    assert m.read(f"{t[len(m.root) + 1:]}/transport_status") == "offline\n"
    m.ok(f"echo onlinexyz > {t}/transport_status")   # strncmp on 6 characters
    assert m.read(f"{t[len(m.root) + 1:]}/transport_status") == "online\n"
    refused(m, f"echo up > {t}/transport_status", errno.EINVAL, None)
    assert m.read(f"{t[len(m.root) + 1:]}/transport_status") == "online\n"


def test_fabric_prot_type(m):
    t = f"{wwn(m)}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    m.ok(f"echo 3 > {t}/attrib/fabric_prot_type")
    assert m.read(f"{t[len(m.root) + 1:]}/attrib/fabric_prot_type") == "3\n"
    refused(m, f"echo 2 > {t}/attrib/fabric_prot_type", errno.EINVAL,
            "Invalid qla2xxx fabric_prot_type: 2")
    refused(m, f"echo x > {t}/attrib/fabric_prot_type", errno.EINVAL,
            "kstrtoul\\(\\) returned -22 for fabric_prot_type")
    assert m.read(f"{t[len(m.root) + 1:]}/attrib/fabric_prot_type") == "3\n"


def test_nexus(m):
    w = wwn(m)
    t = f"{w}/tpgt_1"
    rel = t[len(m.root) + 1:]
    m.ok(f"mkdir -p {t}")
    r = sh(f"cat {t}/nexus")
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr
    refused(m, f"echo NULL > {t}/nexus", errno.ENODEV, None)
    refused(m, f"echo iqn.1994-05.com.redhat:x > {t}/nexus", errno.EINVAL,
            # the kernel prints the buffer before stripping its newline: two dmesg lines
            r"Passed iSCSI Initiator Port iqn\.1994-05\.com\.redhat:x")
    refused(m, f"echo fc.5001405000000001 > {t}/nexus", errno.EINVAL,
            r" does not match target port protoid: SAS")
    refused(m, f"echo 5001405000000001 > {t}/nexus", errno.EINVAL,
            r"Unable to locate prefix for emulated Initiator Port: 5001405000000001")
    init = "naa.5001405000000099"
    lines = logged(m, f"echo {init} > {t}/nexus")
    assert lines == [f"loopback_TPG[1] - Added DYNAMIC ACL with TCQ Depth: 1 for loopback "
                     f"Initiator Node: {init}",
                     f"TCM_Loop_ConfigFS: Established I_T Nexus to emulated SAS Initiator Port: "
                     f"{init}"]
    assert m.read(f"{rel}/nexus") == f"{init}\n"
    assert os.listdir(f"{t}/acls") == []   # dynamic ACLs are not directories
    refused(m, f"echo naa.5001405000000098 > {t}/nexus", errno.EEXIST,
            r"tl_tpg->tl_nexus already exists")
    assert m.read(f"{rel}/nexus") == f"{init}\n"
    # LUNs linked: the nexus stays
    dev = make_dev(m, f"lb{next(_n)}")
    m.ok(f"mkdir {t}/lun/lun_0 && ln -s {dev} {t}/lun/lun_0/d")
    refused(m, f"echo NULL > {t}/nexus", errno.EPERM,
            "Unable to remove TCM_Loop I_T Nexus with active TPG port count: 1")
    m.ok(f"rm {t}/lun/lun_0/d")
    lines = logged(m, f"echo NULL > {t}/nexus")
    assert lines == [f"TCM_Loop_ConfigFS: Removing I_T Nexus to emulated SAS Initiator Port: "
                     f"{init}"]
    r = sh(f"cat {t}/nexus")
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr


def test_nexus_fc_drops_prefix(m):
    t = f"{wwn(m, 'fc.')}/tpgt_1"
    m.ok(f"mkdir -p {t} && echo fc.21000024ff000001 > {t}/nexus")
    assert m.read(f"{t[len(m.root) + 1:]}/nexus") == "21000024ff000001\n"


def test_demo_mode_maps_luns_read_write(m):
    t = f"{wwn(m)}/tpgt_1"
    dev = make_dev(m, f"lb{next(_n)}")
    m.ok(f"mkdir -p {t}/lun/lun_2 && echo naa.5001405000000077 > {t}/nexus")
    lines = logged(m, f"ln -s {dev} {t}/lun/lun_2/d")
    assert "TARGET_CORE[loopback]->TPG[1]_LUN[2] - Adding READ-WRITE access for LUN in Demo " \
           "Mode" in lines
    assert "TCM_Loop_ConfigFS: Port Link Successful" in lines
    lines = logged(m, f"rm {t}/lun/lun_2/d")
    assert "TCM_Loop_ConfigFS: Port Unlink Successful" in lines


def test_rmdir_tpg_and_wwn(m):
    w = wwn(m)
    m.ok(f"mkdir -p {w}/tpgt_1 && echo naa.5001405000000066 > {w}/tpgt_1/nexus")
    lines = logged(m, f"rmdir {w}/tpgt_1")
    assert f"TCM_Loop_ConfigFS: Deallocated Emulated SAS Target Port {os.path.basename(w)},t," \
           "0x0001" in lines
    lines = kernel_lines("")
    lines = logged(m, f"rmdir {w}")
    assert any(ln.startswith("TCM_Loop_ConfigFS: Deallocating emulated Target SAS Address: ")
               for ln in lines)
