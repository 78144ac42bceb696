"""How ``simfs run`` stops: SIGINT, SIGTERM and SIGHUP all mean "finish and clean up".

Three processes take part. The *outer* ``simfs run`` forwards each of the three signals to
the *inner* one (``unshare`` execs it in the private namespace) which it starts in a
process group of its own, so a signal to the caller's whole group (``timeout``, a CI
runner's cancel, ``kill -- -PGID``) reaches the chain exactly once. The inner process
passes the signal on to the *command*, which runs in a third group, gives it ``grace``
seconds to finish, then kills what is left of that group and cleans up: daemon, private
bus, mount, and the copy of /etc and /var to the state directory. If the outer process
dies (even by SIGKILL) the kernel sends the inner one SIGTERM (PR_SET_PDEATHSIG).

At a terminal the command's group becomes the foreground group, so Ctrl-C and a hangup
reach the command directly, once, as they would from a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36


class StopSignals:
    """Records the stop signals this process receives (none of them kills it) and passes
    each one, once, to whoever is interested (:meth:`on_stop`). A signal this process
    was started with ignored (``nohup`` ignores SIGHUP) stays ignored, here and for the
    command."""

    def __init__(self, ignored: Sequence[int] = ()) -> None:
        self.received: list[int] = []
        self.ignored = sorted({int(s) for s in ignored} | {
            int(s) for s in STOP_SIGNALS if signal.getsignal(s) == signal.SIG_IGN})
        self._passed = 0
        self._listener: Optional[Callable[[int], None]] = None

    def install(self) -> "StopSignals":
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN if sig in self.ignored else self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        self.received.append(signum)
        self._pass_on()

    def _pass_on(self) -> None:
        # blocked meanwhile: a handler running between two of these lines would pass a
        # signal twice
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            while self._listener is not None and self._passed < len(self.received):
                self._passed += 1
                self._listener(self.received[self._passed - 1])
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def on_stop(self, listener: Optional[Callable[[int], None]]) -> None:
        """Call ``listener(signum)`` for every stop signal not yet passed on, those that
        arrived before included; None only records them again."""
        self._listener = listener
        self._pass_on()

    def adopt_early(self) -> None:
        """Count the SIGINTs :mod:`simfs.cli.early_signals` noted before these handlers
        were installed: Python may have swallowed their KeyboardInterrupt, and nothing else
        remembers them."""
        from simfs.cli import early_signals
        self.received += early_signals.take()
        self._pass_on()

    @property
    def stopping(self) -> bool:
        """Whether a stop signal has arrived."""
        return bool(self.received)


def foreground_pgrp() -> int:
    """The terminal's foreground process group when it is ours (stdin is our terminal and
    our group is in the foreground), else 0."""
    try:
        fg = os.tcgetpgrp(0)
    except OSError:  # not a terminal
        return 0
    return fg if fg == os.getpgrp() else 0


def give_terminal(pgrp: int) -> None:
    """Make ``pgrp`` the terminal's foreground group (from any group of our session)."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background tcsetpgrp stops us
    try:
        os.tcsetpgrp(0, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, old)


def spec(grace: float) -> dict:
    """What the inner process needs to know from the outer one (part of its JSON spec)."""
    return {"grace": grace, "parent": os.getpid(), "terminal": foreground_pgrp(),
            "ignored": StopSignals().ignored}


def run_forwarding(argv: list[str]) -> int:
    """Outer side: run ``argv`` in its own process group, forward stop signals to it,
    return its exit status (128+N if it died of signal N)."""
    stops = StopSignals().install()
    stops.adopt_early()
    fg = foreground_pgrp()
    # The child starts with the stop signals blocked (a signal mask survives fork and
    # exec) and unblocks them once its handlers are in (unblock_stops): a signal forwarded
    # while it starts waits for them, instead of becoming a KeyboardInterrupt that Python
    # may swallow in its start-up (a finalizer, importlib's weakref callbacks), after which
    # the run would go on as if never stopped.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        proc = subprocess.Popen(argv, process_group=0)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def forward(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)

    stops.on_stop(forward)  # also those that came while the child was being started
    rc = proc.wait()
    if fg:
        give_terminal(fg)  # in case the inner process could not give it back
    return rc if rc >= 0 else 128 - rc


def unblock_stops() -> None:
    """Inner side, once its handlers are installed: take the stop signals that
    :func:`run_forwarding` kept blocked while this process started (any that came meanwhile
    is delivered now)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def guard_inner(parent: int) -> None:
    """Get SIGTERM when ``parent`` dies, and adopt orphaned descendants (the daemon, the
    bus, the command's background jobs) so they are reaped here, at once. Set inside the
    namespace: unshare(2) of a user namespace changes the credentials, which clears an
    earlier death signal."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def reap_orphans() -> None:
    """Collect the exit status of adopted descendants that have exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Command:
    """Inner side: the command in its own process group, stopped on request."""

    def __init__(self, argv: list[str], env: dict, stops: StopSignals, spec: dict) -> None:
        self.argv, self.env, self.stops = argv, env, stops
        self.grace = spec["grace"]
        self.terminal = spec["terminal"]  # the foreground group to give back the terminal to
        self.proc: Optional[subprocess.Popen] = None

    def _child_setup(self) -> None:  # runs in the child, before exec
        for sig in self.stops.ignored:
            signal.signal(sig, signal.SIG_IGN)
        os.setpgid(0, 0)
        if self.terminal:
            give_terminal(os.getpgrp())

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def run(self) -> int:
        """Start, wait, stop on request; returns the exit status (128+N for signal N)."""
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=self._child_setup)
        except OSError as e:  # as a shell says it, with a shell's status
            print(f"simfs run: {self.argv[0]}: {e.strerror}", file=sys.stderr)
            return 127 if isinstance(e, FileNotFoundError) else 126
        if self.terminal:
            give_terminal(self.proc.pid)  # the child did it too; whichever runs first wins
        deadline = None  # set by the first stop signal: the end of the grace period

        def on_stop(signum: int) -> None:
            nonlocal deadline
            if deadline is None:
                deadline = time.monotonic() + self.grace
                self._signal(signum)
            else:  # another one means "now"
                deadline = time.monotonic()

        self.stops.on_stop(on_stop)
        try:
            while True:
                try:
                    rc = self.proc.wait(timeout=0.1)  # the handler cannot wake a blocking wait
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        self._signal(signal.SIGKILL)
        finally:
            self.stops.on_stop(None)
            self._reap_group()
            if self.terminal:
                give_terminal(self.terminal)
        return rc if rc >= 0 else 128 - rc

    def _reap_group(self) -> None:
        """Stop what the command left running in its group (background jobs): they would
        keep the namespace, and so the mount, alive."""
        self._signal(signal.SIGTERM)
        start = time.monotonic()
        while time.monotonic() < start + 3.0:
            reap_orphans()
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() > start + 1.0:
                self._signal(signal.SIGKILL)
            time.sleep(0.02)


def stop_process(pid: int, timeout: float = 2.0) -> None:
    """SIGTERM ``pid`` (an adopted descendant, such as the private bus) and wait for it."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours to reap: watch it instead
            done = 0 if os.path.exists(f"/proc/{pid}") else pid
        if done:
            return
        time.sleep(0.02)
