"""The files of ``target/iscsi/``: ``lio_version`` and ``cpus_allowed_list``."""

from __future__ import annotations

import errno
import os

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core import kparse
from simfs.core.fabric import FabricModule, obj

from simfs_plugins.fabrics.iscsi.constants import ISCSIT_VERSION


def _cpulist(cpus: set[int]) -> str:
    """``%*pbl``: ranges of consecutive CPUs, comma-separated."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else f"{run[0]}")
    return ",".join(out)


def _nr_cpu_ids() -> int:
    return os.cpu_count() or 1


def _parse_cpulist(text: str) -> set[int]:
    """cpulist_parse: ``0-3,5``; EINVAL for anything else, ERANGE past the last CPU id."""
    text = text.split("\n", 1)[0]
    cpus: set[int] = set()
    if not text.strip():
        return cpus
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ConfigfsError(errno.EINVAL, None)
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b:
            raise ConfigfsError(errno.EINVAL, None)
        if b >= _nr_cpu_ids():
            raise ConfigfsError(errno.ERANGE, None)
        cpus.update(range(a, b + 1))
    return cpus


def _show_cpus_allowed(g: Group) -> str:
    fmod: FabricModule = obj(g)
    return f"{_cpulist(fmod.state.setdefault('cpus_allowed', set(range(_nr_cpu_ids()))))}\n"


def _store_cpus_allowed(g: Group, buf: bytes) -> None:
    fmod: FabricModule = obj(g)
    fmod.state["cpus_allowed"] = _parse_cpulist(kparse.cstr(buf))


WWN_ATTRS = (
    Attribute("lio_version", lambda g: f"Datera Inc. iSCSI Target {ISCSIT_VERSION}\n"),
    Attribute("cpus_allowed_list", _show_cpus_allowed, _store_cpus_allowed),
)
