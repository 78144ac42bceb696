"""Data and APTPL reservations outlive the mount, as they outlive a reboot of a real target."""
from __future__ import annotations

import subprocess

from helpers import mount, umount, sh

INIT = "iqn.1994-05.com.example:host1"


def scsi(root: str, dev: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["simfs", "scsi", root, dev, "--initiator", INIT, *args],
                          capture_output=True, text=True, timeout=60)


def test_fileio_and_iblock_hold_data_after_unmount(tmp_path, loopdev):
    m = mount("modern")
    img = tmp_path / "f.img"
    try:
        m.ok(f"mkdir -p {m.core}/fileio_0/f && echo fd_dev_name={img},fd_dev_size=1048576 > "
             f"{m.core}/fileio_0/f/control && echo 1 > {m.core}/fileio_0/f/enable")
        m.ok(f"mkdir -p {m.core}/iblock_0/b && echo udev_path={loopdev} > "
             f"{m.core}/iblock_0/b/control && echo 1 > {m.core}/iblock_0/b/enable")
        for dev in ("fileio_0/f", "iblock_0/b"):
            pattern = (dev.encode() * 512)[:1024].hex()
            r = scsi(m.root, dev, "write", "3", "--data", pattern)
            assert r.returncode == 0, r.stdout + r.stderr
            r = scsi(m.root, dev, "read", "3", "2")
            assert r.stdout.split("\n")[1] == pattern  # READ after WRITE
    finally:
        umount(m)
    assert img.read_bytes()[1536:2560] == (b"fileio_0/f" * 512)[:1024]
    with open(loopdev, "rb") as f:
        f.seek(1536)
        assert f.read(1024) == (b"iblock_0/b" * 512)[:1024]


def test_aptpl_reservation_survives_remount(tmp_path):
    state = tmp_path / "state"
    m = mount("modern", ["--state-dir", str(state)])
    serial = "5eed0000aa55"
    setup = (f"mkdir -p {{c}}/rd_mcp_0/r && echo rd_pages=256 > {{c}}/rd_mcp_0/r/control && "
             f"echo {serial} > {{c}}/rd_mcp_0/r/wwn/vpd_unit_serial && "
             f"echo 1 > {{c}}/rd_mcp_0/r/enable")
    try:
        m.ok(setup.format(c=m.core))
        assert scsi(m.root, "rd_mcp_0/r", "persist", "--register", "--sa-key", "0x77",
                    "--aptpl").returncode == 0
        r = scsi(m.root, "rd_mcp_0/r", "persist", "--reserve", "--key", "0x77", "--type", "3")
        assert r.returncode == 0, r.stdout
        assert m.read("target/core/rd_mcp_0/r/pr/res_aptpl_active").startswith("APTPL Bit Status: Activated")
    finally:
        umount(m)
    aptpl = state / "var/target/pr" / f"aptpl_{serial}"
    text = aptpl.read_bytes()
    assert text.endswith(b"\0")
    body = text.rstrip(b"\0").decode()
    assert "PR_REG_START: 0\n" in body and f"initiator_node={INIT}\n" in body
    assert "sa_res_key=119\n" in body and "res_holder=1\n" in body and "res_type=03\n" in body

    m = mount("modern", ["--state-dir", str(state)])
    try:
        m.ok(setup.format(c=m.core))
        pr = f"{m.root}/target/core/rd_mcp_0/r/pr"
        assert "No SPC-3 Reservation holder" in m.read("target/core/rd_mcp_0/r/pr/res_holder")
        # what a boot script does: feed each registration back through res_aptpl_metadata
        fields = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
        meta = ",".join(f"{k}={fields[k]}" for k in (
            "initiator_node", "sa_res_key", "res_holder", "res_type", "res_scope",
            "mapped_lun", "target_node", "tpgt", "target_lun"))
        r = sh(f"printf %s '{meta}' > {pr}/res_aptpl_metadata")
        assert r.returncode == 0, r.stderr + m.dmesg()[-2000:]
        # the registration comes alive when the initiator arrives through that port
        scsi(m.root, "rd_mcp_0/r", "tur")
        r = scsi(m.root, "rd_mcp_0/r", "persist", "--read-reservation")
        assert "Reservation: key 0x77  scope 0  type 3 (Exclusive Access)" in r.stdout, \
            r.stdout + m.dmesg()[-3000:]
    finally:
        umount(m)


def test_aptpl_registration_comes_back_at_the_first_command_whatever_it_does(tmp_path):
    """The kernel re-attaches an APTPL pre-registration when its initiator's nexus appears
    (core_tpg_add_node_to_devs -> core_scsi3_check_aptpl_registration), not when a command
    passes the reservation checks: `simfs scsi`'s nexus appears with its first command, so
    even a command the device refuses brings it back — no iSCSI login needed."""
    state = tmp_path / "state"
    serial = "5eed0000bb01"
    setup = (f"mkdir -p {{c}}/rd_mcp_0/r && echo rd_pages=64 > {{c}}/rd_mcp_0/r/control && "
             f"echo {serial} > {{c}}/rd_mcp_0/r/wwn/vpd_unit_serial && "
             f"echo 1 > {{c}}/rd_mcp_0/r/enable")
    m = mount("modern", ["--state-dir", str(state)])
    try:
        m.ok(setup.format(c=m.core))
        r = scsi(m.root, "rd_mcp_0/r", "persist", "--register", "--sa-key", "0x55", "--aptpl")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        umount(m)
    body = (state / "var/target/pr" / f"aptpl_{serial}").read_bytes().rstrip(b"\0").decode()
    fields = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
    meta = ",".join(f"{k}={fields[k]}" for k in (
        "initiator_node", "sa_res_key", "res_holder", "mapped_lun", "target_node", "tpgt",
        "target_lun"))
    m = mount("modern", ["--state-dir", str(state)])
    try:
        m.ok(setup.format(c=m.core))
        m.ok(f"printf %s '{meta}' > {m.core}/rd_mcp_0/r/pr/res_aptpl_metadata")

        def keys_seen_by_another_initiator() -> str:
            return subprocess.run(["simfs", "scsi", m.root, "rd_mcp_0/r", "--initiator",
                                   "iqn.1994-05.com.example:other", "persist", "--read-keys"],
                                  capture_output=True, text=True, timeout=60).stdout

        assert "Registered keys: 0" in keys_seen_by_another_initiator()  # not yet: no nexus
        r = scsi(m.root, "rd_mcp_0/r", "raw", "ff00000000000000")  # refused: bad opcode
        assert "INVALID COMMAND OPERATION CODE" in r.stdout
        assert "Registered keys: 1\n  0x55" in keys_seen_by_another_initiator()
    finally:
        umount(m)
