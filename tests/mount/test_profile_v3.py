"""The v3.0 profile outside the seed's script: its tree, its version text, and ``fd``."""
from __future__ import annotations

import os

import pytest

from helpers import sh, shquote


def test_version_and_hba_info(mnt_v3):
    u = os.uname()
    assert mnt_v3.read("target/version") == (
        f"Target Engine Core ConfigFS Infrastructure v1.0.0 on Linux/{u.machine} on "
        f"{u.release}\n")
    assert sorted(os.listdir(f"{mnt_v3.root}/target")) == ["core", "version"]
    mnt_v3.ok(f"mkdir {mnt_v3.core}/rd_dr_0")
    # v3.0 counts HBAs from 0 (the seed prints CORE_HBA[0] for its first HBA)
    # ... and hba_info prints the plugin's version, v1.0.0
    assert mnt_v3.read("target/core/rd_dr_0/hba_info") == \
        "HBA Index: 0 plugin: rd_dr version: v1.0.0\n"
    # the module-load lines: configfs is initialized before any plugin registers
    log = [ln.split("] ", 1)[1] for ln in mnt_v3.dmesg().splitlines()[:3]]
    assert log[0].startswith("TARGET_CORE[0]: Loading Generic Kernel Storage Engine: v3.0.0 ")
    assert log[1].startswith("TARGET_CORE[0]: Initialized ConfigFS Fabric Infrastructure: "
                             "v1.0.0 ")
    assert log[2] == "SE_PC[0] - Registered Plugin Class: TRANSPORT"


def test_device_tree_shape(mnt_v3):
    mnt_v3.ok(f"mkdir -p {mnt_v3.core}/rd_mcp_0/r0")
    d = f"{mnt_v3.core}/rd_mcp_0/r0"
    assert sorted(os.listdir(d)) == ["alua_lu_gp", "attrib", "control", "enable", "fd", "info",
                                     "pr", "wwn"]
    assert sorted(os.listdir(f"{d}/attrib")) == sorted([
        "block_size", "emulate_tas", "emulate_ua_intlck_ctrl", "hw_block_size",
        "hw_max_sectors", "hw_queue_depth", "max_sectors", "queue_depth", "task_timeout"])
    # enable and fd are write-only in v3.0
    assert "Permission denied" in sh(f"cat {d}/enable").stderr
    assert "Permission denied" in sh(f"cat {d}/fd").stderr


@pytest.fixture
def v3_iblock(mnt_v3):
    mnt_v3.ok(f"mkdir -p {mnt_v3.core}/iblock_0/lvm_test0")
    return "target/core/iblock_0/lvm_test0"


def _fd_write(mnt, dev: str, num: str, open_what: str | None) -> "sh":
    path = shquote(f"{mnt.root}/{dev}/fd")
    prefix = f"exec 3<>{shquote(open_what)}; " if open_what else ""
    return sh(f"{prefix}echo {num} > {path}")


@pytest.mark.parametrize("num,open_what,why", [
    ("abc", None, "tcm_strict_strtol() failed for fd"),
    ("2", None, "IBLOCK: Illegal value of file descriptor: 2"),
    ("8", None, "IBLOCK: Illegal value of file descriptor: 8"),
    ("5", None, "IBLOCK: Unable to fget() fd: 5"),
])
def test_fd_refusals(mnt_v3, v3_iblock, num, open_what, why):
    mark = mnt_v3.log_mark()
    r = _fd_write(mnt_v3, v3_iblock, num, open_what)
    assert "Invalid argument" in r.stderr
    assert why in mnt_v3.log_since(mark)
    info = mnt_v3.read(f"{v3_iblock}/info")
    assert "Status:" not in info  # still not activated


def test_fd_on_a_regular_file_is_refused(mnt_v3, v3_iblock, tmp_path):
    img = tmp_path / "plain.img"
    img.write_bytes(b"\0" * 4096)
    mark = mnt_v3.log_mark()
    r = _fd_write(mnt_v3, v3_iblock, "3", str(img))
    assert "Invalid argument" in r.stderr
    assert "IBLOCK" in mnt_v3.log_since(mark)
    assert "Status:" not in mnt_v3.read(f"{v3_iblock}/info")


def test_fd_claims_a_loop_device_then_eexist(mnt_v3, v3_iblock, loopdev):
    mark = mnt_v3.log_mark()
    r = _fd_write(mnt_v3, v3_iblock, "3", loopdev)
    assert r.returncode == 0, r.stderr
    log = mnt_v3.log_since(mark)
    assert "Target_Core_ConfigFS: Registered iblock se_dev->se_dev_ptr:" in log
    info = mnt_v3.read(f"{v3_iblock}/info")
    assert info.startswith("Status: DEACTIVATED  Execute/Left/Max Queue Depth: 0/32/32  ")
    assert f"iBlock device: {os.path.basename(loopdev)}" in info
    mark = mnt_v3.log_mark()
    r = _fd_write(mnt_v3, v3_iblock, "3", loopdev)
    assert "File exists" in r.stderr
    assert "se_dev->se_dev_ptr already set, ignoring fd request" in mnt_v3.log_since(mark)
    # rmdir releases the claim: the loop device can be opened exclusively again
    mnt_v3.ok(f"rmdir {mnt_v3.root}/{v3_iblock}")
    fd = os.open(loopdev, os.O_RDWR | os.O_EXCL)
    os.close(fd)


@pytest.mark.parametrize("plugin", ["fileio", "rd_mcp"])
def test_fd_unsupported_by_plugin(mnt_v3, plugin, loopdev):
    mnt_v3.ok(f"mkdir -p {mnt_v3.core}/{plugin}_0/d")
    mark = mnt_v3.log_mark()
    r = _fd_write(mnt_v3, f"target/core/{plugin}_0/d", "3", loopdev)
    assert "Invalid argument" in r.stderr
    assert (f"se_subsystem_api_t->create_virtdevice_from_fd() NULL for: {plugin}"
            in mnt_v3.log_since(mark))


def test_iblock_major_minor_control(mnt_v3, v3_iblock, loopdev):
    st = os.stat(loopdev)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    mark = mnt_v3.log_mark()
    mnt_v3.ok(f"echo iblock_major={major},iblock_minor={minor} > {mnt_v3.root}/{v3_iblock}/control")
    assert mnt_v3.read(f"{v3_iblock}/info") == f"\n        Major: {major} Minor: {minor}\n"
    mnt_v3.ok(f"echo 1 > {mnt_v3.root}/{v3_iblock}/enable")
    log = mnt_v3.log_since(mark)
    assert f"IBLOCK: Referencing Major: {major}" in log
    assert f"IBLOCK: Referencing Minor: {minor}" in log
    assert f"Major:Minor - {major}:{minor}" in log
    assert f"CORE_iBLOCK[0] - Activating Device with TCQ: 0 at Major: {major} Minor {minor}" in log
    info = mnt_v3.read(f"{v3_iblock}/info")
    assert f"iBlock device: {os.path.basename(loopdev)}\n" in info
    assert f"Major: {major} Minor: {minor}  CLAIMED: IBLOCK\n" in info


def test_iblock_enable_without_major_minor(mnt_v3, v3_iblock):
    mark = mnt_v3.log_mark()
    r = sh(f"echo 1 > {mnt_v3.root}/{v3_iblock}/enable")
    assert "Invalid argument" in r.stderr
    assert "Missing iblock_major= and iblock_minor= parameters" in mnt_v3.log_since(mark)
    assert mnt_v3.read(f"{v3_iblock}/info") == "\n        Major: 0 Minor: 0\n"
