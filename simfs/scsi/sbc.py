"""SBC-3 block commands, as the modern kernel's target_core_sbc.c parses and runs them.

``parse`` is ``sbc_parse_cdb``: it decodes the CDB, runs the parse-time checks (DPO/FUA,
PROTECT, LBA range, WRITE SAME limits, the transfer-length check of
``target_cmd_size_check``) and picks the handler. The handlers are the kernel's
``sbc_execute_*``/``sbc_emulate_*`` together with the backends' ``execute_*`` ops, reached
only through what the backend device declares (``simfs.core.backend.BackendDevice``): its
data path (``read``/``write``/``flush``/``unmap``, in bytes: LBA * block_size, whatever the
storage's own hw_block_size is), its ``exec_ops``, its largest I/O, its geometry and its
failure log lines.

Settled against the kernel (see the report of the SBC engineer for the file/function):

* which backend ops exist decides a lot: with only ``execute_rw`` (the RAM disk) UNMAP
  and WRITE SAME are unsupported and SYNCHRONIZE CACHE is a no-op without LBA check;
* VERIFY (10/16) never compares: BYTCHK is ignored and the command is a no-op after the
  LBA range check (no MISCOMPARE); VERIFY(12), WRITE AND VERIFY(12), PRE-FETCH, FORMAT
  UNIT and GET LBA STATUS are not emulated (unsupported opcode / invalid SA);
* there is no transfer length limit at parse time any more (hw_max_sectors is only
  advertised); a backend may refuse a single I/O above its ``max_io_bytes`` at execute time;
* FUA/DPO need ``target_check_fua``: a write cache (emulate_write_cache or the backend's
  own, ``get_write_cache``) *and* emulate_fua_write, else INVALID FIELD IN CDB;
* COMPARE AND WRITE reports the offset of the first differing byte in INFORMATION.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from simfs.scsi import faults, sense
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT
from simfs.scsi.sense import SenseError, StatusError
from simfs.scsi.vpd import sup_prot_pass
from simfs.core.backend import BackendDevice, ExecOps

if TYPE_CHECKING:
    from simfs.scsi.command import Command

PAGE_SIZE = 4096
READ_CAP_LEN = 8
WRITE_SAME_32 = 0x000D
SAI_REPORT_REFERRALS = 0x13
REZERO_UNIT = 0x01
SEEK_6 = 0x0B
SEEK_10 = 0x2B

# TCM_INVALID_FIELD_IN_COMMAND_IU (target_core_transport.c sense_detail_table)
INVALID_FIELD_IN_COMMAND_IU = sense._reason(S.ILLEGAL_REQUEST, 0x0E, 0x03)

WRITE_OPCODES = frozenset({S.WRITE_6, S.WRITE_10, S.WRITE_12, S.WRITE_16, S.WRITE_VERIFY,
                           S.WRITE_VERIFY_16, S.WRITE_SAME, S.WRITE_SAME_16, S.UNMAP,
                           S.COMPARE_AND_WRITE})


# -- small helpers ------------------------------------------------------------------------
def _be(b: bytes, start: int, n: int) -> int:
    return int.from_bytes(b[start:start + n], "big")


def exec_ops(dev) -> ExecOps:
    """The exec_cmd_ops the device's backend handed over (which SBC handlers exist)."""
    return dev.bdev.exec_ops


def _bs(dev) -> int:
    return dev.attrib.block_size or dev.attrib.hw_block_size or 512


def target_check_wce(dev) -> bool:
    """target_check_wce: the backend's own cache state (when it has one) or
    emulate_write_cache."""
    bdev = dev.bdev
    if bdev.has_get_write_cache():
        return bool(bdev.get_write_cache())
    return dev.attrib.emulate_write_cache > 0


def target_check_fua(dev) -> bool:
    return target_check_wce(dev) and dev.attrib.emulate_fua_write > 0


class _Parse:
    """What sbc_parse_cdb works out for one command."""

    def __init__(self, cmd: "Command"):
        self.cmd = cmd
        self.dev = cmd.dev
        self.cdb = cmd.cdb + bytes(max(0, 32 - len(cmd.cdb)))
        self.log = cmd.dev.log
        self.sectors = 0
        self.lba = 0
        self.data_cdb = False  # SCF_SCSI_DATA_CDB
        self.caw = False
        self.fua = False
        self.write = cmd.opcode in WRITE_OPCODES


# -- the checks of sbc_parse_cdb --------------------------------------------------------------
def _check_write_protect(cmd: "Command") -> None:
    """transport_lookup_cmd_lun: a DMA_TO_DEVICE command on a read-only LUN (mapped LUN
    write_protect, or a DF_READ_ONLY device) fails before the CDB is parsed."""
    if not cmd.write_protected:
        return
    dev, port = cmd.dev, cmd.nexus.port
    if cmd.opcode == S.VARIABLE_LENGTH_CMD:
        if not cmd.data_out:
            return
    elif cmd.opcode not in WRITE_OPCODES or not _nominal_data_out(cmd):
        return
    if not port.virtual_lun0:  # the virtual LUN 0 refuses without a word
        dev.log.err(f"TARGET_CORE[{port.fabric}]: Detected WRITE_PROTECTED LUN Access for "
                    f"0x{cmd.nexus.lun:08x}")
    raise sense.WRITE_PROTECTED()


def _nominal_data_out(cmd: "Command") -> bool:
    """Would the initiator send data (the fabric's DMA_TO_DEVICE direction)?"""
    if cmd.data_out:
        return True
    c = cmd.cdb + bytes(max(0, 32 - len(cmd.cdb)))
    op = cmd.opcode
    if op == S.WRITE_6:
        return True
    if op in (S.WRITE_10, S.WRITE_VERIFY):
        return _be(c, 7, 2) > 0
    if op == S.WRITE_12:
        return _be(c, 6, 4) > 0
    if op in (S.WRITE_16, S.WRITE_VERIFY_16):
        return _be(c, 10, 4) > 0
    if op == S.UNMAP:
        return _be(c, 7, 2) > 0
    if op == S.COMPARE_AND_WRITE:
        return c[13] > 0
    return True  # WRITE SAME always carries one block


def _check_dpofua(p: _Parse) -> None:
    """sbc_check_dpofua: DPO and FUA are accepted only when FUA is advertised."""
    cdb, dev = p.cdb, p.dev
    if cdb[1] & 0x10 and not target_check_fua(dev):
        p.log.err(f"Got CDB: 0x{cdb[0]:02x} with DPO bit set, but device does not advertise "
                  "support for DPO")
        raise sense.INVALID_CDB_FIELD()
    if cdb[1] & 0x08:
        if not target_check_fua(dev):
            p.log.err(f"Got CDB: 0x{cdb[0]:02x} with FUA bit set, but device does not "
                      "advertise support for FUA write")
            raise sense.INVALID_CDB_FIELD()
        p.fua = True


def _check_prot(p: _Parse, protect: int, sectors: int, is_write: bool) -> None:
    """sbc_check_prot, for fabrics that carry no protection information SGL."""
    dev = p.dev
    pi_type = dev.attrib.pi_prot_type
    sess_prot_type = 0
    if protect and not pi_type and not sess_prot_type:
        p.log.err("CDB contains protect bit, but device + fabric does not advertise "
                  "PROTECT=1 feature bit")
        raise sense.INVALID_CDB_FIELD()
    if pi_type == 2 and protect:
        raise sense.INVALID_CDB_FIELD()
    if pi_type == 0:
        return  # no protect (checked above) and no PI: nothing to set up
    if pi_type not in (1, 2, 3):
        p.log.err(f"Unable to determine pi_prot_type for CDB: 0x{p.cdb[0]:02x} PROTECT: "
                  f"0x{protect:02x}")
        raise sense.INVALID_CDB_FIELD()
    if protect > 5:
        p.log.err(f"Unsupported protect field {protect}")
        raise sense.INVALID_CDB_FIELD()
    p.log.debug(f"sbc_check_prot: prot_type={pi_type}, data_length={sectors * _bs(dev)}, "
                f"prot_length={8 * sectors} prot_op=0 prot_checks=0")


def _check_lba(p: _Parse) -> None:
    end_lba = p.dev.get_blocks() + 1
    lba, sectors = p.lba, p.sectors
    if lba + sectors >= 1 << 64 or lba + sectors > end_lba:
        p.log.err(f"cmd exceeds last lba {end_lba} (lba {lba}, sectors {sectors})")
        raise sense.ADDRESS_OUT_OF_RANGE()


def _size_check(p: _Parse, size: int) -> int:
    """target_cmd_size_check: the CDB's transfer length against what the initiator sent.

    The initiator's expected length is the data-out buffer for data-out commands (a write
    opcode with a non-zero transfer length, or any command given data); for data-in
    commands it is taken to be the CDB's. Returns the command's data length: the kernel
    keeps the fabric's length for writes, so a longer data-out buffer survives."""
    cmd = p.cmd
    out = bool(cmd.data_out) or (p.write and size > 0)
    if out:
        data_length = len(cmd.data_out)
        cmd.direction = DATA_OUT
    elif cmd.direction == DATA_IN:
        # the fabric reports a read's residual; only the pre-5.12 block size rule is here
        cmd.data_in_size_check(size)
        data_length = size
    else:
        data_length = 0
    if size != data_length:
        cmd.warn_length_mismatch(data_length, size)
        old = cmd.residuals_refused
        if out:
            if p.data_cdb:
                p.log.err("Rejecting underflow/overflow for WRITE data CDB")
                raise cmd.residual_refused(sense.INVALID_CDB_FIELD() if old
                                           else INVALID_FIELD_IN_COMMAND_IU())
            if size > data_length:
                p.log.err("Rejecting overflow for WRITE control CDB")
                raise cmd.residual_refused(sense.INVALID_CDB_FIELD())
        cmd.check_residual_block_size()
        if out and old:
            data_length = size  # before 5.12 an underflow cut the data to the CDB's length
    return data_length


# -- backend data path ---------------------------------------------------------------------
def _io_error(dev, op: str, e: Exception, nbytes: int = 0) -> SenseError:
    """A storage error on the data path, logged as the backend's completion path logs it;
    the initiator gets TCM_LOGICAL_UNIT_COMMUNICATION_FAILURE."""
    err = -(getattr(e, "errno", None) or 5)
    dev.bdev.log_rw_error(op == "write", err, nbytes, e)
    return sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()


def _check_io_size(dev, length: int) -> None:
    limit = dev.bdev.max_io_bytes
    if limit is not None and length > limit:
        dev.bdev.log_io_too_large(length)
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE()


def backend_read(dev, lba: int, nbytes: int) -> bytes:
    """``nbytes`` from block ``lba`` of the backend (zeros past a short read); a storage
    failure raises the SenseError the initiator gets, logged as the backend logs it."""
    _check_io_size(dev, nbytes)
    if not nbytes:
        return b""
    try:
        faults.before_io(dev, "read")
        data = dev.bdev.read(lba * _bs(dev), nbytes)
    except (SenseError, StatusError):
        raise  # the backend chose the status and sense itself
    except Exception as e:  # noqa: BLE001 - any storage failure is a CHECK CONDITION
        raise _io_error(dev, "read", e, nbytes) from None
    if len(data) < nbytes:
        data = bytes(data) + bytes(nbytes - len(data))
    return bytes(data)


def backend_write(dev, lba: int, data: bytes, fua: bool) -> None:
    """``data`` to block ``lba`` of the backend (any bytes-like object); a storage failure
    raises the SenseError the initiator gets, logged as the backend logs it."""
    _check_io_size(dev, len(data))
    if not data:
        return
    try:
        faults.before_io(dev, "write")
        dev.bdev.write(lba * _bs(dev), data, fua)
    except (SenseError, StatusError):
        raise  # the backend chose the status and sense itself
    except Exception as e:  # noqa: BLE001
        raise _io_error(dev, "write", e, len(data)) from None


def _backend_unmap(dev, lba: int, nolb: int) -> None:
    if not nolb:
        return
    bs = _bs(dev)
    try:
        faults.before_io(dev, "unmap")
        dev.bdev.unmap(lba * bs, nolb * bs)
    except (SenseError, StatusError):
        raise  # the backend chose the status and sense itself
    except Exception as e:  # noqa: BLE001
        dev.bdev.log_discard_error(-(getattr(e, "errno", None) or 5))
        raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE() from None


# -- handlers ------------------------------------------------------------------------------
def _execute_rw(cmd: "Command") -> Optional[bytes]:
    dev = cmd.dev
    ctx = cmd.ctx
    if ctx["write"]:
        backend_write(dev, ctx["lba"], cmd.data_out, ctx["fua"])
        return None
    return backend_read(dev, ctx["lba"], ctx["data_length"])


def _noop(cmd: "Command") -> None:
    return None


def _execute_sync_cache(cmd: "Command") -> None:
    dev = cmd.dev
    immed = cmd.ctx["cdb"][1] & 0x02
    try:
        faults.before_io(dev, "flush")
        dev.bdev.flush()
    except (SenseError, StatusError):
        raise  # the backend chose the status and sense itself
    except Exception as e:  # noqa: BLE001
        dev.bdev.log_flush_error(-(getattr(e, "errno", None) or 5))
        if not immed:
            raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE() from None
    return None


def _execute_write_same(cmd: "Command") -> None:
    dev, ctx = cmd.dev, cmd.ctx
    bs = _bs(dev)
    length = len(cmd.data_out)
    nents = max(1, (length + PAGE_SIZE - 1) // PAGE_SIZE) if length else 0
    if dev.bdev.write_same_needs_payload and not nents:
        raise sense.INVALID_CDB_FIELD()
    first = min(length, PAGE_SIZE)
    if nents > 1 or first != bs:
        dev.log.err(f"WRITE_SAME: Illegal SGL t_data_nents: {nents} length: {first} "
                    f"block_size: {bs}")
        raise sense.INVALID_CDB_FIELD()
    block = cmd.data_out[:bs]
    lba, nolb = ctx["lba"], ctx["sectors"]
    chunk_blocks = max(1, (1 << 20) // bs)
    done = 0
    while done < nolb:
        n = min(chunk_blocks, nolb - done)
        try:
            faults.before_io(dev, "write")
            dev.bdev.write((lba + done) * bs, block * n, False)
        except (SenseError, StatusError):
            raise  # the backend chose the status and sense itself
        except Exception as e:  # noqa: BLE001
            dev.bdev.log_write_same_error(-(getattr(e, "errno", None) or 5))
            raise sense.LOGICAL_UNIT_COMMUNICATION_FAILURE() from None
        done += n
    return None


def _execute_write_same_unmap(cmd: "Command") -> None:
    _backend_unmap(cmd.dev, cmd.ctx["lba"], cmd.ctx["sectors"])
    return None


def _execute_unmap(cmd: "Command") -> None:
    """sbc_execute_unmap: walk the block descriptors of the parameter list."""
    dev, a = cmd.dev, cmd.dev.attrib
    log = dev.log
    if cmd.cdb[1]:  # ANCHOR: ANC_SUP is never set
        raise sense.INVALID_CDB_FIELD()
    buf = cmd.data_out
    data_length = cmd.ctx["data_length"]
    if data_length == 0:
        return None
    if data_length < 8:
        log.warn(f"UNMAP parameter list length {data_length} too small")
        raise sense.PARAMETER_LIST_LENGTH_ERROR()
    dl = _be(buf, 0, 2)
    bd_dl = _be(buf, 2, 2)
    size = data_length - 8
    if bd_dl > size:
        log.warn(f"UNMAP parameter list length {data_length} too small, ignoring bd_dl "
                 f"{bd_dl}")
    else:
        size = bd_dl
    if size // 16 > a.max_unmap_block_desc_count:
        raise sense.INVALID_PARAMETER_LIST()
    log.debug(f"UNMAP: Sub: {dev.backend.name} Using dl: {dl} bd_dl: {bd_dl} size: {size} "
              f"ptr: {dev.core.profile.kptr(buf)}")
    off = 8
    while size >= 16:
        lba = _be(buf, off, 8)
        rng = _be(buf, off + 8, 4)
        log.debug(f"UNMAP: Using lba: {lba} and range: {rng}")
        if rng > a.max_unmap_lba_count:
            raise sense.INVALID_PARAMETER_LIST()
        if lba + rng > dev.get_blocks() + 1:
            raise sense.ADDRESS_OUT_OF_RANGE()
        if rng:
            _backend_unmap(dev, lba, rng)
        off += 16
        size -= 16
    return None


def _execute_compare_and_write(cmd: "Command") -> None:
    """sbc_compare_and_write + compare_and_write_callback: read, compare, then write."""
    dev, ctx = cmd.dev, cmd.ctx
    if not ctx["data_length"]:
        return None
    nolb = ctx["sectors"]
    n = nolb * _bs(dev)
    current = backend_read(dev, ctx["lba"], n)
    verify = cmd.data_out[:n]
    if current != verify:
        off = next(i for i in range(n) if current[i] != verify[i])
        dev.log.warn(f"Detected MISCOMPARE at offset {off}")
        raise sense.MISCOMPARE_VERIFY(info=off)
    dev.log.debug("COMPARE AND WRITE read data matches compare data")
    backend_write(dev, ctx["lba"], cmd.data_out[n:2 * n], ctx["fua"])
    return None


def _execute_readcapacity(cmd: "Command") -> bytes:
    dev, cdb = cmd.dev, cmd.ctx["cdb"]
    if not (cdb[8] & 1) and any(cdb[2:6]):
        raise sense.INVALID_CDB_FIELD()
    blocks = dev.get_blocks()
    blocks = 0xFFFFFFFF if blocks >= 0xFFFFFFFF else blocks
    return blocks.to_bytes(4, "big") + _bs(dev).to_bytes(4, "big")


def _execute_readcapacity_16(cmd: "Command") -> bytes:
    dev, a = cmd.dev, cmd.dev.attrib
    buf = bytearray(32)
    buf[0:8] = (dev.get_blocks() & (2**64 - 1)).to_bytes(8, "big")
    buf[8:12] = _bs(dev).to_bytes(4, "big")
    if sup_prot_pass(cmd):
        pi_type = a.pi_prot_type
        if pi_type:
            buf[12] = (pi_type - 1) << 1 | 0x1
    buf[13] = dev.bdev.get_lbppbe() & 0x0F
    buf[14:16] = (dev.bdev.get_alignment_offset_lbas() & 0xFFFF).to_bytes(2, "big")
    if a.emulate_tpu or a.emulate_tpws:
        buf[14] |= 0x80
        if a.unmap_zeroes_data:
            buf[14] |= 0x40
    return bytes(buf)


def _execute_report_referrals(cmd: "Command") -> bytes:
    """target_emulate_report_referrals (target_core_alua.c): the device's lba_map as
    referral descriptors (first/last LBA, then a state + target port group per member)."""
    dev = cmd.dev
    alloc = cmd.ctx["data_length"]
    if alloc < 4:
        dev.log.warn(f"REPORT REFERRALS allocation length {alloc} too small")
        raise sense.INVALID_CDB_FIELD()
    if not dev.lba_map:
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    body = bytearray()
    for first, last, members in dev.lba_map:
        body += bytes([0, 0, 0, len(members) & 0xFF])
        body += first.to_bytes(8, "big") + last.to_bytes(8, "big")
        for pg_id, state in members:
            body += bytes([state & 0x0F, 0]) + (pg_id & 0xFFFF).to_bytes(2, "big")
    return (len(body) & 0xFFFF).to_bytes(4, "big") + bytes(body)


def _emulate_startstop(cmd: "Command") -> None:
    cdb = cmd.ctx["cdb"]
    if not (cdb[1] & 1) or cdb[2] or cdb[3]:
        raise sense.INVALID_CDB_FIELD()
    if cdb[4] >> 4 & 0xF:
        raise sense.INVALID_CDB_FIELD()
    if not (cdb[4] & 1) or cdb[4] & 2 or cdb[4] & 4:
        raise sense.INVALID_CDB_FIELD()
    return None


# -- the parser ----------------------------------------------------------------------------
def _rw_fields(p: _Parse) -> None:
    cdb, op = p.cdb, p.cdb[0]
    if op in (S.READ_6, S.WRITE_6):
        p.sectors = cdb[4] or 256
        p.lba = _be(cdb, 1, 3) & 0x1FFFFF
    elif op in (S.READ_10, S.WRITE_10, S.WRITE_VERIFY):
        p.sectors = _be(cdb, 7, 2)
        p.lba = _be(cdb, 2, 4)
    elif op in (S.READ_12, S.WRITE_12):
        p.sectors = _be(cdb, 6, 4)
        p.lba = _be(cdb, 2, 4)
    else:
        p.sectors = _be(cdb, 10, 4)
        p.lba = _be(cdb, 2, 8)


def _parse_rw(p: _Parse) -> None:
    _rw_fields(p)
    if p.cdb[0] not in (S.READ_6, S.WRITE_6):
        _check_dpofua(p)
        _check_prot(p, p.cdb[1] >> 5, p.sectors, p.write)
    p.data_cdb = True
    p.cmd.execute = _execute_rw


def _parse_caw(p: _Parse) -> int:
    dev = p.dev
    if not dev.attrib.emulate_caw:
        p.log.err(f"se_device {dev.backend.name}/{dev.name} (vpd_unit_serial "
                  f"{dev.wwn.unit_serial}) reject COMPARE_AND_WRITE")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    p.sectors = p.cdb[13]
    if p.sectors > 1:
        p.log.err(f"COMPARE_AND_WRITE contains NoLB: {p.sectors} greater than 1")
        raise sense.INVALID_CDB_FIELD()
    _check_dpofua(p)
    p.lba = _be(p.cdb, 2, 8)
    p.data_cdb = p.caw = True
    p.cmd.execute = _execute_compare_and_write
    return 2 * _bs(dev) * p.sectors


def _setup_write_same(p: _Parse, flags: int) -> None:
    """sbc_setup_write_same."""
    dev, a = p.dev, p.dev.attrib
    end_lba = dev.get_blocks() + 1
    sectors = p.sectors
    if flags & 0x04 or flags & 0x02:
        p.log.err("WRITE_SAME PBDATA and LBDATA bits not supported for Block Discard "
                  "Emulation")
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    if sectors > a.max_write_same_len:
        p.log.warn(f"WRITE_SAME sectors: {sectors} exceeds max_write_same_len: "
                   f"{a.max_write_same_len}")
        raise sense.INVALID_CDB_FIELD()
    if p.lba + sectors >= 1 << 64 or p.lba + sectors > end_lba:
        p.log.err(f"WRITE_SAME exceeds last lba {end_lba} (lba {p.lba}, sectors {sectors})")
        raise sense.ADDRESS_OUT_OF_RANGE()
    if flags & 0x10:
        p.log.warn("WRITE SAME with ANCHOR not supported")
        raise sense.INVALID_CDB_FIELD()
    if flags & 0x01:
        p.log.warn("WRITE SAME with NDOB not supported")
        raise sense.INVALID_CDB_FIELD()
    ops = exec_ops(dev)
    if flags & 0x08:
        if not ops.unmap:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        if not a.emulate_tpws:
            p.log.err("Got WRITE_SAME w/ UNMAP=1, but backend device has emulate_tpws "
                      "disabled")
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        p.cmd.execute = _execute_write_same_unmap
        return
    if not ops.write_same:
        raise sense.UNSUPPORTED_SCSI_OPCODE()
    _check_prot(p, flags >> 5, sectors, True)
    p.cmd.execute = _execute_write_same


def _parse_write_same(p: _Parse) -> int:
    cdb, op = p.cdb, p.cdb[0]
    if op == S.WRITE_SAME:
        p.sectors, p.lba, flags = _be(cdb, 7, 2), _be(cdb, 2, 4), cdb[1]
    elif op == S.WRITE_SAME_16:
        p.sectors, p.lba, flags = _be(cdb, 10, 4), _be(cdb, 2, 8), cdb[1]
    else:
        p.sectors, p.lba, flags = _be(cdb, 28, 4), _be(cdb, 12, 8), cdb[10]
    if not p.sectors:
        p.log.err("WSNZ=1, WRITE_SAME w/sectors=0 not supported")
        raise sense.INVALID_CDB_FIELD()
    _setup_write_same(p, flags)
    return _bs(p.dev)


def _parse(p: _Parse) -> None:
    cmd, cdb, dev = p.cmd, p.cdb, p.dev
    op = cdb[0]
    ops = exec_ops(dev)
    size = 0
    io = False
    check_lba = False
    cmd.direction = DATA_NONE
    if op in (S.READ_6, S.READ_10, S.READ_12, S.READ_16):
        cmd.direction = DATA_IN
        _parse_rw(p)
        io = True
    elif op in (S.WRITE_6, S.WRITE_10, S.WRITE_12, S.WRITE_16, S.WRITE_VERIFY,
                S.WRITE_VERIFY_16):
        _parse_rw(p)
        io = True
    elif op == S.VARIABLE_LENGTH_CMD:
        sa = _be(cdb, 8, 2)
        if sa != WRITE_SAME_32:
            p.log.err(f"VARIABLE_LENGTH_CMD service action 0x{sa:04x} not supported")
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        p.write = True
        size = _parse_write_same(p)
        io = True
    elif op == S.COMPARE_AND_WRITE:
        size = _parse_caw(p)
        io = True
    elif op == S.READ_CAPACITY:
        size = READ_CAP_LEN
        cmd.direction = DATA_IN
        cmd.execute = _execute_readcapacity
    elif op == S.SERVICE_ACTION_IN_16:
        sa = cdb[1] & 0x1F
        if sa == S.SAI_READ_CAPACITY_16:
            cmd.execute = _execute_readcapacity_16
        elif sa == SAI_REPORT_REFERRALS:
            cmd.execute = _execute_report_referrals
        else:
            p.log.err(f"Unsupported SA: 0x{sa:02x}")
            raise sense.INVALID_CDB_FIELD()
        size = _be(cdb, 10, 4)
        cmd.direction = DATA_IN
    elif op in (S.SYNCHRONIZE_CACHE, S.SYNCHRONIZE_CACHE_16):
        if op == S.SYNCHRONIZE_CACHE:
            p.sectors, p.lba = _be(cdb, 7, 2), _be(cdb, 2, 4)
        else:
            p.sectors, p.lba = _be(cdb, 10, 4), _be(cdb, 2, 8)
        if ops.sync_cache:
            cmd.execute = _execute_sync_cache
            check_lba = io = True
        else:
            cmd.execute = _noop
    elif op == S.UNMAP:
        if not ops.unmap:
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        if not dev.attrib.emulate_tpu:
            p.log.err("Got UNMAP, but backend device has emulate_tpu disabled")
            raise sense.UNSUPPORTED_SCSI_OPCODE()
        size = _be(cdb, 7, 2)
        cmd.execute = _execute_unmap
        io = True
    elif op in (S.WRITE_SAME, S.WRITE_SAME_16):
        size = _parse_write_same(p)
        io = True
    elif op in (S.VERIFY, S.VERIFY_16):
        if op == S.VERIFY:
            p.sectors, p.lba = _be(cdb, 7, 2), _be(cdb, 2, 4)
        else:
            p.sectors, p.lba = _be(cdb, 10, 4), _be(cdb, 2, 8)
        cmd.execute = _noop
        check_lba = True
    elif op in (REZERO_UNIT, SEEK_6, SEEK_10):
        cmd.execute = _noop
    elif op == S.START_STOP:
        cmd.execute = _emulate_startstop
    else:  # pragma: no cover - parse() only routes the opcodes above here
        raise AssertionError(op)

    if p.data_cdb or check_lba:
        _check_lba(p)
        if not p.caw:
            size = _bs(dev) * p.sectors
    if cmd.direction == DATA_IN:
        cmd.alloc_len = size
    data_length = _size_check(p, size)
    cmd.ctx.update(cdb=cdb, lba=p.lba, sectors=p.sectors, fua=p.fua, write=p.write,
                   data_length=data_length, data_cdb=p.data_cdb)
    if p.data_cdb:
        # SCF_SCSI_DATA_CDB: only these carry an LBA range for the ALUA LBA map check
        cmd.lba = p.lba
    cmd.nblocks = data_length // _bs(dev)
    if io:
        cmd.ctx["io"] = True


_CLAIMED = frozenset({
    S.READ_6, S.READ_10, S.READ_12, S.READ_16, S.WRITE_6, S.WRITE_10, S.WRITE_12, S.WRITE_16,
    S.WRITE_VERIFY, S.WRITE_VERIFY_16, S.VARIABLE_LENGTH_CMD, S.COMPARE_AND_WRITE,
    S.READ_CAPACITY, S.SERVICE_ACTION_IN_16, S.SYNCHRONIZE_CACHE, S.SYNCHRONIZE_CACHE_16,
    S.UNMAP, S.WRITE_SAME, S.WRITE_SAME_16, S.VERIFY, S.VERIFY_16, REZERO_UNIT, SEEK_6,
    SEEK_10, S.START_STOP,
})


def parse(cmd: "Command") -> bool:
    """Claim ``cmd`` if it is an SBC command (see spc.parse for the contract)."""
    if cmd.opcode not in _CLAIMED:
        return False
    if cmd.dev.passthrough and type(cmd.dev.bdev).read is BackendDevice.read:
        # a pass-through backend without a data path (a user-space handler's) gets the
        # block commands itself: nothing here emulates them
        return False
    _check_write_protect(cmd)
    _parse(_Parse(cmd))
    return True


