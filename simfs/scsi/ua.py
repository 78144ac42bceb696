"""Unit attention conditions (the kernel's target_core_ua.c).

Each mapping of a LUN to a node ACL (the core's ``DevEntry``, the kernel's se_dev_entry)
has an ordered queue of (ASC, ASCQ), ``ua_list``, which every session of the initiator
shares; this module places, reports and clears them.
``emulate_ua_intlck_ctrl`` decides what reporting does: 0 clears every queued UA and
reports the first; 1 and 2 report the first and keep it (REQUEST SENSE still clears);
2 also turns a RESERVATION CONFLICT into a 2Ch/09h UA.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Iterable, Optional, Union

from simfs.scsi import status as S

if TYPE_CHECKING:
    from simfs.core.acl import DevEntry
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command, Nexus

# ASC/ASCQ pairs the core queues
POWER_ON_RESET = (0x29, 0x00)
BUS_DEVICE_RESET = (0x29, 0x03)
I_T_NEXUS_LOSS = (0x29, 0x07)
PARAMETERS_CHANGED = (0x2A, 0x00)
MODE_PARAMETERS_CHANGED = (0x2A, 0x01)
RESERVATIONS_PREEMPTED = (0x2A, 0x03)
RESERVATIONS_RELEASED = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
ASYMMETRIC_ACCESS_STATE_CHANGED = (0x2A, 0x06)
CAPACITY_DATA_HAS_CHANGED = (0x2A, 0x09)
PREVIOUS_RESERVATION_CONFLICT_STATUS = (0x2C, 0x09)
INQUIRY_DATA_HAS_CHANGED = (0x3F, 0x03)
REPORTED_LUNS_DATA_HAS_CHANGED = (0x3F, 0x0E)

#: commands a pending UA never blocks (target_scsi3_ua_check)
UA_EXEMPT = frozenset({S.INQUIRY, S.REPORT_LUNS, S.REQUEST_SENSE})

INTLCK_CLEAR, INTLCK_NO_CLEAR, INTLCK_ESTABLISH_UA = 0, 1, 2


def _shared(nexus_key: tuple) -> tuple:
    """The queue a nexus key names: the kernel keeps UAs per node ACL and mapped LUN
    (se_dev_entry ua_list), so every session (ISID) of an initiator shares one."""
    if len(nexus_key) == 3:
        return (nexus_key[0], None, nexus_key[2])
    return nexus_key


def allocate(q: list[tuple[int, int]], asc: int, ascq: int) -> None:
    """core_scsi3_ua_allocate: place a new UA in queue ``q`` by the queue's head alone.

    The kernel compares with the first queued UA only: the same UA there is not queued
    again; behind a 29h head a higher 29h ASCQ goes first, anything else last; behind a
    2Ah head a 29h (or, as the kernel compares the new ASCQ with the head's ASC, an
    ASCQ above 2Ah) goes first; behind any other head (3Fh ...) everything goes last.
    """
    if not q:
        q.append((asc, ascq))
        return
    head = q[0]
    if head == (asc, ascq):
        return
    if head[0] == 0x29:
        first = asc == 0x29 and ascq > head[1]
    elif head[0] == 0x2A:
        first = asc == 0x29 or ascq > head[0]
    else:
        first = False
    if first:
        q.insert(0, (asc, ascq))
    else:
        q.append((asc, ascq))


#: who a UA is for: a mapping (the core's DevEntry), an I_T nexus, or a nexus key
#: (``Nexus.key()``)
Where = Union["DevEntry", "Nexus", tuple]


class UnitAttentions:
    """The UA queues of one device.

    A queue belongs to a mapping, as the kernel's does: the ``ua_list`` of the core's
    :class:`~simfs.core.acl.DevEntry` for the node ACL and mapped LUN a nexus came through.
    A nexus made without a node ACL (the ``simfs scsi`` CLI, tests) has no mapping; its
    queue is kept here, one per initiator and LUN (see :func:`_shared`), unless a node ACL
    of the same name maps that LUN, whose queue it then shares.
    """

    def __init__(self, dev: Optional["SeDevice"] = None) -> None:
        # weak: the engine's state of a device must not keep the device alive
        self._dev = weakref.ref(dev) if dev is not None else None
        self._queues: dict[tuple, list[tuple[int, int]]] = {}

    # -- which queue ------------------------------------------------------------------------
    def _port_of(self, port_id: int):
        dev = self._dev() if self._dev is not None else None
        for lun in list(getattr(dev, "luns", ())):
            if id(lun) == port_id:
                return lun
        return None

    @staticmethod
    def _deve(initiator: str, port, acl=None, mapped_lun: Optional[int] = None):
        """The mapping an initiator reaches ``port`` through (transport_lookup_cmd_lun)."""
        if acl is not None:
            deve = acl.deves.get(port.lun if mapped_lun is None else mapped_lun)
            if deve is not None and deve.lun is port:
                return deve
        for deve in getattr(port, "deves", ()):
            if deve.acl.name == initiator:
                return deve
        return None

    def _queue(self, where: Where, make: bool) -> Optional[list[tuple[int, int]]]:
        if isinstance(where, tuple):
            port = self._port_of(where[2]) if len(where) == 3 else None
            deve = self._deve(where[0], port) if port is not None else None
            if deve is not None:
                return deve.ua_list
            key = _shared(where)
        elif hasattr(where, "ua_list"):
            return where.ua_list  # a mapping
        else:
            deve = self._deve(where.initiator, where.port, where.acl, where.mapped_lun)
            if deve is not None:
                return deve.ua_list
            key = _shared(where.key())
        if make:
            return self._queues.setdefault(key, [])
        return self._queues.get(key)

    def _made(self, where: Where) -> list[tuple[int, int]]:
        q = self._queue(where, make=True)
        assert q is not None  # make=True always finds or makes one
        return q

    # -- the queues ---------------------------------------------------------------------------
    def allocate(self, where: Where, asc: int, ascq: int) -> None:
        """core_scsi3_ua_allocate on the queue of ``where`` (see :func:`allocate`)."""
        allocate(self._made(where), asc, ascq)

    def allocate_many(self, wheres: Iterable[Where], asc: int, ascq: int) -> None:
        """One allocation per queue, however many sessions of an initiator ``wheres`` hold."""
        queues = {id(q): q for q in map(self._made, wheres)}
        for q in queues.values():
            allocate(q, asc, ascq)

    def pending(self, where: Where) -> list[tuple[int, int]]:
        return list(self._queue(where, make=False) or ())

    def has_pending(self, where: Where) -> bool:
        """Whether any UA is queued for ``where`` (without copying the queue)."""
        return bool(self._queue(where, make=False))

    def for_check_condition(self, where: Where, intlck: int) -> Optional[tuple[int, int]]:
        """The UA to report on a blocked command (core_scsi3_ua_for_check_condition)."""
        q = self._queue(where, make=False)
        if not q:
            return None
        head = q[0]
        if intlck == INTLCK_CLEAR:
            q.clear()
        return head

    def clear_for_request_sense(self, where: Where) -> Optional[tuple[int, int]]:
        """REQUEST SENSE reports the first UA and clears them all."""
        q = self._queue(where, make=False)
        if not q:
            return None
        head = q[0]
        q.clear()
        return head

    def drop(self, where: Where) -> None:
        q = self._queue(where, make=False)
        if q is not None:
            q.clear()


def check(cmd: "Command", uas: UnitAttentions) -> Optional[tuple[int, int]]:
    """target_scsi3_ua_check: the UA that blocks ``cmd``, or None."""
    if cmd.opcode in UA_EXEMPT:
        return None
    return uas.for_check_condition(cmd.nexus, cmd.dev.attrib.emulate_ua_intlck_ctrl)
