"""ALUA in the command path (the kernel's target_core_alua.c).

* :func:`state_check` — target_alua_state_check: which commands a target port's
  asymmetric access state lets through, and the NOT READY sense for the rest.
* :func:`parse_report_target_port_groups` / :func:`parse_set_target_port_groups` —
  MAINTENANCE IN / OUT service action 0Ah (REPORT / SET TARGET PORT GROUPS).
* The unit-attention side of transitions: :func:`install` hooks
  ``core.events.alua_state_changed`` so that every I_T nexus reaching a LUN of a group
  that changed state gets 2Ah/06h ASYMMETRIC ACCESS STATE CHANGED (core_alua_queue_state_change_ua).
  The engine calls :func:`state_check` for every parsed command; it installs the hook
  lazily. Like the kernel it walks each LUN's mappings (se_dev_entry); it also records
  which nexuses made without a node ACL (the ``simfs scsi`` CLI, tests) have reached
  which device, and gives them the UA too.

Kernel facts settled here (modern target_core_alua.c / target_core_transport.c):

* Primary Offline is "unknown" to target_alua_state_check: ILLEGAL REQUEST 24h/00h.
* Standby lets through MODE SELECT(6)/MODE SENSE(6) only (not the 10-byte forms), and
  MAINTENANCE OUT is compared on the whole CDB byte 1 (``cdb[1] == 0x0a``), MAINTENANCE
  IN on ``cdb[1] & 0x1f``.
* Active/NonOptimized sets SCF_ALUA_NON_OPTIMIZED, but core_alua_check_nonop_delay()
  runs in target_submit() *before* __target_execute_cmd() does the ALUA check, so on a
  modern kernel the delay is never slept. :data:`NONOP_DELAY_SLEEPS` keeps that (False);
  set it True to model older kernels (the check ran in target_setup_cmd_from_cdb).
* STPG with a parameter list shorter than 4 bytes: INVALID FIELD IN PARAMETER LIST
  (TCM_INVALID_PARAMETER_LIST), not PARAMETER LIST LENGTH ERROR.
* STPG from a port whose group lacks explicit ALUA: TCM_UNSUPPORTED_SCSI_OPCODE
  (20h/00h INVALID COMMAND OPERATION CODE).
* STPG UAs skip *every* nexus on the LUN the STPG arrived on and every nexus of the
  sender's node ACL (tg_pt_gp_alua_lun / tg_pt_gp_alua_nacl), only for the group that
  was addressed (other devices of its LU group get the UA on all nexuses).
* RTPG skips groups without member LUNs; a descriptor that does not fit the allocation
  length is left out but still counted in RETURN DATA LENGTH (which never counts the
  header, extended or not).
"""

from __future__ import annotations

import weakref

import time
from typing import TYPE_CHECKING, Callable, Optional

from simfs.core.t10 import spc as t10
from simfs.scsi import sense, state
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_OUT, TargetPort
from simfs.scsi.sense import SenseError
from simfs.scsi.ua import ASYMMETRIC_ACCESS_STATE_CHANGED

if TYPE_CHECKING:
    from simfs.core.core import TargetCore
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command, Nexus

# Access states and supported-state bits: SPC-4's (simfs.core.t10.spc), under short names
AO, ANO = t10.ALUA_ACCESS_STATE_ACTIVE_OPTIMIZED, t10.ALUA_ACCESS_STATE_ACTIVE_NON_OPTIMIZED
STANDBY, UNAVAILABLE = t10.ALUA_ACCESS_STATE_STANDBY, t10.ALUA_ACCESS_STATE_UNAVAILABLE
LBA_DEPENDENT, OFFLINE = t10.ALUA_ACCESS_STATE_LBA_DEPENDENT, t10.ALUA_ACCESS_STATE_OFFLINE
TRANSITION = t10.ALUA_ACCESS_STATE_TRANSITION
T_SUP, O_SUP, LBD_SUP, U_SUP = t10.ALUA_T_SUP, t10.ALUA_O_SUP, t10.ALUA_LBD_SUP, t10.ALUA_U_SUP
S_SUP, AN_SUP, AO_SUP = t10.ALUA_S_SUP, t10.ALUA_AN_SUP, t10.ALUA_AO_SUP
TPGS_EXPLICIT_ALUA = 0x20
STATUS_ALTERED_BY_EXPLICIT_STPG = 1
STATUS_ALTERED_BY_IMPLICIT_ALUA = 2


# sense_reason_t numbers the kernel prints in "ASC/rc: 0x04/%d"
TCM_ALUA_TG_PT_STANDBY, TCM_ALUA_TG_PT_UNAVAILABLE, TCM_ALUA_STATE_TRANSITION = 0x20, 0x21, 0x22

#: Sleep used for ANO delays (when enabled) and STPG secondary-state trans_delay_msecs;
#: tests replace it.
sleep: Callable[[float], None] = time.sleep

#: Whether an Active/NonOptimized command really sleeps nonop_delay_msecs (see above).
NONOP_DELAY_SLEEPS = False

# Commands the kernel's sbc_parse_cdb flags SCF_SCSI_DATA_CDB (LBA-dependent checks).
_DATA_CDB_OPCODES = frozenset({
    S.READ_6, S.READ_10, S.READ_12, S.READ_16, S.WRITE_6, S.WRITE_10, S.WRITE_12, S.WRITE_16,
    S.WRITE_VERIFY, S.WRITE_VERIFY_12, S.WRITE_VERIFY_16, S.COMPARE_AND_WRITE,
    0x53,  # XDWRITEREAD_10
})


def dump_state(state: int) -> str:
    return t10.ALUA_STATE_NAMES.get(state, "Unknown")


# -- nexus registry and unit attentions ---------------------------------------------------------
def _seen(dev: "SeDevice") -> dict:
    return state.of(dev).nexuses


def nexuses(dev: "SeDevice") -> list["Nexus"]:
    """Every I_T nexus that reached ``dev`` (target_dev_ua_allocate's list)."""
    return list(_seen(dev).values())


def note_nexus(nexus: "Nexus", dev: "SeDevice") -> None:
    """Remember that ``nexus`` reached ``dev`` (it now gets ALUA state-change UAs)."""
    _seen(dev).setdefault(nexus.key(), nexus)


def forget_nexus(nexus: "Nexus", dev: "SeDevice") -> None:
    _seen(dev).pop(nexus.key(), None)


def queue_state_change_ua(gp) -> None:
    """core_alua_queue_state_change_ua: 2Ah/06h to every nexus on a LUN of ``gp``."""
    dev = getattr(gp, "dev", None)
    if dev is None:
        return
    from simfs.scsi.engine import scsi_state
    uas = scsi_state(dev).ua
    origin = getattr(gp, "alua_origin", None)
    if gp.access_status != STATUS_ALTERED_BY_EXPLICIT_STPG:
        origin = None
    seen = list(_seen(dev).values())
    o_lun, o_initiator = origin if origin is not None else (None, None)
    targets: list = []
    for lun in list(gp.members):
        if origin is not None and o_lun is lun:
            continue  # tg_pt_gp_alua_lun: the LUN the STPG came in on
        # every mapping of the LUN; an explicit STPG skips the sender's own ACL's
        # explicit mappings only (tg_pt_gp_alua_nacl): a demo-mode mapping has no lun ACL
        for deve in list(getattr(lun, "deves", ())):
            if (origin is not None and deve.lacl is not None and deve.acl.name == o_initiator
                    and deve.acl.tpg is getattr(o_lun, "tpg", None)):
                continue
            targets.append(deve)
        # nexuses without a node ACL (CLI, tests), as they reached the LUN
        for nexus in seen:
            if nexus.port is not lun or nexus.acl is not None:
                continue
            if origin is not None and nexus.initiator == o_initiator:
                continue
            targets.append(nexus)
    uas.allocate_many(targets, *ASYMMETRIC_ACCESS_STATE_CHANGED)


def install(target) -> None:
    """Wire the UA side of transitions into ``target`` (a ScsiEngine or a TargetCore).

    Sets ``core.events.alua_state_changed`` (chaining any hook already there). Idempotent;
    :func:`state_check` calls it lazily, so an engine works without calling it.
    """
    core = getattr(target, "core", target) if not hasattr(target, "events") else target
    events = core.events
    if events in _INSTALLED:
        return
    current = events.alua_state_changed

    def hook(gp, _prev=current):
        _prev(gp)
        queue_state_change_ua(gp)

    events.alua_state_changed = hook
    _INSTALLED.add(events)


#: the CoreEvents already wired (weakly: they go with their core)
_INSTALLED: "weakref.WeakSet" = weakref.WeakSet()


# -- port membership -----------------------------------------------------------------------------
def set_port_group(port: TargetPort, gp) -> None:
    """Move a LUN (target port) into target port group ``gp`` (target_swap_tg_pt_gp)."""
    port.set_tg_pt_gp(gp)


# -- target_alua_state_check ---------------------------------------------------------------------
def _standby(cdb: bytes) -> Optional[SenseError]:
    op = cdb[0]
    if op in (S.INQUIRY, S.LOG_SELECT, S.LOG_SENSE, S.MODE_SELECT, S.MODE_SENSE, S.REPORT_LUNS,
              S.RECEIVE_DIAGNOSTIC, S.SEND_DIAGNOSTIC, S.READ_CAPACITY, S.REQUEST_SENSE,
              S.PERSISTENT_RESERVE_IN, S.PERSISTENT_RESERVE_OUT, S.READ_BUFFER, S.WRITE_BUFFER):
        return None
    if op == S.SERVICE_ACTION_IN_16 and _b1(cdb) & 0x1F == S.SAI_READ_CAPACITY_16:
        return None
    if op == S.MAINTENANCE_IN and _b1(cdb) & 0x1F == S.MI_REPORT_TARGET_PGS:
        return None
    if op == S.MAINTENANCE_OUT and _b1(cdb) == S.MO_SET_TARGET_PGS:
        return None
    return sense.ALUA_TG_PT_STANDBY()


def _unavailable(cdb: bytes) -> Optional[SenseError]:
    op = cdb[0]
    if op in (S.INQUIRY, S.REPORT_LUNS, S.REQUEST_SENSE, S.READ_BUFFER, S.WRITE_BUFFER):
        return None
    if op == S.MAINTENANCE_IN and _b1(cdb) & 0x1F == S.MI_REPORT_TARGET_PGS:
        return None
    if op == S.MAINTENANCE_OUT and _b1(cdb) == S.MO_SET_TARGET_PGS:
        return None
    return sense.ALUA_TG_PT_UNAVAILABLE()


def _transition(cdb: bytes) -> Optional[SenseError]:
    op = cdb[0]
    if op in (S.INQUIRY, S.REPORT_LUNS, S.REQUEST_SENSE, S.READ_BUFFER, S.WRITE_BUFFER):
        return None
    if op == S.MAINTENANCE_IN and _b1(cdb) & 0x1F == S.MI_REPORT_TARGET_PGS:
        return None
    return sense.ALUA_STATE_TRANSITION()


def _b1(cdb: bytes) -> int:
    return cdb[1] if len(cdb) > 1 else 0


def _is_data_cdb(cmd: "Command") -> bool:
    flag = cmd.ctx.get("data_cdb")
    if flag is not None:
        return bool(flag)
    return cmd.opcode in _DATA_CDB_OPCODES


def _lba_dependent(cmd: "Command", gp_id: int) -> Optional[SenseError]:
    """core_alua_state_lba_dependent: walk the command's LBAs through the device's lba_map."""
    if not _is_data_cdb(cmd) or cmd.lba is None:
        return None
    dev = cmd.dev
    seg_size, seg_mult = getattr(dev, "lba_map_segment", (0, 0))
    entries = list(getattr(dev, "lba_map", ()))
    # sectors = data_length / block_size: COMPARE AND WRITE carries 2 * NLB blocks
    sectors = cmd.nblocks * (2 if cmd.opcode == S.COMPARE_AND_WRITE else 1)
    start = cmd.lba
    lba = start
    while lba < start + sectors:
        cur = None
        for first, last, members in entries:
            if seg_mult:
                span = seg_size * seg_mult
                if not span:
                    continue  # the kernel would divide by zero here
                pos = lba % span
                if first <= pos <= first + seg_size - 1:
                    lba += seg_size
                    cur = members
                    break
            elif first <= lba <= last:
                lba = last + 1
                cur = members
                break
        if cur is None:
            return sense.ALUA_TG_PT_UNAVAILABLE()
        for pg_id, access in cur:
            if pg_id != gp_id:
                continue
            if access == STANDBY:
                return sense.ALUA_TG_PT_STANDBY()
            if access == UNAVAILABLE:
                return sense.ALUA_TG_PT_UNAVAILABLE()
    return None


_RC = {0x0B: TCM_ALUA_TG_PT_STANDBY, 0x0C: TCM_ALUA_TG_PT_UNAVAILABLE,
       0x0A: TCM_ALUA_STATE_TRANSITION}


def state_check(cmd: "Command", note: bool = True) -> None:
    """target_alua_state_check: raise SenseError when the port's access state forbids cmd.

    ``note=False`` for the core's own pass-through commands (EXTENDED COPY's reads and
    writes), whose session is no I_T nexus an initiator could receive a UA on."""
    dev = cmd.dev
    core = getattr(dev, "core", None)
    if core is not None:
        install(core)
    if note:
        note_nexus(cmd.nexus, dev)
    hba = getattr(dev, "hba", None)
    if hba is not None and getattr(hba, "internal", False):
        return
    if getattr(dev, "passthrough_alua", False):
        return
    port = cmd.nexus.port
    log = dev.core.log
    if port.offline:
        log.debug("ALUA: Got secondary offline status for local target port")
        raise sense.ALUA_OFFLINE()
    gp = port.tg_pt_gp
    if gp is None:
        return
    state = gp.access_state
    if state == AO:
        return
    err: Optional[SenseError]
    if state == ANO:
        delay = gp.nonop_delay_msecs
        cmd.ctx["alua_nonop_delay"] = delay
        if NONOP_DELAY_SLEEPS and delay:
            _sleep_unlocked(core, delay)
        return
    if state == STANDBY:
        err = _standby(cmd.cdb)
    elif state == UNAVAILABLE:
        err = _unavailable(cmd.cdb)
    elif state == TRANSITION:
        err = _transition(cmd.cdb)
    elif state == LBA_DEPENDENT:
        err = _lba_dependent(cmd, gp.id)
    else:  # primary Offline is "unknown" here: it is meant to be a secondary state
        log.err(f"Unknown ALUA access state: 0x{state:02x}")
        raise sense.INVALID_CDB_FIELD()
    if err is not None:
        log.debug(f"[{port.fabric}]: ALUA TG Port not available, SenseKey: NOT_READY, "
                  f"ASC/rc: 0x04/{_RC.get(err.ascq, 0)}")
        raise err


def _sleep_unlocked(core: Optional["TargetCore"], msecs: int) -> None:
    """Sleep without holding the configfs tree (as Alua._transition_one does)."""
    lock = core.tree_lock if core is not None else None
    released = False
    if lock is not None:
        try:
            lock.release()
            released = True
        except RuntimeError:
            released = False
    try:
        sleep(msecs / 1000)
    finally:
        if released:
            lock.acquire()


# -- REPORT TARGET PORT GROUPS -----------------------------------------------------------------
def parse_report_target_port_groups(cmd: "Command") -> None:
    """MAINTENANCE IN / REPORT TARGET PORT GROUPS: allocation length in CDB bytes 6-9."""
    cdb = cmd.cdb
    if len(cdb) < 12:
        raise sense.INVALID_CDB_FIELD(why="short MAINTENANCE IN CDB")
    alloc = int.from_bytes(cdb[6:10], "big")
    cmd.direction = DATA_IN
    cmd.alloc_len = alloc
    cmd.ctx["rtpg_alloc"] = alloc
    cmd.execute = _execute_rtpg


def report_target_port_groups(dev: "SeDevice", port: Optional[TargetPort], alloc: int,
                              ext_hdr: bool) -> bytes:
    """The RTPG parameter data as the kernel builds it into an ``alloc``-byte buffer."""
    off = 8 if ext_hdr else 4
    buf = bytearray(off)
    rd_len = 0
    for gp in list(dev.tg_pt_gps):
        if not gp.valid_id:
            continue
        members = list(gp.members)
        count = len(members)
        if not count:
            continue  # Skip empty port groups
        size = 8 + count * 4
        if off + size > alloc:
            rd_len += size  # left out, but the initiator learns the full length
            continue
        desc = bytearray(8)
        desc[0] = (0x80 if gp.preferred else 0) | (gp.access_state & 0xFF)
        desc[1] = gp.supported_states & 0xFF
        desc[2:4] = (gp.id & 0xFFFF).to_bytes(2, "big")
        desc[5] = gp.access_status & 0xFF
        desc[7] = count & 0xFF
        for lun in members:
            desc += b"\0\0" + (lun.rtpi & 0xFFFF).to_bytes(2, "big")
        buf += desc
        off += size
        rd_len += size
    buf[0:4] = (rd_len & 0xFFFFFFFF).to_bytes(4, "big")
    if ext_hdr:
        buf[4] = 0x10
        gp = port.tg_pt_gp if port is not None else None
        if gp is not None:
            buf[5] = gp.implicit_trans_secs & 0xFF
    return bytes(buf)


def _execute_rtpg(cmd: "Command") -> bytes:
    ext_hdr = bool(cmd.cdb[1] & 0x20)
    alloc = cmd.ctx.get("rtpg_alloc", cmd.alloc_len or 0)
    if alloc < (8 if ext_hdr else 4):
        cmd.dev.core.log.warn(f"REPORT TARGET PORT GROUPS allocation length {alloc} too small "
                              f"for {'extended' if ext_hdr else 'normal'} header")
        raise sense.INVALID_CDB_FIELD()
    data = report_target_port_groups(cmd.dev, cmd.nexus.port, alloc, ext_hdr)
    # the kernel completes with RETURN DATA LENGTH + 4 bytes, so the extended header's
    # 4 extra bytes cut as many off the end (target_complete_cmd_with_length)
    return data[:int.from_bytes(data[0:4], "big") + 4]


# -- SET TARGET PORT GROUPS --------------------------------------------------------------------
def parse_set_target_port_groups(cmd: "Command") -> None:
    """MAINTENANCE OUT / SET TARGET PORT GROUPS: parameter list length in CDB bytes 6-9.

    The fabric's transfer length is ``len(cmd.data_out)``; as target_cmd_size_check does
    for a WRITE control CDB, a CDB asking for more than arrived is INVALID FIELD IN CDB,
    and a longer transfer is kept whole (the kernel does not truncate writes).
    """
    cdb = cmd.cdb
    if len(cdb) < 12:
        raise sense.INVALID_CDB_FIELD(why="short MAINTENANCE OUT CDB")
    size = int.from_bytes(cdb[6:10], "big")
    have = len(cmd.data_out)
    if size != have:
        log = cmd.dev.core.log
        log.warn(f"TARGET_CORE[{cmd.nexus.port.fabric}]: Expected Transfer Length: {have} does "
                 f"not match SCSI CDB Length: {size} for SAM Opcode: 0x{cmd.opcode:02x}")
        if size > have:
            log.err("Rejecting overflow for WRITE control CDB")
            raise sense.INVALID_CDB_FIELD()
    cmd.direction = DATA_OUT
    cmd.alloc_len = None
    cmd.execute = _execute_stpg


def _check_transition(log, state: int, valid: int, explicit: bool) -> bool:
    """core_alua_check_transition: True for a primary state; SenseError when refused."""
    bits = {AO: AO_SUP, ANO: AN_SUP, STANDBY: S_SUP, UNAVAILABLE: U_SUP,
            LBA_DEPENDENT: LBD_SUP, OFFLINE: O_SUP, TRANSITION: T_SUP}
    if state not in bits:
        log.err(f"Unknown ALUA access state: 0x{state:02x}")
        raise sense.INVALID_PARAMETER_LIST()
    if not valid & bits[state] or (state == TRANSITION and explicit):
        log.err(f"ALUA access state {dump_state(state)} not supported")
        raise sense.INVALID_PARAMETER_LIST()
    return state not in (OFFLINE, TRANSITION)


def _lu_group_targets(gp) -> list:
    dev = gp.dev
    lu_gp = getattr(dev, "lu_gp", None)
    if lu_gp is None or lu_gp.id == 0:
        return [gp]
    return [g for d in lu_gp.members for g in d.tg_pt_gps if g.valid_id and g.id == gp.id]


def do_port_transition(gp, new_state: int, lun: Optional[TargetPort] = None,
                       initiator: Optional[str] = None, explicit: bool = True) -> bool:
    """core_alua_do_port_transition from STPG: True when done (False = refused)."""
    from simfs.configfs import ConfigfsError
    core = gp.dev.core
    for g in _lu_group_targets(gp):
        g.alua_origin = None
    gp.alua_origin = (lun, initiator) if lun is not None or initiator is not None else None
    try:
        core.alua.transition(gp, new_state, explicit=explicit)
    except ConfigfsError as e:
        if e.reason:
            core.log.err(e.reason)
        return False
    return True


def set_secondary_state(lun: TargetPort, explicit: bool, offline: bool) -> bool:
    """core_alua_set_tg_pt_secondary_state: the LUN's secondary Offline state."""
    gp = lun.tg_pt_gp
    core = gp.dev.core if gp is not None and gp.dev is not None else None
    if gp is None:
        return False
    lun.offline = bool(offline)
    status = STATUS_ALTERED_BY_EXPLICIT_STPG if explicit else STATUS_ALTERED_BY_IMPLICIT_ALUA
    lun.secondary_status = status
    core.log.debug(f"Successful {'explicit' if explicit else 'implicit'} ALUA transition TG PT "
                   f"Group: {gp.name} ID: {gp.id} to secondary access state: "
                   f"{'OFFLINE' if offline else 'ONLINE'}")
    if gp.trans_delay_msecs:
        _sleep_unlocked(core, gp.trans_delay_msecs)
    if getattr(lun, "secondary_write_md", 0):
        write_secondary_metadata(core, lun)
    return True


def write_secondary_metadata(core: "TargetCore", lun: TargetPort) -> None:
    """core_alua_update_tpg_secondary_metadata:
    ``<dbroot>/alua/<fabric>/<wwn>+<tpgt>/lun_<lun>``."""
    from pathlib import Path
    from simfs.core.core import atomic_write
    path = Path(core.dbroot) / "alua" / lun.fabric / f"{lun.wwn}+{lun.tpgt}" / f"lun_{lun.lun}"
    text = (f"alua_tg_pt_offline={1 if lun.offline else 0}\n"
            f"alua_tg_pt_status=0x{getattr(lun, 'secondary_status', 0):02x}\n")
    try:
        # like the kernel (and core.CoreEvents.alua_metadata): the directory must exist
        atomic_write(path, text.encode())
    except OSError:
        core.log.err(f"filp_open({path}) for ALUA metadata failed")


def _execute_stpg(cmd: "Command") -> None:
    dev = cmd.dev
    log = dev.core.log
    data = cmd.data_out
    length = len(data)
    if length < 4:
        log.warn(f"SET TARGET PORT GROUPS parameter list length {length} too small")
        raise sense.INVALID_PARAMETER_LIST()
    port = cmd.nexus.port
    l_gp = port.tg_pt_gp
    if l_gp is None:
        log.err("Unable to access l_lun->tg_pt_gp")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    if not l_gp.access_type & TPGS_EXPLICIT_ALUA:
        log.debug("Unable to process SET_TARGET_PORT_GROUPS while TPGS_EXPLICIT_ALUA is disabled")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    valid = l_gp.supported_states
    buf = bytes(data) + bytes(-length % 4)
    pos = 4
    while pos < length:
        state = buf[pos] & 0x0F
        primary = _check_transition(log, state, valid, explicit=True)
        ident = int.from_bytes(buf[pos + 2:pos + 4], "big")
        found = False
        if primary:
            gp = next((g for g in dev.tg_pt_gps if g.valid_id and g.id == ident), None)
            if gp is not None:
                found = do_port_transition(gp, state, lun=port, initiator=cmd.nexus.initiator)
        else:
            lun = next((p for p in dev.luns if p.rtpi == ident), None)
            if lun is not None:
                found = set_secondary_state(lun, explicit=True, offline=True)
        if not found:
            raise sense.INVALID_PARAMETER_LIST()
        pos += 4
    return None
