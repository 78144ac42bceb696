"""Trace events -> a plain shell script that makes the same changes (``simfs record``).

Only operations that succeeded and change the tree are kept: ``mkdir`` (``mkdir -p``),
``rmdir``, ``symlink`` (``ln -s``), ``unlink`` (``rm``) and attribute writes. A write
becomes ``echo 'text' > FILE`` when the bytes are one line of plain text ending in a
newline (what ``echo`` writes), else ``printf 'FORMAT' > FILE`` with every byte escaped so
the same bytes reach the store in one write(2). Paths are relative to ``$CONFIGFS``
(default ``/sys/kernel/config``), so the script replays on a simfs mount
(``CONFIGFS=/mnt/configfs sh script``) or on a real kernel.

``target/dbroot`` is where APTPL and ALUA metadata files go. A recorded session's dbroot
(targetcli points it at ``/etc/rtslib-fb-target``) names a directory of the machine it
ran on; replayed as is into a simfs mount, it would send a simulation's files to the
host. So by default the script sets dbroot only when the replay asks for it
(``DBROOT=DIR``), and says what the session wrote; ``keep_dbroot`` records it verbatim.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TextIO

CHANGES = ("mkdir", "rmdir", "symlink", "unlink", "write")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._:/@+=,%-]*$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._:/@+=,%-]+$")


def shquote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def cfs(path: str) -> str:
    """A tree path as a shell word under $CONFIGFS."""
    path = path.strip("/")
    if _SAFE_PATH.match(path):
        return f'"$CONFIGFS/{path}"'
    return '"$CONFIGFS"/' + shquote(path)


def printf_format(data: bytes) -> str:
    """A printf(1) format that prints exactly ``data`` (%, \\ and non-printables escaped)."""
    out = []
    for i, b in enumerate(data):
        ch = chr(b)
        if ch == "%":
            out.append("%%")
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 32 <= b < 127 and not (i == 0 and ch == "-"):
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def write_command(path: str, data: bytes) -> str:
    body = data[:-1]
    if (data.endswith(b"\n") and body and b"\n" not in body and b"\\" not in body
            and not body.startswith(b"-") and all(32 <= b < 127 for b in body)):
        text = body.decode()
        word = text if _SAFE_WORD.match(text) else shquote(text)
        return f"echo {word} > {cfs(path)}"
    return f"printf {shquote(printf_format(data))} > {cfs(path)}"


DBROOT = "target/dbroot"


def dbroot_command(data: bytes) -> str:
    """A recorded dbroot write, replayed only when the replay names a directory."""
    seen = data.decode("latin-1").strip()
    return (f"# the session set dbroot to {seen}; replay with DBROOT=DIR to set it\n"
            f'if [ -n "${{DBROOT:-}}" ]; then echo "$DBROOT" > {cfs(DBROOT)}; fi')


def command(ev: dict, keep_dbroot: bool = False) -> str | None:
    """The shell line(s) for one event, or None when it changed nothing."""
    op = ev.get("op")
    if ev.get("result") != "ok" or op not in CHANGES:
        return None
    path = ev.get("path", "")
    if op == "write" and path.strip("/") == DBROOT and not keep_dbroot:
        return dbroot_command(ev.get("data", "").encode("latin-1"))
    if op == "mkdir":
        return f"mkdir -p {cfs(path)}"
    if op == "rmdir":
        return f"rmdir {cfs(path)}"
    if op == "unlink":
        return f"rm {cfs(path)}"
    if op == "symlink":
        return f"ln -s {cfs(ev.get('target', ''))} {cfs(path)}"
    return write_command(path, ev.get("data", "").encode("latin-1"))


HEADER = """#!/bin/sh
# What changed the target configfs tree{source}, recorded by `simfs record` on {when}.
# Replay: CONFIGFS=/path/to/configfs sh this-script (default /sys/kernel/config: a real
# kernel, or `simfs run -- sh this-script`). Only successful changes are recorded.
set -e
: "${{CONFIGFS:=/sys/kernel/config}}"
case $CONFIGFS in /*) ;; *) CONFIGFS=$PWD/$CONFIGFS ;; esac  # ln -s needs it absolute
"""


class ScriptWriter:
    """Writes the script as events arrive (flushed per line: an interrupted recording is
    still a complete script up to its last change)."""

    def __init__(self, out: TextIO, close: bool = True, keep_dbroot: bool = False):
        self.out = out
        self._close = close
        self.keep_dbroot = keep_dbroot
        self.lines = 0

    def header(self, source: str = "") -> None:
        self.out.write(HEADER.format(source=f" of {source}" if source else "",
                                     when=time.strftime("%Y-%m-%d %H:%M:%S")))
        self.out.flush()

    def event(self, ev: dict) -> None:
        line = command(ev, self.keep_dbroot)
        if line is not None:
            self.out.write(line + "\n")
            self.out.flush()
            self.lines += 1

    def close(self) -> None:
        try:
            self.out.flush()
        finally:
            if self._close:
                self.out.close()


def script(events: Iterable[dict], source: str = "", keep_dbroot: bool = False) -> str:
    """The whole script for a list of events (sans-I/O helper for tests and tools)."""
    import io
    buf = io.StringIO()
    w = ScriptWriter(buf, close=False, keep_dbroot=keep_dbroot)
    w.header(source)
    for ev in events:
        w.event(ev)
    return buf.getvalue()
