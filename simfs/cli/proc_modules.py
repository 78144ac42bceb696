"""``/proc/modules`` inside ``simfs run``: the target modules loaded, as on a machine.

rtslib-fb decides whether to load a kernel module by reading ``/proc/modules``: when a
configfs ``mkdir`` (``target/`` itself, or a fabric such as ``target/vhost``) fails, it
looks for the module's name there and runs ``modprobe`` only if it is missing. Inside
``simfs run`` the "modules" are simfs itself, so the namespace's list says what the run's
mount has loaded: target_core_mod from the start, the others as they load
(simfs/daemon/proc_modules.py keeps the list current):

* when the kernel has ``/proc/modules``, a file with the host's other modules is bind
  mounted over it (inside the namespace only), and the daemon adds the target's;
* a kernel built without module support has no ``/proc/modules`` at all, and nothing can
  be mounted where no file is. Python tools (rtslib-fb, targetcli, targetctl) then find
  the list through a ``sitecustomize`` on ``PYTHONPATH`` that answers an ``open`` of
  ``/proc/modules`` with it; it loads the distribution's own ``sitecustomize`` after.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from simfs.core.core import SUBSYSTEM_MODULES
from simfs.core.fabric import discover_fabrics

PROC_MODULES = "/proc/modules"

HOOK = '''\
"""simfs run: this kernel has no /proc/modules; answer rtslib's module check from the
list simfs run keeps (SIMFS_RUN_MODULES): the target modules loaded now. Then load the
distribution's own sitecustomize."""
import builtins
import importlib
import os
import sys

_open = builtins.open
_list = os.environ.get("SIMFS_RUN_MODULES")


def _simfs_open(file, *args, **kwargs):
    if _list and file == "/proc/modules":
        return _open(_list, *args, **kwargs)
    return _open(file, *args, **kwargs)


builtins.open = _simfs_open
_here = os.path.dirname(os.path.abspath(__file__))
_path = sys.path[:]
_self = sys.modules.pop("sitecustomize", None)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
try:
    importlib.import_module("sitecustomize")
except ImportError:
    pass
finally:
    sys.path[:] = _path
    if _self is not None:
        sys.modules["sitecustomize"] = _self
'''


def module_names() -> set[str]:
    """The modules simfs stands for, in any version: the core, the backends, every fabric
    plugin's (``-`` and ``_`` alike, as modprobe treats them)."""
    names = {"target_core_mod", *SUBSYSTEM_MODULES}
    for fabric in discover_fabrics():
        names.update(n.replace("-", "_") for n in (fabric.module, *fabric.aliases) if n)
    return names


def others(host: str) -> str:
    """The host's lines but the target's own: whatever the host has loaded of the target is
    not this machine's (its list starts with target_core_mod alone)."""
    mine = module_names()
    return "".join(line + "\n" for line in host.splitlines()
                   if line.strip() and line.split()[0].replace("-", "_") not in mine)


def provide(scratch: Path, env: dict) -> Path:
    """Make the namespace's ``/proc/modules`` the run's (see above): returns the file the
    mount's daemon keeps current. ``scratch`` is the namespace's private tmpfs; ``env`` the
    command's environment."""
    try:
        with open(PROC_MODULES) as f:
            host = f.read()
    except OSError:
        host = None
    path = scratch / "modules"
    path.write_text(others(host or ""))
    if host is not None:
        r = subprocess.run(["mount", "--bind", str(path), PROC_MODULES], capture_output=True)
        if r.returncode == 0:
            return path
    hook = scratch / "py"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    env["SIMFS_RUN_MODULES"] = str(path)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(hook), env.get("PYTHONPATH")) if x)
    return path
