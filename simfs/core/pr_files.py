"""``core/<hba>/<dev>/pr/``: the persistent-reservation status files.

They read the device's live reservation state (:class:`PrState`); the SCSI engine
changes that state, these files only show it, in the kernel's words.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.dev_group import DevGroup, dev_of

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

PR_TYPE_NAMES = {
    1: "Write Exclusive Access", 3: "Exclusive Access",
    5: "Write Exclusive Access, Registrants Only", 6: "Exclusive Access, Registrants Only",
    7: "Write Exclusive Access, All Registrants", 8: "Exclusive Access, All Registrants",
}


def pr_type_name(t: int) -> str:
    return PR_TYPE_NAMES.get(t, "Unknown SPC-3 PR Type")


@dataclass
class PrRegistration:
    """One I_T nexus registration (t10_pr_registration)."""

    fabric: str
    initiator: str
    isid: Optional[str]
    key: int
    generation: int
    all_tg_pt: bool = False
    target_wwn: str = ""
    tpgt: int = 0
    rtpi: int = 0
    lun: int = 0
    mapped_lun: int = 0
    aptpl: bool = False

    def node(self) -> str:
        return self.initiator + (f",i,0x{self.isid}" if self.isid else "")


@dataclass
class PrState:
    """t10_pr: registrations, the holder, the generation and APTPL."""

    registrations: list[PrRegistration] = field(default_factory=list)
    holder: Optional[PrRegistration] = None
    res_type: int = 0
    res_scope: int = 0
    generation: int = 0
    aptpl_active: bool = False
    #: A legacy SPC-2 RESERVE: (fabric, initiator) of the holder, or None.
    spc2_holder: Optional[tuple[str, str]] = None
    #: APTPL pre-registrations waiting for their ACL/LUN (res_aptpl_metadata).
    pre_registrations: list[dict] = field(default_factory=list)


def _dev(g: Group) -> "SeDevice":
    return dev_of(g)


def _mode(dev: "SeDevice") -> str:
    if not dev.attrib.emulate_pr:
        return "disabled"
    if dev.passthrough_pgr:
        return "passthrough"
    if dev.pr.spc2_holder is not None:
        return "spc2"
    return "spc3"


def _guard(show):
    """Only the old (se_subsystem_dev era) kernels print nothing for these files unless
    res_type is SPC3_PERSISTENT_RESERVATIONS; modern kernels (target_pr_*_show) print
    the SPC-3 state whatever emulate_pr or PGR passthrough say."""
    def wrapped(g: Group) -> str:
        dev = _dev(g)
        if dev.legacy and _mode(dev) in ("disabled", "passthrough"):
            return ""
        return show(dev)
    return wrapped


NO_HOLDER = "No SPC-3 Reservation holder\n"


def _res_holder(g: Group) -> str:
    dev = _dev(g)
    mode = _mode(dev)
    if mode == "disabled":
        return "SPC_RESERVATIONS_DISABLED\n"
    if mode == "passthrough":
        return "Passthrough\n"
    if mode == "spc2":
        fabric, initiator = dev.pr.spc2_holder  # type: ignore[misc]
        return f"SPC-2 Reservation: {fabric} Initiator: {initiator}\n"
    h = dev.pr.holder
    if h is None:
        return NO_HOLDER
    return f"SPC-3 Reservation: {h.fabric} Initiator: {h.node()}\n"


def _all_tgt_pts(dev: "SeDevice") -> str:
    h = dev.pr.holder
    if h is None:
        return NO_HOLDER
    if h.all_tg_pt:
        return "SPC-3 Reservation: All Target Ports registration\n"
    return "SPC-3 Reservation: Single Target Port registration\n"


def _generation(dev: "SeDevice") -> str:
    return f"0x{dev.pr.generation:08x}\n"


def _holder_tg_port(dev: "SeDevice") -> str:
    h = dev.pr.holder
    if h is None:
        return NO_HOLDER
    return (f"SPC-3 Reservation: {h.fabric} Target Node Endpoint: {h.target_wwn}\n"
            f"SPC-3 Reservation: Relative Port Identifier Tag: {h.rtpi} {h.fabric} Portal "
            f"Group Tag: {h.tpgt} {h.fabric} Logical Unit: {h.lun}\n")


def _registered(dev: "SeDevice") -> str:
    out = "SPC-3 PR Registrations:\n"
    regs = dev.pr.registrations
    if not regs:
        return out + "None\n"
    for r in regs:
        out += f"{r.fabric} Node: {r.node()} Key: 0x{r.key:016x} PRgen: 0x{r.generation:08x}\n"
    return out


def _pr_type(dev: "SeDevice") -> str:
    if dev.pr.holder is None:
        return NO_HOLDER
    return f"SPC-3 Reservation Type: {pr_type_name(dev.pr.res_type)}\n"


def _res_type(g: Group) -> str:
    return {"disabled": "SPC_RESERVATIONS_DISABLED\n", "passthrough": "SPC_PASSTHROUGH\n",
            "spc2": "SPC2_RESERVATIONS\n",
            "spc3": "SPC3_PERSISTENT_RESERVATIONS\n"}[_mode(_dev(g))]


def _aptpl_active(g: Group) -> str:
    dev = _dev(g)
    if _mode(dev) in ("disabled", "passthrough"):
        return ""
    return f"APTPL Bit Status: {'Activated' if dev.pr.aptpl_active else 'Disabled'}\n"


def _aptpl_metadata_show(g: Group) -> str:
    if _mode(_dev(g)) in ("disabled", "passthrough"):
        return ""
    return "Ready to process PR APTPL metadata..\n"


def _aptpl_metadata_store(g: Group, buf: bytes) -> None:
    from simfs.core.aptpl import parse_aptpl_metadata  # the PR engine's parser
    dev = _dev(g)
    if _mode(dev) != "spc3":
        return
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, "Unable to process APTPL metadata while active "
                            "fabric exports exist")
    dev.pr.pre_registrations.append(parse_aptpl_metadata(buf, dev.log))


def _legacy(show):
    def wrapped(g: Group) -> str:
        dev = _dev(g)
        if dev.legacy and not dev.configured:
            raise ConfigfsError(errno.ENODEV, f"Target_Core_ConfigFS: {dev.path()} is not "
                                "enabled yet (no se_device)")
        return show(g)
    return wrapped


PR_ATTRS = (
    Attribute("res_holder", _legacy(_res_holder)),
    Attribute("res_pr_all_tgt_pts", _legacy(_guard(_all_tgt_pts))),
    Attribute("res_pr_generation", _legacy(_guard(_generation))),
    Attribute("res_pr_holder_tg_port", _legacy(_guard(_holder_tg_port))),
    Attribute("res_pr_registered_i_pts", _legacy(_guard(_registered))),
    Attribute("res_pr_type", _legacy(_guard(_pr_type))),
    Attribute("res_type", _legacy(_res_type)),
    Attribute("res_aptpl_active", _aptpl_active),
    Attribute("res_aptpl_metadata", _aptpl_metadata_show, _aptpl_metadata_store),
)

V3_PR_ATTRS = PR_ATTRS[:7]


class PrGroup(DevGroup):
    """``<dev>/pr``."""

    __slots__ = ()

    def __init__(self, dev: "SeDevice"):
        super().__init__("pr", dev)

    def attribute_table(self):
        return V3_PR_ATTRS if self.dev.legacy else PR_ATTRS
