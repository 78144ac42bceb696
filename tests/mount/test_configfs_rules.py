"""configfs's own rules (fs/configfs/), checked through a real FUSE mount with shell commands.

Kernel references: configfs_rmdir (EPERM for default groups, ENOTEMPTY via
configfs_detach_prep), configfs_unlink (EPERM for anything but a link), no ->create and
no ->rename in configfs_dir_inode_operations (VFS: EACCES / EPERM),
__configfs_open_file (EACCES when the mode or show/store is missing), fill_write_buffer
(one write(2) = one store, needs_read_fill=1), configfs_read_iter (show once per open).
"""
from __future__ import annotations

import errno
import os

import pytest

from helpers import mount, umount, sh


@pytest.fixture(scope="module")
def m(tmp_path_factory):
    mnt = mount("modern")
    img = tmp_path_factory.mktemp("rules") / "d.img"
    mnt.ok(f"mkdir -p {mnt.core}/fileio_0/d0")
    mnt.ok(f"echo fd_dev_name={img},fd_dev_size=1048576 > {mnt.core}/fileio_0/d0/control")
    yield mnt
    umount(mnt)


DEV = "target/core/fileio_0/d0"


def fail(r, msg):
    assert r.returncode != 0, r
    assert msg in r.stderr, r.stderr


# -- rmdir ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", [
    "target", "target/core", "target/core/alua", "target/core/alua/lu_gps",
    "target/core/alua/lu_gps/default_lu_gp",
    f"{DEV}/attrib", f"{DEV}/pr", f"{DEV}/wwn", f"{DEV}/alua", f"{DEV}/alua/default_tg_pt_gp",
    f"{DEV}/statistics", f"{DEV}/statistics/scsi_dev", f"{DEV}/action",
])
def test_rmdir_default_group_eperm(m, rel):
    mark = m.log_mark()
    fail(sh(f"rmdir {m.root}/{rel}"), "Operation not permitted")
    assert os.path.isdir(f"{m.root}/{rel}")
    assert "rmdir" in m.log_since(mark)


def test_rmdir_enotempty(m):
    fail(sh(f"rmdir {m.core}/fileio_0"), "Directory not empty")
    assert os.path.isdir(f"{m.root}/{DEV}")
    # a user-made tg_pt_gp inside the alua/ default group pins the device too
    m.ok(f"mkdir {m.root}/{DEV}/alua/gp1")
    fail(sh(f"rmdir {m.root}/{DEV}"), "Directory not empty")
    m.ok(f"rmdir {m.root}/{DEV}/alua/gp1")
    assert os.path.isdir(f"{m.root}/{DEV}/attrib")


def test_rmdir_of_attribute_is_enotdir(m):
    fail(sh(f"rmdir {m.root}/{DEV}/info"), "Not a directory")


# -- mkdir where there is no make_group -------------------------------------------------------
@pytest.mark.parametrize("rel", [f"{DEV}/attrib/x", f"{DEV}/wwn/x", f"{DEV}/pr/x",
                                 "target/core/alua/x"])
def test_mkdir_without_make_group_eperm(m, rel):
    fail(sh(f"mkdir {m.root}/{rel}"), "Operation not permitted")
    assert not os.path.exists(f"{m.root}/{rel}")


def test_mkdir_over_attribute_eexist(m):
    fail(sh(f"mkdir {m.root}/{DEV}/info"), "File exists")


# -- creating / removing / renaming files ------------------------------------------------------
@pytest.mark.parametrize("rel", [f"{DEV}/newfile", "target/core/newfile", f"{DEV}/attrib/nf"])
def test_create_file_eacces(m, rel):
    mark = m.log_mark()
    fail(sh(f"touch {m.root}/{rel}"), "Permission denied")
    fail(sh(f"echo x > {m.root}/{rel}"), "Permission denied")
    assert not os.path.exists(f"{m.root}/{rel}")
    assert "create" in m.log_since(mark)


@pytest.mark.parametrize("attr", ["info", "alias", "control"])
def test_touch_existing_attribute_succeeds(m, attr):
    # touch's open may fail (EACCES for info), but utimensat as root succeeds: exit 0
    before = m.read(f"{DEV}/alias")
    m.ok(f"touch {m.root}/{DEV}/{attr}")
    assert m.read(f"{DEV}/alias") == before  # opening for write stores nothing


@pytest.mark.parametrize("attr", ["info", "enable", "control", "attrib/block_size"])
def test_rm_attribute_eperm(m, attr):
    fail(sh(f"rm -f {m.root}/{DEV}/{attr}"), "Operation not permitted")
    assert os.path.exists(f"{m.root}/{DEV}/{attr}")


@pytest.mark.parametrize("src,dst", [
    (f"{DEV}/alias", f"{DEV}/alias2"),
    (f"{DEV}", "target/core/fileio_0/d9"),
    ("target/core/fileio_0", "target/core/fileio_9"),
])
def test_rename_eperm(m, src, dst):
    fail(sh(f"mv -T {m.root}/{src} {m.root}/{dst}"), "Operation not permitted")
    assert os.path.exists(f"{m.root}/{src}") and not os.path.exists(f"{m.root}/{dst}")


@pytest.mark.parametrize("rel", [f"{DEV}/lnk", "target/core/lnk", "target/lnk"])
def test_symlink_without_allow_link_eperm(m, rel):
    fail(sh(f"ln -s {m.root}/{DEV} {m.root}/{rel}"), "Operation not permitted")
    assert not os.path.lexists(f"{m.root}/{rel}")


# -- open modes -----------------------------------------------------------------------------
@pytest.mark.parametrize("attr", ["control"])
def test_read_write_only_eacces(m, attr):
    fail(sh(f"cat {m.root}/{DEV}/{attr}"), "Permission denied")


@pytest.mark.parametrize("attr", ["info", "attrib/hw_block_size", "../hba_info",
                                  "wwn/vpd_protocol_identifier", "pr/res_type"])
def test_write_read_only_eacces(m, attr):
    path = os.path.normpath(f"{m.root}/{DEV}/{attr}")
    before = open(path).read()
    fail(sh(f"echo 1 > {path}"), "Permission denied")
    assert open(path).read() == before


def test_open_rdwr_needs_both(m):
    with pytest.raises(PermissionError):
        os.open(f"{m.root}/{DEV}/control", os.O_RDWR)
    with pytest.raises(PermissionError):
        os.open(f"{m.root}/{DEV}/info", os.O_RDWR)
    os.close(os.open(f"{m.root}/{DEV}/alias", os.O_RDWR))


# -- one write(2) = one store ----------------------------------------------------------------
def test_printf_without_newline_is_one_store(m):
    m.ok(f"printf abc > {m.root}/{DEV}/alias")
    assert m.read(f"{DEV}/alias") == "abc\n"


def test_two_writes_in_one_open_are_two_stores(m):
    m.ok(f"{{ printf first; printf second; }} > {m.root}/{DEV}/alias")
    assert m.read(f"{DEV}/alias") == "second\n"


def test_split_token_is_not_joined(m, tmp_path):
    # "fd_dev_si" + "ze=512" are two stores: neither matches a token, both are ignored
    before = m.read(f"{DEV}/info")
    fd = os.open(f"{m.root}/{DEV}/control", os.O_WRONLY)
    try:
        assert os.write(fd, b"fd_dev_si") == 9
        assert os.write(fd, b"ze=512") == 6
    finally:
        os.close(fd)
    assert m.read(f"{DEV}/info") == before


def test_write_at_offset_is_still_a_whole_store(m):
    fd = os.open(f"{m.root}/{DEV}/alias", os.O_WRONLY)
    try:
        os.pwrite(fd, b"offs", 100)
    finally:
        os.close(fd)
    assert m.read(f"{DEV}/alias") == "offs\n"


def test_truncate_is_accepted_and_stores_nothing(m):
    """O_TRUNC (`echo >`) and truncate(2) on an attribute: configfs accepts both and the
    value stays (the store is the write alone)."""
    m.ok(f"echo keep > {m.root}/{DEV}/alias")
    m.ok(f"truncate -s 0 {m.root}/{DEV}/alias")
    fd = os.open(f"{m.root}/{DEV}/alias", os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert m.read(f"{DEV}/alias") == "keep\n"


@pytest.mark.parametrize("call", [
    lambda p: os.getxattr(p, "user.simfs"),
    lambda p: os.getxattr(p, "security.capability"),
    lambda p: os.setxattr(p, "user.simfs", b"1"),
])
def test_extended_attributes_unsupported(m, call):
    """configfs has no xattr handlers: getxattr/setxattr fail with EOPNOTSUPP (and the
    kernel stops asking for security.capability before each truncating open)."""
    for rel in (f"{DEV}/alias", DEV):
        with pytest.raises(OSError) as e:
            call(f"{m.root}/{rel}")
        assert e.value.errno == errno.EOPNOTSUPP
    assert os.listxattr(f"{m.root}/{DEV}/alias") == []
    assert m.read(f"{DEV}/alias")  # the attribute is unchanged and still readable


# -- show is cached per open file ----------------------------------------------------------
def test_show_cached_per_open_fd(m):
    path = f"{m.root}/{DEV}/alias"
    m.ok(f"echo one > {path}")
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pread(fd, 4096, 0) == b"one\n"
        m.ok(f"echo two > {path}")
        assert os.pread(fd, 4096, 0) == b"one\n"      # same open file: the cached page
        assert os.pread(fd, 4096, 2) == b"e\n"
        assert m.read(f"{DEV}/alias") == "two\n"       # a new open shows anew
        os.write(fd, b"three")                          # a write invalidates the page
        assert os.pread(fd, 4096, 0) == b"three\n"
    finally:
        os.close(fd)


# -- stat ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel,expect", [
    (f"{DEV}/info", "4096 444 regular file"),
    (f"{DEV}/control", "4096 200 regular file"),
    (f"{DEV}/enable", "4096 644 regular file"),
    (f"{DEV}/alias", "4096 644 regular file"),
    ("target/version", "4096 444 regular file"),
    ("target/dbroot", "4096 644 regular file"),
    ("target/core/fileio_0/hba_info", "4096 444 regular file"),
])
def test_attribute_stat(m, rel, expect):
    assert m.ok(f"stat -c '%s %a %F' {m.root}/{rel}").strip() == expect


@pytest.mark.parametrize("rel", ["target", "target/core", DEV, f"{DEV}/attrib"])
def test_directory_stat(m, rel):
    out = m.ok(f"stat -c '%a %F' {m.root}/{rel}").strip()
    assert out == "755 directory"


def test_ls_lists_attributes_and_groups(m):
    names = m.ok(f"ls {m.root}/{DEV}").split()
    for n in ("action", "alias", "alua", "alua_lu_gp", "attrib", "control", "enable", "info",
              "lba_map", "pr", "statistics", "udev_path", "wwn"):
        assert n in names


# -- readlink: no group of the core tree takes links (fabrics do), so check the model -------
def test_symlink_text_is_relative_to_root():
    """configfs_get_target_path: one "../" per item above the link, then the target's path."""
    from simfs.configfs import ConfigfsTree, Group

    class Linky(Group):
        def allow_link(self, name, target):
            return None

    root = Group("")
    a = root.add_default_group(Group("target"))
    b = a.add_default_group(Group("core"))
    tgt = b.add_default_group(Group("dev"))
    d = a.add_default_group(Group("fabric"))
    lun = d.add_default_group(Linky("lun_0"))
    tree = ConfigfsTree(root)
    tree.symlink("target/fabric/lun_0/x", "target/core/dev")
    assert tree.readlink("target/fabric/lun_0/x") == "../../../target/core/dev"
    assert lun.children["x"].target is tgt
    # the target is pinned while linked
    with pytest.raises(OSError) as e:
        tree.rmdir("target/core/dev")
    assert e.value.errno in (errno.EBUSY, errno.EPERM)
