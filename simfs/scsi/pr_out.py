"""PERSISTENT RESERVE OUT: REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT (AND ABORT), REGISTER
AND IGNORE EXISTING KEY and REGISTER AND MOVE, as core_scsi3_emulate_pr_out runs them.

The reservation state and the checks every command meets are in :mod:`simfs.scsi.pr`."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Optional

from simfs.core import tmr
from simfs.core.pr_files import pr_type_name
from simfs.scsi import pr_store, sense
from simfs.scsi.aptpl import _update_and_write_aptpl, _update_and_write_aptpl_quiet
from simfs.scsi.command import (DATA_OUT, Nexus, TargetPort)
from simfs.scsi.pr import (_acl, _add_registration, ALL_REG, _alloc_registration,
                           ASCQ_REGISTRATIONS_PREEMPTED, ASCQ_RESERVATIONS_PREEMPTED,
                           ASCQ_RESERVATIONS_RELEASED, _be64, _caller_registration,
                           _complete_pro_release, _free_registration, _gen, _ibuf, _is_holder,
                           _isid, _locate, locate, LU_SCOPE, note_nexus, PR_TYPES, PRO_CLEAR,
                           PRO_PREEMPT, PRO_PREEMPT_AND_ABORT, PRO_REGISTER,
                           PRO_REGISTER_AND_IGNORE_EXISTING_KEY, PRO_REGISTER_AND_MOVE,
                           PRO_RELEASE, PRO_RESERVE, REG_ONLY, _REG_SUFFIX, REGISTER,
                           REGISTER_AND_IGNORE_EXISTING_KEY, REGISTER_AND_MOVE, Registration,
                           _require_pr, runtime, _set_holder, _sid_fabric, _spc2_held_conflict,
                           _tpg, _ua_lun)
from simfs.scsi.sense import ReservationConflict
from simfs.scsi.transport_id import parse_transport_id

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command


def parse_pr_out(cmd: "Command") -> None:
    """PERSISTENT RESERVE OUT: set ``cmd.execute`` or raise SenseError."""
    _require_pr(cmd, 10)
    cmd.direction = DATA_OUT
    # the length the handler sees is the fabric's when it received more (target_cmd_size_check)
    cmd.ctx["pr_data_length"] = cmd.control_size_check(struct.unpack(">I", cmd.cdb[5:9])[0])
    cmd.execute = _execute_shared


def _execute_shared(cmd: "Command") -> None:
    """With a shared PR store (a simfs extension), PR OUT runs as a compare-and-swap
    transaction on the state every node shares; without one, as in LIO."""
    return pr_store.transaction(cmd.dev, runtime(cmd.dev), lambda: _execute_pr_out(cmd))


def _execute_pr_out(cmd: "Command") -> None:
    """target_scsi3_emulate_pr_out."""
    dev, log = cmd.dev, cmd.dev.log
    note_nexus(dev, cmd.nexus)
    _spc2_held_conflict(cmd)
    length = cmd.ctx["pr_data_length"]
    if length < 24:
        log.warn(f"SPC-PR: Received PR OUT parameter list length too small: {length}")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    buf = bytes(cmd.data_out[:length]).ljust(length, b"\0")
    cdb = cmd.cdb
    sa, scope, pr_type = cdb[1] & 0x1F, cdb[2] & 0xF0, cdb[2] & 0x0F
    res_key, sa_res_key = _be64(buf[0:8]), _be64(buf[8:16])
    spec_i_pt = all_tg_pt = unreg = False
    if sa != PRO_REGISTER_AND_MOVE:
        spec_i_pt, all_tg_pt, aptpl = bool(buf[20] & 0x08), bool(buf[20] & 0x04), bool(buf[20] & 1)
    else:
        aptpl, unreg = bool(buf[17] & 0x01), bool(buf[17] & 0x02)
    if dev.attrib.force_pr_aptpl:
        aptpl = True
    if spec_i_pt and sa != PRO_REGISTER:
        raise sense.INVALID_PARAMETER_LIST()
    if not spec_i_pt and sa != PRO_REGISTER_AND_MOVE and length != 24:
        log.warn(f"SPC-PR: Received PR OUT illegal parameter list length: {length}")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    if sa == PRO_REGISTER:
        _pro_register(cmd, buf, res_key, sa_res_key, aptpl, all_tg_pt, spec_i_pt, REGISTER)
    elif sa == PRO_RESERVE:
        if pr_type not in PR_TYPES:
            log.err(f"SPC-3 PR: Unknown Service Action RESERVE Type: 0x{pr_type:02x}")
            raise sense.INVALID_CDB_FIELD()
        _pro_reserve(cmd, pr_type, scope, res_key)
    elif sa == PRO_RELEASE:
        _pro_release(cmd, pr_type, scope, res_key)
    elif sa == PRO_CLEAR:
        _pro_clear(cmd, res_key)
    elif sa in (PRO_PREEMPT, PRO_PREEMPT_AND_ABORT):
        abort = sa == PRO_PREEMPT_AND_ABORT
        if pr_type not in PR_TYPES:
            log.err(f"SPC-3 PR: Unknown Service Action PREEMPT{'_AND_ABORT' if abort else ''} "
                    f"Type: 0x{pr_type:02x}")
            raise sense.INVALID_CDB_FIELD()
        _pro_preempt(cmd, pr_type, scope, res_key, sa_res_key, abort)
    elif sa == PRO_REGISTER_AND_IGNORE_EXISTING_KEY:
        _pro_register(cmd, buf, 0, sa_res_key, aptpl, all_tg_pt, spec_i_pt,
                      REGISTER_AND_IGNORE_EXISTING_KEY)
    elif sa == PRO_REGISTER_AND_MOVE:
        _pro_register_and_move(cmd, buf, res_key, sa_res_key, aptpl, unreg)
    else:
        log.err(f"Unknown PERSISTENT_RESERVE_OUT service action: 0x{sa:02x}")
        raise sense.INVALID_CDB_FIELD()
    return None


def _pro_register(cmd: "Command", buf: bytes, res_key: int, sa_res_key: int, aptpl: bool,
                  all_tg_pt: bool, spec_i_pt: bool, register_type: int) -> None:
    """core_scsi3_emulate_pro_register (spc4r17 table 47)."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    reg = locate(dev, nexus)
    if reg is None:
        if res_key:
            log.warn("SPC-3 PR: Reservation Key non-zero for SA REGISTER, returning CONFLICT")
            raise ReservationConflict()
        if not sa_res_key:
            return
        if not spec_i_pt:
            new, atp = _alloc_registration(dev, nexus.initiator, nexus.port, nexus.lun,
                                           _isid(nexus), sa_res_key, all_tg_pt, aptpl)
            new.nexus = nexus
            _add_registration(dev, new, register_type, atp=tuple(atp))
        else:
            _decode_spec_i_port(cmd, buf, sa_res_key, all_tg_pt, aptpl)
        _update_and_write_aptpl(dev, aptpl)
        return
    if register_type == REGISTER and res_key != reg.key:
        log.err(f"SPC-3 PR REGISTER: Received res_key: 0x{res_key:016x} does not match "
                f"existing SA REGISTER res_key: 0x{reg.key:016x}")
        raise ReservationConflict()
    if spec_i_pt:
        log.err("SPC-3 PR REGISTER: SPEC_I_PT set on a registered nexus")
        raise sense.INVALID_PARAMETER_LIST()
    if reg.all_tg_pt and not all_tg_pt:
        log.err("SPC-3 PR REGISTER: ALL_TG_PT=1 registration exists, but ALL_TG_PT=1 bit "
                "not present in received PROUT")
        raise sense.INVALID_CDB_FIELD()
    if sa_res_key:
        reg.generation = _gen(dev)
        reg.key = sa_res_key
        log.debug(f"SPC-3 PR [{nexus.port.fabric}] REGISTER{_REG_SUFFIX[register_type]}: "
                  f"Changed Reservation Key for {reg.initiator} to: 0x{reg.key:016x} "
                  f"PRgeneration: 0x{reg.generation:08x}")
    else:
        pr_type = reg.res_type
        pr_holder = _check_implicit_release(dev, reg)
        if pr_holder < 0:
            raise ReservationConflict()
        if reg.all_tg_pt:
            for r in list(dev.pr.registrations):
                if (r.all_tg_pt and r.key == res_key and r is not reg
                        and r.initiator == reg.initiator):
                    _free_registration(dev, r)
        _free_registration(dev, reg)
        if pr_holder and pr_type in REG_ONLY:
            for r in dev.pr.registrations:
                _ua_lun(dev, r, ASCQ_RESERVATIONS_RELEASED)
    _update_and_write_aptpl(dev, aptpl)


def _check_implicit_release(dev: "SeDevice", reg: Registration) -> int:
    """core_scsi3_check_implicit_release: 1 released, 0 nothing, -1 refused."""
    holder = dev.pr.holder
    if holder is None:
        return 0
    if holder is reg:
        _complete_pro_release(dev, (reg.fabric, reg.initiator), reg, False, True)
        return 1
    if reg.all_tg_pt and holder.initiator == reg.initiator and holder.key == reg.key:
        dev.log.err(f"SPC-3 PR: Unable to perform ALL_TG_PT=1 UNREGISTER while existing "
                    f"reservation with matching key 0x{reg.key:016x} is present from another "
                    f"SCSI Initiator Port")
        return -1
    return 0


def _pro_reserve(cmd: "Command", pr_type: int, scope: int, res_key: int) -> None:
    """core_scsi3_pro_reserve."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    reg = _caller_registration(cmd, "RESERVE")
    if res_key != reg.key:
        log.err(f"SPC-3 PR RESERVE: Received res_key: 0x{res_key:016x} does not match "
                f"existing SA REGISTER res_key: 0x{reg.key:016x}")
        raise ReservationConflict()
    if scope != LU_SCOPE:
        log.err(f"SPC-3 PR: Illegal SCOPE: 0x{scope:02x}")
        raise sense.INVALID_PARAMETER_LIST()
    holder = dev.pr.holder
    fabric = nexus.port.fabric
    if holder is not None:
        if not _is_holder(holder, reg):
            log.err(f"SPC-3 PR: Attempted RESERVE from [{fabric}]: {nexus.initiator} while "
                    f"reservation already held by [{holder.fabric}]: {holder.initiator}, "
                    f"returning RESERVATION_CONFLICT")
            raise ReservationConflict()
        if holder.res_type != pr_type or holder.res_scope != scope:
            log.err(f"SPC-3 PR: Attempted RESERVE from [{fabric}]: {nexus.initiator} trying "
                    f"to change TYPE and/or SCOPE, while reservation already held by "
                    f"[{holder.fabric}]: {holder.initiator}, returning RESERVATION_CONFLICT")
            raise ReservationConflict()
        return
    _set_holder(dev, reg, pr_type, scope)
    log.debug(f"SPC-3 PR [{fabric}] Service Action: RESERVE created new reservation holder "
              f"TYPE: {pr_type_name(pr_type)} ALL_TG_PT: {int(reg.all_tg_pt)}")
    log.debug(f"SPC-3 PR [{fabric}] RESERVE Node: {nexus.initiator}{_ibuf(reg)}")
    if dev.pr.aptpl_active:
        _update_and_write_aptpl_quiet(dev)


def _pro_release(cmd: "Command", pr_type: int, scope: int, res_key: int) -> None:
    """core_scsi3_emulate_pro_release."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    reg = _caller_registration(cmd, "RELEASE")
    holder = dev.pr.holder
    if holder is None or not _is_holder(holder, reg):
        return
    if res_key != reg.key:
        log.err(f"SPC-3 PR RELEASE: Received res_key: 0x{res_key:016x} does not match "
                f"existing SA REGISTER res_key: 0x{reg.key:016x}")
        raise ReservationConflict()
    if holder.res_type != pr_type or holder.res_scope != scope:
        log.err(f"SPC-3 PR RELEASE: Attempted to release reservation from "
                f"[{nexus.port.fabric}]: {nexus.initiator} with different TYPE and/or SCOPE "
                f" while reservation already held by [{holder.fabric}]: {holder.initiator}, "
                f"returning RESERVATION_CONFLICT")
        raise ReservationConflict()
    _complete_pro_release(dev, (nexus.port.fabric, nexus.initiator), reg, True, False)
    if pr_type in REG_ONLY + ALL_REG:
        for r in dev.pr.registrations:
            if r is not reg:
                _ua_lun(dev, r, ASCQ_RESERVATIONS_RELEASED)
    if dev.pr.aptpl_active:
        _update_and_write_aptpl_quiet(dev)


def _pro_clear(cmd: "Command", res_key: int) -> None:
    """core_scsi3_emulate_pro_clear."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    reg_n = _caller_registration(cmd, "CLEAR")
    if res_key != reg_n.key:
        log.err(f"SPC-3 PR REGISTER: Received res_key: 0x{res_key:016x} does not match "
                f"existing SA REGISTER res_key: 0x{reg_n.key:016x}")
        raise ReservationConflict()
    holder = dev.pr.holder
    if holder is not None:
        _complete_pro_release(dev, (holder.fabric, holder.initiator), holder, False, False)
    for r in list(dev.pr.registrations):
        _free_registration(dev, r)
        if r is not reg_n:
            _ua_lun(dev, r, ASCQ_RESERVATIONS_PREEMPTED)
    log.debug(f"SPC-3 PR [{nexus.port.fabric}] Service Action: CLEAR complete")
    try:
        _update_and_write_aptpl(dev, False)
    except sense.SenseError:
        pass
    _gen(dev)


def _complete_pro_preempt(dev: "SeDevice", reg: Registration, pr_type: int, scope: int,
                          abort: bool) -> None:
    """__core_scsi3_complete_pro_preempt."""
    if dev.pr.holder is not None:
        _complete_pro_release(dev, (reg.fabric, reg.initiator), dev.pr.holder, False, False)
    _set_holder(dev, reg, pr_type, scope)
    suffix = "_AND_ABORT" if abort else ""
    dev.log.debug(f"SPC-3 PR [{reg.fabric}] Service Action: PREEMPT{suffix} created new "
                  f"reservation holder TYPE: {pr_type_name(pr_type)} "
                  f"ALL_TG_PT: {int(reg.all_tg_pt)}")
    dev.log.debug(f"SPC-3 PR [{reg.fabric}] PREEMPT{suffix} from Node: "
                  f"{reg.initiator}{_ibuf(reg)}")


def _pro_preempt(cmd: "Command", pr_type: int, scope: int, res_key: int, sa_res_key: int,
                 abort: bool) -> None:
    """core_scsi3_pro_preempt."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    reg_n = locate(dev, nexus)
    if reg_n is None:
        log.err(f"SPC-3 PR: Unable to locate PR_REGISTERED *pr_reg for "
                f"PREEMPT{'_AND_ABORT' if abort else ''}")
        raise ReservationConflict()
    if reg_n.key != res_key:
        raise ReservationConflict()
    if scope != LU_SCOPE:
        log.err(f"SPC-3 PR: Illegal SCOPE: 0x{scope:02x}")
        raise sense.INVALID_PARAMETER_LIST()
    holder = dev.pr.holder
    all_reg = holder is not None and holder.res_type in ALL_REG
    if not all_reg and not sa_res_key:
        raise sense.INVALID_PARAMETER_LIST()
    unmatched = sa_res_key != 0
    if holder is None or holder.key != sa_res_key:
        # spc4r17 5.7.11.4.4: remove the registrations SERVICE ACTION KEY names
        for r in list(dev.pr.registrations):
            calling = r is reg_n
            if not all_reg:
                if r.key != sa_res_key:
                    continue
                unmatched = False
                _free_registration(dev, r)
            else:
                if sa_res_key and r.key != sa_res_key:
                    continue
                unmatched = False
                if calling:
                    continue
                _free_registration(dev, r)
            if not calling:
                _ua_lun(dev, r, ASCQ_REGISTRATIONS_PREEMPTED)
        if unmatched:
            raise ReservationConflict()
        if holder is not None and all_reg and not sa_res_key:
            _complete_pro_preempt(dev, reg_n, pr_type, scope, abort)
        if dev.pr.aptpl_active:
            _update_and_write_aptpl_quiet(dev)
        _gen(dev)
        return
    # the SERVICE ACTION KEY names the holder: preempt the reservation
    prh_type, prh_scope = holder.res_type, holder.res_scope
    if reg_n is not holder:
        _complete_pro_release(dev, (holder.fabric, holder.initiator), holder, False, False)
    for r in list(dev.pr.registrations):
        if r is reg_n or r.key != sa_res_key:
            continue
        _free_registration(dev, r)
        _ua_lun(dev, r, ASCQ_REGISTRATIONS_PREEMPTED)
    _complete_pro_preempt(dev, reg_n, pr_type, scope, abort)
    if prh_type != pr_type or prh_scope != scope:
        for r in dev.pr.registrations:
            if r is not reg_n:
                _ua_lun(dev, r, ASCQ_RESERVATIONS_RELEASED)
    if abort:
        # core_tmr_lun_reset over the preempted nexuses; simfs has no task set to abort
        tmr.core_tmr_lun_reset(dev, preempt=True)
    if dev.pr.aptpl_active:
        _update_and_write_aptpl_quiet(dev)
    _gen(dev)


def _deve_from_rtpi(dev: "SeDevice", acl: tuple, rtpi: int) -> Optional[Nexus]:
    """core_get_se_deve_from_rtpi: the ACL's mapped LUN on the port ``rtpi`` (here: a nexus
    of that initiator seen on that port)."""
    for n in runtime(dev).seen.values():
        if _acl(n) == acl and n.port.rtpi == rtpi:
            return n
    return None


def _acl_exists(dev: "SeDevice", port: TargetPort, initiator: str) -> bool:
    """__core_tpg_get_initiator_node_acl (here: the initiator was seen on that TPG)."""
    want = _tpg(port) + (initiator,)
    return any(_acl(n) == want for n in runtime(dev).seen.values())


def _decode_spec_i_port(cmd: "Command", buf: bytes, sa_res_key: int, all_tg_pt: bool,
                        aptpl: bool) -> None:
    """core_scsi3_decode_spec_i_port: register the local nexus and every TransportID."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    length = len(buf)
    local, local_atp = _alloc_registration(dev, nexus.initiator, nexus.port, nexus.lun,
                                           _isid(nexus), sa_res_key, all_tg_pt, aptpl)
    local.nexus = nexus
    dests: list[tuple[Registration, list[Registration], TargetPort, int]] = []
    if length < 28:
        log.warn(f"SPC-PR: Received PR OUT parameter list length too small: {length}")
        raise sense.INVALID_PARAMETER_LIST()
    tpdl = struct.unpack(">I", buf[24:28])[0]
    if tpdl + 28 != length:
        log.err(f"SPC-3 PR: Illegal tpdl: {tpdl} + 28 byte header does not equal CDB "
                f"data_length: {length}")
        raise sense.INVALID_PARAMETER_LIST()
    ptr = 28
    while tpdl > 0:
        tid = buf[ptr:]
        proto_ident = tid[0] & 0x0F if tid else -1
        dest_port = None
        i_str, iport, tid_len, dest_rtpi = "", None, 0, 0
        for p in dev.luns:
            if p.proto_id != proto_ident:
                continue
            dest_rtpi = p.rtpi
            parsed = parse_transport_id(p.proto_id, tid)
            if parsed is None:
                continue
            i_str, iport, tid_len = parsed
            if (_sid_fabric(nexus.port) and dev.attrib.enforce_pr_isids and iport is None):
                log.warn(f"SPC-PR: enforce_pr_isids is set but a isid has not been sent in "
                         f"the SPEC_I_PT data for {i_str}.")
                raise sense.INVALID_PARAMETER_LIST()
            if not _acl_exists(dev, p, i_str):
                continue
            dest_port = p
            log.debug(f"SPC-3 PR SPEC_I_PT: Located {p.fabric} Node: {i_str} Port RTPI: "
                      f"{dest_rtpi}")
            break
        if dest_port is None:
            log.err("SPC-3 PR SPEC_I_PT: Unable to locate dest_tpg")
            raise sense.INVALID_PARAMETER_LIST()
        log.debug(f"SPC-3 PR SPEC_I_PT: Got {dest_port.fabric} data_length: {length} tpdl: "
                  f"{tpdl} tid_len: {tid_len} for {i_str} + {iport}")
        if tid_len > tpdl:
            log.err(f"SPC-3 PR SPEC_I_PT: Illegal tid_len: {tid_len} for Transport ID: "
                    f"{i_str}")
            raise sense.INVALID_PARAMETER_LIST()
        dest_acl = _tpg(dest_port) + (i_str,)
        deve = _deve_from_rtpi(dev, dest_acl, dest_rtpi)
        if deve is None:
            log.err(f"Unable to locate {dest_port.fabric} dest_se_deve from destination "
                    f"RTPI: {dest_rtpi}")
            raise sense.INVALID_PARAMETER_LIST()
        log.debug(f"SPC-3 PR SPEC_I_PT: Located {dest_port.fabric} Node: {i_str} "
                  f"dest_se_deve mapped_lun: {deve.lun}")
        if _locate(dev, dest_acl, iport, _sid_fabric(dest_port)) is None:
            reg, atp = _alloc_registration(dev, i_str, deve.port, deve.lun, iport,
                                           sa_res_key, all_tg_pt, aptpl)
            dests.append((reg, atp, dest_port, deve.lun))
        ptr += tid_len
        tpdl -= tid_len
    for reg, atp, port, mlun in [(local, local_atp, nexus.port, nexus.lun)] + dests:
        _add_registration(dev, reg, REGISTER, atp=tuple(atp))
        log.debug(f"SPC-3 PR [{port.fabric}] SPEC_I_PT: Successfully registered Transport "
                  f"ID for Node: {reg.initiator}{_ibuf(reg)} Mapped LUN: {mlun}")


def _pro_register_and_move(cmd: "Command", buf: bytes, res_key: int, sa_res_key: int,
                           aptpl: bool, unreg: bool) -> None:
    """core_scsi3_emulate_pro_register_and_move (spc4r17 5.7.8)."""
    dev, nexus, log = cmd.dev, cmd.nexus, cmd.dev.log
    length = len(buf)
    reg = _caller_registration(cmd, "REGISTER_AND_MOVE")
    if res_key != reg.key:
        log.warn(f"SPC-3 PR REGISTER_AND_MOVE: Received res_key: 0x{res_key:016x} does not "
                 f"match existing SA REGISTER res_key: 0x{reg.key:016x}")
        raise ReservationConflict()
    if not sa_res_key:
        log.warn("SPC-3 PR REGISTER_AND_MOVE: Received zero sa_res_key")
        raise sense.INVALID_PARAMETER_LIST()
    rtpi = struct.unpack(">H", buf[18:20])[0]
    tid_len = struct.unpack(">I", buf[20:24])[0]
    if tid_len + 24 != length:
        log.err(f"SPC-3 PR: Illegal tid_len: {tid_len} + 24 byte header does not equal CDB "
                f"data_length: {length}")
        raise sense.INVALID_PARAMETER_LIST()
    dest_port = next((p for p in dev.luns if p.rtpi == rtpi), None)
    if dest_port is None:
        log.err(f"SPC-3 PR REGISTER_AND_MOVE: Unable to locate fabric ops from Relative "
                f"Target Port Identifier: {rtpi}")
        raise sense.INVALID_PARAMETER_LIST()
    proto_ident = buf[24] & 0x0F
    log.debug(f"SPC-3 PR REGISTER_AND_MOVE: Extracted Protocol Identifier: 0x{proto_ident:02x}")
    if proto_ident != dest_port.proto_id:
        log.err(f"SPC-3 PR REGISTER_AND_MOVE: Received proto_ident: 0x{proto_ident:02x} does "
                f"not match ident: 0x{dest_port.proto_id:02x} from fabric: {dest_port.fabric}")
        raise sense.INVALID_PARAMETER_LIST()
    parsed = parse_transport_id(dest_port.proto_id, buf[24:])
    if parsed is None:
        log.err("SPC-3 PR REGISTER_AND_MOVE: Unable to locate initiator_str from Transport ID")
        raise sense.INVALID_PARAMETER_LIST()
    i_str, iport, _ = parsed
    log.debug(f"SPC-3 PR [{dest_port.fabric}] Extracted initiator "
              f"{'port' if iport is not None else 'device'} identifier: {i_str} "
              f"{iport if iport is not None else ''}")
    if i_str == reg.initiator:
        if iport is None or reg.isid is None:
            log.err(f"SPC-3 PR REGISTER_AND_MOVE: TransportID: {i_str} matches: "
                    f"{reg.initiator} on received I_T Nexus")
            raise sense.INVALID_PARAMETER_LIST()
        if iport == reg.isid:
            log.err(f"SPC-3 PR REGISTER_AND_MOVE: TransportID: {i_str} {iport} matches: "
                    f"{reg.initiator} {reg.isid} on received I_T Nexus")
            raise sense.INVALID_PARAMETER_LIST()
    if not _acl_exists(dev, dest_port, i_str):
        log.err(f"Unable to locate {dest_port.fabric} dest_node_acl for TransportID{i_str}")
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"SPC-3 PR REGISTER_AND_MOVE: Found {dest_port.fabric} dest_node_acl: {i_str} "
              f"from TransportID")
    dest_acl = _tpg(dest_port) + (i_str,)
    deve = _deve_from_rtpi(dev, dest_acl, rtpi)
    if deve is None:
        log.err(f"Unable to locate {dest_port.fabric} dest_se_deve from RTPI: {rtpi}")
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"SPC-3 PR REGISTER_AND_MOVE: Located {dest_port.fabric} node {i_str} LUN ACL "
              f"for dest_se_deve->mapped_lun: {deve.lun}")
    holder = dev.pr.holder
    if holder is None:
        log.warn("SPC-3 PR REGISTER_AND_MOVE: No reservation currently held")
        raise sense.INVALID_CDB_FIELD()
    if not _is_holder(holder, reg):
        log.warn("SPC-3 PR REGISTER_AND_MOVE: Calling I_T Nexus is not reservation holder")
        raise ReservationConflict()
    if holder.res_type in ALL_REG:
        log.warn(f"SPC-3 PR REGISTER_AND_MOVE: Unable to move reservation for type: "
                 f"{pr_type_name(holder.res_type)}")
        raise ReservationConflict()
    pr_type = holder.res_type
    scope = holder.res_type  # sic: the kernel copies the type into the scope
    dest = _locate(dev, dest_acl, iport, _sid_fabric(dest_port))
    new_reg = False
    if dest is None:
        dest, _ = _alloc_registration(dev, i_str, deve.port, deve.lun, iport, sa_res_key,
                                      False, aptpl)
        _add_registration(dev, dest, REGISTER_AND_MOVE, register_move=True)
        new_reg = True
    _complete_pro_release(dev, (holder.fabric, holder.initiator), holder, False, False)
    dest.res_holder, dest.res_type = True, pr_type
    dev.pr.holder, dev.pr.res_type, dev.pr.res_scope = dest, pr_type, dest.res_scope
    reg.res_scope = scope
    if not new_reg:
        dest.generation = _gen(dev)
    log.debug(f"SPC-3 PR [{dest_port.fabric}] Service Action: REGISTER_AND_MOVE created new "
              f"reservation holder TYPE: {pr_type_name(pr_type)} on object RTPI: {rtpi}  "
              f"PRGeneration: 0x{dest.generation:08x}")
    log.debug(f"SPC-3 PR Successfully moved reservation from {nexus.port.fabric} Fabric Node: "
              f"{reg.initiator}{_ibuf(reg)} -> {dest_port.fabric} Fabric Node: {i_str} "
              f"{iport if iport is not None else ''}")
    if unreg:
        _free_registration(dev, reg)
    try:
        _update_and_write_aptpl(dev, aptpl)
    except sense.SenseError:
        pass
