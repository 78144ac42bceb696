"""Fixtures shared by every test folder; the helpers they use live in helpers.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import Unprivileged, mount, umount


@pytest.fixture
def mnt():
    """A fresh modern-profile mount (v5.0), unmounted afterwards."""
    m = mount("modern")
    yield m
    umount(m)


@pytest.fixture
def mnt_v3():
    """A fresh v3.0-profile mount (the seed's engine)."""
    m = mount("v3.0")
    yield m
    umount(m)


@pytest.fixture
def fileio_dev(mnt, tmp_path):
    """An enabled fileio device ``fileio_0/disk0`` on a sparse 64 MiB file."""
    img = tmp_path / "disk0.img"
    mnt.ok(f"mkdir -p {mnt.core}/fileio_0/disk0")
    mnt.ok(f"echo fd_dev_name={img},fd_dev_size=67108864 > {mnt.core}/fileio_0/disk0/control")
    mnt.ok(f"echo 1 > {mnt.core}/fileio_0/disk0/enable")
    return "target/core/fileio_0/disk0"


@pytest.fixture
def loopdev(tmp_path):
    """A real loop block device over a 32 MiB sparse file (losetup; we run as root)."""
    img = tmp_path / "loop.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"losetup unavailable here: {r.stderr.strip()}")
    dev = r.stdout.strip()
    yield dev
    subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture(scope="module")
def mnt_mod():
    """One modern-profile mount shared by a whole test module (state carries over)."""
    m = mount("modern")
    yield m
    umount(m)


@pytest.fixture
def unprivileged():
    """An ordinary user for tests of use without root.

    Needs root once, to create the user and to make /dev/fuse mode 0666 — what
    distributions ship; these machines have 0600, so the fixture sets it. The user runs the
    python that runs the tests (test.sh's virtual environment, made from Debian's python3
    with its system packages), so it uses the simfs installed there.
    """
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to create the throwaway user")
    py = sys.executable
    probe = "import simfs_plugins, simfs.daemon.fuse_adapter"
    if subprocess.run(["runuser", "-u", "nobody", "--", py, "-c", probe],
                      capture_output=True, cwd="/").returncode:
        pytest.skip(f"{py} and its simfs are not usable by other users")
    user = "simfs-test"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", user], check=True)
    os.chmod("/dev/fuse", 0o666)
    return Unprivileged(user, pwd.getpwnam(user).pw_dir, py)
