"""``simfs fault MOUNTPOINT HBA/DEV KIND [MS]``: inject a storage fault into a device.

A teaching aid for failover and error handling (docs/faults.md). Faults are opt-in, per
device, kept in the daemon's memory only (a new mount starts without any), and change
what the device's storage does, so the SCSI engine answers as the kernel does when real
storage fails that way:

  eio-read      reads fail (EIO)          -> NOT READY, LOGICAL UNIT COMMUNICATION FAILURE
  eio-write     writes and flushes fail   -> NOT READY, LOGICAL UNIT COMMUNICATION FAILURE
  nospace       writes fail (ENOSPC)      -> NOT READY, LOGICAL UNIT COMMUNICATION FAILURE
  vanish        all storage I/O fails     -> NOT READY, LOGICAL UNIT COMMUNICATION FAILURE
  offline       every command refused     -> NOT READY, LOGICAL UNIT NOT READY, OFFLINE
  latency MS    data commands wait MS milliseconds first
  clear         remove every fault of the device

Without KIND, shows the device's active faults and how many commands each one hit.
"""

from __future__ import annotations

import argparse
import sys

from simfs.cli.common import control_request
from simfs.scsi.faults import KINDS


def add_parser(sub) -> None:
    p = sub.add_parser("fault", help="inject storage faults into a device (failover practice)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint")
    p.add_argument("device", help="HBA/DEVICE under target/core, e.g. fileio_0/disk0")
    p.add_argument("kind", nargs="?", choices=KINDS, help="the fault (omit to show)")
    p.add_argument("ms", nargs="?", type=int, help="milliseconds, for latency")
    p.set_defaults(func=cmd_fault)


def cmd_fault(a: argparse.Namespace) -> int:
    if a.kind == "latency" and a.ms is None:
        print("simfs fault: latency needs a delay in milliseconds", file=sys.stderr)
        return 2
    if a.kind != "latency" and a.ms is not None:
        print(f"simfs fault: {a.kind or 'show'} takes no argument", file=sys.stderr)
        return 2
    req = {"op": "fault", "device": a.device, "kind": a.kind, "arg": a.ms}
    rep = control_request("simfs fault", a.mountpoint, req)
    if rep is None:
        return 1
    active = rep.get("active") or []
    print(f"{a.device}: " + (", ".join(active) if active else "no faults"))
    kinds = {a.split()[0] for a in active}  # "latency 500" counts as "latency"
    for kind, n in sorted((rep.get("hits") or {}).items()):
        if kind in kinds:  # a cleared fault hits nothing any more
            print(f"  {kind}: {n} command(s) hit")
    return 0
