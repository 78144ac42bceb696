"""ALUA configfs files through a real mount: LU groups, per-device target port groups,
the device's ``alua_lu_gp`` and ``lba_map``.

Kernel reference: target_core_configfs.c (target_lu_gp_*, target_tg_pt_gp_*,
target_dev_alua_lu_gp_*, target_dev_lba_map_*), target_core_alua.c
(core_alua_set_lu_gp_id, core_alua_set_tg_pt_gp_id, core_alua_free_tg_pt_gp,
core_alua_check_transition, core_alua_do_transition_tg_pt, core_alua_set_lba_map).
"""
from __future__ import annotations

import errno
import os
import time

import pytest

from helpers import sh, shquote

LU = "target/core/alua/lu_gps"


def kernel_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "] configfs:" not in ln]


def refuse(m, rel: str, text: str, err: int, log: str | None):
    before = m.read(rel)
    mark = m.log_mark()
    r = m.write(rel, text)
    assert r.returncode != 0, f"{rel} accepted {text!r}"
    assert os.strerror(err) in r.stderr, r.stderr
    new = m.log_since(mark)
    if log is None:
        assert kernel_lines(new) == [], new
    else:
        assert log in new, new
    assert m.read(rel) == before


def raw(m, rel: str) -> bytes:
    with open(os.path.join(m.root, rel), "rb") as f:
        return f.read()


def make_dev(m, name: str, enable: bool) -> str:
    d = f"{m.core}/fileio_0/{name}"
    m.ok(f"mkdir -p {d}")
    if enable:
        img = os.path.join(m.state_dir, f"{name}.img")
        m.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {d}/control && echo 1 > {d}/enable")
    return f"target/core/fileio_0/{name}"


@pytest.fixture(scope="module")
def m(mnt_mod):
    make_dev(mnt_mod, "off", enable=False)
    make_dev(mnt_mod, "on1", enable=True)
    make_dev(mnt_mod, "on2", enable=True)
    return mnt_mod


# -- LU groups -------------------------------------------------------------------------------------
def test_default_lu_gp(m):
    assert sorted(os.listdir(f"{m.root}/{LU}/default_lu_gp")) == ["lu_gp_id", "members"]
    assert m.read(f"{LU}/default_lu_gp/lu_gp_id") == "0\n"
    # Only enabled devices are members; 6.18 (and 6.1.y/6.12.y) no longer put a NUL after
    # each line (test_kernels checks the older versions).
    members = raw(m, f"{LU}/default_lu_gp/members")
    assert members == b"fileio_0/on1\nfileio_0/on2\n"
    r = sh(f"rmdir {m.root}/{LU}/default_lu_gp")
    assert r.returncode != 0 and os.strerror(errno.EPERM) in r.stderr
    refuse(m, f"{LU}/default_lu_gp/lu_gp_id", "3", errno.EINVAL,
           "ALUA LU Group already has a valid ID, ignoring request")


def test_new_lu_gp_has_no_id(m):
    mark = m.log_mark()
    m.ok(f"mkdir {m.root}/{LU}/noid")
    assert "Target_Core_ConfigFS: Allocated ALUA Logical Unit Group: core/alua/lu_gps/noid" \
        in m.log_since(mark)
    assert m.read(f"{LU}/noid/lu_gp_id") == ""
    assert m.read(f"{LU}/noid/members") == ""


@pytest.mark.parametrize("text, err, log", [
    ("abc", errno.EINVAL, "kstrtoul() returned -22 for lu_gp_id"),
    ("-1", errno.EINVAL, "kstrtoul() returned -22 for lu_gp_id"),
    ("99999999999999999999999", errno.ERANGE, "kstrtoul() returned -34 for lu_gp_id"),
    ("65536", errno.EINVAL, "ALUA lu_gp_id: 65536 exceeds maximum: 0x0000ffff"),
    ("0x10000", errno.EINVAL, "ALUA lu_gp_id: 65536 exceeds maximum: 0x0000ffff"),
])
def test_lu_gp_id_bad(m, text, err, log):
    refuse(m, f"{LU}/noid/lu_gp_id", text, err, log)


def test_lu_gp_id_assignment(m):
    """0 = next free id from the global counter (default_lu_gp took 0); ids are set once
    and unique."""
    def set_id(name, text):
        m.ok(f"mkdir -p {m.root}/{LU}/{name} && echo {text} > {m.root}/{LU}/{name}/lu_gp_id")
        return m.read(f"{LU}/{name}/lu_gp_id")

    mark = m.log_mark()
    assert set_id("a1", "0") == "1\n"
    assert ("Target_Core_ConfigFS: Set ALUA Logical Unit Group: core/alua/lu_gps/a1 to ID: 1"
            in m.log_since(mark))
    assert set_id("a3", "3") == "3\n"
    assert set_id("a2", "0") == "2\n"
    assert set_id("a4", "0") == "4\n"          # counter 3 is taken by a3: skipped
    assert set_id("hex", "0x20") == "32\n"
    refuse(m, f"{LU}/a1/lu_gp_id", "9", errno.EINVAL,
           "ALUA LU Group already has a valid ID, ignoring request")
    m.ok(f"mkdir {m.root}/{LU}/dup")
    refuse(m, f"{LU}/dup/lu_gp_id", "3", errno.EINVAL,
           "ALUA Logical Unit Group ID: 3 already exists, ignoring request")
    mark = m.log_mark()
    m.ok(f"rmdir {m.root}/{LU}/a4")
    assert ("Target_Core_ConfigFS: Releasing ALUA Logical Unit Group: core/alua/lu_gps/a4, "
            "ID: 4" in m.log_since(mark))
    # the freed id may be given explicitly again
    assert set_id("a4b", "4") == "4\n"


# -- device alua_lu_gp -------------------------------------------------------------------------------
def test_alua_lu_gp_unconfigured_device_is_silent_noop(m):
    f = "target/core/fileio_0/off/alua_lu_gp"
    assert m.read(f) == ""
    for text in ("a1", "NULL", "nosuch", "x" * 300):
        mark = m.log_mark()
        m.ok(f"echo {text} > {m.root}/{f}")
        assert kernel_lines(m.log_since(mark)) == []
        assert m.read(f) == ""


def test_alua_lu_gp_moves(m):
    f = "target/core/fileio_0/on1/alua_lu_gp"
    assert m.read(f) == "LU Group Alias: default_lu_gp\nLU Group ID: 0\n"
    m.ok(f"mkdir -p {m.root}/{LU}/mv && echo 0x77 > {m.root}/{LU}/mv/lu_gp_id")

    mark = m.log_mark()
    m.ok(f"echo '  mv ' > {m.root}/{f}")  # strstrip'ed
    assert m.read(f) == "LU Group Alias: mv\nLU Group ID: 119\n"
    assert ("Target_Core_ConfigFS: Moving fileio_0/on1 to ALUA LU Group: "
            "core/alua/lu_gps/mv, ID: 119" in m.log_since(mark))
    assert raw(m, f"{LU}/mv/members") == b"fileio_0/on1\n"
    assert raw(m, f"{LU}/default_lu_gp/members") == b"fileio_0/on2\n"

    mark = m.log_mark()
    m.ok(f"echo NULL > {m.root}/{f}")
    assert m.read(f) == ""
    assert ("Target_Core_ConfigFS: Releasing fileio_0/on1 from ALUA LU Group: "
            "core/alua/lu_gps/mv, ID: 119" in m.log_since(mark))
    assert raw(m, f"{LU}/mv/members") == b""
    assert raw(m, f"{LU}/default_lu_gp/members") == b"fileio_0/on2\n"
    # NULL again with no group: nothing to release, still accepted
    m.ok(f"echo NULL > {m.root}/{f}")

    mark = m.log_mark()
    m.ok(f"echo mv > {m.root}/{f}")
    assert ("Target_Core_ConfigFS: Adding fileio_0/on1 to ALUA LU Group: "
            "core/alua/lu_gps/mv, ID: 119" in m.log_since(mark))

    # rmdir of the group sends its members back to default_lu_gp
    m.ok(f"rmdir {m.root}/{LU}/mv")
    assert m.read(f) == "LU Group Alias: default_lu_gp\nLU Group ID: 0\n"
    assert raw(m, f"{LU}/default_lu_gp/members") == b"fileio_0/on2\nfileio_0/on1\n"


@pytest.mark.parametrize("text, err, log", [
    # default_lu_gp is not on the lookup list
    ("default_lu_gp", errno.ENODEV, None),
    ("nosuch", errno.ENODEV, None),
    ("noid", errno.ENODEV, None),          # exists, but has no id yet
    ("g" * 256, errno.EINVAL, "ALUA LU Group Alias too large!"),  # 257 bytes > 256
    ("g" * 255, errno.ENODEV, None),       # 256 bytes: length ok, unknown name
])
def test_alua_lu_gp_bad(m, text, err, log):
    refuse(m, "target/core/fileio_0/on2/alua_lu_gp", text, err, log)


# -- target port groups --------------------------------------------------------------------------
TG_ATTRS = sorted([
    "alua_access_state", "alua_access_status", "alua_access_type",
    "alua_support_transitioning", "alua_support_offline", "alua_support_lba_dependent",
    "alua_support_unavailable", "alua_support_standby", "alua_support_active_optimized",
    "alua_support_active_nonoptimized", "alua_write_metadata", "nonop_delay_msecs",
    "trans_delay_msecs", "implicit_trans_secs", "preferred", "tg_pt_gp_id", "members"])
TG_DEFAULTS = {
    "alua_access_state": "0\n", "alua_access_status": "None\n",
    "alua_access_type": "Implicit and Explicit\n",
    "alua_support_transitioning": "1\n", "alua_support_offline": "1\n",
    "alua_support_lba_dependent": "0\n", "alua_support_unavailable": "1\n",
    "alua_support_standby": "1\n", "alua_support_active_optimized": "1\n",
    "alua_support_active_nonoptimized": "1\n", "alua_write_metadata": "0\n",
    "nonop_delay_msecs": "100\n", "trans_delay_msecs": "0\n", "implicit_trans_secs": "0\n",
    "preferred": "0\n", "members": "",
}


@pytest.mark.parametrize("dev", ["off", "on1"])
def test_default_tg_pt_gp(m, dev):
    g = f"target/core/fileio_0/{dev}/alua/default_tg_pt_gp"
    assert os.listdir(f"{m.root}/target/core/fileio_0/{dev}/alua") == ["default_tg_pt_gp"]
    assert sorted(os.listdir(f"{m.root}/{g}")) == TG_ATTRS
    assert m.read(f"{g}/tg_pt_gp_id") == "0\n"
    for a, v in TG_DEFAULTS.items():
        assert m.read(f"{g}/{a}") == v, a
    r = sh(f"rmdir {m.root}/{g}")
    assert r.returncode != 0 and os.strerror(errno.EPERM) in r.stderr
    refuse(m, f"{g}/tg_pt_gp_id", "5", errno.EINVAL,
           "ALUA TG PT Group already has a valid ID, ignoring request")
    assert m.read(f"{g}/members") == ""


def test_new_tg_pt_gp_defaults(m):
    mark = m.log_mark()
    m.ok(f"mkdir {m.root}/target/core/fileio_0/on1/alua/fresh")
    assert "Target_Core_ConfigFS: Allocated ALUA Target Port Group: alua/tg_pt_gps/fresh" \
        in m.log_since(mark)
    g = "target/core/fileio_0/on1/alua/fresh"
    assert m.read(f"{g}/tg_pt_gp_id") == ""
    for a, v in TG_DEFAULTS.items():
        assert m.read(f"{g}/{a}") == v, a


# Writes that need no valid id (the delay/type/preferred/metadata stores never look).
@pytest.mark.parametrize("attr, text, shown", [
    ("alua_access_type", "0", "None"), ("alua_access_type", "1", "Implicit"),
    ("alua_access_type", "2", "Explicit"), ("alua_access_type", "3", "Implicit and Explicit"),
    ("nonop_delay_msecs", "0", "0"), ("nonop_delay_msecs", "10000", "10000"),
    ("nonop_delay_msecs", "0x10", "16"),
    ("trans_delay_msecs", "30000", "30000"), ("trans_delay_msecs", "0", "0"),
    ("implicit_trans_secs", "255", "255"), ("implicit_trans_secs", "0", "0"),
    ("preferred", "1", "1"), ("preferred", "0", "0"),
    ("alua_write_metadata", "1", "1"), ("alua_write_metadata", "0", "0"),
])
@pytest.mark.parametrize("group", ["fresh", "default_tg_pt_gp"])
def test_tg_pt_gp_good_writes(m, attr, text, shown, group):
    g = f"target/core/fileio_0/on1/alua/{group}"
    m.ok(f"echo {text} > {m.root}/{g}/{attr}")
    assert m.read(f"{g}/{attr}") == shown + "\n"


@pytest.mark.parametrize("attr, text, err, log", [
    ("alua_access_type", "4", errno.EINVAL, "Illegal value for alua_access_type: 4"),
    ("alua_access_type", "x", errno.EINVAL, "Unable to extract alua_access_type"),
    ("nonop_delay_msecs", "10001", errno.EINVAL,
     "Passed nonop_delay_msecs: 10001, exceeds ALUA_MAX_NONOP_DELAY_MSECS: 10000"),
    ("nonop_delay_msecs", "-1", errno.EINVAL, "Unable to extract nonop_delay_msecs"),
    ("trans_delay_msecs", "30001", errno.EINVAL,
     "Passed trans_delay_msecs: 30001, exceeds ALUA_MAX_TRANS_DELAY_MSECS: 30000"),
    ("trans_delay_msecs", "1.5", errno.EINVAL, "Unable to extract trans_delay_msecs"),
    ("implicit_trans_secs", "256", errno.EINVAL,
     "Passed implicit_trans_secs: 256, exceeds ALUA_MAX_IMPLICIT_TRANS_SECS: 255"),
    ("implicit_trans_secs", "99999999999999999999999", errno.ERANGE,
     "Unable to extract implicit_trans_secs"),
    ("preferred", "2", errno.EINVAL, "Illegal value for preferred ALUA: 2"),
    ("preferred", "y", errno.EINVAL, "Unable to extract preferred ALUA value"),
    ("alua_write_metadata", "2", errno.EINVAL, "Illegal value for alua_write_metadata: 2"),
    ("alua_write_metadata", "z", errno.EINVAL, "Unable to extract alua_write_metadata"),
    ("tg_pt_gp_id", "abc", errno.EINVAL, "ALUA tg_pt_gp_id: invalid value 'abc"),
    ("tg_pt_gp_id", "65536", errno.EINVAL, "ALUA tg_pt_gp_id: 65536 exceeds maximum: 0x0000ffff"),
    # the id-checked stores, on a group without an id
    ("alua_access_state", "1", errno.EINVAL, "Unable to do implicit ALUA on invalid tg_pt_gp ID"),
    ("alua_access_status", "1", errno.EINVAL,
     "Unable to set ALUA access status on invalid tg_pt_gp ID"),
    ("alua_support_offline", "0", errno.EINVAL,
     "Unable to set offline ALUA state on invalid tg_pt_gp ID"),
    ("alua_support_active_nonoptimized", "1", errno.EINVAL,
     "Unable to set active_nonoptimized ALUA state on invalid tg_pt_gp ID"),
])
def test_tg_pt_gp_bad_writes(m, attr, text, err, log):
    refuse(m, f"target/core/fileio_0/on1/alua/fresh/{attr}", text, err, log)


SUPPORT = ["transitioning", "offline", "lba_dependent", "unavailable", "standby",
           "active_optimized", "active_nonoptimized"]


@pytest.mark.parametrize("name", SUPPORT)
def test_support_bits(m, name):
    g = "target/core/fileio_0/on2/alua/default_tg_pt_gp"
    f = f"{g}/alua_support_{name}"
    orig = m.read(f)
    for v in ("0", "1", "0x0", "01"):
        m.ok(f"echo {v} > {m.root}/{f}")
        assert m.read(f) == f"{int(v, 0) if not v.startswith('0') or v == '0' else int(v, 16 if 'x' in v else 8)}\n"
    refuse(m, f, "2", errno.EINVAL, "Invalid value '2', must be '0' or '1'")
    refuse(m, f, "q", errno.EINVAL, "Invalid value 'q")
    m.ok(f"echo {orig.strip()} > {m.root}/{f}")


@pytest.mark.parametrize("text, shown", [("1", "Altered by Explicit STPG"),
                                         ("2", "Altered by Implicit ALUA"), ("0", "None")])
def test_access_status_good(m, text, shown):
    g = "target/core/fileio_0/on2/alua/default_tg_pt_gp"
    m.ok(f"echo {text} > {m.root}/{g}/alua_access_status")
    assert m.read(f"{g}/alua_access_status") == shown + "\n"


@pytest.mark.parametrize("text, err, log", [
    ("3", errno.EINVAL, "Illegal ALUA access status: 0x03"),
    ("s", errno.EINVAL, "Unable to extract new ALUA access status from s"),
])
def test_access_status_bad(m, text, err, log):
    refuse(m, "target/core/fileio_0/on2/alua/default_tg_pt_gp/alua_access_status",
           text, err, log)


def test_tg_pt_gp_id_assignment_and_counter(m):
    """Per-device ids: 0 = next counter value (default took 0); rmdir of *any* user
    group decrements the counter (core_alua_free_tg_pt_gp), so auto ids step back."""
    base = f"{m.root}/target/core/fileio_0/on2/alua"

    def set_id(name, text):
        m.ok(f"mkdir -p {base}/{name} && echo {text} > {base}/{name}/tg_pt_gp_id")
        return m.read(f"target/core/fileio_0/on2/alua/{name}/tg_pt_gp_id")

    mark = m.log_mark()
    assert set_id("t1", "0") == "1\n"
    assert ("Target_Core_ConfigFS: Set ALUA Target Port Group: core/alua/tg_pt_gps/t1 to ID: 1"
            in m.log_since(mark))
    assert set_id("t2", "2") == "2\n"
    assert set_id("t3", "0") == "3\n"            # counter 2 is taken: skipped
    m.ok(f"mkdir {base}/td")
    refuse(m, "target/core/fileio_0/on2/alua/td/tg_pt_gp_id", "2", errno.EINVAL,
           "ALUA Target Port Group ID: 2 already exists, ignoring request")
    mark = m.log_mark()
    m.ok(f"rmdir {base}/t3")
    assert ("Target_Core_ConfigFS: Releasing ALUA Target Port Group: alua/tg_pt_gps/t3, ID: 3"
            in m.log_since(mark))
    # counter was 4, the rmdir took it back to 3: id 3 is handed out again
    assert set_id("t4", "0") == "3\n"
    m.ok(f"rmdir {base}/td")                    # an id-less group decrements it too
    assert set_id("t5", "0") == "4\n"
    # same id on another device is fine (ids are per device)
    m.ok(f"mkdir {m.root}/target/core/fileio_0/on1/alua/t2")
    m.ok(f"echo 2 > {m.root}/target/core/fileio_0/on1/alua/t2/tg_pt_gp_id")
    for n in ("t1", "t2", "t4", "t5"):
        m.ok(f"rmdir {base}/{n}")
    m.ok(f"rmdir {m.root}/target/core/fileio_0/on1/alua/t2")


def test_rmdir_device_with_user_tg_pt_gp_is_enotempty(m):
    d = make_dev(m, "busy", enable=False)
    m.ok(f"mkdir {m.root}/{d}/alua/grp")
    r = sh(f"rmdir {m.root}/{d}")
    assert r.returncode != 0 and os.strerror(errno.ENOTEMPTY) in r.stderr
    m.ok(f"rmdir {m.root}/{d}/alua/grp && rmdir {m.root}/{d}")


# -- alua_access_state ------------------------------------------------------------------------------
def test_access_state_unconfigured_device_is_enodev(m):
    refuse(m, "target/core/fileio_0/off/alua/default_tg_pt_gp/alua_access_state", "1",
           errno.ENODEV, "Unable to set alua_access_state while device is not configured")


@pytest.fixture
def tgp(m):
    """A fresh enabled device's default group, state 0."""
    name = f"st{time.monotonic_ns()}"
    d = make_dev(m, name, enable=True)
    yield f"{d}/alua/default_tg_pt_gp"
    m.ok(f"rmdir {m.root}/{d}")


@pytest.mark.parametrize("text, state, name", [
    ("1", 1, "Active/NonOptimized"), ("2", 2, "Standby"), ("3", 3, "Unavailable"),
    ("14", 14, "Offline"), ("0xf", 15, "Transitioning"), ("0", 0, None)])
def test_access_state_implicit_transition(m, tgp, text, state, name):
    mark = m.log_mark()
    m.ok(f"echo {text} > {m.root}/{tgp}/alua_access_state")
    assert m.read(f"{tgp}/alua_access_state") == f"{state}\n"
    log = m.log_since(mark)
    if state == 0:  # already there: nothing happens, status untouched
        assert m.read(f"{tgp}/alua_access_status") == "None\n"
        assert "Successful" not in log
        return
    assert m.read(f"{tgp}/alua_access_status") == "Altered by Implicit ALUA\n"
    if state == 15:  # Transitioning is set and left: no "Successful" line
        assert "Successful" not in log
    else:
        assert (f"Successful implicit ALUA transition TG PT Group: default_tg_pt_gp ID: 0 from "
                f"primary access state Active/Optimized to {name}") in log


@pytest.mark.parametrize("setup, text, err, log", [
    ([], "abc", errno.EINVAL, "Unable to extract new ALUA access state from abc"),
    ([], "5", errno.EINVAL, "Unknown ALUA access state: 0x05"),
    ([], "16", errno.EINVAL, "Unknown ALUA access state: 0x10"),
    ([], "4", errno.EINVAL, "Unable to process implicit configfs ALUA transition while "
     "explicit ALUA management is enabled"),
    ([("alua_access_type", "2")], "1", errno.EINVAL, "Unable to process implicit configfs "
     "ALUA transition while TPGS_IMPLICIT_ALUA is disabled"),
    ([("alua_access_type", "0")], "1", errno.EINVAL, "Unable to process implicit configfs "
     "ALUA transition while TPGS_IMPLICIT_ALUA is disabled"),
    ([("alua_access_type", "1")], "4", errno.EINVAL, "ALUA access state LBA Dependent not "
     "supported"),
    ([("alua_support_standby", "0")], "2", errno.EINVAL,
     "ALUA access state Standby not supported"),
    ([("alua_support_offline", "0")], "14", errno.EINVAL,
     "ALUA access state Offline not supported"),
    ([("alua_support_transitioning", "0")], "15", errno.EINVAL,
     "ALUA access state Transitioning not supported"),
])
def test_access_state_refused(m, tgp, setup, text, err, log):
    for attr, v in setup:
        m.ok(f"echo {v} > {m.root}/{tgp}/{attr}")
    refuse(m, f"{tgp}/alua_access_state", text, err, log)
    assert m.read(f"{tgp}/alua_access_status") == "None\n"


def test_access_state_lba_dependent_implicit_only(m, tgp):
    m.ok(f"echo 1 > {m.root}/{tgp}/alua_access_type && "
         f"echo 1 > {m.root}/{tgp}/alua_support_lba_dependent && "
         f"echo 4 > {m.root}/{tgp}/alua_access_state")
    assert m.read(f"{tgp}/alua_access_state") == "4\n"


def test_access_state_trans_delay_blocks_writer(m, tgp):
    m.ok(f"echo 300 > {m.root}/{tgp}/trans_delay_msecs")
    t0 = time.monotonic()
    m.ok(f"echo 1 > {m.root}/{tgp}/alua_access_state")
    assert time.monotonic() - t0 >= 0.3
    assert m.read(f"{tgp}/alua_access_state") == "1\n"


def test_access_state_metadata_written(m, tgp):
    """alua_write_metadata=1: <dbroot>/alua/tpgs_<serial>/<group> after the transition."""
    dev = tgp.rsplit("/alua/", 1)[0]
    m.ok(f"echo meta-ser > {m.root}/{dev}/wwn/vpd_unit_serial")
    dbroot = m.read("target/dbroot").strip()
    os.makedirs(f"{dbroot}/alua/tpgs_meta-ser", exist_ok=True)
    m.ok(f"echo 1 > {m.root}/{tgp}/alua_write_metadata && echo 2 > {m.root}/{tgp}/alua_access_state")
    with open(f"{dbroot}/alua/tpgs_meta-ser/default_tg_pt_gp") as f:
        assert f.read() == "tg_pt_gp_id=0\nalua_access_state=0x02\nalua_access_status=0x02\n"
    assert os.stat(f"{dbroot}/alua/tpgs_meta-ser/default_tg_pt_gp").st_mode & 0o777 == 0o600


def test_access_state_metadata_missing_dir(m, tgp):
    dev = tgp.rsplit("/alua/", 1)[0]
    m.ok(f"echo nodir-ser > {m.root}/{dev}/wwn/vpd_unit_serial")
    dbroot = m.read("target/dbroot").strip()
    mark = m.log_mark()
    m.ok(f"echo 1 > {m.root}/{tgp}/alua_write_metadata && echo 1 > {m.root}/{tgp}/alua_access_state")
    assert m.read(f"{tgp}/alua_access_state") == "1\n"
    path = f"{dbroot}/alua/tpgs_nodir-ser/default_tg_pt_gp"
    assert f"filp_open({path}) for ALUA metadata failed" in m.log_since(mark)
    assert not os.path.exists(path)


def test_lu_group_transition_moves_same_id_on_every_member(m):
    """A non-default LU group: the transition applies to the tg_pt_gp with the same id
    on every member device."""
    a = make_dev(m, "lg_a", enable=True)
    b = make_dev(m, "lg_b", enable=True)
    m.ok(f"mkdir {m.root}/{LU}/shared && echo 500 > {m.root}/{LU}/shared/lu_gp_id")
    for d in (a, b):
        m.ok(f"echo shared > {m.root}/{d}/alua_lu_gp")
        m.ok(f"mkdir {m.root}/{d}/alua/pg && echo 7 > {m.root}/{d}/alua/pg/tg_pt_gp_id")
    m.ok(f"echo 2 > {m.root}/{a}/alua/pg/alua_access_state")
    assert m.read(f"{b}/alua/pg/alua_access_state") == "2\n"
    assert m.read(f"{b}/alua/pg/alua_access_status") == "Altered by Implicit ALUA\n"
    assert m.read(f"{b}/alua/default_tg_pt_gp/alua_access_state") == "0\n"
    for d in (a, b):
        m.ok(f"rmdir {m.root}/{d}/alua/pg && rmdir {m.root}/{d}")
    m.ok(f"rmdir {m.root}/{LU}/shared")


# (covered with a real fabric LUN in tests/mount/test_fabric_tree.py)


# -- lba_map -----------------------------------------------------------------------------------------
def write_map(m, dev, text):
    """One write(2) with the whole map: configfs hands each write() to the store on its
    own, and bash's printf flushes line by line (which the kernel would see as several
    maps, the last one winning)."""
    path = f"{m.root}/{dev}/lba_map"
    script = ("import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY)\n"
              "try: os.write(fd, sys.argv[2].encode())\n"
              "except OSError as e: sys.exit(os.strerror(e.errno))")
    return sh(f"python3 -c {shquote(script)} {shquote(path)} {shquote(text)}")


@pytest.fixture
def lbadev(m):
    name = f"lba{time.monotonic_ns()}"
    d = make_dev(m, name, enable=False)
    m.ok(f"mkdir {m.root}/{d}/alua/pg1 && echo 1 > {m.root}/{d}/alua/pg1/tg_pt_gp_id")
    m.ok(f"mkdir {m.root}/{d}/alua/noid")
    yield d
    m.ok(f"rmdir {m.root}/{d}/alua/pg1 {m.root}/{d}/alua/noid {m.root}/{d}")


def lbd_bits(m, d):
    return [m.read(f"{d}/alua/{g}/alua_support_lba_dependent")
            for g in ("default_tg_pt_gp", "pg1", "noid")]


def test_lba_map_default_empty(m, lbadev):
    assert m.read(f"{lbadev}/lba_map") == ""


def test_lba_map_roundtrip(m, lbadev):
    text = "1024 2\n0 1023 0:O 1:A\n1024 2047 0:S 1:U\n"
    r = write_map(m, lbadev, text)
    assert r.returncode == 0, r.stderr
    assert m.read(f"{lbadev}/lba_map") == text
    # valid-id groups gain the LBA-dependent bit; the id-less one does not
    assert lbd_bits(m, lbadev) == ["1\n", "1\n", "0\n"]


@pytest.mark.parametrize("text, shown", [
    ("  8\t4\n0 7 5:O\n", "8 4\n0 7 5:O\n"),        # sscanf skips blanks
    # a leading blank on an entry line shifts the strchr(' ') walk: members are lost
    ("8 4\n 0 7 5:O\n", "8 4\n0 7\n"),
    ("8 4\n0 7 -3:A\n", "8 4\n0 7 -3:A\n"),         # %d takes a sign
    ("8 4\n\n\n0 7 1:O\n\n", "8 4\n0 7 1:O\n"),     # empty lines skipped
    ("4294967297 1\n0 1 1:O\n", "1 1\n0 1 1:O\n"),  # u32 segment fields
    ("8 4\n0 7 1:Oxx 2:S\n", "8 4\n0 7 1:O 2:S\n"),  # rest of a token up to the blank ignored
])
def test_lba_map_parsing(m, lbadev, text, shown):
    r = write_map(m, lbadev, text)
    assert r.returncode == 0, r.stderr
    assert m.read(f"{lbadev}/lba_map") == shown


def test_lba_map_empty_write_still_sets_lbd(m, lbadev):
    """core_alua_set_lba_map() is always handed a list from configfs: even a map with no
    entries counts as 'activate' (only device removal clears the bit)."""
    for text in ("16 1\n", "\n"):
        r = write_map(m, lbadev, text)
        assert r.returncode == 0, r.stderr
        assert m.read(f"{lbadev}/lba_map") == ""
        assert lbd_bits(m, lbadev) == ["1\n", "1\n", "0\n"]


@pytest.mark.parametrize("text, log", [
    ("x y\n", "Invalid line 0"),
    ("12\n", "Invalid line 0"),
    ("-1 2\n", "Invalid line 0"),
    ("8 4\nzz\n", "Invalid line 1"),
    ("8 4\n0\n", "Invalid line 1"),
    ("8 4\n0 7\n", "Invalid line 1, missing state definitions"),
    ("8 4\n0 7 1:X\n", "Invalid ALUA state 'X'"),
    ("8 4\n0 7 1:O 1:A\n", "Invalid target descriptor 1:A at line 1"),
    ("8 4\n0 7 1:O 2:A\n8 15 1:O\n", "Only 1 from 2 port groups definitions at line 2"),
])
def test_lba_map_bad(m, lbadev, text, log):
    good = "8 4\n0 7 1:O\n"
    assert write_map(m, lbadev, good).returncode == 0
    mark = m.log_mark()
    r = write_map(m, lbadev, text)
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr
    new = m.log_since(mark)
    assert log in new, new
    if "descriptor" in log:
        assert "Duplicate pg_id 1 in lba_map" in new
    assert m.read(f"{lbadev}/lba_map") == good


def test_lba_map_duplicate_then_good_line_is_accepted(m, lbadev):
    """The store keeps going after a duplicate pg id; a later successful member resets
    its return code (kernel quirk): the write succeeds, the line keeps what it had."""
    mark = m.log_mark()
    r = write_map(m, lbadev, "8 4\n0 7 1:O 1:A\n8 15 1:S\n")
    assert r.returncode == 0, r.stderr
    assert "Duplicate pg_id 1 in lba_map" in m.log_since(mark)
    assert m.read(f"{lbadev}/lba_map") == "8 4\n0 7 1:O\n8 15 1:S\n"
