"""Shared test helpers: a real simfs FUSE mount driven by real shell commands.

Every test that touches the tree goes through the kernel's VFS: ``sh()`` runs bash, so
errno comes back as the shell's message ("Invalid argument", "File exists", ...).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

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


def mount(profile: str, extra: list[str] | None = None) -> Mount:
    """``simfs mount`` a fresh tree of ``profile`` on a new temporary directory."""
    root = tempfile.mkdtemp(prefix="simfs-mnt-")
    st = tempfile.mkdtemp(prefix="simfs-state-")
    cmd = ["simfs", "mount", "--quiet", "--profile", profile, "--state-dir", st]
    cmd += extra or []
    subprocess.run(cmd + [root], check=True)
    return Mount(root, st, profile)


def umount(m: Mount) -> None:
    """``simfs umount``; never fails (a test may have unmounted already)."""
    subprocess.run(["simfs", "umount", m.root], check=False)


@dataclass
class Unprivileged:
    """A throwaway ordinary user who runs ``simfs`` with Debian's python3."""

    user: str
    home: str
    python: str

    def simfs_run(self, script: str, timeout: int = 120) -> subprocess.CompletedProcess:
        """``simfs run -- bash -c SCRIPT`` as this user (a user + mount namespace)."""
        return subprocess.run(
            ["runuser", "-u", self.user, "--", "env", f"HOME={self.home}", self.python, "-m", "simfs", "run", "--", "bash", "-c",
             script], capture_output=True, text=True, timeout=timeout, cwd="/")
