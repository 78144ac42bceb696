"""What several commands share: finding a mount's state directory, asking its daemon."""

from __future__ import annotations

import sys
from pathlib import Path

from simfs.daemon import control, state


def find_state_dir(mountpoint: str | None) -> Path | None:
    """The state directory of the mount at ``mountpoint`` or, with none named, of the one
    active mount; None (after saying why on stderr) when there is no single answer."""
    if mountpoint:
        mountpoint = state.resolve(mountpoint)
        rec = state.read_record(mountpoint)
        return Path(rec["state_dir"]) if rec else state.default_state_dir(mountpoint)
    recs = state.active_records()
    if len(recs) == 1:
        return Path(recs[0]["state_dir"])
    if not recs:
        print("simfs: no simfs mount is active; name a MOUNTPOINT", file=sys.stderr)
    else:
        print("simfs: several mounts are active; name one: "
              + ", ".join(r["mountpoint"] for r in recs), file=sys.stderr)
    return None


def control_request(prog: str, mountpoint: str, req: dict) -> dict | None:
    """``req`` as the daemon of the mount at ``mountpoint`` answers it (its control
    socket); None, after saying why on stderr as ``PROG: ...``, when no daemon answers or
    it refuses (its ``error``)."""
    mp = state.resolve(mountpoint)
    rec = state.read_record(mp)
    sdir = Path(rec["state_dir"]) if rec else state.default_state_dir(mp)
    try:
        rep = control.request(sdir, req)
    except OSError as e:
        print(f"{prog}: cannot reach the daemon of {mountpoint}: {e}", file=sys.stderr)
        return None
    if "error" in rep:
        print(f"{prog}: {rep['error']}", file=sys.stderr)
        return None
    return rep
