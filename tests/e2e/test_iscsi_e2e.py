"""A target made only with shell commands in the mounted tree, used by libiscsi's tools.

Everything goes through the real path: mkdir/echo/ln -s in the FUSE mount, the daemon's
iSCSI server on 127.0.0.1, libiscsi (Debian libiscsi-bin) as the initiator.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helpers import free_port, mount, umount, wait_port

IQN = "iqn.2026-12.org.simfs:e2e"
INIT_A = "iqn.2026-12.org.example:host-a"
INIT_B = "iqn.2026-12.org.example:host-b"

pytestmark = pytest.mark.skipif(shutil.which("iscsi-ls") is None,
                                reason="libiscsi-bin is not installed")

# iscsi-test-cu tests a real kernel target fails the same way (each checked against the
# kernel's source): VERIFY is a no-op (no BYTCHK compare, no VRPROTECT/DPO checks); a
# write whose length differs from the CDB's is refused with 0E/03 since 5.12, so the
# write-residual tests and COMPARE AND WRITE with NoLB 256 (0 in the CDB) fail; a DataSN
# error at ErrorRecoveryLevel 0 drops the connection.
KERNEL_FAILS = {
    "Verify10.VerifyProtect", "Verify10.Dpo", "Verify10.Mismatch",
    "Verify16.VerifyProtect", "Verify16.Dpo", "Verify16.Mismatch",
    "CompareAndWrite.Simple", "CompareAndWrite.Miscompare",
    "iSCSIdatasn.iSCSIDataSnInvalid",
    "iSCSIResiduals.Write10Residuals", "iSCSIResiduals.Write12Residuals",
    "iSCSIResiduals.Write16Residuals", "iSCSIResiduals.WriteVerify10Residuals",
    "iSCSIResiduals.WriteVerify16Residuals",
}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    m = mount("modern")
    img = tmp_path_factory.mktemp("e2e") / "lun0.img"
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    m.ok(f"mkdir -p {t}/core/fileio_0/f0 && "
         f"echo fd_dev_name={img},fd_dev_size=134217728 > {t}/core/fileio_0/f0/control && "
         f"echo 1 > {t}/core/fileio_0/f0/enable && "
         f"mkdir -p {tpg}/lun/lun_0 && ln -s {t}/core/fileio_0/f0 {tpg}/lun/lun_0/lun0 && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && "
         f"echo 0 > {tpg}/attrib/authentication && "
         f"mkdir -p {tpg}/acls/{INIT_A}/lun_0 {tpg}/acls/{INIT_B}/lun_0 && "
         f"ln -s {tpg}/lun/lun_0 {tpg}/acls/{INIT_A}/lun_0/m && "
         f"ln -s {tpg}/lun/lun_0 {tpg}/acls/{INIT_B}/lun_0/m && "
         f"echo 1 > {tpg}/enable")
    wait_port(port)
    yield m, port, tpg
    umount(m)


def url(port: int, lun: int = 0, auth: str = "") -> str:
    return f"iscsi://{auth}127.0.0.1:{port}/{IQN}/{lun}"


def run(*cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_discovery_inquiry_capacity(target):
    m, port, _ = target
    r = run("iscsi-ls", "-s", "-i", INIT_A, f"iscsi://127.0.0.1:{port}")
    assert f"Target:{IQN} Portal:127.0.0.1:{port},1" in r.stdout, r.stdout + r.stderr
    r = run("iscsi-inq", "-i", INIT_A, url(port))
    assert "Peripheral Device Type:DIRECT_ACCESS" in r.stdout, r.stderr
    r = run("iscsi-readcapacity16", "-i", INIT_A, url(port))
    assert "Total size:134217728" in r.stdout, r.stderr
    assert "Status: ACTIVATED" in m.read("target/core/fileio_0/f0/info")


def test_unlisted_initiator_is_refused(target):
    _, port, _ = target
    r = run("iscsi-inq", "-i", "iqn.2026-12.org.example:stranger", url(port))
    assert r.returncode != 0
    assert "Authorization failure" in (r.stdout + r.stderr) or "failed" in r.stderr.lower()


def test_chap_through_the_acl(target):
    m, port, tpg = target
    acl = f"{tpg}/acls/{INIT_A}"
    # printf, not echo: the kernel keeps a written newline as part of the secret
    m.ok(f"echo 1 > {tpg}/attrib/authentication && printf alice > {acl}/auth/userid && "
         f"printf s3cret-s3cret > {acl}/auth/password")
    try:
        ok = run("iscsi-inq", "-i", INIT_A, url(port, auth="alice%s3cret-s3cret@"))
        assert ok.returncode == 0, ok.stderr
        bad = run("iscsi-inq", "-i", INIT_A, url(port, auth="alice%wrong-password@"))
        assert bad.returncode != 0
        assert "secret" not in m.dmesg().replace("s3cret", "")  # nothing leaks a secret
        assert "s3cret" not in m.dmesg()
    finally:
        m.ok(f"echo 0 > {tpg}/attrib/authentication")


def _cu(port: int, families: str) -> tuple[set, str]:
    """Run iscsi-test-cu; returns the failed tests ("Suite.Test") and its output."""
    r = run("iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B, f"--test={families}",
            url(port), timeout=600)
    failed = set(re.findall(r"Suite (\S+), Test (\S+) had failures", r.stdout))
    failed = {f"{s}.{t}" for s, t in failed}
    ran = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", r.stdout)
    assert ran, r.stdout[-3000:] + r.stderr[-2000:]
    return failed, r.stdout


@pytest.mark.parametrize("family", [
    "SCSI.Inquiry", "SCSI.TestUnitReady", "SCSI.Read10", "SCSI.Read16", "SCSI.Write10",
    "SCSI.Write16", "SCSI.ReadCapacity10", "SCSI.ReadCapacity16", "SCSI.Unmap",
    "SCSI.WriteSame10", "SCSI.WriteSame16", "SCSI.CompareAndWrite",
    "SCSI.ReportSupportedOpcodes", "SCSI.ModeSense6", "SCSI.Verify10",
    "SCSI.PrinReadKeys", "SCSI.PrinReportCapabilities", "SCSI.ProutRegister",
    "SCSI.ProutReserve", "SCSI.ProutClear", "SCSI.ProutPreempt", "SCSI.Reserve6",
    "iSCSI.iSCSIcmdsn", "iSCSI.iSCSIdatasn", "iSCSI.iSCSIResiduals", "iSCSI.iSCSITMF",
])
def test_iscsi_test_cu_family(target, family):
    _, port, _ = target
    failed, out = _cu(port, family)
    unexpected = failed - KERNEL_FAILS
    assert not unexpected, f"{family}: {sorted(unexpected)}\n{out[-4000:]}"


def test_multipath_io_over_two_tpgs(target):
    """Two TPGs with their own portals export the same device: MultipathIO runs."""
    m, port, tpg = target
    port2 = free_port()
    tpg2 = tpg.replace("tpgt_1", "tpgt_2")
    m.ok(f"mkdir -p {tpg2}/lun/lun_0 && "
         f"ln -s {m.root}/target/core/fileio_0/f0 {tpg2}/lun/lun_0/lun0 && "
         f"mkdir {tpg2}/np/127.0.0.1:{port2} && echo 0 > {tpg2}/attrib/authentication && "
         f"mkdir -p {tpg2}/acls/{INIT_A}/lun_0 {tpg2}/acls/{INIT_B}/lun_0 && "
         f"ln -s {tpg2}/lun/lun_0 {tpg2}/acls/{INIT_A}/lun_0/m && "
         f"ln -s {tpg2}/lun/lun_0 {tpg2}/acls/{INIT_B}/lun_0/m && echo 1 > {tpg2}/enable")
    wait_port(port2)
    r = run("iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B, "--test=SCSI.MultipathIO",
            url(port), url(port2), timeout=300)
    assert "Multipath unavailable" not in r.stdout
    counts = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", r.stdout)
    assert counts and counts.group(4) == "0" and int(counts.group(3)) >= 4, r.stdout[-3000:]
    # both ports are in the device's default target port group, with distinct RTPIs
    members = m.read("target/core/fileio_0/f0/alua/default_tg_pt_gp/members")
    assert f"iSCSI/{IQN}/tpgt_1/lun_0" in members and f"iSCSI/{IQN}/tpgt_2/lun_0" in members


def test_export_without_root(unprivileged):
    """docs/iscsi.md's recipe as an ordinary user: simfs run (user + mount namespace) makes
    the target, libiscsi logs in."""
    port = free_port()
    iqn = "iqn.2026-12.org.example:rd"
    t = "/sys/kernel/config/target"
    tpg = f"{t}/iscsi/{iqn}/tpgt_1"
    script = (f"mkdir -p {t}/core/rd_mcp_0/rd0 && echo rd_pages=16384 > {t}/core/rd_mcp_0/rd0/control"
              f" && echo 1 > {t}/core/rd_mcp_0/rd0/enable && mkdir -p {tpg}/lun/lun_0 && "
              f"ln -s {t}/core/rd_mcp_0/rd0 {tpg}/lun/lun_0/rd0 && "
              f"mkdir {tpg}/np/127.0.0.1:{port} && "
              f"echo 1 > {tpg}/attrib/generate_node_acls && "
              f"echo 0 > {tpg}/attrib/demo_mode_write_protect && "
              f"echo 0 > {tpg}/attrib/authentication && echo 1 > {tpg}/enable && "
              f"iscsi-readcapacity16 iscsi://127.0.0.1:{port}/{iqn}/0")
    r = unprivileged.simfs_run(script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Total size:67108864" in r.stdout
