"""``/proc/modules`` inside ``simfs run``: the target modules listed as loaded.

rtslib-fb decides whether to load a kernel module by reading ``/proc/modules``: when a
configfs ``mkdir`` (``target/`` itself, or a fabric such as ``target/vhost``) fails, it
looks for the module's name there and runs ``modprobe`` only if it is missing. Inside
``simfs run`` the "modules" are simfs itself, so the namespace answers that check the way
a machine with the target modules loaded would:

* when the kernel has ``/proc/modules``, a copy with the target modules added is bind
  mounted over it (inside the namespace only);
* a kernel built without module support has no ``/proc/modules`` at all, and nothing can
  be mounted where no file is. Python tools (rtslib-fb, targetcli, targetctl) then find
  the list through a ``sitecustomize`` on ``PYTHONPATH`` that answers an ``open`` of
  ``/proc/modules`` with it; it loads the distribution's own ``sitecustomize`` after.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from simfs.core.fabric import discover_fabrics

PROC_MODULES = "/proc/modules"
#: the core and the backends' modules (target_core_rd is part of target_core_mod)
CORE_MODULES = ("target_core_mod", "target_core_iblock", "target_core_file",
                "target_core_pscsi", "target_core_user")

HOOK = '''\
"""simfs run: this kernel has no /proc/modules; answer rtslib's module check from the
list simfs run wrote (SIMFS_RUN_MODULES), as a machine with the target modules loaded
would. Then load the distribution's own sitecustomize."""
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


def module_names() -> list[str]:
    """The modules simfs stands for: the core, the backends, each fabric plugin's."""
    names = list(CORE_MODULES)
    for fabric in discover_fabrics():
        mod = getattr(fabric, "module", None)
        if mod and mod not in names:
            names.append(mod)
    return names


def listing(host: str = "") -> str:
    """``/proc/modules`` text: the host's lines, then each target module not among them
    (name size refcount users state address; rtslib reads the first word)."""
    lines = [line for line in host.splitlines() if line.strip()]
    have = {line.split()[0] for line in lines}
    lines += [f"{name} 0 0 - Live 0x0000000000000000" for name in module_names()
              if name not in have]
    return "\n".join(lines) + "\n"


def provide(scratch: Path, env: dict) -> None:
    """Make the namespace's ``/proc/modules`` list the target modules (see above).
    ``scratch`` is the namespace's private tmpfs; ``env`` the command's environment."""
    try:
        with open(PROC_MODULES) as f:
            host = f.read()
    except OSError:
        host = None
    path = scratch / "modules"
    path.write_text(listing(host or ""))
    if host is not None:
        r = subprocess.run(["mount", "--bind", str(path), PROC_MODULES], capture_output=True)
        if r.returncode == 0:
            return
    hook = scratch / "py"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    env["SIMFS_RUN_MODULES"] = str(path)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(hook), env.get("PYTHONPATH")) if x)
