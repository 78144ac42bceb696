"""``simfs trace``, ``simfs record`` and ``simfs show``: see what tools do to a mounted tree,
and the state that results (docs/introspection.md).

    simfs trace [MP | --state-dir DIR] [--path PREFIX] [--pid PID] [--comm NAME] [--scsi]
                [--json] [--record FILE] [--wait] [--input FILE]
    simfs record [MP | --state-dir DIR] [-o FILE] [filters as trace] [--input FILE]
    simfs show [MP | --state-dir DIR] [--svg FILE] [--json] [--renderer auto|dot|builtin]
               [--pr | --alua | --access | --paths HBA/DEV | --sequence EVENTS [--device D]]

All three talk to the mount's daemon over ``<state-dir>/trace.sock`` (simfs/daemon/trace.py).
``trace`` and ``record`` run until interrupted (Ctrl-C) or until the tree is unmounted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from simfs.cli import record as rec
from simfs.cli.common import find_state_dir
from simfs.daemon import trace as tr


def add_parser(sub) -> None:
    t = sub.add_parser("trace", help="a live stream of every operation on a mounted tree",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(t)
    t.add_argument("--scsi", action="store_true",
                   help="also show SCSI commands through the engine")
    t.add_argument("--reads", action=argparse.BooleanOptionalAction, default=True,
                   help="show attribute reads (default: yes)")
    t.add_argument("--json", action="store_true", help="print the raw events, one JSON a line")
    t.add_argument("--record", metavar="FILE",
                   help="also write what changed the tree as a shell script (as simfs record)")
    t.add_argument("--count", type=int, help="stop after this many events")
    t.set_defaults(func=cmd_trace)

    r = sub.add_parser("record", help="write what changes a mounted tree as a replayable "
                       "shell script", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(r)
    r.add_argument("-o", "--output", metavar="FILE", help="the script (default: stdout)")
    r.add_argument("--keep-dbroot", action="store_true",
                   help="replay dbroot writes as recorded (default: only with DBROOT=DIR, "
                   "so a replay never moves a simulation's files to a host path)")
    r.set_defaults(func=cmd_record)

    s = sub.add_parser("show", help="the topology (fabrics, LUNs, ACLs, backstores, ALUA, PR) "
                       "of a mounted tree, as text or SVG", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("mountpoint", nargs="?")
    s.add_argument("--state-dir", help="the mount's state directory (instead of MOUNTPOINT)")
    what = s.add_mutually_exclusive_group()
    what.add_argument("--pr", metavar="HBA/DEV",
                      help="the persistent reservation state machine of a device")
    what.add_argument("--alua", metavar="HBA/DEV",
                      help="the ALUA access state machine of a device's port groups")
    what.add_argument("--access", metavar="HBA/DEV",
                      help="who may read and write a device under its reservation")
    what.add_argument("--paths", metavar="HBA/DEV",
                      help="a device's paths: initiators, target ports, port groups")
    what.add_argument("--sequence", metavar="EVENTS",
                      help="the SCSI commands of a trace file (simfs trace --json, "
                      "SIMFS_TRACE_LOG) as a sequence; no mount needed")
    s.add_argument("--device", metavar="HBA/DEV", help="with --sequence: only this device")
    s.add_argument("--renderer", choices=["auto", "dot", "builtin"], default="auto",
                   help="--svg: graphviz's dot when installed (auto), or simfs's own drawing")
    s.add_argument("--svg", metavar="FILE", help="draw it as an SVG picture into FILE")
    s.add_argument("--json", action="store_true", help="print the daemon's model as JSON")
    s.set_defaults(func=cmd_show)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("mountpoint", nargs="?")
    p.add_argument("--state-dir", help="the mount's state directory (instead of MOUNTPOINT; "
                   "e.g. DIR/mount of `simfs run --state-dir DIR`)")
    p.add_argument("--path", action="append", default=[], metavar="PREFIX",
                   help="only paths under PREFIX (tree path or MOUNTPOINT/...; repeatable)")
    p.add_argument("--pid", type=int, action="append", default=[], help="only this process")
    p.add_argument("--comm", action="append", default=[], metavar="NAME",
                   help="only processes with this command name (/proc/PID/comm)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the mount's trace socket to appear (e.g. for `simfs run`)")
    p.add_argument("--input", metavar="FILE",
                   help="read events from a JSON-lines file (`--json` output, SIMFS_TRACE_LOG) "
                   "instead of a mount")


# -- finding the mount ----------------------------------------------------------------------
def _state_dir(a: argparse.Namespace) -> Path | None:
    if a.state_dir:
        return Path(a.state_dir)
    return find_state_dir(a.mountpoint)


def _mount_prefix(a: argparse.Namespace) -> str | None:
    if a.mountpoint:
        return os.path.realpath(a.mountpoint)
    return None


class Filter:
    """--path/--pid/--comm, applied to events (SCSI events match --path by device path)."""

    def __init__(self, paths: list[str], pids: list[int], comms: list[str],
                 mountpoint: str | None = None):
        self.paths = [_tree_path(p, mountpoint) for p in paths]
        self.pids, self.comms = set(pids), set(comms)

    def __call__(self, ev: dict) -> bool:
        if self.pids and ev.get("pid") not in self.pids:
            return False
        if self.comms and ev.get("comm") not in self.comms:
            return False
        if self.paths:
            path = ev.get("path", "")
            if not any(not p or path == p or path.startswith(p + "/") for p in self.paths):
                return False
        return True


def _tree_path(p: str, mountpoint: str | None) -> str:
    if mountpoint and os.path.isabs(p):
        real = os.path.normpath(p)
        if real == mountpoint or real.startswith(mountpoint + "/"):
            p = real[len(mountpoint):]
    return p.strip("/")


def _open_stream(a: argparse.Namespace, scsi: bool):
    """Events, from --input or the mount's socket; prints the 'tracing' banner to stderr."""
    if a.input:
        f = open(a.input, "rb")
        return None, f, tr.events(f)
    sdir = _state_dir(a)
    if sdir is None:
        raise SystemExit(2)
    while True:
        try:
            s, f = tr.connect(sdir, {"op": "subscribe", "scsi": scsi}, timeout=None)
            break
        except OSError as e:
            if not a.wait:
                print(f"simfs: cannot reach the trace socket in {sdir}: {e.strerror or e} "
                      "(is it mounted? an older daemon?)", file=sys.stderr)
                raise SystemExit(1)
            time.sleep(0.1)
    hello = f.readline()
    if not hello:
        print("simfs: the daemon closed the trace socket", file=sys.stderr)
        raise SystemExit(1)
    info = json.loads(hello)
    where = a.mountpoint or sdir
    print(f"simfs: tracing {where} ({info.get('profile', '?')} profile, daemon pid "
          f"{info.get('pid', '?')}); Ctrl-C stops", file=sys.stderr, flush=True)
    return s, f, tr.events(f)


def _stop_on_term() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


# -- simfs trace ------------------------------------------------------------------------------
def cmd_trace(a: argparse.Namespace) -> int:
    _stop_on_term()
    keep = Filter(a.path, a.pid, a.comm, _mount_prefix(a))
    recorder = rec.ScriptWriter(open(a.record, "w")) if a.record else None
    s, f, stream = _open_stream(a, a.scsi)
    n = 0
    try:
        if recorder:
            recorder.header(a.mountpoint or str(a.state_dir or a.input))
        for ev in stream:
            if ev.get("op") == "dropped":
                print(f"simfs trace: {ev['count']} events dropped (reader too slow)",
                      file=sys.stderr)
                continue
            if not keep(ev):
                continue
            if recorder:
                recorder.event(ev)
            if ev.get("op") == "read" and not a.reads:
                continue
            if ev.get("op") == "scsi" and not a.scsi:
                continue
            sys.stdout.write((json.dumps(ev) if a.json else format_event(ev)) + "\n")
            sys.stdout.flush()
            n += 1
            if a.count and n >= a.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if recorder:
            recorder.close()
        f.close()
        if s is not None:
            s.close()
    return 0


def escape(data: str) -> str:
    """Bytes (latin-1 text) as a double-quoted C-style string: what strace prints."""
    out = []
    for ch in data:
        c = ord(ch)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append(f"\\x{c:02x}")
    return '"' + "".join(out) + '"'


def format_event(ev: dict) -> str:
    """One line: time, who, what, where, result (and the kernel's reason for a refusal)."""
    t = datetime.fromtimestamp(ev.get("time", 0)).strftime("%H:%M:%S.%f")
    op = ev.get("op", "?")
    if op == "scsi":
        who = f"{ev.get('initiator', '?')}"
        port = ev.get("port") or ev.get("fabric", "")
        what = f"{ev.get('opname')} [{ev.get('cdb')}]"
        res = ev.get("result", "?")
        if ev.get("sense_text"):
            res += f" {ev['sense_text']}"
        return (f"{t} scsi  {who} -> {port} lun {ev.get('lun')} ({ev.get('device')}) "
                f"{what} = {res}")
    if op == "iscsi":  # a refused login or a dropped connection
        ini = f" {ev['initiator']}" if ev.get("initiator") else ""
        return (f"{t} iscsi {ev.get('peer') or '?'}{ini} -> {ev.get('portal') or '?'} "
                f"{ev.get('event', '?')} {ev.get('path', '')} = {ev.get('result', '?')}"
                f" ({ev.get('reason', '')})")
    who = f"{ev.get('pid', 0)}({ev.get('comm') or '?'})"
    line = f"{t} {who:<20} {op:<7} {ev.get('path', '')}"
    if op == "symlink" and "target" in ev:
        line += f" -> {ev['target']}"
    if "data" in ev:
        line += f" {escape(ev['data'])}"
    if "len" in ev:
        line += f" ({ev['len']} bytes)"
    res = ev.get("result", "?")
    line += f" = {res}"
    if res != "ok" and ev.get("reason"):
        line += f" ({ev['reason']})"
    return line


# -- simfs record ---------------------------------------------------------------------------
def cmd_record(a: argparse.Namespace) -> int:
    _stop_on_term()
    keep = Filter(a.path, a.pid, a.comm, _mount_prefix(a))
    out: TextIO = open(a.output, "w") if a.output else sys.stdout
    writer = rec.ScriptWriter(out, close=bool(a.output), keep_dbroot=a.keep_dbroot)
    s, f, stream = _open_stream(a, False)
    try:
        writer.header(a.mountpoint or str(a.state_dir or a.input))
        for ev in stream:
            if keep(ev):
                writer.event(ev)
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        f.close()
        if s is not None:
            s.close()
    return 0


# -- simfs show ------------------------------------------------------------------------------
def cmd_show(a: argparse.Namespace) -> int:
    from simfs.daemon import show
    if a.sequence:
        try:
            with open(a.sequence, "rb") as f:
                model = show.sequence_model(list(iter_events(f)), a.device)
        except OSError as e:
            print(f"simfs show: cannot read {a.sequence}: {e.strerror}", file=sys.stderr)
            return 1
        return _show(a, show, model)
    sdir = _state_dir(a)
    if sdir is None:
        return 2
    req: dict = {"op": "show"}
    if a.pr:
        req.update(what="pr", device=a.pr)
    elif a.alua:
        req.update(what="alua", device=a.alua)
    elif a.access:
        req.update(what="access", device=a.access)
    elif a.paths:
        req.update(what="paths", device=a.paths)
    else:
        req.update(what="topology")
    try:
        model = tr.request(sdir, req)
    except OSError as e:
        print(f"simfs: cannot reach the trace socket in {sdir}: {e}", file=sys.stderr)
        return 1
    if "error" in model:
        print(f"simfs show: {model['error']}", file=sys.stderr)
        return 1
    return _show(a, show, model)


def _show(a: argparse.Namespace, show, model: dict) -> int:
    if a.json:
        print(json.dumps(model, indent=2))
    elif not a.svg:
        sys.stdout.write(show.render_text(model))
    if a.svg:
        how = show.write_svg(model, a.svg, a.renderer)
        print(f"simfs show: wrote {a.svg} ({how})", file=sys.stderr)
    return 0


def iter_events(lines: Iterable[bytes]) -> Iterable[dict]:
    return tr.events(lines)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m simfs.cli.trace trace|record|show ...`` (the same as ``simfs ...``)."""
    p = argparse.ArgumentParser(prog="simfs")
    add_parser(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    try:
        return a.func(a)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
