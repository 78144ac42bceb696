"""A real FUSE mount driven by shell commands: the issue's first screen."""
import os
import subprocess
import tempfile

import pytest


@pytest.fixture
def mnt():
    d = tempfile.mkdtemp()
    st = tempfile.mkdtemp()
    subprocess.run(["simfs", "mount", "--state-dir", st, d], check=True)
    yield d
    subprocess.run(["simfs", "umount", d], check=True)


def sh(cmd):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)


def test_fileio_enable_and_bad_block_size(mnt, tmp_path):
    t = f"{mnt}/target/core"
    img = tmp_path / "disk0.img"
    assert sh(f"mkdir -p {t}/fileio_0/disk0").returncode == 0
    assert sh(f"echo fd_dev_name={img},fd_dev_size=134217728 > {t}/fileio_0/disk0/control").returncode == 0
    assert sh(f"echo 1 > {t}/fileio_0/disk0/enable").returncode == 0
    info = sh(f"cat {t}/fileio_0/disk0/info").stdout
    assert info.startswith("Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 16384\n")
    assert sh(f"cat {t}/fileio_0/hba_info").stdout == "HBA Index: 1 plugin: fileio version: v5.0\n"
    r = sh(f"echo 513 > {t}/fileio_0/disk0/attrib/block_size")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert sh(f"cat {t}/fileio_0/disk0/attrib/block_size").stdout == "512\n"
    log = sh(f"simfs dmesg {mnt}").stdout
    assert "Illegal value for block_device: 513" in log
    assert os.path.exists(img) and os.path.getsize(img) == 0  # sparse, never truncated/extended
    r = sh(f"echo 1 > {t}/fileio_0/disk0/enable")
    assert "File exists" in r.stderr
