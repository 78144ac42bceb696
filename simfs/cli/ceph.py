"""``simfs ceph up|down DIR``: a throwaway one-node Ceph cluster for user:rbd.

One monitor and one OSD on the in-memory object store (memstore), no manager, no
authentication, every file under DIR, private ports on 127.0.0.1: a real RADOS/RBD cluster
in about two seconds and ~75 MiB, for learning and testing user:rbd (docs/multinode.md).
``up`` prints the ``ceph.conf`` path to give librbd (``CEPH_CONF``) and creates the pool
``rbd``; ``down`` kills both daemons and removes DIR's contents.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

POOL = "rbd"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _conf(d: Path, fsid: str, mon_v2: int, mon_v1: int, lo: int, mem_bytes: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
ms bind port min = {lo}
ms bind port max = {lo + 40}
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
mon cluster log file = {d}/log/cluster.log
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon mgr mkfs grace = 3600
mon data avail crit = 1
mon data avail warn = 2
paxos propose interval = 0.05
rbd default features = 1

[client]
# one socket per client process: the rbd/ceph commands and every simfs daemon's librados
# would otherwise fight over client.admin.asok ("failed to bind ... File exists")
admin socket = {d}/run/$name.$pid.asok

[mon.a]
mon data = {d}/mon

[osd.0]
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = {mem_bytes}
osd op num shards = 2
osd op num threads per shard = 1
"""


def _spawn(args: list[str], d: Path, log: str) -> int:
    with open(d / "log" / log, "ab") as out:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True)
    return p.pid


def _ceph(conf: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ceph", "-c", str(conf), "--connect-timeout", "10", *args],
                          capture_output=True, text=True, timeout=timeout)


def up(d: Path, mem_mib: int = 512, timeout: float = 60) -> Path:
    """Start the cluster in ``d`` (made empty first); returns its ceph.conf."""
    if (d / "run" / "pids").exists():
        raise RuntimeError(f"a cluster already runs in {d} (simfs ceph down {d})")
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log", "mon", "osd"):
        shutil.rmtree(d / sub, ignore_errors=True)
        (d / sub).mkdir()
    fsid = str(uuid.uuid4())
    v2, v1, lo = _free_ports(3)
    conf = d / "ceph.conf"
    conf.write_text(_conf(d, fsid, v2, v1, lo, mem_mib << 20))
    (d / "keyring").write_text("")
    subprocess.run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                    f"[v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]", str(d / "monmap")],
                   check=True, capture_output=True)
    subprocess.run(["ceph-mon", "-c", str(conf), "--mkfs", "-i", "a", "--monmap",
                    str(d / "monmap")], check=True, capture_output=True)
    pids = [_spawn(["ceph-mon", "-c", str(conf), "-f", "-i", "a"], d, "mon.out")]
    (d / "run" / "pids").write_text(" ".join(map(str, pids)))
    osd_uuid = str(uuid.uuid4())
    r = _ceph(conf, "osd", "new", osd_uuid)
    if r.returncode:
        down(d)
        raise RuntimeError(f"ceph osd new: {r.stderr.strip()}")
    osd_id = r.stdout.strip()
    subprocess.run(["ceph-osd", "-c", str(conf), "-i", osd_id, "--mkfs", "--osd-uuid",
                    osd_uuid], check=True, capture_output=True)
    # the OSD goes first in the list: it must be stopped before the monitor
    pids.insert(0, _spawn(["ceph-osd", "-c", str(conf), "-f", "-i", osd_id], d, "osd.out"))
    (d / "run" / "pids").write_text(" ".join(map(str, pids)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = _ceph(conf, "osd", "dump")
        if r.returncode == 0 and " up " in r.stdout and f"osd.{osd_id} up" in r.stdout:
            break
        time.sleep(0.2)
    else:
        down(d)
        raise RuntimeError("the OSD did not come up")
    for args in (("osd", "pool", "create", POOL, "8", "8"),
                 ("osd", "pool", "application", "enable", POOL, "rbd")):
        r = _ceph(conf, *args)
        if r.returncode:
            down(d)
            raise RuntimeError(f"ceph {' '.join(args)}: {r.stderr.strip()}")
    _wait_writable(conf, deadline)
    return conf


def _wait_writable(conf: Path, deadline: float) -> None:
    """Ready means a client write succeeds (PG state needs a manager to be reported)."""
    while time.monotonic() < deadline:
        r = subprocess.run(["rados", "-c", str(conf), "-p", POOL, "put", "simfs-ready",
                            "/dev/null"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the pool never took a write")


def down(d: Path) -> None:
    """Kill the daemons (the data is throwaway) and remove what ``up`` made."""
    pidfile = d / "run" / "pids"
    if pidfile.exists():
        for pid in pidfile.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for pid in pidfile.read_text().split():
            try:
                os.waitpid(int(pid), 0)
            except (OSError, ValueError):
                pass
    for sub in ("run", "mon", "osd", "log"):
        shutil.rmtree(d / sub, ignore_errors=True)
    for f in ("ceph.conf", "monmap", "keyring"):
        try:
            (d / f).unlink()
        except FileNotFoundError:
            pass


def add_parser(sub) -> None:
    p = sub.add_parser("ceph", help="a throwaway one-node Ceph cluster (for user:rbd)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("dir", help="folder for every file of the cluster")
    p.add_argument("--memory", type=int, default=512, metavar="MiB",
                   help="memstore capacity (default 512)")
    p.set_defaults(func=cmd_ceph)


def cmd_ceph(a: argparse.Namespace) -> int:
    d = Path(a.dir).resolve()
    if a.action == "down":
        down(d)
        return 0
    if shutil.which("ceph-mon") is None or shutil.which("ceph-osd") is None:
        print("simfs ceph: ceph-mon and ceph-osd are needed (Debian: apt-get install "
              "ceph-mon ceph-osd)", file=sys.stderr)
        return 1
    try:
        conf = up(d, a.memory)
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"simfs ceph: {e}", file=sys.stderr)
        return 1
    print(conf)
    return 0
