"""The kernel-style log ("dmesg") of one simfs instance.

Lines look like dmesg's: ``[    1.234567] message``, timed from the mount (the
"module load"). They are appended to a file in the state directory (one write(2) per
line, so ``simfs dmesg --follow`` sees each at once) and also kept in memory, so tests
and ``simfs dmesg`` read the same thing. A line is written directly, not through a
logging library: a store's log line is on the FUSE write path, and building a logging
record (frame, clock, thread and process lookups, filters) cost about four times the
write itself (docs/performance.md).
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import IO, Optional

# Kernel log levels as dmesg names them; pr_debug lines are kept too (simfs has no
# dynamic-debug switch: seeing every step is the point).
LEVELS = {"err": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG"}


class KernelLog:
    """One instance's log: ``err``/``warn``/``info``/``debug`` append a line."""

    def __init__(self, path: Optional[Path] = None, keep: int = 20000):
        self.start = time.monotonic()
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._file: Optional[IO[str]] = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def _emit(self, level: str, msg: str) -> None:
        stamp = time.monotonic() - self.start
        line = f"[{stamp:12.6f}] {msg}"
        with self._lock:  # one writer at a time: lines never interleave
            self.lines.append(line)
            if self._file is not None:
                try:
                    self._file.write(line + "\n")
                except (OSError, ValueError):  # a full disk must not fail the operation
                    pass

    def err(self, msg: str) -> None:
        self._emit("err", msg)

    def warn(self, msg: str) -> None:
        self._emit("warn", msg)

    def info(self, msg: str) -> None:
        self._emit("info", msg)

    def debug(self, msg: str) -> None:
        self._emit("debug", msg)

    def text(self) -> str:
        with self._lock:
            return "".join(line + "\n" for line in self.lines)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
