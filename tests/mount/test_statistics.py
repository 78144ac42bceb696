"""``core/<hba>/<dev>/statistics/``: scsi_dev, scsi_tgt_dev, scsi_lu (target_core_stat.c).

All read-only; work before enable (dev_index 0 until target_configure_device assigns
one from the cyclic IDR - the internal virt_lun0 device took 0, so the first user device
gets 1). ``inst`` is the HBA's SCSI-MIB hba_index (the internal HBA took 1).
"""
from __future__ import annotations

import errno
import os

import pytest

from helpers import sh

ST = "target/core/fileio_0/{dev}/statistics"
LISTS = {
    "scsi_dev": ["inst", "indx", "role", "ports"],
    "scsi_tgt_dev": ["inst", "indx", "num_lus", "status", "non_access_lus", "resets",
                     "aborts_complete", "aborts_no_task"],
    "scsi_lu": ["inst", "dev", "indx", "lun", "lu_name", "vend", "prod", "rev", "dev_type",
                "status", "state_bit", "num_cmds", "read_mbytes", "write_mbytes", "resets",
                "full_stat", "hs_num_cmds", "creation_time"],
}


@pytest.fixture(scope="module")
def m(mnt_mod):
    c = mnt_mod.core
    img = os.path.join(mnt_mod.state_dir, "st.img")
    mnt_mod.ok(f"mkdir -p {c}/fileio_0/off {c}/fileio_0/on {c}/rd_mcp_1/dummy")
    mnt_mod.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {c}/fileio_0/on/control && "
               f"echo 1 > {c}/fileio_0/on/enable")
    mnt_mod.ok(f"echo rd_pages=8,rd_dummy=1 > {c}/rd_mcp_1/dummy/control")
    return mnt_mod


def test_layout(m):
    base = f"{m.root}/{ST.format(dev='on')}"
    assert sorted(os.listdir(base)) == sorted(LISTS)
    for grp, names in LISTS.items():
        assert sorted(os.listdir(f"{base}/{grp}")) == sorted(names)
        for n in names:
            assert os.stat(f"{base}/{grp}/{n}").st_mode & 0o777 == 0o444


def test_mkdir_refused_enosys(m):
    r = sh(f"mkdir {m.root}/{ST.format(dev='on')}/extra")
    assert r.returncode != 0 and os.strerror(errno.ENOSYS) in r.stderr
    r = sh(f"rmdir {m.root}/{ST.format(dev='on')}/scsi_lu")
    assert r.returncode != 0 and os.strerror(errno.EPERM) in r.stderr


@pytest.mark.parametrize("grp, f", [(g, n) for g, ns in LISTS.items() for n in ns])
def test_read_only(m, grp, f):
    r = m.write(f"{ST.format(dev='on')}/{grp}/{f}", "1")
    assert r.returncode != 0 and os.strerror(errno.EACCES) in r.stderr


@pytest.mark.parametrize("dev, indx", [("off", "0\n"), ("on", "1\n")])
def test_scsi_dev(m, dev, indx):
    s = ST.format(dev=dev)
    # fileio_0 is the first user HBA: hba_index 2 (the internal rd_mcp HBA has 1)
    assert m.read(f"{s}/scsi_dev/inst") == "2\n"
    assert m.read(f"{s}/scsi_dev/indx") == indx
    assert m.read(f"{s}/scsi_dev/role") == "Target\n"
    assert m.read(f"{s}/scsi_dev/ports") == "0\n"


@pytest.mark.parametrize("dev, indx", [("off", "0\n"), ("on", "1\n")])
def test_scsi_tgt_dev(m, dev, indx):
    s = ST.format(dev=dev)
    assert m.read(f"{s}/scsi_tgt_dev/inst") == "2\n"
    assert m.read(f"{s}/scsi_tgt_dev/indx") == indx
    assert m.read(f"{s}/scsi_tgt_dev/num_lus") == "1\n"
    assert m.read(f"{s}/scsi_tgt_dev/status") == "deactivated"   # no newline
    assert m.read(f"{s}/scsi_tgt_dev/non_access_lus") == "1\n"
    for f in ("resets", "aborts_complete", "aborts_no_task"):
        assert m.read(f"{s}/scsi_tgt_dev/{f}") == "0\n"


@pytest.mark.parametrize("dev, indx", [("off", "0\n"), ("on", "1\n")])
def test_scsi_lu(m, dev, indx):
    s = f"{ST.format(dev=dev)}/scsi_lu"
    expect = {
        "inst": "2\n", "dev": indx, "indx": "1\n", "lun": "0\n", "lu_name": "None\n",
        # %-8s, %-16s, %-4s (target_stat_lu_vend_show ...)
        "vend": "LIO-ORG \n", "prod": "FILEIO" + " " * 10 + "\n", "rev": "4.0 \n",
        "dev_type": "0\n", "status": "notavailable\n", "state_bit": "exposed\n",
        "num_cmds": "0\n", "read_mbytes": "0\n", "write_mbytes": "0\n", "resets": "0\n",
        "full_stat": "0\n", "hs_num_cmds": "0\n",
    }
    for f, v in expect.items():
        assert m.read(f"{s}/{f}") == v, f
    ct = m.read(f"{s}/creation_time")
    assert ct.endswith("\n") and ct[:-1].isdigit()
    assert m.read(f"{s}/creation_time") == ct   # fixed, not a clock


def test_scsi_lu_follows_wwn(m):
    w = "target/core/fileio_0/off/wwn"
    s = f"{ST.format(dev='off')}/scsi_lu"
    m.ok(f"echo ACME > {m.root}/{w}/vendor_id && echo 'Big Disk' > {m.root}/{w}/product_id"
         f" && echo 1.2 > {m.root}/{w}/revision && echo sn-42 > {m.root}/{w}/vpd_unit_serial")
    assert m.read(f"{s}/vend") == "ACME    \n"
    assert m.read(f"{s}/prod") == "Big Disk" + " " * 8 + "\n"
    assert m.read(f"{s}/rev") == "1.2 \n"
    assert m.read(f"{s}/lu_name") == "sn-42\n"
    # full-width identities: no padding at all
    m.ok(f"echo ABCDEFGH > {m.root}/{w}/vendor_id && echo 0123456789ABCDEF > "
         f"{m.root}/{w}/product_id && echo WXYZ > {m.root}/{w}/revision")
    assert m.read(f"{s}/vend") == "ABCDEFGH\n"
    assert m.read(f"{s}/prod") == "0123456789ABCDEF\n"
    assert m.read(f"{s}/rev") == "WXYZ\n"


def test_rd_dummy_peripheral_type(m):
    s = "target/core/rd_mcp_1/dummy/statistics/scsi_lu"
    assert m.read(f"{s}/dev_type") == "63\n"           # 0x3f: no device
    assert m.read(f"{s}/prod") == "RAMDISK-MCP" + " " * 5 + "\n"
    # rd_mcp_1 is the second user HBA
    assert m.read("target/core/rd_mcp_1/dummy/statistics/scsi_dev/inst") == "3\n"


def test_dev_index_is_global_and_assigned_at_enable(m):
    c = m.core
    img = os.path.join(m.state_dir, "st2.img")
    m.ok(f"mkdir -p {c}/fileio_0/late && echo fd_dev_name={img},fd_dev_size=1048576 > "
         f"{c}/fileio_0/late/control")
    assert m.read(f"{ST.format(dev='late')}/scsi_dev/indx") == "0\n"
    m.ok(f"echo 1 > {c}/fileio_0/late/enable")
    assert m.read(f"{ST.format(dev='late')}/scsi_dev/indx") == "2\n"
    assert m.read(f"{ST.format(dev='late')}/scsi_lu/dev") == "2\n"


# (covered with a real fabric LUN in tests/mount/test_fabric_tree.py)
