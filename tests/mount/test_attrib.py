"""``core/<hba>/<dev>/attrib/``: every device attribute, on a real simfs mount, through the shell.

For each attribute: its place in the kernel's list, its mode, its default, good writes (read back)
and bad writes, where a bad write is judged three ways: the shell's errno message, the kernel log
line (``simfs dmesg``; ``None`` = the kernel logs nothing), and the value read back unchanged.

Kernel sources the expectations come from (torvalds/linux, 6.10+):
  drivers/target/target_core_configfs.c  sbc_attrib_attrs / passthrough_attrib_attrs /
                                         passthrough_pr_attrib_attrs and their *_store functions
  drivers/target/target_core_device.c    target_alloc_device (defaults), target_configure_device
  drivers/target/target_core_file.c, target_core_rd.c, target_core_iblock.c  (configure_device,
                                         configure_unmap, init_prot/format_prot presence)
  drivers/target/target_core_user.c      tcmu_attrib_attrs and their stores
  fs/configfs/file.c                     configfs_open_file: EACCES for writing a 0444 attribute

One mount is shared by the module; every test makes its own devices in it.
"""
from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.mount

P = r"[0-9a-f]{16}"          # a hashed kernel pointer as %p prints it
TS = re.compile(r"^\[\s*\d+\.\d+\] ")

EINVAL = "Invalid argument"
ERANGE = "Numerical result out of range"
ENOSYS = "Function not implemented"
ENODEV = "No such device"
EACCES = "Permission denied"

# -- the lists, in kernel order ------------------------------------------------------------------
SBC_ATTRS = [
    "emulate_model_alias", "emulate_dpo", "emulate_fua_write", "emulate_fua_read",
    "emulate_write_cache", "emulate_ua_intlck_ctrl", "emulate_tas", "emulate_tpu", "emulate_tpws",
    "emulate_caw", "emulate_3pc", "emulate_pr", "pi_prot_type", "hw_pi_prot_type",
    "pi_prot_format", "pi_prot_verify", "enforce_pr_isids", "is_nonrot", "emulate_rest_reord",
    "force_pr_aptpl", "hw_block_size", "block_size", "hw_max_sectors", "optimal_sectors",
    "hw_queue_depth", "queue_depth", "max_unmap_lba_count", "max_unmap_block_desc_count",
    "unmap_granularity", "unmap_granularity_alignment", "unmap_zeroes_data", "max_write_same_len",
    "alua_support", "pgr_support", "emulate_rsoc", "submit_type",
]
PASSTHROUGH_ATTRS = [
    "hw_pi_prot_type", "hw_block_size", "hw_max_sectors", "hw_queue_depth", "emulate_pr",
    "alua_support", "pgr_support", "submit_type",
]
PASSTHROUGH_PR_ATTRS = ["enforce_pr_isids", "force_pr_aptpl"]
TCMU_OWN_ATTRS = [
    "cmd_time_out", "qfull_time_out", "max_data_area_mb", "data_pages_per_blk",
    "cmd_ring_size_mb", "dev_config", "dev_size", "emulate_write_cache", "tmr_notification",
    "nl_reply_supported",
]
# tcmu_module_init concatenates: passthrough + passthrough_pr + tcmu's own.
TCMU_ATTRS = PASSTHROUGH_ATTRS + PASSTHROUGH_PR_ATTRS + TCMU_OWN_ATTRS

SBC_RO = {"hw_pi_prot_type", "hw_block_size", "hw_max_sectors", "hw_queue_depth"}
TCMU_RO = SBC_RO | {"max_data_area_mb", "data_pages_per_blk", "cmd_ring_size_mb"}

# target_alloc_device defaults; before enable the hw_* and derived values are all 0.
SBC_DEFAULTS_UNCONFIGURED = {
    "emulate_model_alias": "0", "emulate_dpo": "1", "emulate_fua_write": "1",
    "emulate_fua_read": "1", "emulate_write_cache": "0", "emulate_ua_intlck_ctrl": "0",
    "emulate_tas": "1", "emulate_tpu": "0", "emulate_tpws": "0", "emulate_caw": "1",
    "emulate_3pc": "1", "emulate_pr": "1", "pi_prot_type": "0", "hw_pi_prot_type": "0",
    "pi_prot_format": "0", "pi_prot_verify": "0", "enforce_pr_isids": "1", "is_nonrot": "0",
    "emulate_rest_reord": "0", "force_pr_aptpl": "0", "hw_block_size": "0", "block_size": "0",
    "hw_max_sectors": "0", "optimal_sectors": "0", "hw_queue_depth": "0", "queue_depth": "0",
    "max_unmap_lba_count": "0", "max_unmap_block_desc_count": "0", "unmap_granularity": "0",
    "unmap_granularity_alignment": "0", "unmap_zeroes_data": "0", "max_write_same_len": "0",
    "alua_support": "1", "pgr_support": "1", "emulate_rsoc": "1", "submit_type": "0",
}
# fd_configure_device + fd_configure_unmap (regular file) + target_configure_device:
# FD_BLOCKSIZE 512, FD_MAX_BYTES/512 = 16384 sectors, FD_MAX_DEVICE_QUEUE_DEPTH 128,
# UNMAP limited to 0x2000 LBAs / 1 descriptor / granularity 1, WRITE SAME 0x1000.
FILEIO_DEFAULTS_ENABLED = dict(
    SBC_DEFAULTS_UNCONFIGURED, hw_block_size="512", block_size="512", hw_max_sectors="16384",
    optimal_sectors="16384", hw_queue_depth="128", queue_depth="128",
    max_unmap_lba_count="8192", max_unmap_block_desc_count="1", unmap_granularity="1",
    unmap_granularity_alignment="0", max_write_same_len="4096")
# rd_configure_device: RD_BLOCKSIZE 512, hw_max_sectors UINT_MAX (rounded down to a multiple of
# PAGE_SIZE/512 = 8 by se_dev_align_max_sectors), queue depth 128, is_nonrot 1; no unmap.
RD_DEFAULTS_ENABLED = dict(
    SBC_DEFAULTS_UNCONFIGURED, hw_block_size="512", block_size="512",
    hw_max_sectors="4294967288", optimal_sectors="4294967288", hw_queue_depth="128",
    queue_depth="128", is_nonrot="1")


# -- helpers --------------------------------------------------------------------------------------
def kernel_lines(text: str) -> list[str]:
    """The messages of a dmesg excerpt, without timestamps and without simfs's own
    ``configfs: ...`` notes (simfs explains refusals the kernel leaves unlogged that way)."""
    out = []
    for line in text.splitlines():
        msg = TS.sub("", line)
        if msg.startswith("configfs: "):
            continue
        out.append(msg)
    return out


def log_mark(m) -> int:
    """Where the log ends now: ``simfs dmesg`` prints the state directory's dmesg.log, so its
    size is the same offset ``mnt.log_mark()`` computes, without a second ``simfs dmesg``."""
    return os.path.getsize(Path(m.state_dir) / "dmesg.log")


def attr_path(m, dev: str, attr: str) -> str:
    return f"{m.root}/{dev}/attrib/{attr}"


def read_attr(m, dev: str, attr: str) -> str:
    """``cat`` through the shell; the value without its trailing newline."""
    r = subprocess.run(["cat", attr_path(m, dev, attr)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n"), repr(r.stdout)
    return r.stdout[:-1]


def write_ok(m, dev: str, attr: str, value: str) -> None:
    r = m.write(f"{dev}/attrib/{attr}", value)
    assert r.returncode == 0, f"echo {value!r} > {attr}: {r.stderr}"


def check_bad_write(m, dev: str, attr: str, value: str, err: str, log: str | None) -> None:
    """A refused ``echo value > attr``: errno message, the one kernel log line, state unchanged."""
    before = read_attr(m, dev, attr)
    mark = log_mark(m)
    r = m.write(f"{dev}/attrib/{attr}", value)
    assert r.returncode != 0, f"echo {value!r} > {attr} was accepted"
    assert r.stderr.rstrip().endswith(err), r.stderr
    lines = kernel_lines(m.dmesg()[mark:])
    if log is None:
        assert lines == [], f"the kernel logs nothing here, simfs logged {lines}"
    else:
        assert len(lines) == 1 and re.fullmatch(log, lines[0]), \
            f"expected one line matching {log!r}, got {lines}"
    assert read_attr(m, dev, attr) == before


def check_good_write(m, dev: str, attr: str, value: str, expect: str,
                     log: str | None = None) -> None:
    mark = log_mark(m) if log else 0
    write_ok(m, dev, attr, value)
    assert read_attr(m, dev, attr) == expect
    if log:
        lines = kernel_lines(m.dmesg()[mark:])
        assert any(re.fullmatch(log, ln) for ln in lines), f"no line matching {log!r} in {lines}"


# -- fixtures -------------------------------------------------------------------------------------
class Devices:
    """Makes fresh devices inside the module's mount: one HBA per backend, one device per use."""

    def __init__(self, m, imgdir: Path):
        self.m = m
        self.imgdir = imgdir
        self.seq = itertools.count()
        self.core = f"{m.root}/target/core"

    def _mk(self, hba: str, name: str | None) -> tuple[str, str]:
        name = name or f"d{next(self.seq)}"
        self.m.ok(f"mkdir -p {self.core}/{hba}/{name}")
        return name, f"target/core/{hba}/{name}"

    def fileio(self, enable: bool = True, name: str | None = None, extra: str = "") -> str:
        name, rel = self._mk("fileio_0", name)
        img = self.imgdir / f"{name}.img"
        self.m.ok(f"echo fd_dev_name={img},fd_dev_size=67108864{extra} > "
                  f"{self.m.root}/{rel}/control")
        if enable:
            self.m.ok(f"echo 1 > {self.m.root}/{rel}/enable")
        return rel

    def rd(self, enable: bool = True) -> str:
        _, rel = self._mk("rd_mcp_1", None)
        self.m.ok(f"echo rd_pages=1024 > {self.m.root}/{rel}/control")
        if enable:
            self.m.ok(f"echo 1 > {self.m.root}/{rel}/enable")
        return rel

    def pscsi(self) -> str:
        return self._mk("pscsi_3", None)[1]

    def user(self) -> str:
        return self._mk("user_4", None)[1]

    def iblock(self, udev: str, enable: bool = True) -> str:
        _, rel = self._mk("iblock_2", None)
        self.m.ok(f"echo udev_path={udev} > {self.m.root}/{rel}/control")
        if enable:
            self.m.ok(f"echo 1 > {self.m.root}/{rel}/enable")
        return rel


@pytest.fixture(scope="module")
def devs(mnt_mod, tmp_path_factory):
    return Devices(mnt_mod, tmp_path_factory.mktemp("attrib-img"))


@pytest.fixture(scope="module")
def m(mnt_mod):
    return mnt_mod


@pytest.fixture(scope="module")
def loop_dev(tmp_path_factory):
    """A module-wide loop device (32 MiB sparse) for the iblock spot checks."""
    img = tmp_path_factory.mktemp("attrib-loop") / "loop.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"losetup unavailable here: {r.stderr.strip()}")
    dev = r.stdout.strip()
    yield dev
    subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def ib(m, devs, loop_dev):
    """Makes iblock devices on the loop device and removes them afterwards (iblock claims the
    block device exclusively, so one enabled device at a time can hold it)."""
    made = []

    def make(enable: bool = True) -> str:
        while made:
            m.ok(f"rmdir {m.root}/{made.pop()}")
        made.append(devs.iblock(loop_dev, enable))
        return made[-1]
    yield make
    while made:
        m.ok(f"rmdir {m.root}/{made.pop()}")


# -- the file list and the modes ------------------------------------------------------------------
@pytest.mark.parametrize("backend, expected", [
    ("fileio", SBC_ATTRS), ("rd", SBC_ATTRS), ("pscsi", PASSTHROUGH_ATTRS), ("user", TCMU_ATTRS),
])
def test_file_list_in_kernel_order(m, devs, backend, expected):
    dev = {"fileio": lambda: devs.fileio(enable=False), "rd": lambda: devs.rd(enable=False),
           "pscsi": devs.pscsi, "user": devs.user}[backend]()
    # ls -U: directory order. configfs puts each new entry at the head of the directory's
    # list, so the attributes show in reverse of the kernel's ct_attrs table.
    listing = m.ok(f"ls -U {m.root}/{dev}/attrib").split()
    assert listing == expected[::-1]


def test_iblock_file_list(m, ib):
    dev = ib(enable=False)
    assert m.ok(f"ls -U {m.root}/{dev}/attrib").split() == SBC_ATTRS[::-1]


@pytest.mark.parametrize("backend, attrs, ro", [
    ("fileio", SBC_ATTRS, SBC_RO), ("pscsi", PASSTHROUGH_ATTRS, SBC_RO),
    ("user", TCMU_ATTRS, TCMU_RO),
])
def test_modes(m, devs, backend, attrs, ro):
    dev = {"fileio": lambda: devs.fileio(enable=False), "pscsi": devs.pscsi,
           "user": devs.user}[backend]()
    out = m.ok(f"cd {m.root}/{dev}/attrib && stat -c '%n %a %F' " + " ".join(attrs))
    modes = {name: (mode, kind) for name, mode, kind in
             (line.split(" ", 2) for line in out.splitlines())}
    for a in attrs:
        assert modes[a] == ("444" if a in ro else "644", "regular file"), a


@pytest.mark.parametrize("attr", sorted(SBC_RO))
def test_read_only_write_is_eacces(m, devs, attr):
    """configfs_open_file: a 0444 attribute opened for writing → EACCES, even for root; the
    kernel logs nothing."""
    dev = devs.fileio()
    check_bad_write(m, dev, attr, "1", EACCES, None)


@pytest.mark.parametrize("attr", ["max_data_area_mb", "data_pages_per_blk", "cmd_ring_size_mb",
                                  "hw_block_size"])
def test_tcmu_read_only_write_is_eacces(m, devs, attr):
    check_bad_write(m, devs.user(), attr, "1", EACCES, None)


# -- defaults -------------------------------------------------------------------------------------
def _read_all(m, dev, attrs):
    out = m.ok(f"cd {m.root}/{dev}/attrib && for f in {' '.join(attrs)}; do "
               "printf '%s=' $f; cat $f; done")
    return dict(line.split("=", 1) for line in out.splitlines())


def test_fileio_defaults_before_enable(m, devs):
    assert _read_all(m, devs.fileio(enable=False), SBC_ATTRS) == SBC_DEFAULTS_UNCONFIGURED


def test_fileio_defaults_after_enable(m, devs):
    assert _read_all(m, devs.fileio(), SBC_ATTRS) == FILEIO_DEFAULTS_ENABLED


def test_fileio_buffered_io_forces_write_cache(m, devs):
    """fd_configure_device: fd_buffered_io=1 (FDBD_HAS_BUFFERED_IO_WCE) sets emulate_write_cache."""
    dev = devs.fileio(extra=",fd_buffered_io=1")
    assert read_attr(m, dev, "emulate_write_cache") == "1"


def test_rd_defaults_after_enable(m, devs):
    mark = log_mark(m)
    dev = devs.rd()
    assert _read_all(m, dev, SBC_ATTRS) == RD_DEFAULTS_ENABLED
    # se_dev_align_max_sectors (pr_info) when UINT_MAX is rounded down.
    assert "Rounding down aligned max_sectors from 4294967295 to 4294967288" in \
        kernel_lines(m.dmesg()[mark:])


def test_pscsi_defaults(m, devs):
    """pscsi: TRANSPORT_FLAG_PASSTHROUGH|_ALUA|_PGR → alua_support/pgr_support read 0."""
    assert _read_all(m, devs.pscsi(), PASSTHROUGH_ATTRS) == {
        "hw_pi_prot_type": "0", "hw_block_size": "0", "hw_max_sectors": "0",
        "hw_queue_depth": "0", "emulate_pr": "1", "alua_support": "0", "pgr_support": "0",
        "submit_type": "0"}


TCMU_DEFAULTS = {
    "hw_pi_prot_type": "0", "hw_block_size": "0", "hw_max_sectors": "0", "hw_queue_depth": "0",
    "emulate_pr": "1", "alua_support": "1", "pgr_support": "1", "submit_type": "0",
    "enforce_pr_isids": "1", "force_pr_aptpl": "0",
    "cmd_time_out": "30",             # TCMU_TIME_OUT 30 s
    "qfull_time_out": "-1",
    "max_data_area_mb": "1024",       # DATA_AREA_PAGES_DEF 256Ki pages
    "data_pages_per_blk": "1", "cmd_ring_size_mb": "8",
    "dev_config": "",                 # "%s\n" of an empty string
    "dev_size": "0", "emulate_write_cache": "0", "tmr_notification": "0",
    "nl_reply_supported": "0",
}


def test_tcmu_defaults(m, devs):
    """TCMU: TRANSPORT_FLAG_PASSTHROUGH only, so alua_support/pgr_support read 1."""
    assert _read_all(m, devs.user(), TCMU_ATTRS) == TCMU_DEFAULTS


def test_tcmu_control_sets_hw_attributes_and_enable_defaults(m, devs):
    dev = devs.user()
    m.ok(f"echo hw_block_size=4096 > {m.root}/{dev}/control")
    assert read_attr(m, dev, "hw_block_size") == "4096"
    dev2 = devs.user()
    # nl_reply_supported=-1: enabled without waiting for the (handler-less) runner's answer
    m.ok(f"echo nl_reply_supported=-1 > {m.root}/{dev2}/control")
    m.ok(f"echo 1 > {m.root}/{dev2}/enable")
    # tcmu_configure_device: hw_block_size 512 and hw_max_sectors 128 unless given, depth 128.
    assert [read_attr(m, dev2, a) for a in ("hw_block_size", "hw_max_sectors",
                                            "hw_queue_depth")] == ["512", "128", "128"]


def test_iblock_values_come_from_the_block_device(m, ib, loop_dev):
    """iblock_configure_device + iblock_configure_unmap (target_configure_unmap_from_bdev)."""
    q = Path(f"/sys/block/{os.path.basename(loop_dev)}/queue")

    def qv(name):
        return int(q.joinpath(name).read_text().split()[0])

    lbs = qv("logical_block_size")
    hw_max = qv("max_hw_sectors_kb") * 2 * 512 // lbs
    hw_max -= hw_max % max(1, 4096 // lbs)
    dev = ib()
    got = _read_all(m, dev, SBC_ATTRS)
    assert got["hw_block_size"] == got["block_size"] == str(lbs)
    assert got["hw_max_sectors"] == got["optimal_sectors"] == str(hw_max)
    assert got["hw_queue_depth"] == got["queue_depth"] == str(qv("nr_requests"))
    assert got["is_nonrot"] == ("0" if qv("rotational") else "1")
    wz = qv("write_zeroes_max_bytes") // 512
    assert got["max_write_same_len"] == str(wz or 0xFFFF)
    if qv("discard_max_bytes"):
        assert got["max_unmap_block_desc_count"] == "1"
        assert got["max_unmap_lba_count"] == str((qv("discard_max_bytes") // 512)
                                                 >> (lbs.bit_length() - 10))
        assert got["unmap_granularity"] == str(qv("discard_granularity") // lbs)
    rest = {k: v for k, v in got.items() if k not in {
        "hw_block_size", "block_size", "hw_max_sectors", "optimal_sectors", "hw_queue_depth",
        "queue_depth", "is_nonrot", "max_write_same_len", "max_unmap_block_desc_count",
        "max_unmap_lba_count", "unmap_granularity", "unmap_granularity_alignment"}}
    assert rest == {k: SBC_DEFAULTS_UNCONFIGURED[k] for k in rest}


# -- good writes (enabled fileio device, one fresh device per case) -------------------------------
D = rf"dev\[{P}\]: "
GOOD = [
    # attr, written, read back, pr_debug line the kernel prints (None: none/not checked)
    ("emulate_model_alias", "1", "1", None),
    ("emulate_model_alias", "0", "0", None),
    ("emulate_fua_write", "0", "0", None),
    ("emulate_fua_write", "n", "0", None),          # kstrtobool: first character decides
    ("emulate_fua_write", "off", "0", None),
    ("emulate_fua_write", "on", "1", None),
    ("emulate_fua_write", "Yes", "1", None),
    ("emulate_fua_write", "10", "1", None),
    ("emulate_write_cache", "1", "1", D + "SE Device WRITE_CACHE_EMULATION flag: 1"),
    ("emulate_ua_intlck_ctrl", "2", "2", D + "SE Device UA_INTRLCK_CTRL flag: 2"),
    ("emulate_ua_intlck_ctrl", "0x1", "1", D + "SE Device UA_INTRLCK_CTRL flag: 1"),
    ("emulate_tas", "0", "0", D + "SE Device TASK_ABORTED status bit: Disabled"),
    ("emulate_tpu", "1", "1", D + "SE Device Thin Provisioning UNMAP bit: 1"),
    ("emulate_tpws", "1", "1", D + "SE Device Thin Provisioning WRITE_SAME: 1"),
    ("emulate_caw", "0", "0", None),
    ("emulate_3pc", "0", "0", None),
    ("emulate_pr", "0", "0", None),
    ("pi_prot_type", "0", "0", None),               # 0 is accepted by every backend
    ("pi_prot_format", "0", "0", None),             # 0 is a no-op; the file always reads 0
    ("pi_prot_verify", "0", "0", None),
    # 1 with pi_prot_type 0: pr_warn and success, nothing changes
    ("pi_prot_verify", "1", "0", "DIF protection not supported by backend, ignoring"),
    ("enforce_pr_isids", "0", "0", None),
    ("is_nonrot", "1", "1", None),
    ("emulate_rest_reord", "0", "0", D + "SE Device emulate_rest_reord: 0"),
    ("force_pr_aptpl", "1", "1", D + "SE Device force_pr_aptpl: 1"),
    ("block_size", "4096", "4096", D + "SE Device block_size changed to 4096"),
    ("block_size", "2048", "2048", None),
    ("block_size", "1024", "1024", None),
    ("block_size", "512", "512", None),
    ("optimal_sectors", "8", "8", D + "SE Device optimal_sectors changed to 8"),
    ("optimal_sectors", "16384", "16384", None),    # == hw_max_sectors
    ("optimal_sectors", "0", "0", None),
    ("queue_depth", "64", "64", D + "SE Device TCQ Depth changed to: 64"),
    ("queue_depth", "128", "128", None),            # == hw_queue_depth
    ("max_unmap_lba_count", "4294967295", "4294967295", None),
    ("max_unmap_lba_count", "0x10", "16", None),     # kstrtou32 base 0
    ("max_unmap_lba_count", "010", "8", None),       # octal!
    ("max_unmap_block_desc_count", "5", "5", None),
    ("unmap_granularity", "8", "8", None),
    ("unmap_granularity_alignment", "4", "4", None),
    ("unmap_zeroes_data", "1", "1", D + "SE Device Thin Provisioning LBPRZ bit: 1"),
    ("max_write_same_len", "65535", "65535", None),
    ("alua_support", "1", "1", None),               # the current value: accepted, no change
    ("pgr_support", "1", "1", None),
    ("emulate_rsoc", "0", "0",
     D + "SE Device REPORT_SUPPORTED_OPERATION_CODES_EMULATION flag: 0"),
    ("submit_type", "1", "1", None),
    ("submit_type", "2", "2", None),
    ("submit_type", "0", "0", None),
]


@pytest.mark.parametrize("attr, value, expect, log", GOOD,
                         ids=[f"{a}={v}" for a, v, _, _ in GOOD])
def test_good_write(m, devs, attr, value, expect, log):
    check_good_write(m, devs.fileio(), attr, value, expect, log)


@pytest.mark.parametrize("attr", ["emulate_dpo", "emulate_fua_read"])
def test_deprecated_attribute_ignored_and_warned_once(m, devs, attr):
    """DEF_CONFIGFS_ATTRIB_STORE_STUB: anything is accepted, nothing changes, and
    printk_once(KERN_WARNING "ignoring deprecated %s attribute") appears once per attribute."""
    for value in ("0", "junk", "0"):
        write_ok(m, devs.fileio(), attr, value)
    dev = devs.fileio()
    write_ok(m, dev, attr, "0")
    assert read_attr(m, dev, attr) == "1"
    msgs = kernel_lines(m.dmesg())
    assert msgs.count(f"ignoring deprecated {attr} attribute") == 1


def test_model_alias_sets_and_restores_inquiry_product(m, devs):
    dev = devs.fileio(name="a_rather_long_backstore_name")
    mark = log_mark(m)
    write_ok(m, dev, "emulate_model_alias", "1")
    assert m.read(f"{dev}/wwn/product_id") == "a_rather_long_b\n"   # 15 characters
    lines = kernel_lines(m.dmesg()[mark:])
    assert len(lines) == 1 and re.fullmatch(
        D + r"Backstore name 'a_rather_long_backstore_name' is too long for INQUIRY_MODEL, "
        r"truncating to 15 characters", lines[0]), lines
    write_ok(m, dev, "emulate_model_alias", "0")
    assert m.read(f"{dev}/wwn/product_id") == "FILEIO\n"
    assert read_attr(m, dev, "emulate_model_alias") == "0"


def test_block_size_written_before_enable_is_replaced_at_enable(m, devs):
    """target_configure_device: block_size := hw_block_size, queue_depth := hw_queue_depth."""
    dev = devs.fileio(enable=False)
    check_good_write(m, dev, "block_size", "4096", "4096")
    m.ok(f"echo 1 > {m.root}/{dev}/enable")
    assert read_attr(m, dev, "block_size") == "512"
    assert read_attr(m, dev, "queue_depth") == "128"


def test_queue_depth_sets_runtime_depth_in_info(m, devs):
    """queue_depth_store sets dev->queue_depth too ("Max Queue Depth" in info); lowering is
    always allowed, raising only up to hw_queue_depth."""
    dev = devs.fileio()
    assert "Max Queue Depth: 0 " in m.read(f"{dev}/info")
    check_good_write(m, dev, "queue_depth", "16", "16")
    assert "Max Queue Depth: 16 " in m.read(f"{dev}/info")
    check_good_write(m, dev, "queue_depth", "100", "100")   # > current, <= hw (128)
    check_bad_write(m, dev, "queue_depth", "200", EINVAL,
                    D + "Passed queue_depth: 200 exceeds TCM/SE_Device MAX TCQ: 128")


# -- bad writes (enabled fileio device unless the case says otherwise) ----------------------------
BAD = [
    # attr, written, errno, kernel log line (None: the kernel logs nothing)
    ("emulate_model_alias", "x", EINVAL, None),
    ("emulate_fua_write", "x", EINVAL, None),
    ("emulate_fua_write", "", EINVAL, None),         # echo '' writes just "\n"
    ("emulate_fua_write", "2", EINVAL, None),
    ("emulate_write_cache", "maybe", EINVAL, None),
    ("emulate_ua_intlck_ctrl", "3", EINVAL, "Illegal value 3"),
    ("emulate_ua_intlck_ctrl", "4294967295", EINVAL, "Illegal value -1"),   # %d of a u32
    ("emulate_ua_intlck_ctrl", "-1", EINVAL, None),   # kstrtou32 takes no sign
    ("emulate_ua_intlck_ctrl", "4294967296", ERANGE, None),
    ("emulate_ua_intlck_ctrl", "1 ", EINVAL, None),   # trailing space
    ("emulate_tas", "x", EINVAL, None),
    ("emulate_tpu", "x", EINVAL, None),
    ("emulate_tpws", "x", EINVAL, None),
    ("emulate_caw", "x", EINVAL, None),
    ("emulate_3pc", "x", EINVAL, None),
    ("emulate_pr", "x", EINVAL, None),
    ("pi_prot_type", "4", EINVAL, "Illegal value 4 for pi_prot_type"),
    ("pi_prot_type", "4294967295", EINVAL, "Illegal value -1 for pi_prot_type"),
    ("pi_prot_type", "2", ENOSYS, "DIF TYPE2 protection currently not supported"),
    ("pi_prot_type", "x", EINVAL, None),
    ("pi_prot_format", "x", EINVAL, None),
    ("pi_prot_verify", "x", EINVAL, None),
    ("enforce_pr_isids", "x", EINVAL, None),
    ("is_nonrot", "x", EINVAL, None),
    ("emulate_rest_reord", "1", ENOSYS,
     D + "SE Device emulation of restricted reordering not implemented"),
    ("emulate_rest_reord", "x", EINVAL, None),
    ("force_pr_aptpl", "x", EINVAL, None),
    ("block_size", "256", EINVAL,
     D + "Illegal value for block_device: 256 for SE device, must be 512, 1024, 2048 or 4096"),
    ("block_size", "8192", EINVAL,
     D + "Illegal value for block_device: 8192 for SE device, must be 512, 1024, 2048 or 4096"),
    ("block_size", "0", EINVAL,
     D + "Illegal value for block_device: 0 for SE device, must be 512, 1024, 2048 or 4096"),
    ("block_size", "x", EINVAL, None),
    ("optimal_sectors", "16385", EINVAL,
     D + "Passed optimal_sectors 16385 cannot be greater than hw_max_sectors: 16384"),
    ("optimal_sectors", "x", EINVAL, None),
    ("queue_depth", "0", EINVAL, D + "Illegal ZERO value for queue_depth"),
    ("queue_depth", "129", EINVAL,
     D + "Passed queue_depth: 129 exceeds TCM/SE_Device MAX TCQ: 128"),
    ("queue_depth", "x", EINVAL, None),
    ("max_unmap_lba_count", "4294967296", ERANGE, None),
    ("max_unmap_lba_count", "-1", EINVAL, None),
    ("max_unmap_lba_count", "12abc", EINVAL, None),
    ("max_unmap_block_desc_count", "x", EINVAL, None),
    ("unmap_granularity", "1.5", EINVAL, None),
    ("unmap_granularity_alignment", "99999999999", ERANGE, None),
    ("max_write_same_len", "0x", EINVAL, None),
    ("unmap_zeroes_data", "x", EINVAL, None),
    ("alua_support", "0", ENOSYS,
     D + "Unable to change SE Device alua_support: alua_support has fixed value"),
    ("alua_support", "x", EINVAL, None),
    ("pgr_support", "0", ENOSYS,
     D + "Unable to change SE Device pgr_support: pgr_support has fixed value"),
    ("pgr_support", "x", EINVAL, None),
    ("emulate_rsoc", "x", EINVAL, None),
    ("submit_type", "3", EINVAL, None),              # submit_type_store: -EINVAL, no pr_err
    ("submit_type", "256", ERANGE, None),            # kstrtou8
    ("submit_type", "-1", EINVAL, None),
]


@pytest.mark.parametrize("attr, value, err, log", BAD, ids=[f"{a}={v!r}" for a, v, _, _ in BAD])
def test_bad_write(m, devs, attr, value, err, log):
    check_bad_write(m, devs.fileio(), attr, value, err, log)


BAD_UNCONFIGURED = [
    # The same device before enable: hw_* are 0.
    ("queue_depth", "1", EINVAL, D + "Passed queue_depth: 1 exceeds TCM/SE_Device MAX TCQ: 0"),
    ("optimal_sectors", "1", EINVAL,
     D + "Passed optimal_sectors 1 cannot be greater than hw_max_sectors: 0"),
    pytest.param("emulate_tpu", "1", ENODEV,
                 "Generic Block Discard setup for emulate_tpu requires device to be configured"),
    pytest.param("emulate_tpws", "1", ENODEV,
                 "Generic Block Discard setup for emulate_tpws requires device to be configured"),
    pytest.param("unmap_zeroes_data", "1", ENODEV,
                 "Generic Block Discard setup for unmap_zeroes_data requires device to be "
                 "configured"),
    pytest.param("pi_prot_type", "1", ENODEV, "DIF protection requires device to be configured"),
    pytest.param("pi_prot_format", "1", ENODEV,
                 "DIF protection format requires device to be configured"),
]


@pytest.mark.parametrize("attr, value, err, log", BAD_UNCONFIGURED)
def test_bad_write_before_enable(m, devs, attr, value, err, log):
    check_bad_write(m, devs.fileio(enable=False), attr, value, err, log)


def test_fileio_tpu_reconfigures_unmap(m, devs):
    dev = devs.fileio()
    write_ok(m, dev, "max_unmap_block_desc_count", "0")
    write_ok(m, dev, "max_unmap_lba_count", "0")
    check_good_write(m, dev, "emulate_tpu", "1", "1")
    assert read_attr(m, dev, "max_unmap_block_desc_count") == "1"
    assert read_attr(m, dev, "max_unmap_lba_count") == "8192"


def test_fileio_pi_prot_type_on_enabled_device(m, devs):
    dev = devs.fileio()
    check_good_write(m, dev, "pi_prot_type", "1", "1", D + "SE Device Protection Type: 1")
    assert read_attr(m, dev, "pi_prot_verify") == "1"


# -- rd_mcp and iblock spot checks ----------------------------------------------------------------
@pytest.mark.parametrize("enable", [False, True], ids=["unconfigured", "enabled"])
@pytest.mark.parametrize("attr", ["emulate_tpu", "emulate_tpws", "unmap_zeroes_data"])
def test_rd_has_no_discard(m, devs, attr, enable):
    """rd_mcp_ops has no configure_unmap: target_try_configure_unmap → ENOSYS at once."""
    check_bad_write(m, devs.rd(enable), attr, "1", ENOSYS, "Generic Block Discard not supported")


def test_rd_pi_prot_format_not_supported(m, devs):
    """rd_mcp_ops has init_prot/free_prot but no format_prot."""
    check_bad_write(m, devs.rd(), "pi_prot_format", "1", ENOSYS,
                    "DIF protection format not supported by backend rd_mcp")


def test_rd_pi_prot_type_before_enable(m, devs):
    check_bad_write(m, devs.rd(enable=False), "pi_prot_type", "1", ENODEV,
                    "DIF protection requires device to be configured")


def test_rd_write_cache_emulated(m, devs):
    check_good_write(m, devs.rd(), "emulate_write_cache", "1", "1")


def test_iblock_write_cache_is_the_devices(m, ib):
    """iblock has get_write_cache: emulate_write_cache=1 → EINVAL; 0 is fine."""
    dev = ib()
    check_bad_write(m, dev, "emulate_write_cache", "1", EINVAL,
                    "emulate_write_cache not supported for this device")
    check_good_write(m, dev, "emulate_write_cache", "0", "0")
    check_good_write(m, dev, "emulate_tpu", "1", "1")


def test_iblock_tpu_before_enable(m, ib):
    """iblock has configure_unmap, so an unconfigured device gets ENODEV."""
    check_bad_write(m, ib(enable=False), "emulate_tpu", "1", ENODEV,
                    "Generic Block Discard setup for emulate_tpu requires device to be "
                    "configured")


# -- passthrough (pscsi) --------------------------------------------------------------------------
def test_pscsi_writable_attributes(m, devs):
    dev = devs.pscsi()
    check_good_write(m, dev, "emulate_pr", "0", "0")
    check_good_write(m, dev, "submit_type", "2", "2")
    check_bad_write(m, dev, "submit_type", "3", EINVAL, None)
    check_bad_write(m, dev, "emulate_pr", "x", EINVAL, None)
    # transport_flags_changeable is 0: asking for the current value is fine, a change is not.
    for flag in ("alua_support", "pgr_support"):
        check_good_write(m, dev, flag, "0", "0")
        check_bad_write(m, dev, flag, "1", ENOSYS,
                        D + f"Unable to change SE Device {flag}: {flag} has fixed value")
    for ro in sorted(SBC_RO):
        check_bad_write(m, dev, ro, "1", EACCES, None)


# -- TCMU -----------------------------------------------------------------------------------------
TCMU_GOOD = [
    ("alua_support", "0", "0"),        # changeable for TCMU
    ("pgr_support", "0", "0"),
    ("emulate_pr", "0", "0"),
    ("submit_type", "1", "1"),
    ("enforce_pr_isids", "0", "0"),
    ("force_pr_aptpl", "1", "1"),
    ("cmd_time_out", "0", "0"),
    ("cmd_time_out", "45", "45"),
    ("cmd_time_out", "4294967295", "4294967295"),
    ("qfull_time_out", "-1", "-1"),
    ("qfull_time_out", "0", "0"),
    ("qfull_time_out", "7", "7"),
    ("dev_config", "foo/bar", "foo/bar\n"),   # the raw page is kept, newline and all
    ("dev_size", "1048576", "1048576"),
    ("dev_size", "18446744073709551615", "18446744073709551615"),
    ("emulate_write_cache", "1", "1"),
    ("emulate_write_cache", "255", "255"),    # any u8
    ("tmr_notification", "1", "1"),
    ("nl_reply_supported", "-1", "-1"),
    ("nl_reply_supported", "127", "127"),
]


@pytest.mark.parametrize("attr, value, expect", TCMU_GOOD,
                         ids=[f"{a}={v}" for a, v, _ in TCMU_GOOD])
def test_tcmu_good_write(m, devs, attr, value, expect):
    check_good_write(m, devs.user(), attr, value, expect)


def test_tcmu_alua_pgr_support_toggle(m, devs):
    dev = devs.user()
    for flag in ("alua_support", "pgr_support"):
        check_good_write(m, dev, flag, "0", "0")
        check_good_write(m, dev, flag, "1", "1")


TCMU_BAD = [
    ("cmd_time_out", "-1", EINVAL, None),
    ("cmd_time_out", "4294967296", ERANGE, None),
    ("qfull_time_out", "-2", EINVAL, "Invalid qfull timeout value -2"),
    ("qfull_time_out", "2147483648", ERANGE, None),
    ("qfull_time_out", "x", EINVAL, None),
    pytest.param("dev_config", "x" * 255, EINVAL, None,
                 id="dev_config=255chars+newline"),
    ("dev_size", "-1", EINVAL, None),
    ("dev_size", "18446744073709551616", ERANGE, None),
    ("emulate_write_cache", "256", ERANGE, None),
    ("emulate_write_cache", "x", EINVAL, None),
    pytest.param("tmr_notification", "2", EINVAL, None),
    ("tmr_notification", "256", ERANGE, None),
    ("nl_reply_supported", "128", ERANGE, None),      # kstrtos8
    ("nl_reply_supported", "-129", ERANGE, None),
    ("nl_reply_supported", "x", EINVAL, None),
    ("submit_type", "3", EINVAL, None),
    ("force_pr_aptpl", "x", EINVAL, None),
    ("enforce_pr_isids", "x", EINVAL, None),
    ("emulate_pr", "x", EINVAL, None),
    ("alua_support", "x", EINVAL, None),
    ("pgr_support", "x", EINVAL, None),
]


@pytest.mark.parametrize("attr, value, err, log", TCMU_BAD)
def test_tcmu_bad_write(m, devs, attr, value, err, log):
    check_bad_write(m, devs.user(), attr, value, err, log)


def test_tcmu_dev_config_length_limit(m, devs):
    """tcmu_dev_config_store: strlen(page) must be 1..TCMU_CONFIG_LEN-1 (255)."""
    dev = devs.user()
    write_ok(m, dev, "dev_config", "y" * 254)          # 255 bytes with the newline
    assert read_attr(m, dev, "dev_config") == "y" * 254 + "\n"
    r = subprocess.run(["bash", "-c", f"printf '' > {attr_path(m, dev, 'dev_config')}"],
                       capture_output=True, text=True)
    assert r.returncode == 0      # an empty write(2) never reaches the store
    assert read_attr(m, dev, "dev_config") == "y" * 254 + "\n"


def _attrs_of(cases):
    return {c.values[0] if hasattr(c, "values") else c[0] for c in cases}


def test_every_writable_attribute_has_good_and_bad_cases():
    """Keeps the tables above honest: every RW attribute is written both ways somewhere."""
    deprecated = {"emulate_dpo", "emulate_fua_read"}   # accept anything: see their own test
    sbc_rw = set(SBC_ATTRS) - SBC_RO - deprecated
    assert sbc_rw <= _attrs_of(GOOD)
    assert sbc_rw <= _attrs_of(BAD) | _attrs_of(BAD_UNCONFIGURED)
    tcmu_rw = set(TCMU_ATTRS) - TCMU_RO
    assert tcmu_rw <= _attrs_of(TCMU_GOOD)
    assert tcmu_rw <= _attrs_of(TCMU_BAD)


# -- gating: "refused while exported" (spec 3.4) -------------------------------------------------
EXPORT_GATED = [
    # attr, a value that would be accepted unexported, the kernel's refusal when exported
    ("block_size", "4096", D + "Unable to change SE Device block_size while export_count is 1"),
    ("optimal_sectors", "8",
     D + "Unable to change SE Device optimal_sectors while export_count is 1"),
    ("queue_depth", "16", D + "Unable to change SE Device TCQ while export_count is 1"),
    ("emulate_ua_intlck_ctrl", "1",
     D + "Unable to change SE Device UA_INTRLCK_CTRL while export_count is 1"),
    ("emulate_tas", "0", D + "Unable to change SE Device TAS while export_count is 1"),
    ("emulate_model_alias", "1", D + "Unable to change model alias while export_count is 1"),
    ("force_pr_aptpl", "1", D + "Unable to set force_pr_aptpl while export_count is 1"),
    ("unmap_zeroes_data", "1",
     D + "Unable to change SE Device unmap_zeroes_data while export_count is 1"),
]


@pytest.mark.parametrize("attr, value, _refusal", EXPORT_GATED,
                         ids=[a for a, _, _ in EXPORT_GATED])
def test_export_gated_attributes_change_while_unexported(m, devs, attr, value, _refusal):
    """Enabled is not exported: the export_count gates do not apply (info: DEACTIVATED)."""
    dev = devs.fileio()
    assert m.read(f"{dev}/info").startswith("Status: DEACTIVATED")
    check_good_write(m, dev, attr, value, value)


def _export(m, dev: str) -> str | None:
    """Link ``dev`` into a tcm_loop LUN; the LUN dir, or None when fabrics are not there yet."""
    r = subprocess.run(["bash", "-c", f"mkdir -p {m.root}/target/loopback"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    lun = f"{m.root}/target/loopback/naa.5001405aabbccdd{next(_luns)}/tpgt_1/lun/lun_0"
    m.ok(f"mkdir -p {lun} && ln -s {m.root}/{dev} {lun}/link")
    return lun


_luns = itertools.count()


@pytest.mark.parametrize("attr, value, refusal", EXPORT_GATED, ids=[a for a, _, _ in EXPORT_GATED])
def test_export_gated_attributes_refused_while_exported(m, devs, attr, value, refusal):
    """Waits for fabrics: exporting needs a fabric LUN (target/loopback/.../lun_0/<link> →
    the device), which simfs does not have yet. Once ``mkdir target/loopback`` works this test
    runs: every export-gated store must answer EINVAL with the kernel's line, value unchanged.
    (pi_prot_type/pi_prot_format's export gates come after their backend checks, see the
    TCMU cmd_time_out's gate is checked before parsing in the kernel.)"""
    dev = devs.fileio()
    lun = _export(m, dev)
    if lun is None:
        pytest.skip("waits for fabrics: no target/loopback in simfs yet, so no device can be "
                    "exported (export_count stays 0)")
    try:
        assert m.read(f"{dev}/info").startswith("Status: ACTIVATED")
        check_bad_write(m, dev, attr, value, EINVAL, refusal)
    finally:
        subprocess.run(["bash", "-c", f"rm -f {lun}/link"], check=False)
