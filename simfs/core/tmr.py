"""Task management every fabric shares (the kernel's target_core_tmr.c and target_tmr_work).

A fabric finds the LUN a TMF names through the session's node ACL (:func:`lookup_deve`)
and calls :func:`lun_reset`; PERSISTENT RESERVE OUT's PREEMPT AND ABORT calls
:func:`core_tmr_lun_reset` with ``preempt=True``. The parts that touch engine state (the
SPC-2 reservation, unit attentions) go through the hooks the SCSI engine sets in
``core.events``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from simfs.core.acl import DevEntry, NodeAcl
    from simfs.core.device import SeDevice

# tcm_tmreq_table (include/target/target_core_base.h)
TMR_ABORT_TASK = 1
TMR_ABORT_TASK_SET = 2
TMR_CLEAR_ACA = 3
TMR_CLEAR_TASK_SET = 4
TMR_LUN_RESET = 5
TMR_TARGET_WARM_RESET = 6
TMR_TARGET_COLD_RESET = 7

# tcm_tmrsp_table
TMR_FUNCTION_FAILED = 0
TMR_FUNCTION_COMPLETE = 1
TMR_TASK_DOES_NOT_EXIST = 2
TMR_LUN_DOES_NOT_EXIST = 3
TMR_TASK_MGMT_FUNCTION_NOT_SUPPORTED = 4
TMR_FUNCTION_REJECTED = 5

#: ASC/ASCQ 29h/03h: BUS DEVICE RESET FUNCTION OCCURRED
BUS_DEVICE_RESET = (0x29, 0x03)


def lookup_deve(acl: Optional["NodeAcl"], mapped_lun: int) -> Optional["DevEntry"]:
    """transport_lookup_tmr_lun: the ACL's mapping of ``mapped_lun`` that has a device."""
    if acl is None:
        return None
    deve = acl.deves.get(mapped_lun)
    if deve is None or deve.lun.dev is None:
        return None
    return deve


def core_tmr_lun_reset(dev: "SeDevice", preempt: bool = False) -> None:
    """core_tmr_lun_reset. simfs runs commands to completion, so there is no task set to
    drain; a LOGICAL UNIT RESET (not a preempt) also drops an SPC-2 reservation."""
    kind = "Preempt" if preempt else "TMR"
    log = dev.core.log
    log.debug(f"LUN_RESET: {kind} starting for [{dev.backend.name}], tas: "
              f"{dev.attrib.emulate_tas}")
    if not preempt:
        dev.core.events.release_spc2_reservation(dev)
    dev.num_resets += 1
    log.debug(f"LUN_RESET: {kind} for [{dev.backend.name}] Complete")


def lun_reset(dev: "SeDevice") -> int:
    """target_tmr_work's LOGICAL UNIT RESET: the reset, then 29h/03h for every I_T nexus
    that reaches the device (target_dev_ua_allocate). Returns the TMF response."""
    core_tmr_lun_reset(dev)
    dev.core.events.dev_ua_allocate(dev, *BUS_DEVICE_RESET)
    return TMR_FUNCTION_COMPLETE
