"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS, as the kernel's target_core_xcopy.c runs them.

EXTENDED COPY moves blocks between two devices the target itself reaches. Its parameter
list carries one block-to-block segment descriptor (02h) naming two copy source/destination
(CSCD) descriptors by index; each CSCD descriptor is an Identification Descriptor (E4h)
holding a 16-byte NAA IEEE Registered Extended designator, the one VPD page 83h reports.
One of the two must be the device the command came in on; the other is looked up among the
devices mapped to the initiator's node ACL (newest mapping first) that have emulate_3pc
set. Anything else is refused with the kernel's sense: the limits RECEIVE COPY RESULTS
reports (two CSCD descriptors, one segment, a 1024-byte descriptor list, no inline data),
unknown descriptor types, a device that cannot be found (COPY ABORTED, COPY TARGET DEVICE
NOT REACHABLE, which tells the initiator to fall back to reads and writes).

The copy runs as the kernel's work item does: READ(16) then WRITE(16) pass-through commands
in chunks of at most 16 MiB (and each device's hw_max_sectors * hw_block_size; 1024 or 4096
blocks in older kernels: the ``xcopy_chunk`` row of simfs.core.kernels), each parsed
by SBC (LBA range) and checked for ALUA state and reservations on a session of its own that
no initiator owns. The first failing chunk ends the copy with COPY ABORTED; chunks already
written stay written.

RECEIVE COPY RESULTS answers OPERATING PARAMETERS (03h) only, with list identifier 0: the
kernel keeps no copy state, so COPY STATUS, RECEIVE DATA and FAILED SEGMENT DETAILS are
INVALID FIELD IN CDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

from simfs.scsi import alua, pr, sbc, sense, vpd
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT, Command, Nexus, TargetPort
from simfs.scsi.sense import ReservationConflict, SenseError

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

#: the opcodes this module parses (the engine's opcode table routes them here)
OPCODES = frozenset({S.EXTENDED_COPY, S.RECEIVE_COPY_RESULTS})

# target_core_xcopy.h
XCOPY_HDR_LEN = 16
XCOPY_TARGET_DESC_LEN = 32
XCOPY_SEGMENT_DESC_LEN = 28
XCOPY_NAA_IEEE_REGEX_LEN = 16
#: the newest kernels' chunk limit (the table's ``xcopy_chunk`` row says each version's)
XCOPY_MAX_BYTES = 16 << 20
#: SPC-4 table 150: CSCD descriptor IDs above this name no descriptor in the list
XCOPY_CSCD_DESC_ID_LIST_OFF_MAX = 0x07FF
SEG_BLOCK_TO_BLOCK = 0x02
CSCD_IDENTIFICATION = 0xE4

RCR_SA_COPY_STATUS = 0x00
RCR_SA_RECEIVE_DATA = 0x01
RCR_SA_OPERATING_PARAMETERS = 0x03
RCR_SA_FAILED_SEGMENT_DETAILS = 0x04

RCR_OP_MAX_TARGET_DESC_COUNT = 2
RCR_OP_MAX_SG_DESC_COUNT = 1
RCR_OP_MAX_DESC_LIST_LEN = 1024
RCR_OP_MAX_SEGMENT_LEN = 256 << 20
RCR_OP_TOTAL_CONCURR_COPIES = 1
RCR_OP_MAX_CONCURR_COPIES = 1
RCR_OP_GRAN_LOG2 = 9  # data segment, inline data and held data granularity: 512 bytes
#: the shortest allocation length OPERATING PARAMETERS accepts
RCR_OP_MIN_ALLOC = 54

# xcopy_origin_list: which CSCD descriptor names the device the command came in on
XCOL_SOURCE_RECV_OP, XCOL_DEST_RECV_OP = 0x01, 0x02
#: -EINVAL, the rc the kernel's failure line prints for a failed pass-through command
_EINVAL = -22


def _be(b: bytes, off: int, n: int) -> int:
    return int.from_bytes(b[off:off + n], "big")


def _ph(b: bytes) -> str:
    """%*ph: bytes as space-separated hex."""
    return " ".join(f"{x:02x}" for x in b)


@dataclass
class XcopyOp:
    """struct xcopy_op: what the parameter list asks for, once its devices are found."""

    origin: int = 0
    src_dev: Optional["SeDevice"] = None
    dst_dev: Optional["SeDevice"] = None
    src_tid: bytes = b""
    dst_tid: bytes = b""
    stdi: int = 0
    dtdi: int = 0
    nolb: int = 0
    src_lba: int = 0
    dst_lba: int = 0


# -- parse --------------------------------------------------------------------------------------
def parse(cmd: Command) -> bool:
    """spc_parse_cdb's EXTENDED COPY and RECEIVE COPY RESULTS: both carry their length in
    CDB bytes 10-13 and are parsed whatever emulate_3pc says (it is checked when they run,
    after the unit attention, ALUA and reservation checks). Kernels before 3.12 (v3.0) know
    neither opcode."""
    if not cmd.dev.core.kernel.has("xcopy"):
        return False
    size = _be(cmd.cdb, 10, 4)
    if cmd.opcode == S.EXTENDED_COPY:
        cmd.ctx["data_length"] = _control_size_check(cmd, size)
        cmd.prepare = _prepare_xcopy
        cmd.execute = _execute_xcopy
        # the copy itself runs outside the tree lock, like any data transfer
        cmd.ctx["io"] = True
    else:
        cmd.direction = DATA_IN
        cmd.alloc_len = size
        cmd.execute = _execute_rcr
    return True


def _control_size_check(cmd: Command, size: int) -> int:
    """target_cmd_size_check for a control CDB: the initiator's data against the CDB's
    length. Returns the command's data length."""
    have = len(cmd.data_out)
    cmd.direction = DATA_OUT if have else DATA_NONE
    if size == have:
        return size
    if not have:
        # nothing sent: the length stays 0 (and the copy does nothing)
        cmd.warn_length_mismatch(have, size)
        cmd.check_residual_block_size()
        return 0
    return cmd.control_size_check(size)


# -- EXTENDED COPY ------------------------------------------------------------------------------
def _prepare_xcopy(cmd: Command) -> None:
    """target_do_xcopy, then the work item's parameter-list parsing and device lookup (under
    the tree lock: the lookup walks the ACL's mapped LUNs)."""
    dev, log = cmd.dev, cmd.dev.log
    cmd.ctx["xop"] = None
    if not dev.attrib.emulate_3pc:
        log.err("EXTENDED_COPY operation explicitly disabled")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    if cmd.cdb[1] & 0x1F:
        log.err("EXTENDED_COPY(LID4) not supported")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    n = cmd.ctx["data_length"]
    if n == 0:
        return
    if n < XCOPY_HDR_LEN:
        log.err(f"XCOPY parameter truncation: length {n} < hdr_len {XCOPY_HDR_LEN}")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    try:
        xop = _parse_parameter_list(cmd, cmd.data_out[:n])
    except SenseError as e:
        raise _work_failed(cmd, 0, e) from None
    cmd.ctx["xop"] = xop
    cmd.io_devices = [xop.src_dev, xop.dst_dev]


def _work_failed(cmd: Command, rc: int, e: SenseError) -> SenseError:
    """target_xcopy_do_work's failure path: one warning, then CHECK CONDITION with the
    reason found (target_complete_cmd_with_sense). Before 5.15 the reason was dropped: the
    command completed with a bare CHECK CONDITION, which the core turns into LOGICAL UNIT
    COMMUNICATION FAILURE."""
    log = cmd.dev.log
    if cmd.dev.core.kernel.value("xcopy_failure_sense") != "specific":
        log.warn(f"target_xcopy_do_work: rc: {rc}, Setting X-COPY CHECK_CONDITION -> sending "
                 "response")
        return sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    log.warn(f"target_xcopy_do_work: rc: {rc}, sense: {e.tcm}, XCOPY operation failed")
    return e


def _parse_parameter_list(cmd: Command, p: bytes) -> XcopyOp:
    """target_parse_xcopy_cmd: header, then the segment descriptors (their CSCD indexes say
    which target descriptors matter), then the target descriptors."""
    log = cmd.dev.log
    list_id, list_id_usage = p[0], (p[1] & 0x18) >> 3
    tdll, sdll = _be(p, 2, 2), _be(p, 8, 4)
    if tdll + sdll > RCR_OP_MAX_DESC_LIST_LEN:
        log.err(f"XCOPY descriptor list length {tdll + sdll} exceeds maximum "
                f"{RCR_OP_MAX_DESC_LIST_LEN}")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    inline_dl = _be(p, 12, 4)
    if inline_dl:
        log.err("XCOPY with non zero inline data length")
        raise sense.INVALID_PARAMETER_LIST()
    if len(p) < XCOPY_HDR_LEN + tdll + sdll + inline_dl:
        log.err(f"XCOPY parameter truncation: data length {len(p)} too small for tdll: {tdll} "
                f"sdll: {sdll} inline_dl: {inline_dl}")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    log.debug(f"Processing XCOPY with list_id: 0x{list_id:02x} list_id_usage: "
              f"0x{list_id_usage:02x} tdll: {tdll} sdll: {sdll} inline_dl: {inline_dl}")
    xop = XcopyOp()
    seg = XCOPY_HDR_LEN + tdll
    nseg = _parse_segment_descriptors(cmd, xop, p[seg:seg + sdll])
    if nseg <= 0:
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"XCOPY: Processed {nseg} segment descriptors, length: "
              f"{nseg * XCOPY_SEGMENT_DESC_LEN}")
    # an empty CSCD list cannot name the local device: the lookup below fails first
    ntgt = _parse_target_descriptors(cmd, xop, p[XCOPY_HDR_LEN:seg])
    assert xop.src_dev is not None and xop.dst_dev is not None
    sbs, dbs = xop.src_dev.attrib.block_size, xop.dst_dev.attrib.block_size
    if sbs != dbs:
        log.err(f"XCOPY: Non matching src_dev block_size: {sbs} + dst_dev block_size: {dbs} "
                "currently unsupported")
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    log.debug(f"XCOPY: Processed {ntgt} target descriptors, length: "
              f"{ntgt * XCOPY_TARGET_DESC_LEN}")
    return xop


def _parse_segment_descriptors(cmd: Command, xop: XcopyOp, buf: bytes) -> int:
    log, sdll = cmd.dev.log, len(buf)
    if sdll % XCOPY_SEGMENT_DESC_LEN:
        log.err(f"XCOPY segment descriptor list length is not multiple of "
                f"{XCOPY_SEGMENT_DESC_LEN}")
        raise sense.UNSUPPORTED_SEGMENT_DESC_TYPE_CODE()
    if sdll > RCR_OP_MAX_SG_DESC_COUNT * XCOPY_SEGMENT_DESC_LEN:
        log.err(f"XCOPY supports {RCR_OP_MAX_SG_DESC_COUNT} segment descriptor(s), sdll: "
                f"{sdll} too large..")
        raise sense.TOO_MANY_SEGMENT_DESCS()
    count = 0
    for off in range(0, sdll, XCOPY_SEGMENT_DESC_LEN):
        desc = buf[off:off + XCOPY_SEGMENT_DESC_LEN]
        if desc[0] != SEG_BLOCK_TO_BLOCK:
            # sic: the kernel's message has no space before "type"
            log.err(f"XCOPY unsupported segment descriptortype: 0x{desc[0]:02x}")
            raise sense.UNSUPPORTED_SEGMENT_DESC_TYPE_CODE()
        _parse_segdesc_02(cmd, xop, desc)
        count += 1
    return count


def _parse_segdesc_02(cmd: Command, xop: XcopyOp, desc: bytes) -> None:
    """Block device to block device: CSCD indexes, NUMBER OF BLOCKS, the two LBAs."""
    log = cmd.dev.log
    desc_len = _be(desc, 2, 2)
    if desc_len != 0x18:
        log.err(f"XCOPY segment desc 0x02: Illegal desc_len: {desc_len}")
        raise sense.INVALID_PARAMETER_LIST()
    xop.stdi, xop.dtdi = _be(desc, 4, 2), _be(desc, 6, 2)
    if xop.stdi > XCOPY_CSCD_DESC_ID_LIST_OFF_MAX or xop.dtdi > XCOPY_CSCD_DESC_ID_LIST_OFF_MAX:
        log.err(f"XCOPY segment desc 0x02: unsupported CSCD ID > "
                f"0x{XCOPY_CSCD_DESC_ID_LIST_OFF_MAX:x}; stdi: {xop.stdi} dtdi: {xop.dtdi}")
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"XCOPY seg desc 0x02: desc_len: {desc_len} stdi: {xop.stdi} dtdi: {xop.dtdi}, "
              f"DC: {desc[1] & 0x02}")
    xop.nolb = _be(desc, 10, 2)
    xop.src_lba, xop.dst_lba = _be(desc, 12, 8), _be(desc, 20, 8)
    log.debug(f"XCOPY seg desc 0x02: nolb: {xop.nolb} src_lba: {xop.src_lba} "
              f"dst_lba: {xop.dst_lba}")


def _parse_target_descriptors(cmd: Command, xop: XcopyOp, buf: bytes) -> int:
    """target_xcopy_parse_target_descriptors: returns how many CSCD descriptors there were."""
    log, tdll = cmd.dev.log, len(buf)
    if tdll % XCOPY_TARGET_DESC_LEN:
        log.err(f"XCOPY target descriptor list length is not multiple of "
                f"{XCOPY_TARGET_DESC_LEN}")
        raise sense.UNSUPPORTED_TARGET_DESC_TYPE_CODE()
    if tdll > RCR_OP_MAX_TARGET_DESC_COUNT * XCOPY_TARGET_DESC_LEN:
        log.err(f"XCOPY target descriptor supports a maximum two src/dest descriptors, tdll: "
                f"{tdll} too large..")
        raise sense.TOO_MANY_TARGET_DESCS()
    local = vpd.naa_6h(cmd.dev)
    index = 0
    for off in range(0, tdll, XCOPY_TARGET_DESC_LEN):
        desc = buf[off:off + XCOPY_TARGET_DESC_LEN]
        if desc[0] != CSCD_IDENTIFICATION:
            log.err(f"XCOPY unsupported descriptor type code: 0x{desc[0]:02x}")
            raise sense.UNSUPPORTED_TARGET_DESC_TYPE_CODE()
        _parse_tiddesc_e4(cmd, xop, desc, index, local)
        index += 1
    if xop.origin == XCOL_SOURCE_RECV_OP:
        xop.dst_dev = _locate(cmd, xop.dst_tid)
        found = xop.dst_dev
    elif xop.origin == XCOL_DEST_RECV_OP:
        xop.src_dev = _locate(cmd, xop.src_tid)
        found = xop.src_dev
    else:
        log.err(f"XCOPY CSCD descriptor IDs not found in CSCD list - stdi: {xop.stdi} "
                f"dtdi: {xop.dtdi}")
        found = None
    if found is None:
        # the designated device is not on this target: the initiator falls back to
        # ordinary reads and writes
        raise sense.COPY_TARGET_DEVICE_NOT_REACHABLE()
    kptr = cmd.dev.core.profile.kptr
    log.debug(f"XCOPY TGT desc: Source dev: {kptr(xop.src_dev)} NAA IEEE WWN: "
              f"0x{xop.src_tid.hex()}")
    log.debug(f"XCOPY TGT desc: Dest dev: {kptr(xop.dst_dev)} NAA IEEE WWN: "
              f"0x{xop.dst_tid.hex()}")
    return index


def _parse_tiddesc_e4(cmd: Command, xop: XcopyOp, desc: bytes, index: int,
                      local: bytes) -> None:
    """An Identification Descriptor CSCD descriptor: only a binary, LU-associated, 16-byte
    NAA type 6 designator will do. LU ID TYPE, NUL and the peripheral type are ignored."""
    log = cmd.dev.log
    log.debug(f"XCOPY 0xe4: RELATIVE INITIATOR PORT IDENTIFIER: {_be(desc, 2, 2)}")
    if desc[4] & 0x0F != 0x1:
        log.err("XCOPY 0xe4: code set of non binary type not supported")
        raise sense.INVALID_PARAMETER_LIST()
    if desc[5] & 0x30:
        log.err("XCOPY 0xe4: association other than LUN not supported")
        raise sense.INVALID_PARAMETER_LIST()
    if desc[5] & 0x0F != 0x3:
        log.err(f"XCOPY 0xe4: designator type unsupported: 0x{desc[5] & 0x0F:02x}")
        raise sense.INVALID_PARAMETER_LIST()
    if desc[7] != XCOPY_NAA_IEEE_REGEX_LEN:
        log.err(f"XCOPY 0xe4: invalid desig_len: {desc[7]}")
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"XCOPY 0xe4: desig_len: {desc[7]}")
    if desc[8] & 0xF0 != 0x60:
        log.err(f"XCOPY 0xe4: Unsupported DESIGNATOR TYPE: 0x{desc[8] & 0xF0:02x}")
        raise sense.INVALID_PARAMETER_LIST()
    if index not in (xop.stdi, xop.dtdi):
        log.debug(f"XCOPY 0xe4: ignoring CSCD entry {index} - neither src nor dest")
        return
    wwn = bytes(desc[8:8 + XCOPY_NAA_IEEE_REGEX_LEN])
    kptr = cmd.dev.core.profile.kptr
    if index == xop.stdi:
        xop.src_tid = wwn
        if wwn == local:
            xop.origin, xop.src_dev = XCOL_SOURCE_RECV_OP, cmd.dev
            log.debug(f"XCOPY 0xe4: Set xop->src_dev {kptr(cmd.dev)} from source received xop")
    if index == xop.dtdi:
        xop.dst_tid = wwn
        # a descriptor that is both source and destination makes this a "destination" copy
        if wwn == local:
            xop.origin, xop.dst_dev = XCOL_DEST_RECV_OP, cmd.dev
            log.debug(f"XCOPY 0xe4: Set xop->dst_dev: {kptr(cmd.dev)} from destination "
                      "received xop")


def _candidates(cmd: Command) -> Iterator["SeDevice"]:
    """The devices the lookup considers: those mapped to the session's node ACL, newest
    mapping first (its lun_entry_hlist). A nexus without an ACL (``simfs scsi``, tests)
    sees the LUNs of its portal group, as a demo-mode ACL would. Before 5.11 the kernel
    walked every enabled device of the system, in device index order."""
    if cmd.dev.core.kernel.value("xcopy_lookup") == "devices":
        devices = [d for hba in cmd.dev.core.hbas.values() for d in hba.devices.values()
                   if d.configured]
        yield from sorted(devices, key=lambda d: d.dev_index)
        return
    acl = cmd.nexus.acl
    if acl is not None:
        for mapped in acl.report_luns():
            deve = acl.deves.get(mapped)
            if deve is not None and deve.lun.dev is not None:
                yield deve.lun.dev
        return
    me = cmd.nexus.port
    for hba in cmd.dev.core.hbas.values():
        for dev in hba.devices.values():
            if any((p.fabric, p.wwn, p.tpgt) == (me.fabric, me.wwn, me.tpgt)
                   for p in dev.luns):
                yield dev


def _locate(cmd: Command, wwn: bytes) -> Optional["SeDevice"]:
    """target_xcopy_locate_se_dev_e4: the first candidate with emulate_3pc whose NAA
    designator is ``wwn``."""
    log, kptr = cmd.dev.log, cmd.dev.core.profile.kptr
    log.debug(f"XCOPY 0xe4: searching for: {_ph(wwn)}")
    for dev in _candidates(cmd):
        if not dev.attrib.emulate_3pc:
            log.debug(f"XCOPY: emulate_3pc disabled on se_dev {kptr(dev)}")
            continue
        naa = vpd.naa_6h(dev)
        if naa != wwn:
            log.debug(f"XCOPY: skip non-matching: {_ph(naa)}")
            continue
        log.debug(f"XCOPY 0xe4: located se_dev: {kptr(dev)}")
        return dev
    log.debug("Unable to locate 0xe4 descriptor for EXTENDED_COPY")
    return None


def _execute_xcopy(cmd: Command) -> None:
    """target_xcopy_do_work's copy loop, with both devices' I/O locks held."""
    xop: Optional[XcopyOp] = cmd.ctx.get("xop")
    if xop is None:
        return None  # no parameter list: nothing to copy
    src, dst = xop.src_dev, xop.dst_dev
    assert src is not None and dst is not None
    log, kptr = cmd.dev.log, cmd.dev.core.profile.kptr
    sa, da = src.attrib, dst.attrib
    bs = sa.block_size
    nolb, src_lba, dst_lba = xop.nolb, xop.src_lba, xop.dst_lba
    unit, limit = cmd.dev.core.kernel.value("xcopy_chunk")
    if unit == "bytes":
        max_bytes = min(sa.hw_max_sectors * sa.hw_block_size,
                        da.hw_max_sectors * da.hw_block_size, limit)
        log.debug(f"target_xcopy_do_work: nolb: {nolb}, max_blocks: {max_bytes // bs} "
                  f"end_lba: {src_lba + nolb}")
    else:
        # XCOPY_MAX_SECTORS: a count of blocks, whatever their size (u16 at most)
        max_nolb = min(sa.hw_max_sectors, da.hw_max_sectors, limit, 0xFFFF)
        max_bytes = max_nolb * bs
        log.debug(f"target_xcopy_do_work: nolb: {nolb}, max_nolb: {max_nolb} end_lba: "
                  f"{src_lba + nolb}")
    copied = 0
    while nolb:
        cur_bytes = min(max_bytes, nolb * bs)
        cur_nolb = cur_bytes // bs
        try:
            if not cur_nolb:
                # a chunk smaller than one block would never advance
                raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
            log.debug(f"target_xcopy_do_work: Calling read src_dev: {kptr(src)} src_lba: "
                      f"{src_lba}, cur_nolb: {cur_nolb}")
            data = _pass_through(cmd, src, _rw16(S.READ_16, src_lba, cur_nolb), b"",
                                 remote=xop.origin == XCOL_DEST_RECV_OP)
            src_lba += cur_nolb
            log.debug(f"target_xcopy_do_work: Calling write dst_dev: {kptr(dst)} dst_lba: "
                      f"{dst_lba}, cur_nolb: {cur_nolb}")
            _pass_through(cmd, dst, _rw16(S.WRITE_16, dst_lba, cur_nolb), data or b"",
                          remote=xop.origin == XCOL_SOURCE_RECV_OP)
            dst_lba += cur_nolb
        except (SenseError, ReservationConflict):
            # aborted after (perhaps) some data moved: COPY ABORTED
            raise _work_failed(cmd, _EINVAL, sense.COPY_TARGET_DEVICE_NOT_REACHABLE()) from None
        copied += cur_bytes
        nolb -= cur_nolb
    log.debug(f"target_xcopy_do_work: Blocks copied: {copied // dst.attrib.block_size}, "
              f"Bytes Copied: {copied}")
    return None


def _rw16(op: int, lba: int, blocks: int) -> bytes:
    return bytes([op, 0]) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big") + bytes(2)


def _xcopy_port(dev: "SeDevice") -> TargetPort:
    """se_device->xcopy_lun: a LUN of no portal group (no ALUA state) the copy reaches
    the other device through."""
    return TargetPort(fabric="xcopy-pt", wwn="", tpgt=0, rtpi=0, lun=0, dev=dev)


def _pass_through(cmd: Command, dev: "SeDevice", cdb: bytes, data_out: bytes,
                  remote: bool) -> Optional[bytes]:
    """One READ(16)/WRITE(16) of the copy (target_xcopy_setup_pt_cmd + issue): parsed by
    SBC, checked like any command of the copy's own session (an empty node ACL: no unit
    attention reaches it, and it holds no registration), then run."""
    port = _xcopy_port(dev) if remote else cmd.nexus.port
    pt = Command(nexus=Nexus(initiator="", port=port), dev=dev, cdb=cdb, data_out=data_out)
    if not sbc.parse(pt):
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()
    alua.state_check(pt, note=False)
    if pr.check_reservation(pt, note=False):
        raise ReservationConflict()
    assert pt.execute is not None
    return pt.execute(pt)


# -- RECEIVE COPY RESULTS -----------------------------------------------------------------------
def _execute_rcr(cmd: Command) -> bytes:
    """target_do_receive_copy_results."""
    dev, cdb, log = cmd.dev, cmd.cdb, cmd.dev.log
    sa, list_id = cdb[1] & 0x1F, cdb[2]
    n = cmd.alloc_len or 0
    if dev.core.kernel.has("rcr_3pc_check") and not dev.attrib.emulate_3pc:
        log.debug("Third-party copy operations explicitly disabled")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    log.debug(f"Entering target_do_receive_copy_results: SA: 0x{sa:02x}, List ID: "
              f"0x{list_id:02x}, AL: {n}")
    if list_id:
        log.err("Receive Copy Results with non zero list identifier not supported")
        raise sense.INVALID_CDB_FIELD()
    if sa != RCR_SA_OPERATING_PARAMETERS:
        # COPY STATUS, RECEIVE DATA, FAILED SEGMENT DETAILS: no copy state is kept
        log.err(f"Unsupported SA for receive copy results: 0x{sa:02x}")
        raise sense.INVALID_CDB_FIELD()
    return operating_parameters(cmd, n)


def operating_parameters(cmd: Command, alloc: int) -> bytes:
    """target_rcr_operating_parameters: the copy manager's limits, in a buffer of the whole
    allocation length (the kernel transfers all of it, zeros after byte 45)."""
    if alloc < RCR_OP_MIN_ALLOC:
        cmd.dev.log.err(f"Receive Copy Results Op Parameters length too small: {alloc}")
        raise sense.INVALID_CDB_FIELD()
    buf = bytearray(alloc)
    buf[0:4] = (42).to_bytes(4, "big")  # AVAILABLE DATA (n - 3)
    buf[4] = 0x01  # SNLID: supports no list identifier
    buf[8:10] = RCR_OP_MAX_TARGET_DESC_COUNT.to_bytes(2, "big")
    buf[10:12] = RCR_OP_MAX_SG_DESC_COUNT.to_bytes(2, "big")
    buf[12:16] = RCR_OP_MAX_DESC_LIST_LEN.to_bytes(4, "big")
    buf[16:20] = RCR_OP_MAX_SEGMENT_LEN.to_bytes(4, "big")
    # MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE TRANSFER SIZE: 0
    buf[34:36] = RCR_OP_TOTAL_CONCURR_COPIES.to_bytes(2, "big")
    buf[36] = RCR_OP_MAX_CONCURR_COPIES
    buf[37] = buf[38] = buf[39] = RCR_OP_GRAN_LOG2
    buf[43] = 2  # IMPLEMENTED DESCRIPTOR LIST LENGTH
    buf[44], buf[45] = SEG_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION
    return bytes(buf)
