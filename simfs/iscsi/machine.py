"""The full feature phase of one iSCSI connection as a sans-I/O state machine
(drivers/target/iscsi/iscsi_target.c), the counterpart of :mod:`simfs.iscsi.login`.

Bytes in, PDUs and actions out; no sockets, threads, clocks or asyncio in here:

* input: :meth:`ConnectionMachine.get_buffer` gives the memory the next received bytes go
  to, :meth:`~ConnectionMachine.buffer_updated` says how many arrived (the shape of
  ``asyncio.BufferedProtocol``, so a Data-Out payload lands straight in its command's
  buffer); :meth:`~ConnectionMachine.feed` does both for a bytes object (tests).
* output: :meth:`~ConnectionMachine.take_output` hands over the PDU buffers to write (header,
  digests, data, padding), :meth:`~ConnectionMachine.take_actions` the work for the driver:
  :class:`Execute` (run a SCSI command on its device, then call
  :meth:`~ConnectionMachine.complete`) and :class:`ManageTask` (the core side of a TMF, then
  :meth:`~ConnectionMachine.tmf_done`). ``closing``/``close_reason`` say when the
  connection must go.
* timers: the driver calls :meth:`~ConnectionMachine.nopin_ping` every ``nopin_timeout``
  seconds and :meth:`~ConnectionMachine.nopin_expired` ``nopin_response_timeout`` after a
  ping (iscsit_start_nopin_timer / nopin_response_timer); when
  :attr:`~ConnectionMachine.dataout_wanted` is set it calls
  :meth:`~ConnectionMachine.dataout_check` that many seconds later (the commands' DataOUT
  timers). The driver sets :attr:`~ConnectionMachine.now` (its clock, in seconds) before
  handing over input; the machine reads no clock itself.

What it does, in the kernel's order: SCSI Command checks (iscsit_setup_scsi_cmd: Reject
PDUs), CmdSN windowing (iscsit_sequence_cmd: below ExpCmdSN or above MaxCmdSN silently
dropped, ahead held until the gap fills), immediate and unsolicited data, R2Ts
(MaxBurstLength, MaxOutstandingR2T), Data-Out DataSN/offset checks, Data-In cut to the
initiator's MaxRecvDataSegmentLength and MaxBurstLength with the status in the last PDU
(phase collapse) unless sense must go in a SCSI Response, the kernel's residuals, NOP-Out
and NOP-In, task management, Text (SendTargets), Logout, SNACK (rejected at ERL 0).

The machine asks the session's TPG view questions (its LUNs, a LUN's block size) but never
runs a command itself. A driver may set :attr:`~ConnectionMachine.runner` (``now_key(task)``
and ``run(task, key)``): a READ/WRITE(10/16) that is the last PDU received, has all its data,
comes next in CmdSN order with nothing else in flight, and that the runner can run at once
(its device idle) then runs as it is parsed, with the outcome the action would have had;
at one command in flight, the usual case of a latency-bound initiator, that saves the
PDU, task-queue and action round of the general path.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from simfs.iscsi import digest as D
from simfs.iscsi import pdu as P
from simfs.iscsi.report import addr_text
from simfs.iscsi.residual import cdb_blocks, cdb_in_length, cdb_out_length, residuals
from simfs.iscsi.text import encode_text
from simfs.scsi import sense as sense_mod
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT, Result

GOOD, CHECK_CONDITION = 0x00, 0x02
TASK_SET_FULL = 0x28
#: the sense buffer a SCSI Response carries: TRANSPORT_SENSE_BUFFER (target_core_base.h),
#: what translate_sense_reason sets as scsi_sense_length, so the SenseLength field says 96
#: and the bytes after the sense data are zeros
SENSE_BUFFER = 96
#: the receive buffer's first size (a 256 KiB Data-Out plus its header fits)
RECV_BUFFER = 1 << 18 | 4096
#: a Data-Out payload of at least this many bytes, received straight into its command's
#: buffer, makes the next read take a header only (see ConnectionMachine._header_only)
HEADER_ONLY_AFTER = 1 << 16


_from_bytes = int.from_bytes


def _raw(v: int) -> int:
    """A 32-bit header field as the kernel prints it without converting it: an ITT (itt_t)
    or a __be32 keeps the wire's big-endian bytes, read as a little-endian number."""
    return _from_bytes(v.to_bytes(4, "big"), "little")


def _uninitialised(n: int) -> bytearray:
    """A bytearray of ``n`` bytes left as malloc gives them (bytearray(n) writes n zeros:
    ~100 us per MiB, on the loop, for data about to be overwritten)."""
    return _new_bytearray(None, n)


try:  # CPython's own constructor, which skips the zeroing when given no source
    _new_bytearray = ctypes.pythonapi.PyByteArray_FromStringAndSize
    _new_bytearray.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    _new_bytearray.restype = ctypes.py_object
except (AttributeError, OSError):  # not CPython
    _uninitialised = bytearray  # noqa: F811
#: a data-out buffer this large is not zeroed first when every byte is sure to be received
_UNINITIALISED_FROM = 1 << 16
#: what :meth:`ConnectionMachine._run_now` takes: READ(10/16), WRITE(10/16)
_RUN_NOW_OPS = frozenset((0x28, 0x2A, 0x88, 0x8A))
_F_READ = P.F_FINAL | P.CMD_READ
_F_WRITE = P.F_FINAL | P.CMD_WRITE
_NO_LUN = bytes(8)
#: what the kernel checks (iscsit_setup_scsi_cmd, iscsit_setup_nop_out,
#: iscsit_check_dataout_hdr, iscsit_setup_text_cmd) before it reads the data segment
_SETUP_OPS = frozenset((P.OP_SCSI_CMD, P.OP_NOOP_OUT, P.OP_DATA_OUT, P.OP_TEXT_REQ))
#: requests whose handlers read no data segment (iscsit_handle_task_mgt_cmd,
#: iscsit_handle_logout_cmd, iscsit_handle_snack): a DataSegmentLength is ignored and the
#: bytes after the header are the next PDU
_NO_DATA_OPS = frozenset((P.OP_TMF_REQ, P.OP_LOGOUT_REQ, P.OP_SNACK))
#: opcode -> (what the DataDigest error line names, the Reject's reason or None, the line
#: that closes the connection) at ERL 0 (iscsit_get_immediate_data, iscsit_handle_nop_out,
#: iscsit_handle_text_cmd)
_DIGEST_ERRORS = {
    P.OP_SCSI_CMD: ("ImmediateData", P.REASON_DATA_DIGEST_ERROR,
                    "Unable to recover from Immediate Data digest failure while in ERL=0."),
    P.OP_NOOP_OUT: ("Ping data", None,
                    "Unable to recover from NOPOUT Ping DataCRC failure while in ERL=0."),
    P.OP_TEXT_REQ: ("Text data", P.REASON_PROTOCOL_ERROR,
                    "Unable to recover from Text Data digest failure while in ERL=0."),
    None: (None, None, "Unable to recover from DataOUT CRC failure while ERL=0, closing "
                       "session."),  # the kernel reads no data segment of the others
}
#: a Data-Out header refused as iscsit_check_dataout_hdr refuses (its -1): lines logged, the
#: payload left unread
_REFUSED = object()


class CloseConnection(Exception):
    """The connection must go (the message is the kernel's line for why)."""


@dataclass(eq=False)
class Task:
    """A SCSI command between its SCSI Command PDU and its status (the kernel's iscsit_cmd)."""

    itt: int
    cmdsn: int
    lun: int
    lun_bytes: bytes
    cdb: bytes
    edtl: int
    read: bool
    write: bool
    immediate_cmd: bool = False
    #: the immediate data when it is all the data (no copy into ``buf``)
    data: Any = b""
    #: the whole data-out, preallocated when Data-Out PDUs are to come
    buf: Optional[bytearray] = None
    received: int = 0
    unsolicited_done: bool = True
    r2t_offset: int = 0
    outstanding_r2ts: dict = field(default_factory=dict)  # ttt -> [offset, length, datasn]
    r2tsn: int = 0
    unsol_datasn: int = 0
    # DataSequenceInOrder=Yes bookkeeping (the kernel's iscsit_cmd fields of the same names):
    # the DataSN expected next, the bytes of the current unsolicited and solicited bursts,
    # and the offsets the current sequence may cover. Class attributes, not fields: a
    # write sets them when it needs them, and a read's construction does not pay for them.
    data_sn = 0
    first_burst_len = 0
    next_burst_len = 0
    seq_start = 0
    seq_end = 0
    sequenced: bool = False
    aborted: bool = False
    #: the logical block size behind the LUN when the driver knows it (residuals)
    block_size: Optional[int] = None

    def data_out(self):
        """What the initiator sent (bytes or the preallocated bytearray)."""
        return self.buf if self.buf is not None else self.data


@dataclass(eq=False)
class Execute:
    """Run ``task`` on its device: ``tpg.submit(isid, lun, cdb, data_out, **kw)``, then
    :meth:`ConnectionMachine.complete` with the result (or ``failed`` with the error)."""

    task: Task
    args: tuple
    kw: dict


@dataclass(eq=False)
class ManageTask:
    """The core side of a TMF for ``lun`` (``tpg.task_management``), after the commands
    queued on the device; then :meth:`ConnectionMachine.tmf_done` with the response."""

    req: P.Pdu
    function: int
    lun: int
    ref_itt: int


class ConnectionMachine:
    """One connection of ``sess`` (a :class:`simfs.iscsi.session.Session`) in full feature
    phase; ``discovery(initiator, local)`` answers SendTargets; ``log`` is the server's
    :class:`~simfs.iscsi.report.Reporter`."""

    def __init__(self, sess, statsn: int, cid: int, log,
                 discovery: Optional[Callable] = None, peer: Any = None):
        self.sess = sess
        self.statsn = statsn
        self.cid = cid
        self.log = log
        self.peer = peer
        self._discovery = discovery
        self.p = sess.params
        self.hd = bool(self.p.header_digest)
        self.dd = bool(self.p.data_digest)
        self.max_dsl = max(self.p.max_recv_dsl, 8192)
        self.tasks: dict[int, Task] = {}
        #: CmdSN -> (handler, its argument) held until the gap before it fills
        self.ooo: dict[int, tuple[Callable[[Any], None], Any]] = {}
        #: the driver's way to run a command at once (see :meth:`_run_now`), or None
        self.runner: Any = None
        self.nopin_ttt: Optional[int] = None
        self.closing = False
        #: why the connection goes (None: a logout, or the peer went)
        self.close_reason: Optional[str] = None
        self.out: list = []
        #: bytes in ``out`` (the driver writes them out once this grows large)
        self.out_bytes = 0
        self.actions: list = []
        # input: one buffer, parsed from _rpos to _rlen; a PDU whose header is parsed
        # waits in _pending for its data; a Data-Out payload may go to _direct instead
        self._rb = bytearray(RECV_BUFFER)
        self._rpos = 0
        self._rlen = 0
        #: (pdu, bytes still to come in the buffer, a Data-Out's checks or None, a SCSI
        #: Command's header answer or None)
        self._pending: Optional[tuple] = None
        self._direct: Optional[memoryview] = None
        self._direct_pos = 0
        self._after_direct: Optional[tuple] = None
        #: the last Data-Out's payload went straight to its command: what follows is likely
        #: another, so only its header is read into the buffer (its payload would be copied)
        self._header_only = False
        self._skip = 0
        #: the driver's clock (seconds) when the current input arrived
        self.now = 0.0
        #: the ACL's dataout_timeout: how long a write waits for its next Data-Out
        self.dataout_timeout = float(getattr(sess.tpg, "dataout_timeout", 3) or 3)
        self._dataout: dict[int, float] = {}  # ITT -> deadline of its running DataOUT timer
        self._dataout_armed = False
        #: seconds after which the driver is to call :meth:`dataout_check` (it clears this)
        self.dataout_wanted: Optional[float] = None

    # -- input ------------------------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next received bytes go (asyncio.BufferedProtocol.get_buffer)."""
        if self._direct is not None:
            return self._direct[self._direct_pos:]
        rb = self._rb
        if self._rpos == self._rlen:
            self._rpos = self._rlen = 0
        # room for the pending data segment, or for the largest header
        need = self._pending[1] if self._pending is not None else P.BHS_LEN + 1024
        if len(rb) - self._rlen < 4096 or self._rpos + need > len(rb):
            keep = self._rlen - self._rpos
            size = max(len(rb), need + 4096)
            nb = rb if size == len(rb) else bytearray(size)
            nb[:keep] = rb[self._rpos:self._rlen]
            self._rb, self._rpos, self._rlen = nb, 0, keep
            rb = nb
        if self._header_only and self._pending is None and not self._skip:
            short = P.BHS_LEN + (4 if self.hd else 0) - (self._rlen - self._rpos)
            if short > 0:
                return memoryview(rb)[self._rlen:self._rlen + short]
        return memoryview(rb)[self._rlen:]

    def buffer_updated(self, n: int) -> None:
        """``n`` bytes arrived where :meth:`get_buffer` said: handle every whole PDU."""
        if self.closing:
            return
        try:
            if self._direct is not None:
                self._direct_pos += n
                if self._direct_pos < len(self._direct):
                    return
                self._direct = None
                req, task, seq, off, dlen = self._after_direct
                self._after_direct = None
                self._skip = -dlen & 3
                self._data_out_done(req, task, seq, off, dlen)
                if self.closing:
                    return
            else:
                self._rlen += n
            self._parse()
        except CloseConnection as e:
            self._close(str(e))

    def feed(self, data) -> None:
        """Hand over received bytes (a copy into :meth:`get_buffer`'s memory)."""
        mv = memoryview(data).cast("B")
        while len(mv) and not self.closing:
            buf = self.get_buffer()
            k = min(len(buf), len(mv))
            buf[:k] = mv[:k]
            del buf
            mv = mv[k:]
            self.buffer_updated(k)

    def _parse(self) -> None:
        rb = self._rb
        while not self.closing and self._direct is None:
            if self._skip:
                k = min(self._skip, self._rlen - self._rpos)
                self._rpos += k
                self._skip -= k
                if self._skip:
                    break
            avail = self._rlen - self._rpos
            if self._pending is not None:
                req, need, checked, hdr = self._pending
                if avail < need:
                    break
                self._pending = None
                self._take_data(req, need, checked, hdr)
                continue
            if avail < P.BHS_LEN:
                break
            self._header_only = False  # a Data-Out whose payload goes direct sets it again
            pos = self._rpos
            if rb[pos] == P.OP_SCSI_CMD and self.runner is not None and not self.actions \
                    and not self.tasks and self._run_now(rb, pos, avail):
                continue
            ahs_len = rb[pos + 4] * 4
            hlen = P.BHS_LEN + ahs_len + (4 if self.hd else 0)
            if avail < hlen:
                break
            bhs = bytes(rb[pos:pos + P.BHS_LEN])
            ahs = bytes(rb[pos + P.BHS_LEN:pos + P.BHS_LEN + ahs_len]) if ahs_len else b""
            if self.hd:
                got = bytes(rb[pos + hlen - 4:pos + hlen])
                want = D.digest(bhs, ahs)
                if want != got:
                    # iscsit_get_rx_pdu: the header becomes 0xff, an opcode nobody knows;
                    # the session counts it (the IQN's digest_errors never moves)
                    self.sess.conn_digest_errors += 1
                    self._klog("err", "HeaderDigest CRC32C failed, received 0x%08x, computed "
                               "0x%08x", int.from_bytes(got, "little"),
                               int.from_bytes(want, "little"))
                    self._klog("err", "Got unknown iSCSI OpCode: 0xff")
                    raise CloseConnection("Cannot recover from unknown opcode while ERL=0, "
                                          "closing iSCSI connection.")
            self._rpos = pos + hlen
            req = P.Pdu(bhs, ahs)
            dlen = (bhs[5] << 16) | (bhs[6] << 8) | bhs[7]
            op = bhs[0] & P.OP_MASK
            hdr = None
            if op == P.OP_SCSI_CMD and not self.sess.discovery:  # the common case first
                hdr = self._scsi_cmd_header(req, dlen)
                if not hdr:
                    continue
                if not dlen:
                    self.on_scsi_cmd(req, hdr)
                    continue
                if dlen > self.max_dsl:
                    self._oversized(req, dlen)
                    continue
            elif self._checked_first(op):
                # the kernel checks these headers before it reads their data segment; one
                # it refuses leaves the segment unread, to be parsed as what follows
                if op == P.OP_TEXT_REQ:
                    if dlen > self.max_dsl:
                        self._oversized(req, dlen)
                        continue
                    if not self._text_header(req):
                        continue
                elif op == P.OP_DATA_OUT:
                    if dlen:
                        if dlen > self.max_dsl:
                            self._oversized(req, dlen)
                        else:
                            self._data_out_header(req, dlen)
                        continue
                elif not self._nop_out_header(req):
                    continue
                elif dlen > self.max_dsl:
                    self._oversized(req, dlen)
                    continue
            if not dlen or op in _NO_DATA_OPS:
                self._dispatch(req)
                continue
            if dlen > self.max_dsl:
                self._oversized(req, dlen)
            self._pending = (req, dlen + (-dlen & 3) + (4 if self.dd else 0), None, hdr)

    def _checked_first(self, op: int) -> bool:
        """Whether the kernel checks a PDU of ``op`` before it reads the data segment (a
        discovery session takes only Text of these)."""
        return op in _SETUP_OPS and (not self.sess.discovery or op == P.OP_TEXT_REQ)

    def _run_now(self, rb: bytearray, pos: int, avail: int) -> bool:
        """A SCSI Command PDU that is all that is left to parse, a READ or WRITE (10/16)
        with all its data, the next in CmdSN order, nothing else in flight: when the driver
        can run it at once, it runs here, without the PDU, dispatch and action objects of
        the general path, with the same outcome (counters, sequence numbers, responses).
        False: nothing was done, the general path takes the PDU."""
        if rb[pos + 4] or self.hd or self.dd or self.sess.discovery:
            return False
        dlen = (rb[pos + 5] << 16) | (rb[pos + 6] << 8) | rb[pos + 7]
        if avail != P.BHS_LEN + dlen + (-dlen & 3) or rb[pos + 32] not in _RUN_NOW_OPS:
            return False
        rw = rb[pos + 1] & 0xE0
        edtl = _from_bytes(rb[pos + 20:pos + 24], "big")
        if not edtl:
            return False
        if rw == _F_READ:
            if dlen:
                return False
        elif rw == _F_WRITE:
            p = self.p
            if dlen != edtl or not p.immediate_data or dlen > p.max_recv_dsl \
                    or dlen > p.first_burst:
                return False
        else:
            return False
        sess = self.sess
        cmdsn = _from_bytes(rb[pos + 24:pos + 28], "big")
        if cmdsn != sess.exp_cmdsn or self.ooo:
            return False
        lun_bytes = bytes(rb[pos + 8:pos + 16])
        write = rw == _F_WRITE
        task = Task(_from_bytes(rb[pos + 16:pos + 20], "big"), cmdsn, P.lun_to_int(lun_bytes),
                    lun_bytes, bytes(rb[pos + 32:pos + 48]), edtl, not write, write)
        key = self.runner.now_key(task)
        if key is None:
            return False
        if write:
            task.data = bytes(rb[pos + P.BHS_LEN:pos + P.BHS_LEN + dlen])
            task.received = task.r2t_offset = dlen
        self._rpos = pos + avail
        sess.cmd_pdus += 1
        sess.exp_cmdsn = (cmdsn + 1) & 0xFFFFFFFF
        task.sequenced = True
        self.tasks[task.itt] = task
        try:
            res = self.runner.run(task, key)
        except Exception as e:  # noqa: BLE001 - a backend bug must not kill the connection
            self.failed(task, e)
        else:
            self.complete(task, res)
        return True

    def _take_data(self, req: P.Pdu, need: int, checked=None, hdr=None) -> None:
        """The data segment of ``req`` is in the buffer: check its digest, then dispatch
        (``checked``: a Data-Out's (task, sequence) from its header checks; ``hdr``: a SCSI
        Command's answer from :meth:`_scsi_cmd_header`, handed on to :meth:`on_scsi_cmd`)."""
        pos = self._rpos
        dlen = req.dlength
        pad = -dlen & 3
        with memoryview(self._rb) as mv:
            data = bytes(mv[pos:pos + dlen])
            if self.dd:
                got = bytes(mv[pos + dlen + pad:pos + need])
                want = D.digest(data, P.PADDING[pad])
                if want != got:
                    self._data_digest_error(req, _from_bytes(got, "little"),
                                            _from_bytes(want, "little"))
        self._rpos = pos + need
        req.data = data
        if checked is not None:  # a Data-Out whose header passed: its data goes in place
            task, seq = checked
            off = req.buffer_offset
            task.buf[off:off + dlen] = data
            self._data_out_done(req, task, seq, off, dlen)
            return
        if hdr is not None:
            self.on_scsi_cmd(req, hdr)
            return
        self._dispatch(req)

    def _data_digest_error(self, req: P.Pdu, got: int, want: int) -> None:
        """A DataDigest that does not match at ERL 0: the kernel's lines for the PDU's kind
        (the digests printed as the kernel's u32 reads them), its Reject, and the connection
        goes."""
        op = req.opcode
        if op == P.OP_DATA_OUT:  # iscsit_get_dataout prints the header's fields unswapped
            self._klog("err", "ITT: 0x%08x, Offset: %u, Length: %u, DataSN: 0x%08x, CRC32C "
                       "DataDigest 0x%08x does not match computed 0x%08x", _raw(req.itt),
                       _raw(req.buffer_offset), req.dlength, _raw(req.datasn), got, want)
            self.reject(req, P.REASON_DATA_DIGEST_ERROR)
            why = "Unable to recover from DataOUT CRC failure while ERL=0, closing session."
        else:
            what, reason, why = _DIGEST_ERRORS.get(op, _DIGEST_ERRORS[None])
            if what is not None:
                self._klog("err", "%s CRC32C DataDigest 0x%08x does not match computed "
                           "0x%08x", what, got, want)
            if reason is not None:
                self.reject(req, reason)
        raise CloseConnection(why)

    def _oversized(self, req: P.Pdu, dlen: int) -> None:
        """A data segment beyond MaxXmitDataSegmentLength: the kernel's line for the
        opcode and a Reject. A SCSI Command, NOP-Out or Data-Out is refused before its data
        is read, so the data is parsed as what follows, as in the kernel; for the others the
        connection goes (their data cannot be skipped safely)."""
        mx = self.p.max_recv_dsl
        op = req.opcode
        if op == P.OP_NOOP_OUT:
            why = (f"NOPOUT Ping Data DataSegmentLength: {dlen} is greater than "
                   f"MaxXmitDataSegmentLength: {mx}, protocol error.")
        elif op == P.OP_TEXT_REQ:
            why = (f"Unable to accept text parameter length: {dlen}greater than "
                   f"MaxXmitDataSegmentLength {mx}.")
        elif op == P.OP_DATA_OUT:
            why = f"DataSegmentLength: {dlen} is greater than MaxXmitDataSegmentLength: {mx}"
        else:
            why = (f"DataSegmentLength: {dlen} is greater than MaxXmitDataSegmentLength: "
                   f"{mx}, protocol error.")
        self.reject(req, P.REASON_PROTOCOL_ERROR)
        if self._checked_first(op):
            self._klog("err", why)  # refused before its data is read: the data is not read
            return
        raise CloseConnection(why)

    # -- output -----------------------------------------------------------------------------------
    def send(self, bhs: bytearray, data=b"") -> None:
        """Queue one PDU (header digest, data, padding, data digest)."""
        out = self.out
        out.append(bhs)
        if self.hd:
            out.append(D.digest(bhs))
        n = len(data)
        self.out_bytes += 48 + n
        if n:
            out.append(data)
            pad = P.PADDING[n & 3]
            if pad:
                out.append(pad)
            if self.dd:
                out.append(D.digest(data, pad))

    def take_output(self) -> list:
        """The buffers queued since the last call, in order (to be written as they are)."""
        out, self.out = self.out, []
        self.out_bytes = 0
        return out

    def take_actions(self) -> list:
        """The :class:`Execute`/:class:`ManageTask` actions queued since the last call."""
        acts, self.actions = self.actions, []
        return acts

    def _close(self, why: Optional[str]) -> None:
        if why is not None and self.close_reason is None:
            self.log.err(why)
            self.drop(why)
            self.close_reason = why
        self.closing = True

    def _stat(self) -> int:
        s = self.statsn
        self.statsn = (s + 1) & 0xFFFFFFFF
        return s

    @property
    def exp_cmdsn(self) -> int:
        return self.sess.exp_cmdsn

    @property
    def max_cmdsn(self) -> int:
        return self.sess.max_cmdsn

    def _klog(self, level: str, fmt: str, *args: Any) -> None:
        self.log.line(level, fmt % args if args else fmt)

    def drop(self, why: str) -> None:
        """Tell ``simfs trace`` that this connection is being dropped, and why."""
        s = self.sess
        self.log.event("drop", "dropped", why, peer=addr_text(self.peer),
                       portal=addr_text(s.portal), target=s.target_name,
                       tpgt=getattr(s.tpg, "tpgt", None) if s.tpg is not None else None,
                       initiator=s.initiator)

    def reject(self, req: P.Pdu, reason: int) -> None:
        self.send(P.build_reject(reason, self._stat(), self.exp_cmdsn, self.max_cmdsn), req.bhs)

    # -- NOP-In ping (the driver's timers) ---------------------------------------------------------
    def nopin_ping(self) -> bool:
        """The NOP-In timer fired: ping unless a ping is unanswered; True if one went."""
        if self.closing or self.nopin_ttt is not None:
            return False
        self.nopin_ttt = self.sess.next_ttt()
        self.send(P.build_nop_in(b"\0" * 8, P.RSVD_TAG, self.nopin_ttt, self.statsn,
                                 self.exp_cmdsn, self.max_cmdsn))
        return True

    def nopin_expired(self) -> None:
        """The response timer fired: no answer to the ping closes the connection."""
        if self.nopin_ttt is None or self.closing:
            return
        self._close(f"Did not receive response to NOPIN on CID: {self.cid}, failing "
                    f"connection for I_T Nexus {self._nexus()}")
        self._timed_out()

    def _nexus(self) -> str:
        sess = self.sess
        return (f"{sess.initiator_name},i,0x{sess.isid.hex()},{sess.target_name},"
                f"t,0x{getattr(sess.tpg, 'tpgt', 1):02x}")

    def _timed_out(self) -> None:
        """iscsit_fill_cxn_timeout_err_stats: the session's and the IQN's counters (a
        discovery session belongs to no IQN and counts nowhere)."""
        sess = self.sess
        if not sess.discovery:
            sess.conn_timeout_errors += 1
            count = getattr(sess.tpg, "connection_timed_out", None)
            if count is not None:
                count(sess.initiator_name)

    # -- DataOUT timers (the driver's timer) -------------------------------------------------------
    def _dataout_start(self, task: Task) -> None:
        """iscsit_start_dataout_timer: once an R2T went, or unsolicited data is to come."""
        if task.itt in self._dataout:
            return
        self._dataout[task.itt] = self.now + self.dataout_timeout
        if not self._dataout_armed:
            self._dataout_armed = True
            self.dataout_wanted = self.dataout_timeout

    def dataout_check(self) -> Optional[float]:
        """The Data-Out timer fired (at :attr:`now`): a write that got no Data-Out for
        ``dataout_timeout`` seconds closes the connection (ERL 0 cannot recover); returns
        when to check again, or None."""
        self._dataout_armed = False
        if self.closing:
            return None
        nxt: Optional[float] = None
        for itt, deadline in list(self._dataout.items()):
            if itt not in self.tasks:
                del self._dataout[itt]
            elif deadline <= self.now:
                self._dataout.clear()
                self._close("Unable to recover from DataOut timeout while in ERL=0, closing "
                            f"iSCSI connection for I_T Nexus {self._nexus()}")
                self._timed_out()
                return None
            elif nxt is None or deadline - self.now < nxt:
                nxt = deadline - self.now
        self._dataout_armed = nxt is not None
        return nxt

    # -- dispatch ---------------------------------------------------------------------------------
    def _dispatch(self, req: P.Pdu) -> None:
        op = req.opcode
        if self.sess.discovery and op not in (P.OP_TEXT_REQ, P.OP_LOGOUT_REQ):
            self.reject(req, P.REASON_PROTOCOL_ERROR)
            raise CloseConnection(f"Received illegal iSCSI Opcode: 0x{op:02x} while in "
                                  "Discovery Session, rejecting.")
        if op == P.OP_SCSI_CMD:  # its header passed _scsi_cmd_header
            self.on_scsi_cmd(req)
        elif op == P.OP_DATA_OUT:  # one with data went to _data_out_header
            self._klog("warn", "DataOUT payload is ZERO, ignoring.")
        elif op == P.OP_NOOP_OUT:  # its header passed _nop_out_header
            self._sequenced(req, self.on_nop_out)
        elif op == P.OP_TMF_REQ:
            if self._tmf_header(req):
                self._sequenced(req, self.on_tmf)
        elif op == P.OP_TEXT_REQ:  # its header passed _text_header
            self._text_request(req)
            self._sequenced(req, self.on_text)
        elif op == P.OP_LOGOUT_REQ:
            self._sequenced(req, self.on_logout)
        elif op == P.OP_SNACK:
            self._klog("err", "Initiator sent SNACK request while in ErrorRecoveryLevel=0.")
            self.reject(req, P.REASON_PROTOCOL_ERROR)
        else:
            self._klog("err", "Got unknown iSCSI OpCode: 0x%02x", op)
            self.reject(req, P.REASON_CMD_NOT_SUPPORTED)
            raise CloseConnection("Cannot recover from unknown opcode while ERL=0, closing "
                                  "iSCSI connection.")

    def _sequenced(self, req: P.Pdu, handler) -> None:
        """iscsit_sequence_cmd for non-SCSI requests (immediate ones skip the window)."""
        if req.immediate:
            handler(req)
            return
        self._sequence(req.cmdsn, handler, req)

    def _sequence(self, cmdsn: int, run: Callable[[Any], None], arg: Any) -> None:
        """``run(arg)`` in CmdSN order: now when ``cmdsn`` is the next one, later when the
        gap before it fills; dropped (with the kernel's line) outside the window."""
        sess = self.sess
        if cmdsn == sess.exp_cmdsn:
            sess.exp_cmdsn = (cmdsn + 1) & 0xFFFFFFFF
            run(arg)
            ooo = self.ooo
            while ooo and sess.exp_cmdsn in ooo:
                nxt, nxt_arg = ooo.pop(sess.exp_cmdsn)
                sess.exp_cmdsn = (sess.exp_cmdsn + 1) & 0xFFFFFFFF
                nxt(nxt_arg)
            return
        if P.serial_lt(cmdsn, sess.exp_cmdsn):
            self._klog("debug", "Received CmdSN: 0x%08x is less than ExpCmdSN: 0x%08x, ignoring.",
                       cmdsn, sess.exp_cmdsn)
            return
        if P.serial_gt(cmdsn, sess.max_cmdsn):
            self._klog("err", "Received CmdSN: 0x%08x is greater than MaxCmdSN: 0x%08x, ignoring.",
                       cmdsn, sess.max_cmdsn)
            return
        self.ooo[cmdsn] = (run, arg)

    def _inc_maxcmdsn(self) -> None:
        self.sess.max_cmdsn = (self.sess.max_cmdsn + 1) & 0xFFFFFFFF

    # -- SCSI Command -----------------------------------------------------------------------------
    def _scsi_cmd_header(self, req: P.Pdu, dlen: int):
        """iscsit_setup_scsi_cmd's checks, before the data segment is read: (read, write,
        EDTL) with the R/W bits fixed up, or False when the command was rejected (its data
        is then not read, as in the kernel)."""
        self.sess.cmd_pdus += 1  # iscsit_setup_scsi_cmd counts before any check
        bhs = req.bhs
        flags = bhs[1]
        edtl = int.from_bytes(bhs[20:24], "big")
        p = self.p
        if not flags & P.CMD_WRITE and not flags & P.F_FINAL:
            self._klog("err", "ISCSI_FLAG_CMD_WRITE & ISCSI_FLAG_CMD_FINAL not set. Bad iSCSI "
                       "Initiator.")
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            return False
        read, write = bool(flags & P.CMD_READ), bool(flags & P.CMD_WRITE)
        if (read or write) and edtl == 0:
            read = write = False
            self._klog("warn", "ISCSI_FLAG_CMD_READ or ISCSI_FLAG_CMD_WRITE set when Expected "
                       "Data Transfer Length is 0 for CDB: 0x%02x, Fixing up flags", bhs[32])
        if not read and not write and edtl:
            self._klog("err", "ISCSI_FLAG_CMD_READ and/or ISCSI_FLAG_CMD_WRITE MUST be set if "
                       "Expected Data Transfer Length is not 0. Bad iSCSI Initiator")
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            return False
        if read and write:
            self._klog("err", "Bidirectional operations not supported!")
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            return False
        if bhs[0] & P.OP_IMMEDIATE:
            self._klog("err", "Illegally set Immediate Bit in iSCSI Initiator Scsi Command PDU.")
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            return False
        if dlen:
            if not p.immediate_data:
                self._klog("err", "ImmediateData=No but DataSegmentLength=%u, protocol error.",
                           dlen)
                self.reject(req, P.REASON_PROTOCOL_ERROR)
                return False
            if edtl == dlen and not flags & P.F_FINAL:
                self._klog("err", "Expected Data Transfer Length and Length of Immediate Data "
                           "are the same, but ISCSI_FLAG_CMD_FINAL bit is not set protocol "
                           "error")
                self.reject(req, P.REASON_PROTOCOL_ERROR)
                return False
            if dlen > edtl:
                # the kernel prints the header's big-endian field as a host (little-endian)
                # number
                self._klog("err", "DataSegmentLength: %u is greater than EDTL: %u, protocol "
                           "error.", dlen, int.from_bytes(bhs[20:24], "little"))
                self.reject(req, P.REASON_PROTOCOL_ERROR)
                return False
            if dlen > p.max_recv_dsl:
                self._klog("err", "DataSegmentLength: %u is greater than "
                           "MaxXmitDataSegmentLength: %u, protocol error.", dlen, p.max_recv_dsl)
                self.reject(req, P.REASON_PROTOCOL_ERROR)
                return False
            if dlen > p.first_burst:
                self._klog("err", "DataSegmentLength: %u is greater than FirstBurstLength: "
                           "%u, protocol error.", dlen, p.first_burst)
                self.reject(req, P.REASON_BOOKMARK_INVALID)
                return False
        elif edtl == 0 and not flags & P.F_FINAL:
            self.reject(req, P.REASON_PROTOCOL_ERROR)
            return False
        if req.ahs:
            ahs = req.ahs
            if len(ahs) < 4 or ahs[2] != P.AHS_EXTENDED_CDB:
                if len(ahs) >= 3:
                    self._klog("err", "Additional Header Segment type %d not supported!",
                               ahs[2])
                self.reject(req, P.REASON_CMD_NOT_SUPPORTED)
                return False
        return read, write, edtl

    def on_scsi_cmd(self, req: P.Pdu, hdr: Optional[tuple] = None) -> None:
        """A SCSI Command whose header passed :meth:`_scsi_cmd_header` (``hdr``, its
        answer, or None to read it again), with its data."""
        bhs = req.bhs
        flags = bhs[1]
        dlen = len(req.data)
        if hdr is not None:
            read, write, edtl = hdr
        else:
            edtl = int.from_bytes(bhs[20:24], "big")
            read, write = bool(flags & P.CMD_READ), bool(flags & P.CMD_WRITE)
            if edtl == 0:
                read = write = False  # the fix-up _scsi_cmd_header warned of
        p = self.p
        cdb = req.cdb if req.ahs else bhs[32:48]
        lun_bytes = bhs[8:16]
        task = Task(int.from_bytes(bhs[16:20], "big"), int.from_bytes(bhs[24:28], "big"),
                    P.lun_to_int(lun_bytes), lun_bytes, cdb, edtl, read, write)
        if write:
            task.unsolicited_done = bool(flags & P.F_FINAL)
            if dlen < edtl:
                task.buf = self._buffer(task)
                if dlen:
                    task.buf[:dlen] = req.data
            else:
                task.data = req.data
            task.received = task.r2t_offset = task.first_burst_len = dlen
            if not task.unsolicited_done:  # iscsit_set_dataout_sequence_values, unsolicited
                task.seq_start, task.seq_end = dlen, min(edtl, p.first_burst)
        self.tasks[task.itt] = task
        self._sequence(task.cmdsn, self._start_task, task)
        if not task.sequenced and task.cmdsn not in self.ooo:
            del self.tasks[task.itt]  # dropped by the window: the kernel frees it
        if not task.unsolicited_done and (task.sequenced or task.cmdsn in self.ooo):
            self._dataout_start(task)  # iscsit_set_unsolicited_dataout (not if dropped)

    def _buffer(self, task: Task) -> bytearray:
        """The whole data-out buffer of ``task`` (EDTL bytes). With DataSequenceInOrder and
        DataPDUInOrder a Data-Out is taken only at the offset received so far and the
        command runs once EDTL bytes are in, so every byte is written before it is read and
        a large buffer is not zeroed first; otherwise zeros until received."""
        n = task.edtl
        try:
            p = self.p
            if n >= _UNINITIALISED_FROM and p.data_seq_in_order and p.data_pdu_in_order:
                return _uninitialised(n)
            return bytearray(n)
        except MemoryError:
            raise CloseConnection(f"simfs: iSCSI: no memory for the {task.edtl} bytes of "
                                  f"ITT 0x{task.itt:08x}, closing the connection.") from None

    def _start_task(self, task: Task) -> None:
        task.sequenced = True
        if task.aborted:
            self.tasks.pop(task.itt, None)
            return
        if task.write and task.received < task.edtl:
            if task.unsolicited_done:
                self._next_sequence(task)
                self._send_r2ts(task)
            return
        self._execute(task)

    def _send_r2ts(self, task: Task) -> None:
        """iscsit_build_r2ts_for_cmd: up to MaxOutstandingR2T bursts of MaxBurstLength."""
        p = self.p
        if task.r2t_offset < task.edtl:
            self._dataout_start(task)
        while (len(task.outstanding_r2ts) < p.max_outstanding_r2t
               and task.r2t_offset < task.edtl):
            length = min(p.max_burst, task.edtl - task.r2t_offset)
            ttt = self.sess.next_ttt()
            task.outstanding_r2ts[ttt] = [task.r2t_offset, length, 0]
            self.send(P.build_r2t(task.lun_bytes, task.itt, ttt, self.statsn, self.exp_cmdsn,
                                  self.max_cmdsn, task.r2tsn, task.r2t_offset, length))
            task.r2tsn += 1
            task.r2t_offset += length

    def _next_sequence(self, task: Task) -> None:
        """iscsit_set_dataout_sequence_values for solicited data: the offsets the next
        Data-Out sequence (one R2T's burst) may cover."""
        mbl = self.p.max_burst
        if not task.seq_start and not task.seq_end:
            task.seq_start = task.received
            task.seq_end = task.received + mbl if task.edtl > mbl else task.edtl
        else:
            task.seq_start = task.seq_end
            task.seq_end = min(task.seq_end + mbl, task.edtl)

    # -- Data-Out ---------------------------------------------------------------------------------
    def _data_out_check(self, req: P.Pdu, n: int):
        """The header checks of a Data-Out: (task, R2T sequence or None) to take the data,
        None to discard it; raises CloseConnection where the kernel fails the connection."""
        task = self.tasks.get(req.itt)
        if task is None or task.write and task.received >= task.edtl:
            # iscsit_find_cmd_from_itt_or_dump: a command with all its data is not looked at
            self._klog("err", "Unable to locate ITT: 0x%08x on CID: %hu, dumping payload",
                       _raw(req.itt), self.cid)
            return None
        self.sess.rx_data_octets += n  # the command is known: counted before the checks
        if not task.write:
            self._klog("err", "Command ITT: 0x%08x received DataOUT for a NON-WRITE command.",
                       _raw(task.itt))
            return None
        if task.itt in self._dataout:  # iscsit_mod_dataout_timer
            self._dataout[task.itt] = self.now + self.dataout_timeout
        off = req.buffer_offset
        if off + n > task.edtl:
            self._klog("err", "DataOut Offset: %u, Length %u greater than iSCSI Command EDTL "
                       "%u, protocol error.", off, n, task.edtl)
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            return _REFUSED
        p = self.p
        if p.data_seq_in_order and p.data_pdu_in_order:
            return self._in_order_check(req, task, off, n)
        ttt = req.ttt
        if ttt == P.RSVD_TAG:
            if self.p.initial_r2t:
                return self._unexpected_unsolicited(task)
            expect_sn = task.unsol_datasn
            seq = None
        else:
            seq = task.outstanding_r2ts.get(ttt)
            if seq is None:
                self._klog("err", "Unable to locate R2T TTT 0x%08x for ITT 0x%08x", ttt,
                           task.itt)
                return None
            expect_sn = seq[2]
        if req.datasn != expect_sn:
            return self._wrong_datasn(task, req.datasn, expect_sn)
        if seq is None:
            task.unsol_datasn += 1
        else:
            seq[2] += 1
        return task, seq

    def _in_order_check(self, req: P.Pdu, task: Task, off: int, n: int):
        """iscsit_check_pre_dataout with DataSequenceInOrder=Yes and DataPDUInOrder=Yes
        (what initiators negotiate): the DataSN, the unsolicited or solicited sequence, then
        the offset. (task, None) to take the data, None to discard it."""
        itt = _raw(task.itt)  # cmd->init_task_tag, printed as it came off the wire
        unsolicited = not task.unsolicited_done  # the kernel's cmd->unsolicited_data
        if unsolicited and self.p.initial_r2t:
            return self._unexpected_unsolicited(task)
        if req.datasn != task.data_sn:
            return self._wrong_datasn(task, req.datasn, task.data_sn)
        p = self.p
        final = req.final
        if unsolicited:  # iscsit_dataout_check_unsolicited_sequence
            if off < task.seq_start or off + n > task.seq_end:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x} with Offset: {off}, Length: {n} outside of "
                    f"Unsolicited Sequence {task.seq_start}:{task.seq_end} while "
                    "DataSequenceInOrder=Yes.")
            fbl = task.first_burst_len + n
            if fbl > p.first_burst:
                return self._cannot_recover(
                    f"Total {fbl} bytes exceeds FirstBurstLength: {p.first_burst} for this "
                    "Unsolicited DataOut Burst.", task)
            if final:
                if fbl != task.edtl and fbl != p.first_burst:
                    return self._cannot_recover(
                        f"Unsolicited non-immediate data received {fbl} does not equal "
                        f"FirstBurstLength: {p.first_burst}, and does not equal ExpXferLen "
                        f"{task.edtl}.", task)
            elif fbl == p.first_burst:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x} reached FirstBurstLength: {p.first_burst}, but "
                    "ISCSI_FLAG_CMD_FINAL is not set. protocol error.")
            elif fbl == task.edtl:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x} reached ExpXferLen: {task.edtl}, but "
                    "ISCSI_FLAG_CMD_FINAL is not set. protocol error.")
        else:  # iscsit_dataout_check_sequence
            if off < task.seq_start or off + n > task.seq_end:
                self._klog("err", "Command ITT: 0x%08x with Offset: %u, Length: %u outside of "
                           "Sequence %u:%u while DataSequenceInOrder=Yes.", itt, off, n,
                           task.seq_start, task.seq_end)
                return None
            nbl = task.next_burst_len + n
            if nbl > p.max_burst:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x}, NextBurstLength: {task.next_burst_len} and "
                    f"Length: {n} exceeds MaxBurstLength: {p.max_burst}. protocol error.")
            if final:
                if nbl < p.max_burst and task.received + n < task.edtl:
                    return self._cannot_recover(
                        f"Command ITT: 0x{itt:08x} set ISCSI_FLAG_CMD_FINAL before end of "
                        "DataOUT sequence, protocol error.")
            elif nbl == p.max_burst:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x} reached MaxBurstLength: {p.max_burst}, but "
                    "ISCSI_FLAG_CMD_FINAL is not set, protocol error.")
            elif task.received + n == task.edtl:
                return self._cannot_recover(
                    f"Command ITT: 0x{itt:08x} reached last DataOUT PDU in sequence but "
                    "ISCSI_FLAG_CMD_FINAL is not set, protocol error.")
        if off != task.received:  # iscsit_dataout_pre_datapduinorder_yes
            self._klog("err", "Command ITT: 0x%08x, received offset %u different than expected "
                       "%u.", itt, off, task.received)
            return self._cannot_recover("Unable to perform within-command recovery while ERL=0.")
        return task, None

    def _wrong_datasn(self, task: Task, datasn: int, expect_sn: int):
        """iscsit_dataout_check_datasn for a DataSN other than ``expect_sn``: a lower one
        is discarded (None), a higher one refused (:data:`_REFUSED`); the kernel compares
        plainly, not serially."""
        if datasn > expect_sn:
            self._klog("err", "Command ITT: 0x%08x, received DataSN: 0x%08x higher than "
                       "expected 0x%08x.", _raw(task.itt), datasn, expect_sn)
            return self._cannot_recover("Unable to perform within-command recovery while ERL=0.")
        self._klog("err", "Command ITT: 0x%08x, received DataSN: 0x%08x lower than expected "
                   "0x%08x, discarding payload.", _raw(task.itt), datasn, expect_sn)
        return None

    def _cannot_recover(self, why: str, short: Optional[Task] = None):
        """DATAOUT_CANNOT_RECOVER from the header checks: the line; ``short``, a command
        whose unsolicited data is wrong in amount, ends in CHECK CONDITION (INCORRECT AMOUNT
        OF DATA). iscsit_handle_data_out then returns 0 without reading the payload: the
        connection stays and the payload is parsed as what follows."""
        self._klog("err", why)
        if short is not None:
            self._fail_write(short, sense_mod.INCORRECT_AMOUNT_OF_DATA())
        return _REFUSED

    def _unexpected_unsolicited(self, task: Task):
        """Unsolicited Data-Out while InitialR2T=Yes: the command ends in CHECK CONDITION
        (UNEXPECTED UNSOLICITED DATA) and the payload is not read."""
        self._klog("err", "Received unexpected unsolicited data while InitialR2T=Yes, "
                   "protocol error.")
        self._fail_write(task, sense_mod.UNEXPECTED_UNSOLICITED_DATA())
        return _REFUSED

    def _fail_write(self, task: Task, err) -> None:
        """transport_send_check_condition_and_sense for a write still receiving data."""
        self._dataout.pop(task.itt, None)
        self.complete(task, Result(status=CHECK_CONDITION, sense=sense_mod.build_sense(err)))

    def _in_order_done(self, req: P.Pdu, task: Task, n: int) -> None:
        """iscsit_dataout_post_crc_passed with DataSequenceInOrder=Yes: the burst counters,
        then the command runs (all data in) or the next R2Ts go (a burst complete)."""
        p = self.p
        if not task.unsolicited_done:
            burst_done = task.first_burst_len + n == p.first_burst
            task.first_burst_len += n
            task.data_sn += 1
            if burst_done or req.final:
                task.first_burst_len = 0
                task.unsolicited_done = True
                task.r2t_offset = max(task.r2t_offset, task.received + n)
        else:
            burst_done = task.next_burst_len + n == p.max_burst
            if burst_done:  # iscsit_dataout_update_r2t: the R2T this burst answered is done
                end = task.received + n
                done = [ttt for ttt, (o, ln, _) in task.outstanding_r2ts.items()
                        if o <= task.received and o + ln >= end]
                if not done:
                    raise CloseConnection(f"Unable to locate R2T for Offset: {task.received}, "
                                          f"Length: {n}")
                del task.outstanding_r2ts[done[0]]
            task.next_burst_len = 0 if burst_done else task.next_burst_len + n
            task.data_sn += 1
        if burst_done:
            task.data_sn = 0
        task.received += n
        if task.received >= task.edtl and self._dataout:
            self._dataout.pop(task.itt, None)  # all data in: iscsit_stop_dataout_timer
        if task.aborted:
            return
        if task.received >= task.edtl:
            task.outstanding_r2ts.clear()
            if task.sequenced:
                self._execute(task)
        elif burst_done and task.sequenced:
            self._next_sequence(task)
            self._send_r2ts(task)

    def _data_out_header(self, req: P.Pdu, dlen: int) -> None:
        """A Data-Out header, checked before its payload is read: the payload goes straight
        to the command's buffer (with data digests, once it is in and checked), is skipped
        when the checks discard it, or is left unread when they refuse the header."""
        got = self._data_out_check(req, dlen)
        if got is _REFUSED:
            return  # iscsit_handle_data_out returns without reading the payload
        pad = -dlen & 3
        if got is None:  # iscsit_dump_data_payload: the data, its padding and digest
            self._skip = dlen + pad + (4 if self.dd else 0)
            return
        if self.dd:  # the digest is checked once the data is in (_take_data)
            self._pending = (req, dlen + pad + 4, got, None)
            return
        task, seq = got
        off = req.buffer_offset
        have = min(self._rlen - self._rpos, dlen)
        if have:
            task.buf[off:off + have] = memoryview(self._rb)[self._rpos:self._rpos + have]
            self._rpos += have
        if have == dlen:
            self._skip = pad
            self._data_out_done(req, task, seq, off, dlen)
            return
        self._direct = memoryview(task.buf)[off + have:off + dlen]
        self._header_only = dlen - have >= HEADER_ONLY_AFTER
        self._direct_pos = 0
        self._after_direct = (req, task, seq, off, dlen)

    def _data_out_done(self, req: P.Pdu, task: Task, seq, off: int, n: int) -> None:
        p = self.p
        if p.data_seq_in_order and p.data_pdu_in_order:
            return self._in_order_done(req, task, n)
        task.received += n
        if task.received >= task.edtl and self._dataout:
            self._dataout.pop(task.itt, None)  # all data in: iscsit_stop_dataout_timer
        if req.final:
            if seq is None:
                task.unsolicited_done = True
                task.r2t_offset = max(task.r2t_offset, task.received)
            else:
                del task.outstanding_r2ts[req.ttt]
        if task.aborted:
            return
        if task.received >= task.edtl:
            if task.sequenced and not task.outstanding_r2ts:
                self._execute(task)
        elif req.final and task.sequenced and task.unsolicited_done:
            self._send_r2ts(task)

    # -- execution and completion -----------------------------------------------------------------
    def _execute(self, task: Task) -> None:
        # the EDTL and the (fixed-up) R/W flags: the core's data_length and data_direction
        kw = {"data_length": task.edtl,
              "data_direction": DATA_OUT if task.write else DATA_IN if task.read else DATA_NONE}
        args = (self.sess.isid_str, task.lun, task.cdb,
                task.data_out() if task.write else b"")
        self.actions.append(Execute(task, args, kw))

    def failed(self, task: Task, err: BaseException) -> None:
        """The command raised in the backend: a HARDWARE ERROR answer (the connection lives)."""
        self.log.err(f"simfs: iSCSI: command 0x{task.cdb[:1].hex()} failed in the backend: "
                     f"{err!r}")
        self.complete(task, hardware_error())

    def complete(self, task: Task, res) -> None:
        """A command's result (a :class:`~simfs.scsi.command.Result`): its Data-In and
        response are queued, unless it was aborted or the connection is going."""
        if self.tasks.get(task.itt) is task:
            del self.tasks[task.itt]
        if task.aborted or self.closing:
            return
        status = res.status
        sense = res.sense or b""
        data = res.data or b""
        if status == GOOD and not sense and self._whole(task, len(data)):
            resid_flags = residual = 0
            keep = len(data)
        else:
            resid_flags, residual, keep = residuals(task.read, task.write, task.edtl,
                                                    len(data), status,
                                                    lambda: self._cdb_length(task)) \
                if getattr(res, "residual", True) else (0, 0, len(data))  # refused before set
        if keep < len(data):
            data = memoryview(data)[:keep] if keep else b""
        datasn = 0
        if task.read and data and status == GOOD:
            datasn = self._send_data_in(task, data, status, resid_flags, residual,
                                        collapse=not sense)
            if not sense:
                return
        self._inc_maxcmdsn()
        payload = sense_segment(sense) if sense else b""
        self.sess.rsp_pdus += 1
        self.send(P.build_scsi_rsp(task.itt, status, self._stat(), self.exp_cmdsn,
                                   self.max_cmdsn, datasn, resid_flags, residual,
                                   len(payload)), payload)

    @staticmethod
    def _whole(task: Task, n: int) -> bool:
        """Whether a READ/WRITE(10/16) that ended GOOD with ``n`` bytes of data-in moved
        exactly what its CDB and the EDTL both asked for (so :func:`residuals` finds no
        residual), told without asking the TPG."""
        bs = task.block_size
        if bs is None or task.cdb[0] not in _RUN_NOW_OPS:
            return False
        blocks = cdb_blocks(task.cdb)
        edtl = task.edtl
        return blocks is not None and blocks * bs == edtl \
            and n == (edtl if task.read else 0) and task.read != task.write

    def _cdb_length(self, task: Task) -> Optional[int]:
        """The transfer length the CDB asks for (the kernel's ``size`` in
        target_cmd_size_check), for residual reporting; None when unknown."""
        blocks = cdb_blocks(task.cdb)
        if task.cdb[:1] in (b"\x35", b"\x91"):
            # SYNCHRONIZE CACHE has a size only where the backend syncs (exec_cmd_ops'
            # execute_sync_cache: fileio, iblock); elsewhere it is a no-op of size 0
            syncs = getattr(self.sess.tpg, "sync_cache", None)
            try:
                if syncs is not None and not syncs(task.lun):
                    return 0
            except Exception:  # noqa: BLE001
                return 0
        if blocks is not None:
            bs = task.block_size
            if bs is None:
                bs = getattr(self.sess.tpg, "block_size", None)
                try:
                    bs = int(bs(task.lun)) if callable(bs) else int(bs or 512)
                except Exception:  # noqa: BLE001
                    bs = 512
            return blocks * bs
        return cdb_out_length(task.cdb) if task.write else cdb_in_length(task.cdb)

    def _send_data_in(self, task: Task, data, status: int, resid_flags: int, residual: int,
                      collapse: bool) -> int:
        n = len(data)
        self.sess.tx_data_octets += n
        mrdsl = self.p.max_xmit_dsl
        mbl = self.p.max_burst
        if n <= mrdsl and n <= mbl:
            # one PDU, as most reads are: the loop's outcome without its bookkeeping (a
            # third of this call's cost)
            flags = P.F_FINAL
            statsn = 0
            if collapse:
                flags |= P.DATAIN_STATUS | resid_flags
                self._inc_maxcmdsn()
                statsn = self._stat()
            self.send(P.build_data_in(flags, status, _NO_LUN, task.itt, P.RSVD_TAG, statsn,
                                      self.exp_cmdsn, self.max_cmdsn, 0, 0,
                                      residual if collapse else 0, n), data)
            return 1
        mv = data if isinstance(data, memoryview) else memoryview(data)
        off = 0
        datasn = 0
        burst_left = mbl
        send = self.send
        while off < n:
            seg = min(mrdsl, n - off, burst_left)
            last = off + seg == n
            burst_left -= seg
            flags = 0
            if last or burst_left == 0:
                flags = P.F_FINAL
                burst_left = mbl
            statsn = 0
            if last and collapse:
                flags |= P.DATAIN_STATUS | resid_flags
                self._inc_maxcmdsn()
                statsn = self._stat()
            send(P.build_data_in(flags, status, _NO_LUN, task.itt, P.RSVD_TAG, statsn,
                                 self.exp_cmdsn, self.max_cmdsn, datasn, off,
                                 residual if flags & P.DATAIN_STATUS else 0, seg),
                 mv[off:off + seg] if seg != n else mv)
            datasn += 1
            off += seg
        return datasn

    # -- NOP-Out ----------------------------------------------------------------------------------
    def _nop_out_header(self, req: P.Pdu) -> bool:
        """iscsit_setup_nop_out's checks before CmdSN ordering: False when the request was
        rejected (the connection stays)."""
        if not req.final:
            self._klog("err", "NopOUT Flag's, Left Most Bit not set, protocol error.")
        elif req.itt == P.RSVD_TAG and not req.immediate:
            self._klog("err", "NOPOUT ITT is reserved, but Immediate Bit is not set, protocol "
                       "error.")
        else:
            return True
        self.reject(req, P.REASON_PROTOCOL_ERROR)
        return False

    def on_nop_out(self, req: P.Pdu) -> None:
        ttt = req.ttt
        if ttt != P.RSVD_TAG:
            # an answer to our NOP-In ping
            if ttt == self.nopin_ttt:
                self.nopin_ttt = None
            return
        if req.itt == P.RSVD_TAG:
            if not req.immediate:
                self._inc_maxcmdsn()
            return  # a ping the initiator wants no answer to
        if req.dlength > self.p.max_xmit_dsl:
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if not req.immediate:
            self._inc_maxcmdsn()
        self.send(P.build_nop_in(req.lun_bytes, req.itt, P.RSVD_TAG, self._stat(),
                                 self.exp_cmdsn, self.max_cmdsn, len(req.data)), req.data)

    # -- Task Management --------------------------------------------------------------------------
    def _tmf_header(self, req: P.Pdu) -> bool:
        """iscsit_handle_task_mgt_cmd's checks before CmdSN ordering: False when the request
        was rejected (its CmdSN is then not taken, as the kernel's Reject does not)."""
        fn = req.tmf_function
        if fn not in (P.TMF_ABORT_TASK, P.TMF_TASK_REASSIGN) and req.rtt != P.RSVD_TAG:
            self._klog("err", "RefTaskTag should be set to 0xFFFFFFFF.")
        if fn == P.TMF_TASK_REASSIGN and not req.immediate:
            self._klog("err", "Task Management Request TASK_REASSIGN not issued as immediate "
                       "command, bad iSCSI Initiatorimplementation")
            self.reject(req, P.REASON_PROTOCOL_ERROR)
            return False
        if fn not in P.TMF_NAMES:  # iscsit_convert_tmf: TMR_UNKNOWN
            self._klog("err", "Unknown iSCSI TMR Function: 0x%02x", fn)
            self.reject(req, P.REASON_BOOKMARK_NO_RESOURCES)
            return False
        return True

    def _tmr_lun(self, lun: int) -> bool:
        """transport_lookup_tmr_lun: whether the session's ACL maps ``lun`` to a device (no
        virtual LUN 0 here); the TPG view logs the kernel's line when it does not."""
        tpg = self.sess.tpg
        if tpg is None:
            return False
        lookup = getattr(tpg, "tmr_lun", None)
        return lookup(lun) if lookup is not None else lun in set(tpg.luns())

    def on_tmf(self, req: P.Pdu) -> None:
        fn = req.tmf_function
        sess = self.sess
        tpg = sess.tpg
        resp = P.TMF_RSP_COMPLETE
        lun = req.lun
        if fn != P.TMF_TASK_REASSIGN and not self._tmr_lun(lun):
            resp = P.TMF_RSP_NO_LUN
        elif fn == P.TMF_ABORT_TASK:
            ref = self.tasks.get(req.rtt)
            if ref is None:  # iscsit_find_cmd_from_itt, then iscsit_tmr_abort_task
                self._klog("err", "Unable to locate ITT: 0x%08x on CID: %hu", _raw(req.rtt),
                           self.cid)
                self._klog("err", "Unable to locate RefTaskTag: 0x%08x on CID: %hu.",
                           _raw(req.rtt), self.cid)
                in_window = (not P.serial_lt(req.ref_cmdsn, sess.exp_cmdsn)
                             and not P.serial_gt(req.ref_cmdsn, sess.max_cmdsn))
                resp = P.TMF_RSP_COMPLETE if in_window else P.TMF_RSP_NO_TASK
            elif ref.cmdsn != req.ref_cmdsn:
                self._klog("err", "RefCmdSN 0x%08x does not equal task's CmdSN 0x%08x. "
                           "Rejecting ABORT_TASK.", _raw(req.ref_cmdsn), ref.cmdsn)
                resp = P.TMF_RSP_REJECTED
            else:
                self._abort(ref)
                self.actions.append(ManageTask(req, fn, lun, req.rtt))
                return
        elif fn in (P.TMF_ABORT_TASK_SET, P.TMF_CLEAR_TASK_SET, P.TMF_LOGICAL_UNIT_RESET):
            for t in list(self.tasks.values()):
                if t.lun == lun:
                    self._abort(t)
            self.actions.append(ManageTask(req, fn, lun, req.rtt))
            return
        elif fn == P.TMF_CLEAR_ACA:
            resp = P.TMF_RSP_NOT_SUPPORTED
        elif fn in (P.TMF_TARGET_WARM_RESET, P.TMF_TARGET_COLD_RESET):
            attr = "tmr_warm_reset" if fn == P.TMF_TARGET_WARM_RESET else "tmr_cold_reset"
            if not getattr(tpg, attr, False):
                self._klog("err", "TMR Opcode %s authorization failed for Initiator Node: %s",
                           P.TMF_NAMES[fn], sess.initiator)
                resp = P.TMF_RSP_AUTH_FAILED
            else:
                resp = P.TMF_RSP_NOT_SUPPORTED
        else:  # TASK_REASSIGN: connection recovery (ERL 2) is not built
            resp = P.TMF_RSP_NOT_SUPPORTED
        self.tmf_done(req, resp)

    def tmf_done(self, req: P.Pdu, resp: int) -> None:
        """The TMF's response (after its :class:`ManageTask`, or at once)."""
        if self.closing:
            return
        if not req.immediate:
            self._inc_maxcmdsn()
        self.send(P.build_tmf_rsp(resp, req.itt, self._stat(), self.exp_cmdsn, self.max_cmdsn))

    def _abort(self, task: Task) -> None:
        task.aborted = True
        self.tasks.pop(task.itt, None)
        if task.sequenced:
            self._inc_maxcmdsn()

    # -- Text (SendTargets) -----------------------------------------------------------------------
    def _text_header(self, req: P.Pdu) -> bool:
        """iscsit_setup_text_cmd, before the data is read: False when refused (a Reject; the
        data is then not read)."""
        if not req.final or req.bhs[1] & P.TEXT_CONTINUE:
            self._klog("err", "Multi sequence text commands currently not supported")
            self.reject(req, P.REASON_CMD_NOT_SUPPORTED)
            return False
        return True

    def _text_request(self, req: P.Pdu) -> None:
        """iscsit_handle_text_cmd and iscsit_process_text_cmd, before CmdSN ordering: the
        last byte of the data becomes a NUL, and anything but SendTargets=All or
        SendTargets=<iqn./eui. name> is rejected and closes the connection."""
        text = req.data[:-1] if req.data else b""
        if req.ttt != P.RSVD_TAG and not req.data:  # a continuation: no response to continue
            self.reject(req, P.REASON_BOOKMARK_NO_RESOURCES)
            raise CloseConnection(f"Unable to locate ITT: 0x{_raw(req.itt):08x} on CID: "
                                  f"{self.cid}")
        if not req.data:
            why = "Unable to locate text_in buffer for sendtargets discovery"
        elif not text.startswith(b"SendTargets="):
            why = "Received Text Data that is not SendTargets, cannot continue."
        else:
            value = text[12:].split(b"\0", 1)[0]
            if value == b"All" or value[:4] in (b"iqn.", b"eui."):
                return
            why = (f"Unable to locate valid SendTargets="
                   f"{value.decode('utf-8', 'replace')} value")
        self.reject(req, P.REASON_PROTOCOL_ERROR)
        raise CloseConnection(why)

    def on_text(self, req: P.Pdu) -> None:
        """A SendTargets request that passed :meth:`_text_request`, in CmdSN order."""
        st = req.data[12:-1].split(b"\0", 1)[0].decode("utf-8", "replace")
        sess = self.sess
        out = []
        try:
            targets = self._discovery(sess.initiator, sess.local) if self._discovery else []
        except Exception as e:  # noqa: BLE001
            self.log.err(f"simfs: iSCSI discovery failed: {e!r}")
            targets = []
        for name, addrs in targets:
            if st != "All" and name != st:
                continue
            if not sess.discovery and st == "All" and name != sess.target_name:
                continue
            out.append(("TargetName", name))
            for a in addrs:
                out.append(("TargetAddress", a))
        payload = encode_text(out)[: self.p.max_xmit_dsl]
        if not req.immediate:
            self._inc_maxcmdsn()
        self.send(P.build_text_rsp(True, False, req.lun_bytes, req.itt, P.RSVD_TAG,
                                   self._stat(), self.exp_cmdsn, self.max_cmdsn, len(payload)),
                  payload)

    # -- Logout -----------------------------------------------------------------------------------
    def on_logout(self, req: P.Pdu) -> None:
        reason = req.logout_reason
        count = getattr(self.sess.tpg, "logout_received", None)  # the IQN's logout stats
        if count is not None and not self.sess.discovery:
            count(reason)
        resp = P.LOGOUT_SUCCESS
        if reason == P.LOGOUT_CLOSE_CONNECTION and req.cid != self.cid:
            resp = P.LOGOUT_CID_NOT_FOUND
        elif reason == P.LOGOUT_REMOVE_CONN_FOR_RECOVERY:  # iscsit_logout_removeconnforrecovery
            self._klog("err", "Received Logout Request REMOVECONNFORRECOVERY while ERL!=2.")
            resp = P.LOGOUT_RECOVERY_UNSUPPORTED
        elif reason not in (P.LOGOUT_CLOSE_SESSION, P.LOGOUT_CLOSE_CONNECTION):
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if not req.immediate:
            self._inc_maxcmdsn()
        self.send(P.build_logout_rsp(resp, req.itt, self._stat(), self.exp_cmdsn,
                                     self.max_cmdsn, self.p.time2wait, self.p.time2retain))
        if resp == P.LOGOUT_SUCCESS:
            self._close(None)


def sense_segment(sense: bytes) -> bytes:
    """A SCSI Response's data segment for ``sense``: SenseLength (the sense buffer's
    size, as iscsit_send_response sends the core's scsi_sense_length) and the buffer:
    the sense data zero-filled to :data:`SENSE_BUFFER` bytes; a pass-through backend's
    longer sense is cut there, as transport_copy_sense_to_cmd copies that many)."""
    sense = bytes(sense[:SENSE_BUFFER])
    return SENSE_BUFFER.to_bytes(2, "big") + sense + bytes(SENSE_BUFFER - len(sense))


def status_result(status: int) -> Result:
    """A result with ``status`` and nothing else (TASK SET FULL when a queue is full)."""
    return Result(status=status)


def hardware_error() -> Result:
    """CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (a backend that raised)."""
    sense = bytearray(18)
    sense[0], sense[2], sense[7], sense[12] = 0x70, 0x04, 10, 0x44
    return Result(status=CHECK_CONDITION, sense=bytes(sense))
