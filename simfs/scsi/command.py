"""What a command carries: the I_T nexus it came on, the CDB, the data; and its result.

The target port (:class:`TargetPort`) is the core's (``simfs.core.port``); it is named here too
because every command path starts from one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from simfs.core.port import TargetPort
from simfs.scsi import sense
from simfs.scsi import status as S

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

__all__ = ["Command", "DATA_IN", "DATA_NONE", "DATA_OUT", "Nexus", "Result", "TargetPort"]


@dataclass(frozen=True)
class Nexus:
    """An I_T nexus: initiator port (ACL name and, for iSCSI, ISID) and target port."""

    initiator: str
    port: TargetPort = field(default_factory=TargetPort)
    isid: Optional[str] = None
    #: the mapped LUN number the initiator sees (defaults to the port's LUN)
    mapped_lun: Optional[int] = None
    #: the initiator's mapping of the LUN is read-only (se_dev_entry lun_access_ro)
    read_only: bool = False
    #: the session's node ACL (the core's NodeAcl: its ``deves`` and ``report_luns()``), None
    #: for a nexus made without one (the ``simfs scsi`` CLI, tests)
    acl: Any = field(default=None, compare=False, repr=False)

    @property
    def lun(self) -> int:
        return self.port.lun if self.mapped_lun is None else self.mapped_lun

    def key(self) -> tuple:
        """Identity of this nexus for per-nexus state (UAs, SPC-2 reservations)."""
        return (self.initiator, self.isid, id(self.port))

    def initiator_port(self) -> str:
        """The initiator port name (iSCSI: ``<name>,i,0x<isid>``)."""
        return self.initiator + (f",i,0x{self.isid}" if self.isid else "")


DATA_NONE, DATA_IN, DATA_OUT = "none", "in", "out"


@dataclass(eq=False)
class Command:
    """One command in flight (the kernel's ``se_cmd``)."""

    nexus: Nexus
    dev: "SeDevice"
    cdb: bytes
    data_out: bytes = b""
    #: the handler that runs the command, chosen at parse time
    execute: Optional[Callable[["Command"], Optional[bytes]]] = None
    #: for data commands (ctx["io"]): runs under the tree lock after the checks, before
    #: ``execute`` runs outside it (EXTENDED COPY parses its parameter list and finds its
    #: devices here)
    prepare: Optional[Callable[["Command"], None]] = None
    #: devices besides ``dev`` whose I/O lock ``execute`` needs (EXTENDED COPY's other device)
    io_devices: list = field(default_factory=list)
    direction: str = DATA_NONE
    #: LBA range the command touches (ALUA LBA-dependent checks, statistics)
    lba: Optional[int] = None
    nblocks: int = 0
    #: allocation length for data-in (the engine truncates to it)
    alloc_len: Optional[int] = None
    #: extra context a handler keeps between parse and execute
    ctx: dict = field(default_factory=dict)
    #: what the fabric announced (se_cmd data_length / data_direction: iSCSI's EDTL and its
    #: R/W flags); None where no fabric says (the ``simfs scsi`` CLI, tests): then the data
    #: sent stands for both
    fabric_length: Optional[int] = None
    fabric_direction: Optional[str] = None

    @property
    def opcode(self) -> int:
        return self.cdb[0]

    @property
    def write_protected(self) -> bool:
        """transport_lookup_cmd_lun's lun_access_ro: the mapping, the LUN, or a read-only
        device (which makes every LUN read-only) refuses data-out commands."""
        return self.nexus.read_only or self.nexus.port.write_protect or self.dev.read_only

    @property
    def data_length(self) -> int:
        """The transfer length the fabric received or expects (se_cmd data_length)."""
        return len(self.data_out) if self.fabric_length is None else self.fabric_length

    @property
    def data_direction(self) -> str:
        """The fabric's data direction (se_cmd data_direction)."""
        if self.fabric_direction is not None:
            return self.fabric_direction
        return DATA_OUT if self.data_out else DATA_NONE

    def control_size_check(self, size: int) -> int:
        """target_cmd_size_check for a control CDB asking for ``size`` bytes: returns the
        length the command then works with. A write keeps the longer length the fabric
        received (the kernel does not cut data-out; before 5.12 it did), a write CDB asking
        for more than arrived is refused; a read is cut to the CDB's length."""
        have = self.data_length
        if size == have:
            return size
        self.warn_length_mismatch(have, size)
        direction = self.data_direction
        if direction == DATA_OUT and size > have:
            self.dev.log.err("Rejecting overflow for WRITE control CDB")
            raise self.residual_refused(sense.INVALID_CDB_FIELD())
        self.check_residual_block_size()
        if size < have and (direction == DATA_IN or self.residuals_refused):
            return size
        return have

    @property
    def residuals_refused(self) -> bool:
        """Before 5.12 (the table's ``residuals`` row): residuals of refused commands were
        not signalled, written data was cut to the CDB's length, and devices whose block
        size is not 512 refused every residual."""
        return self.dev.core.kernel.value("residuals") == "reject"

    def warn_length_mismatch(self, have: int, size: int) -> None:
        """target_cmd_size_check's warning when the fabric's length is not the CDB's."""
        self.dev.log.warn(f"TARGET_CORE[{self.nexus.port.fabric}]: Expected Transfer Length: "
                          f"{have} does not match SCSI CDB Length: {size} for SAM Opcode: "
                          f"0x{self.opcode:02x}")

    def residual_refused(self, e: "sense.SenseError") -> "sense.SenseError":
        """``e``, marked as answered without the residual where the kernel refused before
        setting it (before 5.12)."""
        if self.residuals_refused:
            e.residual = False
        return e

    def check_residual_block_size(self) -> None:
        """Before 5.12 a residual on a device whose block size is not 512 was refused
        (whatever the command: reads, SYNCHRONIZE CACHE and control CDBs too)."""
        dev = self.dev
        if self.residuals_refused and dev.attrib.block_size != 512:
            dev.log.err(f"Failing OVERFLOW/UNDERFLOW for LBA op CDB on non 512-byte sector "
                        f"setup subsystem plugin: {dev.backend.name}")
            raise self.residual_refused(sense.INVALID_CDB_FIELD())

    def data_in_size_check(self, size: int) -> None:
        """target_cmd_size_check for a data-in CDB whose length the fabric announced: the
        warning (the fabric reports the residual itself) and the pre-5.12 block size rule."""
        have = self.fabric_length
        if have is None or have == size:
            return
        self.warn_length_mismatch(have, size)
        self.check_residual_block_size()

    @property
    def service_action(self) -> int:
        return self.cdb[1] & 0x1F if len(self.cdb) > 1 else 0


@dataclass
class Result:
    """status, data-in (already truncated to the allocation length), sense bytes."""

    status: int = S.GOOD
    data: bytes = b""
    sense: bytes = b""
    #: False when the command was refused before its residual was set (pre-5.12 kernels):
    #: the fabric then reports no overflow/underflow
    residual: bool = True

    @property
    def ok(self) -> bool:
        return self.status == S.GOOD

    def sense_tuple(self) -> Optional[tuple[int, int, int]]:
        """(key, asc, ascq) decoded from fixed or descriptor sense, or None."""
        s = self.sense
        if not s:
            return None
        if s[0] & 0x7F in (0x72, 0x73):
            return s[1] & 0x0F, s[2], s[3]
        return s[2] & 0x0F, s[12], s[13]
