"""Two simfs nodes export one RBD image of a real (throwaway, one-node) Ceph cluster with
ALUA, the way ceph-iscsi lays out its gateways: the same target IQN, one TPG per gateway on
every node (only the node's own enabled), each TPG's LUN in its gateway's target port group
(A Active/Optimized, B Active/NonOptimized), the same unit serial. libiscsi's MultipathIO
runs across the two portals; data written through A is read back through B after A goes
away and B is made Active/Optimized; PR state stays per node (LIO's limit), unless the
device says ``;pr=shared`` (simfs's extension): then a reservation taken through A is
enforced through B, and a PREEMPT through B fences A's holder."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helpers import free_port, mount, umount, wait_port

IQN = "iqn.2026-12.org.simfs:gw"
INIT_A = "iqn.2026-12.org.example:host-a"
INIT_B = "iqn.2026-12.org.example:host-b"
SERIAL = "6001405a1b2c3d4e5f6a7b8c9d0e1f2a"
SIZE = 64 << 20

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("ceph-mon", "ceph-osd", "iscsi-test-cu", "qemu-io")),
    reason="ceph-mon, ceph-osd, libiscsi-bin and qemu-utils are needed")


def run(*cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ceph (simfs ceph up) with the pool "rbd" and a 64 MiB image "disk"."""
    d = tmp_path_factory.mktemp("ceph")
    r = run("simfs", "ceph", "up", str(d), timeout=120)
    assert r.returncode == 0, r.stderr
    conf = r.stdout.strip()
    r = run("rbd", "-c", conf, "create", "--size", "64M", "rbd/disk")
    assert r.returncode == 0, r.stderr
    yield conf
    run("simfs", "ceph", "down", str(d))


def _node(conf: str, me: int, ports: dict[int, int], image: str = "disk", opts: str = ""):
    """One gateway: its own mount and daemon, TPGs for both gateways, only its own enabled."""
    m = mount("modern")
    t = f"{m.root}/target"
    dev = f"{t}/core/user_1/disk"
    cfg = f"rbd/rbd/{image};conf={conf};osd_op_timeout=5{opts}"
    m.ok(f"mkdir -p {dev} && echo 'dev_config={cfg},dev_size={SIZE}' > {dev}/control && "
         f"echo {SERIAL} > {dev}/wwn/vpd_unit_serial && echo 1 > {dev}/enable")
    for gw, (name, state) in ((1, ("ao", 0)), (2, ("ano", 1))):
        tpg = f"{t}/iscsi/{IQN}/tpgt_{gw}"
        m.ok(f"mkdir -p {tpg}/lun/lun_0 && ln -s {dev} {tpg}/lun/lun_0/disk && "
             f"mkdir {tpg}/np/127.0.0.1:{ports[gw]} && echo 0 > {tpg}/attrib/authentication && "
             f"echo 1 > {tpg}/attrib/generate_node_acls && "
             f"echo 0 > {tpg}/attrib/demo_mode_write_protect && "
             f"mkdir {dev}/alua/{name} && echo {gw} > {dev}/alua/{name}/tg_pt_gp_id && "
             f"echo 1 > {dev}/alua/{name}/alua_access_type && "
             f"echo {state} > {dev}/alua/{name}/alua_access_state && "
             f"echo {name} > {tpg}/lun/lun_0/alua_tg_pt_gp")
    m.ok(f"echo 1 > {t}/iscsi/{IQN}/tpgt_{me}/enable")
    wait_port(ports[me])
    return m


@pytest.fixture(scope="module")
def nodes(cluster):
    ports = {1: free_port(), 2: free_port()}
    a = _node(cluster, 1, ports)
    b = _node(cluster, 2, ports)
    yield a, b, ports
    for m in (a, b):
        try:
            umount(m)
        except Exception:  # noqa: BLE001 - node A may already be gone
            pass


def url(port: int) -> str:
    return f"iscsi://127.0.0.1:{port}/{IQN}/0"


def test_both_nodes_show_one_device_and_both_groups(nodes):
    a, b, ports = nodes
    for m, port in ((a, ports[1]), (b, ports[2])):
        r = run("iscsi-inq", "-i", INIT_A, "-e", "1", "-c", "128", url(port))
        assert SERIAL in r.stdout, r.stdout + r.stderr
        r = run("iscsi-inq", "-i", INIT_A, "-e", "1", "-c", "131", url(port))
        assert "NAA" in r.stdout or "naa" in r.stdout.lower(), r.stdout
    ia = run("iscsi-inq", "-i", INIT_A, "-e", "1", "-c", "131", url(ports[1])).stdout
    ib = run("iscsi-inq", "-i", INIT_A, "-e", "1", "-c", "131", url(ports[2])).stdout
    # one logical unit (the same NAA), reached through a different target port on each
    naa = [ln for ln in ia.splitlines() if "NAA" in ln]
    assert naa and naa == [ln for ln in ib.splitlines() if "NAA" in ln]
    assert f"{IQN},t,0x0001" in ia and f"{IQN},t,0x0002" in ib
    for m in (a, b):
        assert m.read("target/core/user_1/disk/alua/ao/members").split() == \
            [f"iSCSI/{IQN}/tpgt_1/lun_0", "\x00"]  # the kernel's trailing NUL, as read
        assert m.read("target/core/user_1/disk/alua/ano/members").split()[0] == \
            f"iSCSI/{IQN}/tpgt_2/lun_0"


def test_multipath_io_across_the_two_nodes(nodes):
    _, _, ports = nodes
    r = run("iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B,
            "--test=SCSI.MultipathIO", url(ports[1]), url(ports[2]), timeout=600)
    assert "Multipath unavailable" not in r.stdout
    assert "found matching LU device identifier for all (2) paths" in r.stdout
    counts = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", r.stdout)
    assert counts and int(counts.group(3)) >= 3, r.stdout[-3000:]
    failed = {f"{s}.{t}" for s, t in re.findall(r"Suite (\S+), Test (\S+) had failures",
                                                 r.stdout)}
    # A LUN RESET through one gateway leaves no unit attention on the other: two LIO
    # gateways are two SCSI target engines (ceph-iscsi's gateways behave the same)
    assert failed <= {"MultipathIO.Reset"}, r.stdout[-3000:]


def test_pr_state_is_per_node(nodes):
    """LIO keeps persistent reservations per node: a key registered through A is unknown
    to B (ceph-iscsi does not support PR across gateways for this reason)."""
    a, b, _ = nodes
    a.ok(f"simfs scsi {a.root} user_1/disk -I {INIT_A} persist --register --sa-key 0xabc")
    ra = a.ok(f"simfs scsi {a.root} user_1/disk -I {INIT_A} persist --read-keys")
    rb = b.ok(f"simfs scsi {b.root} user_1/disk -I {INIT_A} persist --read-keys")
    assert "0xabc" in ra
    assert "0xabc" not in rb
    a.ok(f"simfs scsi {a.root} user_1/disk -I {INIT_A} persist --register --key 0xabc "
         f"--sa-key 0")


def test_conformance_families_on_user_rbd(nodes):
    """libiscsi's data families against the RBD-backed LU (through node A)."""
    from test_iscsi_e2e import KERNEL_FAILS
    _, _, ports = nodes
    r = run("iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B,
            "--test=SCSI.Read10,SCSI.Write10,SCSI.Write16,SCSI.Verify10,SCSI.WriteSame10,"
            "SCSI.Unmap,SCSI.CompareAndWrite,SCSI.ReadCapacity16", url(ports[1]), timeout=900)
    counts = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", r.stdout)
    assert counts and int(counts.group(3)) > 20, r.stdout[-3000:]
    failed = {f"{s}.{t}" for s, t in re.findall(r"Suite (\S+), Test (\S+) had failures",
                                                 r.stdout)}
    assert not failed - KERNEL_FAILS, r.stdout[-3000:]


def test_failover_keeps_the_data(nodes):
    a, b, ports = nodes
    w = run("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 256k",
            f"iscsi://127.0.0.1:{ports[1]}/{IQN}/0")
    assert w.returncode == 0 and "wrote 262144" in w.stdout, w.stdout + w.stderr
    umount(a)  # gateway A goes away
    # B becomes Active/Optimized through configfs, as ceph-iscsi's failover does
    b.ok(f"echo 0 > {b.root}/target/core/user_1/disk/alua/ano/alua_access_state")
    r = run("qemu-io", "-f", "raw", "-c", "read -P 0x5a 1M 256k",
            f"iscsi://127.0.0.1:{ports[2]}/{IQN}/0")
    assert r.returncode == 0 and "read 262144" in r.stdout and "Pattern verification failed" \
        not in r.stdout, r.stdout + r.stderr


# -- simfs's extension: PR state shared through RADOS (pr=shared) ---------------------------
@pytest.fixture(scope="module")
def shared_nodes(cluster):
    """Two gateways on the image "shared", both with ;pr=shared."""
    r = run("rbd", "-c", cluster, "create", "--size", "64M", "rbd/shared")
    assert r.returncode == 0, r.stderr
    ports = {1: free_port(), 2: free_port()}
    a = _node(cluster, 1, ports, "shared", ";pr=shared")
    b = _node(cluster, 2, ports, "shared", ";pr=shared")
    yield a, b, ports
    for m in (a, b):
        umount(m)


def scsi(m, gw: int, init: str, *args: str) -> str:
    """A command through gateway ``gw``'s target port of node ``m``; its printed result."""
    r = run("simfs", "scsi", m.root, "user_1/disk", "--port", f"iSCSI/{IQN}/tpgt_{gw}/lun_0",
            "-I", init, "--isid", "400001370000", *args)
    return r.stdout + r.stderr


def write(m, gw: int, init: str) -> str:
    return scsi(m, gw, init, "write", "0", "--data", "00" * 512)


def clear(m, gw: int) -> None:
    """No registrations or reservation left (from an earlier test)."""
    assert "Status: GOOD" in scsi(m, gw, INIT_A, "persist", "--register-ignore",
                                  "--sa-key", "0x99")
    assert "Status: GOOD" in scsi(m, gw, INIT_A, "persist", "--clear", "--key", "0x99")


def keys(m, gw: int) -> tuple[str, list[str]]:
    out = scsi(m, gw, INIT_A, "persist", "--read-keys")
    gen = re.search(r"PR generation: (0x[0-9a-f]+)", out)
    assert gen, out
    return gen.group(1), re.findall(r"^\s+(0x[0-9a-f]+)$", out, re.M)


def test_shared_pr_one_reservation_two_gateways(shared_nodes, cluster):
    """A registration and a reservation made through A are seen and enforced through B; a
    PREEMPT through B fences A's holder; both gateways report one PR generation."""
    a, b, _ = shared_nodes
    clear(a, 1)
    gen = int(keys(a, 1)[0], 16)
    assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--register", "--sa-key", "0xa1")
    assert keys(a, 1) == keys(b, 2) == (hex(gen + 1), ["0xa1"])
    assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--reserve", "--key", "0xa1",
                                  "--type", "1")  # Write Exclusive
    assert "Status: GOOD" in write(a, 1, INIT_A)
    # through B, another I_T nexus: no write, for a stranger or for A's host itself
    assert "RESERVATION CONFLICT" in write(b, 2, INIT_B)
    assert "RESERVATION CONFLICT" in write(b, 2, INIT_A)
    assert "Status: GOOD" in scsi(b, 2, INIT_B, "read", "0", "1")
    # B's host registers and preempts A's key: A's holder is fenced on node A
    assert "Status: GOOD" in scsi(b, 2, INIT_B, "persist", "--register", "--sa-key", "0xb2")
    assert "Status: GOOD" in scsi(b, 2, INIT_B, "persist", "--preempt", "--key", "0xb2",
                                  "--sa-key", "0xa1", "--type", "1")
    assert "RESERVATION CONFLICT" in write(a, 1, INIT_A)
    assert "Status: GOOD" in write(b, 2, INIT_B)
    assert keys(a, 1) == keys(b, 2) == (hex(gen + 3), ["0xb2"])
    assert "0xb2" in scsi(a, 1, INIT_A, "persist", "--read-reservation")
    # node A's pr/ files show the shared state it last loaded
    assert a.read("target/core/user_1/disk/pr/res_pr_generation").strip() == \
        f"0x{gen + 3:08x}"
    # the state is one RADOS object beside the image
    image_id = run("rbd", "-c", cluster, "info", "rbd/shared").stdout
    image_id = re.search(r"id: (\S+)", image_id).group(1)
    r = run("rados", "-c", cluster, "-p", "rbd", "get", f"simfs_pr.{image_id}", "-")
    assert r.returncode == 0 and '"key":178' in r.stdout and f'"generation":{gen + 3}' in r.stdout, r
    # clean up for the next run of the module's cluster
    assert "Status: GOOD" in scsi(b, 2, INIT_B, "persist", "--clear", "--key", "0xb2")
    assert keys(a, 1) == (hex(gen + 4), [])


def test_shared_pr_gateways_enforce_it_on_the_wire(shared_nodes):
    """The same through real iSCSI sessions: a reservation held through A's portal makes
    a write from another host through B's portal fail (RESERVATION CONFLICT)."""
    a, b, ports = shared_nodes
    clear(b, 2)
    assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--register", "--sa-key", "0xc3")
    assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--reserve", "--key", "0xc3",
                                  "--type", "1")
    try:
        w = run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k",
                f"iscsi://127.0.0.1:{ports[2]}/{IQN}/0")
        assert "wrote" not in w.stdout, w.stdout + w.stderr
        r = run("qemu-io", "-f", "raw", "-c", "read 0 4k", f"iscsi://127.0.0.1:{ports[2]}/{IQN}/0")
        assert "read 4096/4096" in r.stdout, r.stdout + r.stderr
    finally:
        scsi(a, 1, INIT_A, "persist", "--clear", "--key", "0xc3")
    w = run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k",
            f"iscsi://127.0.0.1:{ports[2]}/{IQN}/0")
    assert "wrote 4096/4096" in w.stdout, w.stdout + w.stderr


def _daemon_pid(m) -> int:
    """The simfs daemon serving mount ``m`` (from simfs's record of active mounts)."""
    import json
    import os
    from pathlib import Path
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state"))
    for f in (base / "simfs" / "active").glob("*.json"):
        rec = json.loads(f.read_text())
        if rec.get("mountpoint") == m.root:
            return rec["pid"]
    raise AssertionError(f"no active record for {m.root}")


def test_shared_pr_outlives_a_killed_gateway(cluster):
    """Gateway A's daemon is killed (SIGKILL) while its host holds the reservation: the
    state is in RADOS, not in A, so B still enforces it, and B's host takes it over with
    PREEMPT, as a cluster fences a dead node's host."""
    import os
    import signal
    r = run("rbd", "-c", cluster, "create", "--size", "64M", "rbd/shared2")
    assert r.returncode == 0, r.stderr
    ports = {1: free_port(), 2: free_port()}
    a = _node(cluster, 1, ports, "shared2", ";pr=shared")
    b = _node(cluster, 2, ports, "shared2", ";pr=shared")
    try:
        assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--register", "--sa-key", "0xd4")
        assert "Status: GOOD" in scsi(a, 1, INIT_A, "persist", "--reserve", "--key", "0xd4",
                                      "--type", "3")  # Exclusive Access
        os.kill(_daemon_pid(a), signal.SIGKILL)
        assert "RESERVATION CONFLICT" in scsi(b, 2, INIT_B, "read", "0", "1")
        assert "0xd4" in scsi(b, 2, INIT_B, "persist", "--read-reservation")
        assert "Status: GOOD" in scsi(b, 2, INIT_B, "persist", "--register", "--sa-key", "0xe5")
        assert "Status: GOOD" in scsi(b, 2, INIT_B, "persist", "--preempt", "--key", "0xe5",
                                      "--sa-key", "0xd4", "--type", "3")
        assert "Status: GOOD" in scsi(b, 2, INIT_B, "read", "0", "1")
        assert keys(b, 2)[1] == ["0xe5"]
    finally:
        for m in (a, b):
            umount(m)  # A's too: simfs umount clears a mount whose daemon died
