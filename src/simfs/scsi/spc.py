"""SPC-4 commands every device type answers (the kernel's target_core_spc.c). (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .command import Command


def parse(cmd: "Command") -> bool:
    """Claim ``cmd`` if it is an SPC command: set cmd.execute/direction/alloc_len, or raise
    SenseError for a malformed CDB. Returns False for opcodes it does not know."""
    return False
