"""lioexport's API against a simulated target: one fresh configfs tree per test."""
import os
import shutil
import subprocess

import pytest

import lioexport

IQN = "iqn.2003-01.org.example.lioexport:disk1"
HOST = "iqn.1994-05.com.redhat:client1"


def test_export_builds_the_tree(rtslib_root, configfs, tmp_path):
    img = tmp_path / "disk1.img"
    e = lioexport.export(rtslib_root, str(img), IQN, "127.0.0.1:3260", size=8 << 20)
    assert e.size == 8 << 20
    tpg = configfs.target / "iscsi" / IQN / "tpgt_1"
    assert (tpg / "np" / "127.0.0.1:3260").is_dir()
    (link,) = [p for p in (tpg / "lun/lun_0").iterdir() if p.is_symlink()]
    assert os.path.realpath(link).endswith("/" + lioexport._name(IQN))
    assert configfs.read(f"{os.path.relpath(os.path.realpath(link), configfs.path)}/info"
                         ).count(f"File: {img}") == 1
    assert configfs.read(f"target/iscsi/{IQN}/tpgt_1/enable") == "1\n"
    assert configfs.read(f"target/iscsi/{IQN}/tpgt_1/attrib/generate_node_acls") == "1\n"
    assert [x.iqn for x in lioexport.exports(rtslib_root)] == [IQN]


def test_export_with_acls(rtslib_root, configfs, tmp_path):
    lioexport.export(rtslib_root, str(tmp_path / "d.img"), IQN, size=1 << 20,
                     initiators=(HOST,))
    acl = configfs.target / "iscsi" / IQN / "tpgt_1" / "acls" / HOST
    assert (acl / "lun_0").is_dir()
    assert configfs.read(f"target/iscsi/{IQN}/tpgt_1/attrib/generate_node_acls") == "0\n"
    assert lioexport.exports(rtslib_root)[0].initiators == [HOST]


def test_unexport_removes_target_and_backstore(rtslib_root, configfs, tmp_path):
    lioexport.export(rtslib_root, str(tmp_path / "d.img"), IQN, size=1 << 20)
    lioexport.unexport(rtslib_root, IQN)
    assert not (configfs.target / "iscsi" / IQN).exists()
    assert list(rtslib_root.storage_objects) == []
    assert (tmp_path / "d.img").exists()  # the data stays
    with pytest.raises(LookupError):
        lioexport.unexport(rtslib_root, IQN)


def test_a_bad_portal_is_refused_by_the_kernel(rtslib_root, tmp_path):
    from rtslib_fb.utils import RTSLibError
    with pytest.raises(RTSLibError):
        lioexport.export(rtslib_root, str(tmp_path / "d.img"), IQN, "127.0.0.1:99999",
                         size=1 << 20)


def test_lists_a_target_it_did_not_make(rtslib_root, iscsi_target):
    (e,) = lioexport.exports(rtslib_root)
    assert e.iqn == iscsi_target.iqn and e.portal == iscsi_target.portal
    assert e.size == iscsi_target.size and e.initiators == []


@pytest.mark.skipif(shutil.which("iscsi-readcapacity16") is None, reason="needs libiscsi-bin")
def test_an_initiator_logs_in(rtslib_root, tmp_path):
    from simfs.pytest_plugin import free_port
    portal = f"127.0.0.1:{free_port()}"
    lioexport.export(rtslib_root, str(tmp_path / "d.img"), IQN, portal, size=4 << 20)
    r = subprocess.run(["iscsi-readcapacity16", f"iscsi://{portal}/{IQN}/0"],
                       capture_output=True, text=True, timeout=60)
    assert "Total size:4194304" in r.stdout, r.stdout + r.stderr
