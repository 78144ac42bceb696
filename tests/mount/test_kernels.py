"""``simfs mount --kernel VERSION``: each version's tree, defaults and behaviours, checked
through a real mount against the version table (simfs.core.kernels) and the kernel facts it
records (see docs/kernels.md)."""
from __future__ import annotations

import errno
import itertools
import os
import re

import pytest

from helpers import mount, sh, umount
from test_fabric_tree import kernel_lines, logged, make_dev, refused

from simfs.core import kernels

VERSIONS = kernels.VERSIONS
_n = itertools.count()
INIT = "iqn.1994-05.com.redhat:client1"


def files(path: str) -> list[str]:
    """The regular files of a directory in the order of the kernel's attribute table.

    configfs lists a directory newest first, so readdir shows the table reversed
    (test_readdir_newest_first checks that order itself).
    """
    return [e for e in reversed(os.listdir(path)) if os.path.isfile(os.path.join(path, e))]


@pytest.fixture(scope="module", params=VERSIONS)
def km(request):
    """One mount per version, shared by the listing tests of this module."""
    m = mount(request.param)
    m.ok(f"mkdir -p {m.root}/target/iscsi {m.root}/target/loopback")
    yield m
    umount(m)


@pytest.fixture
def fresh(request):
    """A fresh mount of the version the test is parametrized with."""
    made = []

    def make(version: str):
        m = mount(version)
        made.append(m)
        return m
    yield make
    for m in made:
        umount(m)


def iscsi_tpg(m) -> str:
    t = f"{m.root}/target/iscsi/iqn.2003-01.org.linux-iscsi.k:t{next(_n)}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    return t


def loop_tpg(m) -> str:
    t = f"{m.root}/target/loopback/naa.50014050000001{next(_n):02x}/tpgt_1"
    m.ok(f"mkdir -p {t}")
    return t


def link_lun(m, tpg: str, lun: int, dev: str) -> str:
    m.ok(f"mkdir -p {tpg}/lun/lun_{lun} && ln -s {dev} {tpg}/lun/lun_{lun}/dev")
    return f"{tpg}/lun/lun_{lun}"


# -- the tree of each version, in kernel order -------------------------------------------------------
def test_file_lists_in_kernel_order(km):
    k = kernels.get(km.profile)
    dev = make_dev(km, f"ls{next(_n)}")
    assert files(f"{dev}/attrib") == list(k.files("dev_attrib"))
    assert files(f"{dev}/wwn") == list(k.files("dev_wwn"))
    t = iscsi_tpg(km)
    assert files(t) == list(k.files("iscsi_tpg_base")) + list(k.files("tpg_base"))
    assert files(f"{t}/attrib") == list(k.files("iscsi_tpg_attrib"))
    wwn = os.path.dirname(t)
    params = list(k.files("wwn_param"))
    assert os.path.isdir(f"{wwn}/param") == bool(params)
    if params:
        assert files(f"{wwn}/param") == params
    assert files(f"{km.root}/target/iscsi") == list(k.files("iscsi_wwn"))
    km.ok(f"mkdir {t}/acls/{INIT}")
    assert files(f"{t}/acls/{INIT}/attrib") == list(k.files("iscsi_acl_attrib"))
    lt = loop_tpg(km)
    assert files(lt) == ["nexus", "transport_status", "address"] + \
        [f for f in k.files("tpg_base") if f != "enable"]


def test_readdir_newest_first(km):
    """configfs lists newest first: user-made entries, then default groups, then attributes,
    each in reverse of the order they were made; a remade entry moves to the front."""
    dev = make_dev(km, f"rd{next(_n)}")
    hba = os.path.dirname(dev)
    groups = [g for g in ("action", "attrib", "pr", "wwn", "alua", "statistics")
              if os.path.isdir(f"{dev}/{g}")]
    listing = km.ok(f"ls -U {dev}").split()
    assert listing[:len(groups)] == groups[::-1]
    assert listing[-1] == "info"   # the first attribute of target_core_dev_attrs
    if km.profile != "v3.0":
        assert listing[len(groups):] == ["lba_map", "alua_lu_gp", "enable", "udev_path",
                                         "alias", "control", "info"]
    km.ok(f"mkdir {hba}/second {hba}/third")
    assert km.ok(f"ls -U {hba}").split()[:3] == ["third", "second", os.path.basename(dev)]
    km.ok(f"rmdir {hba}/second && mkdir {hba}/second")
    assert km.ok(f"ls -U {hba}").split()[:2] == ["second", "third"]
    km.ok(f"rmdir {hba}/second {hba}/third")


def test_defaults(km):
    k = kernels.get(km.profile)
    dev = make_dev(km, f"df{next(_n)}")
    attrib = {f: km.read(f"{dev}/attrib/{f}".replace(km.root + "/", "")) for f in
              ("emulate_pr", "emulate_rsoc", "submit_type") if f in k.files("dev_attrib")}
    assert all(v == ("0\n" if f == "submit_type" else "1\n") for f, v in attrib.items())
    t = iscsi_tpg(km)
    rel = t[len(km.root) + 1:]
    wwn = os.path.dirname(rel)
    if "rtpi" in k.files("tpg_base"):
        assert km.read(f"{rel}/rtpi") == "0\n"
    if "cmd_completion_affinity" in k.files("wwn_param"):
        assert km.read(f"{wwn}/param/cmd_completion_affinity") == "-1\n"
    if "default_submit_type" in k.files("wwn_param"):
        assert km.read(f"{wwn}/param/default_submit_type") == "1\n"
        assert km.read(f"{wwn}/param/direct_submit_supported") == "1\n"
        lw = os.path.dirname(loop_tpg(km))[len(km.root) + 1:]
        assert km.read(f"{lw}/param/default_submit_type") == "2\n"
        assert km.read(f"{lw}/param/direct_submit_supported") == "0\n"
    if "cpus_allowed_list" in k.files("iscsi_wwn"):
        n = os.cpu_count()
        assert km.read("target/iscsi/cpus_allowed_list") == (f"0-{n - 1}\n" if n > 1 else "0\n")
    if "netif_timeout" in k.files("iscsi_tpg_attrib"):
        assert km.read(f"{rel}/attrib/netif_timeout") == "2\n"
    km.ok(f"mkdir {t}/acls/{INIT}")
    if "authentication" in k.files("iscsi_acl_attrib"):
        assert km.read(f"{rel}/acls/{INIT}/attrib/authentication") == "-1\n"
    assert km.read(f"{rel}/attrib/default_cmdsn_depth") == "64\n"


def test_rd_dummy_from_5_13(km):
    """rd_mcp's `rd_dummy=1` (5.13): peripheral type 0x3f, `dummy: 1` in info, its log line.
    Before, the parser skips the key as unknown: the write succeeds, nothing is logged and
    the device stays a disk, its info ending at `nullio: 0`."""
    has = kernels.get(km.profile).has("rd_dummy")
    rel = f"target/core/rd_mcp_7/dm{next(_n)}"
    km.ok(f"mkdir -p {km.root}/{rel}")
    lines = logged(km, f"echo rd_pages=8,rd_dummy=1 > {km.root}/{rel}/control")
    assert lines == ["RAMDISK: Referencing Page Count: 8"] + (
        ["RAMDISK: Setting DUMMY flag: 1"] if has else [])
    km.ok(f"echo 1 > {km.root}/{rel}/enable")
    assert km.read(f"{rel}/info").endswith(
        "SG_table_count: 1  nullio: 0" + (" dummy: 1\n" if has else "\n"))
    assert km.read(f"{rel}/statistics/scsi_lu/dev_type") == ("63\n" if has else "0\n")


def test_scsi_lu_identity_is_padded_to_the_field(km):
    dev = make_dev(km, f"lu{next(_n)}")
    rel = dev[len(km.root) + 1:]
    assert km.read(f"{rel}/statistics/scsi_lu/vend") == "LIO-ORG \n"
    assert km.read(f"{rel}/statistics/scsi_lu/prod") == "FILEIO          \n"
    assert km.read(f"{rel}/statistics/scsi_lu/rev") == "4.0 \n"


# -- RTPI: per LUN from a device counter (<6.3), per TPG (6.3+) ------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_relative_port_ids(fresh, version):
    m = fresh(version)
    k = kernels.get(version)
    dev = make_dev(m, "rt")
    t = iscsi_tpg(m)
    a = link_lun(m, t, 0, dev)
    b = link_lun(m, t, 1, dev)
    rel = lambda p: p[len(m.root) + 1:]  # noqa: E731
    if not k.has("tpg_rtpi"):
        # core_alloc_rtpi: each link takes the device's next id
        assert m.read(f"{rel(a)}/statistics/scsi_port/indx") == "1\n"
        assert m.read(f"{rel(b)}/statistics/scsi_port/indx") == "2\n"
        assert m.read(f"{rel(b)}/statistics/scsi_tgt_port/name") == "iSCSIPort#2\n"
        assert not os.path.exists(f"{t}/rtpi")
        return
    # 0 until enabled, then the lowest free id, shared by every LUN of the TPG
    assert m.read(f"{rel(a)}/statistics/scsi_port/indx") == "0\n"
    m.ok(f"echo 1 > {t}/enable")
    assert m.read(f"{rel(t)}/rtpi") == "0x1\n"
    for lun in (a, b):
        assert m.read(f"{rel(lun)}/statistics/scsi_port/indx") == "1\n"
        assert m.read(f"{rel(lun)}/statistics/scsi_tgt_port/indx") == "1\n"
        assert m.read(f"{rel(lun)}/statistics/scsi_tgt_port/name") == "iSCSIPort#1\n"
    # a write while enabled: EINVAL, the kernel's line, nothing changes
    refused(m, f"echo 5 > {t}/rtpi", errno.EINVAL,
            re.escape("iSCSI_TPG[1] - Can not change RTPI on enabled TPG"))
    assert m.read(f"{rel(t)}/rtpi") == "0x1\n"
    refused(m, f"echo 0 > {t}/rtpi", errno.EINVAL, None)
    refused(m, f"echo 65536 > {t}/rtpi", errno.ERANGE, None)
    # a second TPG gets 2; a manual id already in use keeps the TPG disabled
    t2 = iscsi_tpg(m)
    m.ok(f"echo 1 > {t2}/enable")
    assert m.read(f"{rel(t2)}/rtpi") == "0x2\n"
    m.ok(f"echo 0 > {t2}/enable")
    assert m.read(f"{rel(t2)}/rtpi") == "0x2\n"  # kept after disable
    m.ok(f"echo 1 > {t2}/rtpi")
    refused(m, f"echo 1 > {t2}/enable", errno.EINVAL,
            re.escape("iSCSI_TPG[1] - Can not set RTPI 0x1, it is already busy"))
    assert m.read(f"{rel(t2)}/enable") == "0\n"
    m.ok(f"echo 0x30 > {t2}/rtpi && echo 1 > {t2}/enable")
    assert m.read(f"{rel(t2)}/rtpi") == "0x30\n"


# -- TPG enable: iSCSI's own before 5.16, the core's after ---------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_tpg_enable(fresh, version):
    m = fresh(version)
    t = iscsi_tpg(m)
    if kernels.get(version).value("tpg_enable") == "fabric":
        refused(m, f"echo 2 > {t}/enable", errno.EINVAL,
                re.escape("Illegal value for tpg_enable: 2"))
        refused(m, f"echo y > {t}/enable", errno.EINVAL, None)
        refused(m, f"echo 0 > {t}/enable", errno.EINVAL,
                re.escape("iSCSI Target Portal Group: 1 is already inactive, ignoring request."))
        m.ok(f"echo 1 > {t}/enable")
        refused(m, f"echo 1 > {t}/enable", errno.EINVAL,
                re.escape("iSCSI target portal group: 1 is already active, ignoring request."))
    else:
        refused(m, f"echo 2 > {t}/enable", errno.EINVAL, None)
        assert logged(m, f"echo 0 > {t}/enable") == []  # the current state: nothing to do
        m.ok(f"echo y > {t}/enable && echo on > {t}/enable")
    assert m.read(t[len(m.root) + 1:] + "/enable") == "1\n"


# -- dbroot: which state refuses a change, and how a bad path fails ----------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_dbroot_rules(fresh, version, tmp_path):
    m = fresh(version)
    k = kernels.get(version)
    before = m.read("target/dbroot")
    db = f"{m.root}/target/dbroot"
    if k.value("dbroot_check") == "kern_path":
        refused(m, f"echo /nonexistent/x > {db}", errno.ENOENT,
                re.escape("db_root: cannot open: /nonexistent/x"))
        refused(m, f"echo /etc/hostname > {db}", errno.ENOTDIR,
                re.escape("db_root: not a directory: /etc/hostname"))
    else:
        refused(m, f"echo /nonexistent/x > {db}", errno.EINVAL,
                re.escape("db_root: cannot open: /nonexistent/x"))
        refused(m, f"echo /etc/hostname > {db}", errno.EINVAL,
                re.escape("db_root: not a directory: /etc/hostname"))
    assert m.read("target/dbroot") == before
    m.ok(f"mkdir -p {m.root}/target/loopback")
    if k.value("dbroot_busy") == "fabrics":
        refused(m, f"echo {tmp_path} > {db}", errno.EINVAL,
                re.escape("db_root: cannot be changed: target drivers registered"))
        assert m.read("target/dbroot") == before
        return
    m.ok(f"echo {tmp_path} > {db}")
    assert m.read("target/dbroot") == f"{tmp_path}\n"
    make_dev(m, "busy", enable=False)
    refused(m, f"echo / > {db}", errno.EINVAL,
            re.escape("db_root: cannot be changed because it's in use"))
    assert m.read("target/dbroot") == f"{tmp_path}\n"


def test_relative_dbroot_is_the_writers(mnt, tmp_path):
    (tmp_path / "db").mkdir()
    r = sh(f"echo db > {mnt.root}/target/dbroot", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert mnt.read("target/dbroot") == "db\n"  # kept as written, as the kernel does
    refused(mnt, f"cd / && echo db > {mnt.root}/target/dbroot", errno.ENOENT,
            re.escape("db_root: cannot open: db"))


# -- device attributes that changed -------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_alua_pgr_support_writes(fresh, version):
    m = fresh(version)
    dev = make_dev(m, "flags")
    if not kernels.get(version).has("dev_flags_writable"):
        r = sh(f"echo 1 > {dev}/attrib/pgr_support")
        assert r.returncode != 0 and os.strerror(errno.EACCES) in r.stderr
        return
    assert logged(m, f"echo 1 > {dev}/attrib/pgr_support") == []  # unchanged: accepted
    refused(m, f"echo 0 > {dev}/attrib/pgr_support", errno.ENOSYS,
            r"dev\[[0-9a-f]+\]: Unable to change SE Device pgr_support: pgr_support has fixed "
            r"value")
    assert m.read(dev[len(m.root) + 1:] + "/attrib/pgr_support") == "1\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_iblock_pgr_support(fresh, version, loopdev):
    m = fresh(version)
    d = f"{m.core}/iblock_0/pgr"
    m.ok(f"mkdir -p {d} && echo udev_path={loopdev} > {d}/control && echo 1 > {d}/enable")
    rel = d[len(m.root) + 1:]
    k = kernels.get(version)
    if k.has("iblock_pgr_passthrough"):
        m.ok(f"echo 0 > {d}/attrib/pgr_support")
        assert m.read(f"{rel}/attrib/pgr_support") == "0\n"
        assert m.read(f"{rel}/pr/res_type") == "SPC_PASSTHROUGH\n"
    elif k.has("dev_flags_writable"):
        refused(m, f"echo 0 > {d}/attrib/pgr_support", errno.ENOSYS,
                r"dev\[[0-9a-f]+\]: Unable to change SE Device pgr_support: pgr_support has "
                r"fixed value")
        assert m.read(f"{rel}/pr/res_type") == "SPC3_PERSISTENT_RESERVATIONS\n"
    else:
        r = sh(f"echo 0 > {d}/attrib/pgr_support")
        assert r.returncode != 0 and os.strerror(errno.EACCES) in r.stderr
    m.ok(f"rmdir {d}")


@pytest.mark.parametrize("version", VERSIONS)
def test_unmap_setup_on_a_disabled_device(fresh, version):
    m = fresh(version)
    dev = make_dev(m, "um", enable=False)
    how = kernels.get(version).value("unmap_setup")
    if how == "try":
        refused(m, f"echo 1 > {dev}/attrib/emulate_tpu", errno.ENODEV,
                re.escape("Generic Block Discard setup for emulate_tpu requires device to be "
                          "configured"))
    else:
        refused(m, f"echo 1 > {dev}/attrib/emulate_tpu", errno.ENOSYS,
                re.escape("Generic Block Discard not supported"))
    assert m.read(dev[len(m.root) + 1:] + "/attrib/emulate_tpu") == "0\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_lu_gp_members_terminators(fresh, version):
    m = fresh(version)
    make_dev(m, "mem")
    with open(f"{m.root}/target/core/alua/lu_gps/default_lu_gp/members", "rb") as f:
        data = f.read()
    nul = b"\0" if kernels.get(version).has("lu_gp_members_nul") else b""
    assert data == b"fileio_0/mem\n" + nul


@pytest.mark.parametrize("version", VERSIONS)
def test_fabric_name_or_alias(fresh, version):
    m = fresh(version)
    if kernels.get(version).has("fabric_alias_lookup"):
        m.ok(f"mkdir {m.root}/target/iscsi && rmdir {m.root}/target/iscsi && "
             f"mkdir {m.root}/target/iSCSI")
        return
    m.ok(f"mkdir {m.root}/target/iscsi && rmdir {m.root}/target/iscsi")
    r = sh(f"mkdir {m.root}/target/iSCSI")
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr
    assert not os.path.exists(f"{m.root}/target/iSCSI")


# -- iSCSI ACLs --------------------------------------------------------------------------------------
def test_acl_authentication(mnt):
    t = iscsi_tpg(mnt)
    a = f"{t}/acls/{INIT}/attrib/authentication"
    mnt.ok(f"mkdir {t}/acls/{INIT}")
    rel = a[len(mnt.root) + 1:]
    for bad in ("2", "-2", "x"):
        refused(mnt, f"echo {bad} > {a}", errno.EINVAL, None)
    assert mnt.read(rel) == "-1\n"
    mnt.ok(f"echo 0 > {a}")
    assert mnt.read(rel) == "0\n"
    mnt.ok(f"echo 1 > {a} && echo -1 > {a}")
    assert mnt.read(rel) == "-1\n"


def test_cmdsn_depth_zero_reads_one(mnt):
    t = iscsi_tpg(mnt)
    mnt.ok(f"mkdir {t}/acls/{INIT}")
    d = f"{t}/acls/{INIT}/cmdsn_depth"
    lines = logged(mnt, f"echo 0 > {d}")
    assert f"Queue depth for iSCSI Initiator Node: {INIT} is 0,defaulting to 1." in lines
    assert mnt.read(d[len(mnt.root) + 1:]) == "1\n"
    refused(mnt, f"echo 513 > {d}", errno.EINVAL,
            re.escape("Passed cmdsn_depth: 513 exceeds TA_DEFAULT_CMDSN_DEPTH_MAX: 512"))
    assert mnt.read(d[len(mnt.root) + 1:]) == "1\n"


def test_cpus_allowed_list(mnt):
    mnt.ok(f"mkdir -p {mnt.root}/target/iscsi")
    c = f"{mnt.root}/target/iscsi/cpus_allowed_list"
    before = mnt.read("target/iscsi/cpus_allowed_list")
    refused(mnt, f"echo x > {c}", errno.EINVAL, None)
    refused(mnt, f"echo 4096 > {c}", errno.ERANGE, None)
    assert mnt.read("target/iscsi/cpus_allowed_list") == before
    mnt.ok(f"echo 0 > {c}")
    assert mnt.read("target/iscsi/cpus_allowed_list") == "0\n"


# -- indexes -----------------------------------------------------------------------------------------
def test_failed_hba_mkdir_uses_an_index(mnt):
    mnt.ok(f"mkdir {mnt.core}/fileio_1 && mkdir {mnt.core}/fileio_1/a")
    first = int(mnt.read("target/core/fileio_1/a/statistics/scsi_dev/inst"))
    r = sh(f"mkdir {mnt.core}/nosuch_0")
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr
    mnt.ok(f"mkdir {mnt.core}/fileio_2 && mkdir {mnt.core}/fileio_2/b")
    assert int(mnt.read("target/core/fileio_2/b/statistics/scsi_dev/inst")) == first + 2


def test_transport_index_is_the_iqns_own(mnt):
    dev = make_dev(mnt, "tr")
    t0 = iscsi_tpg(mnt)
    t1 = iscsi_tpg(mnt)
    for t, want in ((t0, "0\n"), (t1, "1\n")):
        lun = link_lun(mnt, t, 0, dev)
        assert mnt.read(lun[len(mnt.root) + 1:] + "/statistics/scsi_transport/indx") == want
    mnt.ok(f"rm {t0}/lun/lun_0/dev && rmdir {t0}/lun/lun_0 {t0} {os.path.dirname(t0)}")
    t2 = iscsi_tpg(mnt)  # the freed index comes back
    lun = link_lun(mnt, t2, 0, dev)
    assert mnt.read(lun[len(mnt.root) + 1:] + "/statistics/scsi_transport/indx") == "0\n"


# -- configfs's order of checks ----------------------------------------------------------------------
def test_rmdir_of_a_link_target_is_busy_before_not_empty(mnt):
    dev = make_dev(mnt, "rb")
    t = iscsi_tpg(mnt)
    lun = link_lun(mnt, t, 0, dev)
    mnt.ok(f"mkdir -p {t}/acls/{INIT}/lun_0 && ln -s {lun} {t}/acls/{INIT}/lun_0/map")
    mark = mnt.log_mark()
    r = sh(f"rmdir {lun}")
    assert r.returncode != 0 and os.strerror(errno.EBUSY) in r.stderr, r.stderr
    assert kernel_lines(mnt.log_since(mark)) == []  # configfs itself logs nothing
    assert os.path.islink(f"{lun}/dev")
    # an exported device with a user target port group: EBUSY too
    mnt.ok(f"mkdir {dev}/alua/gp1")
    r = sh(f"rmdir {dev}")
    assert r.returncode != 0 and os.strerror(errno.EBUSY) in r.stderr, r.stderr
    assert os.path.isdir(f"{dev}/alua/gp1")


def test_symlink_where_no_links_is_eperm_first(mnt):
    r = sh(f"ln -s /no/such/thing {mnt.core}/x")
    assert r.returncode != 0 and os.strerror(errno.EPERM) in r.stderr, r.stderr
    t = loop_tpg(mnt)
    mnt.ok(f"mkdir {t}/lun/lun_0")
    r = sh(f"ln -s /no/such/thing {t}/lun/lun_0/x")
    assert r.returncode != 0 and os.strerror(errno.ENOENT) in r.stderr, r.stderr


@pytest.mark.parametrize("version", [v for v in VERSIONS
                                     if "netif_timeout" in kernels.get(v).files("iscsi_tpg_attrib")])
def test_netif_timeout_range(fresh, version):
    m = fresh(version)
    t = iscsi_tpg(m)
    for val, log in (("16", "Requested Network Interface Timeout 16 larger than maximum 15"),
                     ("1", "Requested Network Interface Timeout 1 smaller than minimum 2")):
        refused(m, f"echo {val} > {t}/attrib/netif_timeout", errno.EINVAL, re.escape(log))
    assert m.read(t[len(m.root) + 1:] + "/attrib/netif_timeout") == "2\n"
    m.ok(f"echo 15 > {t}/attrib/netif_timeout")


# -- v3.0 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["foo=1", "rd_pages", "rd_pages=abc", "rd_nullio=1"])
def test_v30_control_needs_a_known_key(mnt_v3, text):
    d = f"{mnt_v3.core}/rd_mcp_0/c{next(_n)}"
    mnt_v3.ok(f"mkdir -p {d}")
    r = sh(f"echo {text} > {d}/control")
    assert r.returncode != 0 and os.strerror(errno.EINVAL) in r.stderr, r.stderr
    mnt_v3.ok(f"echo rd_pages=8 > {d}/control && echo 1 > {d}/enable")


def test_v30_wwn_and_lu_gp_need_the_device(mnt_v3):
    d = f"{mnt_v3.core}/rd_mcp_0/w{next(_n)}"
    mnt_v3.ok(f"mkdir -p {d}")
    for f in ("wwn/vpd_unit_serial", "wwn/vpd_assoc_logical_unit", "alua_lu_gp"):
        r = sh(f"cat {d}/{f}")
        assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr, (f, r.stderr)
    r = sh(f"echo default_lu_gp > {d}/alua_lu_gp")
    assert r.returncode != 0 and os.strerror(errno.ENODEV) in r.stderr, r.stderr
    mnt_v3.ok(f"echo sn-1 > {d}/wwn/vpd_unit_serial")  # writing the serial is allowed
    mnt_v3.ok(f"echo rd_pages=8 > {d}/control && echo 1 > {d}/enable")
    assert mnt_v3.read(d[len(mnt_v3.root) + 1:] + "/wwn/vpd_unit_serial") == \
        "T10 VPD Unit Serial Number: sn-1\n"


# -- the option ------------------------------------------------------------------------------------
def test_kernel_option(tmp_path):
    import subprocess
    mp = tmp_path / "mp"
    mp.mkdir()
    bad = subprocess.run(["simfs", "mount", "--kernel", "5.15", str(mp)], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "invalid choice: '5.15'" in bad.stderr
    both = subprocess.run(["simfs", "mount", "--kernel", "6.1", "--profile", "5.14", str(mp)],
                          capture_output=True, text=True)
    assert both.returncode != 0 and "disagree" in both.stderr
    r = subprocess.run(["simfs", "mount", "--kernel", "6.1", "--profile", "6.1", "--state-dir",
                        str(tmp_path / "st"), str(mp)], capture_output=True, text=True)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"simfs: 6.1 target configfs mounted at {mp} ")
        assert "netif_timeout" in kernels.get("6.1").files("iscsi_tpg_attrib")
    finally:
        subprocess.run(["simfs", "umount", str(mp)], check=False)


def test_v30_rmdir_log_lines(mnt_v3):
    d = f"{mnt_v3.core}/rd_mcp_0/x{next(_n)}"
    mnt_v3.ok(f"mkdir -p {d} && echo rd_pages=8 > {d}/control && echo 1 > {d}/enable")
    lines = logged(mnt_v3, f"rmdir {d}")
    assert re.fullmatch(r"Calling se_free_virtual_device\(\) for se_dev_ptr: [0-9a-f]{8}",
                        lines[0]), lines
    assert any(re.fullmatch(r"Deallocating se_subsystem_dev_t: [0-9a-f]{8}", ln)
               for ln in lines), lines
