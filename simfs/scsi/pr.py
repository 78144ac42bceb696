"""Persistent reservations (SPC-4 5.9) and SPC-2 RESERVE/RELEASE: the kernel's target_core_pr.c.

This module holds the reservation state machine: registrations, the reservation holder, the
reservation check every command meets, SPC-2 RESERVE/RELEASE and APTPL pre-registrations.
The commands are in :mod:`.pr_out` (PERSISTENT RESERVE OUT) and :mod:`.pr_in` (PERSISTENT
RESERVE IN); the APTPL file in :mod:`.aptpl`.

The device's reservation state lives in ``dev.pr`` (:class:`~simfs.core.pr_files.PrState`),
which the ``pr/`` configfs files show; this module changes it the way the modern kernel does,
quirks included (they are behaviour an initiator can see):

* the PRgeneration counter is post-incremented (``core_scsi3_pr_generation``): a new
  registration records the value *before* the increment;
* changing a key (REGISTER with a non-zero SERVICE ACTION KEY) changes only the nexus the
  command came on, not its ALL_TG_PT siblings; unregistering frees the siblings whose key
  equals the RESERVATION KEY field of the command (so REGISTER AND IGNORE EXISTING KEY,
  whose key is taken as 0, frees none of them);
* ALL_TG_PT sibling registrations carry no ISID, so with ``enforce_pr_isids=1`` an iSCSI
  nexus never "locates" them (they still make their ACL/LUN count as registered);
* "registered" for the access checks (core_scsi3_pr_seq_non_holder) is per initiator ACL
  and mapped LUN (the se_dev_entry DEF_PR_REG_ACTIVE bit): any ISID of the ACL counts,
  and freeing one of two registrations of the ACL clears it;
* unit attentions go to the ACL's mapped LUN (target_ua_allocate_lun): every session of
  that initiator on that target portal group and LUN, possibly the caller's own;
* RESERVE, RELEASE, CLEAR and REGISTER AND MOVE from an unregistered nexus end in
  LOGICAL UNIT COMMUNICATION FAILURE (when no reservation makes them conflict first);
* REGISTER AND MOVE with no reservation is INVALID FIELD IN CDB; it sets the *source*
  registration's scope to the reservation type and keeps an already registered
  destination's key;
* a REGISTER with APTPL=0 rewrites the APTPL file to "No Registrations or Reservations".

Model notes. The kernel's initiator ACL (se_node_acl) is the pair (target portal group,
initiator name); here a TPG is (fabric, wwn, tpgt) of a :class:`TargetPort`. Until fabrics
bring ACLs and mapped LUNs, an initiator "has an ACL with the LUN mapped" on a port once a
command from it arrived through that port (SPEC_I_PT and REGISTER AND MOVE resolve their
TransportIDs that way), ALL_TG_PT registers the initiator on every other TPG of the same
fabric exporting the device, and APTPL pre-registrations become registrations when their
initiator first sends a command through the matching port (or when the fabric layer calls
:func:`check_aptpl_registration`, the kernel's core_scsi3_check_aptpl_registration).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from simfs.core.t10 import spc as t10
from simfs.scsi import pr_store, sense, state
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT, Nexus, TargetPort
from simfs.scsi.sense import ReservationConflict
from simfs.core.pr_files import PrRegistration, pr_type_name

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command

# PERSISTENT RESERVE OUT service actions
PRO_REGISTER, PRO_RESERVE, PRO_RELEASE, PRO_CLEAR = 0, 1, 2, 3
PRO_PREEMPT, PRO_PREEMPT_AND_ABORT, PRO_REGISTER_AND_IGNORE_EXISTING_KEY = 4, 5, 6
PRO_REGISTER_AND_MOVE = 7
# PERSISTENT RESERVE IN service actions
PRI_READ_KEYS, PRI_READ_RESERVATION, PRI_REPORT_CAPABILITIES, PRI_READ_FULL_STATUS = 0, 1, 2, 3
# types
WE, EA = t10.PR_TYPE_WRITE_EXCLUSIVE, t10.PR_TYPE_EXCLUSIVE_ACCESS
WE_RO, EA_RO = t10.PR_TYPE_WRITE_EXCLUSIVE_REGONLY, t10.PR_TYPE_EXCLUSIVE_ACCESS_REGONLY
WE_AR, EA_AR = t10.PR_TYPE_WRITE_EXCLUSIVE_ALLREG, t10.PR_TYPE_EXCLUSIVE_ACCESS_ALLREG
PR_TYPES = (WE, EA, WE_RO, EA_RO, WE_AR, EA_AR)
REG_ONLY = (WE_RO, EA_RO)
ALL_REG = (WE_AR, EA_AR)
LU_SCOPE = 0
# register_type
REGISTER, REGISTER_AND_IGNORE_EXISTING_KEY, REGISTER_AND_MOVE = 0, 1, 2
_REG_SUFFIX = {REGISTER: "", REGISTER_AND_IGNORE_EXISTING_KEY: "_AND_IGNORE_EXISTING_KEY",
               REGISTER_AND_MOVE: "_AND_MOVE"}

ASCQ_RESERVATIONS_PREEMPTED = 0x03
ASCQ_RESERVATIONS_RELEASED = 0x04
ASCQ_REGISTRATIONS_PREEMPTED = 0x05

PR_REG_ISID_LEN = 16
NO_REGS = "No Registrations or Reservations"

_DIRECTION = {DATA_OUT: "DMA_TO_DEVICE", DATA_IN: "DMA_FROM_DEVICE", DATA_NONE: "DMA_NONE"}


@dataclass(eq=False)
class Registration(PrRegistration):
    """t10_pr_registration: what the configfs files show plus the engine's own fields."""

    #: SCSI protocol identifier of the registration's target port (TransportID format)
    proto_id: int = S.PROTO_SAS
    #: pr_res_holder / pr_res_type / pr_res_scope of this registration
    res_holder: bool = False
    res_type: int = 0
    res_scope: int = 0
    #: the I_T nexus that registered (or a stand-in for ALL_TG_PT/SPEC_I_PT/APTPL ones)
    nexus: Optional[Nexus] = field(default=None, repr=False)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def acl(self) -> tuple:
        """The se_node_acl: (fabric, target wwn, tpgt, initiator name)."""
        return (self.fabric, self.target_wwn, self.tpgt, self.initiator)


class PrRuntime:
    """Per-device engine state that configfs does not show."""

    def __init__(self) -> None:
        #: every I_T nexus that sent a command to the device: stands in for the ACLs'
        #: sessions (unit attentions, SPEC_I_PT and REGISTER AND MOVE destinations)
        self.seen: dict[tuple, Nexus] = {}
        #: (acl, mapped_lun) with DEF_PR_REG_ACTIVE set on their se_dev_entry
        self.reg_active: set[tuple] = set()
        #: SPC-2 reservation: holder session and the ISID flags
        self.spc2: Optional[Nexus] = None
        self.spc2_bin_isid = 0
        self.spc2_with_isid = False
        #: (store, version, blob): the shared PR state newest loaded for a command (pr_store)
        self.loaded: Optional[tuple] = None
        self.store_lock = threading.Lock()


def runtime(dev: "SeDevice") -> PrRuntime:
    """The device's reservation state the tree does not show (made on first use)."""
    st = state.of(dev)
    if st.pr is None:
        st.pr = PrRuntime()
    return st.pr


# -- small helpers ----------------------------------------------------------------------------
def _acl(nexus: Nexus) -> tuple:
    p = nexus.port
    return (p.fabric, p.wwn, p.tpgt, nexus.initiator)


def _tpg(port: TargetPort) -> tuple:
    return (port.fabric, port.wwn, port.tpgt)


def _sid_fabric(port: TargetPort) -> bool:
    """The fabric has sess_get_initiator_sid (iSCSI): its initiator ports carry an ISID."""
    return port.proto_id == S.PROTO_ISCSI


def _isid(nexus: Nexus) -> Optional[str]:
    if _sid_fabric(nexus.port) and nexus.isid is not None:
        return nexus.isid[:PR_REG_ISID_LEN - 1]
    return None


def _bin_isid(nexus: Nexus) -> int:
    """se_session->sess_bin_isid (0 for fabrics without ISIDs)."""
    isid = _isid(nexus)
    try:
        return int(isid, 16) if isid else 0
    except ValueError:
        return 0


def _ibuf(reg: Registration) -> str:
    """core_pr_dump_initiator_port."""
    return f",i,0x{reg.isid}" if reg.isid is not None else ""


def _log(dev: "SeDevice"):
    return dev.log


def _gen(dev: "SeDevice") -> int:
    """core_scsi3_pr_generation: returns the old value, then increments (32-bit wrap)."""
    old = dev.pr.generation
    dev.pr.generation = (old + 1) & 0xFFFFFFFF
    return old


def _be64(b: bytes) -> int:
    return int.from_bytes(b[:8], "big")


def note_nexus(dev: "SeDevice", nexus: Nexus) -> None:
    """Remember an I_T nexus (its "ACL" now has the LUN mapped) and activate any APTPL
    pre-registration waiting for it."""
    rt = runtime(dev)
    key = nexus.key()
    if key in rt.seen:
        return
    rt.seen[key] = nexus
    if dev.pr.pre_registrations:
        check_aptpl_registration(dev, nexus.port, nexus.initiator, nexus.lun)


def _ua_lun(dev: "SeDevice", reg: Registration, ascq: int) -> None:
    """target_ua_allocate_lun(pr_reg_nacl, pr_res_mapped_lun, 0x2A, ascq)."""
    from simfs.scsi.engine import scsi_state  # the engine imports this module
    rt = runtime(dev)
    keys = [k for k, n in rt.seen.items() if _acl(n) == reg.acl and n.lun == reg.mapped_lun]
    if reg.nexus is not None and reg.nexus.key() not in keys:
        keys.append(reg.nexus.key())
    scsi_state(dev).ua.allocate_many(keys, 0x2A, ascq)


def _set_holder(dev: "SeDevice", reg: Registration, pr_type: int, scope: int) -> None:
    reg.res_holder, reg.res_type, reg.res_scope = True, pr_type, scope
    dev.pr.holder, dev.pr.res_type, dev.pr.res_scope = reg, pr_type, scope


def _clear_holder(dev: "SeDevice") -> None:
    h = dev.pr.holder
    if h is not None:
        h.res_type = h.res_scope = 0
        h.res_holder = False
    dev.pr.holder, dev.pr.res_type, dev.pr.res_scope = None, 0, 0


def _is_holder(holder: Optional[Registration], reg: Registration) -> bool:
    """is_reservation_holder: the holder, or any registrant of an All Registrants type."""
    return holder is not None and (holder is reg or holder.res_type in ALL_REG)


def _remove(dev: "SeDevice", reg: Registration) -> bool:
    regs = dev.pr.registrations
    for i, r in enumerate(regs):
        if r is reg:
            del regs[i]
            return True
    return False


# -- registrations ------------------------------------------------------------------------------
def _new_reg(dev: "SeDevice", initiator: str, port: TargetPort, mapped_lun: int,
             isid: Optional[str], key: int, all_tg_pt: bool, aptpl: bool) -> Registration:
    """__core_scsi3_do_alloc_registration."""
    return Registration(
        fabric=port.fabric, initiator=initiator, isid=isid, key=key, generation=0,
        all_tg_pt=bool(all_tg_pt), target_wwn=port.wwn, tpgt=port.tpgt, rtpi=port.rtpi,
        lun=port.lun, mapped_lun=mapped_lun, aptpl=bool(aptpl), proto_id=port.proto_id,
        nexus=Nexus(initiator=initiator, port=port, isid=isid, mapped_lun=mapped_lun))


def _alloc_registration(dev: "SeDevice", initiator: str, port: TargetPort, mapped_lun: int,
                        isid: Optional[str], key: int, all_tg_pt: bool,
                        aptpl: bool) -> tuple[Registration, list[Registration]]:
    """__core_scsi3_alloc_registration: the registration, and for ALL_TG_PT=1 one more for
    the same initiator name on every other TPG of the same fabric exporting the device
    (without an ISID)."""
    reg = _new_reg(dev, initiator, port, mapped_lun, isid, key, all_tg_pt, aptpl)
    atp: list[Registration] = []
    if all_tg_pt:
        for p in dev.luns:
            if _tpg(p) == _tpg(port) or p.fabric != port.fabric:
                continue
            atp.append(_new_reg(dev, initiator, p, p.lun, None, key, all_tg_pt, aptpl))
    return reg, atp


def _dump_registration(dev: "SeDevice", reg: Registration, register_type: int) -> None:
    f, log = reg.fabric, _log(dev)
    log.debug(f"SPC-3 PR [{f}] Service Action: REGISTER{_REG_SUFFIX[register_type]} "
              f"Initiator Node: {reg.initiator}{_ibuf(reg)}")
    log.debug(f"SPC-3 PR [{f}] registration on Target Port: {reg.target_wwn},0x{reg.tpgt:04x}")
    log.debug(f"SPC-3 PR [{f}] for {'ALL' if reg.all_tg_pt else 'SINGLE'} TCM Subsystem "
              f"{dev.backend.name} Object Target Port(s)")
    log.debug(f"SPC-3 PR [{f}] SA Res Key: 0x{reg.key:016x} PRgeneration: "
              f"0x{reg.generation:08x}  APTPL: {int(reg.aptpl)}")


def _add_registration(dev: "SeDevice", reg: Registration, register_type: int,
                      register_move: bool = False, atp: tuple = ()) -> None:
    """__core_scsi3_add_registration."""
    rt = runtime(dev)
    reg.generation = _gen(dev)
    dev.pr.registrations.append(reg)
    _dump_registration(dev, reg, register_type)
    rt.reg_active.add((reg.acl, reg.mapped_lun))
    if not reg.all_tg_pt or register_move:
        return
    for r in atp:
        r.generation = _gen(dev)
        dev.pr.registrations.append(r)
        _dump_registration(dev, r, register_type)
        rt.reg_active.add((r.acl, r.mapped_lun))


def _free_registration(dev: "SeDevice", reg: Registration) -> None:
    """__core_scsi3_free_registration."""
    _remove(dev, reg)
    runtime(dev).reg_active.discard((reg.acl, reg.mapped_lun))
    f, log = reg.fabric, _log(dev)
    log.debug(f"SPC-3 PR [{f}] Service Action: UNREGISTER Initiator Node: "
              f"{reg.initiator}{_ibuf(reg)}")
    log.debug(f"SPC-3 PR [{f}] for {'ALL' if reg.all_tg_pt else 'SINGLE'} TCM Subsystem "
              f"{dev.backend.name} Object Target Port(s)")
    log.debug(f"SPC-3 PR [{f}] SA Res Key: 0x{reg.key:016x} PRgeneration: "
              f"0x{reg.generation:08x}")


def _locate(dev: "SeDevice", acl: tuple, isid: Optional[str],
            sid_fabric: bool) -> Optional[Registration]:
    """__core_scsi3_locate_pr_reg."""
    for r in dev.pr.registrations:
        if r.acl != acl:
            continue
        if r.isid is None:
            # enforce_pr_isids: an iSCSI session (which always has an ISID in the kernel)
            # does not match a registration made without one
            if sid_fabric and dev.attrib.enforce_pr_isids and isid is not None:
                continue
            return r
        if isid is None or isid != r.isid:
            continue
        return r
    return None


def _caller_registration(cmd: "Command", sa: str) -> Registration:
    """The registration of the I_T nexus that sent ``cmd``; an unregistered caller of
    ``sa`` gets LOGICAL UNIT COMMUNICATION FAILURE, as in the kernel."""
    reg = locate(cmd.dev, cmd.nexus)
    if reg is None:
        cmd.dev.log.err(f"SPC-3 PR: Unable to locate PR_REGISTERED *pr_reg for {sa}")
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    return reg


def locate(dev: "SeDevice", nexus: Nexus) -> Optional[Registration]:
    """core_scsi3_locate_pr_reg: the registration of this I_T nexus."""
    return _locate(dev, _acl(nexus), _isid(nexus), _sid_fabric(nexus.port))


def _complete_pro_release(dev: "SeDevice", nacl: tuple[str, str], reg: Registration,
                          explicit: bool, unreg: bool) -> None:
    """__core_scsi3_complete_pro_release; ``nacl`` is (fabric, initiator) of the ACL the
    kernel passes (it names the log lines)."""
    fabric, iname = nacl
    pr_res_type = pr_res_scope = 0
    if dev.pr.holder is not None:
        pr_res_type, pr_res_scope = dev.pr.holder.res_type, dev.pr.holder.res_scope
        _clear_holder(dev)
    if unreg:
        _remove(dev, reg)
        # an All Registrants reservation passes to the next registration
        if dev.pr.registrations and pr_res_type in ALL_REG:
            _set_holder(dev, dev.pr.registrations[0], pr_res_type, pr_res_scope)
    log = _log(dev)
    if dev.pr.holder is None:
        log.debug(f"SPC-3 PR [{fabric}] Service Action: "
                  f"{'explicit' if explicit else 'implicit'} RELEASE cleared reservation "
                  f"holder TYPE: {pr_type_name(pr_res_type)} ALL_TG_PT: {int(reg.all_tg_pt)}")
    log.debug(f"SPC-3 PR [{fabric}] RELEASE Node: {iname}{_ibuf(reg)}")
    reg.res_holder, reg.res_type, reg.res_scope = False, 0, 0


# -- APTPL ----------------------------------------------------------------------------------------
def check_aptpl_registration(dev: "SeDevice", port: TargetPort, initiator: str,
                             mapped_lun: int) -> None:
    """core_scsi3_check_aptpl_registration: an ACL mapped LUN ``mapped_lun`` appeared for
    ``initiator`` on ``port``: the matching APTPL pre-registrations become registrations
    (and the reservation)."""
    if runtime(dev).spc2 is not None:
        return
    for pre in list(dev.pr.pre_registrations):
        if not (pre.get("initiator_node") == initiator and pre["mapped_lun"] == mapped_lun
                and pre.get("target_node") == port.wwn and pre["tpgt"] == port.tpgt
                and pre["target_lun"] == port.lun):
            continue
        dev.pr.pre_registrations.remove(pre)
        isid = pre.get("initiator_sid")
        reg = _new_reg(dev, initiator, port, mapped_lun,
                       isid[:PR_REG_ISID_LEN - 1] if isid is not None else None,
                       pre["sa_res_key"], bool(pre["res_all_tg_pt"]), True)
        reg.res_type, reg.res_scope, reg.res_holder = pre["res_type"], 0, bool(pre["res_holder"])
        _add_registration(dev, reg, REGISTER)
        if reg.res_holder:
            _set_holder(dev, reg, reg.res_type, 0)
            log = _log(dev)
            log.debug(f"SPC-3 PR [{port.fabric}] Service Action: APTPL RESERVE created new "
                      f"reservation holder TYPE: {pr_type_name(reg.res_type)} "
                      f"ALL_TG_PT: {int(reg.all_tg_pt)}")
            log.debug(f"SPC-3 PR [{port.fabric}] RESERVE Node: {initiator}{_ibuf(reg)}")
        dev.pr.aptpl_active = True


# -- the reservation check (target_check_reservation) ------------------------------------------
def _skip(dev: "SeDevice") -> bool:
    return (getattr(dev.hba, "internal", False) or not dev.attrib.emulate_pr
            or dev.passthrough_pgr)


def prefetch(dev: "SeDevice") -> None:
    """Before the engine's tree lock: load shared PR state, when the device has a store (a
    simfs extension; see :mod:`.pr_store`)."""
    if not _skip(dev) and pr_store.store_of(dev) is not None:
        pr_store.prefetch(dev, runtime(dev))


def quiet_for(dev: "SeDevice", nexus: Nexus, key: tuple,
              st: Optional[state.DeviceState] = None) -> bool:
    """True when no reservation can stop a command from ``nexus`` (``key`` its
    ``nexus.key()``; the engine's fast path): the device does no PR emulation, or keeps its
    state here (no shared store), has met this nexus before (:func:`check_reservation`
    remembers it) and has neither a persistent nor an SPC-2 reservation. ``st``: the
    device's engine state when the caller holds it."""
    if _skip(dev):
        return True
    rt = (st if st is not None else state.of(dev)).pr
    if rt is None or key not in rt.seen or pr_store.store_of(dev) is not None:
        return False
    return rt.spc2 is None and dev.pr.holder is None


def check_reservation(cmd: "Command", note: bool = True) -> bool:
    """True when ``cmd`` must end in RESERVATION CONFLICT (target_check_reservation).

    ``note=False`` for the core's pass-through commands (EXTENDED COPY): their session's
    empty node ACL is never registered, so they meet reservations as a stranger would."""
    dev = cmd.dev
    if _skip(dev):
        return False
    # with a shared store (a simfs extension) the state may have moved on another node
    pr_store.refresh(dev, runtime(dev))
    if note:
        note_nexus(dev, cmd.nexus)
    if runtime(dev).spc2 is not None:
        return _scsi2_reservation_check(cmd)
    return _scsi3_reservation_check(cmd)


def _scsi2_reservation_check(cmd: "Command") -> bool:
    """target_scsi2_reservation_check."""
    if cmd.opcode in (S.INQUIRY, S.RELEASE, S.RELEASE_10):
        return False
    rt = runtime(cmd.dev)
    holder = rt.spc2
    if holder is None:
        return False
    if _acl(holder) != _acl(cmd.nexus):
        return True
    if rt.spc2_with_isid and rt.spc2_bin_isid != _bin_isid(cmd.nexus):
        return True
    return False


def _scsi3_reservation_check(cmd: "Command") -> bool:
    """target_scsi3_pr_reservation_check."""
    holder = cmd.dev.pr.holder
    if holder is None:
        return False
    if holder.acl != _acl(cmd.nexus):
        return _seq_non_holder(cmd, holder.res_type, False)
    if holder.isid is not None and holder.isid != _isid(cmd.nexus):
        return _seq_non_holder(cmd, holder.res_type, True)
    return False


def _seq_non_holder(cmd: "Command", pr_type: int, isid_mismatch: bool) -> bool:
    """core_scsi3_pr_seq_non_holder (spc4r17 tables 45/46): True = conflict."""
    dev, cdb, log = cmd.dev, cmd.cdb, cmd.dev.log
    registered = (not isid_mismatch
                  and (_acl(cmd.nexus), cmd.nexus.lun) in runtime(dev).reg_active)
    we = pr_type in (WE, WE_RO, WE_AR)
    reg_only = pr_type in REG_ONLY
    all_reg = pr_type in ALL_REG
    if pr_type not in PR_TYPES:
        return True
    op = cdb[0]
    sa = cdb[1] & 0x1F if len(cdb) > 1 else 0
    other_cdb = False
    ret = True
    if op == S.SECURITY_PROTOCOL_IN:
        if registered:
            return False
        ret = not we
    elif op in (S.MODE_SENSE, S.MODE_SENSE_10, S.READ_ATTRIBUTE, S.READ_BUFFER,
                S.RECEIVE_DIAGNOSTIC):
        ret = False if registered else not we
    elif op == S.PERSISTENT_RESERVE_OUT:
        if sa in (PRO_CLEAR, PRO_PREEMPT, PRO_PREEMPT_AND_ABORT, PRO_RELEASE):
            ret = not registered
        elif sa in (PRO_REGISTER, PRO_REGISTER_AND_IGNORE_EXISTING_KEY):
            ret = False
        elif sa in (PRO_REGISTER_AND_MOVE, PRO_RESERVE):
            ret = True
        else:
            log.err(f"Unknown PERSISTENT_RESERVE_OUT service action: 0x{sa:02x}")
            return True
    elif op in (S.RELEASE, S.RELEASE_10, S.RESERVE, S.RESERVE_10, S.TEST_UNIT_READY):
        ret = False  # RESERVE/RELEASE: handled by CRH=1 when they run
    elif op == S.MAINTENANCE_IN:
        if sa in (S.MI_MANAGEMENT_PROTOCOL_IN, S.MI_REPORT_SUPPORTED_OPERATION_CODES,
                  S.MI_REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS):
            ret = False if registered else not we
        elif sa in (S.MI_REPORT_ALIASES, S.MI_REPORT_IDENTIFYING_INFORMATION,
                    S.MI_REPORT_PRIORITY, S.MI_REPORT_TARGET_PGS, S.MI_REPORT_TIMESTAMP):
            ret = False
        else:
            log.err(f"Unknown MI Service Action: 0x{sa:02x}")
            return True
    elif op in (S.ACCESS_CONTROL_IN, S.ACCESS_CONTROL_OUT, S.INQUIRY, S.LOG_SENSE,
                S.SERVICE_ACTION_IN_12, S.REPORT_LUNS, S.REQUEST_SENSE,
                S.PERSISTENT_RESERVE_IN):
        ret = False
    elif op == S.READ_CAPACITY and dev.core.kernel.has("pr_non_holder_read_capacity"):
        ret = False  # listed beside SERVICE ACTION IN(16) in newer kernels (the table says)
    else:
        other_cdb = True
    tname = pr_type_name(pr_type)
    if not ret and not other_cdb:
        log.debug(f"Allowing explicit CDB: 0x{op:02x} for {tname} reservation holder")
        return False
    direction = _DIRECTION.get(cmd.direction, "DMA_NONE")
    initiator = cmd.nexus.initiator
    if we and not registered:
        if cmd.direction == DATA_OUT:
            log.debug(f"{direction} Conflict for unregistered nexus {initiator} CDB: "
                      f"0x{op:02x} to {tname} reservation")
            return True
        log.debug(f"Allowing implicit CDB: 0x{op:02x} for {tname} reservation on "
                  f"unregistered nexus")
        return False
    if reg_only or all_reg:
        if registered:
            log.debug(f"Allowing implicit CDB: 0x{op:02x} for {tname} reservation")
            return False
    elif we and registered:
        if cmd.direction == DATA_IN:
            log.debug(f"Allowing READ CDB: 0x{op:02x} for {tname} reservation")
            return False
    log.debug(f"{direction} Conflict for {'' if registered else 'un'}registered nexus "
              f"{initiator} CDB: 0x{op:2x} for {tname} reservation")
    return True


# -- parsing (called by spc.parse) ----------------------------------------------------------------
def _require_pr(cmd: "Command", cdb_len: int) -> None:
    dev = cmd.dev
    if not dev.attrib.emulate_pr:
        raise sense.UNSUPPORTED_SCSI_OPCODE(why="emulate_pr=0")
    if dev.passthrough_pgr:
        # the kernel passes PR commands to the real device; simfs has none to pass them to
        raise sense.UNSUPPORTED_SCSI_OPCODE(why="PGR passthrough")
    if len(cmd.cdb) < cdb_len:
        raise sense.INVALID_CDB_FIELD(why="short CDB")


def parse_spc2_reserve(cmd: "Command") -> None:
    """RESERVE(6) / RESERVE(10)."""
    _require_pr(cmd, 10 if cmd.opcode == S.RESERVE_10 else 6)
    cmd.direction = DATA_NONE
    cmd.execute = _spc2_reserve


def parse_spc2_release(cmd: "Command") -> None:
    """RELEASE(6) / RELEASE(10)."""
    _require_pr(cmd, 10 if cmd.opcode == S.RELEASE_10 else 6)
    cmd.direction = DATA_NONE
    cmd.execute = _spc2_release


def _spc2_held_conflict(cmd: "Command") -> None:
    if runtime(cmd.dev).spc2 is not None:
        cmd.dev.log.err("Received PERSISTENT_RESERVE CDB while legacy SPC-2 reservation is "
                        "held, returning RESERVATION_CONFLICT")
        raise ReservationConflict()


# -- SPC-2 RESERVE / RELEASE --------------------------------------------------------------------
def _scsi2_conflict(cmd: "Command") -> int:
    """target_check_scsi2_reservation_conflict: 1 = GOOD without doing anything (CRH),
    -1 = RESERVATION CONFLICT, 0 = go on."""
    dev = cmd.dev
    reg = locate(dev, cmd.nexus)
    if reg is not None:
        if reg.res_holder or reg.res_type in REG_ONLY + ALL_REG:
            return 1
        conflict = True
    else:
        conflict = bool(dev.pr.registrations)
    if conflict:
        dev.log.err("Received legacy SPC-2 RESERVE/RELEASE while active SPC-3 registrations "
                    "exist, returning RESERVATION_CONFLICT")
        return -1
    return 0


def _spc2_reserve(cmd: "Command") -> None:
    """target_scsi2_reservation_reserve."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    if cmd.cdb[1] & 0x01 and cmd.cdb[1] & 0x02:
        log.err("LongIO and Obsolete Bits set, returning ILLEGAL_REQUEST")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    note_nexus(dev, nexus)
    rc = _scsi2_conflict(cmd)
    if rc == 1:
        return None
    if rc < 0:
        raise ReservationConflict()
    rt = runtime(dev)
    fabric, port = nexus.port.fabric, nexus.port
    if rt.spc2 is not None and _acl(rt.spc2) != _acl(nexus):
        log.err(f"SCSI-2 RESERVATION CONFLIFT for {fabric} fabric")
        log.err(f"Original reserver LUN: {port.lun} {rt.spc2.initiator}")
        log.err(f"Current attempt - LUN: {port.lun} -> MAPPED LUN: {nexus.lun} from "
                f"{nexus.initiator} ")
        raise ReservationConflict()
    rt.spc2 = nexus
    bin_isid = _bin_isid(nexus)
    if bin_isid:
        rt.spc2_bin_isid, rt.spc2_with_isid = bin_isid, True
    dev.pr.spc2_holder = (fabric, nexus.initiator)
    log.debug(f"SCSI-2 Reserved {fabric} LUN: {port.lun} -> MAPPED LUN: {nexus.lun} for "
              f"{nexus.initiator}")
    return None


def _spc2_release(cmd: "Command") -> None:
    """target_scsi2_reservation_release."""
    dev, nexus = cmd.dev, cmd.nexus
    note_nexus(dev, nexus)
    rc = _scsi2_conflict(cmd)
    if rc == 1:
        return None
    if rc < 0:
        raise ReservationConflict()
    rt = runtime(dev)
    holder = rt.spc2
    if holder is None or _acl(holder) != _acl(nexus) or rt.spc2_bin_isid != _bin_isid(nexus):
        return None
    release_spc2(dev)
    dev.log.debug(f"SCSI-2 Released reservation for {nexus.port.fabric} LUN: "
                  f"{nexus.port.lun} -> MAPPED LUN: {nexus.lun} for {nexus.initiator}")
    return None


def release_spc2(dev: "SeDevice") -> None:
    """target_release_reservation (also what a LUN reset / I_T nexus loss does)."""
    rt = runtime(dev)
    rt.spc2 = None
    if rt.spc2_with_isid:
        rt.spc2_bin_isid, rt.spc2_with_isid = 0, False
    dev.pr.spc2_holder = None


# -- PERSISTENT RESERVE OUT ----------------------------------------------------------------------
# -- PERSISTENT RESERVE IN -----------------------------------------------------------------------
