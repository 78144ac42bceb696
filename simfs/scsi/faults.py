"""Injected device faults: a teaching aid for failover (``simfs fault``, docs/faults.md).

Opt-in and per device. A fault never changes the configfs tree; it changes what the
device's storage does under the engine, and the engine answers as the kernel answers when
real storage misbehaves that way:

``eio-read`` / ``eio-write``
    reads (or writes and cache flushes) fail with EIO. A file backend's read/write
    returns -EIO and its execute_rw answers TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE; a
    block backend's failed bio ends in ``target_complete_cmd(CHECK_CONDITION)`` without
    sense and so in ``target_complete_failure_work`` with the same reason. Either way the
    initiator sees NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (02h/08h/00h), not
    MEDIUM ERROR; each backend logs the failure its own way.
``nospace``
    writes fail with ENOSPC (a full filesystem under a sparse file, a thin pool out of
    space under a block device). The kernel maps that the same way: 02h/08h/00h - it
    does not use SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h) for file or block
    backends.
``vanish``
    the storage is gone (a pulled disk, a dead NFS server): every read, write, flush and
    unmap fails with EIO. The file itself is not touched (the kernel keeps its file open,
    so unlinking it would change nothing).
``offline``
    the LU answers every command on every port with NOT READY, LOGICAL UNIT NOT READY,
    OFFLINE (02h/04h/12h): the answer a LUN in the ALUA secondary Offline state gives
    (``alua_tg_pt_offline``), for all of the device's LUNs at once.
``latency MS``
    every data command (READ/WRITE/SYNCHRONIZE CACHE/UNMAP/WRITE SAME/COMPARE AND WRITE)
    waits MS milliseconds before it reaches the storage; configfs stays responsive.

Faults combine (``latency`` with ``eio-read``, say); ``clear`` removes them all.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simfs.scsi import sense, state

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command

KINDS = ("eio-read", "eio-write", "latency", "nospace", "vanish", "offline", "clear")
#: the longest latency one may inject (a minute): keeps a typo from hanging initiators
MAX_LATENCY_MS = 60_000

sleep: Callable[[float], None] = time.sleep


@dataclass
class DeviceFaults:
    eio_read: bool = False
    eio_write: bool = False
    nospace: bool = False
    vanish: bool = False
    offline: bool = False
    latency_ms: int = 0
    #: how many commands each fault has failed or delayed (shown by ``simfs fault``)
    hits: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def active(self) -> list[str]:
        out = [k for k, on in (("eio-read", self.eio_read), ("eio-write", self.eio_write),
                               ("nospace", self.nospace), ("vanish", self.vanish),
                               ("offline", self.offline)) if on]
        if self.latency_ms:
            out.append(f"latency {self.latency_ms}")
        return out

    def any(self) -> bool:
        return bool(self.active())

    def hit(self, kind: str) -> None:
        with self.lock:
            self.hits[kind] = self.hits.get(kind, 0) + 1


def of(dev: SeDevice) -> DeviceFaults | None:
    """The device's fault state, or None when nothing was ever injected (the fast path)."""
    st = state.peek(dev)
    return st.faults if st is not None else None


def _name(dev: SeDevice) -> str:
    hba = getattr(dev, "hba", None)
    return f"{hba.name}/{dev.name}" if hba is not None else str(getattr(dev, "name", "?"))


def inject(dev: SeDevice, kind: str, arg: int | None = None) -> DeviceFaults:
    """Set (or with ``clear`` remove) a fault on ``dev``; logs one line. ValueError on a
    bad request."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r} (one of: {', '.join(KINDS)})")
    st = state.of(dev)
    f = st.faults
    if f is None:
        f = st.faults = DeviceFaults()
    log = dev.core.log
    if kind == "clear":
        was = f.active()
        f.eio_read = f.eio_write = f.nospace = f.vanish = f.offline = False
        f.latency_ms = 0
        with f.lock:  # the counts belong to the faults they counted
            f.hits.clear()
        log.info(f"simfs fault: {_name(dev)}: cleared ({', '.join(was) or 'none set'})")
        return f
    if kind == "latency":
        if arg is None or not 0 <= int(arg) <= MAX_LATENCY_MS:
            raise ValueError(f"latency wants milliseconds, 0..{MAX_LATENCY_MS}")
        f.latency_ms = int(arg)
    else:
        setattr(f, kind.replace("-", "_"), True)
    log.warn(f"simfs fault: {_name(dev)}: injected {kind}"
             + (f" {arg} ms" if kind == "latency" else "")
             + f" (active: {', '.join(f.active()) or 'none'})")
    return f


def describe(dev: SeDevice) -> dict:
    f = of(dev)
    if f is None:
        return {"active": [], "hits": {}}
    return {"active": f.active(), "hits": dict(f.hits)}


# -- hooks the engine and sbc call --------------------------------------------------------------
def check_offline(cmd: Command) -> None:
    """Before the ALUA/PR checks: an offline LU refuses everything, as an ALUA secondary
    Offline LUN does (core_alua_state_check -> TCM_ALUA_OFFLINE)."""
    f = of(cmd.dev)
    if f is not None and f.offline:
        f.hit("offline")
        cmd.dev.core.log.debug("ALUA: Got secondary offline status for local target port")
        raise sense.ALUA_OFFLINE()


def delay(dev: SeDevice) -> None:
    """Injected latency, before a data command reaches the storage (no lock held)."""
    f = of(dev)
    if f is not None and f.latency_ms:
        f.hit("latency")
        sleep(f.latency_ms / 1000)


def before_io(dev: SeDevice, op: str) -> None:
    """Raise the OSError the storage would return for ``op`` (read, write, flush, unmap)."""
    f = of(dev)
    if f is None:
        return
    if f.vanish:
        f.hit("vanish")
        raise OSError(errno.EIO, "injected fault: storage vanished")
    if op == "read" and f.eio_read:
        f.hit("eio-read")
        raise OSError(errno.EIO, "injected fault: read error")
    if op in ("write", "flush") and f.eio_write:
        f.hit("eio-write")
        raise OSError(errno.EIO, "injected fault: write error")
    if op == "write" and f.nospace:
        f.hit("nospace")
        raise OSError(errno.ENOSPC, "injected fault: no space left on device")
