"""user: handlers — what serves the commands of TCMU (``user:<subtype>``) backstores.

On a Linux machine the kernel's ``target_core_user`` passes the commands of a ``user``
backstore to a user-space daemon, tcmu-runner, which hands them to the *handler* named by the
first part of the device's ``dev_config`` (``file//srv/disk.img`` -> the ``file`` handler).
simfs plays both halves: a handler is a Python object in the simfs daemon, found like any
plugin through the entry point group ``simfs.handlers``, and shaped like tcmu-runner's
``struct tcmur_handler``.

A handler MUST have ``subtype`` and implement ``open``, ``read`` and ``write``. It MAY set
``name`` and ``cfg_desc`` and implement ``check_config``, ``close``, ``flush``, ``unmap``,
``reconfig``, ``handle_cmd`` (whole CDBs, before the engine's own emulation) and
``pr_store`` (persistent reservations shared between nodes, a simfs extension). Everything
a handler does not take over, simfs emulates (INQUIRY, READ CAPACITY, MODE SENSE, PR, ALUA,
WRITE SAME through ``write``, COMPARE AND WRITE through ``read`` and ``write``...).

Errors become SCSI status and sense data the way tcmu-runner completes a command: raise
:class:`HandlerError` with a :class:`Status` (the ``TCMU_STS_*`` codes), or let an
``OSError`` escape from ``read`` (MEDIUM ERROR, UNRECOVERED READ ERROR) or from ``write``,
``flush`` and ``unmap`` (MEDIUM ERROR, WRITE ERROR), as tcmu-runner's file handler reports
failed system calls. See docs/handlers.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Optional

__all__ = ["Handler", "Device", "Cmd", "Status", "HandlerError", "NOT_HANDLED",
           "discover_handlers"]

#: What ``handle_cmd`` returns for a command it leaves to simfs's emulation.
NOT_HANDLED = None


class Status(enum.IntEnum):
    """How a command ends (tcmu-runner's ``TCMU_STS_*``); see :data:`STATUS_SENSE`."""

    OK = 0
    NO_RESOURCE = 1
    BUSY = 3
    WR_ERR = 4
    RD_ERR = 5
    MISCOMPARE = 6
    INVALID_CMD = 7
    INVALID_CDB = 8
    INVALID_PARAM_LIST = 9
    INVALID_PARAM_LIST_LEN = 10
    TIMEOUT = 11
    FENCED = 12
    HW_ERR = 13
    RANGE = 14
    FRMT_IN_PROGRESS = 15
    CAPACITY_CHANGED = 16
    NOTSUPP_SAVE_PARAMS = 17
    WR_ERR_INCOMPAT_FRMT = 18
    TRANSITION = 19
    IMPL_TRANSITION_ERR = 20
    EXPL_TRANSITION_ERR = 21


# SCSI status bytes and sense keys (SAM-5 / SPC-4)
GOOD, CHECK_CONDITION, BUSY, TASK_SET_FULL = 0x00, 0x02, 0x08, 0x28
NOT_READY, MEDIUM_ERROR, HARDWARE_ERROR, ILLEGAL_REQUEST = 0x2, 0x3, 0x4, 0x5
UNIT_ATTENTION, MISCOMPARE = 0x6, 0xE

#: Status -> (SCSI status, sense key, ASC, ASCQ), as tcmu-runner's libtcmu completes commands.
STATUS_SENSE: dict[Status, tuple[int, int, int, int]] = {
    Status.OK: (GOOD, 0, 0, 0),
    Status.NO_RESOURCE: (TASK_SET_FULL, 0, 0, 0),
    Status.BUSY: (BUSY, 0, 0, 0),
    Status.TIMEOUT: (BUSY, 0, 0, 0),  # retried by the initiator, as after a lost session
    Status.RANGE: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x21, 0x00),
    Status.HW_ERR: (CHECK_CONDITION, HARDWARE_ERROR, 0x44, 0x00),
    Status.MISCOMPARE: (CHECK_CONDITION, MISCOMPARE, 0x1D, 0x00),
    Status.RD_ERR: (CHECK_CONDITION, MEDIUM_ERROR, 0x11, 0x00),
    Status.WR_ERR: (CHECK_CONDITION, MEDIUM_ERROR, 0x0C, 0x00),
    Status.INVALID_CDB: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x24, 0x00),
    Status.INVALID_PARAM_LIST: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x26, 0x00),
    Status.INVALID_PARAM_LIST_LEN: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x1A, 0x00),
    Status.CAPACITY_CHANGED: (CHECK_CONDITION, UNIT_ATTENTION, 0x2A, 0x09),
    Status.TRANSITION: (CHECK_CONDITION, NOT_READY, 0x04, 0x0A),
    Status.IMPL_TRANSITION_ERR: (CHECK_CONDITION, UNIT_ATTENTION, 0x2A, 0x07),
    Status.EXPL_TRANSITION_ERR: (CHECK_CONDITION, HARDWARE_ERROR, 0x67, 0x0A),
    Status.FENCED: (CHECK_CONDITION, NOT_READY, 0x04, 0x0B),
    Status.WR_ERR_INCOMPAT_FRMT: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x30, 0x05),
    Status.NOTSUPP_SAVE_PARAMS: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x39, 0x00),
    Status.FRMT_IN_PROGRESS: (CHECK_CONDITION, NOT_READY, 0x04, 0x04),
    Status.INVALID_CMD: (CHECK_CONDITION, ILLEGAL_REQUEST, 0x20, 0x00),
}


class HandlerError(Exception):
    """Ends a command with ``status``; ``info`` fills the sense INFORMATION field (the offset
    of the first differing byte for MISCOMPARE)."""

    def __init__(self, status: Status, info: Optional[int] = None, why: str = ""):
        super().__init__(why or status.name)
        self.status = Status(status)
        self.info = info


class Log:
    """Where a handler writes its lines (tcmu-runner's log): the mount's log, each line
    starting ``tcmu-runner:`` and naming the device."""

    def __init__(self, emit: Callable[[str, str], None], prefix: str):
        self._emit, self._prefix = emit, prefix

    def err(self, msg: str) -> None:
        self._emit("err", f"{self._prefix}{msg}")

    def warn(self, msg: str) -> None:
        self._emit("warn", f"{self._prefix}{msg}")

    def info(self, msg: str) -> None:
        self._emit("info", f"{self._prefix}{msg}")

    def debug(self, msg: str) -> None:
        self._emit("debug", f"{self._prefix}{msg}")


class Device:
    """One open ``user`` backstore as its handler sees it (tcmu-runner's ``tcmu_device``).

    ``cfgstring`` is the device's whole ``dev_config`` (``file//srv/disk.img``); ``config``
    is what follows the subtype and its ``/``. ``private`` is the handler's own slot.
    """

    def __init__(self, *, cfgstring: str, hba: str, name: str, uio: str, block_size: int,
                 num_lbas: int, max_xfer_len: int, log: Log):
        self.cfgstring = cfgstring
        self.hba, self.name, self.uio = hba, name, uio
        self.block_size = block_size
        self.num_lbas = num_lbas
        self.max_xfer_len = max_xfer_len
        self.log = log
        self.private: object = None

    @property
    def config(self) -> str:
        return self.cfgstring.partition("/")[2]

    @property
    def size(self) -> int:
        return self.block_size * self.num_lbas


@dataclass(frozen=True)
class Cmd:
    """A whole command for ``handle_cmd``: the CDB, the data the initiator sent, and who sent
    it (initiator port name and LUN)."""

    cdb: bytes
    data_out: bytes
    initiator: str
    lun: int


class Handler:
    """Base class of handlers; see the module docstring for what is required."""

    #: the first part of dev_config this handler serves ("file" for "file//srv/disk.img")
    subtype = ""
    #: human-friendly name
    name = ""
    #: what the rest of dev_config means (targetcli prints it under "help create")
    cfg_desc = ""
    #: optional callouts: leave None, or define a method of that name
    flush: Optional[Callable] = None
    unmap: Optional[Callable] = None
    reconfig: Optional[Callable] = None
    handle_cmd: Optional[Callable] = None
    #: ``pr_store(dev)``: an object with ``load()`` and ``store(version, blob)`` keeping the
    #: device's SPC-3 reservation state where every node exporting the same storage sees it
    #: (a simfs extension; see simfs.scsi.pr_store), or None for LIO's per-node state
    pr_store: Optional[Callable] = None

    def check_config(self, cfgstring: str) -> Optional[str]:
        """None when ``cfgstring`` (the whole dev_config) would open, else the reason."""
        return None

    def open(self, dev: Device) -> None:
        """Open the storage for ``dev``; raise (OSError, HandlerError, ...) to refuse."""
        raise NotImplementedError

    def close(self, dev: Device) -> None:
        """Release what ``open`` took."""

    def read(self, dev: Device, offset: int, length: int) -> bytes:
        """``length`` bytes at byte ``offset`` (a short answer is padded with zeros)."""
        raise NotImplementedError

    def write(self, dev: Device, offset: int, data: bytes) -> None:
        """Store ``data`` at byte ``offset``."""
        raise NotImplementedError


_cache: Optional[dict[str, Handler]] = None


def discover_handlers(refresh: bool = False) -> dict[str, Handler]:
    """Every handler installed, by subtype (entry point group ``simfs.handlers``). simfs's
    own come first, so another package cannot replace one; a handler that fails to load is
    skipped."""
    global _cache
    if _cache is not None and not refresh:
        return _cache
    eps = sorted(entry_points(group="simfs.handlers"),
                 key=lambda ep: (not ep.value.startswith("simfs_plugins."), ep.value))
    found: dict[str, Handler] = {}
    for ep in eps:
        try:
            h = ep.load()
            if isinstance(h, type):
                h = h()
        except Exception:  # noqa: BLE001 - one broken package must not break the others
            continue
        if isinstance(h, Handler) and h.subtype:
            found.setdefault(h.subtype, h)
    _cache = found
    return found
