"""APTPL: the reservation metadata file under ``<dbroot>/pr`` (core_scsi3_update_and_write_aptpl
and __core_scsi3_write_aptpl_to_file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from simfs.scsi import sense
from simfs.scsi.pr import (_log, NO_REGS)

if TYPE_CHECKING:
    from simfs.core.device import SeDevice


def aptpl_path(dev: "SeDevice") -> Path:
    return Path(dev.core.dbroot) / "pr" / f"aptpl_{dev.wwn.unit_serial}"


def aptpl_buf(dev: "SeDevice") -> str:
    """core_scsi3_update_aptpl_buf: the metadata text for every registration."""
    out = []
    for n, r in enumerate(dev.pr.registrations):
        isid = f"initiator_sid={r.isid}\n" if r.isid is not None else ""
        if dev.pr.holder is r:
            out.append(f"PR_REG_START: {n}\ninitiator_fabric={r.fabric}\n"
                       f"initiator_node={r.initiator}\n{isid}sa_res_key={r.key}\n"
                       f"res_holder=1\nres_type={r.res_type:02x}\n"
                       f"res_scope={r.res_scope:02x}\nres_all_tg_pt={int(r.all_tg_pt)}\n"
                       f"mapped_lun={r.mapped_lun}\n")
        else:
            out.append(f"PR_REG_START: {n}\ninitiator_fabric={r.fabric}\n"
                       f"initiator_node={r.initiator}\n{isid}sa_res_key={r.key}\n"
                       f"res_holder=0\nres_all_tg_pt={int(r.all_tg_pt)}\n"
                       f"mapped_lun={r.mapped_lun}\n")
        out.append(f"target_fabric={r.fabric}\ntarget_node={r.target_wwn}\ntpgt={r.tpgt}\n"
                   f"port_rtpi={r.rtpi}\ntarget_lun={r.lun}\nPR_REG_END: {n}\n")
    return "".join(out) if out else NO_REGS


def _write_aptpl_file(dev: "SeDevice", text: str) -> bool:
    """__core_scsi3_write_aptpl_to_file: the text and its terminating NUL, mode 0600.
    Written atomically; like the kernel, ``<dbroot>/pr`` must already exist."""
    from simfs.core.core import atomic_write
    path = aptpl_path(dev)
    try:
        atomic_write(path, text.encode() + b"\0", mode=0o600)
    except OSError:
        _log(dev).err(f"filp_open({path}) for APTPL metadata failed")
        return False
    return True


def _update_and_write_aptpl(dev: "SeDevice", aptpl: bool) -> None:
    """core_scsi3_update_and_write_aptpl; raises LOGICAL UNIT COMMUNICATION FAILURE when the
    file cannot be written."""
    log = _log(dev)
    if not aptpl:
        ok = _write_aptpl_file(dev, NO_REGS + "\n")
        dev.pr.aptpl_active = False
        log.debug("SPC-3 PR: Set APTPL Bit Deactivated")
        if not ok:
            raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
        return
    if not _write_aptpl_file(dev, aptpl_buf(dev)):
        log.err("SPC-3 PR: Could not update APTPL")
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    dev.pr.aptpl_active = True
    log.debug("SPC-3 PR: Set APTPL Bit Activated")


def _update_and_write_aptpl_quiet(dev: "SeDevice") -> None:
    """The kernel ignores the result of the APTPL rewrite after RESERVE/RELEASE/PREEMPT."""
    try:
        _update_and_write_aptpl(dev, True)
    except sense.SenseError:
        pass
