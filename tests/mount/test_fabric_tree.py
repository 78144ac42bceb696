"""The generic fabric side of the tree, through a real mount and shell commands:
``mkdir target/<fabric>``, LUNs linked to backstores, per-LUN ALUA files, node ACLs and
mapped LUNs, port and mapped-LUN statistics (target_core_fabric_configfs.c,
target_core_tpg.c, target_core_device.c, target_core_alua.c, target_core_stat.c).

Every refusal is checked for its errno, the kernel's log line, and unchanged state.
"""
from __future__ import annotations

import errno
import itertools
import os
import re

import pytest

from helpers import sh

TS = re.compile(r"^\[\s*\d+\.\d+\] ")
_n = itertools.count()


def kernel_lines(text: str) -> list[str]:
    return [TS.sub("", ln) for ln in text.splitlines()
            if not TS.sub("", ln).startswith("configfs: ")]


def refused(m, cmd: str, err: int, log: str | None) -> None:
    """``cmd`` fails with ``err``; the kernel logs exactly ``log`` (a regex) or nothing."""
    mark = m.log_mark()
    r = sh(cmd)
    assert r.returncode != 0, f"{cmd!r} succeeded"
    assert os.strerror(err) in r.stderr, r.stderr
    lines = kernel_lines(m.log_since(mark))
    if log is None:
        assert lines == [], lines
    else:
        assert any(re.fullmatch(log, ln) for ln in lines), (log, lines)


def logged(m, cmd: str) -> list[str]:
    mark = m.log_mark()
    m.ok(cmd)
    return kernel_lines(m.log_since(mark))


def make_dev(m, name: str, enable: bool = True) -> str:
    d = f"{m.core}/fileio_0/{name}"
    m.ok(f"mkdir -p {d}")
    if enable:
        img = os.path.join(m.state_dir, f"{name}.img")
        m.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {d}/control && "
             f"echo 1 > {d}/enable")
    return d


@pytest.fixture(scope="module")
def m(mnt_mod):
    mnt_mod.ok(f"mkdir -p {mnt_mod.root}/target/loopback {mnt_mod.root}/target/iscsi")
    return mnt_mod


@pytest.fixture
def tpg(m):
    """A fresh loopback TPG: its path."""
    n = next(_n)
    t = f"{m.root}/target/loopback/naa.50014050000000{n:02x}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    return t


@pytest.fixture
def itpg(m):
    """A fresh iSCSI TPG."""
    n = next(_n)
    t = f"{m.root}/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:t{n}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    return t


@pytest.fixture
def dev(m):
    return make_dev(m, f"fd{next(_n)}")


# -- target/<fabric> ---------------------------------------------------------------------------
def test_unknown_fabric_is_einval_with_the_kernels_lines(m):
    mark = m.log_mark()
    r = sh(f"mkdir {m.root}/target/nosuchfabric")
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr
    lines = kernel_lines(m.log_since(mark))
    assert re.fullmatch(r"Target_Core_ConfigFS: REGISTER -> group: [0-9a-f]{16} name: "
                        r"nosuchfabric", lines[0])
    assert lines[1:] == ["target_core_register_fabric() trying autoload for nosuchfabric",
                         "target_core_get_fabric() failed for nosuchfabric"]
    assert not os.path.exists(f"{m.root}/target/nosuchfabric")


def test_fabric_directories(m):
    assert {"discovery_auth", "lio_version"} <= set(os.listdir(f"{m.root}/target/iscsi"))
    assert {"discovery_auth", "version"} <= set(os.listdir(f"{m.root}/target/loopback"))
    assert os.listdir(f"{m.root}/target/loopback/discovery_auth") == []
    refused(m, f"rmdir {m.root}/target/iscsi/discovery_auth", errno.EPERM, None)


def test_fabric_rmdir_and_mkdir_again(mnt):
    lines = logged(mnt, f"mkdir {mnt.root}/target/loopback")
    assert "target_core_register_fabric() trying autoload for loopback" in lines
    assert lines[-3:] == ["Target_Core_ConfigFS: REGISTER -> Located fabric: loopback",
                          lines[-2], "Target_Core_ConfigFS: REGISTER -> Allocated Fabric: loopback"]
    mnt.ok(f"mkdir {mnt.root}/target/loopback/naa.5001405000000001")
    refused(mnt, f"rmdir {mnt.root}/target/loopback", errno.ENOTEMPTY, None)
    mnt.ok(f"rmdir {mnt.root}/target/loopback/naa.5001405000000001")
    mnt.ok(f"rmdir {mnt.root}/target/loopback")
    # the module stays loaded: no autoload the second time
    lines = logged(mnt, f"mkdir {mnt.root}/target/loopback")
    assert "target_core_register_fabric() trying autoload for loopback" not in lines
    assert "Target_Core_ConfigFS: REGISTER -> Allocated Fabric: loopback" in lines


def test_wwn_layout_and_param(m):
    w = f"{m.root}/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:wl"
    m.ok(f"mkdir -p {w}")
    assert {"fabric_statistics", "param"} <= set(os.listdir(w))
    assert m.read(f"{w}/param/cmd_completion_affinity") == "-1\n"
    m.ok(f"echo -2 > {w}/param/cmd_completion_affinity")
    assert m.read(f"{w}/param/cmd_completion_affinity") == "-2\n"
    refused(m, f"echo 99999 > {w}/param/cmd_completion_affinity", errno.EINVAL,
            r"Command completion value must be between -1 and -2 or an online CPU\.")
    refused(m, f"echo x > {w}/param/cmd_completion_affinity", errno.EINVAL, None)
    assert m.read(f"{w}/param/cmd_completion_affinity") == "-2\n"
    assert sorted(os.listdir(f"{w}/fabric_statistics")) == [
        "iscsi_instance", "iscsi_login_stats", "iscsi_logout_stats", "iscsi_sess_err",
        "iscsi_tgt_attr"]


def test_tpg_layout(m, tpg, itpg):
    assert sorted(os.listdir(tpg)) == ["acls", "address", "attrib", "auth", "lun", "nexus", "np",
                                       "param", "rtpi", "transport_status"]
    assert sorted(os.listdir(itpg)) == ["acls", "attrib", "auth", "dynamic_sessions", "enable",
                                        "lun", "np", "param", "rtpi"]
    for d in ("lun", "np", "acls", "attrib", "auth", "param"):
        refused(m, f"rmdir {itpg}/{d}", errno.EPERM, None)


# -- LUNs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, err, log", [
    ("foo", errno.EINVAL, r"Unable to locate '_\" in \"lun_\$LUN_NUMBER\""),
    ("lunx", errno.EINVAL, r"Unable to locate '_\" in \"lun_\$LUN_NUMBER\""),
    ("lun_x", errno.EINVAL, None),
    ("lun_-1", errno.EINVAL, None),
    ("lun_99999999999999999999", errno.ERANGE, None),
])
def test_lun_mkdir_refused(m, tpg, name, err, log):
    refused(m, f"mkdir {tpg}/lun/{name}", err, log)
    assert os.listdir(f"{tpg}/lun") == []


def test_lun_mkdir_accepts_kstrtoull_forms(m, tpg):
    m.ok(f"mkdir {tpg}/lun/lun_0x10 {tpg}/lun/lun_010 {tpg}/lun/lun_7")
    assert sorted(os.listdir(f"{tpg}/lun/lun_7")) == [
        "alua_tg_pt_gp", "alua_tg_pt_offline", "alua_tg_pt_status", "alua_tg_pt_write_md",
        "statistics"]
    assert sorted(os.listdir(f"{tpg}/lun/lun_7/statistics")) == [
        "scsi_port", "scsi_tgt_port", "scsi_transport"]
    refused(m, f"rmdir {tpg}/lun/lun_7/statistics", errno.EPERM, None)
    m.ok(f"rmdir {tpg}/lun/lun_0x10 {tpg}/lun/lun_010 {tpg}/lun/lun_7")


def test_link_exports_the_device(m, tpg, dev):
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun}")
    assert m.read(f"{dev}/info").startswith("Status: DEACTIVATED")
    lines = logged(m, f"ln -s {dev} {lun}/anyname")
    assert re.fullmatch(r"loopback_TPG\[1\]_LUN\[0\] - Activated loopback Logical Unit from "
                        r"CORE HBA: \d+", lines[0]), lines
    assert m.read(f"{dev}/info").startswith("Status: ACTIVATED")
    assert m.read(f"{dev}/statistics/scsi_dev/ports") == "1\n"
    assert m.read(f"{dev}/statistics/scsi_tgt_dev/status") == "activated"
    assert m.read(f"{dev}/statistics/scsi_lu/status") == "available\n"
    assert os.readlink(f"{lun}/anyname") == "../../../../../../" + dev[len(m.root) + 1:]
    # identity and geometry are frozen now
    refused(m, f"echo 4096 > {dev}/attrib/block_size", errno.EINVAL,
            r"dev\[[0-9a-f]{16}\]: Unable to change SE Device block_size while export_count is 1")
    assert m.read(f"{dev}/attrib/block_size") == "512\n"
    refused(m, f"echo abc > {dev}/wwn/vpd_unit_serial", errno.EINVAL,
            r"Unable to set VPD Unit Serial while active 1 \$FABRIC_MOD exports exist")
    # unlink: the device is no longer exported
    lines = logged(m, f"rm {lun}/anyname")
    assert "loopback_TPG[1]_LUN[0] - Deactivating loopback Logical Unit from device object" \
        in lines
    assert m.read(f"{dev}/info").startswith("Status: DEACTIVATED")
    assert m.read(f"{dev}/statistics/scsi_dev/ports") == "0\n"
    m.ok(f"echo 4096 > {dev}/attrib/block_size")


def test_relative_link_as_the_brief_writes_it(m, tpg, dev):
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun}")
    rel = "../../../../../../" + dev[len(m.root) + 1:]
    m.ok(f"cd {lun} && ln -s {rel} mylink")
    assert m.read(f"{dev}/info").startswith("Status: ACTIVATED")
    m.ok(f"rm {lun}/mylink")


def test_link_refusals(m, tpg, dev):
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun}")
    off = make_dev(m, f"off{next(_n)}", enable=False)
    refused(m, f"ln -s {m.core}/fileio_0 {lun}/x", errno.EFAULT,
            r"Bad se_dev_ci, not a valid se_dev_ci pointer: [0-9a-f]{16}")
    refused(m, f"ln -s {dev}/attrib {lun}/x", errno.EFAULT,
            r"Bad se_dev_ci, not a valid se_dev_ci pointer: [0-9a-f]{16}")
    refused(m, f"ln -s {off} {lun}/x", errno.ENODEV,
            "se_device not configured yet, cannot port link")
    m.ok(f"ln -s {dev} {lun}/first")
    refused(m, f"ln -s {dev} {lun}/second", errno.EEXIST, "Port Symlink already exists")
    other = make_dev(m, f"fd{next(_n)}")
    refused(m, f"ln -s {other} {lun}/second", errno.EEXIST, "Port Symlink already exists")
    assert m.read(f"{other}/info").startswith("Status: DEACTIVATED")
    assert m.read(f"{dev}/statistics/scsi_dev/ports") == "1\n"
    # links only where allow_link exists; targets only inside this configfs
    refused(m, f"ln -s {dev} {tpg}/x", errno.EPERM, None)
    refused(m, f"ln -s /tmp {lun}/y", errno.EPERM, None)
    # a linked LUN cannot go, and neither can the device it exports
    refused(m, f"rmdir {lun}", errno.ENOTEMPTY, None)
    refused(m, f"rmdir {dev}", errno.EBUSY, None)
    refused(m, f"rmdir {tpg}", errno.ENOTEMPTY, None)
    m.ok(f"rm {lun}/first && rmdir {lun} && rmdir {tpg}")


def test_rtpi_per_tpg(m, dev):
    """6.3+: every LUN of a TPG reports the TPG's id; loopback never enables, so 0 (the
    per-device counter of older kernels: test_kernels.test_relative_port_ids)."""
    n = next(_n)
    a = f"{m.root}/target/loopback/naa.50014050000001{n:02x}/tpgt_1/lun/lun_0"
    b = f"{m.root}/target/loopback/naa.50014050000001{n:02x}/tpgt_1/lun/lun_5"
    m.ok(f"mkdir -p {a} {b} && ln -s {dev} {a}/l && ln -s {dev} {b}/l")
    assert m.read(f"{a}/statistics/scsi_port/indx") == "0\n"
    assert m.read(f"{b}/statistics/scsi_port/indx") == "0\n"
    assert m.read(f"{dev}/statistics/scsi_dev/ports") == "2\n"
    tpg = a.rsplit("/lun/", 1)[0]
    m.ok(f"echo 7 > {tpg}/rtpi")  # never enabled: the written id is the TPG's
    assert m.read(f"{tpg}/rtpi") == "0x7\n"
    assert m.read(f"{b}/statistics/scsi_tgt_port/name") == "loopbackPort#7\n"
    m.ok(f"rm {a}/l {b}/l")


def test_port_statistics(m, tpg, dev):
    lun = f"{tpg}/lun/lun_2"
    m.ok(f"mkdir {lun}")
    st = f"{lun}/statistics"
    for grp in ("scsi_port", "scsi_tgt_port", "scsi_transport"):
        for f in os.listdir(f"{st}/{grp}"):
            r = sh(f"cat {st}/{grp}/{f}")
            assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr, (grp, f)
    m.ok(f"echo stat-serial > {dev}/wwn/vpd_unit_serial && ln -s {dev} {lun}/l")
    inst = m.read(f"{dev}/statistics/scsi_dev/inst")
    indx = m.read(f"{dev}/statistics/scsi_dev/indx")
    wwn = tpg.split("/")[-2]
    assert m.read(f"{st}/scsi_port/inst") == inst
    assert m.read(f"{st}/scsi_port/dev") == indx
    assert m.read(f"{st}/scsi_port/role") == f"Device{indx}"
    assert m.read(f"{st}/scsi_port/busy_count") == "0\n"
    assert m.read(f"{st}/scsi_tgt_port/name") == "loopbackPort#0\n"  # loopback: never enabled
    assert m.read(f"{st}/scsi_tgt_port/port_index") == f"{wwn}+t+1\n"
    assert m.read(f"{st}/scsi_tgt_port/in_cmds") == "0\n"
    assert m.read(f"{st}/scsi_transport/device") == "scsiTransportloopback\n"
    assert m.read(f"{st}/scsi_transport/dev_name") == f"{wwn}+stat-serial\n"
    assert m.read(f"{st}/scsi_transport/proto_id") == "6\n"
    m.ok(f"rm {lun}/l")


# -- per-LUN ALUA files (8.5) -------------------------------------------------------------------------
def test_alua_files_enodev_while_unlinked(m, tpg):
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun}")
    for f in ("alua_tg_pt_gp", "alua_tg_pt_offline", "alua_tg_pt_status", "alua_tg_pt_write_md"):
        r = sh(f"cat {lun}/{f}")
        assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr
        refused(m, f"echo 1 > {lun}/{f}", errno.ENODEV, None)


def test_alua_tg_pt_gp_moves_and_members(m, tpg, dev):
    lun = f"{tpg}/lun/lun_3"
    wwn = tpg.split("/")[-2]
    member = f"loopback/{wwn}/tpgt_1/lun_3"
    m.ok(f"mkdir {lun} && ln -s {dev} {lun}/l")
    assert m.read(f"{lun}/alua_tg_pt_gp") == (
        "TG Port Alias: default_tg_pt_gp\nTG Port Group ID: 0\n"
        "TG Port Primary Access State: Active/Optimized\nTG Port Primary Access Status: None\n"
        "TG Port Secondary Access State: None\nTG Port Secondary Access Status: None\n")
    with open(f"{dev}/alua/default_tg_pt_gp/members", "rb") as f:
        assert f.read() == member.encode() + b"\n\0"
    m.ok(f"mkdir {dev}/alua/noid {dev}/alua/pg && echo 5 > {dev}/alua/pg/tg_pt_gp_id")
    refused(m, f"echo noid > {lun}/alua_tg_pt_gp", errno.ENODEV, None)
    refused(m, f"echo nosuch > {lun}/alua_tg_pt_gp", errno.ENODEV, None)
    refused(m, f"python3 -c \"import os; os.write(os.open('{lun}/alua_tg_pt_gp', os.O_WRONLY), "
            f"b'x'*257)\"", errno.EINVAL,
            "ALUA Target Port Group alias too large!")
    lines = logged(m, f"echo pg > {lun}/alua_tg_pt_gp")
    assert lines == [f"Target_Core_ConfigFS: Moving {wwn}/tpgt_1/lun_3 to ALUA Target Port "
                     "Group: alua/pg, ID: 5"]
    assert m.read(f"{lun}/alua_tg_pt_gp").startswith("TG Port Alias: pg\nTG Port Group ID: 5\n")
    assert m.read(f"{dev}/alua/pg/members") == member + "\n\0"
    assert m.read(f"{dev}/alua/default_tg_pt_gp/members") == ""
    lines = logged(m, f"echo NULL > {lun}/alua_tg_pt_gp")
    assert lines == [f"Target_Core_ConfigFS: Moving {wwn}/tpgt_1/lun_3 from ALUA Target Port "
                     "Group: alua/pg, ID: 5 back to default_tg_pt_gp"]
    assert m.read(f"{dev}/alua/default_tg_pt_gp/members") == member + "\n\0"
    # a group that goes away hands its LUNs back to the default group
    m.ok(f"echo pg > {lun}/alua_tg_pt_gp && rmdir {dev}/alua/pg")
    assert m.read(f"{lun}/alua_tg_pt_gp").startswith("TG Port Alias: default_tg_pt_gp\n")
    m.ok(f"rm {lun}/l")
    assert m.read(f"{dev}/alua/default_tg_pt_gp/members") == ""


def test_alua_offline_status_write_md(m, tpg, dev):
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun} && ln -s {dev} {lun}/l")
    for f in ("alua_tg_pt_offline", "alua_tg_pt_status", "alua_tg_pt_write_md"):
        assert m.read(f"{lun}/{f}") == "0\n"
    refused(m, f"echo 2 > {lun}/alua_tg_pt_offline", errno.EINVAL,
            "Illegal value for alua_tg_pt_offline: 2")
    refused(m, f"echo x > {lun}/alua_tg_pt_offline", errno.EINVAL,
            "Unable to extract alua_tg_pt_offline value")
    lines = logged(m, f"echo 1 > {lun}/alua_tg_pt_offline")
    assert lines == ["Successful implicit ALUA transition TG PT Group: default_tg_pt_gp ID: 0 to "
                     "secondary access state: OFFLINE"]
    assert m.read(f"{lun}/alua_tg_pt_offline") == "1\n"
    assert m.read(f"{lun}/alua_tg_pt_status") == "2\n"
    assert "TG Port Secondary Access State: Offline\nTG Port Secondary Access Status: " \
           "Altered by Implicit ALUA\n" in m.read(f"{lun}/alua_tg_pt_gp")
    m.ok(f"echo 0 > {lun}/alua_tg_pt_offline")
    refused(m, f"echo 3 > {lun}/alua_tg_pt_status", errno.EINVAL,
            "Illegal value for alua_tg_pt_status: 3")
    m.ok(f"echo 1 > {lun}/alua_tg_pt_status")
    assert m.read(f"{lun}/alua_tg_pt_status") == "1\n"
    refused(m, f"echo 2 > {lun}/alua_tg_pt_write_md", errno.EINVAL,
            "Illegal value for alua_tg_pt_write_md: 2")
    m.ok(f"echo 1 > {lun}/alua_tg_pt_write_md")
    assert m.read(f"{lun}/alua_tg_pt_write_md") == "1\n"
    m.ok(f"rm {lun}/l")


# -- node ACLs and mapped LUNs -------------------------------------------------------------------------
INIT = "iqn.1994-05.com.redhat:client1"


def test_acl_mkdir_and_layout(m, itpg):
    acl = f"{itpg}/acls/{INIT}"
    lines = logged(m, f"mkdir {acl}")
    assert lines == [f"iSCSI_TPG[1] - Added  ACL with TCQ Depth: 64 for iSCSI Initiator Node: "
                     f"{INIT}"]
    assert sorted(os.listdir(acl)) == ["attrib", "auth", "cmdsn_depth", "fabric_statistics",
                                       "info", "param", "tag"]
    for d in ("attrib", "auth", "param", "fabric_statistics"):
        refused(m, f"rmdir {acl}/{d}", errno.EPERM, None)
    lines = logged(m, f"rmdir {acl}")
    assert lines == [f"iSCSI_TPG[1] - Deleted ACL with TCQ Depth: 64 for iSCSI Initiator Node: "
                     f"{INIT}"]


@pytest.mark.parametrize("name, err, log", [
    ("foo", errno.EINVAL, r'Unable to locate "lun_" from buf: foo name: foo'),
    ("mylun_1", errno.EINVAL, r'Unable to locate "lun_" from buf: mylun_1 name: mylun_1'),
    ("lun_z", errno.EINVAL, None),
])
def test_mapped_lun_mkdir_refused(m, itpg, name, err, log):
    m.ok(f"mkdir {itpg}/acls/{INIT}")
    refused(m, f"mkdir {itpg}/acls/{INIT}/{name}", err, log)


def test_mapped_lun_link_and_write_protect(m, itpg, dev):
    wwn = itpg.split("/")[-2]
    lun = f"{itpg}/lun/lun_4"
    ml = f"{itpg}/acls/{INIT}/lun_9"
    m.ok(f"mkdir {lun} {itpg}/acls/{INIT} {ml}")
    assert sorted(os.listdir(ml)) == ["statistics", "write_protect"]
    assert m.read(f"{ml}/write_protect") == ""
    refused(m, f"ln -s {lun} {ml}/x", errno.EINVAL, "Source se_lun->lun_se_dev does not exist")
    refused(m, f"ln -s {dev} {ml}/x", errno.EFAULT,
            r"Bad lun_ci, not a valid lun_ci pointer: [0-9a-f]{16}")
    m.ok(f"ln -s {dev} {lun}/dev")
    lines = logged(m, f"ln -s {lun} {ml}/anything")
    assert lines == [f"iSCSI_TPG[1]_LUN[4->9] - Added RW ACL for InitiatorNode: {INIT}"]
    # configfs readlink: up to the configfs root, then the target's whole path
    assert os.readlink(f"{ml}/anything") == "../" * 7 + lun[len(m.root) + 1:]
    assert m.read(f"{ml}/write_protect") == "0\n"
    refused(m, f"ln -s {lun} {ml}/again", errno.EINVAL,
            rf"Detected existing explicit se_lun_acl->se_lun_group reference for {INIT} "
            r"mapped_lun: 9, failing")
    lines = logged(m, f"echo 1 > {ml}/write_protect")
    assert lines == [f"iSCSI_ConfigFS: Changed Initiator ACL: {INIT} Mapped LUN: 9 Write "
                     "Protect bit to ON"]
    assert m.read(f"{ml}/write_protect") == "1\n"
    refused(m, f"echo 2 > {ml}/write_protect", errno.EINVAL, None)
    refused(m, f"echo x > {ml}/write_protect", errno.EINVAL, None)
    assert m.read(f"{ml}/write_protect") == "1\n"
    # a second mapped-LUN directory of the same number maps nothing new
    m.ok(f"mkdir {itpg}/acls/{INIT}/lun_0x9")
    refused(m, f"ln -s {lun} {itpg}/acls/{INIT}/lun_0x9/x", errno.EINVAL,
            rf"Detected existing explicit se_lun_acl->se_lun_group reference for {INIT} "
            r"mapped_lun: 9, failing")
    refused(m, f"rmdir {ml}", errno.ENOTEMPTY, None)
    refused(m, f"rmdir {lun}", errno.EBUSY, None)  # a link target: EBUSY before its children
    lines = logged(m, f"rm {ml}/anything")
    assert lines == [f"iSCSI_TPG[1]_LUN[4] - Removed ACL for InitiatorNode: {INIT} Mapped LUN: 9"]
    assert m.read(f"{ml}/write_protect") == ""
    # unlinking the TPG LUN removes its mappings from every ACL
    m.ok(f"ln -s {lun} {ml}/again")
    assert m.read(f"{ml}/write_protect") == "0\n"
    m.ok(f"rm {lun}/dev")
    assert m.read(f"{ml}/write_protect") == ""
    _ = wwn


def test_mapped_lun_link_outside_its_tpg(m, dev):
    n = next(_n)
    w = f"{m.root}/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:o{n}"
    w2 = f"{m.root}/target/iscsi/iqn.2003-01.org.linux-iscsi.sim:p{n}"
    m.ok(f"mkdir -p {w}/tpgt_1/lun/lun_0 {w}/tpgt_2/lun/lun_0 {w2}/tpgt_1/lun/lun_0 "
         f"{w}/tpgt_1/acls/{INIT}/lun_0")
    for t in (f"{w}/tpgt_1", f"{w}/tpgt_2", f"{w2}/tpgt_1"):
        m.ok(f"ln -s {dev} {t}/lun/lun_0/d")
    ml = f"{w}/tpgt_1/acls/{INIT}/lun_0"
    refused(m, f"ln -s {w}/tpgt_2/lun/lun_0 {ml}/x", errno.EINVAL,
            rf"Illegal Initiator ACL Symlink outside of iqn\.2003-01\.org\.linux-iscsi\.sim:o{n} "
            r"TPGT: tpgt_1")
    refused(m, f"ln -s {w2}/tpgt_1/lun/lun_0 {ml}/x", errno.EINVAL,
            rf"Illegal Initiator ACL SymLink outside of iqn\.2003-01\.org\.linux-iscsi\.sim:o{n}")
    assert m.read(f"{ml}/write_protect") == ""


def test_prod_mode_write_protect_makes_new_mappings_read_only(m, itpg, dev):
    m.ok(f"mkdir {itpg}/lun/lun_0 && ln -s {dev} {itpg}/lun/lun_0/d")
    m.ok(f"echo 1 > {itpg}/attrib/prod_mode_write_protect")
    ml = f"{itpg}/acls/{INIT}/lun_0"
    m.ok(f"mkdir -p {ml}")
    lines = logged(m, f"ln -s {itpg}/lun/lun_0 {ml}/x")
    assert lines == [f"iSCSI_TPG[1]_LUN[0->0] - Added RO ACL for InitiatorNode: {INIT}"]
    assert m.read(f"{ml}/write_protect") == "1\n"


def test_mapped_lun_statistics(m, itpg, dev):
    ml = f"{itpg}/acls/{INIT}/lun_1"
    m.ok(f"mkdir -p {itpg}/lun/lun_0 {ml}")
    st = f"{ml}/statistics"
    assert sorted(os.listdir(st)) == ["scsi_att_intr_port", "scsi_auth_intr"]
    r = sh(f"cat {st}/scsi_auth_intr/intr_name")
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr
    m.ok(f"ln -s {dev} {itpg}/lun/lun_0/d && ln -s {itpg}/lun/lun_0 {ml}/x")
    assert m.read(f"{st}/scsi_auth_intr/intr_name") == f"{INIT}\n"
    assert m.read(f"{st}/scsi_auth_intr/port") == "1\n"
    assert m.read(f"{st}/scsi_auth_intr/dev") == m.read(f"{dev}/statistics/scsi_dev/indx")
    assert m.read(f"{st}/scsi_auth_intr/row_status") == "Ready\n"
    assert m.read(f"{st}/scsi_auth_intr/num_cmds") == "0\n"
    assert m.read(f"{st}/scsi_att_intr_port/port_auth_indx") == \
        m.read(f"{st}/scsi_auth_intr/indx")
    r = sh(f"cat {st}/scsi_att_intr_port/port_ident")   # no session yet
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr


def test_identity_and_aptpl_metadata_frozen_while_exported(m, tpg, dev):
    """The export gates of wwn/ and pr/ (spec 5.x, 6.1) bite once a LUN links the device."""
    lun = f"{tpg}/lun/lun_0"
    m.ok(f"mkdir {lun} && ln -s {dev} {lun}/l")
    refused(m, f"echo NEWVEND > {dev}/wwn/vendor_id", errno.EINVAL,
            "Unable to set T10 Vendor Identification while active 1 exports exist")
    refused(m, f"echo 0xabcdef > {dev}/wwn/company_id", errno.EINVAL,
            "Unable to set Company ID while 1 exports exist")
    refused(m, f"echo initiator_node=iqn.x,sa_res_key=1,res_holder=0,mapped_lun=0,"
               f"target_node=iqn.y,tpgt=1,port_rtpi=1,target_lun=0 > {dev}/pr/res_aptpl_metadata",
            errno.EINVAL, r"Unable to process APTPL metadata while active fabric exports exist")
    m.ok(f"rm {lun}/l")
    m.ok(f"echo NEWVEND > {dev}/wwn/vendor_id")
