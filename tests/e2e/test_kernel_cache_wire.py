"""simfs mounts with positive entry and attribute timeouts: the kernel answers repeated
lookups and stats from its cache. These tests change the tree from the other side (other
processes, an iSCSI initiator logging in and out) while entries are cached, and check that
the mount shows every change at once and that no removed entry outlives its removal.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from helpers import free_port, mount, sh, umount

IQN = "iqn.2026-12.org.simfs:kcache"
INIT = "iqn.2026-12.org.example:kcache-host"

pytestmark = pytest.mark.skipif(shutil.which("iscsi-inq") is None,
                                reason="libiscsi-bin is not installed")


def _until(fn, what: str, seconds: float = 20):
    """The target handles a login or a logout on its own thread: wait (bounded) for it."""
    deadline = time.monotonic() + seconds
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            assert got, what
            return got
        time.sleep(0.02)


@pytest.fixture
def demo():
    """A demo-mode TPG (generate_node_acls=1) exporting an rd_mcp LUN on 127.0.0.1."""
    m = mount("modern")
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    m.ok(f"mkdir -p {t}/core/rd_mcp_0/r0 && echo rd_pages=256 > {t}/core/rd_mcp_0/r0/control"
         f" && echo 1 > {t}/core/rd_mcp_0/r0/enable && mkdir -p {tpg}/lun/lun_0 && "
         f"ln -s {t}/core/rd_mcp_0/r0 {tpg}/lun/lun_0/r0 && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && "
         f"echo 1 > {tpg}/attrib/generate_node_acls && "
         f"echo 0 > {tpg}/attrib/cache_dynamic_acls && "
         f"echo 0 > {tpg}/attrib/demo_mode_write_protect && "
         f"echo 0 > {tpg}/attrib/authentication && echo 1 > {tpg}/enable")
    yield m, port, tpg
    umount(m)


def url(port: int) -> str:
    return f"iscsi://127.0.0.1:{port}/{IQN}/0"


def test_dynamic_acl_at_login_and_logout(demo):
    m, port, tpg = demo
    sessions = f"{tpg}/dynamic_sessions"
    # everything on the way cached, the attribute's stat included
    m.ok(f"stat {tpg} {tpg}/acls {sessions} && ls {tpg}/acls")
    assert m.ok(f"cat {sessions}") == ""
    perf = subprocess.Popen(["iscsi-perf", "-i", INIT, url(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _until(lambda: m.ok(f"cat {sessions}") == f"{INIT}\n", "no dynamic session at login")
        # as in the kernel, a dynamic ACL has no directory: acls/ stays empty
        assert m.ok(f"ls -A {tpg}/acls") == ""
        assert sh(f"stat {tpg}/acls/{INIT}").returncode == 1
        # an explicit ACL for the logged-in initiator is seen at once, and so is its removal
        m.ok(f"mkdir {tpg}/acls/{INIT} && stat {tpg}/acls/{INIT}/info")
        assert m.ok(f"ls -A {tpg}/acls").split() == [INIT]
        r = sh(f"rmdir {tpg}/acls/{INIT}")
        assert r.returncode == 0, r.stderr
        assert sh(f"stat {tpg}/acls/{INIT}").returncode == 1
    finally:
        perf.send_signal(signal.SIGINT)
        try:
            perf.wait(timeout=20)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
    _until(lambda: m.ok(f"cat {sessions}") == "", "the dynamic session outlived the logout")
    assert m.ok(f"ls -A {tpg}/acls") == ""


CLIENT = textwrap.dedent('''
    import os, sys
    root, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hba = f"{root}/target/core/rd_mcp_1"
    tpg = sys.argv[4]
    errors = []
    for k in range(rounds):
        d = f"{hba}/c{me}_{k % 3}"
        os.mkdir(d)
        os.stat(d + "/attrib/emulate_tas")
        with open(d + "/attrib/block_size") as f:
            text = f.read()
            if not text.strip().isdigit():
                errors.append(f"block_size: {text!r}")
        if os.path.basename(d) not in os.listdir(hba):
            errors.append(f"{d} made but not listed")
        os.rmdir(d)
        # the removal is final at once, for the entry and for everything that was below it
        for path in (d, d + "/attrib", d + "/attrib/emulate_tas", d + "/wwn/vpd_unit_serial"):
            try:
                os.stat(path)
                errors.append(f"stale after rmdir: {path}")
            except FileNotFoundError:
                pass
        if os.path.basename(d) in os.listdir(hba):
            errors.append(f"{d} removed but listed")
        with open(tpg + "/dynamic_sessions") as f:
            text = f.read()
        if text not in ("", "%s\\n" % sys.argv[5]):
            errors.append(f"dynamic_sessions: {text!r}")
        os.listdir(tpg + "/acls")
        for other in range(8):  # others' entries come and go: any answer but a wrong errno
            try:
                os.stat(f"{hba}/c{other}_{k % 3}/attrib")
            except FileNotFoundError:
                pass
    print("\\n".join(errors))
    sys.exit(1 if errors else 0)
''')


def test_stress_eight_clients_while_an_initiator_logs_in_and_out(demo):
    m, port, tpg = demo
    m.ok(f"mkdir -p {m.root}/target/core/rd_mcp_1")
    stop = threading.Event()
    logins = []

    def initiator():
        while not stop.is_set():
            r = subprocess.run(["iscsi-inq", "-i", INIT, url(port)], capture_output=True,
                               text=True, timeout=60)
            logins.append(r.returncode)

    t = threading.Thread(target=initiator)
    t.start()
    try:
        clients = [subprocess.Popen([sys.executable, "-c", CLIENT, m.root, str(i), "60", tpg,
                                     INIT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for i in range(8)]
        results = [(c.wait(timeout=600), c.stdout.read()) for c in clients]
    finally:
        stop.set()
        t.join(timeout=120)
    assert all(rc == 0 for rc, _ in results), [out for _, out in results]
    assert logins and all(rc == 0 for rc in logins), logins
    assert len(logins) >= 2  # the clients ran across logins and logouts
    _until(lambda: m.ok(f"cat {tpg}/dynamic_sessions") == "", "a session outlived its logout")
    assert m.ok(f"ls -A {m.root}/target/core/rd_mcp_1").split() == ["hba_info", "hba_mode"]


@pytest.fixture
def holder(demo):
    """Another process, kept alive, that stats paths on request (its lookups stay cached)."""
    p = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent('''
        import os, sys
        for line in sys.stdin:
            path = line.strip()
            try:
                os.lstat(path)
                print("there", flush=True)
            except FileNotFoundError:
                print("gone", flush=True)
    ''')], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(path: str) -> str:
        p.stdin.write(path + "\n")
        p.stdin.flush()
        return p.stdout.readline().strip()

    yield ask
    p.stdin.close()
    p.wait(timeout=10)


def test_lun_link_and_device_removed_by_another_process(demo, holder):
    m, port, tpg = demo
    dev = f"{m.root}/target/core/rd_mcp_0/r0"
    link = f"{tpg}/lun/lun_0/r0"
    watched = (link, f"{tpg}/lun/lun_0", f"{dev}/attrib/emulate_tas", f"{dev}/wwn", dev)
    assert [holder(p) for p in watched] == ["there"] * 5
    m.ok(f"rm {link}")
    assert holder(link) == "gone"
    assert holder(f"{tpg}/lun/lun_0") == "there"
    m.ok(f"rmdir {tpg}/lun/lun_0 {dev}")
    assert [holder(p) for p in watched] == ["gone"] * 5
    assert m.ok(f"ls -A {m.root}/target/core/rd_mcp_0").split() == ["hba_info", "hba_mode"]
    # made again by yet another process: seen at once, with fresh attributes
    m.ok(f"mkdir {dev}")
    assert holder(f"{dev}/attrib/emulate_tas") == "there"
    assert m.read("target/core/rd_mcp_0/r0/enable") == "0\n"
