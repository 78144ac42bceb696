"""SBC-3 block commands (the kernel's target_core_sbc.c). (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .command import Command


def parse(cmd: "Command") -> bool:
    """Claim ``cmd`` if it is an SBC command (see spc.parse for the contract)."""
    return False
