"""Shared test helpers: a real simfs FUSE mount driven by real shell commands.

Every test that touches the tree goes through the kernel's VFS: ``sh()`` runs bash, so
errno comes back as the shell's message ("Invalid argument", "File exists", ...).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from simfs.iscsi import digest as D
from simfs.iscsi import pdu as P
from simfs.iscsi.text import encode_text, parse_text


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


class RawInitiator:
    """A minimal iSCSI initiator over a socket, for what libiscsi's tools cannot do (data
    digests, protocol corners, commands no tool sends). ``target`` defaults to
    tests/iscsi_fake.py's."""

    def __init__(self, port: int, target: str = "iqn.2003-01.org.linux-iscsi.sim:t1",
                 initiator: str = "iqn.2026-01.test:raw"):
        self.target, self.initiator = target, initiator
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.hd = self.dd = False
        self.cmdsn = 1
        self.statsn = 0
        self.itt = 0x100

    def send(self, bhs, data=b""):
        parts = [bytes(bhs)]
        if self.hd:
            parts.append(D.digest(bytes(bhs)))
        if data:
            pad = P.PADDING[len(data) & 3]
            parts += [data, pad]
            if self.dd:
                parts.append(D.digest(data, pad))
        self.sock.sendall(b"".join(parts))

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def recv(self):
        bhs = self.recv_exact(48)
        if self.hd:
            assert self.recv_exact(4) == D.digest(bhs)
        p = P.Pdu(bhs)
        n = p.dlength
        data = b""
        if n:
            raw = self.recv_exact(n + P.pad_len(n))
            if self.dd:
                assert self.recv_exact(4) == D.digest(raw)
            data = raw[:n]
        p.data = data
        return p

    def login(self, keys, csg, nsg, transit=True, isid=b"\x80\x00\x00\x00\x12\x34"):
        data = encode_text(keys)
        self.send(P.build_login_req(isid, 0, 0x1, 0, self.cmdsn, self.statsn, csg, nsg,
                                    transit, len(data)), data)
        rsp = self.recv()
        self.statsn = rsp.u32(24) + 1
        return rsp, dict(parse_text(rsp.data))

    def full_login(self, digests=False):
        base = [("InitiatorName", self.initiator), ("TargetName", self.target),
                ("SessionType", "Normal"), ("AuthMethod", "None")]
        rsp, keys = self.login(base, 0, 1)
        assert (rsp.bhs[36], rsp.bhs[37]) == (0, 0)
        assert keys == {"AuthMethod": "None", "TargetAlias": "LIO Target",
                        "TargetPortalGroupTag": "1"}
        dg = "CRC32C" if digests else "None"
        rsp, keys = self.login([("HeaderDigest", dg), ("DataDigest", dg),
                                ("MaxRecvDataSegmentLength", "4096"),
                                ("ImmediateData", "No"), ("InitialR2T", "Yes"),
                                ("MaxBurstLength", "8192"), ("FirstBurstLength", "4096"),
                                ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0")],
                               1, 3)
        assert rsp.bhs[1] & 0x83 == 0x83 and rsp.tsih != 0
        assert keys["MaxRecvDataSegmentLength"] == "262144"  # the target's MaxXmitDSL
        # the kernel leaves out answers RFC 7143 makes optional (AND with No, OR with Yes)
        assert "ImmediateData" not in keys and "InitialR2T" not in keys
        self.hd = self.dd = digests
        self.exp_cmdsn = rsp.u32(28)
        return keys

    def scsi(self, cdb, read_len=0, write=b"", lun=0):
        self.itt += 1
        flags = P.F_FINAL | (P.CMD_READ if read_len else 0) | (P.CMD_WRITE if write else 0)
        edtl = read_len or len(write)
        self.send(P.build_scsi_cmd(flags, lun, self.itt, edtl, self.cmdsn, self.statsn,
                                   cdb, 0))
        self.cmdsn += 1
        data = bytearray()
        while True:
            p = self.recv()
            if p.opcode == P.OP_R2T:
                off, length, ttt = p.u32(40), p.u32(44), p.u32(20)
                sn = 0
                for o in range(off, off + length, 4096):
                    chunk = write[o:min(o + 4096, off + length)]
                    last = o + len(chunk) >= off + length
                    self.send(P.build_data_out(last, 0, self.itt, ttt, self.statsn, sn, o,
                                               len(chunk)), chunk)
                    sn += 1
                continue
            if p.opcode == P.OP_DATA_IN:
                assert len(p.data) <= 4096
                data += p.data
                if p.flags & P.DATAIN_STATUS:
                    self.statsn = p.u32(24) + 1
                    return p.bhs[3], bytes(data), p
                continue
            if p.opcode == P.OP_NOOP_IN:
                self.answer_nop_in(p)
                continue
            assert p.opcode == P.OP_SCSI_RSP, p
            self.statsn = p.u32(24) + 1
            return p.bhs[3], bytes(data), p

    def answer_nop_in(self, p):
        """A target's ping (NOP-In, ITT 0xffffffff) asks for a NOP-Out with its TTT, as
        every initiator answers it (RFC 7143 11.19); a target drops a silent connection."""
        ttt = p.u32(20)
        if ttt == 0xFFFFFFFF:
            return
        h = bytearray(P.BHS_LEN)
        h[0], h[1] = P.OP_NOOP_OUT | 0x40, 0x80       # immediate, final
        for off, v in ((16, 0xFFFFFFFF), (20, ttt), (24, self.cmdsn), (28, self.statsn)):
            h[off:off + 4] = v.to_bytes(4, "big")
        self.send(h)

    def close(self):
        self.sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    """Until something listens on 127.0.0.1:``port`` (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def venv_with(d: Path, package: Path) -> Path:
    """A virtual environment in ``d`` layered on the running one (its site-packages and its
    editable-install finders on a .pth, so this simfs and simfs_plugins are seen), with
    ``package`` pip-installed into it: a plugin from another package, as a user installs
    one. Skips the test when pip cannot build it here."""
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(d)
    py = d / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    parent = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    finders = [line for p in parent for pth in Path(p).glob("__editable__*.pth")
               for line in pth.read_text().splitlines() if line.startswith("import ")]
    Path(site, "parent-env.pth").write_text("\n".join(parent + finders) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", site, str(package)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"pip cannot build {package.name} here: {r.stderr[-300:]}")
    return d


def saved_config(d):
    """An rtslib-fb saveconfig JSON with every list of objects in one order.

    rtslib-fb saves objects in readdir order, and configfs lists a directory newest first;
    a restore makes them in the saved order, so on the kernel too the second save lists
    siblings (backstores, targets, LUNs, ACLs) in another order than the first.
    """
    import json
    if isinstance(d, dict):
        return {k: saved_config(v) for k, v in d.items()}
    if isinstance(d, list):
        items = [saved_config(v) for v in d]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return d
