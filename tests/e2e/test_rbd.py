"""user:rbd on a real throwaway Ceph (simfs ceph up): targetcli creates it in simfs run, bad
pools and images are refused at enable (ENOENT, the runner's lines, nothing changed), a
resize shows at the next command, and a cluster that goes away mid-I/O ends commands with
BUSY while the daemon stays up."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from helpers import mount, sh, umount


def fail(r, msg: str) -> None:
    assert r.returncode != 0 and msg in r.stderr, (r.returncode, r.stderr)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("ceph-mon", "ceph-osd", "rbd")),
    reason="ceph-mon, ceph-osd and ceph-common are needed")


def run(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("ceph")
    r = run("simfs", "ceph", "up", str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    conf = r.stdout.strip()
    for img in ("a", "b"):
        assert run("rbd", "-c", conf, "create", "--size", "32M", f"rbd/{img}").returncode == 0
    yield d, conf
    run("simfs", "ceph", "down", str(d))


def test_targetcli_creates_user_rbd(cluster, tmp_path):
    if shutil.which("targetcli") is None:
        pytest.skip("targetcli-fb is needed")
    _, conf = cluster
    script = (f"targetcli /backstores/user:rbd create name=r1 size=32M 'cfgstring=rbd/a;"
              f"conf={conf}' && targetcli /backstores/user:rbd create name=r2 size=32M "
              f"cfgstring=rbd; targetcli ls /backstores/user:rbd")
    r = run("simfs", "run", "--state-dir", str(tmp_path / "st"), "--", "bash", "-c", script)
    assert "Created user-backed storage object r1 size 33554432." in r.stdout, r.stdout + r.stderr
    assert "cfgstring invalid: Could not get image name" in r.stderr
    assert f"[rbd/a;conf={conf} (32.0MiB) deactivated]" in r.stdout


@pytest.fixture
def m():
    mnt = mount("modern")
    yield mnt
    umount(mnt)


def _new(m, name: str, cfg: str, size: int = 32 << 20) -> str:
    d = f"target/core/user_1/{name}"
    m.ok(f"mkdir -p {m.root}/{d} && echo 'dev_config={cfg},dev_size={size}' > {m.root}/{d}/control")
    return d


@pytest.mark.parametrize("cfg,line", [
    ("rbd/nopool/a", "tcmu-runner: rbd/x: Could not create ioctx for pool nopool. (Err -2)"),
    ("rbd/rbd/nope", "tcmu-runner: rbd/x: Could not open image nope. (Err -2)"),
    ("rbd/rbd", "tcmu-runner: check_config failed for uio0 because of Could not get image name"),
    ("rbd/rbd/a;bogus=1", "check_config failed for uio0 because of Unknown option 'bogus=1'"),
])
def test_bad_pool_or_image_is_refused(cluster, m, cfg, line):
    _, conf = cluster
    d = _new(m, "x", f"{cfg};conf={conf}" if cfg.count("/") == 2 and ";" not in cfg else cfg)
    before = m.read(f"{d}/info")
    mark = m.log_mark()
    fail(sh(f"echo 1 > {m.root}/{d}/enable"), "No such file or directory")
    assert line in m.log_since(mark)
    assert m.read(f"{d}/info") == before and m.read(f"{d}/enable") == "0\n"


def test_size_must_match_the_image(cluster, m):
    _, conf = cluster
    d = _new(m, "x", f"rbd/rbd/a;conf={conf}", size=16 << 20)
    mark = m.log_mark()
    fail(sh(f"echo 1 > {m.root}/{d}/enable"), "No such file or directory")
    assert "Mismatched sizes. RBD image size 33554432. Requested new size 16777216." in \
        m.log_since(mark)


def test_resize_is_seen_at_the_next_command(cluster, m):
    _, conf = cluster
    d = _new(m, "x", f"rbd/rbd/b;conf={conf}")
    m.ok(f"echo 1 > {m.root}/{d}/enable")
    # the image must grow first, as with tcmu-runner
    fail(sh(f"echo {64 << 20} > {m.root}/{d}/attrib/dev_size"), "Invalid argument")
    assert m.read(f"{d}/attrib/dev_size") == f"{32 << 20}\n"
    assert run("rbd", "-c", conf, "resize", "--size", "64M", "rbd/b").returncode == 0
    m.ok(f"echo {64 << 20} > {m.root}/{d}/attrib/dev_size")
    out = sh(f"simfs scsi {m.root} user_1/x readcap").stdout
    assert "2A" in out.upper() or "CAPACITY" in out.upper(), out  # the unit attention
    out = m.ok(f"simfs scsi {m.root} user_1/x readcap")
    assert str((64 << 20) // 512 - 1) in out or str(64 << 20) in out, out


def test_cluster_gone_mid_io_ends_commands_busy(cluster, m):
    d_ceph, conf = cluster
    d = _new(m, "x", f"rbd/rbd/a;conf={conf};osd_op_timeout=3")
    m.ok(f"echo 1 > {m.root}/{d}/enable")
    m.ok(f"simfs scsi {m.root} user_1/x read 0 1")
    run("simfs", "ceph", "down", str(d_ceph))
    mark = m.log_mark()
    t = time.monotonic()
    r = sh(f"simfs scsi {m.root} user_1/x read 0 1")
    assert "BUSY" in (r.stdout + r.stderr).upper(), r.stdout + r.stderr
    assert "tcmu-runner: rbd/x: Timing out cmd." in m.log_since(mark)
    assert time.monotonic() - t < 60
    # the daemon stays up: the tree answers, other devices work
    assert m.read(f"{d}/enable") == "1\n"
    m.ok(f"mkdir -p {m.root}/target/core/rd_mcp_0/rd && echo rd_pages=16 > "
         f"{m.root}/target/core/rd_mcp_0/rd/control && "
         f"echo 1 > {m.root}/target/core/rd_mcp_0/rd/enable")
