"""Backends through a real mount: control tokens, enable, info, and the storage the daemon opens.

Kernel references: target_core_{iblock,file,rd,pscsi,user}.c (*_set_configfs_dev_params,
*_configure_device, *_show_configfs_dev_params, *_destroy_device) and
target_dev_enable_store / target_configure_device in target_core_configfs.c/device.c.
"""
from __future__ import annotations

import itertools
import os
import subprocess

import psutil
import pytest

from helpers import mount, umount, sh

O_DSYNC = os.O_DSYNC
_n = itertools.count(1)


@pytest.fixture(scope="module")
def m():
    mnt = mount("modern")
    yield mnt
    umount(mnt)


def fail(r, msg):
    assert r.returncode != 0, r
    assert msg in r.stderr, r.stderr


def daemon(mnt) -> psutil.Process:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "simfs.daemon" in cmd and mnt.state_dir in cmd:
            return p
    raise AssertionError("simfs daemon not found")


def open_fds(pid: int) -> dict[str, int]:
    """path -> fd for every descriptor the daemon holds."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[os.readlink(f"/proc/{pid}/fd/{fd}")] = int(fd)
        except OSError:
            pass
    return out


def fd_flags(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError


def new_dev(m, plugin: str, control: str | None = None) -> str:
    """mkdir core/<plugin>_<n>/dev; returns the device's path relative to the root."""
    rel = f"target/core/{plugin}_{next(_n)}/dev"
    m.ok(f"mkdir -p {m.root}/{rel}")
    if control is not None:
        m.ok(f"echo {control} > {m.root}/{rel}/control")
    return rel


def bad_control(m, rel, text, err, log):
    """A refused control write: errno, kernel log line, info unchanged."""
    before = m.read(f"{rel}/info")
    mark = m.log_mark()
    fail(sh(f"echo '{text}' > {m.root}/{rel}/control"), err)
    if log:
        assert log in m.log_since(mark)
    assert m.read(f"{rel}/info") == before


def bad_enable(m, rel, err, log, value="1"):
    mark = m.log_mark()
    fail(sh(f"echo '{value}' > {m.root}/{rel}/enable"), err)
    if log:
        assert log in m.log_since(mark)
    assert m.read(f"{rel}/enable") == "0\n"


# -- enable semantics (core) --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "10", "x1", "01", "enable=1"])
def test_enable_contains_1(m, value):
    rel = new_dev(m, "rd_mcp", "rd_pages=16")
    m.ok(f"echo '{value}' > {m.root}/{rel}/enable")
    assert m.read(f"{rel}/enable") == "1\n"
    mark = m.log_mark()
    fail(sh(f"echo 1 > {m.root}/{rel}/enable"), "File exists")
    assert "se_dev->se_dev_ptr already set for storage object" in m.log_since(mark)
    assert m.read(f"{rel}/enable") == "1\n"


@pytest.mark.parametrize("value", ["0", "yes", "", "2", "on"])
def test_enable_without_1_einval(m, value):
    rel = new_dev(m, "rd_mcp", "rd_pages=16")
    bad_enable(m, rel, "Invalid argument", 'For dev_enable ops, only valid value is "1"', value)


def test_enable_printf_without_newline(m):
    rel = new_dev(m, "rd_mcp", "rd_pages=16")
    m.ok(f"printf 1 > {m.root}/{rel}/enable")
    assert m.read(f"{rel}/enable") == "1\n"


# -- alias / udev_path ------------------------------------------------------------------------------
@pytest.mark.parametrize("attr", ["alias", "udev_path"])
def test_alias_udev_path(m, attr):
    rel = new_dev(m, "rd_mcp", "rd_pages=16")
    assert m.read(f"{rel}/{attr}") == ""
    m.ok(f"echo /dev/some/thing > {m.root}/{rel}/{attr}")
    assert m.read(f"{rel}/{attr}") == "/dev/some/thing\n"
    m.ok(f"printf 'x y' > {m.root}/{rel}/{attr}")
    assert m.read(f"{rel}/{attr}") == "x y\n"
    # snprintf() of the page returning 0 is the only "empty" refusal: a lone newline is a
    # valid (empty) value, a buffer starting with NUL is EINVAL (kernel wording: no log)
    fail(sh(f"echo {'a' * 512} > {m.root}/{rel}/{attr}"), "Invalid argument")  # > 511
    assert m.read(f"{rel}/{attr}") == "x y\n"
    # ... but snprintf() already overwrote the value (flag still set): it now reads empty
    fail(sh(f"printf '\\0x' > {m.root}/{rel}/{attr}"), "Invalid argument")
    assert m.read(f"{rel}/{attr}") == "\n"
    m.ok(f"printf '{'b' * 511}' > {m.root}/{rel}/{attr}")
    assert m.read(f"{rel}/{attr}") == "b" * 511 + "\n"
    m.ok(f"echo > {m.root}/{rel}/{attr}")
    assert m.read(f"{rel}/{attr}") == "\n"
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    m.ok(f"echo after > {m.root}/{rel}/{attr}")                          # no enable gating
    assert m.read(f"{rel}/{attr}") == "after\n"


# -- fileio -----------------------------------------------------------------------------------------
def test_fileio_info_before_and_after_enable(m, tmp_path):
    img = tmp_path / "f.img"
    rel = new_dev(m, "fileio", f"fd_dev_name={img},fd_dev_size=1048576,bogus=1")
    assert m.read(f"{rel}/info") == (
        "Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 0  HwMaxSectors: 0\n"
        f"        TCM FILEIO ID: 0        File: {img}  Size: 1048576  Mode: O_DSYNC Async: 0\n")
    assert not img.exists()
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert m.read(f"{rel}/info").startswith(
        "Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 16384\n")
    st = img.stat()
    assert st.st_size == 0 and st.st_blocks == 0 and (st.st_mode & 0o777) == 0o600
    pid = daemon(m).pid
    fd = open_fds(pid)[str(img)]
    flags = fd_flags(pid, fd)
    assert flags & O_DSYNC and flags & os.O_ACCMODE == os.O_RDWR
    assert m.read(f"{rel}/attrib/hw_block_size") == "512\n"
    assert m.read(f"{rel}/attrib/hw_queue_depth") == "128\n"
    assert m.read(f"{rel}/attrib/emulate_write_cache") == "0\n"
    # a second device on the same HBA gets fd_dev_id 1
    hba = rel.rsplit("/", 1)[0]
    m.ok(f"mkdir {m.root}/{hba}/dev2")
    m.ok(f"echo fd_dev_name={tmp_path}/g.img,fd_dev_size=4096 > {m.root}/{hba}/dev2/control")
    m.ok(f"echo 1 > {m.root}/{hba}/dev2/enable")
    assert "TCM FILEIO ID: 1 " in m.read(f"{hba}/dev2/info")


def test_fileio_existing_file_not_truncated(m, tmp_path):
    img = tmp_path / "keep.img"
    img.write_bytes(b"\xab" * 8192)
    rel = new_dev(m, "fileio", f"fd_dev_name={img},fd_dev_size=67108864")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert img.read_bytes() == b"\xab" * 8192


def test_fileio_buffered(m, tmp_path):
    img = tmp_path / "b.img"
    rel = new_dev(m, "fileio", f"fd_dev_name={img},fd_dev_size=1048576,fd_buffered_io=1")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert "Mode: Buffered-WCE Async: 0" in m.read(f"{rel}/info")
    assert m.read(f"{rel}/attrib/emulate_write_cache") == "1\n"
    pid = daemon(m).pid
    assert not fd_flags(pid, open_fds(pid)[str(img)]) & O_DSYNC


def test_fileio_async(m, tmp_path):
    rel = new_dev(m, "fileio", f"fd_dev_name={tmp_path}/a.img,fd_dev_size=4096,fd_async_io=1")
    assert "Async: 1" in m.read(f"{rel}/info")


@pytest.mark.parametrize("text,err,log", [
    ("fd_dev_size=abc", "Invalid argument", "kstrtoull() failed for fd_dev_size="),
    ("fd_dev_size=-1", "Invalid argument", "kstrtoull() failed for fd_dev_size="),
    ("fd_dev_size=99999999999999999999999", "Numerical result out of range",
     "kstrtoull() failed for fd_dev_size="),
    ("fd_buffered_io=0", "Invalid argument", "bogus fd_buffered_io=0 value"),
    ("fd_buffered_io=2", "Invalid argument", "bogus fd_buffered_io=2 value"),
    ("fd_async_io=0", "Invalid argument", "bogus fd_async_io=0 value"),
    ("fd_buffered_io=99999999999", "Numerical result out of range", None),
])
def test_fileio_bad_control(m, tmp_path, text, err, log):
    rel = new_dev(m, "fileio", f"fd_dev_name={tmp_path}/x.img,fd_dev_size=4096")
    bad_control(m, rel, text, err, log)


@pytest.mark.parametrize("text", ["fd_buffered_io=yes", "fd_dev_name=", "nonsense", ",,,"])
def test_fileio_unmatched_tokens_ignored(m, tmp_path, text):
    rel = new_dev(m, "fileio", f"fd_dev_name={tmp_path}/x.img,fd_dev_size=4096")
    before = m.read(f"{rel}/info")
    m.ok(f"echo '{text}' > {m.root}/{rel}/control")
    assert m.read(f"{rel}/info") == before


def test_fileio_enable_errors(m, tmp_path):
    pid = daemon(m).pid
    fds_before = set(open_fds(pid))
    rel = new_dev(m, "fileio")
    bad_enable(m, rel, "Invalid argument", "Missing fd_dev_name=")
    # regular file without fd_dev_size: the kernel already created it (O_CREAT), then closed it
    img = tmp_path / "nosize.img"
    m.ok(f"echo fd_dev_name={img} > {m.root}/{rel}/control")
    bad_enable(m, rel, "Invalid argument",
               "FILEIO: Missing fd_dev_size= parameter, and no backing struct block_device")
    assert img.exists() and img.stat().st_size == 0
    m.ok(f"echo fd_dev_name={tmp_path}/no/such/dir.img,fd_dev_size=4096 > {m.root}/{rel}/control")
    bad_enable(m, rel, "No such file or directory",
               f"filp_open({tmp_path}/no/such/dir.img) failed")
    m.ok(f"echo fd_dev_name={tmp_path} > {m.root}/{rel}/control")
    bad_enable(m, rel, "Is a directory", f"filp_open({tmp_path}) failed")
    assert set(open_fds(pid)) == fds_before            # nothing leaked by the failures
    # and it still enables once the parameters are right
    m.ok(f"echo fd_dev_name={img},fd_dev_size=4096 > {m.root}/{rel}/control")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")


def test_fileio_on_block_device(m, loopdev):
    rel = new_dev(m, "fileio", f"fd_dev_name={loopdev},fd_dev_size=4096")
    mark = m.log_mark()
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert ("FILEIO: Using size: 33553920 bytes from struct block_device blocks: 65535 "
            "logical_block_size: 512") in m.log_since(mark)
    assert m.read(f"{rel}/attrib/hw_block_size") == "512\n"
    m.ok(f"rmdir {m.root}/{rel}")
    assert loopdev not in open_fds(daemon(m).pid)


# -- iblock -------------------------------------------------------------------------------------
def test_iblock_info_enable_and_claim(m, loopdev):
    rel = new_dev(m, "iblock", f"udev_path={loopdev}")
    assert m.read(f"{rel}/info") == (
        "Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 0  HwMaxSectors: 0\n"
        f"          UDEV PATH: {loopdev}  readonly: 0\n        Major: 0 Minor: 0\n")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    st = os.stat(loopdev)
    name = os.path.basename(loopdev)
    assert m.read(f"{rel}/info").split("\n", 1)[1] == (
        f"        iBlock device: {name}  UDEV PATH: {loopdev}  readonly: 0\n"
        f"        Major: {os.major(st.st_rdev)} Minor: {os.minor(st.st_rdev)}  CLAIMED: IBLOCK\n")
    assert m.read(f"{rel}/attrib/hw_block_size") == "512\n"
    pid = daemon(m).pid
    fds = open_fds(pid)
    assert loopdev in fds and fd_flags(pid, fds[loopdev]) & os.O_ACCMODE == os.O_RDWR
    # the claim is exclusive: nobody else may open it O_EXCL, nor a second iblock device
    with pytest.raises(OSError) as e:
        os.open(loopdev, os.O_RDONLY | os.O_EXCL)
    assert e.value.errno == 16
    rel2 = new_dev(m, "iblock", f"udev_path={loopdev}")
    bad_enable(m, rel2, "Device or resource busy", None)
    # udev_path= cannot change while the bdev is open
    mark = m.log_mark()
    fail(sh(f"echo udev_path=/dev/null > {m.root}/{rel}/control"), "File exists")
    assert "Unable to set udev_path= while ib_dev->ibd_bd exists" in m.log_since(mark)
    assert f"UDEV PATH: {loopdev} " in m.read(f"{rel}/info")
    # rmdir releases the claim
    m.ok(f"rmdir {m.root}/{rel}")
    assert loopdev not in open_fds(pid)
    os.close(os.open(loopdev, os.O_RDONLY | os.O_EXCL))
    m.ok(f"echo 1 > {m.root}/{rel2}/enable")
    m.ok(f"rmdir {m.root}/{rel2}")


def test_iblock_readonly(m, loopdev):
    rel = new_dev(m, "iblock", f"udev_path={loopdev},readonly=1")
    assert "readonly: 1\n" in m.read(f"{rel}/info")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    pid = daemon(m).pid
    assert fd_flags(pid, open_fds(pid)[loopdev]) & os.O_ACCMODE == os.O_RDONLY
    m.ok(f"rmdir {m.root}/{rel}")


@pytest.mark.parametrize("text,err,log", [
    ("readonly=-1", "Invalid argument", "kstrtoul() failed for readonly="),
    ("readonly=99999999999999999999999", "Numerical result out of range",
     "kstrtoul() failed for readonly="),
])
def test_iblock_bad_control(m, text, err, log):
    rel = new_dev(m, "iblock", "udev_path=/dev/null")
    bad_control(m, rel, text, err, log)


def test_iblock_enable_errors(m, tmp_path):
    pid = daemon(m).pid
    fds_before = set(open_fds(pid))
    rel = new_dev(m, "iblock", "readonly=0,force=1")
    bad_enable(m, rel, "Invalid argument", "Missing udev_path= parameters for IBLOCK")
    (tmp_path / "plain").write_bytes(b"x")
    m.ok(f"echo udev_path={tmp_path}/plain > {m.root}/{rel}/control")
    bad_enable(m, rel, "Block device required", None)
    m.ok(f"echo udev_path={tmp_path}/missing > {m.root}/{rel}/control")
    bad_enable(m, rel, "No such file or directory", None)
    assert set(open_fds(pid)) == fds_before


# -- rd_mcp ---------------------------------------------------------------------------------------
def test_rd_mcp_1tib_costs_nothing(m):
    proc = daemon(m)
    rss0 = proc.memory_info().rss
    rel = new_dev(m, "rd_mcp", "rd_pages=268435456")
    mark = m.log_mark()
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    info = m.read(f"{rel}/info")
    assert info.split("\n", 1)[1] == (
        "        TCM RamDisk ID: 0  RamDisk Makeup: rd_mcp\n"
        "        PAGES/PAGE_SIZE: 268435456*4096  SG_table_count: 131073  nullio: 0 dummy: 0\n")
    assert "SectorSize: 512  HwMaxSectors: 4294967288\n" in info
    assert ("Added TCM MEMCPY Ramdisk Device ID: 0 of 268435456 pages in 131073 tables, "
            "1099511627776 total bytes") in m.log_since(mark)
    assert proc.memory_info().rss - rss0 < 64 << 20
    m.ok(f"rmdir {m.root}/{rel}")


def test_rd_mcp_nullio(m):
    rel = new_dev(m, "rd_mcp", "rd_pages=1024,rd_nullio=1,rd_dummy=0")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert "SG_table_count: 0  nullio: 1 dummy: 0\n" in m.read(f"{rel}/info")


@pytest.mark.parametrize("control,log", [
    (None, "Missing rd_pages= parameter"),
    ("rd_pages=abc", "Missing rd_pages= parameter"),   # no match: silently ignored
    ("rd_pages=0", "Illegal page count: 0 for Ramdisk device"),
])
def test_rd_mcp_enable_errors(m, control, log):
    rel = new_dev(m, "rd_mcp", control)
    bad_enable(m, rel, "Invalid argument", log)


# -- pscsi ----------------------------------------------------------------------------------------
def test_pscsi_control_and_info(m):
    rel = new_dev(m, "pscsi", "scsi_host_id=3,scsi_channel_id=1,scsi_target_id=2,scsi_lun_id=4")
    assert m.read(f"{rel}/info").split("\n", 1)[1] == (
        "        SCSI Device Bus Location: Channel ID: 1 Target ID: 2 LUN: 4 Host ID: 3\n")
    assert m.read(f"{rel}/attrib/alua_support") == "0\n"
    assert m.read(f"{rel}/attrib/pgr_support") == "0\n"


def test_pscsi_bad_control(m):
    rel = new_dev(m, "pscsi", "scsi_channel_id=0")
    bad_control(m, rel, "scsi_lun_id=99999999999", "Numerical result out of range", None)


def test_pscsi_enable_errors(m, loopdev):
    if os.path.exists("/sys/class/scsi_host"):
        pytest.skip("real SCSI hosts here")
    rel = new_dev(m, "pscsi", "scsi_channel_id=0,scsi_target_id=0")
    bad_enable(m, rel, "Invalid argument",
               "Missing scsi_channel_id=, scsi_target_id= and scsi_lun_id= parameters")
    m.ok(f"echo scsi_lun_id=0 > {m.root}/{rel}/control")
    bad_enable(m, rel, "Invalid argument",
               "pSCSI: udev_path attribute has not been set before ENABLE=1")
    m.ok(f"echo {loopdev} > {m.root}/{rel}/udev_path")
    # no scsi_host_id: the HBA would switch to PHBA mode, but host <id> does not exist
    bad_enable(m, rel, "No such device", "pSCSI: Unable to locate SCSI Host for phv_host_id:")
    hba = rel.rsplit("/", 1)[0]
    assert m.read(f"{hba}/hba_mode") == "0\n"
    m.ok(f"echo scsi_host_id=7 > {m.root}/{rel}/control")
    bad_enable(m, rel, "Invalid argument", "pSCSI: Unable to locate pdv_host_id: 7")
    assert loopdev not in open_fds(daemon(m).pid)


# -- user (TCMU) ----------------------------------------------------------------------------------
def test_user_control_plane(m, tmp_path):
    img = f"{tmp_path}/x"
    rel = new_dev(m, "user", f"dev_config=file/{img},dev_size=1048576,hw_block_size=4096,"
                  "hw_max_sectors=256,nl_reply_supported=0")
    assert m.read(f"{rel}/info").split("\n", 1)[1] == (
        f"        Config: file/{img} Size: 1048576 MaxDataAreaMB: 1024 DataPagesPerBlk: 1 "
        "CmdRingSizeMB: 8\n")
    assert m.read(f"{rel}/attrib/dev_config") == f"file/{img}\n"
    assert m.read(f"{rel}/attrib/dev_size") == "1048576\n"
    assert m.read(f"{rel}/attrib/hw_block_size") == "4096\n"
    m.ok(f"echo max_data_area_mb=64,data_pages_per_blk=4,cmd_ring_size_mb=2 > "
         f"{m.root}/{rel}/control")
    assert "MaxDataAreaMB: 64 DataPagesPerBlk: 4 CmdRingSizeMB: 2\n" in m.read(f"{rel}/info")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert os.path.exists(img)  # the file handler (user:file) made its backing file
    assert m.read(f"{rel}/attrib/hw_block_size") == "4096\n"
    assert m.read(f"{rel}/attrib/hw_max_sectors") == "256\n"
    for tok in ("max_data_area_mb=8", "data_pages_per_blk=1", "cmd_ring_size_mb=1"):
        key = tok.split("=")[0]
        bad_control(m, rel, tok, "Invalid argument",
                    f"Cannot set {key} after it has been enabled.")
    m.ok(f"echo dev_size=2097152 > {m.root}/{rel}/control")    # still accepted after enable


def test_user_defaults(m):
    rel = new_dev(m, "user")
    assert "Config: NULL Size: 0 MaxDataAreaMB: 1024 DataPagesPerBlk: 1 CmdRingSizeMB: 8\n" \
        in m.read(f"{rel}/info")
    # the runner (tcmu-runner's part, in the daemon) finds no handler without dev_config
    bad_enable(m, rel, "No such file or directory", "tcmu-runner: invalid cfgstring")
    # nl_reply_supported=-1: the kernel does not wait for the runner's answer
    m.ok(f"echo nl_reply_supported=-1 > {m.root}/{rel}/control")
    m.ok(f"echo 1 > {m.root}/{rel}/enable")
    assert m.read(f"{rel}/attrib/hw_block_size") == "512\n"
    assert m.read(f"{rel}/attrib/hw_max_sectors") == "128\n"
    assert m.read(f"{rel}/attrib/hw_queue_depth") == "128\n"


@pytest.mark.parametrize("text,err,log", [
    ("hw_block_size=0", "Invalid argument",
     "Invalid dev attrib value 0. Must be greater than zero."),
    ("hw_max_sectors=-5", "Invalid argument",
     "Invalid dev attrib value -5. Must be greater than zero."),
    ("hw_block_size=99999999999", "Numerical result out of range",
     "match_int() failed for dev attrib. Error -34."),
    ("dev_size=abc", "Invalid argument", "match_u64() failed for dev_size=. Error -22."),
    ("max_data_area_mb=0", "Invalid argument", "Invalid max_data_area 0."),
    ("cmd_ring_size_mb=0", "Invalid argument", "Invalid cmd_ring_size_mb 0."),
    # processing stops at the first bad token: dev_size after it is not applied
    ("hw_block_size=0,dev_size=4096", "Invalid argument",
     "Invalid dev attrib value 0. Must be greater than zero."),
])
def test_user_bad_control(m, text, err, log):
    rel = new_dev(m, "user", "dev_size=1024")
    bad_control(m, rel, text, err, log)
    assert m.read(f"{rel}/attrib/dev_size") == "1024\n"


def test_user_too_large_is_capped(m):
    rel = new_dev(m, "user")
    mark = m.log_mark()
    m.ok(f"echo cmd_ring_size_mb=100 > {m.root}/{rel}/control")
    assert "100 is too large. Adjusting cmd_ring_size_mb to global limit of 8" in \
        m.log_since(mark)
    assert "CmdRingSizeMB: 8\n" in m.read(f"{rel}/info")


# -- everything the daemon opened is closed again ----------------------------------------------------
def test_rmdir_and_umount_close_everything(loopdev, tmp_path):
    mnt = mount("modern")
    try:
        pid = daemon(mnt).pid
        base = set(open_fds(pid))
        c = mnt.core
        mnt.ok(f"mkdir -p {c}/iblock_0/a {c}/fileio_0/b {c}/fileio_0/c {c}/rd_mcp_0/d")
        mnt.ok(f"echo udev_path={loopdev} > {c}/iblock_0/a/control")
        mnt.ok(f"echo fd_dev_name={tmp_path}/b.img,fd_dev_size=4096 > {c}/fileio_0/b/control")
        mnt.ok(f"echo fd_dev_name={tmp_path}/c.img,fd_dev_size=4096 > {c}/fileio_0/c/control")
        mnt.ok(f"echo rd_pages=1024 > {c}/rd_mcp_0/d/control")
        for d in ("iblock_0/a", "fileio_0/b", "fileio_0/c", "rd_mcp_0/d"):
            mnt.ok(f"echo 1 > {c}/{d}/enable")
        opened = set(open_fds(pid)) - base
        assert {loopdev, f"{tmp_path}/b.img", f"{tmp_path}/c.img"} <= opened
        mnt.ok(f"rmdir {c}/iblock_0/a")
        assert loopdev not in open_fds(pid)
        mnt.ok(f"rmdir {c}/fileio_0/b")
        assert f"{tmp_path}/b.img" not in open_fds(pid)
        assert (tmp_path / "b.img").exists()            # the file is not deleted
        mnt.ok(f"rmdir {c}/iblock_0")
        # fileio_0/c and rd_mcp_0/d stay until umount
        maps = psutil.Process(pid).memory_maps(grouped=False)
        n_maps = len(maps)
    finally:
        umount(mnt)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert n_maps > 0
    # nothing may still hold the files: the loop device can be claimed, the image removed
    os.close(os.open(loopdev, os.O_RDONLY | os.O_EXCL))
    out = subprocess.run(["fuser", f"{tmp_path}/c.img"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_umount_closes_open_devices_in_destroy(loopdev, tmp_path):
    """The daemon closes storage in FUSE destroy: its log says nothing failed."""
    mnt = mount("modern")
    c = mnt.core
    try:
        mnt.ok(f"mkdir -p {c}/iblock_0/a")
        mnt.ok(f"echo udev_path={loopdev} > {c}/iblock_0/a/control")
        mnt.ok(f"echo 1 > {c}/iblock_0/a/enable")
        with pytest.raises(OSError):
            os.open(loopdev, os.O_RDONLY | os.O_EXCL)
    finally:
        umount(mnt)
    os.close(os.open(loopdev, os.O_RDONLY | os.O_EXCL))
    log = open(os.path.join(mnt.state_dir, "dmesg.log")).read()
    assert "closing" not in log
