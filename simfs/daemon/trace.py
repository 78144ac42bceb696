"""The trace hub: every operation on the tree (and, when asked, every SCSI command) as an
event, for whoever listens (``simfs trace``, ``simfs record``, docs/introspection.md).

Two parts:

* :class:`TraceHub`, sans-I/O. The tree (``configfs/tree.py``) and the engine
  (``scsi/engine.py``) hold a ``trace`` attribute that is ``None`` while nobody listens, so
  an operation pays one attribute check (bench/trace_cost.py measures it). When a
  subscriber arrives the hub sets the attribute to itself; each hook then calls
  :meth:`TraceHub.fs` or :meth:`TraceHub.scsi`, which builds one event (a JSON-able dict) and
  puts it on every subscriber's queue. Hooks run under the tree's lock, so the queue order
  is the order the tree applied the operations in (what ``record`` relies on).
  The requesting process is the FUSE adapter's business: it stores the request's pid in
  :attr:`TraceHub.local` while tracing; the hub reads ``/proc/<pid>/comm`` while the request
  is still in flight (the process exists then, however short-lived).

* :class:`TraceServer`, the I/O: ``<state-dir>/trace.sock`` (mode 0600), one thread per
  client. A client sends one JSON line, ``{"op": "subscribe", "scsi": bool}`` (events follow,
  one JSON object per line, until either side closes) or ``{"op": "show", ...}`` (one reply:
  the topology or a state machine, computed by :mod:`simfs.daemon.show` under the tree lock).

Event fields: ``seq``, ``time`` (epoch seconds), ``pid``, ``comm``, ``op`` (``mkdir``,
``rmdir``, ``symlink``, ``unlink``, ``write``, ``read``, ``open``, ``create``, ``rename``,
``scsi``), ``path`` (tree path, from the configfs root, no leading slash), ``result``
(``"ok"`` or an errno name), ``reason`` (the log line the refusal wrote), ``data`` (write:
the bytes as a latin-1 string, so any byte survives JSON), ``len`` (read: bytes shown),
``target`` (symlink: the tree path linked to). SCSI events: ``initiator``, ``fabric``,
``port``, ``lun``, ``device``, ``cdb`` (hex), ``opname``, ``status``, ``sense`` (hex),
``sense_text``. iSCSI events (op ``iscsi``, from the target): ``event`` (``login`` refused or
connection ``drop``), ``result`` (``refused``/``dropped``), ``reason``, ``peer``, ``portal``,
``initiator``, ``path`` (the TPG's tree path, or ``iscsi``).
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simfs.daemon import unixsock
from simfs.daemon.unixsock import UnixServer

if TYPE_CHECKING:
    from simfs.configfs import ConfigfsError

SOCKET_NAME = "trace.sock"
#: a subscriber that stops reading loses events beyond this many (and is told so)
MAX_QUEUE = 200_000


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def read_comm(pid: int) -> str:
    if pid <= 0:
        return ""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode(errors="replace")
    except OSError:
        return "?"


class Subscriber:
    """One listener: a queue of events, and whether it wants SCSI commands too."""

    def __init__(self, scsi: bool = False):
        self.scsi = scsi
        self.queue: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self.dropped = 0

    def put(self, event: dict) -> None:
        if self.queue.qsize() >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.put(event)

    def get(self, timeout: float | None = None) -> dict | None:
        return self.queue.get(timeout=timeout)

    def close(self) -> None:
        self.queue.put(None)


class TraceHub:
    """Fans events out to subscribers; attached objects see it only while someone listens."""

    def __init__(self, comm_of: Callable[[int], str] = read_comm):
        self._subs: tuple[Subscriber, ...] = ()
        self._fs_sinks: list[Any] = []  # objects whose .trace we set (the tree)
        self._scsi_sinks: list[Any] = []  # (the engine)
        self._lock = threading.Lock()
        self._seq = 0
        self.comm_of = comm_of
        #: the FUSE adapter puts the current request's pid here (``local.pid``)
        self.local = threading.local()

    # -- wiring -------------------------------------------------------------------------
    def attach(self, tree: Any = None, engine: Any = None, events: Any = None) -> None:
        """Let the hub switch ``tree.trace`` / ``engine.trace`` on and off (``events``: any
        other source whose ``.trace`` gets the hub while anyone listens, see :meth:`event`)."""
        with self._lock:
            if tree is not None:
                self._fs_sinks.append(tree)
            if events is not None:
                self._fs_sinks.append(events)
            if engine is not None:
                self._scsi_sinks.append(engine)
            self._rewire()

    def subscribe(self, scsi: bool = False) -> Subscriber:
        sub = Subscriber(scsi)
        with self._lock:
            self._subs = self._subs + (sub,)
            self._rewire()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
            self._rewire()
        sub.close()

    @property
    def listening(self) -> bool:
        return bool(self._subs)

    def _rewire(self) -> None:
        fs = self if self._subs else None
        scsi = self if any(s.scsi for s in self._subs) else None
        for t in self._fs_sinks:
            t.trace = fs
        for e in self._scsi_sinks:
            e.trace = scsi

    # -- events --------------------------------------------------------------------------
    def _emit(self, event: dict, scsi: bool = False) -> None:
        with self._lock:
            self._seq += 1
            event["seq"] = self._seq
        for sub in self._subs:
            if scsi and not sub.scsi:
                continue
            sub.put(event)

    def _who(self) -> tuple[int, str]:
        pid = getattr(self.local, "pid", 0)
        return pid, (self.comm_of(pid) if pid else "")

    def fs(self, op: str, path: str, err: ConfigfsError | None = None,
           reason: str | None = None, data: bytes | None = None,
           target: str | None = None, length: int | None = None) -> None:
        """One configfs operation, done (``err`` None) or refused."""
        pid, comm = self._who()
        ev: dict[str, Any] = {"time": time.time(), "pid": pid, "comm": comm, "op": op,
                              "path": path.strip("/"),
                              "result": "ok" if err is None else err.name}
        if err is not None and reason:
            ev["reason"] = reason
        if data is not None:
            ev["data"] = bytes(data).decode("latin-1")
        if target is not None:
            ev["target"] = target.strip("/")
        if length is not None:
            ev["len"] = length
        self._emit(ev)

    def event(self, op: str, path: str, result: str, reason: str = "", **fields: Any) -> None:
        """An event from another source than the tree and the engine: the iSCSI target's
        refused logins and dropped connections (op ``iscsi``; fields ``event``, ``peer``,
        ``portal``, ``initiator``)."""
        ev: dict[str, Any] = {"time": time.time(), "pid": 0, "comm": "", "op": op,
                              "path": path, "result": result}
        if reason:
            ev["reason"] = reason
        ev.update(fields)
        self._emit(ev)

    def scsi(self, nexus: Any, dev: Any, cdb: bytes, result: Any) -> None:
        """One command the engine answered (``result``: its Result)."""
        port = getattr(nexus, "port", None)
        sense = bytes(getattr(result, "sense", b"") or b"")
        ev: dict[str, Any] = {
            "time": time.time(), "op": "scsi", "pid": 0, "comm": "",
            "initiator": getattr(nexus, "initiator", ""),
            "fabric": getattr(port, "fabric", ""),
            "lun": getattr(port, "lun", None),
            "device": _dev_name(dev), "path": _dev_path(dev),
            "cdb": bytes(cdb).hex(), "opname": opcode_name(cdb),
            "status": result.status, "result": status_name(result.status),
        }
        if port is not None and hasattr(port, "member_path"):
            try:
                ev["port"] = port.member_path()
            except Exception:  # noqa: BLE001 - a port without a fabric LUN
                pass
        if sense:
            ev["sense"] = sense.hex()
            ev["sense_text"] = sense_text(sense)
        self._emit(ev, scsi=True)


def _dev_name(dev: Any) -> str:
    hba = getattr(dev, "hba", None)
    return f"{getattr(hba, 'name', '?')}/{getattr(dev, 'name', '?')}"


def _dev_path(dev: Any) -> str:
    return f"target/core/{_dev_name(dev)}"


def status_name(status: int) -> str:
    names = {0x00: "GOOD", 0x02: "CHECK_CONDITION", 0x08: "BUSY",
             0x18: "RESERVATION_CONFLICT", 0x28: "TASK_SET_FULL", 0x30: "ACA_ACTIVE",
             0x40: "TASK_ABORTED"}
    return names.get(status, f"0x{status:02x}")


_OPCODES = {
    0x00: "TEST_UNIT_READY", 0x03: "REQUEST_SENSE", 0x04: "FORMAT_UNIT", 0x08: "READ_6",
    0x0A: "WRITE_6", 0x12: "INQUIRY", 0x15: "MODE_SELECT_6", 0x16: "RESERVE_6",
    0x17: "RELEASE_6", 0x1A: "MODE_SENSE_6", 0x1B: "START_STOP_UNIT",
    0x1C: "RECEIVE_DIAGNOSTIC", 0x1D: "SEND_DIAGNOSTIC", 0x1E: "PREVENT_ALLOW_MEDIUM_REMOVAL",
    0x25: "READ_CAPACITY_10", 0x28: "READ_10", 0x2A: "WRITE_10", 0x2E: "WRITE_VERIFY_10",
    0x2F: "VERIFY_10", 0x35: "SYNCHRONIZE_CACHE_10", 0x3B: "WRITE_BUFFER",
    0x3C: "READ_BUFFER", 0x41: "WRITE_SAME_10", 0x42: "UNMAP", 0x4D: "LOG_SENSE",
    0x55: "MODE_SELECT_10", 0x56: "RESERVE_10", 0x57: "RELEASE_10", 0x5A: "MODE_SENSE_10",
    0x5E: "PERSISTENT_RESERVE_IN", 0x5F: "PERSISTENT_RESERVE_OUT", 0x7F: "VARIABLE_LENGTH",
    0x83: "EXTENDED_COPY", 0x84: "RECEIVE_COPY_RESULTS", 0x88: "READ_16", 0x89: "COMPARE_AND_WRITE",
    0x8A: "WRITE_16", 0x8E: "WRITE_VERIFY_16", 0x8F: "VERIFY_16", 0x91: "SYNCHRONIZE_CACHE_16",
    0x93: "WRITE_SAME_16", 0x9E: "SERVICE_ACTION_IN_16", 0xA0: "REPORT_LUNS",
    0xA3: "MAINTENANCE_IN", 0xA4: "MAINTENANCE_OUT", 0xA8: "READ_12", 0xAA: "WRITE_12",
    0xAF: "VERIFY_12",
}
_PR_IN = {0: "READ_KEYS", 1: "READ_RESERVATION", 2: "REPORT_CAPABILITIES",
          3: "READ_FULL_STATUS"}
_PR_OUT = {0: "REGISTER", 1: "RESERVE", 2: "RELEASE", 3: "CLEAR", 4: "PREEMPT",
           5: "PREEMPT_AND_ABORT", 6: "REGISTER_AND_IGNORE_EXISTING_KEY",
           7: "REGISTER_AND_MOVE", 8: "REPLACE_LOST_RESERVATION"}


def opcode_name(cdb: bytes) -> str:
    """The opcode's name, with the service action where one names the command."""
    if not cdb:
        return "(empty)"
    op = cdb[0]
    name = _OPCODES.get(op, f"0x{op:02x}")
    sa = cdb[1] & 0x1F if len(cdb) > 1 else 0
    if op == 0x5E:
        name += "/" + _PR_IN.get(sa, f"0x{sa:02x}")
    elif op == 0x5F:
        name += "/" + _PR_OUT.get(sa, f"0x{sa:02x}")
    elif op == 0x9E and sa == 0x10:
        name = "READ_CAPACITY_16"
    elif op == 0xA3 and sa == 0x0A:
        name = "REPORT_TARGET_PORT_GROUPS"
    elif op == 0xA4 and sa == 0x0A:
        name = "SET_TARGET_PORT_GROUPS"
    return name


_SENSE_KEYS = ("NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR",
               "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK",
               "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND", "EQUAL",
               "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED")


def sense_text(sense: bytes) -> str:
    """``KEY asc/ascq`` from fixed (70h/71h) or descriptor (72h/73h) sense data."""
    if len(sense) < 3:
        return ""
    if sense[0] & 0x7F in (0x72, 0x73):
        key, asc, ascq = sense[1] & 0xF, sense[2], sense[3] if len(sense) > 3 else 0
    else:
        key = sense[2] & 0xF
        asc = sense[12] if len(sense) > 12 else 0
        ascq = sense[13] if len(sense) > 13 else 0
    return f"{_SENSE_KEYS[key]} {asc:02x}h/{ascq:02x}h"


# -- the socket ------------------------------------------------------------------------------
class TraceServer(UnixServer):
    """``<state-dir>/trace.sock``: streams the hub's events, answers ``show`` requests."""

    thread_name = "simfs-trace"

    def __init__(self, hub: TraceHub, state_dir: Path,
                 show: Callable[[dict], dict] | None = None,
                 info: dict | None = None):
        self.hub = hub
        self.path = socket_path(state_dir)
        self.show = show
        self.info = info or {}
        self._subs: set[Subscriber] = set()
        self._file_sub: Subscriber | None = None

    def log_to(self, path: str, scsi: bool = True) -> None:
        """Trace from now on into ``path`` (JSON lines), for the mount's whole life
        (``SIMFS_TRACE_LOG``: e.g. around ``simfs run``, whose mount no client can reach
        before its command starts)."""
        sub = self.hub.subscribe(scsi=scsi)
        self._file_sub = sub
        f = open(path, "a", buffering=1)

        def pump() -> None:
            with f:
                while True:
                    ev = sub.get()
                    if ev is None:
                        return
                    f.write(json.dumps(ev) + "\n")
        threading.Thread(target=pump, name="simfs-trace-log", daemon=True).start()

    def stop(self) -> None:
        super().stop()
        for sub in list(self._subs):
            self.hub.unsubscribe(sub)
        if self._file_sub is not None:
            self.hub.unsubscribe(self._file_sub)
            self._file_sub = None

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            try:
                line = f.readline()
                req = json.loads(line) if line else {}
            except ValueError:
                req = {}
            op = req.get("op")
            try:
                if op == "subscribe":
                    self._stream(conn, f, bool(req.get("scsi")))
                    return
                if op == "show" and self.show is not None:
                    reply = self.show(req)
                elif op == "ping":
                    reply = {"ok": True, **self.info}
                else:
                    reply = {"error": f"unknown request {op!r}"}
            except Exception as e:  # noqa: BLE001 - report, keep serving
                reply = {"error": f"{type(e).__name__}: {e}"}
            try:
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()
            except OSError:
                pass

    def _stream(self, conn: socket.socket, f, scsi: bool) -> None:
        sub = self.hub.subscribe(scsi=scsi)
        self._subs.add(sub)
        try:
            f.write(json.dumps({"subscribed": True, **self.info}).encode() + b"\n")
            f.flush()
            # the client never writes again: its EOF (or any byte) ends the stream
            watcher = threading.Thread(target=_wait_eof, args=(conn, sub), daemon=True)
            watcher.start()
            while True:
                batch = [sub.get()]
                while batch[-1] is not None:  # drain what is queued: one write per burst
                    try:
                        batch.append(sub.queue.get_nowait())
                    except queue.Empty:
                        break
                done = batch[-1] is None
                out = b"".join(json.dumps(ev).encode() + b"\n" for ev in batch if ev is not None)
                if sub.dropped:
                    out += json.dumps({"op": "dropped", "count": sub.dropped}).encode() + b"\n"
                    sub.dropped = 0
                if out:
                    f.write(out)
                    f.flush()
                if done:
                    return
        except OSError:
            return
        finally:
            self._subs.discard(sub)
            self.hub.unsubscribe(sub)


def _wait_eof(conn: socket.socket, sub: Subscriber) -> None:
    try:
        conn.recv(1)
    except OSError:
        pass
    sub.close()


# -- the client side -----------------------------------------------------------------------------
def connect(state_dir: Path, req: dict, timeout: float | None = 30.0):
    """Open the socket, send ``req``; returns (socket, file) for reading replies."""
    s = unixsock.connect(socket_path(state_dir), timeout)
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
    except OSError:
        s.close()
        raise
    return s, s.makefile("rb")


def request(state_dir: Path, req: dict, timeout: float = 30.0) -> dict:
    s, f = connect(state_dir, req, timeout)
    with s, f:
        line = f.readline()
    if not line:
        raise ConnectionError("the simfs daemon closed the trace socket")
    return json.loads(line)


def events(f: Iterable[bytes]) -> Iterable[dict]:
    for line in f:
        line = line.strip()
        if line:
            yield json.loads(line)


__all__ = [
    "SOCKET_NAME",
    "Subscriber",
    "TraceHub",
    "TraceServer",
    "connect",
    "events",
    "opcode_name",
    "request",
    "sense_text",
    "socket_path",
]
