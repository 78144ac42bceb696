"""target/version, target/dbroot and core/<plugin>_<id> HBAs, through a real mount.

Kernel references: target_core_item_version_show, target_core_item_dbroot_store,
target_core_call_addhbatotarget / core_alloc_hba (target_core_hba.c), target_hba_info_show,
target_hba_mode_store, pscsi_pmode_enable_hba.
"""
from __future__ import annotations

import itertools
import os

import pytest

from helpers import mount, umount, sh

_n = itertools.count(100)


@pytest.fixture(scope="module")
def m():
    mnt = mount("modern")
    yield mnt
    umount(mnt)


def fail(r, msg):
    assert r.returncode != 0, r
    assert msg in r.stderr, r.stderr


# -- version ---------------------------------------------------------------------------------
def test_version(m):
    u = os.uname()
    assert m.read("target/version") == (f"Target Engine Core ConfigFS Infrastructure v5.0 on "
                                        f"{u.sysname}/{u.machine} on {u.release}\n")


# -- dbroot ----------------------------------------------------------------------------------
def test_dbroot_default_and_set(m, tmp_path):
    default = m.read("target/dbroot")
    assert default == f"{m.state_dir}/var/target\n"
    assert os.path.isdir(default.strip())
    mark = m.log_mark()
    m.ok(f"echo {tmp_path} > {m.root}/target/dbroot")
    assert m.read("target/dbroot") == f"{tmp_path}\n"
    assert f"Target_Core_ConfigFS: db_root set to {tmp_path}" in m.log_since(mark)


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "long"])
def test_dbroot_bad(m, tmp_path, kind):
    # 6.1+ (kern_path): the lookup's errno; test_kernels checks the EINVAL of older versions
    before = m.read("target/dbroot")
    if kind == "missing":
        path, err, log = tmp_path / "nope", "No such file or directory", \
            f"db_root: cannot open: {tmp_path}/nope"
    elif kind == "file":
        (tmp_path / "f").write_text("x")
        path, err, log = tmp_path / "f", "Not a directory", \
            f"db_root: not a directory: {tmp_path}/f"
    elif kind == "empty":
        path, err, log = "", "No such file or directory", "db_root: cannot open: "
    else:
        path, err, log = "/" + "a" * 3000, "File name too long", "db_root: cannot open: /aaaa"
    mark = m.log_mark()
    fail(sh(f"echo '{path}' > {m.root}/target/dbroot"), err)
    assert log in m.log_since(mark)
    assert m.read("target/dbroot") == before


def test_dbroot_refused_while_a_device_exists(m, tmp_path):
    before = m.read("target/dbroot")
    m.ok(f"mkdir -p {m.core}/rd_mcp_0/r0")          # unconfigured still counts
    mark = m.log_mark()
    fail(sh(f"echo {tmp_path} > {m.root}/target/dbroot"), "Invalid argument")
    assert "db_root: cannot be changed because it's in use" in m.log_since(mark)
    assert m.read("target/dbroot") == before
    m.ok(f"rmdir {m.core}/rd_mcp_0/r0")
    m.ok(f"echo {tmp_path} > {m.root}/target/dbroot")  # allowed again
    assert m.read("target/dbroot") == f"{tmp_path}\n"


# -- HBA names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,plugin", [
    ("iblock_{n}", "iblock"), ("fileio_{n}", "fileio"), ("rd_mcp_{n}", "rd_mcp"),
    ("pscsi_{n}", "pscsi"), ("user_{n}", "user"),
    ("iblock_0x{n}", "iblock"), ("iblock_0{n}", "iblock"), ("iblock_00{n}", "iblock"),
])
def test_hba_mkdir_good(m, name, plugin):
    name = name.format(n=next(_n))
    mark = m.log_mark()
    m.ok(f"mkdir {m.core}/{name}")
    info = m.read(f"target/core/{name}/hba_info")
    assert info.startswith("HBA Index: ") and info.endswith(f" plugin: {plugin} version: v5.0\n")
    hba_id = int(info.split()[2])
    assert f"CORE_HBA[{hba_id}] - Attached HBA to Generic Target Core" in m.log_since(mark)
    assert m.read(f"target/core/{name}/hba_mode") == "0\n"
    assert sorted(os.listdir(f"{m.core}/{name}")) == ["hba_info", "hba_mode"]
    m.ok(f"rmdir {m.core}/{name}")
    assert f"CORE_HBA[{hba_id}] - Detached HBA from Generic Target Core" in m.log_since(mark)


def test_hba_id_and_zero_padded_names_are_distinct(m):
    m.ok(f"mkdir {m.core}/iblock_7 {m.core}/iblock_07 {m.core}/iblock_007")
    ids = {int(m.read(f"target/core/{n}/hba_info").split()[2])
           for n in ("iblock_7", "iblock_07", "iblock_007")}
    assert len(ids) == 3
    m.ok(f"rmdir {m.core}/iblock_7 {m.core}/iblock_07 {m.core}/iblock_007")


@pytest.mark.parametrize("name,err,log", [
    ("iblock", "Invalid argument", 'Unable to locate "_" for $SUBSYSTEM_PLUGIN_$HOST_ID'),
    ("iblock0", "Invalid argument", 'Unable to locate "_" for $SUBSYSTEM_PLUGIN_$HOST_ID'),
    ("iblock_a_b", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("rd_mcp", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("rd_mcp_", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("iblock_", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("iblock_-1", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("iblock_+1x", "Invalid argument", "kstrtoul() returned -22 for plugin_dep_id"),
    ("iblock_1_0", "Invalid argument", None),           # plugin "iblock_1" does not exist
    ("iblock_99999999999999999999999", "Numerical result out of range",
     "kstrtoul() returned -34 for plugin_dep_id"),
    ("nosuch_0", "Invalid argument", None),
    ("rd_dr_0", "Invalid argument", None),              # gone since 3.x
    ("Iblock_0", "Invalid argument", None),
    ("iblock_" + "0" * 57, "File name too long",
     "Passed *name strlen(): 64 exceeds TARGET_CORE_NAME_MAX_LEN: 64"),
    ("x" * 70, "File name too long",
     "Passed *name strlen(): 70 exceeds TARGET_CORE_NAME_MAX_LEN: 64"),
])
def test_hba_mkdir_bad(m, name, err, log):
    before = sorted(os.listdir(m.core))
    mark = m.log_mark()
    fail(sh(f"mkdir {m.core}/{name}"), err)
    new = m.log_since(mark)
    if log:
        assert log in new
    assert "Attached HBA" not in new
    assert sorted(os.listdir(m.core)) == before


def test_hba_name_63_chars_is_fine(m):
    name = "iblock_" + "0" * 55 + "7"  # octal: a 9 here would be EINVAL
    assert len(name) == 63
    m.ok(f"mkdir {m.core}/{name}")
    m.ok(f"rmdir {m.core}/{name}")


# -- HBA numbering ----------------------------------------------------------------------------
def test_hba_index_starts_at_1_and_is_never_reused(mnt):
    mnt.ok(f"mkdir {mnt.core}/iblock_0 {mnt.core}/fileio_0")
    assert mnt.read("target/core/iblock_0/hba_info") == \
        "HBA Index: 1 plugin: iblock version: v5.0\n"
    assert mnt.read("target/core/fileio_0/hba_info") == \
        "HBA Index: 2 plugin: fileio version: v5.0\n"
    mnt.ok(f"rmdir {mnt.core}/iblock_0")
    mnt.ok(f"mkdir {mnt.core}/iblock_0")
    assert mnt.read("target/core/iblock_0/hba_info") == \
        "HBA Index: 3 plugin: iblock version: v5.0\n"


@pytest.mark.parametrize("plugin,banner", [
    ("iblock", ["CORE_HBA[0] - TCM iBlock HBA Driver 4.0 on Generic Target Core Stack v5.0"]),
    ("fileio", ["CORE_HBA[0] - TCM FILEIO HBA Driver 4.0 on Generic Target Core Stack v5.0",
                "CORE_HBA[0] - Attached FILEIO HBA: 5 to Generic"]),
    ("rd_mcp", ["CORE_HBA[0] - TCM Ramdisk HBA Driver v4.0 on Generic Target Core Stack v5.0"]),
    ("pscsi", ["CORE_HBA[0] - TCM SCSI HBA Driver v4.0 on Generic Target Core Stack v5.0",
               "CORE_HBA[0] - Attached SCSI HBA to Generic"]),
])
def test_hba_banners(m, plugin, banner):
    # attach_hba runs before core_alloc_hba assigns hba_id: banners say CORE_HBA[0]
    mark = m.log_mark()
    m.ok(f"mkdir {m.core}/{plugin}_5")
    log = m.log_since(mark)
    for line in banner:
        assert line in log
    m.ok(f"rmdir {m.core}/{plugin}_5")


# -- hba_mode -------------------------------------------------------------------------------------
@pytest.mark.parametrize("plugin", ["iblock", "fileio", "rd_mcp", "user"])
@pytest.mark.parametrize("value", ["0", "1"])
def test_hba_mode_not_supported(m, plugin, value):
    name = f"{plugin}_{next(_n)}"
    m.ok(f"mkdir {m.core}/{name}")
    fail(sh(f"echo {value} > {m.core}/{name}/hba_mode"), "Invalid argument")
    assert m.read(f"target/core/{name}/hba_mode") == "0\n"
    m.ok(f"rmdir {m.core}/{name}")


def test_hba_mode_pscsi(m):
    name = f"pscsi_{next(_n)}"
    m.ok(f"mkdir {m.core}/{name}")
    path = f"{m.core}/{name}/hba_mode"
    mark = m.log_mark()
    fail(sh(f"echo abc > {path}"), "Invalid argument")
    assert "Unable to extract hba mode flag: -22" in m.log_since(mark)
    m.ok(f"echo 0 > {path}")
    assert m.read(f"target/core/{name}/hba_mode") == "0\n"
    host = int(name.split("_")[1])
    if os.path.exists(f"/sys/class/scsi_host/host{host}"):
        pytest.skip("a real SCSI host with this number exists here")
    mark = m.log_mark()
    fail(sh(f"echo 1 > {path}"), "Invalid argument")
    assert f"pSCSI: Unable to locate SCSI Host for phv_host_id: {host}" in m.log_since(mark)
    assert m.read(f"target/core/{name}/hba_mode") == "0\n"
    m.ok(f"rmdir {m.core}/{name}")
