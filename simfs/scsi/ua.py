"""Unit attention conditions, queued per I_T nexus (the kernel's target_core_ua.c).

Each nexus (initiator + ISID + the LUN it reached) has an ordered queue of (ASC, ASCQ).
``emulate_ua_intlck_ctrl`` decides what reporting does: 0 clears every queued UA and
reports the first; 1 and 2 report the first and keep it (REQUEST SENSE still clears);
2 also turns a RESERVATION CONFLICT into a 2Ch/09h UA.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Iterable, Optional

from simfs.scsi import status as S

if TYPE_CHECKING:
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


class UnitAttentions:
    """The UA queues of one device, one per initiator and LUN (see :func:`_shared`)."""

    def __init__(self) -> None:
        self._queues: dict[tuple, list[tuple[int, int]]] = defaultdict(list)

    def allocate(self, nexus_key: tuple, asc: int, ascq: int) -> None:
        """core_scsi3_ua_allocate: the new UA is placed by the queue's head alone.

        The kernel compares with the first queued UA only: the same UA there is not queued
        again; behind a 29h head a higher 29h ASCQ goes first, anything else last; behind a
        2Ah head a 29h (or, as the kernel compares the new ASCQ with the head's ASC, an
        ASCQ above 2Ah) goes first; behind any other head (3Fh ...) everything goes last.
        """
        q = self._queues[_shared(nexus_key)]
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

    def allocate_many(self, keys: Iterable[tuple], asc: int, ascq: int) -> None:
        """One allocation per queue, however many sessions of an initiator ``keys`` hold."""
        for k in dict.fromkeys(_shared(k) for k in keys):
            self.allocate(k, asc, ascq)

    def pending(self, nexus_key: tuple) -> list[tuple[int, int]]:
        return list(self._queues.get(_shared(nexus_key), ()))

    def for_check_condition(self, nexus_key: tuple, intlck: int) -> Optional[tuple[int, int]]:
        """The UA to report on a blocked command (core_scsi3_ua_for_check_condition)."""
        q = self._queues.get(_shared(nexus_key))
        if not q:
            return None
        head = q[0]
        if intlck == INTLCK_CLEAR:
            q.clear()
        return head

    def clear_for_request_sense(self, nexus_key: tuple) -> Optional[tuple[int, int]]:
        """REQUEST SENSE reports the first UA and clears them all."""
        q = self._queues.get(_shared(nexus_key))
        if not q:
            return None
        head = q[0]
        q.clear()
        return head

    def drop(self, nexus_key: tuple) -> None:
        self._queues.pop(_shared(nexus_key), None)


def check(cmd: "Command", uas: UnitAttentions) -> Optional[tuple[int, int]]:
    """target_scsi3_ua_check: the UA that blocks ``cmd``, or None."""
    if cmd.opcode in UA_EXEMPT:
        return None
    return uas.for_check_condition(cmd.nexus.key(), cmd.dev.attrib.emulate_ua_intlck_ctrl)


def nexus_key(nexus: "Nexus") -> tuple:
    return nexus.key()
