"""Helpers for the trace/record/show tests: a `simfs trace`/`simfs record` client running
in the background, and a full dump of a mounted tree."""
from __future__ import annotations

import errno
import os
import subprocess
import time

SIMFS = ["simfs"]


class Client:
    """``simfs ARGS`` in the background, started once its 'tracing' banner is out."""

    def __init__(self, args: list[str], stdout=subprocess.PIPE):
        self.proc = subprocess.Popen([*SIMFS, *args], stdout=stdout,
                                     stderr=subprocess.PIPE, text=True)
        banner = self.proc.stderr.readline()
        assert banner.startswith("simfs: tracing"), banner + self.proc.stderr.read()

    def stop(self, settle: float = 0.3) -> str:
        """Let the last events arrive, interrupt, return stdout."""
        time.sleep(settle)
        self.proc.send_signal(2)
        out, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        return out or ""


def dump(root: str) -> dict[str, str]:
    """Every file's content (or its read errno), every symlink's target, every directory,
    under ``root``, keyed by the path below it."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = "dir"
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            key = os.path.relpath(p, root)
            if os.path.islink(p):
                out[key] = "-> " + os.readlink(p)
                if name in dirnames:
                    dirnames.remove(name)  # do not walk into links
            elif os.path.isfile(p):
                try:
                    with open(p, "rb") as f:
                        out[key] = f.read().decode("latin-1")
                except OSError as e:
                    out[key] = f"<{errno.errorcode.get(e.errno, e.errno)}>"
    return out
