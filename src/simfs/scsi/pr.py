"""Persistent reservations (SPC-4 5.9, the kernel's target_core_pr.c). (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .command import Command


def check_reservation(cmd: "Command") -> bool:
    """True when ``cmd`` must end in RESERVATION CONFLICT (target_check_reservation)."""
    return False


def parse_pr_in(cmd: "Command") -> None:
    """PERSISTENT RESERVE IN: set ``cmd.execute`` or raise SenseError."""
    from . import sense
    raise sense.UNSUPPORTED_SCSI_OPCODE()


def parse_pr_out(cmd: "Command") -> None:
    """PERSISTENT RESERVE OUT: set ``cmd.execute`` or raise SenseError."""
    from . import sense
    raise sense.UNSUPPORTED_SCSI_OPCODE()
