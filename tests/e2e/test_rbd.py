"""user:rbd on a real throwaway Ceph (simfs ceph up): targetcli creates it in simfs run, bad
pools and images are refused at enable (ENOENT, the runner's lines, nothing changed), a
resize shows at the next command, a full cluster ends writes with BUSY while reads go on, and
a cluster that goes away mid-I/O ends commands with BUSY while the daemon stays up (with
``;pr=shared`` the reservation state's reads end the same way)."""
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


def test_full_cluster_ends_writes_busy_and_reads_go_on(m, tmp_path):
    """A memstore OSD that fills up: Ceph marks the OSD and the pool full and its clients
    hold writes back instead of failing them (no ENOSPC/EDQUOT reaches librbd), so after
    osd_op_timeout each write ends as tcmu-runner ends a timed-out one: BUSY and "Timing
    out cmd.". Reads still work, the daemon and the device stay up, what was written stays."""
    d_ceph = tmp_path / "ceph"
    r = run("simfs", "ceph", "up", "--memory", "48", str(d_ceph), timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        conf = r.stdout.strip()
        assert run("rbd", "-c", conf, "create", "--size", "128M", "rbd/big").returncode == 0
        d = _new(m, "x", f"rbd/rbd/big;conf={conf};osd_op_timeout=3", size=128 << 20)
        m.ok(f"echo 1 > {m.root}/{d}/enable")
        chunk = tmp_path / "chunk"
        chunk.write_bytes(b"\x5a" * (1 << 20))
        mark = m.log_mark()
        for i in range(128):  # 1 MiB writes until the cluster is full (about 45 of them)
            w = sh(f"simfs scsi {m.root} user_1/x write {i * 2048} --in {chunk}")
            if "Status: GOOD" not in w.stdout:
                break
        else:
            pytest.fail("128 MiB went into a 48 MiB memstore")
        assert i > 8 and "Status: BUSY" in w.stdout, (i, w.stdout + w.stderr)
        assert "tcmu-runner: rbd/x: Timing out cmd." in m.log_since(mark)
        health = run("ceph", "-c", conf, "health").stdout
        assert "full" in health, health
        # reads still work and return what was written; the device stays enabled
        out = m.ok(f"simfs scsi {m.root} user_1/x --hex read 0 1")
        assert "Status: GOOD" in out and "5a5a5a5a" in out.replace(" ", ""), out
        assert m.read(f"{d}/enable") == "1\n"
    finally:
        run("simfs", "ceph", "down", str(d_ceph))


def test_cluster_gone_mid_io_ends_commands_busy(cluster, m):
    d_ceph, conf = cluster
    d = _new(m, "x", f"rbd/rbd/a;conf={conf};osd_op_timeout=3")
    m.ok(f"echo 1 > {m.root}/{d}/enable")
    m.ok(f"simfs scsi {m.root} user_1/x read 0 1")
    # one more device keeping its reservations in RADOS (pr=shared)
    assert run("rbd", "-c", conf, "create", "--size", "32M", "rbd/c").returncode == 0
    ds = _new(m, "s", f"rbd/rbd/c;conf={conf};osd_op_timeout=3;pr=shared")
    m.ok(f"echo 1 > {m.root}/{ds}/enable")
    m.ok(f"simfs scsi {m.root} user_1/s -I iqn.x:h persist --register --sa-key 0x5")
    run("simfs", "ceph", "down", str(d_ceph))
    mark = m.log_mark()
    t = time.monotonic()
    r = sh(f"simfs scsi {m.root} user_1/x read 0 1")
    assert "BUSY" in (r.stdout + r.stderr).upper(), r.stdout + r.stderr
    assert "tcmu-runner: rbd/x: Timing out cmd." in m.log_since(mark)
    assert time.monotonic() - t < 60
    # the shared reservation state cannot be read: PR IN and I/O end BUSY, nothing changes
    mark = m.log_mark()
    for args in ("persist --read-keys", "persist --register --sa-key 0x6", "read 0 1"):
        r = sh(f"simfs scsi {m.root} user_1/s -I iqn.x:h {args}")
        assert "Status: BUSY" in r.stdout, (args, r.stdout + r.stderr)
    assert "tcmu-runner: rbd/s: Timing out cmd." in m.log_since(mark)
    assert m.read(f"{ds}/pr/res_pr_generation") == "0x00000001\n"
    # the daemon stays up: the tree answers, other devices work
    assert m.read(f"{d}/enable") == "1\n"
    m.ok(f"mkdir -p {m.root}/target/core/rd_mcp_0/rd && echo rd_pages=16 > "
         f"{m.root}/target/core/rd_mcp_0/rd/control && "
         f"echo 1 > {m.root}/target/core/rd_mcp_0/rd/enable")
