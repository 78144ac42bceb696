"""``/proc/modules`` of the machine a ``simfs run`` plays, kept current by the daemon.

A freshly booted machine with the target in use has target_core_mod loaded and nothing
else of the target: a fabric module comes when a tool asks for it (``modprobe tcm_vhost``;
``mkdir target/iscsi`` and ``target/loopback`` make the kernel load iscsi_target_mod and
tcm_loop itself), the backend modules with the first HBA (``mkdir core/fileio_0``).
rtslib-fb reads this list before it runs ``modprobe``, so it must say what is loaded now.

``simfs run`` writes the machine's other modules into a file and binds it over
``/proc/modules`` inside its namespace; the daemon (``--proc-modules FILE``) rewrites the
file with the target modules on top whenever one loads, in place: a bind mount keeps the
inode it was made on, so a new file renamed over it would go unseen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simfs.core.core import TargetCore


def line(name: str, users: list[str]) -> str:
    """One module as /proc/modules prints it (kernel/module's m_show): name, size,
    refcount, the modules using it (``-`` for none, each followed by a comma), state and
    address. simfs has no sizes; addresses are what a reader without CAP_SYSLOG sees."""
    used_by = "".join(f"{u}," for u in users) or "-"
    return f"{name} 0 {len(users)} {used_by} Live 0x0000000000000000"


def listing(modules: list[str], others: str = "") -> str:
    """The target ``modules`` (oldest first; every other one uses target_core_mod) listed
    newest first, as the kernel lists what it loaded last first, then ``others``."""
    core, rest = modules[0], modules[1:]
    lines = [line(name, []) for name in reversed(rest)]
    lines.append(line(core, list(reversed(rest))))
    lines += [x for x in others.splitlines() if x.strip()]
    return "\n".join(lines) + "\n"


class ProcModules:
    """The file ``simfs run`` binds over /proc/modules: its text at start is the machine's
    other modules; the target's are added as they load."""

    def __init__(self, path: Path, core: "TargetCore"):
        self.path, self.core = Path(path), core
        try:
            self.others = self.path.read_text()
        except OSError:
            self.others = ""

    def write(self) -> None:
        data = listing(self.core.modules, self.others).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)  # in place: the bind mount shows this inode
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def attach(self) -> None:
        """Write the list now and after every module load."""
        self.write()
        self.core.events.modules_changed = self.write
