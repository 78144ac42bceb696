"""The hardware fabrics through a real mount whose machine has ports (``--wwn``): tcm_qla2xxx,
efct, tcm_fc, ib_srpt, ibmvscsis — WWN syntax and the port having to exist, TPG rules,
attributes with their defaults and bounds, ACL names; every refusal with its errno, log line
and an unchanged tree."""
from __future__ import annotations

import errno
import os
import re
import subprocess

import pytest

from fabric_checks import modprobe, refused_unchanged
from helpers import mount, umount
from test_fabric_tree import logged

QLA = "21:00:00:24:ff:31:4c:48"
EFCT = "10:00:00:10:9b:1a:2b:3c"
FCOE = "20:00:00:11:22:33:44:55"
GID = "fe80:0000:0000:0000:0002:c903:0003:1235"
GUID_NAME, GID_NAME = "0002:c903:0003:1235", "0xfe800000000000000002c90300031235"


@pytest.fixture(scope="module")
def m():
    mnt = mount("modern", ["--wwn", f"qla2xxx={QLA}", "--wwn", f"efct={EFCT}",
                           "--wwn", f"tcm_fc={FCOE}", "--wwn", f"srpt={GID}",
                           "--wwn", "ibmvscsis=30000003"])
    for mod in ("tcm_qla2xxx", "efct", "tcm_fc", "ib_srpt", "ibmvscsis"):
        modprobe(mnt, mod)
    mnt.ok(" && ".join(f"mkdir {mnt.root}/target/{f}"
                       for f in ("qla2xxx", "efct", "fc", "srpt", "ibmvscsis")))
    yield mnt
    umount(mnt)


@pytest.mark.parametrize("spec, why", [("qla2xxx=21:00:00", "is not an FC port name"),
                                       ("nosuch=1", "with a known fabric"),
                                       ("srpt=fe80::1", "is not an RDMA port GID"),
                                       ("vhost=naa.5001405000000001", "vhost drives no hardware")])
def test_bad_wwn_option_refused(tmp_path, spec, why):
    r = subprocess.run(["simfs", "mount", "--wwn", spec, str(tmp_path)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and why in r.stderr, r.stderr
    assert not os.path.ismount(tmp_path)


# -- qla2xxx ----------------------------------------------------------------------------------------
def test_qla2xxx_port_must_exist(m):
    q = "target/qla2xxx"
    assert re.fullmatch(r"TCM QLOGIC QLA2XXX NPIV capable fabric module 10\.02\.09\.400-k on "
                        r"\S+/\S+ on \S+\n", m.read(f"{q}/version"))
    refused_unchanged(m, f"mkdir {m.root}/{q}/21:00:00:24:ff:31:4c:49", errno.EINVAL, None, q)
    refused_unchanged(m, f"mkdir {m.root}/{q}/{QLA.upper()}", errno.EINVAL,
                      r"err 3 len 12 pos 1 byte 4", q)
    refused_unchanged(m, f"mkdir {m.root}/{q}/{QLA.replace(':', '')}", errno.EINVAL,
                      r"err 1 len 2 pos 0 byte 1", q)
    m.ok(f"mkdir {m.root}/{q}/{QLA}")
    w = f"{q}/{QLA}"
    refused_unchanged(m, f"mkdir {m.root}/{w}/tpgt_2", errno.EINVAL,
                      "In non NPIV mode, a single TPG=1 is used for HW port mappings", w)
    refused_unchanged(m, f"mkdir {m.root}/{w}/tpgt_65536", errno.EINVAL, None, w)
    lines = logged(m, f"mkdir {m.root}/{w}/tpgt_1")
    assert lines == [f"TARGET_CORE[qla2xxx]: Allocated portal_group for endpoint: "
                     f"naa.{QLA.replace(':', '')}, Proto: 0, Portal Tag: 1"]


def test_qla2xxx_tpg_files(m):
    t = f"target/qla2xxx/{QLA}/tpgt_1"
    if not os.path.isdir(f"{m.root}/{t}"):
        m.ok(f"mkdir -p {m.root}/{t}")
    assert sorted(os.listdir(f"{m.root}/{t}")) == [
        "acls", "attrib", "auth", "dynamic_sessions", "enable", "fabric_prot_type", "lun", "np",
        "param", "rtpi"]  # rtpi: every TPG, 6.3+
    want = {"generate_node_acls": "1\n", "cache_dynamic_acls": "1\n",
            "demo_mode_write_protect": "1\n", "prod_mode_write_protect": "0\n",
            "demo_mode_login_only": "1\n"}
    assert {f: m.read(f"{t}/attrib/{f}") for f in os.listdir(f"{m.root}/{t}/attrib")} == want
    assert m.read(f"{t}/dynamic_sessions") == ""
    refused_unchanged(m, f"echo 2 > {m.root}/{t}/attrib/generate_node_acls", errno.EINVAL,
                      "Illegal boolean value 2", t)
    refused_unchanged(m, f"echo -1 > {m.root}/{t}/attrib/cache_dynamic_acls", errno.EINVAL,
                      r"kstrtoul\(\) failed with ret: -22", t)
    refused_unchanged(m, f"echo 99999999999999999999 > {m.root}/{t}/attrib/cache_dynamic_acls",
                      errno.EINVAL, r"kstrtoul\(\) failed with ret: -34", t)
    m.ok(f"echo 0x0 > {m.root}/{t}/attrib/generate_node_acls")
    assert m.read(f"{t}/attrib/generate_node_acls") == "0\n"
    refused_unchanged(m, f"echo 4 > {m.root}/{t}/fabric_prot_type", errno.EINVAL,
                      "Invalid qla2xxx fabric_prot_type: 4", t)
    m.ok(f"echo 1 > {m.root}/{t}/enable")
    assert m.read(f"{t}/enable") == "1\n"
    refused_unchanged(m, f"mkdir {m.root}/{t}/acls/21000024ff314c49", errno.EINVAL,
                      r"qla2xxx_TPG\[1\] - Deleted ACL .*Initiator Node: 21000024ff314c49", t)
    m.ok(f"mkdir {m.root}/{t}/acls/21:00:00:24:ff:31:4c:49")


# -- efct -------------------------------------------------------------------------------------------
def test_efct(m):
    e = "target/efct"
    assert not os.path.exists(f"{m.root}/{e}/version")  # efct has no wwn attributes
    refused_unchanged(m, f"mkdir {m.root}/{e}/10:00:00:10:9b:1a:2b:3d", errno.EINVAL,
                      "cannot find EFCT for base wwpn 10:00:00:10:9b:1a:2b:3d", e)
    refused_unchanged(m, f"mkdir {m.root}/{e}/100000109b1a2b3c", errno.EINVAL, None, e)
    m.ok(f"mkdir {m.root}/{e}/{EFCT.upper()}")  # %02hhx takes either case
    t = f"{e}/{EFCT.upper()}/tpgt_7"
    m.ok(f"mkdir {m.root}/{t}")
    assert sorted(os.listdir(f"{m.root}/{t}/attrib")) == [
        "cache_dynamic_acls", "demo_mode_login_only", "demo_mode_write_protect",
        "generate_node_acls", "prod_mode_write_protect", "session_deletion_wait"]
    assert m.read(f"{t}/attrib/session_deletion_wait") == "1\n"
    assert m.read(f"{t}/enable") == "0\n"
    refused_unchanged(m, f"echo 2 > {m.root}/{t}/enable", errno.EINVAL, None, t)
    m.ok(f"echo 1 > {m.root}/{t}/enable")
    assert m.read(f"{t}/enable") == "1\n"
    refused_unchanged(m, f"echo 99999999999999999999 > {m.root}/{t}/attrib/generate_node_acls",
                      errno.ERANGE, r"kstrtoul\(\) failed with ret: -34", t)
    refused_unchanged(m, f"echo 5 > {m.root}/{t}/attrib/prod_mode_write_protect", errno.EINVAL,
                      "Illegal boolean value 5", t)
    refused_unchanged(m, f"mkdir {m.root}/{t}/acls/naa.1000001091a2b3d", errno.EINVAL,
                      r"efct_TPG\[7\] - Deleted ACL .*", t)
    m.ok(f"mkdir {m.root}/{t}/acls/10:00:00:10:9b:1a:2b:3d")


# -- tcm_fc ----------------------------------------------------------------------------------------
def test_tcm_fc(m):
    f = "target/fc"
    assert re.fullmatch(r"TCM FC 0\.4 on \S+/\S+ on \S+\n", m.read(f"{f}/version"))
    lines = logged(m, f"mkdir {m.root}/{f}/{FCOE}")
    assert lines[0] == f"add wwn {FCOE}"
    # tcm_fc does not check the port exists; the byte counting lets a ninth digit in, and
    # that spelling's value (the low 64 bits) is then another port: accepted
    m.ok(f"mkdir {m.root}/{f}/20:00:00:00:00:00:00:000")
    refused_unchanged(m, f"mkdir {m.root}/{f}/00:00:00:00:00:00:00:000", errno.EINVAL,
                      "add wwn 00:00:00:00:00:00:00:000", f)  # same value as above: a duplicate
    refused_unchanged(m, f"mkdir {m.root}/{f}/20:00:00:11:22:33:44", errno.EINVAL,
                      r"err 1 len 20 pos 0 byte 7", f)
    w = f"{f}/{FCOE}"
    refused_unchanged(m, f"mkdir {m.root}/{w}/tpgt_2", errno.EINVAL,
                      "Error, a single TPG=1 is used for HW port mappings", w)
    m.ok(f"mkdir {m.root}/{w}/tpgt_1")
    t = f"{w}/tpgt_1"
    assert os.listdir(f"{m.root}/{t}/attrib") == []
    refused_unchanged(m, f"mkdir {m.root}/{t}/acls/10:00:00:00:C9:11:22:33", errno.EINVAL,
                      r"err 3 len 12 pos 1 byte 4", t)
    a = f"{t}/acls/10:00:00:00:c9:11:22:33"
    m.ok(f"mkdir {m.root}/{a}")
    assert sorted(os.listdir(f"{m.root}/{a}")) == [
        "attrib", "auth", "fabric_statistics", "node_name", "param", "port_name", "tag"]
    assert m.read(f"{a}/port_name") == "10:00:00:00:c9:11:22:33\n"
    assert m.read(f"{a}/node_name") == "00:00:00:00:00:00:00:00\n"
    m.ok(f"echo 20000000C9112233 > {m.root}/{a}/node_name")
    assert m.read(f"{a}/node_name") == "20:00:00:00:c9:11:22:33\n"
    refused_unchanged(m, f"echo 20:00 > {m.root}/{a}/node_name", errno.EPERM,
                      r"err 3 len 2 pos 0 byte 0", t)
    m.ok(f"echo rack7 > {m.root}/{a}/tag")
    assert m.read(f"{a}/tag") == "rack7\n"


# -- srpt -------------------------------------------------------------------------------------------
def test_srpt_names(m):
    s = "target/srpt"
    assert m.read(f"{s}/version") == "\n"
    assert m.read(f"{s}/discovery_auth/rdma_cm_port") == "0\n"
    refused_unchanged(m, f"echo 65536 > {m.root}/{s}/discovery_auth/rdma_cm_port", errno.ERANGE,
                      None, s)
    m.ok(f"echo 0x1234 > {m.root}/{s}/discovery_auth/rdma_cm_port")
    assert m.read(f"{s}/discovery_auth/rdma_cm_port") == "4660\n"
    for bad in ("0002:c903:0003:1236", "0xfe800000000000000002c90300031236",
                "fe800000000000000002c90300031235"):
        refused_unchanged(m, f"mkdir {m.root}/{s}/{bad}", errno.EINVAL, None, s)
    m.ok(f"mkdir {m.root}/{s}/{GUID_NAME} {m.root}/{s}/{GID_NAME}")
    # any TPG name, several TPGs; every tag is 1
    lines = logged(m, f"mkdir {m.root}/{s}/{GID_NAME}/tpgt_1 {m.root}/{s}/{GID_NAME}/x")
    assert lines[-1] == (f"TARGET_CORE[srpt]: Allocated portal_group for endpoint: {GID_NAME}, "
                         f"Proto: 4, Portal Tag: 1")


def test_srpt_attrib_is_the_ports(m):
    s = "target/srpt"
    m.ok(f"mkdir -p {m.root}/{s}/{GUID_NAME}/tpg_a {m.root}/{s}/{GID_NAME}/tpgt_1")
    a = f"{s}/{GUID_NAME}/tpg_a/attrib"
    assert {f: m.read(f"{a}/{f}") for f in os.listdir(f"{m.root}/{a}")} == {
        "srp_max_rdma_size": "65536\n", "srp_max_rsp_size": "256\n", "srp_sq_size": "4096\n",
        "use_srq": "0\n"}
    for name, bad, msg in (
            ("srp_max_rdma_size", 65535,
             "val: 65535 smaller than DEFAULT_MAX_RDMA_SIZE: 65536"),
            ("srp_max_rdma_size", 16777217, "val: 16777217 exceeds MAX_SRPT_RDMA_SIZE: 16777216"),
            ("srp_max_rsp_size", 39, "val: 39 smaller than MIN_MAX_RSP_SIZE: 40"),
            ("srp_max_rsp_size", 1025, "val: 1025 exceeds MAX_SRPT_RSP_SIZE: 1024"),
            ("srp_sq_size", 3, "val: 3 smaller than MIN_SRPT_SRQ_SIZE: 4"),
            ("srp_sq_size", 65536, "val: 65536 exceeds MAX_SRPT_SRQ_SIZE: 65535"),
            ("srp_sq_size", "x", r"kstrtoul\(\) failed with ret: -22"),
            ("use_srq", 2, None)):
        refused_unchanged(m, f"echo {bad} > {m.root}/{a}/{name}", errno.EINVAL, msg, s)
    refused_unchanged(m, f"echo 99999999999999999999 > {m.root}/{a}/use_srq", errno.ERANGE,
                      None, s)
    m.ok(f"echo 1024 > {m.root}/{a}/srp_sq_size && echo 1 > {m.root}/{a}/use_srq")
    # one RDMA port: its GID name's TPGs see the same values
    assert m.read(f"{s}/{GID_NAME}/tpgt_1/attrib/srp_sq_size") == "1024\n"
    assert m.read(f"{s}/{GID_NAME}/tpgt_1/attrib/use_srq") == "1\n"


@pytest.mark.parametrize("name, ok", [
    ("0x00000000000000000002c90300031236", True), ("00000000000000000002c90300031236", True),
    ("5054:00ff:fe4a:0b7b", True), ("192.168.122.76", True), ("fe80::1", True),
    ("0xabc", False), ("zz", False), ("1.2.3", False), ("iqn.2026-12.org.example:x", False)])
def test_srpt_acl_names(m, name, ok):
    t = f"target/srpt/{GUID_NAME}/tpgt_9"
    m.ok(f"mkdir -p {m.root}/{t}")
    if ok:
        m.ok(f"mkdir {m.root}/{t}/acls/{name} && rmdir {m.root}/{t}/acls/{name}")
    else:
        refused_unchanged(m, f"mkdir {m.root}/{t}/acls/{name}", errno.EINVAL,
                          f"invalid initiator port ID {re.escape(name)}", t)


# -- ibmvscsis ---------------------------------------------------------------------------------------
def test_ibmvscsis(m):
    i = "target/ibmvscsis"
    assert m.read(f"{i}/version") == "v0.2\n"
    refused_unchanged(m, f"mkdir {m.root}/{i}/30000004", errno.EINVAL, None, i)
    m.ok(f"mkdir {m.root}/{i}/30000003 && mkdir {m.root}/{i}/30000003/tpgt_0x2")
    lines = logged(m, f"echo 1 > {m.root}/{i}/30000003/tpgt_0x2/enable")
    assert lines == [] and m.read(f"{i}/30000003/tpgt_0x2/enable") == "1\n"
    # the TPG is part of the adapter
    refused_unchanged(m, f"mkdir {m.root}/{i}/30000003/tpgt_3", errno.EINVAL, None, i)
    assert not os.path.exists(f"{m.root}/{i}/30000003/tpgt_0x2/nexus")
