"""Where a mount keeps its files: the log, its pid, and what the kernel keeps on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional


def state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "simfs"


def resolve(mountpoint: str) -> str:
    """The canonical mountpoint path. Never call this inside the daemon once mounted: it
    stats the mountpoint, which would wait on the daemon itself."""
    return os.path.realpath(mountpoint)


def _key(mountpoint: str) -> str:
    """``mountpoint`` must already be resolved (see :func:`resolve`)."""
    return mountpoint.strip("/").replace("/", "%") or "%"


def default_state_dir(mountpoint: str) -> Path:
    return state_home() / "mounts" / _key(mountpoint)


def _mount_ns() -> str:
    """This process's mount namespace: the same path names different mounts in different
    namespaces (two ``simfs run`` at once both mount /sys/kernel/config)."""
    try:
        return str(os.stat("/proc/self/ns/mnt").st_ino)
    except OSError:
        return "0"


def record_path(mountpoint: str) -> Path:
    return state_home() / "active" / f"{_key(mountpoint)}@{_mount_ns()}.json"


def write_record(mountpoint: str, state_dir: Path, pid: int, profile: str) -> None:
    path = record_path(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mountpoint": mountpoint,
                                "state_dir": str(state_dir), "pid": pid, "profile": profile}))


def read_record(mountpoint: str) -> Optional[dict]:
    try:
        return json.loads(record_path(mountpoint).read_text())
    except (OSError, ValueError):
        return None


def remove_record(mountpoint: str) -> None:
    try:
        record_path(mountpoint).unlink()
    except OSError:
        pass


def active_records() -> list[dict]:
    out = []
    for p in sorted((state_home() / "active").glob(f"*@{_mount_ns()}.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if _alive(rec.get("pid", 0)):
            out.append(rec)
    return out


def _alive(pid: int) -> bool:
    """Whether the daemon ``pid`` still runs. A zombie has exited: it only waits for its
    parent (usually init, for a daemon) to reap it, which can take seconds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def log_path(state_dir: Path) -> Path:
    return Path(state_dir) / "dmesg.log"
