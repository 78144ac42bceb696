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

TODO(iSCSI): once simfs's iSCSI server lands, add ``iscsi`` here: export the same
256 MiB fileio LUN (page cache) over 127.0.0.1 and run libiscsi's ``iscsi-perf``
(4 KiB QD1/QD32, 1 MiB QD1/QD32; READ) against simfs and then against tgt
(``tgtd -f --iscsi portal=127.0.0.1:3260``, procedure in shared/reference/peers.md),
in one run, reporting simfs/tgt ratios; see ``iscsi_hook()`` below.
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
    out["iscsi"] = iscsi_hook()
    return out


def iscsi_hook() -> dict:
    """TODO(iSCSI): simfs's iSCSI server vs tgt, over loopback, with libiscsi's iscsi-perf.

    Procedure (shared/reference/peers.md): a 256 MiB file LUN in the page cache;
    ``iscsi-perf -t 10 [-m 32] [-b 2048] iscsi://127.0.0.1:PORT/IQN/LUN`` against simfs,
    then against ``tgtd -f --iscsi portal=127.0.0.1:3260`` with the same file, same run;
    report IOPS and MB/s and simfs/tgt per case (4 KiB QD1, 4 KiB QD32, 1 MiB QD1,
    1 MiB QD32). Not wired yet: the server is being written."""
    return {"status": "todo", "reason": "simfs iSCSI server not available yet"}


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
    if not argv or argv[0] not in ("io", "mem1t"):
        print(__doc__, file=sys.stderr)
        return 2
    quick = "--quick" in argv
    workdir = None
    if "--dir" in argv:
        workdir = Path(argv[argv.index("--dir") + 1])
    with tempfile.TemporaryDirectory(prefix="simfs-bench-", dir=workdir) as d:
        res = io(quick, Path(d)) if argv[0] == "io" else mem1t(quick, Path(d))
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
