"""Polling the connections' sockets for a moment before the event loop sleeps.

With one command at a time (QD1) every command finds the server's thread asleep, and the
initiator's request has to wake it. On a virtual machine whose idle vCPUs halt at once
(cpuidle without guest halt polling, as on the machines simfs is measured on), that wake-up
is an interrupt to a halted vCPU and costs more than simfs's whole work on the command
(docs/performance.md, "What bounds QD1"). So once the loop has answered everything it
holds, it polls the sockets of its connections for a short while before it sleeps; a
command that comes within that window is taken without the sleep and its wake-up.

The window adapts the way KVM's halt polling adapts its own: it starts at zero (an idle
target never polls), grows when the loop slept and the next bytes came within the maximum
(a longer poll would have caught them), and shrinks when they came later. ``simfs mount
--iscsi-poll-us`` sets the maximum (100 us by default; 0 turns polling off).
"""

from __future__ import annotations

import select
import time

#: the first window after a miss (KVM's halt_poll_ns_grow_start is the same 10 us)
GROW_START = 10e-6

_now = time.perf_counter


class PollWindow:
    """How long to poll before sleeping (seconds), and how it adapts (no I/O here)."""

    def __init__(self, max_s: float):
        self.max = max(0.0, max_s)
        #: the current window; 0: sleep at once
        self.window = 0.0

    def slept(self, idle: float) -> None:
        """The loop went idle, polled ``window`` without a catch, slept, and its next input
        came ``idle`` seconds after it went idle."""
        if idle > self.max:
            # a long pause: the poll was wasted
            self.window = self.window / 2 if self.window / 2 >= GROW_START else 0.0
        elif idle > self.window:
            # a short pause that a longer poll would have caught
            self.window = min(self.max, max(GROW_START, self.window * 2))


class IdlePoll:
    """The event loop's poll set (the sockets of its connections in full feature phase) and
    its :class:`PollWindow`. Used on the loop's thread only."""

    def __init__(self, max_us: float):
        self.window = PollWindow(max_us / 1e6)
        self._poll = select.poll()
        self._owners: dict[int, object] = {}  # fd -> the connection that registered it
        self._idle_at = 0.0
        #: polls that caught input, and polls that ended in a sleep (for tests and bench)
        self.caught = 0
        self.missed = 0

    @property
    def enabled(self) -> bool:
        return self.window.max > 0

    def add(self, fd: int, owner: object) -> None:
        self._owners[fd] = owner
        self._poll.register(fd, select.POLLIN)

    def remove(self, fd: int, owner: object) -> None:
        # a closed socket's number may belong to a newer connection by now: only its
        # registrant takes it out
        if self._owners.get(fd) is owner:
            del self._owners[fd]
            self._poll.unregister(fd)

    def arrived(self) -> None:
        """Input came: if the loop had gone to sleep for it, the window learns how long."""
        if self._idle_at:
            self.window.slept(_now() - self._idle_at)
            self._idle_at = 0.0

    def rest(self, spin: bool = True) -> None:
        """The loop has nothing in flight: poll up to the window (unless ``spin`` is false:
        something other than a socket will wake it), then let it sleep."""
        t0 = _now()
        w = self.window.window
        if w and spin:
            poll = self._poll.poll  # releases the GIL: the daemon's other threads run
            end = t0 + w
            while True:
                if poll(0):
                    self.caught += 1
                    return
                if _now() >= end:
                    break
            self.missed += 1
        self._idle_at = t0
