"""The kernel caches entries and attributes (positive timeouts); the daemon makes it forget
exactly what changed behind its back.

A small tree served by simfs's own FUSE adapter in a child process changes in ways no FUSE
request names: a store adds and removes a default group elsewhere, a thread that is not a
FUSE request (as the SCSI engine or the iSCSI server would) removes and adds groups and
links. Every change must be seen through the mount at once by shell commands that had the
old entries cached. The same changes made through simfs's real tree by other processes are
checked too.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from helpers import sh

# The test-only tree: /box/{grow, remove_far, add_far, touch_log} and /far/{a,b}/...
SERVER = textwrap.dedent('''
    import os, sys, threading
    from simfs.configfs import Attribute, ConfigfsTree, Group
    from simfs.daemon.fuse_adapter import SimfsOperations, mount
    from simfs.klog import KernelLog

    class Leaf(Group):
        attributes = (Attribute("value", lambda g: "1\\n"),)

    class Far(Group):
        def make_group(self, name):
            return Leaf(name)

        def allow_link(self, name, target):
            pass

    def grow(g, buf):
        # a store that adds or removes a default group next to its own directory
        if buf.strip() == b"1":
            g.parent.add_default_group(Leaf("extra"))
        else:
            g.parent.remove_default_group("extra")

    # Another thread changes the tree, as a login or the SCSI engine would: it waits for the
    # tree's lock, which the store holds, so the change lands after write(2) returns.
    def remove_far(g, buf):
        name = buf.decode().strip()
        threading.Thread(target=lambda: tree.rmdir("far/" + name)).start()

    def add_far(g, buf):
        name = buf.decode().strip()
        threading.Thread(target=lambda: tree.mkdir("far/" + name)).start()

    def unlink_far(g, buf):
        name = buf.decode().strip()
        threading.Thread(target=lambda: tree.unlink("far/" + name)).start()

    class Box(Group):
        attributes = (Attribute("grow", store=grow), Attribute("remove_far", store=remove_far),
                      Attribute("add_far", store=add_far),
                      Attribute("unlink_far", store=unlink_far),
                      Attribute("sent", lambda g: f"{ops.kcache.sent}\\n"),
                      Attribute("getattrs", lambda g: f"{ops.getattrs}\\n"))

    class CountingOperations(SimfsOperations):
        getattrs = 0

        def getattr(self, path, fh=None):
            type(self).getattrs += 1
            return super().getattr(path, fh)

    root = Group("")
    root.add_default_group(Box("box"))
    root.add_default_group(Far("far"))
    tree = ConfigfsTree(root)
    for name in ("a", "b"):
        tree.mkdir("far/" + name)
    tree.symlink("far/link", "far/a")
    ops = CountingOperations(tree, sys.argv[1], KernelLog())
    mount(ops, sys.argv[1])
''')


@pytest.fixture
def box():
    mp = tempfile.mkdtemp(prefix="simfs-kcache-")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mp], stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 20
    while not os.path.ismount(mp):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the test tree did not mount"
        time.sleep(0.02)
    yield mp
    subprocess.run(["fusermount", "-u", mp], check=False)
    proc.wait(timeout=20)
    os.rmdir(mp)


def ok(cmd: str) -> str:
    r = sh(cmd)
    assert r.returncode == 0, f"{cmd!r}: {r.stderr}"
    return r.stdout


def settled(cmd: str, want_rc: int) -> subprocess.CompletedProcess:
    """Run ``cmd`` until it exits ``want_rc``: a change made by another thread reaches the
    kernel through the notification thread, so it may take a moment (it takes well under a
    millisecond; the bound is generous, and far below the 30 s the kernel would otherwise
    trust its cache)."""
    deadline = time.monotonic() + 5
    while True:
        r = sh(cmd)
        if r.returncode == want_rc or time.monotonic() > deadline:
            return r
        time.sleep(0.01)


def test_the_kernel_caches_entries_and_attributes(box):
    """The point of it all: a path already looked up costs the daemon no request, and
    lookups queue no invalidation."""
    def getattrs() -> int:
        return int(ok(f"cat {box}/box/getattrs"))  # cat's own fstat is one of them

    # test(1) asks stat(2) for the basic fields (stat(1) asks for the birth time too, which
    # FUSE does not cache)
    look = f"test -f {box}/far/a/value && test -d {box}/far/a && test -L {box}/far/link"
    ok(look)
    one_read = -getattrs() + getattrs()
    before = getattrs()
    ok(look)
    ok(look)
    assert getattrs() - before == one_read
    assert ok(f"cat {box}/box/sent") == "0\n"


def test_store_adds_and_removes_a_default_group(box):
    assert sh(f"stat {box}/extra").returncode != 0
    ok(f"stat {box}/box {box}/far")  # cached: the parent's nlink too
    links = ok(f"stat -c %h {box}").strip()
    ok(f"echo 1 > {box}/box/grow")
    assert ok(f"cat {box}/extra/value") == "1\n"
    assert "extra" in ok(f"ls {box}").split()
    assert int(ok(f"stat -c %h {box}")) == int(links) + 1
    ok(f"stat {box}/extra/value")  # cached now
    ok(f"echo 0 > {box}/box/grow")
    r = sh(f"stat {box}/extra/value; stat {box}/extra")
    assert r.stdout == "" and r.stderr.count("No such file or directory") == 2
    assert int(ok(f"stat -c %h {box}")) == int(links)


def test_a_group_removed_by_another_thread(box):
    ok(f"stat {box}/far/a/value {box}/far/b/value; readlink {box}/far/link")
    ok(f"echo link > {box}/box/unlink_far")
    r = settled(f"readlink {box}/far/link", 1)
    assert r.returncode == 1 and r.stdout == ""
    ok(f"echo b > {box}/box/remove_far")
    settled(f"ls {box}/far/b", 2)  # readdir is never cached: the tree changed
    # the whole subtree goes from the cache: the group and the attribute below it
    for path in ("far/b/value", "far/b"):
        r = settled(f"stat {box}/{path}", 1)
        assert r.returncode == 1 and "No such file or directory" in r.stderr, path
    assert ok(f"ls {box}/far").split() == ["a"]
    ok(f"echo b > {box}/box/add_far")
    assert settled(f"cat {box}/far/b/value", 0).stdout == "1\n"
    assert int(ok(f"cat {box}/box/sent")) >= 3


def test_a_group_removed_behind_a_cached_cwd_of_another_shell(box):
    """A shell that sits in the removed directory sees it empty and dead at once."""
    shell = subprocess.Popen(["bash"], cwd=f"{box}/far/a", stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ok(f"echo link > {box}/box/unlink_far")
        settled(f"readlink {box}/far/link", 1)
        ok(f"echo a > {box}/box/remove_far")
        settled(f"stat {box}/far/a", 1)
        out, _ = shell.communicate("stat value >/dev/null && echo STALE || echo gone\n",
                                   timeout=30)
        assert out.strip().endswith("gone")
    finally:
        if shell.poll() is None:
            shell.kill()
