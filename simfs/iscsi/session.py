"""Sessions and connections in full feature phase (drivers/target/iscsi/iscsi_target.c).

One :class:`Connection` per TCP connection (a session has exactly one: MaxConnections=1 is
what the target negotiates). The reader loop takes one PDU at a time:

* SCSI Command: checks of iscsit_setup_scsi_cmd (Reject PDUs), CmdSN windowing
  (iscsit_sequence_cmd: too low or above MaxCmdSN -> silently dropped, ahead -> held until the
  gap fills), immediate/unsolicited data, R2Ts (MaxBurstLength, MaxOutstandingR2T), then the
  command runs through ``tpg.submit``; Data-In is cut to the initiator's
  MaxRecvDataSegmentLength and MaxBurstLength sequences, the last one carrying the status
  (phase collapse) unless sense data must go in a SCSI Response; residuals are the kernel's.
* NOP-Out/NOP-In, Task Management, Logout, Text (SendTargets), Data-Out, SNACK (rejected).
* A NOP-In ping every ``nopin_timeout`` seconds; no answer within ``nopin_response_timeout``
  closes the connection (the kernel's iscsit_start_nopin_timer / nopin_response_timer).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from simfs.iscsi import digest as D
from simfs.iscsi import pdu as P
from simfs.iscsi.report import addr_text
from simfs.iscsi.text import SessionParams, encode_text, parse_text
from simfs.iscsi.workers import QueueFull
from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT


GOOD, CHECK_CONDITION = 0x00, 0x02
TASK_SET_FULL = 0x28
#: buffers per writev (Linux's IOV_MAX is 1024)
IOV_MAX = 1024
#: the largest data segment read_pdu takes in one piece from what is already buffered
_FAST_DSL = 65536


class CloseConnection(Exception):
    pass


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
    immediate_cmd: bool
    #: data-out collection
    chunks: list = field(default_factory=list)
    buf: Optional[bytearray] = None
    received: int = 0
    next_offset: int = 0
    unsolicited_done: bool = True
    r2t_offset: int = 0
    outstanding_r2ts: dict = field(default_factory=dict)  # ttt -> [offset, length, datasn]
    r2tsn: int = 0
    unsol_datasn: int = 0
    sequenced: bool = False
    aborted: bool = False

    def data_out(self) -> bytes:
        if self.buf is not None:
            return bytes(self.buf)
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


class Session:
    """An iSCSI session (the kernel's iscsit_session).

    What the ACL's ``info`` file shows comes from here: ``initiator_name``,
    ``params.initiator_alias``, ``sid`` (the TPG's session id), ``isid``, ``tsih``,
    ``cmdsn_window``, ``exp_cmdsn``/``max_cmdsn``, ``login_itt``, ``ttt`` (the next target
    transfer tag) and the connection's ``cid``, ``peer`` and ``statsn``.
    """

    _serials = itertools.count(1)

    def __init__(self, server, isid: bytes, tsih: int, initiator: str, target_name: str,
                 tpg, discovery: bool, params: SessionParams, exp_cmdsn: int, max_cmdsn: int,
                 portal: tuple, initiator_alias: str = ""):
        self.server = server
        #: unique in this server; ``sid`` is the TPG's session id (set at login)
        self.serial = next(self._serials)
        self.sid = self.serial
        self.isid = isid
        self.isid_str = isid.hex()
        self.tsih = tsih
        self.initiator = initiator
        self.target_name = target_name
        self.tpg = tpg
        self.discovery = discovery
        self.params = params
        self.exp_cmdsn = exp_cmdsn
        self.max_cmdsn = max_cmdsn
        self.portal = portal
        #: the address the connection came in on (SendTargets answers it for a wildcard np)
        self.local = portal
        self.initiator_name = initiator
        self.login_itt = 0
        self.cmdsn_window = 0
        #: the next target transfer tag (sess->targ_xfer_tag)
        self.ttt = 1
        self.conn: Optional["Connection"] = None
        self.closed = False

    def next_ttt(self) -> int:
        t = self.ttt
        if t == P.RSVD_TAG or t == 0:
            t = 1
        self.ttt = (t + 1) & 0xFFFFFFFF
        return t

    def tpg_key(self):
        return self.server.tpg_key(self.tpg)


class Connection:
    """One TCP connection in full feature phase."""

    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 session: Session, statsn: int, cid: int):
        self.server = server
        self.log = server.report
        self.reader = reader
        self.writer = writer
        #: the initiator's socket address
        self.peer: Any = writer.get_extra_info("peername") \
            if hasattr(writer, "get_extra_info") else None
        self.sess = session
        self.statsn = statsn
        self.cid = cid
        self.p = session.params
        self.hd = self.p.header_digest
        self.dd = self.p.data_digest
        self.tasks: dict[int, Task] = {}
        self.ooo: dict[int, Any] = {}
        self.nopin_ttt: Optional[int] = None
        self.nopin_sent_at: Optional[float] = None
        self.closing = False
        tpg = session.tpg
        self.nopin_timeout = float(getattr(tpg, "nopin_timeout", 15) or 0)
        self.nopin_response_timeout = float(getattr(tpg, "nopin_response_timeout", 30) or 30)
        # Output is corked while the PDUs already received are handled, then sent with one
        # writev (several responses per system call at queue depth > 1, no joined copy of
        # the data segments). Invariant: nothing is left in _out while the connection waits.
        self._out: list = []
        self._corked = False
        self._flush_soon = False
        sock = writer.get_extra_info("socket") if hasattr(writer, "get_extra_info") else None
        try:
            self._fd: Optional[int] = sock.fileno() if sock is not None else None
        except Exception:  # noqa: BLE001 - a test double without a real socket
            self._fd = None
        #: the reader's buffer (to tell whether a whole PDU is already there); None if the
        #: reader is not an asyncio StreamReader
        self._rbuf = getattr(reader, "_buffer", None)
        if not isinstance(self._rbuf, bytearray):
            self._rbuf = None

    # -- output ---------------------------------------------------------------------------------
    def send(self, bhs: bytearray, data=b"") -> None:
        """Queue one PDU (header digest, data, padding, data digest)."""
        out = self._out
        out.append(bhs)
        if self.hd:
            out.append(D.digest(bhs))
        n = len(data)
        if n:
            out.append(data)
            pad = P.PADDING[n & 3]
            if pad:
                out.append(pad)
            if self.dd:
                out.append(D.digest(data if type(data) is bytes else bytes(data), pad))
        if not self._corked:
            self.flush()

    def flush(self) -> None:
        """Send what is queued: one writev straight to the socket when the transport has
        nothing buffered (what transport.write would do, without joining the buffers);
        a remainder, or any error, goes through the transport as before."""
        out = self._out
        if not out:
            return
        self._out = []
        tr = self.writer.transport
        fd = self._fd
        if fd is not None and not tr.get_write_buffer_size() and not tr.is_closing():
            try:
                while out:
                    batch = out[:IOV_MAX] if len(out) > IOV_MAX else out
                    n = os.writev(fd, batch)
                    i = 0
                    for part in batch:
                        ln = len(part)
                        if n < ln:
                            break
                        n -= ln
                        i += 1
                    if i < len(batch):  # a partial write: the transport takes the rest
                        out = [memoryview(batch[i]).cast("B")[n:], *batch[i + 1:],
                               *out[len(batch):]]
                        break
                    out = out[len(batch):]
                if not out:
                    return
            except BlockingIOError:
                pass
            except OSError:
                pass  # the transport reports it its own way below
        self.writer.write(b"".join(out))

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

    # -- input ----------------------------------------------------------------------------------
    async def read_pdu(self) -> P.Pdu:
        buf = self._rbuf
        if buf is not None and not self.hd and not self.dd and len(buf) >= P.BHS_LEN:
            # the common case at queue depth > 1: the whole PDU is already buffered
            ahs_len = buf[4] * 4
            dlen = (buf[5] << 16) | (buf[6] << 8) | buf[7]
            end = P.BHS_LEN + ahs_len + dlen
            if dlen <= _FAST_DSL and dlen <= max(self.p.max_recv_dsl, 8192) \
                    and len(buf) >= end + (-dlen & 3):
                raw = await self.reader.readexactly(end + (-dlen & 3))
                return P.Pdu(raw[:P.BHS_LEN], raw[P.BHS_LEN:P.BHS_LEN + ahs_len] if ahs_len
                             else b"", raw[P.BHS_LEN + ahs_len:end] if dlen else b"")
        self.flush()  # about to wait for the initiator: send everything first
        r = self.reader
        bhs = await r.readexactly(P.BHS_LEN)
        ahs_len = bhs[4] * 4
        ahs = await r.readexactly(ahs_len) if ahs_len else b""
        if self.hd:
            hdig = await r.readexactly(4)
            want = D.digest(bhs, ahs)
            if want != hdig:
                # iscsit_get_rx_pdu: the header becomes 0xff, an opcode nobody knows
                self._klog("err", "HeaderDigest CRC32C failed, received 0x%08x, computed "
                           "0x%08x", int.from_bytes(hdig, "little"),
                           int.from_bytes(want, "little"))
                self._klog("err", "Got unknown iSCSI OpCode: 0xff")
                raise CloseConnection("Cannot recover from unknown opcode while ERL=0, "
                                      "closing iSCSI connection.")
        dlen = (bhs[5] << 16) | (bhs[6] << 8) | bhs[7]
        data = b""
        if dlen:
            if dlen > max(self.p.max_recv_dsl, 8192):
                self._oversized(P.Pdu(bhs, ahs, b""), dlen)
            pad = -dlen & 3
            raw = await r.readexactly(dlen + pad)
            if self.dd:
                ddig = await r.readexactly(4)
                if D.digest(raw) != ddig:
                    raise CloseConnection("Unable to recover from DataOUT CRC failure while "
                                          "ERL=0, closing session.")
            data = raw[:dlen] if pad else raw
        return P.Pdu(bhs, ahs, data)

    def _oversized(self, req: P.Pdu, dlen: int) -> None:
        """A data segment beyond MaxXmitDataSegmentLength: the kernel's line for the
        opcode, a Reject, and the connection goes (its data cannot be skipped safely)."""
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
        raise CloseConnection(why)

    async def run(self) -> None:
        nop_task = None
        if self.nopin_timeout > 0:
            nop_task = asyncio.ensure_future(self._nopin_loop())
        try:
            while not self.closing:
                req = await self.read_pdu()
                self._corked = True
                try:
                    await self.dispatch(req)
                finally:
                    self._corked = False
                if len(self._out) >= 256:  # a long burst: do not hold responses back
                    self.flush()
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    self.flush()
                    await self.writer.drain()
        except CloseConnection as e:
            self.log.err(str(e))
            self.drop(str(e))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self._klog("debug", "iSCSI connection closed: %r", e)
        finally:
            if nop_task is not None:
                nop_task.cancel()
            self.flush()
            try:
                await self.writer.drain()
            except Exception:  # noqa: BLE001 - the peer may be gone
                pass
            self.writer.close()
            self.server.connection_closed(self)

    async def _nopin_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            await asyncio.sleep(self.nopin_timeout)
            if self.nopin_ttt is not None:
                continue
            self.nopin_ttt = self.sess.next_ttt()
            self.nopin_sent_at = loop.time()
            self.send(P.build_nop_in(b"\0" * 8, P.RSVD_TAG, self.nopin_ttt, self.statsn,
                                     self.exp_cmdsn, self.max_cmdsn))
            await asyncio.sleep(self.nopin_response_timeout)
            if self.nopin_ttt is not None:
                sess = self.sess
                why = (f"Did not receive response to NOPIN on CID: {self.cid}, failing "
                       f"connection for I_T Nexus {sess.initiator_name},i,0x{sess.isid.hex()},"
                       f"{sess.target_name},t,0x{getattr(sess.tpg, 'tpgt', 1):02x}")
                self.log.err(why)
                self.drop(why)
                self.closing = True
                self.writer.close()
                return

    # -- dispatch ------------------------------------------------------------------------------
    async def dispatch(self, req: P.Pdu) -> None:
        op = req.opcode
        if self.sess.discovery and op not in (P.OP_TEXT_REQ, P.OP_LOGOUT_REQ):
            self.reject(req, P.REASON_PROTOCOL_ERROR)
            raise CloseConnection(f"Received illegal iSCSI Opcode: 0x{op:02x} while in "
                                  "Discovery Session, rejecting.")
        if op == P.OP_SCSI_CMD:
            await self.on_scsi_cmd(req)
        elif op == P.OP_DATA_OUT:
            await self.on_data_out(req)
        elif op == P.OP_NOOP_OUT:
            await self._sequenced(req, self.on_nop_out)
        elif op == P.OP_TMF_REQ:
            await self._sequenced(req, self.on_tmf)
        elif op == P.OP_TEXT_REQ:
            await self._sequenced(req, self.on_text)
        elif op == P.OP_LOGOUT_REQ:
            await self._sequenced(req, self.on_logout)
        elif op == P.OP_SNACK:
            self._klog("err", "Initiator sent SNACK while ERL=0")
            self.reject(req, P.REASON_PROTOCOL_ERROR)
        else:
            self._klog("err", "Got unknown iSCSI OpCode: 0x%02x", op)
            self.reject(req, P.REASON_CMD_NOT_SUPPORTED)
            raise CloseConnection("Cannot recover from unknown opcode while ERL=0, closing "
                                  "iSCSI connection.")

    async def _sequenced(self, req: P.Pdu, handler) -> None:
        """iscsit_sequence_cmd for non-SCSI requests (immediate ones skip the window)."""
        if req.immediate:
            await handler(req)
            return
        await self._sequence(req.cmdsn, lambda: handler(req))

    async def _sequence(self, cmdsn: int, run) -> None:
        sess = self.sess
        if cmdsn == sess.exp_cmdsn:
            sess.exp_cmdsn = (cmdsn + 1) & 0xFFFFFFFF
            await run()
            while sess.exp_cmdsn in self.ooo:
                nxt = self.ooo.pop(sess.exp_cmdsn)
                sess.exp_cmdsn = (sess.exp_cmdsn + 1) & 0xFFFFFFFF
                await nxt()
            return
        if P.serial_lt(cmdsn, sess.exp_cmdsn):
            self._klog("debug", "Received CmdSN: 0x%08x is less than ExpCmdSN: 0x%08x, ignoring.",
                      cmdsn, sess.exp_cmdsn)
            return
        if P.serial_gt(cmdsn, sess.max_cmdsn):
            self._klog("err", "Received CmdSN: 0x%08x is greater than MaxCmdSN: 0x%08x, ignoring.",
                      cmdsn, sess.max_cmdsn)
            return
        self.ooo[cmdsn] = run

    def _inc_maxcmdsn(self) -> None:
        self.sess.max_cmdsn = (self.sess.max_cmdsn + 1) & 0xFFFFFFFF

    # -- SCSI Command -------------------------------------------------------------------------
    async def on_scsi_cmd(self, req: P.Pdu) -> None:
        flags = req.flags
        dlen = req.dlength
        edtl = req.edtl
        p = self.p
        if not flags & P.CMD_WRITE and not flags & P.F_FINAL:
            return self.reject(req, P.REASON_BOOKMARK_INVALID)
        read, write = bool(flags & P.CMD_READ), bool(flags & P.CMD_WRITE)
        if (read or write) and edtl == 0:
            read = write = False  # "Fixing up flags"
        if not read and not write and edtl:
            return self.reject(req, P.REASON_BOOKMARK_INVALID)
        if read and write:
            self._klog("err", "Bidirectional operations not supported!")
            return self.reject(req, P.REASON_BOOKMARK_INVALID)
        if req.immediate:
            self._klog("err", "Illegally set Immediate Bit in iSCSI Initiator Scsi Command PDU.")
            return self.reject(req, P.REASON_BOOKMARK_INVALID)
        if dlen and not p.immediate_data:
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if edtl == dlen and not flags & P.F_FINAL:
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if dlen > edtl:
            self._klog("err", "DataSegmentLength: %u is greater than EDTL: %u, protocol error.",
                       dlen, edtl)
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if dlen > p.max_recv_dsl:
            self._klog("err", "DataSegmentLength: %u is greater than MaxXmitDataSegmentLength: "
                       "%u, protocol error.", dlen, p.max_recv_dsl)
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if dlen > p.first_burst:
            self._klog("err", "DataSegmentLength: %u is greater than FirstBurstLength: %u, "
                       "protocol error.", dlen, p.first_burst)
            return self.reject(req, P.REASON_BOOKMARK_INVALID)
        if req.ahs:
            ahs = req.ahs
            if len(ahs) < 4 or ahs[2] != P.AHS_EXTENDED_CDB:
                return self.reject(req, P.REASON_CMD_NOT_SUPPORTED)
        task = Task(itt=req.itt, cmdsn=req.cmdsn, lun=req.lun, lun_bytes=req.lun_bytes,
                    cdb=req.cdb, edtl=edtl, read=read, write=write, immediate_cmd=False)
        if write:
            if dlen:
                task.chunks.append(req.data)
                task.received = task.next_offset = dlen
            task.unsolicited_done = bool(flags & P.F_FINAL)
            task.r2t_offset = task.received
        self.tasks[task.itt] = task
        await self._sequence(req.cmdsn, lambda: self._start_task(task))

    async def _start_task(self, task: Task) -> None:
        task.sequenced = True
        if task.aborted:
            self.tasks.pop(task.itt, None)
            return
        if task.write and task.received < task.edtl:
            if task.unsolicited_done:
                self._send_r2ts(task)
            return
        await self._execute(task)

    def _send_r2ts(self, task: Task) -> None:
        """iscsit_build_r2ts_for_cmd: up to MaxOutstandingR2T bursts of MaxBurstLength."""
        p = self.p
        while (len(task.outstanding_r2ts) < p.max_outstanding_r2t
               and task.r2t_offset < task.edtl):
            length = min(p.max_burst, task.edtl - task.r2t_offset)
            ttt = self.sess.next_ttt()
            task.outstanding_r2ts[ttt] = [task.r2t_offset, length, 0]
            self.send(P.build_r2t(task.lun_bytes, task.itt, ttt, self.statsn, self.exp_cmdsn,
                                  self.max_cmdsn, task.r2tsn, task.r2t_offset, length))
            task.r2tsn += 1
            task.r2t_offset += length

    async def on_data_out(self, req: P.Pdu) -> None:
        task = self.tasks.get(req.itt)
        n = req.dlength
        if task is None:
            self._klog("debug", "Unable to locate ITT 0x%08x for Data-Out, dumping payload", req.itt)
            return
        if not task.write:
            self._klog("err", "Command ITT: 0x%08x received DataOUT for a NON-WRITE command.",
                      task.itt)
            return
        off = req.buffer_offset
        if off + n > task.edtl:
            self.reject(req, P.REASON_BOOKMARK_INVALID)
            raise CloseConnection(f"DataOut Offset: {off}, Length {n} greater than iSCSI "
                                  f"Command EDTL {task.edtl}, protocol error.")
        ttt = req.ttt
        if ttt == P.RSVD_TAG:
            if self.p.initial_r2t:
                raise CloseConnection("Received unexpected unsolicited data while "
                                      "InitialR2T=Yes, protocol error.")
            expect_sn = task.unsol_datasn
            seq = None
        else:
            seq = task.outstanding_r2ts.get(ttt)
            if seq is None:
                self._klog("err", "Unable to locate R2T TTT 0x%08x for ITT 0x%08x", ttt, task.itt)
                return
            expect_sn = seq[2]
        if req.datasn != expect_sn:
            if req.datasn > expect_sn:  # the kernel compares plainly, not serially
                raise CloseConnection(
                    f"Command ITT: 0x{task.itt:08x}, received DataSN: 0x{req.datasn:08x} "
                    f"higher than expected 0x{expect_sn:08x}. Unable to perform within-command "
                    "recovery while ERL=0.")
            self._klog("err", "Command ITT: 0x%08x, received DataSN: 0x%08x lower than expected "
                      "0x%08x, discarding payload.", task.itt, req.datasn, expect_sn)
            return
        if seq is None:
            task.unsol_datasn += 1
        else:
            seq[2] += 1
        data = req.data
        if task.buf is None and off == task.next_offset:
            task.chunks.append(data)
        else:
            if task.buf is None:
                task.buf = bytearray(task.edtl)
                pos = 0
                for c in task.chunks:
                    task.buf[pos:pos + len(c)] = c
                    pos += len(c)
                task.chunks = []
            task.buf[off:off + n] = data
        task.next_offset = off + n
        task.received += n
        if req.final:
            if seq is None:
                task.unsolicited_done = True
                task.r2t_offset = max(task.r2t_offset, task.received)
            else:
                del task.outstanding_r2ts[ttt]
        if task.aborted:
            return
        if task.received >= task.edtl:
            if task.sequenced and not task.outstanding_r2ts:
                await self._execute(task)
        elif req.final and task.sequenced and task.unsolicited_done:
            self._send_r2ts(task)

    async def _execute(self, task: Task) -> None:
        """Hand the command to its device's worker (:mod:`simfs.iscsi.workers`): the
        reader goes on at once, the response goes out when the worker is done."""
        tpg = self.sess.tpg
        data_out = task.data_out() if task.write else b""
        args = (self.sess.isid_str, task.lun, task.cdb, data_out)
        # the EDTL and the (fixed-up) R/W flags: the core's data_length and data_direction
        kw = {"data_length": task.edtl,
              "data_direction": DATA_OUT if task.write else DATA_IN if task.read else DATA_NONE}
        key_of = getattr(tpg, "device_key", None)
        try:
            key = key_of(task.lun) if key_of is not None else ("tpg", id(tpg))
        except Exception:  # noqa: BLE001 - looked up again, and answered, by submit
            key = None
        if key is None:  # no device behind the LUN: answered at once, without a backend
            try:
                res = tpg.submit(*args, **kw)
            except Exception as e:  # noqa: BLE001 - a backend bug must not kill the connection
                res = self._submit_failed(task, e)
            self._finish(task, res)
            return
        completions = self.server.completions

        def done(res, err) -> None:  # on the worker thread
            completions.add(self._worker_done, task, res, err)
        def run():  # on the worker thread: an abort that came first wins, nothing runs
            return None if task.aborted else tpg.submit(*args, **kw)
        try:
            self.server.workers.submit(key, run, (), done)
        except QueueFull:
            self._klog("debug", "simfs: iSCSI: device queue full, TASK SET FULL for ITT "
                       "0x%08x", task.itt)
            self._finish(task, _status(TASK_SET_FULL))

    def _worker_done(self, task: Task, res, err: Optional[BaseException]) -> None:
        if err is not None:
            res = self._submit_failed(task, err)
        self._finish(task, res)

    def _submit_failed(self, task: Task, err: BaseException):
        self.log.err(f"simfs: iSCSI: command 0x{task.cdb[:1].hex()} failed in the backend: "
                     f"{err!r}")
        return _hardware_error()

    def _finish(self, task: Task, res) -> None:
        """A command's result is back (on the loop): its response goes out, batched with
        the other completions of this loop iteration into one writev."""
        if self.tasks.get(task.itt) is task:
            del self.tasks[task.itt]
        if task.aborted or self.closing or self.writer.is_closing():
            return
        self._send_now(self._complete, task, res)

    def _send_now(self, what, *args) -> None:
        """Outside the reader's dispatch (a completion): send ``what`` (a PDU, or a function
        that sends), batched with the other sends of this loop iteration."""
        corked, self._corked = self._corked, True
        try:
            if callable(what):
                what(*args)
            else:
                self.send(what)
        finally:
            self._corked = corked
        if corked:
            return
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._flush_soon = False
        if not self._corked:
            self.flush()

    def _complete(self, task: Task, res) -> None:
        status = res.status
        sense = res.sense or b""
        data = res.data or b""
        resid_flags, residual, keep = residuals(task.read, task.write, task.edtl, len(data),
                                                status, lambda: self._cdb_length(task))
        if keep < len(data):
            data = memoryview(data)[:keep] if keep else b""
        datasn = 0
        if task.read and data and status == GOOD:
            datasn = self._send_data_in(task, data, status, resid_flags, residual,
                                        collapse=not sense)
            if not sense:
                return
        self._inc_maxcmdsn()
        payload = b""
        if sense:
            payload = len(sense).to_bytes(2, "big") + sense
        self.send(P.build_scsi_rsp(task.itt, status, self._stat(), self.exp_cmdsn,
                                   self.max_cmdsn, datasn, resid_flags, residual,
                                   len(payload)), payload)

    def _cdb_length(self, task: Task) -> Optional[int]:
        """The transfer length the CDB asks for (the kernel's ``size`` in
        target_cmd_size_check), for residual reporting; None when unknown."""
        blocks = _cdb_blocks(task.cdb)
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
            bs = getattr(self.sess.tpg, "block_size", None)
            try:
                bs = int(bs(task.lun)) if callable(bs) else int(bs or 512)
            except Exception:  # noqa: BLE001
                bs = 512
            return blocks * bs
        return _cdb_out_length(task.cdb) if task.write else _cdb_in_length(task.cdb)

    def _send_data_in(self, task: Task, data, status: int, resid_flags: int, residual: int,
                      collapse: bool) -> int:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        mrdsl = self.p.max_xmit_dsl
        mbl = self.p.max_burst
        off = 0
        datasn = 0
        burst_left = mbl
        send = self.send
        lunb = b"\0" * 8
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
            send(P.build_data_in(flags, status, lunb, task.itt, P.RSVD_TAG, statsn,
                                 self.exp_cmdsn, self.max_cmdsn, datasn, off,
                                 residual if flags & P.DATAIN_STATUS else 0, seg),
                 mv[off:off + seg])
            datasn += 1
            off += seg
        return datasn

    # -- NOP-Out ------------------------------------------------------------------------------
    async def on_nop_out(self, req: P.Pdu) -> None:
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

    # -- Task Management ------------------------------------------------------------------------
    async def on_tmf(self, req: P.Pdu) -> None:
        fn = req.tmf_function
        sess = self.sess
        tpg = sess.tpg
        resp = P.TMF_RSP_COMPLETE
        lun = req.lun
        luns = set(tpg.luns()) if tpg is not None else set()
        if fn in (P.TMF_ABORT_TASK, P.TMF_ABORT_TASK_SET, P.TMF_CLEAR_TASK_SET,
                  P.TMF_LOGICAL_UNIT_RESET, P.TMF_CLEAR_ACA) and lun not in luns:
            resp = P.TMF_RSP_NO_LUN
        elif fn == P.TMF_ABORT_TASK:
            ref = self.tasks.get(req.rtt)
            if ref is None:
                in_window = (not P.serial_lt(req.ref_cmdsn, sess.exp_cmdsn)
                             and not P.serial_gt(req.ref_cmdsn, sess.max_cmdsn))
                resp = P.TMF_RSP_COMPLETE if in_window else P.TMF_RSP_NO_TASK
            elif ref.cmdsn != req.ref_cmdsn:
                self._klog("err", "RefCmdSN 0x%08x does not equal task's CmdSN 0x%08x. Rejecting "
                          "ABORT_TASK.", req.ref_cmdsn, ref.cmdsn)
                resp = P.TMF_RSP_REJECTED
            else:
                self._abort(ref)
                if self._tmf_on_device(req, fn, lun):
                    return
                resp = self._backend_tmf(fn, lun, req.rtt)
        elif fn in (P.TMF_ABORT_TASK_SET, P.TMF_CLEAR_TASK_SET, P.TMF_LOGICAL_UNIT_RESET):
            for t in list(self.tasks.values()):
                if t.lun == lun:
                    self._abort(t)
            if self._tmf_on_device(req, fn, lun):
                return
            resp = self._backend_tmf(fn, lun, req.rtt)
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
        elif fn == P.TMF_TASK_REASSIGN:
            resp = P.TMF_RSP_NOT_SUPPORTED
        else:
            self._klog("err", "Unknown TMR function: 0x%02x, protocol error.", fn)
            resp = P.TMF_RSP_NOT_SUPPORTED
        self._tmf_respond(req, resp)

    def _tmf_respond(self, req: P.Pdu, resp: int) -> None:
        if self.closing or self.writer.is_closing():
            return
        if not req.immediate:
            self._inc_maxcmdsn()
        self._send_now(P.build_tmf_rsp(resp, req.itt, self._stat(), self.exp_cmdsn,
                                       self.max_cmdsn))

    def _tmf_on_device(self, req: P.Pdu, fn: int, lun: int) -> bool:
        """The core side of an abort or reset runs on the LUN's device worker, behind the
        commands queued there (the kernel's TMR waits for the commands it aborts), and the
        response goes out after it; False when the LUN has no device worker."""
        key_of = getattr(self.sess.tpg, "device_key", None)
        try:
            key = key_of(lun) if key_of is not None else None
        except Exception:  # noqa: BLE001
            key = None
        if key is None:
            return False
        completions = self.server.completions

        def done(res, err) -> None:  # on the worker thread
            completions.add(self._tmf_respond, req,
                            P.TMF_RSP_REJECTED if err is not None else res)
        try:
            self.server.workers.submit(key, self._backend_tmf, (fn, lun, req.rtt), done)
        except QueueFull:
            return False
        return True

    def _abort(self, task: Task) -> None:
        task.aborted = True
        self.tasks.pop(task.itt, None)
        if task.sequenced:
            self._inc_maxcmdsn()

    def _backend_tmf(self, fn: int, lun: int, ref_itt: int) -> int:
        hook = getattr(self.sess.tpg, "task_management", None)
        if hook is None:
            return P.TMF_RSP_COMPLETE
        try:
            r = hook(self.sess.isid_str, fn, lun, ref_itt)
        except Exception as e:  # noqa: BLE001
            self.log.err(f"simfs: iSCSI task_management hook failed: {e!r}")
            return P.TMF_RSP_REJECTED
        return P.TMF_RSP_COMPLETE if r is None else int(r)

    # -- Text (SendTargets) ---------------------------------------------------------------------
    async def on_text(self, req: P.Pdu) -> None:
        try:
            keys = parse_text(req.data)
        except Exception:  # noqa: BLE001
            keys = []
        st = next((v for k, v in keys if k == "SendTargets"), None)
        if st is None:
            self._klog("err", "Unable to locate SendTargets=All or SendTargets=<iqn> in Text Request")
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if st != "All" and self.sess.discovery is False and st == "":
            st = self.sess.target_name
        out = []
        try:
            targets = self.server.backend.discovery(self.sess.initiator, self.sess.local)
        except Exception as e:  # noqa: BLE001
            self.log.err(f"simfs: iSCSI discovery failed: {e!r}")
            targets = []
        for name, addrs in targets:
            if st != "All" and name != st:
                continue
            if not self.sess.discovery and st == "All" and name != self.sess.target_name:
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

    # -- Logout ---------------------------------------------------------------------------------
    async def on_logout(self, req: P.Pdu) -> None:
        reason = req.logout_reason
        count = getattr(self.sess.tpg, "logout_received", None)  # the IQN's logout stats
        if count is not None and not self.sess.discovery:
            count(reason)
        resp = P.LOGOUT_SUCCESS
        if reason == P.LOGOUT_CLOSE_CONNECTION and req.cid != self.cid:
            resp = P.LOGOUT_CID_NOT_FOUND
        elif reason == P.LOGOUT_REMOVE_CONN_FOR_RECOVERY:
            resp = P.LOGOUT_RECOVERY_UNSUPPORTED
        elif reason not in (P.LOGOUT_CLOSE_SESSION, P.LOGOUT_CLOSE_CONNECTION):
            return self.reject(req, P.REASON_PROTOCOL_ERROR)
        if not req.immediate:
            self._inc_maxcmdsn()
        self.send(P.build_logout_rsp(resp, req.itt, self._stat(), self.exp_cmdsn,
                                     self.max_cmdsn, self.p.time2wait, self.p.time2retain))
        if resp == P.LOGOUT_SUCCESS:
            self.closing = True


def residuals(read: bool, write: bool, edtl: int, n: int, status: int,
              size: Callable[[], Optional[int]]) -> tuple[int, int, int]:
    """A response's residual, as target_cmd_size_check and target_complete_cmd_with_length
    make it: (RSP_OVERFLOW/RSP_UNDERFLOW flags, residual count, bytes of the ``n`` data-in
    bytes to send). ``edtl`` is the initiator's Expected Data Transfer Length, ``size()``
    the transfer length the CDB asks for (None when unknown)."""
    if read or (not write and n):
        if read and n and status == GOOD:
            cdb_size = size()
            if cdb_size is not None and cdb_size > edtl:
                # OVERFLOW by the CDB's size, data_length stays EDTL; the residual then
                # becomes what is left of EDTL, the OVERFLOW flag winning in the response
                return P.RSP_OVERFLOW, (edtl - n if n < edtl else cdb_size - edtl), \
                    min(n, edtl)
            if n > edtl:
                return P.RSP_OVERFLOW, n - edtl, edtl
            if n < edtl:
                return P.RSP_UNDERFLOW, edtl - n, n
            return 0, 0, n
        if n and status == GOOD and not read:
            return P.RSP_OVERFLOW, n, 0  # data-in for a command given no buffer
        if read and edtl and status == GOOD:
            return P.RSP_UNDERFLOW, edtl, 0
        return 0, 0, 0
    if write:
        exp = size()
        if exp is not None and exp > edtl:
            return P.RSP_OVERFLOW, exp - edtl, 0
        if exp is not None and exp < edtl:
            return P.RSP_UNDERFLOW, edtl - exp, 0
    elif edtl == 0:
        exp = size()
        if exp:
            return P.RSP_OVERFLOW, exp, 0
    return 0, 0, 0


def _status(status: int):
    from simfs.scsi.command import Result
    return Result(status=status)


def _hardware_error():
    from simfs.scsi.command import Result
    sense = bytearray(18)
    sense[0], sense[2], sense[7], sense[12] = 0x70, 0x04, 10, 0x44  # INTERNAL TARGET FAILURE
    return Result(status=CHECK_CONDITION, sense=bytes(sense))


def _be(b: bytes, off: int, n: int) -> int:
    return int.from_bytes(b[off:off + n], "big")


#: data-out CDBs whose length is a parameter list length in the CDB: opcode -> (offset, size)
_PARAM_LIST = {0x15: (4, 1), 0x55: (7, 2), 0x3B: (6, 3), 0x42: (7, 2), 0x5F: (5, 4),
               0x83: (10, 4), 0xA4: (6, 4), 0x8F: None}


def _cdb_out_length(cdb: bytes) -> Optional[int]:
    """The data-out length a control CDB asks for (residual reporting), None if unknown."""
    op = cdb[0]
    spec = _PARAM_LIST.get(op)
    if spec is None:
        return None
    off, size = spec
    if len(cdb) < off + size:
        return None
    return _be(cdb, off, size)


_ALLOC_LEN = {0x12: (3, 2), 0x1A: (4, 1), 0x5A: (7, 2), 0x03: (4, 1), 0xA0: (6, 4),
              0x25: None, 0x4D: (7, 2), 0x5E: (7, 2), 0x37: (7, 2), 0xB7: (6, 4)}


def _cdb_in_length(cdb: bytes) -> Optional[int]:
    op = cdb[0]
    if op == 0x25:
        return 8
    if op == 0x9E and len(cdb) >= 14 and (cdb[1] & 0x1F) == 0x10:
        return _be(cdb, 10, 4)
    spec = _ALLOC_LEN.get(op)
    if spec is None:
        return None
    off, size = spec
    return _be(cdb, off, size) if len(cdb) >= off + size else None


def _cdb_blocks(cdb: bytes) -> Optional[int]:
    """Blocks moved by a READ/WRITE/WRITE AND VERIFY/WRITE SAME/COMPARE AND WRITE CDB."""
    op = cdb[0]
    if op in (0x08, 0x0A):
        n = cdb[4] if len(cdb) > 4 else 0
        return n or 256
    if op in (0x28, 0x2A, 0x2E) and len(cdb) >= 10:
        return _be(cdb, 7, 2)
    if op in (0xA8, 0xAA, 0xAE) and len(cdb) >= 12:
        return _be(cdb, 6, 4)
    if op in (0x88, 0x8A, 0x8E) and len(cdb) >= 16:
        return _be(cdb, 10, 4)
    if op in (0x41, 0x93):
        return 1
    if op == 0x89 and len(cdb) >= 14:
        return 2 * cdb[13]
    # sbc_parse_cdb: VERIFY(10/16) and SYNCHRONIZE CACHE(10/16) take sectors * block size
    if op in (0x2F, 0x35) and len(cdb) >= 10:
        return _be(cdb, 7, 2)
    if op in (0x8F, 0x91) and len(cdb) >= 16:
        return _be(cdb, 10, 4)
    return None
