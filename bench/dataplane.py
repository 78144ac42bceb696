"""In-process data-plane and big-device memory figures (run by bench/run.py in a fresh
process each, so RSS starts clean; prints one JSON object on stdout).

    python3 bench/dataplane.py io [--quick] [--dir DIR]
    python3 bench/dataplane.py mem1t [--quick]

``io``: READ(16)/WRITE(16) through ``ScsiEngine.submit`` (the whole pipeline: CDB parse,
UA/ALUA/PR checks, the backend) on an rd_mcp and a fileio device, 4 KiB and 1 MiB
transfers, sequential over a window. Baselines, same process, same pattern:
  - rd_mcp: a plain memory copy out of / into an anonymous mmap (what RamStorage is);
  - fileio: os.pread / os.pwrite on the same backing file.
Chunks larger than the device's max transfer are split the way an initiator would
(several commands), and the split is counted in the engine's time.

``mem1t``: RSS of a 1 TiB rd_mcp device: before, after creating and enabling it, after
writing 1 GiB (``--quick``: 256 MiB) through the engine, spread over the device
(rd_mcp has no UNMAP: emulate_tpu is ENOSYS there, as in the kernel).

``iscsi``: simfs's iSCSI server vs tgt over 127.0.0.1 (see :func:`iscsi`):

    python3 bench/dataplane.py iscsi [--quick] [--only "4 KiB,1 MiB"] [--seconds N]
                                     [--trials N] [--profile pyspy.txt]
                                     [--writer qemu|py]
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil

INI = "iqn.1994-05.com.example:bench"


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _read16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)


def _write16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, 0, lba, blocks, 0, 0)


def _rig(sim, dev):
    port = sim.port(dev)
    nexus = sim.nexus(INI, port)
    # Clear the power-on unit attention so the first timed command is not it.
    for _ in range(4):
        r = sim.engine.submit(nexus, dev, bytes([0, 0, 0, 0, 0, 0]))
        if r.status == 0:
            break
    return nexus


def _max_bytes(sim, dev, nexus, block: int) -> int:
    """The largest transfer one command may carry here (hw_max_sectors, as the kernel)."""
    for blocks in (2048, 1024, 512, 256, 128, 64, 8):
        r = sim.engine.submit(nexus, dev, _read16(0, blocks))
        if r.status == 0:
            return blocks * block
    return 8 * block


def _time_loop(fn, budget: float, min_iters: int) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    while True:
        fn(n)
        n += 1
        if n >= min_iters and time.perf_counter() - t0 >= budget:
            return n, time.perf_counter() - t0


def io(quick: bool, workdir: Path) -> dict:
    from simfs.testing import Sim

    budget = 0.4 if quick else 1.5
    window = 64 << 20  # bytes walked sequentially, then wrapped
    sim = Sim(state_dir=workdir / "sim")
    out: dict = {"window_bytes": window, "budget_s": budget, "results": []}
    img = workdir / "fileio.img"
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    rd = sim.rd_device(pages=(256 << 20) // 4096, name="rd0")
    fio = sim.fileio_device(img, size=256 << 20, name="f0", buffered=True)
    # Warm the backing file into the page cache (the tgt baseline was measured that way).
    fd = os.open(img, os.O_RDWR)
    os.pwrite(fd, b"\1" * (1 << 20), 0)
    for off in range(0, window, 1 << 20):
        os.pwrite(fd, b"\1" * (1 << 20), off)
    anon = mmap.mmap(-1, window, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anon.write(b"\1" * window)
    for name, dev, path in (("rd_mcp", rd, "rd_mcp_0/rd0"), ("fileio", fio, "fileio_0/f0")):
        nexus = _rig(sim, dev)
        block = int(sim.read(f"/target/core/{path}/attrib/block_size"))
        maxb = _max_bytes(sim, dev, nexus, block)
        for size in (4096, 1 << 20):
            per_cmd = min(size, maxb)
            ncmd = size // per_cmd
            slots = window // size
            payload = b"\2" * per_cmd
            for op in ("read", "write"):
                def engine_op(i, op=op):
                    off = (i % slots) * size
                    for k in range(ncmd):
                        lba = (off + k * per_cmd) // block
                        if op == "read":
                            r = sim.engine.submit(nexus, dev, _read16(lba, per_cmd // block))
                        else:
                            r = sim.engine.submit(nexus, dev, _write16(lba, per_cmd // block),
                                                  payload)
                        if r.status != 0:
                            raise RuntimeError(f"{name} {op} {size}: status {r.status:#x}")
                if name == "fileio":
                    big = b"\2" * size
                    def base_op(i, op=op, big=big):
                        off = (i % slots) * size
                        if op == "read":
                            os.pread(fd, size, off)
                        else:
                            os.pwrite(fd, big, off)
                    base_name = "os.pread" if op == "read" else "os.pwrite"
                else:
                    big = b"\2" * size
                    def base_op(i, op=op, big=big):
                        off = (i % slots) * size
                        if op == "read":
                            anon[off:off + size]
                        else:
                            anon[off:off + size] = big
                    base_name = "memcpy (mmap slice)"
                min_iters = 50 if size > 4096 else 500
                en, et = _time_loop(engine_op, budget, min_iters)
                bn, bt = _time_loop(base_op, budget, min_iters)
                eng_bps, base_bps = en * size / et, bn * size / bt
                out["results"].append({
                    "backend": name, "op": op, "size": size, "commands_per_io": ncmd,
                    "engine_iops": en / et, "engine_MBps": eng_bps / 1e6,
                    "baseline": base_name, "baseline_iops": bn / bt,
                    "baseline_MBps": base_bps / 1e6, "ratio": eng_bps / base_bps,
                })
        out.setdefault("max_transfer_bytes", {})[name] = maxb
    os.close(fd)
    sim.close()
    return out


# -- iSCSI vs tgt ---------------------------------------------------------------------------
IQN = "iqn.2026-12.org.simfs:bench"
TGT_IQN = "iqn.2026-11.org.example:tgt1"
BENCH_INI = "iqn.2026-12.org.simfs:bench-ini"
#: (name, op, blocks of 512, queue depth, random)
ISCSI_CASES = (
    ("read 4 KiB rand QD1", "read", 8, 1, True),
    ("read 4 KiB rand QD32", "read", 8, 32, True),
    ("read 1 MiB seq QD1", "read", 2048, 1, False),
    ("read 1 MiB seq QD32", "read", 2048, 32, False),
    ("write 4 KiB rand QD1", "write", 8, 1, True),
    ("write 4 KiB rand QD32", "write", 8, 32, True),
    ("write 1 MiB seq QD1", "write", 2048, 1, False),
    ("write 1 MiB seq QD32", "write", 2048, 32, False),
)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 15) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _put(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _SimfsTarget:
    """``simfs mount`` + a fileio LUN on ``img`` exported on 127.0.0.1 (shell-equivalent
    steps of tests/e2e/test_iscsi_e2e.py, with generate_node_acls=1)."""

    def __init__(self, work: Path, img: Path, size: int, mrdsl: int):
        import subprocess
        self.mp = work / "mp"
        self.sd = work / "state"
        self.mp.mkdir()
        self.sd.mkdir()
        subprocess.run(["simfs", "mount", "--quiet", "--profile", "modern", "--state-dir",
                        str(self.sd), str(self.mp)], check=True)
        from simfs.daemon import state
        self.pid = int(state.read_record(str(self.mp.resolve()))["pid"])
        self.port = _free_port()
        t = self.mp / "target"
        dev = t / "core/fileio_0/f0"
        os.makedirs(dev)
        _put(dev / "control", f"fd_dev_name={img},fd_dev_size={size},fd_buffered_io=1\n")
        _put(dev / "enable", "1\n")
        tpg = t / "iscsi" / IQN / "tpgt_1"
        os.makedirs(tpg / "lun/lun_0")
        os.symlink(dev, tpg / "lun/lun_0/lun0")
        os.mkdir(tpg / f"np/127.0.0.1:{self.port}")
        for k, v in (("authentication", "0"), ("generate_node_acls", "1"),
                     ("cache_dynamic_acls", "1"), ("demo_mode_write_protect", "0")):
            _put(tpg / "attrib" / k, v + "\n")
        _put(tpg / "param/MaxRecvDataSegmentLength", f"{mrdsl}\n")
        _put(tpg / "enable", "1\n")
        _wait_port(self.port)
        self.url = f"iscsi://127.0.0.1:{self.port}/{IQN}/0"
        self.target, self.lun = IQN, 0

    def close(self) -> None:
        import subprocess
        subprocess.run(["simfs", "umount", str(self.mp)], check=False)


class _TgtTarget:
    """Debian tgt (shared/reference/peers.md): ``tgtd -f`` on 127.0.0.1, LUN 1 on ``img``."""

    def __init__(self, work: Path, img: Path, mrdsl: int):
        import subprocess
        self.port = _free_port()
        # its own management channel (a unix socket named after it): another tgtd may run
        self.ctl = str(1000 + os.getpid() % 8000)
        self.proc = subprocess.Popen(["tgtd", "-f", "-C", self.ctl, "--iscsi",
                                      f"portal=127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(work / "tgtd.log", "wb"))
        _wait_port(self.port)

        def adm(*a):
            for _ in range(50):
                r = subprocess.run(["tgtadm", "-C", self.ctl, "--lld", "iscsi", *a],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    return
                time.sleep(0.1)
            raise RuntimeError(f"tgtadm {a}: {r.stderr}")
        adm("--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN)
        adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", str(img))
        adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        adm("--op", "update", "--mode", "target", "--tid", "1", "-n",
            "MaxRecvDataSegmentLength", "-v", str(mrdsl))
        self.url = f"iscsi://127.0.0.1:{self.port}/{TGT_IQN}/1"
        self.target, self.lun = TGT_IQN, 1
        self.pid = self.proc.pid

    def close(self) -> None:
        import subprocess
        # tgtd ignores SIGTERM while it has targets; its own way out is "delete system"
        subprocess.run(["tgtadm", "-C", self.ctl, "--op", "delete", "--mode", "system"],
                       capture_output=True, timeout=30)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _iscsi_perf(t, blocks: int, qd: int, rand: bool, seconds: int) -> dict:
    import re
    import subprocess
    cmd = ["iscsi-perf", "-i", BENCH_INI, "-t", str(seconds), "-m", str(qd), "-b", str(blocks)]
    if rand:
        cmd.append("-r")
    r = subprocess.run(cmd + [t.url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.findall(r"iops average (\d+) \((\d+) MB/s\)", r.stdout.replace("\r", "\n"))
    if r.returncode or not m:
        raise RuntimeError(f"iscsi-perf {t.url}: rc {r.returncode}: {(r.stdout + r.stderr)[-800:]}")
    iops = int(m[-1][0])
    return {"iops": iops, "MBps": iops * blocks * 512 / 1e6}


def _py_ini(t, blocks: int, qd: int, rand: bool, seconds: int) -> dict:
    import subprocess
    cmd = [sys.executable, str(Path(__file__).with_name("iscsi_ini.py")), "127.0.0.1",
           str(t.port), t.target, str(t.lun), "--blocks", str(blocks), "--qd", str(qd),
           "--seconds", str(seconds)]
    if rand:
        cmd.append("--random")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode:
        raise RuntimeError(f"iscsi_ini {t.port}: {r.stderr[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


#: qemu-img bench's step for "random" 4 KiB writes: 7919 blocks (a prime, so the offsets
#: visit every block of the 256 MiB LUN before one repeats); it has no random mode
QEMU_STEP_BLOCKS = 7919


def _qemu_bench(t, blocks: int, qd: int, rand: bool, seconds: int) -> dict:
    """WRITE with QEMU's iSCSI block driver (libiscsi inside ``qemu-img bench -w``): a
    calibration run, then a run of about ``seconds`` (qemu-img bench counts requests)."""
    import re
    import subprocess
    size = blocks * 512
    step = size * QEMU_STEP_BLOCKS if rand else size

    def once(count: int) -> float:
        cmd = ["qemu-img", "bench", "-w", "-t", "none", "-c", str(count),
               "-d", str(qd), "-s", str(size), "-S", str(step),
               "--image-opts", f"driver=iscsi,transport=tcp,portal=127.0.0.1:{t.port},"
               f"target={t.target},lun={t.lun},initiator-name={BENCH_INI}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 120)
        m = re.search(r"Run completed in ([0-9.]+) seconds", r.stdout)
        if r.returncode or not m:
            raise RuntimeError(f"qemu-img bench {t.port}: rc {r.returncode}: "
                               f"{(r.stdout + r.stderr)[-800:]}")
        return max(float(m.group(1)), 1e-6)
    count = 400 if size >= 1 << 20 else 2000
    took = once(count)
    count = max(count, int(count / took * seconds))
    took = once(count)
    iops = count / took
    return {"iops": iops, "MBps": iops * size / 1e6}


def _qemu_has_iscsi() -> bool:
    import shutil
    import subprocess
    if not shutil.which("qemu-img"):
        return False
    r = subprocess.run(["qemu-img", "--help"], capture_output=True, text=True)
    return " iscsi " in f" {r.stdout} "


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu(pid: int) -> float:
    try:
        c = psutil.Process(pid).cpu_times()
        return c.user + c.system
    except psutil.Error:
        return 0.0


#: the targets (ratio to tgt) by case, as issue 14 names them: every 4 KiB case 1.0x, 1 MiB
#: at QD32 READ 1.5x and WRITE 1.2x; 1 MiB at QD1 has none (None)
def _target_ratio(op: str, blocks: int, qd: int) -> Optional[float]:
    if blocks < 2048:
        return 1.0
    if qd < 32:
        return None
    return 1.5 if op == "read" else 1.2


def iscsi(quick: bool, workdir: Path, only: str = "", profile: str = "",
          seconds: int = 0, trials: int = 0, writer: str = "qemu") -> dict:
    """simfs's iSCSI server vs tgt over 127.0.0.1, same initiator, same backing file, one
    run. READ: libiscsi's ``iscsi-perf``; WRITE: QEMU's iSCSI driver (``qemu-img bench
    -w``; iscsi-perf only reads), or bench/iscsi_ini.py with ``writer="py"`` (a Python
    initiator: its own CPU on the shared cores lowers simfs's figures more than tgt's,
    see docs/performance.md). The backing file is 256 MiB on tmpfs (/dev/shm), so both targets serve it
    from the page cache; fileio with fd_buffered_io=1 on simfs, tgt's rdwr backing store.
    Both targets get MaxRecvDataSegmentLength=262144 (the size of Data-Out PDUs they
    accept: 8 KiB by default, which makes a 1 MiB write 128 PDUs in both). Cases are
    interleaved simfs, tgt, simfs, tgt ... and each figure is the median of ``trials``."""
    import shutil
    import statistics
    import subprocess
    if not shutil.which("iscsi-perf") or not shutil.which("tgtd"):
        return {"skipped": "needs libiscsi-bin (iscsi-perf) and tgt (tgtd)"}
    if writer == "qemu" and not _qemu_has_iscsi():
        writer = "py"
    write_fn = _qemu_bench if writer == "qemu" else _py_ini
    write_name = "qemu-img bench (QEMU iSCSI driver)" if writer == "qemu" \
        else "bench/iscsi_ini.py"
    seconds = seconds or (2 if quick else 4)
    trials = trials or (1 if quick else 3)
    size = 256 << 20
    mrdsl = 262144
    shm = Path("/dev/shm") if os.path.isdir("/dev/shm") else workdir
    img = shm / f"simfs-bench-{os.getpid()}.img"
    with open(img, "wb") as f:
        chunk = bytes(range(256)) * 4096
        for _ in range(size // len(chunk)):
            f.write(chunk)
    out: dict = {"seconds_per_trial": seconds, "trials": trials, "backing": str(img.parent),
                 "max_recv_dsl": mrdsl, "cases": []}
    sim = tgt = spy = None
    try:
        sim = _SimfsTarget(workdir, img, size, mrdsl)
        tgt = _TgtTarget(workdir, img, mrdsl)
        cases = [c for c in ISCSI_CASES if not only or any(o in c[0] for o in only.split(","))]
        raw = {c[0]: {"simfs": [], "tgt": [], "simfs_cpu_us": [], "tgt_cpu_us": [],
                      "simfs_ini_cpu_us": [], "tgt_ini_cpu_us": []}
               for c in cases}
        for name, op, blocks, qd, rand in cases:  # warm-up: logins, UAs, caches
            for t in (sim, tgt):
                (_iscsi_perf if op == "read" else write_fn)(t, blocks, qd, rand, 1)
            break
        for _ in range(trials):
            for name, op, blocks, qd, rand in cases:
                for kind, t in (("simfs", sim), ("tgt", tgt)):
                    c0 = _cpu(t.pid)
                    if profile and kind == "simfs" and not spy and name == cases[0][0]:
                        spy = subprocess.Popen(
                            ["py-spy", "record", "-r", "250", "-f", "raw", "-o", profile,
                             "-d", str(seconds), "--pid", str(t.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(0.3)
                    fn = _iscsi_perf if op == "read" else write_fn
                    i0 = _children_cpu()
                    t0 = time.monotonic()
                    r = fn(t, blocks, qd, rand, seconds)
                    ncmd = max(1.0, r["iops"] * (time.monotonic() - t0))
                    raw[name][kind].append(r)
                    raw[name][f"{kind}_cpu_us"].append((_cpu(t.pid) - c0) / ncmd * 1e6)
                    raw[name][f"{kind}_ini_cpu_us"].append((_children_cpu() - i0) / ncmd
                                                           * 1e6)
        if spy:
            spy.wait()
        for name, op, blocks, qd, rand in cases:
            d = raw[name]
            s = statistics.median(x["MBps"] for x in d["simfs"])
            g = statistics.median(x["MBps"] for x in d["tgt"])
            target = _target_ratio(op, blocks, qd)
            out["cases"].append({
                "case": name, "op": op, "bytes": blocks * 512, "qd": qd, "random": rand,
                "initiator": "iscsi-perf" if op == "read" else write_name,
                "simfs_MBps": s, "tgt_MBps": g,
                "simfs_iops": s * 1e6 / (blocks * 512), "tgt_iops": g * 1e6 / (blocks * 512),
                "ratio": s / g if g else 0.0, "target_ratio": target,
                "simfs_cpu_us_per_cmd": statistics.median(d["simfs_cpu_us"]),
                "tgt_cpu_us_per_cmd": statistics.median(d["tgt_cpu_us"]),
                "initiator_cpu_us_per_cmd": {
                    "simfs": statistics.median(d["simfs_ini_cpu_us"]),
                    "tgt": statistics.median(d["tgt_ini_cpu_us"])},
                "simfs_trials_MBps": [round(x["MBps"], 1) for x in d["simfs"]],
                "tgt_trials_MBps": [round(x["MBps"], 1) for x in d["tgt"]],
            })
    finally:
        if tgt is not None:
            tgt.close()
        if sim is not None:
            sim.close()
        img.unlink(missing_ok=True)
    return out


def mem1t(quick: bool, workdir: Path) -> dict:
    from simfs.testing import Sim

    tib = 1 << 40
    written = (256 << 20) if quick else (1 << 30)
    out: dict = {"device_bytes": tib, "written_bytes": written}
    out["rss_start"] = _rss()
    sim = Sim(state_dir=workdir / "sim1t")
    out["rss_sim"] = _rss()
    dev = sim.rd_device(pages=tib // 4096, name="big")
    out["rss_created"] = _rss()
    nexus = _rig(sim, dev)
    block = 512
    maxb = _max_bytes(sim, dev, nexus, block)
    chunk = b"\3" * maxb
    t0 = time.perf_counter()
    # Spread over the device: 64 runs of written/64 bytes, 16 GiB apart.
    runs, stride = 64, tib // 64
    per_run = written // runs
    for r in range(runs):
        base = r * stride
        for off in range(0, per_run, maxb):
            res = sim.engine.submit(nexus, dev, _write16((base + off) // block, maxb // block),
                                    chunk)
            if res.status != 0:
                raise RuntimeError(f"write failed: {res.status:#x}")
    out["write_seconds"] = time.perf_counter() - t0
    out["rss_written"] = _rss()
    out["written_growth_ratio"] = (out["rss_written"] - out["rss_created"]) / written
    sim.close()
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("io", "mem1t", "iscsi"):
        print(__doc__, file=sys.stderr)
        return 2
    quick = "--quick" in argv
    workdir = None
    if "--dir" in argv:
        workdir = Path(argv[argv.index("--dir") + 1])
    with tempfile.TemporaryDirectory(prefix="simfs-bench-", dir=workdir) as d:
        if argv[0] == "iscsi":
            def opt(name, default=""):
                return argv[argv.index(name) + 1] if name in argv else default
            res = iscsi(quick, Path(d), only=opt("--only"), profile=opt("--profile"),
                        seconds=int(opt("--seconds", "0")), trials=int(opt("--trials", "0")),
                        writer=opt("--writer", "qemu"))
        elif argv[0] == "io":
            res = io(quick, Path(d))
        else:
            res = mem1t(quick, Path(d))
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
