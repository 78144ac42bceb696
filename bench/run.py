#!/usr/bin/env python3
"""simfs benchmarks, each figure a ratio against a baseline measured in the same run.

    python3 bench/run.py [--quick] [--only control,scale,memory,dataplane,iscsi,seed]
                         [--profile] [--out FILE]

Needs root (mounts, unshare, losetup) and /dev/fuse. Prints a table and writes the
results, trials included, to ~/.local/state/simfs/bench/<timestamp>.json (outside the
checkout; $XDG_STATE_HOME moves it, --out FILE chooses). Never part of the test suite. See bench/README.md and
docs/performance.md for what each figure means.

Sections:
  control    open+read+close / open+write+close cycles on attribute files, mkdir+control+
             enable+rmdir of rd_mcp devices: simfs vs a dict-backed fusepy FS
             (bench/baseline_fs.py) with timeouts 0 (the old floor), the same with simfs's
             thread-state pin, the same with fusepy's default caching (the floor) at
             simfs's path depth (6) and at depth 1, tmpfs
  scale      the same cycles with 10, 1,000 and 10,000 devices in one HBA (--quick: 10,
             1,000), the levels mounted side by side and their trials interleaved,
             readdir of the HBA, device creation rate, RSS per device
  memory     a 1 TiB rd_mcp device: RSS before and after writing 1 GiB (in-process engine)
  dataplane  engine READ/WRITE throughput in-process vs memcpy / os.pread/pwrite
  iscsi      simfs's iSCSI server vs tgt (tgtd) over 127.0.0.1, same 256 MiB backing file
             on tmpfs: READ with libiscsi's iscsi-perf, WRITE with QEMU's iSCSI driver
             (qemu-img bench -w);
             4 KiB random and 1 MiB sequential, QD1 and QD32 (--profile: py-spy the
             simfs daemon during the first case)
  seed       the seed's v3.0 script end to end in a private mount namespace
  --profile  py-spy on the simfs daemon during the read cycle (top functions to the JSON)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = REPO / "tests" / "data" / "seed-v3.0.sh"

ATTR_R = "attrib/emulate_write_cache"
ATTR_W = "attrib/queue_depth"


# -- mounts ---------------------------------------------------------------------------------
class Tree:
    """One mounted tree with a device directory ``dev`` holding the attribute files."""

    def __init__(self, kind: str, mp: Path, pid: Optional[int], dev: Path,
                 cycles: tuple = ("read", "write", "mkdir")):
        self.kind, self.mp, self.pid, self.dev = kind, mp, pid, dev
        self.hba = dev.parent
        self.cycles = cycles
        self.attr_r: Optional[Path] = None  # default: dev/ATTR_R
        self.attr_w: Optional[Path] = None

    def at_depth_1(self, kind: str) -> "Tree":
        """The same mount, with the attribute files at its root (read and write cycles)."""
        t = Tree(kind, self.mp, self.pid, self.dev, cycles=("read", "write"))
        t.attr_r, t.attr_w = self.mp / Path(ATTR_R).name, self.mp / Path(ATTR_W).name
        return t

    def proc(self) -> Optional[psutil.Process]:
        return psutil.Process(self.pid) if self.pid else None


def _wait_mounted(mp: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mp):
            return
        time.sleep(0.01)
    raise RuntimeError(f"{mp} did not mount")


def _simfs_pid(state_dir: Path, mp: Path) -> int:
    from simfs.daemon import state  # noqa: PLC0415
    rec = state.read_record(str(mp.resolve()))
    if not rec:
        raise RuntimeError("no simfs record for " + str(mp))
    return int(rec["pid"])


def simfs_dev(t: Tree, name: str, pages: int = 8) -> Path:
    d = t.hba / name
    os.mkdir(d)
    _write(d / "control", f"rd_pages={pages}\n")
    _write(d / "enable", "1\n")
    return d


@contextlib.contextmanager
def mount(kind: str, work: Path, profile: str = "modern") -> Iterator[Tree]:
    mp = Path(tempfile.mkdtemp(prefix=f"mp-{kind}-", dir=work))
    proc = None
    if kind == "simfs":
        sd = Path(tempfile.mkdtemp(prefix="state-", dir=work))
        subprocess.run(["simfs", "mount", "--quiet", "--profile", profile, "--state-dir",
                        str(sd), str(mp)], check=True)
        pid = _simfs_pid(sd, mp)
        t = Tree(kind, mp, pid, mp / "target/core/rd_mcp_0/dev")
        os.makedirs(t.hba, exist_ok=True)
        simfs_dev(t, "dev")
    elif kind in ("fusepy", "fusepy+pin", "fusepy-cache", "fusepy-cache+dio"):
        cmd = [sys.executable, str(HERE / "baseline_fs.py")]
        if kind == "fusepy+pin":
            cmd.append("--pin")
        if kind.startswith("fusepy-cache"):
            cmd.append("--cache")
        if kind.endswith("+dio"):
            cmd.append("--direct-io")
        proc = subprocess.Popen(cmd + [str(mp)], stdout=subprocess.DEVNULL,
                                stderr=open(work / f"{mp.name}.log", "wb"))
        _wait_mounted(mp)
        t = Tree(kind, mp, proc.pid, mp / "target/core/rd_mcp_0/dev")
    elif kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "bench", str(mp)], check=True)
        t = Tree(kind, mp, None, mp / "target/core/rd_mcp_0/dev")
        os.makedirs(t.dev / "attrib")
        for f in ("control", "enable", ATTR_R, ATTR_W):
            _write(t.dev / f, "1\n", create=True)
    else:
        raise ValueError(kind)
    try:
        yield t
    finally:
        if kind == "simfs":
            subprocess.run(["simfs", "umount", str(mp)], check=False)
        elif kind == "tmpfs":
            subprocess.run(["umount", str(mp)], check=False)
        else:
            subprocess.run(["fusermount", "-u", str(mp)], check=False)
            if proc:
                # Another session's private mount namespace (unshare -m) made while this
                # tree was mounted keeps a copy of the mount, and the daemon runs until
                # that namespace ends: do not wait for it.
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with contextlib.suppress(OSError):
            os.rmdir(mp)


# -- the cycles -----------------------------------------------------------------------------
def _write(path: Path, text: str, create: bool = False) -> None:
    flags = os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if create else 0)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


#: Per-cycle latencies (ns) of the cycles timed last (read and write): the same two clock
#: reads per cycle for every tree, so the percentiles compare like with like.
LAT: list[int] = []


def read_cycles(path: Path, n: int) -> None:
    p = str(path)
    lat = LAT
    lat.clear()
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fd = os.open(p, os.O_RDONLY)
        os.read(fd, 4096)
        os.close(fd)
        lat.append(clock() - t0)


def write_cycles(path: Path, n: int, data: bytes = b"64\n") -> None:
    p = str(path)
    lat = LAT
    lat.clear()
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fd = os.open(p, os.O_WRONLY)
        os.write(fd, data)
        os.close(fd)
        lat.append(clock() - t0)


def mkdir_cycles(t: Tree, n: int) -> None:
    """mkdir a device, write control and enable, rmdir it (tmpfs: files made and removed)."""
    d = str(t.hba / "bench_tmp")
    ctl, ena = d + "/control", d + "/enable"
    tmpfs = t.kind == "tmpfs"
    flags = os.O_WRONLY | (os.O_CREAT if tmpfs else 0)
    for _ in range(n):
        os.mkdir(d)
        fd = os.open(ctl, flags, 0o644)
        os.write(fd, b"rd_pages=8\n")
        os.close(fd)
        fd = os.open(ena, flags, 0o644)
        os.write(fd, b"1\n")
        os.close(fd)
        if tmpfs:
            os.unlink(ctl)
            os.unlink(ena)
        os.rmdir(d)


def run_queue_wait_ns(pid: Optional[int]) -> int:
    """Time the process's threads (the bench's own when ``pid`` is None) spent runnable
    but waiting for a CPU (the second field of /proc/<pid>/task/<tid>/schedstat)."""
    base = f"/proc/{pid}/task" if pid else "/proc/self/task"
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(base):
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"{base}/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
    return total


def timed(fn: Callable[[int], None], n: int, proc: Optional[psutil.Process]) -> dict:
    c0 = proc.cpu_times() if proc else None
    w0, b0 = run_queue_wait_ns(proc.pid if proc else -1), run_queue_wait_ns(None)
    LAT.clear()
    t0 = time.perf_counter()
    fn(n)
    wall = time.perf_counter() - t0
    out = {"us_per_op": wall / n * 1e6}
    if LAT:
        lat = sorted(LAT)
        out["p50_us"] = lat[len(lat) // 2] / 1e3
        out["p99_us"] = lat[int(len(lat) * 0.99)] / 1e3
        out["tail_share"] = sum(x for x in lat if x > 10 * lat[len(lat) // 2]) / sum(lat)
    # waiting for a CPU, per cycle: the daemon's threads and the bench's own
    out["bench_rq_wait_us_per_op"] = (run_queue_wait_ns(None) - b0) / n / 1e3
    if proc:
        c1 = proc.cpu_times()
        out["daemon_cpu_us_per_op"] = ((c1.user - c0.user) + (c1.system - c0.system)) / n * 1e6
        out["daemon_rq_wait_us_per_op"] = (run_queue_wait_ns(proc.pid) - w0) / n / 1e3
    return out


def median_of(trials: list[dict]) -> dict:
    keys = trials[0].keys()
    out = {k: statistics.median(t[k] for t in trials) for k in keys}
    out["ops_per_s"] = 1e6 / out["us_per_op"]
    out["trials_us"] = [round(t["us_per_op"], 1) for t in trials]
    return out


CYCLES = {
    "read": lambda t: (lambda n: read_cycles(t.attr_r or t.dev / ATTR_R, n)),
    "write": lambda t: (lambda n: write_cycles(t.attr_w or t.dev / ATTR_W, n)),
    "mkdir": lambda t: (lambda n: mkdir_cycles(t, n)),
}


def run_cycles(trees: list[Tree], n: dict[str, int], trials: int) -> dict:
    """Every cycle on every tree, trials interleaved (A B C, B C A, ...), medians."""
    raw: dict = {t.kind: {c: [] for c in t.cycles} for t in trees}
    for t in trees:  # warm-up
        for c in t.cycles:
            CYCLES[c](t)(max(5, n[c] // 20))
    for trial in range(trials):
        # Each trial starts with another tree (A B C, B C A, C A B ...): on a shared machine
        # the load comes in bursts, and a fixed order would hand one tree the same slot.
        order = trees[trial % len(trees):] + trees[:trial % len(trees)]
        for c, mk in CYCLES.items():
            for t in order:
                if c in t.cycles:
                    raw[t.kind][c].append(timed(mk(t), n[c], t.proc()))
    return {k: {c: median_of(v) for c, v in cs.items()} for k, cs in raw.items()}


# -- sections -------------------------------------------------------------------------------
def section_control(a, work: Path, res: dict) -> None:
    n = {"read": 1000, "write": 1000, "mkdir": 200} if a.quick else \
        {"read": 3000, "write": 3000, "mkdir": 500}
    trials = 3 if a.quick else 6  # one per starting tree
    with contextlib.ExitStack() as st:
        trees = [st.enter_context(mount(k, work))
                 for k in ("simfs", "fusepy", "fusepy+pin", "fusepy-cache", "tmpfs")]
        trees.append(trees[3].at_depth_1("fusepy-cache@1"))
        out = run_cycles(trees, n, trials)
        if a.profile:
            res["profile"] = profile_daemon(trees[0], work)
    for c in CYCLES:
        s, f, fp = out["simfs"][c], out["fusepy"][c], out["fusepy+pin"][c]
        out.setdefault("ratios", {})[c] = {
            "vs_fusepy_cache": s["ops_per_s"] / out["fusepy-cache"][c]["ops_per_s"],
            "vs_fusepy": s["ops_per_s"] / f["ops_per_s"],
            "vs_fusepy_pinned": s["ops_per_s"] / fp["ops_per_s"],
            "vs_tmpfs": s["ops_per_s"] / out["tmpfs"][c]["ops_per_s"],
        }
        if c in out["fusepy-cache@1"]:
            out["ratios"][c]["vs_fusepy_cache_depth1"] = \
                s["ops_per_s"] / out["fusepy-cache@1"][c]["ops_per_s"]
    res["control"] = out


def _rss(proc: psutil.Process) -> int:
    return proc.memory_info().rss


def section_scale(a, work: Path, res: dict) -> None:
    """The cycles at 10, 1,000 and 10,000 devices in one HBA. The three trees are mounted
    side by side and their trials interleaved (as the control section's trees are), so a
    change of the machine's load lands on every level alike instead of on whichever level
    happened to run then."""
    levels = [10, 1000] if a.quick else [10, 1000, 10000]
    n = {"read": 1000, "write": 1000, "mkdir": 100} if a.quick else \
        {"read": 2000, "write": 2000, "mkdir": 300}
    trials = 3 if a.quick else 6
    out: dict = {"levels": {}, "interleaved": True, "trials": trials}
    with contextlib.ExitStack() as st:
        trees: dict[int, Tree] = {}
        for level in levels:
            t = st.enter_context(mount("simfs", work))
            proc = t.proc()
            rss0 = _rss(proc)
            t0 = time.perf_counter()
            # The fastest way in: one process, plain syscalls (the bench's own loop).
            for i in range(1, level):  # "dev" is the first
                d = str(t.hba / f"d{i}")
                os.mkdir(d)
                fd = os.open(d + "/control", os.O_WRONLY)
                os.write(fd, b"rd_pages=1\n")
                os.close(fd)
                fd = os.open(d + "/enable", os.O_WRONLY)
                os.write(fd, b"1\n")
                os.close(fd)
            create_s = time.perf_counter() - t0
            rss1 = _rss(proc)
            t.dev = t.hba / f"d{level // 2}" if level > 1 else t.dev
            t.kind = f"simfs@{level}"  # run_cycles keeps results by kind
            trees[level] = t
            out["levels"][level] = {
                "devices": level, "create_s": create_s,
                "create_us_per_device": create_s / max(1, level - 1) * 1e6,
                "rss_before": rss0, "rss_after": rss1,
                "rss_per_device_kib": (rss1 - rss0) / max(1, level - 1) / 1024,
            }
        cyc = run_cycles(list(trees.values()), n, trials)
        for level, t in trees.items():
            ls = []
            for _ in range(5):
                t0 = time.perf_counter()
                entries = os.listdir(t.hba)
                ls.append(time.perf_counter() - t0)
            stat_hba = []
            for _ in range(200):
                t0 = time.perf_counter()
                os.stat(t.hba)
                stat_hba.append(time.perf_counter() - t0)
            out["levels"][level].update({
                "cycles": cyc[t.kind],
                "readdir_entries": len(entries),
                "readdir_ms": statistics.median(ls) * 1e3,
                "readdir_us_per_entry": statistics.median(ls) / max(1, len(entries)) * 1e6,
                "stat_hba_us": statistics.median(stat_hba) * 1e6,
            })
    lo, hi = min(levels), max(levels)
    out["flatness"] = {c: out["levels"][hi]["cycles"][c]["us_per_op"]
                       / out["levels"][lo]["cycles"][c]["us_per_op"] for c in CYCLES}
    out["flatness_levels"] = [lo, hi]
    res["scale"] = out


def _worker(args: list[str], timeout: int = 900) -> dict:
    r = subprocess.run([sys.executable, str(HERE / "dataplane.py"), *args],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def section_memory(a, work: Path, res: dict) -> None:
    res["memory_1t"] = _worker(["mem1t"] + (["--quick"] if a.quick else []))


def section_dataplane(a, work: Path, res: dict) -> None:
    res["dataplane"] = _worker(["io", "--dir", str(work)] + (["--quick"] if a.quick else []))


def section_iscsi(a, work: Path, res: dict) -> None:
    args = ["iscsi", "--dir", str(work)] + (["--quick"] if a.quick else [])
    raw = work / "pyspy-iscsi.txt"
    if a.profile and shutil.which("py-spy"):
        args += ["--profile", str(raw)]
    res["iscsi"] = _worker(args, timeout=1800)
    if raw.exists():
        res["iscsi"]["profile"] = _top_frames(raw, "simfs/iscsi/server.py")


def _top_frames(raw: Path, must: str, n: int = 30) -> dict:
    """Inclusive counts of the frames of py-spy's raw stacks that pass through ``must``."""
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        if " " not in line:
            continue
        stack, cnt = line.rsplit(" ", 1)
        if must not in stack:
            continue
        total += int(cnt)
        for f in set(stack.split(";")):
            incl[f] = incl.get(f, 0) + int(cnt)
    top = sorted(incl.items(), key=lambda kv: -kv[1])[:n]
    return {"samples": total, "top_inclusive": [[f, c] for f, c in top]}


def section_seed(a, work: Path, res: dict) -> None:
    if not shutil.which("unshare") or not shutil.which("losetup"):
        res["seed"] = {"skipped": "needs unshare and losetup"}
        return
    reps = 3 if a.quick else 9
    w = Path(tempfile.mkdtemp(prefix="seed-", dir=work))
    loops = []
    try:
        for i in range(3):
            img = w / f"disk{i}.img"
            with open(img, "wb") as f:
                f.truncate((256 + 64 * i) << 20)
            r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True,
                               text=True, check=True)
            loops.append(r.stdout.strip())
        devs = []
        for d in loops:
            rdev = os.stat(d).st_rdev
            devs.append(f"{os.major(rdev)}:{os.minor(rdev)}")
        out: dict = {}
        kinds = ("simfs", "fusepy-cache", "fusepy", "tmpfs")
        got: dict = {k: [] for k in kinds}
        # One run of each kind in turn, reps times (A B C D A B C D ...): the machine's load
        # drifts over a minute, and blocks of one kind would measure the drift.
        for rep in range(reps):
            wr = w / f"rep{rep}"  # a fresh state directory for every run
            wr.mkdir()
            shutil.copy(SEED, wr / "seed.sh")
            for kind in kinds:
                if kind in out:
                    continue  # failed once: reported below
                r = subprocess.run(["unshare", "-m", str(HERE / "seed_bench.sh"), kind, str(wr),
                                    "1", *devs], capture_output=True, text=True, timeout=600)
                row = [list(map(int, line.split())) for line in r.stdout.splitlines()
                       if line.strip() and line.split()[0].isdigit()]
                if r.returncode or not row:
                    out[kind] = {"error": (r.stdout + r.stderr)[-2000:]}
                    continue
                got[kind] += row
        for kind in kinds:
            rows = got[kind]
            if kind in out or not rows:
                continue
            out[kind] = {
                "mount_ms": statistics.median(x[0] for x in rows) / 1e6,
                "script_ms": statistics.median(x[1] for x in rows) / 1e6,
                "umount_ms": statistics.median(x[2] for x in rows) / 1e6,
                "script_rc": [x[3] for x in rows],
                "script_ms_trials": [round(x[1] / 1e6, 1) for x in rows],
                "seed_stderr_bytes": (w / "rep0" / f"seed.{kind}.1.out").stat().st_size,
            }
        if "script_ms" in out.get("simfs", {}):
            for kind in ("fusepy-cache", "fusepy", "tmpfs"):
                if "script_ms" in out.get(kind, {}):
                    out[f"ratio_vs_{kind}"] = out[kind]["script_ms"] / out["simfs"]["script_ms"]
        res["seed"] = out
    finally:
        for d in loops:
            subprocess.run(["losetup", "-d", d], check=False)


def profile_daemon(t: Tree, work: Path) -> dict:
    """py-spy on the simfs daemon during read cycles: the top functions, inclusive."""
    if not shutil.which("py-spy"):
        return {"skipped": "py-spy not installed"}
    raw = work / "pyspy.txt"
    spy = subprocess.Popen(["py-spy", "record", "-r", "500", "-f", "raw", "-o", str(raw),
                            "-d", "5", "--pid", str(t.pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        read_cycles(t.dev / ATTR_R, 200)
    spy.wait()
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        if " " not in line:
            continue
        stack, cnt = line.rsplit(" ", 1)
        frames = stack.split(";")
        if any("accept (" in f or "FUSE.__init__" in f or "select (selectors" in f
               for f in frames) or not stack.strip():
            continue  # idle threads: the FUSE main loop, the control socket, iSCSI's loop
        total += int(cnt)
        for f in set(frames):
            incl[f] = incl.get(f, 0) + int(cnt)
    top = sorted(incl.items(), key=lambda kv: -kv[1])[:25]
    return {"samples": total, "top_inclusive": [[f, c] for f, c in top]}


# -- report ---------------------------------------------------------------------------------
def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib import metadata  # noqa: PLC0415
    try:
        fusepy = metadata.version("fusepy")
    except metadata.PackageNotFoundError:
        fusepy = "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "fusepy": fusepy,
            "loadavg_at_start": os.getloadavg(), "mem_total_gib":
            round(psutil.virtual_memory().total / 2**30, 1)}


def table(res: dict) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def add(name, val, base, ratio, target):
        rows.append((name, val, base, ratio, target))

    c = res.get("control")
    if c:
        for cyc, label in (("read", "read cycle (emulate_write_cache)"),
                           ("write", "write cycle (queue_depth)"),
                           ("mkdir", "mkdir+control+enable+rmdir")):
            s, f, fp, fc, tm = (c[k][cyc] for k in ("simfs", "fusepy", "fusepy+pin",
                                                    "fusepy-cache", "tmpfs"))
            r = c["ratios"][cyc]
            target = 1.0 if cyc != "mkdir" else None
            add(f"{label} /s", f"{s['ops_per_s']:,.0f}",
                f"cache {fc['ops_per_s']:,.0f} | fusepy {f['ops_per_s']:,.0f} | "
                f"+pin {fp['ops_per_s']:,.0f} | tmpfs {tm['ops_per_s']:,.0f}",
                f"{r['vs_fusepy_cache']:.2f}x | {r['vs_fusepy']:.2f}x | "
                f"{r['vs_fusepy_pinned']:.2f}x | {r['vs_tmpfs']:.3f}x",
                f">={target}x cache " + ("MET" if r["vs_fusepy_cache"] >= target else "NOT MET")
                if target else "")
            if "vs_fusepy_cache_depth1" in r:
                f1 = c["fusepy-cache@1"][cyc]
                add("  vs the caching floor at depth 1", "",
                    f"cache@1 {f1['ops_per_s']:,.0f}", f"{r['vs_fusepy_cache_depth1']:.2f}x", "")
            add(f"  daemon CPU us/{cyc} cycle", f"{s.get('daemon_cpu_us_per_op', 0):.0f}",
                f"cache {fc.get('daemon_cpu_us_per_op', 0):.0f} | "
                f"fusepy {f.get('daemon_cpu_us_per_op', 0):.0f} | "
                f"+pin {fp.get('daemon_cpu_us_per_op', 0):.0f}", "", "")
            if "p50_us" in s and "p50_us" in fc:
                add("  median / p99 cycle us", f"{s['p50_us']:.0f} / {s['p99_us']:.0f}",
                    f"cache {fc['p50_us']:.0f} / {fc['p99_us']:.0f}",
                    f"{fc['p50_us'] / s['p50_us']:.2f}x median", "")
                def waited(x: dict) -> float:
                    return x["daemon_rq_wait_us_per_op"] + x["bench_rq_wait_us_per_op"]
                add("  waiting for a CPU us/cycle", f"{waited(s):.0f}",
                    f"cache {waited(fc):.0f}", "daemon + bench", "")
    sd = res.get("seed")
    if sd and "simfs" in sd and "script_ms" in sd["simfs"]:
        s = sd["simfs"]
        nan = float("nan")
        add("seed v3.0 script, ms", f"{s['script_ms']:.1f}",
            f"cache {sd.get('fusepy-cache', {}).get('script_ms', nan):.1f} | "
            f"fusepy {sd.get('fusepy', {}).get('script_ms', nan):.1f} | "
            f"tmpfs {sd.get('tmpfs', {}).get('script_ms', nan):.1f}",
            f"{sd.get('ratio_vs_fusepy-cache', nan):.2f}x | "
            f"{sd.get('ratio_vs_fusepy', nan):.2f}x | {sd.get('ratio_vs_tmpfs', nan):.2f}x",
            ">=0.8x cache " + ("MET" if sd.get("ratio_vs_fusepy-cache", 0) >= 0.8 else
                               "NOT MET"))
        add("  simfs mount / umount, ms", f"{s['mount_ms']:.0f} / {s['umount_ms']:.0f}",
            f"fusepy {sd.get('fusepy', {}).get('mount_ms', float('nan')):.0f} / "
            f"{sd.get('fusepy', {}).get('umount_ms', float('nan')):.0f}", "", "")
    sc = res.get("scale")
    if sc:
        lo, hi = sc["flatness_levels"]
        for lvl, v in sc["levels"].items():
            cy = v["cycles"]
            add(f"{int(lvl):,} devices: read/write/mkdir us",
                f"{cy['read']['us_per_op']:.0f} / {cy['write']['us_per_op']:.0f} / "
                f"{cy['mkdir']['us_per_op']:.0f}",
                f"create {v['create_us_per_device']:.0f} us/dev", "",
                "")
            add(f"  ls of the HBA ({v['readdir_entries']:,} entries)",
                f"{v['readdir_ms']:.1f} ms", f"{v['readdir_us_per_entry']:.1f} us/entry",
                f"stat {v['stat_hba_us']:.0f} us", "")
            if int(lvl) >= 1000:
                add(f"  RSS per device at {int(lvl):,}", f"{v['rss_per_device_kib']:.1f} KiB",
                    "", "", "<=50 KiB " + ("MET" if v["rss_per_device_kib"] <= 50 else
                                           "NOT MET"))
        fl = sc["flatness"]
        worst = max(fl.values())
        add(f"per-op cost {hi:,} vs {lo:,} devices",
            " / ".join(f"{fl[c]:.2f}x" for c in CYCLES), "read / write / mkdir", "",
            "<=1.2x " + ("MET" if worst <= 1.2 else "NOT MET"))
    m = res.get("memory_1t")
    if m:
        g = m["written_growth_ratio"]
        add("1 TiB rd_mcp RSS: created / +written",
            f"+{(m['rss_created'] - m['rss_sim']) / 2**20:.1f} MiB / "
            f"+{(m['rss_written'] - m['rss_created']) / 2**20:.0f} MiB",
            f"wrote {m['written_bytes'] / 2**20:.0f} MiB", f"{g:.3f}x of written",
            "follows writes " + ("MET" if 0.9 <= g <= 1.1 else "NOT MET"))
    d = res.get("dataplane")
    if d:
        for r in d["results"]:
            sz = "4 KiB" if r["size"] == 4096 else "1 MiB"
            add(f"engine {r['backend']} {r['op']} {sz}",
                f"{r['engine_MBps']:,.0f} MB/s ({r['engine_iops']:,.0f}/s)",
                f"{r['baseline']} {r['baseline_MBps']:,.0f} MB/s", f"{r['ratio']:.3f}x", "")
    ic = res.get("iscsi")
    if ic and "cases" in ic:
        for c in ic["cases"]:
            t = c["target_ratio"]
            add(f"iSCSI {c['case']}",
                f"{c['simfs_MBps']:,.0f} MB/s ({c['simfs_iops']:,.0f}/s)",
                f"tgt {c['tgt_MBps']:,.0f} MB/s ({c['tgt_iops']:,.0f}/s)", f"{c['ratio']:.2f}x",
                "" if t is None else
                f">={t}x tgt " + ("MET" if c["ratio"] >= t else "NOT MET"))
            add("  CPU us/command simfs | tgt",
                f"{c['simfs_cpu_us_per_cmd']:.0f}", f"tgt {c['tgt_cpu_us_per_cmd']:.0f}", "", "")
    elif ic:
        add("iSCSI vs tgt", ic.get("skipped", "?"), "", "", "")
    w = [max(len(r[i]) for r in rows + [("figure", "simfs", "baseline", "ratio", "target")])
         for i in range(5)]
    head = ("figure", "simfs", "baseline(s)", "ratio(s)", "target")
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head)),
             "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines)


SECTIONS = {"control": section_control, "seed": section_seed, "scale": section_scale,
            "memory": section_memory, "dataplane": section_dataplane, "iscsi": section_iscsi}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer trials; scale stops at 1,000")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--profile", action="store_true", help="py-spy the daemon (control)")
    p.add_argument("--out", help="JSON path (default ~/.local/state/simfs/bench/"
                   "<timestamp>.json, outside the checkout)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (mount, unshare, losetup)", file=sys.stderr)
        return 2
    res: dict = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                 "quick": a.quick, "machine": machine(),
                 "tstate_pin": not os.environ.get("SIMFS_NO_TSTATE_PIN")}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="simfs-bench-") as d:
        work = Path(d)
        for name in a.only.split(","):
            name = name.strip()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            s0 = time.monotonic()
            SECTIONS[name](a, work, res)
            res.setdefault("section_seconds", {})[name] = round(time.monotonic() - s0, 1)
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["machine"]["loadavg_at_end"] = os.getloadavg()
    res["table"] = table(res)
    out = Path(a.out) if a.out else results_dir() / (
        dt.datetime.now().strftime("%Y%m%d-%H%M%S") + (".quick" if a.quick else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    m = res["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
          f"load {m['loadavg_at_start'][0]:.2f} -> {m['loadavg_at_end'][0]:.2f}")
    print(res["table"])
    print(f"\nwritten: {out.relative_to(REPO) if out.is_relative_to(REPO) else out} "
          f"({res['seconds']:.0f} s)")
    return 0


def results_dir() -> Path:
    """Where results go unless --out says: the user's state directory, as simfs's own
    state does, so a run never writes into the checkout."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "simfs" / "bench"


if __name__ == "__main__":
    sys.exit(main())
