"""Secure by default: a wildcard portal listens on loopback unless the mount says
``--listen-any``; the tree shows the portal as written, the log says where it listens."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from helpers import free_port, mount, umount  # noqa: E402


IQN = "iqn.2026-12.org.simfs:listen"


def _other_address() -> str | None:
    """A non-loopback IPv4 address of this machine (None when there is none)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return next((a for a in out if "." in a and not a.startswith("127.")), None)


def _connects(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def _portal(m, port: int, ip: str = "0.0.0.0") -> str:
    tpg = f"{m.root}/target/iscsi/{IQN}/tpgt_1"
    name = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    m.ok(f"mkdir -p {tpg}/np/{name} && echo 1 > {tpg}/enable")
    return tpg


def _wait(pred, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_wildcard_portal_listens_on_loopback_by_default():
    other = _other_address()
    m = mount("modern")
    try:
        port = free_port()
        tpg = _portal(m, port)
        assert _wait(lambda: _connects("127.0.0.1", port))
        assert os.listdir(f"{tpg}/np") == [f"0.0.0.0:{port}"]  # the tree keeps what was written
        assert (f"] simfs: iSCSI portal 0.0.0.0:{port} listens on 127.0.0.1:{port} only "
                "(mount with --listen-any to listen on every interface)\n") in m.dmesg()
        if other is not None:
            assert not _connects(other, port)
    finally:
        umount(m)


def test_listen_any_opens_the_wildcard():
    other = _other_address()
    if other is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    m = mount("modern", ["--listen-any"])
    try:
        port = free_port()
        _portal(m, port)
        assert _wait(lambda: _connects(other, port))
        assert _connects("127.0.0.1", port)
        assert f"] simfs: iSCSI portal 0.0.0.0:{port} listens on 0.0.0.0:{port}\n" in m.dmesg()
    finally:
        umount(m)
