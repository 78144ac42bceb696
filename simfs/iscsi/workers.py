"""A worker thread per device: SCSI commands leave the event loop.

The kernel runs backend I/O in per-device work queues; the connection threads never wait
for a disk. Here the event loop carries every connection, login, NOP and discovery of the
target, so a command that sleeps (a ``simfs fault ... latency``, a stalled NFS file under
fileio) must not run on it. :class:`DeviceWorkers` gives each device one FIFO worker thread:
commands to a device run one after the other in the order the connections submitted them
(per-nexus order kept, as SIMPLE tasks through one queue), different devices run side by
side, and the loop learns of a completion through ``call_soon_threadsafe``.

The queue of a device is bounded: beyond :data:`MAX_QUEUED` waiting commands a submission
is answered at once with TASK SET FULL (SAM's status for a full task set), without running.
An idle worker ends after :data:`IDLE` seconds; the next command starts a new one.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Hashable, Optional

#: commands waiting for one device before the next is answered TASK SET FULL
MAX_QUEUED = 1024
#: seconds an idle worker waits for work before it ends
IDLE = 30.0


class QueueFull(Exception):
    """The device's queue holds :data:`MAX_QUEUED` commands already."""


class _Worker:
    def __init__(self, owner: "DeviceWorkers", key: Hashable):
        self.owner = owner
        self.key = key
        self.jobs: collections.deque = collections.deque()
        self.cond = threading.Condition(owner.lock)
        self.thread = threading.Thread(target=self._run, name=f"simfs-dev-{len(owner.workers)}",
                                       daemon=True)
        self.stopping = False
        #: a job is running (it has left ``jobs``)
        self.running = False

    @property
    def busy(self) -> bool:
        """A command is queued or running."""
        return bool(self.jobs) or self.running

    def _run(self) -> None:
        owner = self.owner
        while True:
            with owner.lock:
                while not self.jobs and not self.stopping:
                    if not self.cond.wait(IDLE) and not self.jobs:
                        # idle: leave (a submission after this creates a new worker)
                        owner.workers.pop(self.key, None)
                        return
                if not self.jobs:
                    owner.workers.pop(self.key, None)
                    return
                fn, args, done = self.jobs.popleft()
                self.running = True
            try:
                result, error = fn(*args), None
            except BaseException as e:  # noqa: BLE001 - handed to the completion
                result, error = None, e
            try:
                done(result, error)
            except Exception:  # noqa: BLE001 - a closed loop: nobody waits any more
                pass
            with owner.lock:
                self.running = False


class Completions:
    """Results coming back to the event loop: one wake-up per batch, not one per command.

    Workers call :meth:`add` (any thread); the loop runs the callbacks in arrival order in
    one of its iterations, so the responses of a batch leave in one writev."""

    def __init__(self, loop):
        self.loop = loop
        self.lock = threading.Lock()
        self.items: collections.deque = collections.deque()
        self.scheduled = False

    def add(self, fn: Callable, *args: Any) -> None:
        with self.lock:
            self.items.append((fn, args))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            items, self.items = self.items, collections.deque()
            self.scheduled = False
        for fn, args in items:
            fn(*args)


class DeviceWorkers:
    """One FIFO worker thread per device key (see the module docstring)."""

    def __init__(self, max_queued: int = MAX_QUEUED):
        self.lock = threading.Lock()
        self.workers: dict[Hashable, _Worker] = {}
        self.max_queued = max_queued

    def submit(self, key: Hashable, fn: Callable, args: tuple,
               done: Callable[[Any, Optional[BaseException]], None]) -> None:
        """Run ``fn(*args)`` on ``key``'s worker; ``done(result, error)`` is called on that
        worker thread afterwards. Raises :class:`QueueFull` when the queue is full."""
        with self.lock:
            w = self.workers.get(key)
            if w is None:
                w = _Worker(self, key)
                self.workers[key] = w
                start = True
            else:
                start = False
                if len(w.jobs) >= self.max_queued:
                    raise QueueFull(key)
            w.jobs.append((fn, args, done))
            w.cond.notify()
        if start:
            w.thread.start()

    def idle(self, key: Hashable) -> bool:
        """Nothing queued or running for ``key`` (a command may then run elsewhere
        without passing one that waits)."""
        w = self.workers.get(key)  # a racy read is fine: only the loop submits
        return w is None or not w.busy

    def all_idle(self) -> bool:
        """No device has a command queued or running (racy, as :meth:`idle`)."""
        return not any(w.busy for w in list(self.workers.values()))

    def queued(self, key: Hashable) -> int:
        with self.lock:
            w = self.workers.get(key)
            return len(w.jobs) if w is not None else 0

    def stop(self) -> None:
        """Let every worker finish what it holds, then end."""
        with self.lock:
            workers = list(self.workers.values())
            for w in workers:
                w.stopping = True
                w.cond.notify()
