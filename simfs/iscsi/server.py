"""The iSCSI target server: asyncio listeners (one per portal) in a thread of their own.

``IscsiServer(backend)`` serves whatever the backend (the fabric tree's adapter, see
:mod:`simfs.iscsi` for the interface) exports. ``start()`` runs an event loop in a daemon
thread, ``sync_portals([(ip, port), ...])`` opens and closes listeners to match (safe to call
from any thread, e.g. after every configfs change under ``np/``), ``stop()`` closes everything.

Before a connection has logged in it is a stranger: every read of it (header, data) counts
against one login deadline (TA_LOGIN_TIMEOUT from accept, as the kernel's login timer), and
only so many strangers are let in per portal and in all (the kernel has no such cap; a
userspace target on a laptop or CI runner needs one). After login a connection is a
:class:`~simfs.iscsi.session.Connection` (an asyncio protocol driving the sans-I/O
:mod:`simfs.iscsi.machine`). SCSI commands run in a worker thread per device
(:mod:`simfs.iscsi.workers`), so a slow device delays only its own commands; a READ or
WRITE to a device with nothing queued and no injected latency runs on the loop itself.

A wildcard portal (``0.0.0.0``, ``::``) listens on the loopback addresses unless the server
was made with ``listen_any=True`` (``simfs mount --listen-any``): the tree keeps the portal as
written, the log says where it really listens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from typing import Any, Iterable, Optional

try:  # the event loop in C: ~5 us less Python per wake-up (docs/performance.md, "iSCSI")
    import uvloop
except ImportError:  # pragma: no cover - a dependency; asyncio's own loop does the same work
    uvloop = None

from simfs.iscsi import pdu as P
from simfs.iscsi.idle_poll import IdlePoll
from simfs.iscsi.login import LoginContext, LoginMachine
from simfs.iscsi.report import Reporter, addr_text
from simfs.iscsi.session import Connection, Session
from simfs.iscsi.workers import Completions, DeviceWorkers

LOGIN_TIMEOUT = 15.0  # TA_LOGIN_TIMEOUT
DEFAULT_CMDSN_DEPTH = 64  # TA_DEFAULT_CMDSN_DEPTH
#: connections still logging in that one portal, and the whole server, accept
MAX_LOGINS_PER_PORTAL = 64
MAX_LOGINS = 256


def listen_hosts(ip: str, listen_any: bool) -> list[str]:
    """Where a portal's listener binds: a wildcard becomes the loopback addresses (``::``
    both ::1 and 127.0.0.1, as the kernel's IPv6 wildcard takes IPv4 too) unless
    ``listen_any``."""
    host = ip.strip("[]")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return [host]
    if listen_any or not addr.is_unspecified:
        return [host]
    return ["127.0.0.1"] if addr.version == 4 else ["::1", "127.0.0.1"]


class IscsiServer:
    """The target: listeners, logins, sessions (see the module docstring)."""

    def __init__(self, backend: Any, klog: Any = None, listen_any: bool = False,
                 login_timeout: float = LOGIN_TIMEOUT,
                 max_logins_per_portal: int = MAX_LOGINS_PER_PORTAL,
                 max_logins: int = MAX_LOGINS, poll_us: float = 0):
        self.backend = backend
        self.report = Reporter(klog)
        self.listen_any = listen_any
        self.login_timeout = login_timeout
        self.max_logins_per_portal = max_logins_per_portal
        self.max_logins = max_logins
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.listeners: dict[tuple, asyncio.AbstractServer] = {}
        self.sessions: dict[int, Session] = {}  # serial -> Session
        self.connections: set[Connection] = set()
        self.workers = DeviceWorkers()
        #: the sockets polled before the loop sleeps (simfs.iscsi.idle_poll)
        self.idle_poll = IdlePoll(poll_us)
        #: results from the workers, back on the loop (made with the loop)
        self.completions: Optional[Completions] = None
        self._login_writers: set = set()
        self._logging_in: dict[tuple, int] = {}
        self._refused: dict[tuple, list] = {}  # portal -> [count, time of the last line]
        self._tsih: dict = {}
        #: session indexes held by leading logins still in progress
        self._login_indexes: set[int] = set()
        self._sid: dict = {}
        self._ready = threading.Event()

    @property
    def trace(self) -> Any:
        """The trace hub while ``simfs trace`` listens (the hub sets it), else None."""
        return self.report.trace

    @trace.setter
    def trace(self, hub: Any) -> None:
        self.report.trace = hub

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run, name="simfs-iscsi", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self.loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.completions = Completions(self.loop)
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self.loop is None or self.thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        try:
            fut.result(timeout=10)
        except Exception as e:  # noqa: BLE001
            self.report.err(f"simfs: iSCSI server shutdown: {e!r}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.workers.stop()
        self.thread = None
        self.loop = None
        self._ready.clear()

    async def _shutdown(self) -> None:
        await self._sync([])
        for c in list(self.connections):
            c.close()
        for w in list(self._login_writers):
            w.close()
        await asyncio.sleep(0)

    def sync_portals(self, portals: Optional[Iterable[tuple]] = None) -> list[tuple]:
        """Listen on exactly ``portals`` (default: ``backend.portals()``); returns the portals
        listening afterwards. A portal that cannot be bound is logged and skipped."""
        if portals is None:
            portals = self.backend.portals()
        want = [(str(ip), int(port)) for ip, port in portals]
        if self.loop is None:
            self.start()
        fut = asyncio.run_coroutine_threadsafe(self._sync(want), self.loop)
        return fut.result(timeout=10)

    def request_sync(self, portals: Iterable[tuple], wait: float = 2.0) -> None:
        """Like :meth:`sync_portals`, for a configfs store: it waits (as the kernel's np
        mkdir returns once listening) but only ``wait`` seconds, because the store holds
        the tree lock that a command on the server's thread may be waiting for."""
        want = [(str(ip), int(port)) for ip, port in portals]
        if self.loop is None:
            self.start()
        fut = asyncio.run_coroutine_threadsafe(self._sync(want), self.loop)
        try:
            fut.result(timeout=wait)
        except Exception:  # noqa: BLE001 - timed out or failed: it is logged by _sync
            pass

    async def _sync(self, want: list[tuple]) -> list[tuple]:
        for portal in list(self.listeners):
            if portal not in want:
                srv = self.listeners.pop(portal)
                srv.close()
                await srv.wait_closed()
        for portal in want:
            if portal in self.listeners:
                continue
            srv = await self._listen(portal)
            if srv is not None:
                self.listeners[portal] = srv
        return list(self.listeners)

    async def _listen(self, portal: tuple) -> Optional[asyncio.AbstractServer]:
        ip, port = portal
        hosts = listen_hosts(ip, self.listen_any)
        err: Optional[OSError] = None
        # ``::`` on loopback: ::1 and 127.0.0.1, or ::1 alone when 127.0.0.1 is taken
        for hs in ([hosts, hosts[:1]] if len(hosts) > 1 else [hosts]):
            try:
                srv = await asyncio.start_server(
                    lambda r, w, portal=portal: self._client(r, w, portal),
                    host=hs if len(hs) > 1 else hs[0], port=port, reuse_address=True,
                    limit=1 << 20)
                break
            except OSError as e:
                err = e
        else:
            self.report.err(f"simfs: iSCSI: unable to listen on {_portal_text(portal)}: {err}")
            return None
        real = ", ".join(addr_text(s.getsockname()) for s in srv.sockets)
        if hs != [ip.strip("[]")]:
            self.report.info(f"simfs: iSCSI portal {_portal_text(portal)} listens on {real} "
                             "only (mount with --listen-any to listen on every interface)")
        else:
            self.report.info(f"simfs: iSCSI portal {_portal_text(portal)} listens on {real}")
        return srv

    def bound_port(self, portal: tuple) -> int:
        """The real port of a listener (useful when listening on port 0)."""
        srv = self.listeners[portal]
        return srv.sockets[0].getsockname()[1]

    # -- session bookkeeping --------------------------------------------------------------------
    @staticmethod
    def tpg_key(tpg) -> Any:
        if tpg is None:
            return None
        return (getattr(tpg, "target_name", None), getattr(tpg, "tpgt", None))

    def _find_session(self, isid: bytes, tsih: int) -> Optional[Session]:
        for s in self.sessions.values():
            if s.isid == isid and s.tsih == tsih and not s.closed:
                return s
        return None

    def _reinstate(self, isid: bytes, initiator: str, discovery: bool, tpg) -> None:
        key = self.tpg_key(tpg)
        for s in list(self.sessions.values()):
            if (s.isid == isid and s.initiator == initiator and s.discovery == discovery
                    and self.tpg_key(s.tpg) == key and not s.closed):
                self.report.debug(f"{'Discovery' if discovery else 'Normal'} iSCSI Session "
                                  f"SID {s.sid} is still active for {initiator}, performing "
                                  "session reinstatement.")
                self._close_session(s)

    def _new_tsih(self, tpg) -> int:
        key = self.tpg_key(tpg)
        n = (self._tsih.get(key, 0) + 1) & 0xFFFF
        if n == 0:
            n = 1
        self._tsih[key] = n
        return n

    def _new_sid(self, tpg) -> int:
        """The TPG's session id (tpg->sid++, never 0), shown in the ACL's ``info``."""
        key = self.tpg_key(tpg)
        n = self._sid.get(key, 0) + 1 or 1
        self._sid[key] = n
        return n

    def _new_index(self) -> int:
        """The lowest session index no live session or login in progress holds, discovery
        sessions included (the kernel allocates it from one module-wide ida for every
        session, when a leading login's first PDU arrives, iscsi_login_zero_tsih_s1)."""
        used = {s.index for s in self.sessions.values()} | self._login_indexes
        i = 0
        while i in used:
            i += 1
        return i

    def _cmdsn_depth(self, tpg) -> int:
        d = getattr(tpg, "cmdsn_depth", None)
        try:
            return max(1, int(d)) if d is not None else DEFAULT_CMDSN_DEPTH
        except (TypeError, ValueError):
            return DEFAULT_CMDSN_DEPTH

    def _close_session(self, s: Session) -> None:
        if s.closed:
            return
        s.closed = True
        self.sessions.pop(s.serial, None)
        if s.conn is not None:
            s.conn.close()
        if not s.discovery and s.tpg is not None:
            hook = getattr(s.tpg, "session_removed", None)
            if hook is not None:
                try:
                    hook(s.isid_str)
                except Exception as e:  # noqa: BLE001
                    self.report.err(f"simfs: iSCSI session_removed hook failed: {e!r}")

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._close_session(conn.sess)

    def session_list(self) -> list[dict]:
        """What is logged in (for a daemon's status output)."""
        return [{"sid": s.sid, "initiator": s.initiator, "isid": s.isid_str, "tsih": s.tsih,
                 "target": s.target_name, "discovery": s.discovery, "portal": s.portal}
                for s in self.sessions.values()]

    # -- one TCP connection ---------------------------------------------------------------------
    def _admit(self, portal: tuple, peer: str) -> bool:
        """Room for one more connection that has not logged in yet?"""
        here = self._logging_in.get(portal, 0)
        total = sum(self._logging_in.values())
        if here < self.max_logins_per_portal and total < self.max_logins:
            self._logging_in[portal] = here + 1
            return True
        why = (f"{here} connections are logging in on this portal (the limit is "
               f"{self.max_logins_per_portal})" if here >= self.max_logins_per_portal else
               f"{total} connections are logging in (the limit is {self.max_logins})")
        # one line a second per portal at most: a flood must not flood the log
        count_last = self._refused.setdefault(portal, [0, 0.0])
        count_last[0] += 1
        now = time.monotonic()
        if now - count_last[1] >= 1.0:
            self.report.warn(f"simfs: iSCSI: refusing a connection from {peer} on portal "
                             f"{_portal_text(portal)}: {why} ({count_last[0]} refused)")
            count_last[0], count_last[1] = 0, now
        self.report.event("drop", "refused", why, peer=peer, portal=_portal_text(portal))
        return False

    def _logged_out(self, portal: tuple) -> None:
        n = self._logging_in.get(portal, 0) - 1
        if n > 0:
            self._logging_in[portal] = n
        else:
            self._logging_in.pop(portal, None)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      portal: tuple) -> None:
        peername = writer.get_extra_info("peername")
        peer = addr_text(peername)
        if not self._admit(portal, peer):
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._login_writers.add(writer)
        ctx = LoginContext(backend=self.backend, portal=portal,
                           find_session=self._find_session, reinstate=self._reinstate,
                           new_tsih=self._new_tsih, cmdsn_depth=self._cmdsn_depth,
                           log=self.report, peer=peername)
        m = LoginMachine(ctx)
        ok = False
        try:
            ok = await self._login(m, reader, writer, portal, peer)
        finally:
            self._logged_out(portal)
            self._login_writers.discard(writer)
            if m.session_index is not None:
                self._login_indexes.discard(m.session_index)
            if not ok:
                writer.close()
                abort = getattr(m.tpg, "abort", None)
                if abort is not None:
                    try:
                        abort()  # a dynamic ACL made for this login goes with it
                    except Exception as e:  # noqa: BLE001
                        self.report.err(f"simfs: iSCSI login abort failed: {e!r}")
        if not ok:
            return
        await self._full_feature(m, reader, writer, portal, peername)

    async def _login(self, m: LoginMachine, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, portal: tuple, peer: str) -> bool:
        """The login phase, every read bounded by one deadline; True once logged in."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.login_timeout

        async def read(n: int) -> bytes:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(reader.readexactly(n), left)

        def failed(why: str, what: str = "login") -> None:
            self.report.event(what, "refused" if what == "login" else "dropped", why,
                              peer=peer, portal=_portal_text(portal), target=m.target_name,
                              tpgt=getattr(m.tpg, "tpgt", None), initiator=m.initiator)

        first = True
        try:
            while True:
                req = P.Pdu(await read(P.BHS_LEN))
                if first:
                    first = False
                    if req.tsih == 0:  # a leading login holds an index from its first PDU
                        m.session_index = self._new_index()
                        self._login_indexes.add(m.session_index)
                # iscsit_get_login_rx reads the header and the data segment: a login PDU's
                # TotalAHSLength is never read, so it cannot make the target wait
                res = m.header(req)
                if res is None:
                    if req.dlength:
                        data = await read(req.dlength + P.pad_len(req.dlength))
                        req.data = data[:req.dlength]
                    res = m.feed(req)
                if res.bhs is not None:
                    writer.write(res.bhs)
                    if res.data:
                        writer.write(res.data + P.PADDING[len(res.data) & 3])
                    await asyncio.wait_for(writer.drain(), max(0.0, deadline - loop.time()))
                if res.state == "fail":
                    failed(m.failure)
                    return False
                if res.state == "complete":
                    return True
        except asyncio.TimeoutError:
            # iscsit_login_timeout (6.x: per connection, only a debug line of its own)
            self.report.debug("Entering iscsi_target_login_timeout >>>>>>>>>>>>>>>>>>>")
            self.report.err("iSCSI Login negotiation failed.")
            failed(f"login timeout ({self.login_timeout:g} s)", "drop")
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            # iscsit_get_login_rx / the login worker see the socket close: the login fails
            self.report.err("iSCSI Login negotiation failed.")
            failed(f"connection closed during login ({type(e).__name__})", "drop")
        return False

    async def _full_feature(self, m: LoginMachine, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, portal: tuple, peername) -> None:
        params = m.session_params
        local = writer.get_extra_info("sockname")
        sess = Session(self, m.isid, m.tsih, m.initiator, m.target_name, m.tpg, m.discovery,
                       params, m.exp_cmdsn, m.max_cmdsn, portal)
        sess.initiator_name = m.initiator_name or m.initiator
        sess.login_itt = m.itt
        sess.cmdsn_window = self._cmdsn_depth(m.tpg) if not m.discovery else 0
        sess.local = (str(local[0]), int(local[1])) if local else portal
        if not sess.discovery:
            sess.sid = self._new_sid(m.tpg)
        sess.index = m.session_index if m.session_index is not None else self._new_index()
        self.sessions[sess.serial] = sess
        conn = Connection(self, writer.transport, sess, m.statsn, m.cid, peer=peername)
        sess.conn = conn
        self.connections.add(conn)
        if not sess.discovery:
            hook = getattr(sess.tpg, "session_added", None)
            if hook is not None:
                try:
                    hook(sess.isid_str, sess)
                except Exception as e:  # noqa: BLE001
                    self.report.err(f"simfs: iSCSI session_added hook failed: {e!r}")
        self.report.debug(f"iSCSI Login successful on CID: {conn.cid} from "
                          f"{addr_text(peername)} to {_portal_text(portal)},"
                          f"{getattr(m.tpg, 'tpgt', 1) if m.tpg is not None else 1}")
        # from here on the connection is a BufferedProtocol; what the stream read beyond
        # the last login PDU goes to it first
        buf = getattr(reader, "_buffer", b"")
        leftover = bytes(buf)
        del buf[:]
        conn.start(leftover)
        if reader.at_eof():  # the initiator closed its side during the handover
            conn.close()


def _portal_text(portal: tuple) -> str:
    ip, port = str(portal[0]).strip("[]"), portal[1]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
