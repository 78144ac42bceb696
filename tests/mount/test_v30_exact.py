"""``--kernel v3.0`` against its own 2009 source: ``info``, attrib defaults and stores, VPD.

Every check goes through a real mount with shell commands; refusals are checked for errno,
the engine's log line and an unchanged file.
"""
from __future__ import annotations

import errno
import itertools
import os
import re

import pytest

from helpers import mount, sh, shquote, umount
from test_fabric_tree import logged, refused

from simfs.core import kernels

_n = itertools.count()
STATUS = ("Status: DEACTIVATED  Execute/Left/Max Queue Depth: {d}/{d2}/{d2}  SectorSize: {bs}  "
          "MaxSectors: {ms}\n        ")


@pytest.fixture(scope="module")
def m3():
    """One v3.0 mount shared by this module (each test makes its own devices)."""
    m = mount("v3.0")
    yield m
    umount(m)


def rel(m, path: str) -> str:
    return path[len(m.root) + 1:]


def rd(m, plugin: str = "rd_mcp", pages: int = 8, enable: bool = True, hba: int = 0) -> str:
    d = f"{m.core}/{plugin}_{hba}/r{next(_n)}"
    m.ok(f"mkdir -p {d}")
    if enable:
        m.ok(f"echo rd_pages={pages} > {d}/control && echo 1 > {d}/enable")
    return d


def status(d2=32, bs=512, ms=1024) -> str:
    return STATUS.format(d=0, d2=d2, bs=bs, ms=ms)


# -- info ---------------------------------------------------------------------------------------
def test_rd_info_before_and_after_enable(m3):
    d = rd(m3, enable=False)
    # before enable there is no se_device: the plugin's lines alone, no nullio field
    assert m3.read(rel(m3, d) + "/info") == (
        "LIO RamDisk ID: 0  RamDisk Makeup: rd_mcp\n"
        "        PAGES/PAGE_SIZE: 0*4096  SG_table_count: 0\n")
    m3.ok(f"echo rd_pages=8 > {d}/control && echo 1 > {d}/enable")
    info = m3.read(rel(m3, d) + "/info")
    assert info == status() + ("LIO RamDisk ID: 0  RamDisk Makeup: rd_mcp\n"
                               "        PAGES/PAGE_SIZE: 8*4096  SG_table_count: 1\n")


def test_rd_dr_info_and_enable_log(m3):
    d = rd(m3, "rd_dr", enable=False)
    m3.ok(f"echo rd_pages=8 > {d}/control")
    lines = logged(m3, f"echo 1 > {d}/enable")
    assert any(re.fullmatch(r"CORE_RD\[\d+\] - Added LIO DIRECT Ramdisk Device ID: 0 of 8 "
                            r"pages in 1 tables, 32768 total bytes", ln) for ln in lines), lines
    assert not any("MEMCPY" in ln for ln in lines)
    info = m3.read(rel(m3, d) + "/info")
    assert info == status() + ("LIO RamDisk ID: 0  RamDisk Makeup: rd_direct\n"
                               "        PAGES/PAGE_SIZE: 8*4096  SG_table_count: 1\n")


def test_fileio_info_on_a_file(m3, tmp_path):
    d = f"{m3.core}/fileio_0/f{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    img = tmp_path / "f.img"
    # "File: ... Size: N  " then nothing for a file (no Mode: that came later)
    assert m3.read(rel(m3, d) + "/info") == "LIO FILEIO ID: 0        File:   Size: 0  \n"
    m3.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {d}/control && echo 1 > {d}/enable")
    assert m3.read(rel(m3, d) + "/info") == status() + (
        f"LIO FILEIO ID: 0        File: {img}  Size: 1048576  \n")


def test_fileio_info_on_a_block_device_says_claimed(m3, loopdev):
    d = f"{m3.core}/fileio_9/b{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    m3.ok(f"echo fd_dev_name={loopdev} > {d}/control && echo 1 > {d}/enable")
    info = m3.read(rel(m3, d) + "/info")
    size = (32 << 20) - 512  # v3.0: (blocks - 1) * hardsect_size
    assert info == status() + f"LIO FILEIO ID: 0        File: {loopdev}  Size: {size}  " \
                              "CLAIMED: FILEIO\n"


def test_iblock_defaults_from_fd(m3, loopdev):
    d = f"{m3.core}/iblock_0/i{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    m3.ok(f"exec 3<>{shquote(loopdev)}; echo 3 > {shquote(d + '/fd')}")
    r = rel(m3, d)
    assert m3.read(r + "/attrib/queue_depth") == "32\n"
    assert m3.read(r + "/attrib/hw_queue_depth") == "32\n"
    hw = int(m3.read(r + "/attrib/hw_max_sectors"))
    assert 0 < hw <= 128  # IBLOCK_MAX_SECTORS caps the queue's limit on a 2.6.29 kernel
    assert m3.read(r + "/info").startswith(status(ms=hw) + "iBlock device: ")


# -- attrib ---------------------------------------------------------------------------------------
def test_attrib_files_in_kernel_order(m3):
    d = rd(m3)
    # readdir is newest first: the table reversed
    listed = [e for e in reversed(os.listdir(f"{d}/attrib"))]
    assert listed == ["emulate_ua_intlck_ctrl", "emulate_tas", "hw_block_size", "block_size",
                      "hw_max_sectors", "max_sectors", "hw_queue_depth", "queue_depth",
                      "task_timeout"]
    assert tuple(listed) == kernels.get("v3.0").files("dev_attrib")


@pytest.mark.parametrize("plugin", ["rd_mcp", "rd_dr", "fileio"])
def test_queue_depth_defaults_to_32(m3, plugin, tmp_path):
    if plugin == "fileio":
        d = f"{m3.core}/fileio_1/q{next(_n)}"
        m3.ok(f"mkdir -p {d} && echo fd_dev_name={tmp_path / 'q.img'},fd_dev_size=65536 > "
              f"{d}/control && echo 1 > {d}/enable")
    else:
        d = rd(m3, plugin)
    r = rel(m3, d)
    got = {f: m3.read(f"{r}/attrib/{f}") for f in ("queue_depth", "hw_queue_depth",
                                                    "max_sectors", "hw_max_sectors")}
    assert got == {"queue_depth": "32\n", "hw_queue_depth": "32\n", "max_sectors": "1024\n",
                   "hw_max_sectors": "1024\n"}


def test_queue_depth_up_to_128(m3):
    d = rd(m3)
    r = rel(m3, d)
    lines = logged(m3, f"echo 128 > {d}/attrib/queue_depth")
    assert any(re.fullmatch(r"dev\[[0-9a-f]{8}\]: SE Device TCQ Depth changed to: 128", ln)
               for ln in lines), lines
    assert m3.read(r + "/attrib/queue_depth") == "128\n"
    assert m3.read(r + "/attrib/hw_queue_depth") == "32\n"
    assert m3.read(r + "/info").startswith(status(d2=128))
    refused(m3, f"echo 129 > {d}/attrib/queue_depth", errno.EINVAL,
            r"dev\[[0-9a-f]{8}\]: Passed queue_depth: 129 exceeds LIO-Core/SE_Device MAX TCQ: "
            r"128")
    refused(m3, f"echo 0 > {d}/attrib/queue_depth", errno.EINVAL,
            r"dev\[[0-9a-f]{8}\]: Illegal ZERO value for queue_depth")
    assert m3.read(r + "/attrib/queue_depth") == "128\n"


@pytest.mark.parametrize("value,log", [
    ("2048", r"dev\[[0-9a-f]{8}\]: Passed max_sectors: 2048 greater than LIO-Core/SE_Device "
             r"max_sectors: 1024, use force=1 to override\."),
    ("1025", r"dev\[[0-9a-f]{8}\]: Passed max_sectors: 1025 greater than LIO-Core/SE_Device "
             r"max_sectors: 1024, use force=1 to override\."),
    ("15", r"dev\[[0-9a-f]{8}\]: Passed max_sectors: 15 less than DA_STATUS_MAX_SECTORS_MIN: "
           r"16"),
    ("0", r"dev\[[0-9a-f]{8}\]: Illegal ZERO value for max_sectors"),
    ("x", r"tcm_strict_strtoul\(\) failed with ret: -22"),
])
def test_max_sectors_refused(m3, value, log):
    d = rd(m3)
    refused(m3, f"echo {value} > {d}/attrib/max_sectors", errno.EINVAL, log)
    assert m3.read(rel(m3, d) + "/attrib/max_sectors") == "1024\n"


def test_max_sectors_lowered(m3):
    d = rd(m3)
    lines = logged(m3, f"echo 16 > {d}/attrib/max_sectors")
    assert any(re.fullmatch(r"dev\[[0-9a-f]{8}\]: SE Device max_sectors changed to 16", ln)
               for ln in lines), lines
    assert m3.read(rel(m3, d) + "/info").startswith(status(ms=16))


@pytest.mark.parametrize("attr,value,log,before", [
    ("emulate_tas", "2", r"Illegal value 2", "1\n"),
    ("emulate_tas", "-1", r"tcm_strict_strtoul\(\) failed with ret: -22", "1\n"),
    ("emulate_ua_intlck_ctrl", "3", r"Illegal value 3", "0\n"),
    ("emulate_ua_intlck_ctrl", "4294967295", r"Illegal value -1", "0\n"),
    ("task_timeout", "601", r"dev\[[0-9a-f]{8}\]: Passed task_timeout: 601 larger then "
                            r"DA_TASK_TIMEOUT_MAX", "0\n"),
    ("block_size", "4000", r"dev\[[0-9a-f]{8}\]: Illegal value for block_device: 4000 for SE "
                           r"device, must be 512, 1024, 2048 or 4096", "512\n"),
])
def test_attrib_refusals(m3, attr, value, log, before):
    d = rd(m3)
    refused(m3, f"echo {value} > {d}/attrib/{attr}", errno.EINVAL, log)
    assert m3.read(rel(m3, d) + f"/attrib/{attr}") == before


@pytest.mark.parametrize("attr,value,log", [
    ("emulate_tas", "0", r"dev\[[0-9a-f]{8}\]: SE Device TASK_ABORTED status bit: Disabled"),
    ("emulate_ua_intlck_ctrl", "2", r"dev\[[0-9a-f]{8}\]: SE Device UA_INTRLCK_CTRL flag: 2"),
    ("task_timeout", "600", r"dev\[[0-9a-f]{8}\]: Set SE Device task_timeout: 600"),
    ("block_size", "4096", r"dev\[[0-9a-f]{8}\]: SE Device block_size changed to 4096"),
])
def test_attrib_accepted(m3, attr, value, log):
    d = rd(m3)
    lines = logged(m3, f"echo {value} > {d}/attrib/{attr}")
    assert any(re.fullmatch(log, ln) for ln in lines), lines
    assert m3.read(rel(m3, d) + f"/attrib/{attr}") == f"{value}\n"


def test_read_only_attribs(m3):
    d = rd(m3)
    for f in ("hw_block_size", "hw_max_sectors", "hw_queue_depth"):
        r = sh(f"echo 1 > {d}/attrib/{f}")
        assert r.returncode != 0 and os.strerror(errno.EACCES) in r.stderr, (f, r.stderr)


# -- wwn ------------------------------------------------------------------------------------------
def test_vpd_assoc_lists_the_emulated_designators(m3):
    d = f"{m3.core}/rd_mcp_3/v{next(_n)}"
    m3.ok(f"mkdir -p {d} && echo a97e4ce21c0711de829b000c2943d57b > {d}/wwn/vpd_unit_serial")
    m3.ok(f"echo rd_pages=8 > {d}/control && echo 1 > {d}/enable")
    r = rel(m3, d)
    assert m3.read(r + "/wwn/vpd_unit_serial") == \
        "T10 VPD Unit Serial Number: a97e4ce21c0711de829b000c2943d57b\n"
    # the same designators the activation log printed (the seed's iblock lines)
    assert m3.read(r + "/wwn/vpd_assoc_logical_unit") == (
        "T10 VPD Identifier Association: addressed logical unit\n"
        "T10 VPD Identifier Type: NAA\n"
        "T10 VPD Binary Device Identifier: 36001405a97e4ce21c0711de829b000c2\n"
        "T10 VPD Identifier Association: addressed logical unit\n"
        "T10 VPD Identifier Type: T10 Vendor ID based\n"
        "T10 VPD ASCII Device Identifier: LIO-ORG\n")
    for f in ("vpd_assoc_target_port", "vpd_assoc_scsi_target_device",
              "vpd_protocol_identifier"):
        assert m3.read(f"{r}/wwn/{f}") == "", f
    refused(m3, f"echo x > {d}/wwn/vpd_assoc_logical_unit", errno.ENOSYS, None)


def test_vpd_assoc_without_a_serial(m3):
    d = rd(m3)
    assert m3.read(rel(m3, d) + "/wwn/vpd_assoc_logical_unit") == (
        "T10 VPD Identifier Association: addressed logical unit\n"
        "T10 VPD Identifier Type: T10 Vendor ID based\n"
        "T10 VPD ASCII Device Identifier: LIO-ORG\n")


def test_vpd_files_need_the_device(m3):
    d = rd(m3, enable=False)
    for f in ("vpd_protocol_identifier", "vpd_assoc_target_port"):
        r = sh(f"cat {d}/wwn/{f}")
        assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr, (f, r.stderr)


# -- control --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,log", [
    ("fd_buffered_io=1", None),  # v3.0 knew fd_dev_name= and fd_dev_size= only
    ("fd_dev_size=abc", r"strict_strtoull\(\) failed for fd_dev_size="),
])
def test_fileio_control_refusals(m3, text, log):
    d = f"{m3.core}/fileio_2/c{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    refused(m3, f"echo {text} > {d}/control", errno.EINVAL, log)
    assert m3.read(rel(m3, d) + "/info") == "LIO FILEIO ID: 0        File:   Size: 0  \n"


def test_device_files_in_kernel_order(m3):
    d = rd(m3, enable=False)
    listed = [e for e in reversed(os.listdir(d)) if os.path.isfile(os.path.join(d, e))]
    assert listed == ["info", "control", "fd", "enable", "alua_lu_gp"]
    assert tuple(listed) == kernels.get("v3.0").files("dev")


def test_pscsi_info_from_fd(m3, loopdev):
    d = f"{m3.core}/pscsi_0/p{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    m3.ok(f"exec 3<>{shquote(loopdev)}; echo 3 > {shquote(d + '/fd')}")
    info = m3.read(rel(m3, d) + "/info")
    head, bus, ident = info.split("\n", 2)[0], info.split("\n")[1], info.split("\n")[2]
    assert head.startswith("Status: DEACTIVATED  Execute/Left/Max Queue Depth: 0/32/32  ")
    assert re.fullmatch(r"        SCSI Device Bus Location: Channel ID: 0 Target ID: 0 LUN: 0 "
                        r"Host ID: \d+", bus), bus
    # fixed-width INQUIRY fields, then who holds the disk
    name = os.path.basename(loopdev).upper()
    assert ident == f"        Vendor: SIMFS    Model: {name:<16} Rev: 1.0    CLAIMED: PSCSI"
    assert info.endswith("CLAIMED: PSCSI\n")


@pytest.mark.parametrize("text,log", [
    ("rd_pages=abc", r"tcm_strict_strtoul\(\) failed for rd_pages="),
    ("rd_nullio=1", None),  # v3.0 had no nullio
    ("foo=1", None),
])
def test_rd_control_refusals(m3, text, log):
    d = rd(m3, enable=False)
    refused(m3, f"echo {text} > {d}/control", errno.EINVAL, log)
    assert m3.read(rel(m3, d) + "/info").endswith("PAGES/PAGE_SIZE: 0*4096  SG_table_count: 0\n")


def test_enable_failure_is_einval(m3, tmp_path):
    d = f"{m3.core}/fileio_4/e{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    missing = tmp_path / "no-such-dir" / "f.img"
    m3.ok(f"echo fd_dev_name={missing},fd_dev_size=4096 > {d}/control")
    # the open fails with ENOENT; v3.0 answers EINVAL and logs why
    refused(m3, f"echo 1 > {d}/enable", errno.EINVAL, re.escape(f"filp_open({missing}) failed"))
    assert m3.read(rel(m3, d) + "/info") == \
        f"LIO FILEIO ID: 0        File: {missing}  Size: 4096  \n"
    r = sh(f"cat {d}/attrib/queue_depth")
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr  # still no device


def test_rmdir_logs_deactivation_and_release(m3):
    d = rd(m3, hba=7)  # the first device of its HBA: ramdisk device id 0
    lines = logged(m3, f"rmdir {d}")
    assert re.fullmatch(r"Calling se_free_virtual_device\(\) for se_dev_ptr: [0-9a-f]{8}",
                        lines[0]), lines
    assert re.fullmatch(r"CORE_RD\[\d+\] - Deactivating Device with TCQ: 0 at Ramdisk Device "
                        r"ID: 0", lines[1]), lines
    assert re.fullmatch(r"CORE_RD\[\d+\] - Released device space for Ramdisk Device ID: 0, "
                        r"pages 8 in 1 tables total bytes 32768", lines[2]), lines
    assert re.fullmatch(r"Deallocating se_subsystem_dev_t: [0-9a-f]{8}", lines[3]), lines


def test_rmdir_releases_a_claimed_block_device(m3, loopdev):
    d = f"{m3.core}/iblock_5/i{next(_n)}"
    m3.ok(f"mkdir -p {d}")
    m3.ok(f"exec 3<>{shquote(loopdev)}; echo 3 > {shquote(d + '/fd')}")
    st = os.stat(loopdev)
    mm = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    lines = logged(m3, f"rmdir {d}")
    assert lines[1] == f"CORE_iBLOCK[5] - Deactivating Device with TCQ: 0 at Major: " \
                       f"{mm.replace(':', ' Minor ')}", lines
    assert lines[2] == f"IBLOCK: Releasing Major:Minor - {mm}", lines
    # the block device is free again: another claim succeeds
    fd = os.open(loopdev, os.O_RDWR | os.O_EXCL)
    os.close(fd)
