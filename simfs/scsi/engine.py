"""The command pipeline: parse, then the unit-attention, ALUA and reservation checks, then run.

The order is the modern kernel's (``target_cmd_parse_cdb`` then ``__target_execute_cmd``):
a CDB that does not parse (unknown opcode, bad field, LBA out of range) fails before any
pending unit attention is reported; a parsed command then meets, in turn, the UA check,
the ALUA access-state check and the reservation check, and only then runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import contextlib

from simfs.scsi import alua, fastpath, faults, pr, sbc, sense, spc, state, stats, xcopy
from simfs.scsi import status as S
from simfs.scsi.command import DATA_OUT, Command, Nexus, Result
from simfs.scsi.sense import ReservationConflict, SenseError, StatusError
from simfs.scsi.state import DeviceState
from simfs.core.backend import NOT_HANDLED
from simfs.scsi.ua import INTLCK_ESTABLISH_UA, PREVIOUS_RESERVATION_CONFLICT_STATUS, UnitAttentions
from simfs.scsi import ua as ua_mod

if TYPE_CHECKING:
    from simfs.core.acl import DevEntry
    from simfs.core.core import TargetCore
    from simfs.core.device import SeDevice


#: scsi_command_size_tbl (include/scsi/scsi_common.h): CDB length by opcode group
_COMMAND_SIZE = (6, 10, 10, 12, 16, 12, 10, 10)
#: SCSI_MAX_VARLEN_CDB_SIZE
MAX_VARLEN_CDB_SIZE = 260


def scsi_command_size(cdb: bytes) -> int:
    """scsi_command_size(): the CDB length the opcode implies (VARIABLE LENGTH: byte 7 + 8)."""
    if cdb[0] == S.VARIABLE_LENGTH_CMD:
        return (cdb[7] if len(cdb) > 7 else 0) + 8
    return _COMMAND_SIZE[(cdb[0] >> 5) & 7]


def pad_cdb(cdb: bytes) -> bytes:
    """A CDB as the kernel reads it: fabrics hand the core a fixed, zero-filled CDB buffer
    (the iSCSI BHS's 16 bytes, tcm_loop's 32-byte scsi_cmnd cdb) and it reads
    ``scsi_command_size(cdb)`` bytes of it, so bytes an initiator left out read as zero.
    Bytes beyond that length are kept (and ignored by the parsers)."""
    if not cdb:
        return cdb
    want = scsi_command_size(cdb)
    if cdb[0] == S.VARIABLE_LENGTH_CMD:
        want = max(want, 32)
    return cdb + bytes(max(0, want - len(cdb)))


#: opcode -> parser, for command sets that own whole opcodes; other opcodes go to SBC, then
#: SPC (the kernel's sbc_parse_cdb falling back to spc_parse_cdb)
OPCODE_TABLE = {op: xcopy.parse for op in xcopy.OPCODES}


_PR_OPCODES = frozenset({S.PERSISTENT_RESERVE_IN, S.PERSISTENT_RESERVE_OUT, S.RESERVE,
                         S.RESERVE_10, S.RELEASE, S.RELEASE_10})


def _kernel_keeps(cmd: Command) -> bool:
    """passthrough_parse_cdb: what the kernel answers itself for a passthrough device."""
    op, dev = cmd.opcode, cmd.dev
    if op == S.REPORT_LUNS:
        return True
    if op in _PR_OPCODES and not dev.passthrough_pgr:
        return True
    if op in (S.MAINTENANCE_IN, S.MAINTENANCE_OUT) and not dev.passthrough_alua:
        return (cmd.cdb[1] & 0x1F) == 0x0A  # REPORT / SET TARGET PORT GROUPS
    return False


def scsi_state(dev: "SeDevice") -> DeviceState:
    """The engine's state of ``dev`` (simfs.scsi.state)."""
    return state.of(dev)


def _install_core_hooks(core: "TargetCore") -> None:
    """The engine's side of what the core starts (simfs.core.core.CoreEvents): task
    management (simfs.core.tmr), unit attentions on mappings, APTPL on a new mapping,
    a LUN's ALUA secondary state."""
    events = core.events

    def release_spc2(dev: "SeDevice") -> None:
        if pr.runtime(dev).spc2 is not None:
            pr.release_spc2(dev)
            core.log.debug("LUN_RESET: SCSI-2 Released reservation")

    def dev_ua_allocate(dev: "SeDevice", asc: int, ascq: int) -> None:
        # target_dev_ua_allocate: every mapping of every LUN of the device, whether or not
        # a session used it yet; nexuses without a node ACL (CLI, tests) as they reached it
        deves = [deve for lun in list(getattr(dev, "luns", ())) for deve in list(lun.deves)]
        state.of(dev).ua.allocate_many([*deves, *alua.nexuses(dev)], asc, ascq)

    def ua_allocate(deve: "DevEntry", asc: int, ascq: int) -> None:
        ua_mod.allocate(deve.ua_list, asc, ascq)

    events.release_spc2_reservation = release_spc2
    events.dev_ua_allocate = dev_ua_allocate
    events.ua_allocate = ua_allocate
    events.check_aptpl_registration = pr.check_aptpl_registration
    events.set_secondary_state = alua.set_secondary_state


GOOD = S.GOOD


class ScsiEngine:
    """Feeds CDBs to devices of one :class:`TargetCore`. Thread-safe."""

    def __init__(self, core: "TargetCore"):
        self.core = core
        if core.engine is None:
            core.engine = self  # fabrics and the control socket submit through it
        alua.install(core)
        _install_core_hooks(core)

    @property
    def _lock(self):
        return self.core.tree_lock

    @property
    def log(self):
        return self.core.log

    #: the trace hub (simfs.daemon.trace) while `simfs trace --scsi` listens, else None
    trace = None

    def submit(self, nexus: Nexus, dev: "SeDevice", cdb: bytes, data_out: bytes = b"", *,
               data_length: Optional[int] = None, data_direction: Optional[str] = None) -> Result:
        """Run one command; never raises for SCSI-level errors (they become status/sense).

        A fabric passes what its transport announced: ``data_length`` (the expected transfer
        length) and ``data_direction`` (DATA_IN/DATA_OUT/DATA_NONE); without them the data
        sent stands for both and a read-only LUN refuses what the CDB makes a write."""
        res = None
        if cdb and cdb[0] in fastpath.OPCODES:
            try:
                res = fastpath.submit(self._lock, nexus, dev, cdb, data_out, data_length,
                                      data_direction)
            except (StatusError, SenseError) as e:
                res = self._error_result(dev, e)
        if res is None:
            res = self._submit(nexus, dev, cdb, data_out, data_length, data_direction)
        if res.status == GOOD:
            with self.core.tree_lock:
                stats.completed(nexus, dev, data_length, data_direction, len(data_out),
                                len(res.data))
        if self.trace is not None:
            self.trace.scsi(nexus, dev, cdb, res)
        return res

    def submit_many(self, nexus: Nexus, dev: "SeDevice", cmds: Sequence[tuple]) -> list:
        """Run commands of one nexus in order, each ``(cdb, data_out, data_length,
        data_direction)``, with the outcomes :meth:`submit` gives them one after the other:
        one per command, its Result, or the exception submit would have raised. A run of
        READ/WRITEs that may all take the fast path is checked and counted under one hold
        of the tree lock (:func:`fastpath.submit_run`); any other command runs alone."""
        out: list = []
        i, n = 0, len(cmds)
        while i < n:
            run = []
            if fastpath.OPCODES:  # emptied to compare with the full pipeline (tests)
                try:
                    run = fastpath.submit_run(self._lock, nexus, dev, cmds, i)
                except Exception:  # noqa: BLE001 - submit meets the same and answers it
                    run = []
            if not run:
                cdb, data_out, data_length, data_direction = cmds[i]
                try:
                    out.append(self.submit(nexus, dev, cdb, data_out, data_length=data_length,
                                           data_direction=data_direction))
                except Exception as e:  # noqa: BLE001 - the caller's, as from submit
                    out.append(e)
                i += 1
                continue
            for k, r in enumerate(run):
                if isinstance(r, (StatusError, SenseError)):
                    run[k] = self._error_result(dev, r)
            with self.core.tree_lock:
                for (cdb, data_out, data_length, data_direction), r in zip(cmds[i:], run):
                    if isinstance(r, Result) and r.status == GOOD:
                        stats.completed(nexus, dev, data_length, data_direction,
                                        len(data_out), len(r.data))
            if self.trace is not None:
                for (cdb, *_), r in zip(cmds[i:], run):
                    if isinstance(r, Result):
                        self.trace.scsi(nexus, dev, cdb, r)
            out.extend(run)
            i += len(run)
        return out

    def _submit(self, nexus: Nexus, dev: "SeDevice", cdb: bytes, data_out: bytes,
                data_length: Optional[int] = None, data_direction: Optional[str] = None) -> Result:
        cmd = Command(nexus=nexus, dev=dev, cdb=pad_cdb(bytes(cdb)), data_out=bytes(data_out),
                      fabric_length=data_length, fabric_direction=data_direction)
        st = scsi_state(dev)
        try:
            pr.prefetch(dev)  # shared PR state's I/O, outside the tree lock
            with self._lock:
                if not dev.configured:
                    raise sense.NON_EXISTENT_LUN(why="device not enabled")
                self._parse(cmd)
                stats.parsed(nexus.port)
                self._checks(cmd, st)
                if not cmd.ctx.get("io"):
                    data = self._execute(cmd)
                elif cmd.prepare is not None:
                    cmd.prepare(cmd)
            if cmd.ctx.get("io"):
                # data transfer runs outside the tree lock: configfs stays responsive
                faults.delay(dev)
                with self._io_locks(cmd):
                    data = self._execute(cmd)
        except ReservationConflict:
            with self._lock:
                if dev.attrib.emulate_ua_intlck_ctrl == INTLCK_ESTABLISH_UA:
                    st.ua.allocate(nexus, *PREVIOUS_RESERVATION_CONFLICT_STATUS)
            return Result(status=S.RESERVATION_CONFLICT)
        except (StatusError, SenseError) as e:
            return self._error_result(dev, e)
        data = data or b""
        if cmd.alloc_len is not None:
            data = data[:cmd.alloc_len]
        return Result(status=S.GOOD, data=data)

    # -- stages --------------------------------------------------------------------------
    def _parse(self, cmd: Command) -> None:
        if not cmd.cdb:
            raise sense.INVALID_CDB_FIELD(why="empty CDB")
        if scsi_command_size(cmd.cdb) > MAX_VARLEN_CDB_SIZE:
            # target_setup_cmd_from_cdb (target_cmd_init_cdb in later kernels)
            self.log.err(f"Received SCSI CDB with command_size: {scsi_command_size(cmd.cdb)} "
                         f"that exceeds SCSI_MAX_VARLEN_CDB_SIZE: {MAX_VARLEN_CDB_SIZE}")
            raise sense.INVALID_CDB_FIELD()
        stats.lookup(cmd.nexus, cmd.dev, cmd.fabric_length, cmd.fabric_direction,
                     len(cmd.data_out))
        if cmd.fabric_direction is not None:
            # transport_lookup_cmd_lun, before the CDB is parsed: only what the fabric
            # marked as data-out meets a read-only LUN
            if cmd.fabric_direction == DATA_OUT and cmd.write_protected:
                self._write_protected(cmd)
        parser = OPCODE_TABLE.get(cmd.opcode)
        claimed = parser(cmd) if parser is not None else (sbc.parse(cmd) or spc.parse(cmd))
        if not claimed:
            if cmd.dev.passthrough and cmd.dev.bdev.has_handle_cmd():
                # a passthrough backend that serves whole CDBs gets what nobody parsed
                cmd.ctx["io"] = True
                return
            self.log.debug(f"{cmd.nexus.port.fabric}/{cmd.nexus.initiator}: Unsupported SCSI "
                           f"Opcode 0x{cmd.opcode:02x}, sending CHECK_CONDITION.")
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        assert cmd.execute is not None, f"opcode {cmd.opcode:#x} parsed without a handler"
        # without a fabric's word the CDB's direction stands for it
        if cmd.fabric_direction is None and cmd.direction == DATA_OUT and cmd.write_protected:
            self._write_protected(cmd)

    def _write_protected(self, cmd: Command) -> None:
        if not cmd.nexus.port.virtual_lun0:  # the virtual LUN 0 refuses without a word
            self.log.err(f"TARGET_CORE[{cmd.nexus.port.fabric}]: Detected WRITE_PROTECTED "
                         f"LUN Access for 0x{cmd.nexus.lun:08x}")
        raise sense.WRITE_PROTECTED()

    @staticmethod
    def _execute(cmd: Command) -> Optional[bytes]:
        """Run the command: a passthrough backend that serves whole CDBs (``handle_cmd``)
        sees it first unless the kernel keeps it (passthrough_parse_cdb: REPORT LUNS, and PR
        and ALUA where they are emulated)."""
        dev = cmd.dev
        if dev.passthrough and dev.bdev.has_handle_cmd() and not _kernel_keeps(cmd):
            data = dev.bdev.handle_cmd(cmd)
            if data is not NOT_HANDLED:
                return data
        if cmd.execute is None:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        return cmd.execute(cmd)

    def _checks(self, cmd: Command, st: DeviceState) -> None:
        pending = ua_mod.check(cmd, st.ua)
        if pending:
            raise sense.unit_attention(*pending)
        faults.check_offline(cmd)
        alua.state_check(cmd)
        if pr.check_reservation(cmd):
            raise ReservationConflict()

    @staticmethod
    def _io_locks(cmd: Command):
        """The I/O locks of every device the command touches, taken in one global order
        so two copies running in opposite directions cannot deadlock."""
        if not cmd.io_devices:  # the common case: one device, its lock alone
            return scsi_state(cmd.dev).io_lock
        devs = {id(d): d for d in [cmd.dev, *cmd.io_devices]}
        stack = contextlib.ExitStack()
        for key in sorted(devs):
            stack.enter_context(scsi_state(devs[key]).io_lock)
        return stack

    def _error_result(self, dev: "SeDevice", e) -> Result:
        """The answer to a command that raised StatusError (that status) or SenseError
        (CHECK CONDITION with its sense)."""
        if isinstance(e, StatusError):
            return Result(status=e.status)
        return self._sense_result(dev, e)

    def _sense_result(self, dev: "SeDevice", e: SenseError) -> Result:
        return Result(status=S.CHECK_CONDITION,
                      sense=sense.build_sense(e, descriptor=self._desc_sense(dev)),
                      residual=e.residual)

    @staticmethod
    def _desc_sense(dev: "SeDevice") -> bool:
        try:
            return dev.bdev.get_blocks() > 0xFFFFFFFF
        except Exception:  # noqa: BLE001 - an unconfigured backend has no size
            return False

    # -- helpers for other layers ----------------------------------------------------------
    def unit_attentions(self, dev: "SeDevice") -> UnitAttentions:
        return scsi_state(dev).ua

    def request_sense_ua(self, nexus: Nexus, dev: "SeDevice") -> Optional[tuple[int, int]]:
        return scsi_state(dev).ua.clear_for_request_sense(nexus)
