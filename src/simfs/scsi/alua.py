"""ALUA in the command path (the kernel's target_core_alua.c). (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .command import Command


def state_check(cmd: "Command") -> None:
    """target_alua_state_check: raise SenseError when the port's access state forbids cmd."""


def parse_report_target_port_groups(cmd: "Command") -> None:
    from . import sense
    raise sense.UNSUPPORTED_SCSI_OPCODE()


def parse_set_target_port_groups(cmd: "Command") -> None:
    from . import sense
    raise sense.UNSUPPORTED_SCSI_OPCODE()
