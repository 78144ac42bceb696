"""SIGINT noted from the very start of ``simfs`` (installed first by simfs.cli.main).

Python's own SIGINT handler raises KeyboardInterrupt in whatever Python code runs when the
signal comes. When that is a finalizer or a weakref callback (importlib runs one after
every import), Python prints "Exception ignored in ..." and the signal is lost. ``simfs
run`` must not lose a stop signal that way while it starts: this handler raises exactly
as Python's does, but notes the signal first, and ``simfs run`` takes the notes when its
own handlers are in (:meth:`simfs.cli.run_signals.StopSignals.adopt_early`).
"""

from __future__ import annotations

import signal

_noted: list[int] = []


def _sigint(signum: int, _frame) -> None:
    _noted.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Take SIGINT over from Python's handler (a SIGINT ignored at start stays ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _sigint)


def take() -> list[int]:
    """The SIGINTs noted since the last call."""
    out = _noted[:]
    del _noted[:]
    return out
