#!/usr/bin/env python3
"""What tracing costs (simfs/daemon/trace.py), in process, no FUSE: ``python3 bench/trace_cost.py``.

Idle (nobody listens) every hooked operation pays one attribute check, ``tree.trace is
None`` (the FUSE adapter one more per request, the engine one per command). This measures
that check alone, then whole operations with nobody listening and with one subscriber
(whose queue is drained by a thread, as the trace socket's sender does), interleaved.
Not part of bench/run.py's table (it needs no mount); docs/performance.md quotes it.
"""

from __future__ import annotations

import sys
import threading
import timeit

from simfs.scsi import Nexus
from simfs.testing import Sim
from simfs.daemon.trace import TraceHub

N = 10000
TRIALS = 5


def per_op(fn, n=N) -> float:
    """Best-of-TRIALS microseconds per call (a string: timed inline, no call around it)."""
    glb = {"tree": fn_globals["tree"]} if isinstance(fn, str) else None
    return min(timeit.repeat(fn, number=n * (50 if glb else 1), repeat=TRIALS,
                             globals=glb)) / (n * (50 if glb else 1)) * 1e6


fn_globals: dict = {}


def main() -> int:
    sim = Sim()  # its own temporary state directory, removed by close()
    dev = sim.rd_device()
    port = sim.port(dev)
    nexus = Nexus(initiator="iqn.1994-05.com.example:bench", port=port)
    hub = TraceHub(comm_of=lambda pid: "bench")
    hub.attach(tree=sim.tree, engine=sim.engine)
    tree, engine = sim.tree, sim.engine
    fn_globals["tree"] = tree
    attr = "/target/core/rd_mcp_0/rd0/attrib/emulate_write_cache"
    inquiry = b"\x12\x00\x00\x00\x24\x00"

    ops = {
        "the check alone (tree.trace is None)": "tree.trace is not None",
        "read_attr (open+show)": lambda: tree.read_attr(attr),
        "write_attr (open+store)": lambda: tree.write_attr(attr, b"0\n"),
        "engine.submit INQUIRY": lambda: engine.submit(nexus, dev, inquiry),
    }
    rows = []
    for name, fn in ops.items():
        idle, active = [], []
        for _ in range(3):  # interleave idle and listening runs: the VM's noise hits both
            assert tree.trace is None
            idle.append(per_op(fn))
            sub = hub.subscribe(scsi=True)

            def drain(sub=sub):
                while sub.get() is not None:
                    pass
            t = threading.Thread(target=drain, daemon=True)
            t.start()
            active.append(per_op(fn))
            hub.unsubscribe(sub)  # puts the None that ends drain()
            t.join()
        rows.append((name, min(idle), min(active)))
    check = rows[0][1]
    print(f"python {sys.version.split()[0]}, {N} calls x {TRIALS} trials, best of 3 interleaved")
    print(f"{'operation':<40} {'idle us':>9} {'listening us':>13} {'idle check share':>16}")
    for name, idle, active in rows:
        share = "" if name.startswith("the check") else f"{check / idle * 100:.2f} %"
        print(f"{name:<40} {idle:9.3f} {active:13.3f} {share:>16}")
    sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
