"""Sessions, and the asyncio side of a connection in full feature phase.

The protocol itself is :class:`simfs.iscsi.machine.ConnectionMachine` (sans-I/O); a
:class:`Connection` is the thin driver around it: an ``asyncio.BufferedProtocol`` that lets
the socket's bytes land in the machine's buffer (a Data-Out payload straight in its
command's buffer), runs the machine's actions (a SCSI command on its device's worker, or
inline on the loop when that device is idle and the command is a plain READ/WRITE), writes
what the machine queued with one ``writev`` per batch, runs the NOP-In timers, and, when
nothing is in flight any more, lets the server poll its sockets before the loop sleeps
(:mod:`simfs.iscsi.idle_poll`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any, Optional

from simfs.iscsi import pdu as P
from simfs.iscsi.machine import (CloseConnection, ConnectionMachine, Execute, ManageTask,  # noqa: F401
                                 Task, TASK_SET_FULL, residuals, status_result)
from simfs.iscsi.text import SessionParams
from simfs.iscsi.workers import QueueFull
from simfs.scsi import faults
from simfs.scsi.command import DATA_IN, DATA_OUT

#: buffers per writev (Linux's IOV_MAX is 1024)
IOV_MAX = 1024
#: READ(10/16), WRITE(10/16): what may run inline on the loop when its device is idle
_INLINE_OPS = frozenset((0x28, 0x2A, 0x88, 0x8A))
#: a transfer larger than this goes to its device's worker when other commands of the
#: connection are in flight: its copy then runs beside the loop's work (the backend call
#: releases the GIL) instead of holding the loop (docs/performance.md, "iSCSI vs tgt")
INLINE_MAX_BUSY = 1 << 17
#: READ/WRITEs to one device that arrived together run as one run (the device checked once)
#: while their transfers add up to no more than this
RUN_BYTES = 1 << 17
#: bytes waiting in the transport before the connection stops reading (back pressure)
WRITE_HIGH = 1 << 20
#: responses queued beyond this many bytes are written before the next command runs
FLUSH_BYTES = 1 << 16


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
        #: session_index: the lowest id free among the server's sessions, discovery ones
        #: included (the kernel's module-wide sess_ida)
        self.index = 0
        # the counters of the ACL's iscsi_sess_stats, kept where the kernel keeps them
        self.cmd_pdus = 0             # SCSI Command PDUs received
        self.rsp_pdus = 0             # SCSI Response PDUs sent
        self.tx_data_octets = 0       # Data-In payload
        self.rx_data_octets = 0       # Data-Out payload (immediate data is not counted)
        self.conn_digest_errors = 0   # header digest failures
        self.conn_timeout_errors = 0  # unanswered NOP-In pings

    def next_ttt(self) -> int:
        t = self.ttt
        if t == P.RSVD_TAG or t == 0:
            t = 1
        self.ttt = (t + 1) & 0xFFFFFFFF
        return t

    def tpg_key(self):
        return self.server.tpg_key(self.tpg)




class Connection(asyncio.BufferedProtocol):
    """The asyncio driver of one connection's :class:`ConnectionMachine` (see the module
    docstring). ``start()`` takes the transport over from the login's stream."""

    def __init__(self, server, transport, session: Session, statsn: int, cid: int,
                 peer: Any = None):
        self.server = server
        self.log = server.report
        self.transport = transport
        self.sess = session
        self.m = ConnectionMachine(session, statsn, cid, server.report,
                                   discovery=server.backend.discovery, peer=peer)
        self.m.runner = self
        sock = transport.get_extra_info("socket")
        try:
            self._fd: Optional[int] = sock.fileno() if sock is not None else None
        except Exception:  # noqa: BLE001 - a test double without a real socket
            self._fd = None
        self._flush_soon = False
        self._offered = 0  # the room the last get_buffer gave
        self._lost = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._dtimer: Optional[asyncio.TimerHandle] = None  # the commands' DataOUT timer
        self.loop = asyncio.get_running_loop()
        #: the server's poll set (None: a test double without one)
        self._poll = getattr(server, "idle_poll", None)
        tpg = session.tpg
        #: the TPG's LUN -> device lookup (None: every command runs on one worker)
        self._key_of = getattr(tpg, "device_key", None)
        self.nopin_timeout = float(getattr(tpg, "nopin_timeout", 15) or 0)
        self.nopin_response_timeout = float(getattr(tpg, "nopin_response_timeout", 30) or 30)

    # what the ACL's ``info`` shows
    @property
    def peer(self) -> Any:
        return self.m.peer

    @property
    def cid(self) -> int:
        return self.m.cid

    @property
    def statsn(self) -> int:
        return self.m.statsn

    @property
    def closing(self) -> bool:
        return self.m.closing

    def start(self, leftover: bytes = b"") -> None:
        """Become the transport's protocol; ``leftover`` is what the login's stream read
        beyond the last login PDU."""
        tr = self.transport
        tr.set_write_buffer_limits(high=WRITE_HIGH)
        tr.set_protocol(self)
        if leftover:
            self.m.now = self.loop.time()
            self.m.feed(leftover)
            self._pump()
        if not self._lost and not tr.is_closing() and not tr.is_reading():
            tr.resume_reading()
        if self._poll is not None and self._poll.enabled and self._fd is not None \
                and not self._lost:
            self._poll.add(self._fd, self)
        self._nop_arm()

    def close(self) -> None:
        """Send what is queued, then close (the server's session teardown)."""
        self.m.closing = True
        if not self._lost:
            self.flush()
            self.transport.close()

    # -- asyncio.BufferedProtocol ---------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self.m.get_buffer(sizehint)
        self._offered = len(buf)
        return buf

    def buffer_updated(self, nbytes: int) -> None:
        m = self.m
        m.now = self.loop.time()
        poll = self._poll
        if poll is not None:
            poll.arrived()
        m.buffer_updated(nbytes)
        # a read that filled what was offered leaves more in the socket, which the loop
        # reads next in this same iteration: while commands are in flight, what this read
        # made (R2Ts, responses) waits for the end of the iteration and leaves with what
        # those reads make, in one writev
        self._pump(later=nbytes >= self._offered and bool(m.tasks))
        if not m.tasks:
            self._rest()

    def eof_received(self) -> bool:
        self.log.debug("iSCSI connection closed: the initiator closed its side")
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._lost = True
        self.m.closing = True
        if exc is not None:
            self.log.debug(f"iSCSI connection closed: {exc!r}")
        if self._timer is not None:
            self._timer.cancel()
        if self._dtimer is not None:
            self._dtimer.cancel()
        if self._poll is not None and self._fd is not None:
            self._poll.remove(self._fd, self)
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        # the initiator does not read: stop taking its commands until it does
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self._lost and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- the machine's actions and output -------------------------------------------------------
    def _pump(self, later: bool = False) -> None:
        m = self.m
        while m.actions:
            acts = m.take_actions()
            i, n = 0, len(acts)
            while i < n:
                a = acts[i]
                if isinstance(a, Execute):
                    i = self._execute(acts, i)
                else:
                    self._manage(a)
                    i += 1
                # the responses to the commands that arrived together leave together (one
                # writev: the socket's cost is per call more than per byte), except that
                # a large transfer goes as soon as it is made, so the initiator takes it
                # in while the next command runs here
                if m.out_bytes >= FLUSH_BYTES:
                    self.flush()
        if m.dataout_wanted is not None:
            if self._dtimer is None and not self._lost:
                self._dtimer = self.loop.call_later(m.dataout_wanted, self._dataout_fire)
            m.dataout_wanted = None
        if later and not m.closing:
            if m.out:
                self._pump_soon()
            return
        self.flush()
        if m.closing and not self._lost:
            self.transport.close()

    def _device(self, lun: int) -> Any:
        tpg = self.sess.tpg
        key_of = self._key_of
        try:
            return key_of(lun) if key_of is not None else ("tpg", id(tpg))
        except Exception:  # noqa: BLE001 - looked up again, and answered, by submit
            return None

    def _at_once(self, task: Task, key: Any) -> bool:
        """Whether ``task`` (for device ``key``) runs at once on the loop: a command for no
        device (answered without one), or a READ/WRITE to a device with nothing queued and
        no injected latency, for which a thread hop would cost more than the command, unless
        it is large while other commands of the connection are in flight (its copy then
        overlaps their work from the device's worker). ``task.block_size`` becomes the
        device's (read here once instead of asked of the TPG for residuals)."""
        if key is None:
            return True
        bs = getattr(getattr(key, "attrib", None), "block_size", None)
        if type(bs) is int:
            task.block_size = bs
        return task.cdb[0] in _INLINE_OPS and self._idle(key) \
            and (task.edtl <= INLINE_MAX_BUSY or len(self.m.tasks) <= 1)

    # the machine's runner (ConnectionMachine.runner): a command run as it is parsed
    def now_key(self, task: Task) -> Any:
        """The device ``task`` is to run on at once, or None (not at once, or no device)."""
        key = self._device(task.lun)
        return key if key is not None and self._at_once(task, key) else None

    def run(self, task: Task, key: Any) -> Any:
        """Run ``task`` here and now (``key`` from :meth:`now_key`): its result."""
        return self.sess.tpg.submit(self.sess.isid_str, task.lun, task.cdb, task.data_out(),
                                    data_length=task.edtl,
                                    data_direction=DATA_OUT if task.write else DATA_IN)

    def _execute(self, acts: list, i: int) -> int:
        """Run the Execute ``acts[i]``, with the small READ/WRITEs to the same LUN that follow
        it when it runs at once (one run: :meth:`_run_at_once`); the index after them."""
        a = acts[i]
        task = a.task
        tpg = self.sess.tpg
        key = self._device(task.lun)
        if self._at_once(task, key):
            j = i + 1
            if key is not None and task.edtl <= RUN_BYTES:
                total = task.edtl
                while j < len(acts):
                    b = acts[j]
                    if not isinstance(b, Execute) or b.task.lun != task.lun \
                            or b.task.cdb[0] not in _INLINE_OPS:
                        break
                    total += b.task.edtl
                    if total > RUN_BYTES:
                        break
                    b.task.block_size = task.block_size
                    j += 1
            self._run_at_once(acts[i:j])
            return j
        completions = self.server.completions

        def done(res, err) -> None:  # on the worker thread
            completions.add(self._worker_done, task, res, err)

        def run():  # on the worker thread: an abort that came first wins, nothing runs
            return None if task.aborted else tpg.submit(*a.args, **a.kw)
        try:
            self.server.workers.submit(key, run, (), done)
        except QueueFull:
            self.log.debug(f"simfs: iSCSI: device queue full, TASK SET FULL for ITT "
                           f"0x{task.itt:08x}")
            self.m.complete(task, status_result(TASK_SET_FULL))
        return i + 1

    def _run_at_once(self, run: list) -> None:
        """Execute actions for one idle device, run here in order and each answered as if
        alone; several go through the TPG's ``submit_many`` (the LUN looked up and the
        device checked once for them all)."""
        m = self.m
        tpg = self.sess.tpg
        if len(run) > 1 and hasattr(tpg, "submit_many"):
            first = run[0]
            cmds = [(b.args[2], b.args[3], b.kw["data_length"], b.kw["data_direction"])
                    for b in run]
            try:
                results = tpg.submit_many(first.args[0], first.args[1], cmds)
            except Exception as e:  # noqa: BLE001 - a backend bug must not kill the connection
                results = [e] * len(run)
        else:
            results = []
            for b in run:
                try:
                    results.append(tpg.submit(*b.args, **b.kw))
                except Exception as e:  # noqa: BLE001 - as above
                    results.append(e)
        for b, res in zip(run, results):
            if isinstance(res, BaseException):
                m.failed(b.task, res)
            else:
                m.complete(b.task, res)
            if m.out_bytes >= FLUSH_BYTES:
                self.flush()

    def _idle(self, key: Any) -> bool:
        if not self.server.workers.idle(key):
            return False
        try:
            f = faults.of(key)
        except TypeError:  # not a device
            return False
        return f is None or not f.latency_ms

    def _worker_done(self, task: Task, res, err: Optional[BaseException]) -> None:
        if err is not None:
            self.m.failed(task, err)
        else:
            self.m.complete(task, res)
        self._pump_soon()

    def _manage(self, a: ManageTask) -> None:
        """The core side of an abort or reset runs on the LUN's device worker, behind the
        commands queued there (the kernel's TMR waits for the commands it aborts), and the
        response goes out after it."""
        key = self._device(a.lun)
        if key is not None:
            completions = self.server.completions

            def done(res, err) -> None:  # on the worker thread
                completions.add(self._tmf_done, a.req,
                                P.TMF_RSP_REJECTED if err is not None else res)
            try:
                self.server.workers.submit(key, self._backend_tmf,
                                           (a.function, a.lun, a.ref_itt), done)
                return
            except QueueFull:
                pass
        self.m.tmf_done(a.req, self._backend_tmf(a.function, a.lun, a.ref_itt))

    def _tmf_done(self, req: P.Pdu, resp: int) -> None:
        self.m.tmf_done(req, resp)
        self._pump_soon()

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

    def _pump_soon(self) -> None:
        """After a completion: the other completions of this loop iteration join the same
        writev."""
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._pump_later)

    def _pump_later(self) -> None:
        self._flush_soon = False
        self._pump()
        if not self.m.tasks:
            self._rest()

    def _rest(self) -> None:
        """Nothing of this connection is in flight: unless a device worker still holds a
        command (its completion is not a socket event) or output waits for the loop's next
        turn, the server polls its sockets for a moment before the loop sleeps."""
        poll = self._poll
        if poll is not None and poll.enabled:
            poll.rest(spin=not self._lost and not self.m.closing and not self._flush_soon
                      and self.server.workers.all_idle())

    def flush(self) -> None:
        """Write what the machine queued: one writev straight to the socket when the
        transport has nothing buffered (what transport.write would do, without joining the
        buffers); a remainder, or any error, goes through the transport."""
        out = self.m.take_output()
        if not out or self._lost:
            return
        tr = self.transport
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
        tr.write(b"".join(out))

    # -- NOP-In timers -------------------------------------------------------------------------------
    def _nop_arm(self) -> None:
        if self.nopin_timeout > 0 and not self.m.closing:
            self._timer = self.loop.call_later(self.nopin_timeout, self._nop_fire)

    def _nop_fire(self) -> None:
        if self.m.nopin_ping():
            self._pump()
            self._timer = self.loop.call_later(self.nopin_response_timeout, self._nop_check)
        else:
            self._nop_arm()

    def _dataout_fire(self) -> None:
        self._dtimer = None
        m = self.m
        m.now = self.loop.time()
        again = m.dataout_check()
        if again is not None:
            self._dtimer = self.loop.call_later(again, self._dataout_fire)
        self._pump()

    def _nop_check(self) -> None:
        self.m.nopin_expired()
        self._pump()
        self._nop_arm()
