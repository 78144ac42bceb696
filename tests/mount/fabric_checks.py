"""Checks shared by the fabric tests: a refusal leaves the errno, the kernel's log line and
*no* change in the tree."""
from __future__ import annotations

import os

from test_fabric_tree import refused


def snapshot(m, rel: str) -> dict:
    """Every directory, link and readable file under ``rel`` of the mount, with contents."""
    snap: dict = {}
    top = os.path.join(m.root, rel)
    for d, dirs, files in os.walk(top):
        snap[os.path.relpath(d, top) + "/"] = sorted(dirs + files)
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p):
                snap[p] = "-> " + os.readlink(p)
                continue
            try:
                with open(p) as fh:
                    snap[p] = fh.read()
            except OSError as e:
                snap[p] = f"errno {e.errno}"
    return snap


def refused_unchanged(m, cmd: str, err: int, log: str | None, rel: str) -> None:
    """``cmd`` fails with ``err`` and the log line ``log`` (a regex, or None: silent), and
    nothing under ``rel`` changed."""
    before = snapshot(m, rel)
    refused(m, cmd, err, log)
    assert snapshot(m, rel) == before


def modprobe(m, module: str) -> None:
    m.ok(f"simfs modprobe {m.root} {module}")
