"""``core/<hba>/<dev>/wwn/``: T10 identity files, through a real mount and the shell.

Kernel reference: target_core_configfs.c (target_wwn_*_store/show), target_core_device.c
(target_alloc_device preloads LIO-ORG / inquiry_prod / inquiry_rev and company_id
0x001405; no unit serial is ever generated), target_core_spc.c
(spc_gen_naa_6h_vendor_specific).
"""
from __future__ import annotations

import errno
import os

import pytest

from helpers import sh, shquote

WWN = "target/core/fileio_0/wwn_dev/wwn"


def strerror(err: int) -> str:
    return os.strerror(err)


def kernel_lines(text: str) -> list[str]:
    """Log lines minus the simulator's own configfs-level explanations."""
    return [ln for ln in text.splitlines() if "] configfs:" not in ln]


@pytest.fixture(scope="module")
def m(mnt_mod):
    for hba, dev in (("fileio_0", "wwn_dev"), ("iblock_0", "d"), ("rd_mcp_0", "d"),
                     ("user_0", "d")):
        mnt_mod.ok(f"mkdir -p {mnt_mod.core}/{hba}/{dev}")
    return mnt_mod


def refuse(m, rel: str, text: str, err: int, log: str | None, printf: bool = False):
    """A write that must fail with ``err``, log ``log`` (None: the kernel says nothing)
    and leave the file's contents unchanged."""
    before = m.read(rel)
    mark = m.log_mark()
    if printf:
        r = sh(f"printf %s {shquote(text)} > {shquote(os.path.join(m.root, rel))}")
    else:
        r = m.write(rel, text)
    assert r.returncode != 0
    assert strerror(err) in r.stderr, r.stderr
    new = m.log_since(mark)
    if log is None:
        assert kernel_lines(new) == [], new
    else:
        assert log in new, new
    assert m.read(rel) == before


# -- defaults -------------------------------------------------------------------------------
@pytest.mark.parametrize("dev, product, rev", [
    ("fileio_0/wwn_dev", "FILEIO", "4.0"),
    ("iblock_0/d", "IBLOCK", "4.0"),
    ("rd_mcp_0/d", "RAMDISK-MCP", "4.0"),
    # TCMU's backend ops carry no inquiry_prod / inquiry_rev: both empty.
    ("user_0/d", "", ""),
])
def test_defaults_per_backend(m, dev, product, rev):
    w = f"target/core/{dev}/wwn"
    assert m.read(f"{w}/vendor_id") == "LIO-ORG\n"
    assert m.read(f"{w}/product_id") == f"{product}\n"
    assert m.read(f"{w}/revision") == f"{rev}\n"
    assert m.read(f"{w}/company_id") == "0x001405\n"
    # The modern kernel never invents a serial (the v3.0 engine did).
    assert m.read(f"{w}/vpd_unit_serial") == "T10 VPD Unit Serial Number: \n"
    for f in ("vpd_protocol_identifier", "vpd_assoc_logical_unit", "vpd_assoc_target_port",
              "vpd_assoc_scsi_target_device"):
        assert m.read(f"{w}/{f}") == ""


def test_file_list_and_modes(m):
    names = sorted(os.listdir(os.path.join(m.root, WWN)))
    assert names == sorted(["vendor_id", "product_id", "revision", "company_id",
                            "vpd_unit_serial", "vpd_protocol_identifier",
                            "vpd_assoc_logical_unit", "vpd_assoc_target_port",
                            "vpd_assoc_scsi_target_device"])
    for n in names:
        mode = os.stat(os.path.join(m.root, WWN, n)).st_mode & 0o777
        assert mode == (0o444 if n.startswith("vpd_") and n != "vpd_unit_serial" else 0o644)


@pytest.mark.parametrize("f", ["vpd_protocol_identifier", "vpd_assoc_logical_unit",
                               "vpd_assoc_target_port", "vpd_assoc_scsi_target_device"])
def test_descriptor_files_are_read_only(m, f):
    r = m.write(f"{WWN}/{f}", "x")
    assert r.returncode != 0 and strerror(errno.EACCES) in r.stderr


def test_mkdir_in_wwn_refused(m):
    r = sh(f"mkdir {m.root}/{WWN}/x")
    assert r.returncode != 0 and strerror(errno.EPERM) in r.stderr


# -- vendor / product / revision ---------------------------------------------------------------
IDENT = [("vendor_id", 8), ("product_id", 16), ("revision", 4)]
DONE = {"vendor_id": "Target_Core_ConfigFS: Set emulated T10 Vendor Identification: ",
        "product_id": "Target_Core_ConfigFS: Set emulated T10 Model Identification: ",
        "revision": "Target_Core_ConfigFS: Set emulated T10 Revision: "}
TOO_LONG = {"vendor_id": "Emulated T10 Vendor Identification exceeds INQUIRY_VENDOR_LEN: 8",
            "product_id": "Emulated T10 Vendor exceeds INQUIRY_MODEL_LEN: 16",
            "revision": "Emulated T10 Revision exceeds INQUIRY_REVISION_LEN: 4"}


@pytest.mark.parametrize("f, limit", IDENT)
@pytest.mark.parametrize("text, expect", [
    ("FULL", "full"),            # exactly the limit
    (" ab ", "stripped"),        # strstrip: leading and trailing blanks go
    ("a b", "a b"),              # inner blank kept
    ("", ""),                    # "\n" strips to an empty identity: accepted
])
def test_identity_good_writes(m, f, limit, text, expect):
    if text == "FULL":
        text = expect = "ABCDEFGHIJKLMNOP"[:limit]
    elif expect == "stripped":
        expect = text.strip()
    mark = m.log_mark()
    m.ok(f"echo {shquote(text)} > {m.root}/{WWN}/{f}")
    assert m.read(f"{WWN}/{f}") == f"{expect}\n"
    assert DONE[f] + expect in m.log_since(mark)


@pytest.mark.parametrize("f, limit", IDENT)
@pytest.mark.parametrize("how", ["one_over", "blanks_over_buffer", "leading_blank"])
def test_identity_too_long_is_eoverflow(m, f, limit, how):
    m.ok(f"echo ok > {m.root}/{WWN}/{f}")
    if how == "one_over":
        text = "X" * (limit + 1)
    elif how == "blanks_over_buffer":
        # fits after strstrip, but strscpy into limit+2 bytes fails first (-E2BIG)
        text = "X" * limit + "  "
    else:
        text = " " + "X" * limit  # limit+2 bytes with the newline: no room for the NUL
    refuse(m, f"{WWN}/{f}", text, errno.EOVERFLOW, TOO_LONG[f])


@pytest.mark.parametrize("f, limit", IDENT)
def test_identity_fits_without_newline(m, f, limit):
    # printf: limit chars + one trailing blank, no newline -> limit+1 bytes, strip -> ok
    path = f"{m.root}/{WWN}/{f}"
    m.ok(f"printf %s {shquote('Y' * limit + ' ')} > {path}")
    assert m.read(f"{WWN}/{f}") == "Y" * limit + "\n"


@pytest.mark.parametrize("f", [f for f, _ in IDENT])
@pytest.mark.parametrize("text", ["A\tB", "A\x7fB", "\xe9t\xe9"])
def test_identity_non_printable_is_einval(m, f, text):
    m.ok(f"echo ok > {m.root}/{WWN}/{f}")
    data = text.encode("latin-1")
    path = os.path.join(m.root, WWN, f)
    fd = os.open(path, os.O_WRONLY)
    mark = m.log_mark()
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, data + b"\n")
    finally:
        os.close(fd)
    assert ei.value.errno == errno.EINVAL
    assert ("Emulated T10 Inquiry Data contains non-ASCII-printable characters"
            in m.log_since(mark))
    assert m.read(f"{WWN}/{f}") == "ok\n"


# -- company_id --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, shown", [
    ("0x123456", "0x123456"), ("1193046", "0x123456"), ("010", "0x000008"),
    ("0xffffff", "0xffffff"), ("1", "0x000001"),
    ("0", "00000000"),          # "%#08x" of 0: no 0x prefix, zero padded
    ("0x001405", "0x001405"),
])
def test_company_id_good(m, text, shown):
    mark = m.log_mark()
    m.ok(f"echo {text} > {m.root}/{WWN}/company_id")
    assert m.read(f"{WWN}/company_id") == shown + "\n"
    assert f"Target_Core_ConfigFS: Set IEEE Company ID: {shown}" in m.log_since(mark)


@pytest.mark.parametrize("text, err", [
    ("0x1000000", errno.EOVERFLOW), ("16777216", errno.EOVERFLOW),
    ("0xffffffff", errno.EOVERFLOW),
    ("0x100000000", errno.ERANGE),   # kstrtou32 range
    ("abc", errno.EINVAL), ("-1", errno.EINVAL), ("1 2", errno.EINVAL), ("", errno.EINVAL),
])
def test_company_id_bad_is_silent(m, text, err):
    m.ok(f"echo 0x001405 > {m.root}/{WWN}/company_id")
    refuse(m, f"{WWN}/company_id", text, err, None)


# -- vpd_unit_serial ---------------------------------------------------------------------------
SER = f"{WWN}/vpd_unit_serial"


@pytest.mark.parametrize("text, stored", [
    ("a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4", "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4"),
    ("  padded serial\t", "padded serial"),
    ("x" * 252, "x" * 252),   # 253 bytes with the newline: below INQUIRY_VPD_SERIAL_LEN
    ("", ""),
])
def test_serial_good_writes(m, text, stored):
    mark = m.log_mark()
    m.ok(f"echo {shquote(text)} > {m.root}/{SER}")
    assert m.read(SER) == f"T10 VPD Unit Serial Number: {stored}\n"
    assert f"Target_Core_ConfigFS: Set emulated VPD Unit Serial: {stored}" in m.log_since(mark)


def test_serial_changes_any_number_of_times_while_unexported(m):
    for s in ("first", "second", "third"):
        m.ok(f"echo {s} > {m.root}/{SER}")
        assert m.read(SER) == f"T10 VPD Unit Serial Number: {s}\n"


@pytest.mark.parametrize("n, printf", [(253, False), (254, True), (400, False)])
def test_serial_too_long_is_eoverflow(m, n, printf):
    m.ok(f"echo keep > {m.root}/{SER}")
    refuse(m, SER, "s" * n, errno.EOVERFLOW,
           "Emulated VPD Unit Serial exceeds INQUIRY_VPD_SERIAL_LEN: 254", printf=printf)


def test_serial_shows_in_scsi_lu_lu_name(m):
    lu = "target/core/fileio_0/wwn_dev/statistics/scsi_lu/lu_name"
    m.ok(f"echo lu-serial-1 > {m.root}/{SER}")
    assert m.read(lu) == "lu-serial-1\n"
    m.ok(f"echo > {m.root}/{SER}")
    assert m.read(lu) == "None\n"


def test_identity_writes_need_no_enable(m):
    """Before and after enable alike (only exports freeze the identity)."""
    img = os.path.join(m.state_dir, "wwn-en.img")
    d = f"{m.core}/fileio_0/wwn_en"
    m.ok(f"mkdir {d} && echo fd_dev_name={img},fd_dev_size=1048576 > {d}/control"
         f" && echo 1 > {d}/enable")
    m.ok(f"echo NEWVEND > {d}/wwn/vendor_id && echo 0xabcdef > {d}/wwn/company_id"
         f" && echo ser-en > {d}/wwn/vpd_unit_serial")
    assert m.read("target/core/fileio_0/wwn_en/wwn/vendor_id") == "NEWVEND\n"
    assert m.read("target/core/fileio_0/wwn_en/wwn/company_id") == "0xabcdef\n"
    assert m.read("target/core/fileio_0/wwn_en/wwn/vpd_unit_serial") == \
        "T10 VPD Unit Serial Number: ser-en\n"


# (covered with a real fabric LUN in tests/mount/test_fabric_tree.py)


# -- NAA designator (VPD 0x83) from serial + company id --------------------------------------------
def _kernel_naa(company_id: int, serial: str) -> str:
    """spc_gen_naa_6h_vendor_specific, restated: 6, 24-bit company id, then up to 25 hex
    digits of the serial (non-hex skipped), zero filled."""
    digits = [c for c in serial if c in "0123456789abcdefABCDEF"][:25]
    return ("6" + f"{company_id:06x}" + "".join(digits).lower()).ljust(32, "0")


@pytest.mark.parametrize("company_id, serial, naa", [
    (0x001405, "a5c0cdc1-d4f5-4d27-90d2-b1f0c1d2e3f4", "6001405a5c0cdc1d4f54d2790d2b1f0c"),
    (0x001405, "", "60014050000000000000000000000000"),
    (0x001405, "xyz-12", "60014051200000000000000000000000"),
    (0xABCDEF, "FFFF", "6abcdefffff00000000000000000000" + "0"),
])
def test_naa_designator(mnt_mod, company_id, serial, naa):
    from simfs.core.wwn import T10Wwn
    w = T10Wwn.__new__(T10Wwn)
    w.company_id, w.unit_serial = company_id, serial
    assert w.naa_designator().hex() == naa == _kernel_naa(company_id, serial)
