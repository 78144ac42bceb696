"""The kernel-style log ("dmesg") of one simfs instance.

Lines look like dmesg's: ``[    1.234567] message``, timed from the mount (the
"module load"). They go through loguru to a file in the state directory and are
also kept in memory, so tests and ``simfs dmesg`` read the same thing.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from pathlib import Path
from typing import Optional

from loguru import logger

_instances = itertools.count(1)

# Kernel log levels as dmesg names them; pr_debug lines are kept too (simfs has no
# dynamic-debug switch: seeing every step is the point).
LEVELS = {"err": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG"}


class KernelLog:
    """One instance's log: ``err``/``warn``/``info``/``debug`` append a line."""

    def __init__(self, path: Optional[Path] = None, keep: int = 20000):
        self.start = time.monotonic()
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._id = next(_instances)
        self._logger = logger.bind(simfs_klog=self._id)
        self._sink_id = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sink_id = logger.add(
                str(path), format="{message}", level="DEBUG", enqueue=False,
                filter=lambda rec, i=self._id: rec["extra"].get("simfs_klog") == i)

    def _emit(self, level: str, msg: str) -> None:
        stamp = time.monotonic() - self.start
        line = f"[{stamp:12.6f}] {msg}"
        with self._lock:
            self.lines.append(line)
        self._logger.log(LEVELS[level], line)

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
        if self._sink_id is not None:
            logger.remove(self._sink_id)
            self._sink_id = None


def _quiet_default_sink() -> None:
    """loguru prints to stderr by default; simfs's log belongs in its own file."""
    try:
        logger.remove(0)
    except ValueError:
        pass


_quiet_default_sink()
