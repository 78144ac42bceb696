"""Shared fixtures: a real simfs FUSE mount driven by real shell commands.

Every test that touches the tree goes through the kernel's VFS: ``sh()`` runs bash, so
errno comes back as the shell's message ("Invalid argument", "File exists", ...).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

import pytest


def sh(cmd: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run one bash command line; returns the CompletedProcess (text mode)."""
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


@dataclass
class Mount:
    """A mounted simfs: ``root`` is the configfs root, ``core`` is target/core."""

    root: str
    state_dir: str
    profile: str

    @property
    def core(self) -> str:
        return f"{self.root}/target/core"

    def dmesg(self) -> str:
        """The whole kernel-style log of this mount."""
        return subprocess.run(["simfs", "dmesg", self.root], capture_output=True, text=True,
                              check=True).stdout

    def log_mark(self) -> int:
        """Length of the log now; pass to ``log_since`` to see only what a step logged."""
        return len(self.dmesg())

    def log_since(self, mark: int) -> str:
        return self.dmesg()[mark:]

    def read(self, rel: str) -> str:
        with open(os.path.join(self.root, rel)) as f:
            return f.read()

    def write(self, rel: str, text: str) -> subprocess.CompletedProcess:
        """``echo text > rel`` through the shell (one write(2), newline included)."""
        path = os.path.join(self.root, rel)
        return sh(f"echo {shquote(text)} > {shquote(path)}")

    def ok(self, cmd: str) -> str:
        """Run a shell command that must succeed; returns stdout."""
        r = sh(cmd)
        assert r.returncode == 0, f"{cmd!r} failed: {r.stderr}"
        return r.stdout


def shquote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _mount(profile: str, extra: list[str] | None = None) -> Mount:
    root = tempfile.mkdtemp(prefix="simfs-mnt-")
    st = tempfile.mkdtemp(prefix="simfs-state-")
    cmd = ["simfs", "mount", "--quiet", "--profile", profile, "--state-dir", st]
    cmd += extra or []
    subprocess.run(cmd + [root], check=True)
    return Mount(root, st, profile)


def _umount(m: Mount) -> None:
    subprocess.run(["simfs", "umount", m.root], check=False)


@pytest.fixture
def mnt():
    """A fresh modern-profile mount (v5.0), unmounted afterwards."""
    m = _mount("modern")
    yield m
    _umount(m)


@pytest.fixture
def mnt_v3():
    """A fresh v3.0-profile mount (the seed's engine)."""
    m = _mount("v3.0")
    yield m
    _umount(m)


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
    m = _mount("modern")
    yield m
    _umount(m)


@dataclass
class Unprivileged:
    """A throwaway ordinary user who runs ``simfs`` with Debian's python3."""

    user: str
    home: str
    src: str
    python: str = "/usr/bin/python3"

    def simfs_run(self, script: str, timeout: int = 120) -> subprocess.CompletedProcess:
        """``simfs run -- bash -c SCRIPT`` as this user (a user + mount namespace)."""
        return subprocess.run(
            ["runuser", "-u", self.user, "--", "env", f"HOME={self.home}",
             f"PYTHONPATH={self.src}", self.python, "-m", "simfs", "run", "--", "bash", "-c",
             script], capture_output=True, text=True, timeout=timeout, cwd="/")


@pytest.fixture
def unprivileged():
    """An ordinary user for tests of use without root.

    Needs root once, to create the user and to make /dev/fuse mode 0666 — what
    distributions ship; these machines have 0600, so the fixture sets it. The user runs
    Debian's python3 with simfs's dependencies from Debian packages (.ci/run installs them).
    """
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root to create the throwaway user")
    py = Unprivileged.python
    if subprocess.run([py, "-c", "import fusepy, loguru, psutil, sortedcontainers"],
                      capture_output=True).returncode:
        pytest.skip("Debian's python3 lacks python3-fusepy/loguru/psutil/sortedcontainers")
    user = "simfs-test"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", user], check=True)
    os.chmod("/dev/fuse", 0o666)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    return Unprivileged(user, pwd.getpwnam(user).pw_dir, src)
