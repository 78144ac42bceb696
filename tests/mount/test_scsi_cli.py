"""``simfs scsi``: SCSI commands to a mounted device, and the configfs files that follow."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


SERIAL = "abcdef0123456789"


def scsi(m, *args: str, initiator: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["simfs", "scsi", m.root, "rd_mcp_0/r0"]
    if initiator:
        cmd += ["--initiator", initiator]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


@pytest.fixture
def rd(mnt):
    t = mnt.core
    mnt.ok(f"mkdir -p {t}/rd_mcp_0/r0 && echo rd_pages=1024 > {t}/rd_mcp_0/r0/control && "
           f"echo {SERIAL} > {t}/rd_mcp_0/r0/wwn/vpd_unit_serial && "
           f"echo 1 > {t}/rd_mcp_0/r0/enable")
    return mnt


def test_inquiry_and_vpd(rd):
    r = scsi(rd, "inquiry")
    assert r.returncode == 0 and "Status: GOOD" in r.stdout
    assert "Vendor: 'LIO-ORG '" in r.stdout and "Product: 'RAMDISK-MCP     '" in r.stdout
    r = scsi(rd, "inquiry", "--vpd", "0x83")
    assert "NAA: 0x6001405abcdef0123456789000000000" in r.stdout
    assert f"T10 vendor ID: LIO-ORG RAMDISK-MCP:{SERIAL}" in r.stdout


def test_write_read_and_statistics(rd, tmp_path):
    data = bytes(range(256)) * 4
    (tmp_path / "in").write_bytes(data)
    assert scsi(rd, "write", "5", "--in", str(tmp_path / "in")).returncode == 0
    assert scsi(rd, "read", "5", "3", "--out", str(tmp_path / "out")).returncode == 0
    assert (tmp_path / "out").read_bytes() == data + bytes(512)
    stats = "target/core/rd_mcp_0/r0/statistics/scsi_lu"
    assert int(rd.read(f"{stats}/num_cmds")) >= 3


def test_bad_lba_is_a_check_condition(rd):
    r = scsi(rd, "read", "0xffffff", "1")
    assert r.returncode == 3
    assert "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (5/21h/00h)" in r.stdout


def test_persistent_reservation_shows_in_configfs(rd):
    pr = "target/core/rd_mcp_0/r0/pr"
    a, b = "iqn.1994-05.com.example:a", "iqn.1994-05.com.example:b"
    assert scsi(rd, "persist", "--register", "--sa-key", "0xa", initiator=a).returncode == 0
    assert scsi(rd, "persist", "--register", "--sa-key", "0xb", initiator=b).returncode == 0
    r = scsi(rd, "persist", "--reserve", "--key", "0xa", "--type", "1", initiator=a)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0x00000002" in rd.read(f"{pr}/res_pr_generation")
    assert a in rd.read(f"{pr}/res_holder")
    r = scsi(rd, "write", "0", "--data", "00" * 512, initiator=b)
    assert "RESERVATION CONFLICT" in r.stdout and r.returncode == 3
    r = scsi(rd, "persist", "--read-reservation", initiator=b)
    assert "Reservation: key 0xa  scope 0  type 1 (Write Exclusive)" in r.stdout


def test_unknown_device_and_no_mount(rd, tmp_path):
    r = subprocess.run(["simfs", "scsi", rd.root, "rd_mcp_0/nope", "tur"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "no device core/rd_mcp_0/nope" in r.stderr
    r = subprocess.run(["simfs", "scsi", str(tmp_path), "rd_mcp_0/r0", "tur"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"{tmp_path} is not mounted" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_usage_errors_not_tracebacks(rd):
    """Bad hex, bad numbers and bad state names are usage errors (exit 2), and the
    nexus options may follow the command's name."""
    for args, want in (
            (["write", "0", "--data", "00...00"], "'.' is not a hex digit"),
            (["write", "0", "--data", "0"], "an odd number of hex digits"),
            (["raw", "zz"], "'z' is not a hex digit"),
            (["read", "x1"], "'x1' is not a number"),
            (["stpg", "--group", "0", "--state", "sleepy"], "unknown state 'sleepy'")):
        r = subprocess.run(["simfs", "scsi", rd.root, "rd_mcp_0/r0", *args],
                           capture_output=True, text=True)
        assert r.returncode == 2 and want in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = subprocess.run(["simfs", "scsi", rd.root, "rd_mcp_0/r0", "tur", "-I",
                        "iqn.1994-05.com.example:late"], capture_output=True, text=True)
    assert r.returncode in (0, 3) and r.stdout.startswith("Status:"), r.stderr


def test_stpg_state_names(rd):
    r = subprocess.run(["simfs", "scsi", rd.root, "rd_mcp_0/r0", "stpg", "--group", "0",
                        "--state", "standby"], capture_output=True, text=True)
    assert r.stdout.startswith("Status: GOOD"), r.stdout + r.stderr
    assert open(f"{rd.core}/rd_mcp_0/r0/alua/default_tg_pt_gp/alua_access_state").read() == "2\n"


def test_an_initiator_with_an_acl_comes_in_through_its_mapping(rd, tmp_path):
    """-I names an initiator whose node ACL maps the LUN: the command arrives as it would
    over the fabric, at the ACL's mapped LUN (what a PR registration and the APTPL file
    record) and with its read-only flag."""
    t, iqn = rd.core, "iqn.2026-12.org.simfs:cli"
    tpg = f"{rd.root}/target/iscsi/{iqn}/tpgt_1"
    ini = "iqn.1994-05.com.example:ro"
    dbroot = Path(rd.read("target/dbroot").strip())
    (dbroot / "pr").mkdir(parents=True, exist_ok=True)
    rd.ok(f"mkdir -p {tpg}/lun/lun_2 "
          f"{tpg}/acls/{ini}/lun_5 && ln -s {t}/rd_mcp_0/r0 {tpg}/lun/lun_2/l && "
          f"ln -s {tpg}/lun/lun_2 {tpg}/acls/{ini}/lun_5/m")
    port = f"iSCSI/{iqn}/tpgt_1/lun_2"
    r = scsi(rd, "--port", port, "persist", "--register", "--sa-key", "0x5", "--aptpl",
             initiator=ini)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mapped_lun=5\n" in (dbroot / "pr" / f"aptpl_{SERIAL}").read_text()
    rd.ok(f"echo 1 > {tpg}/acls/{ini}/lun_5/write_protect")
    (tmp_path / "in").write_bytes(bytes(512))
    r = scsi(rd, "--port", port, "write", "0", "--in", str(tmp_path / "in"), initiator=ini)
    assert r.returncode == 3 and "DATA PROTECT" in r.stdout, r.stdout
    # an initiator without an ACL there still gets the LUN as the port numbers it
    r = scsi(rd, "--port", port, "write", "0", "--in", str(tmp_path / "in"))
    assert r.returncode == 0, r.stdout
