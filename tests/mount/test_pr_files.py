"""``core/<hba>/<dev>/pr/``: idle contents and ``res_aptpl_metadata`` parsing.

Kernel reference: target_core_configfs.c (target_pr_*_show,
target_pr_res_aptpl_metadata_store) and target_core_pr.c
(core_scsi3_alloc_aptpl_registration). Modern kernels print the SPC-3 holder/generation
/registration files whatever emulate_pr says; only res_holder, res_type,
res_aptpl_active and res_aptpl_metadata look at emulate_pr / PGR passthrough.
"""
from __future__ import annotations

import errno
import os

import pytest

from helpers import sh

NO_HOLDER = "No SPC-3 Reservation holder\n"
IDLE = {
    "res_holder": NO_HOLDER,
    "res_pr_all_tgt_pts": NO_HOLDER,
    "res_pr_generation": "0x00000000\n",
    "res_pr_holder_tg_port": NO_HOLDER,
    "res_pr_registered_i_pts": "SPC-3 PR Registrations:\nNone\n",
    "res_pr_type": NO_HOLDER,
    "res_type": "SPC3_PERSISTENT_RESERVATIONS\n",
    "res_aptpl_active": "APTPL Bit Status: Disabled\n",
    "res_aptpl_metadata": "Ready to process PR APTPL metadata..\n",
}
DISABLED = dict(IDLE, res_holder="SPC_RESERVATIONS_DISABLED\n",
                res_type="SPC_RESERVATIONS_DISABLED\n", res_aptpl_active="",
                res_aptpl_metadata="")
PASSTHROUGH = dict(IDLE, res_holder="Passthrough\n", res_type="SPC_PASSTHROUGH\n",
                   res_aptpl_active="", res_aptpl_metadata="")


def kernel_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "] configfs:" not in ln]


@pytest.fixture(scope="module")
def m(mnt_mod):
    c = mnt_mod.core
    img = os.path.join(mnt_mod.state_dir, "pr.img")
    mnt_mod.ok(f"mkdir -p {c}/fileio_0/off {c}/fileio_0/on {c}/fileio_0/nopr {c}/rd_mcp_0/r "
               f"{c}/user_0/u {c}/pscsi_0/p")
    mnt_mod.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {c}/fileio_0/on/control && "
               f"echo 1 > {c}/fileio_0/on/enable")
    mnt_mod.ok(f"echo 0 > {c}/fileio_0/nopr/attrib/emulate_pr")
    return mnt_mod


def test_pr_file_list(m):
    assert sorted(os.listdir(f"{m.core}/fileio_0/on/pr")) == sorted(IDLE)
    r = sh(f"mkdir {m.core}/fileio_0/on/pr/x")
    assert r.returncode != 0 and os.strerror(errno.EPERM) in r.stderr


@pytest.mark.parametrize("dev, expect", [
    ("fileio_0/off", IDLE), ("fileio_0/on", IDLE), ("rd_mcp_0/r", IDLE),
    # TCMU passes CDBs through but PGR is emulated by the core by default
    ("user_0/u", IDLE),
    ("fileio_0/nopr", DISABLED),
    ("pscsi_0/p", PASSTHROUGH),
])
@pytest.mark.parametrize("f", sorted(IDLE))
def test_idle_contents(m, dev, expect, f):
    assert m.read(f"target/core/{dev}/pr/{f}") == expect[f]


@pytest.mark.parametrize("f", [f for f in sorted(IDLE) if f != "res_aptpl_metadata"])
def test_status_files_read_only(m, f):
    r = m.write(f"target/core/fileio_0/on/pr/{f}", "x")
    assert r.returncode != 0 and os.strerror(errno.EACCES) in r.stderr


# -- res_aptpl_metadata ------------------------------------------------------------------------
GOOD = ("initiator_fabric=iSCSI,initiator_node=iqn.1994-05.com.redhat:cl,"
        "initiator_sid=0x23d000000,sa_res_key=0x1234,res_holder=0,res_all_tg_pt=0,"
        "mapped_lun=0,target_fabric=iSCSI,target_node=iqn.2003-01.org.linux-iscsi:tgt,"
        "tpgt=1,port_rtpi=1,target_lun=0")
MIN = "initiator_node=i,target_node=t,sa_res_key=1"


@pytest.mark.parametrize("dev", ["fileio_0/off", "fileio_0/on"])
@pytest.mark.parametrize("text, log", [
    (GOOD, "SPC-3 PR APTPL Successfully added registration from metadata"),
    (MIN, "SPC-3 PR APTPL Successfully added registration from metadata"),
    (MIN + ",res_holder=1,res_type=5",
     "SPC-3 PR APTPL Successfully added registration+reservation from metadata"),
    (MIN + ",res_type=0x3,res_holder=1,res_scope=0",
     "SPC-3 PR APTPL Successfully added registration+reservation from metadata"),
    (MIN + ",bogus=1,,res_holder=x", None),          # unknown / unmatched tokens ignored
    ("sa_res_key=18446744073709551615,initiator_node=i,target_node=t", None),
    (MIN + ",mapped_lun=18446744073709551615,target_lun=7", None),
])
def test_aptpl_metadata_accepted(m, dev, text, log):
    rel = f"target/core/{dev}/pr/res_aptpl_metadata"
    mark = m.log_mark()
    m.ok(f"echo '{text}' > {m.root}/{rel}")
    if log:
        assert log in m.log_since(mark)
    # pre-registrations leave no trace in the file
    assert m.read(rel) == "Ready to process PR APTPL metadata..\n"


def test_aptpl_metadata_newline_separated_single_write(m):
    """Tokens may be separated by newlines too (strsep on ",\\n") - in one write(2);
    bash's echo -e would flush line by line, i.e. several stores."""
    rel = f"{m.root}/target/core/fileio_0/on/pr/res_aptpl_metadata"
    mark = m.log_mark()
    fd = os.open(rel, os.O_WRONLY)
    try:
        os.write(fd, b"initiator_node=i\ntarget_node=t\nsa_res_key=1\n")
    finally:
        os.close(fd)
    assert "SPC-3 PR APTPL Successfully added registration from metadata" in m.log_since(mark)
    # line by line, the first store already lacks target_node= and sa_res_key=
    r = sh(f"echo -e 'initiator_node=i\\ntarget_node=t\\nsa_res_key=1' > {rel}")
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr


@pytest.mark.parametrize("text, err, log", [
    ("target_node=t,sa_res_key=1", errno.EINVAL, "Illegal parameters for APTPL registration"),
    ("initiator_node=i,sa_res_key=1", errno.EINVAL, "Illegal parameters for APTPL registration"),
    ("initiator_node=i,target_node=t", errno.EINVAL, "Illegal parameters for APTPL registration"),
    # a zero key counts as missing
    ("initiator_node=i,target_node=t,sa_res_key=0", errno.EINVAL,
     "Illegal parameters for APTPL registration"),
    ("initiator_node=,target_node=t,sa_res_key=1", errno.EINVAL,
     "Illegal parameters for APTPL registration"),
    ("", errno.EINVAL, "Illegal parameters for APTPL registration"),
    (MIN + ",res_holder=1", errno.EINVAL, "Illegal PR type: 0x00 for reservation holder"),
    # type = (u8)arg: 256 is 0
    (MIN + ",res_holder=1,res_type=256", errno.EINVAL,
     "Illegal PR type: 0x00 for reservation holder"),
    ("sa_res_key=abc," + MIN[:-len(",sa_res_key=1")], errno.EINVAL,
     "kstrtoull() failed for sa_res_key="),
    ("initiator_node=i,target_node=t,sa_res_key=18446744073709551616", errno.ERANGE,
     "kstrtoull() failed for sa_res_key="),
    (MIN + ",res_type=4294967296", errno.ERANGE, None),       # match_int range
    (MIN + ",mapped_lun=18446744073709551616", errno.ERANGE, None),
])
def test_aptpl_metadata_refused(m, text, err, log):
    rel = "target/core/fileio_0/on/pr/res_aptpl_metadata"
    mark = m.log_mark()
    r = m.write(rel, text)
    assert r.returncode != 0 and os.strerror(err) in r.stderr, r.stderr
    new = m.log_since(mark)
    if log is None:
        assert kernel_lines(new) == [], new
    else:
        assert log in new, new
    assert "Successfully added" not in new
    assert m.read(rel) == "Ready to process PR APTPL metadata..\n"


@pytest.mark.parametrize("key, n, log", [
    ("initiator_node", 256, "APTPL metadata initiator_node= exceeds PR_APTPL_MAX_IPORT_LEN: 256"),
    ("target_node", 256, "APTPL metadata target_node= exceeds PR_APTPL_MAX_TPORT_LEN: 256"),
    ("initiator_sid", 16, "APTPL metadata initiator_isid= exceeds PR_REG_ISID_LEN: 16"),
])
def test_aptpl_metadata_overlong_names_logged_but_accepted(m, key, n, log):
    """The store only ``break``s out of its switch on these, and the final return code
    comes from core_scsi3_alloc_aptpl_registration(): the write succeeds."""
    fields = {"initiator_node": "i", "target_node": "t", "sa_res_key": "1"}
    fields[key] = "n" * n
    text = ",".join(f"{k}={v}" for k, v in fields.items())
    rel = "target/core/fileio_0/on/pr/res_aptpl_metadata"
    mark = m.log_mark()
    m.ok(f"echo {text} > {m.root}/{rel}")
    new = m.log_since(mark)
    assert log in new
    assert "SPC-3 PR APTPL Successfully added registration from metadata" in new
    # one character less: no complaint
    fields[key] = "n" * (n - 1)
    text = ",".join(f"{k}={v}" for k, v in fields.items())
    mark = m.log_mark()
    m.ok(f"echo {text} > {m.root}/{rel}")
    assert log not in m.log_since(mark)


@pytest.mark.parametrize("dev", ["fileio_0/nopr", "pscsi_0/p"])
@pytest.mark.parametrize("text", ["garbage", "initiator_node=i", MIN + ",res_holder=1"])
def test_aptpl_metadata_ignored_without_spc3_emulation(m, dev, text):
    """emulate_pr=0 or PGR passthrough: the store returns count and does nothing."""
    rel = f"target/core/{dev}/pr/res_aptpl_metadata"
    mark = m.log_mark()
    m.ok(f"echo {text} > {m.root}/{rel}")
    assert kernel_lines(m.log_since(mark)) == []
    assert m.read(rel) == ""


# (covered with a real fabric LUN in tests/mount/test_fabric_tree.py)
