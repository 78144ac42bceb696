"""The iSCSI target server: asyncio listeners (one per portal) in a thread of their own.

``IscsiServer(backend)`` serves whatever the backend (the fabric tree's adapter, see
:mod:`simfs.iscsi` for the interface) exports. ``start()`` runs an event loop in a daemon
thread, ``sync_portals([(ip, port), ...])`` opens and closes listeners to match (safe to call
from any thread, e.g. after every configfs change under ``np/``), ``stop()`` closes everything.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
from typing import Any, Iterable, Optional

from simfs.iscsi import pdu as P
from simfs.iscsi.login import LoginContext, LoginMachine
from simfs.iscsi.session import Connection, Session

log = logging.getLogger("simfs.iscsi")

LOGIN_TIMEOUT = 15.0  # TA_LOGIN_TIMEOUT
DEFAULT_CMDSN_DEPTH = 64  # TA_DEFAULT_CMDSN_DEPTH


class IscsiServer:
    def __init__(self, backend: Any):
        self.backend = backend
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.listeners: dict[tuple, asyncio.AbstractServer] = {}
        self.sessions: dict[int, Session] = {}  # sid -> Session
        self.connections: set[Connection] = set()
        self._login_writers: set = set()
        self._tsih: dict = {}
        self._ready = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run, name="simfs-iscsi", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
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
        except Exception:  # noqa: BLE001
            log.exception("iSCSI server shutdown")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.thread = None
        self.loop = None
        self._ready.clear()

    async def _shutdown(self) -> None:
        await self._sync([])
        for c in list(self.connections):
            c.closing = True
            c.writer.close()
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
            ip, port = portal
            host = ip.strip("[]")
            try:
                srv = await asyncio.start_server(
                    lambda r, w, portal=portal: self._client(r, w, portal), host=host,
                    port=port, reuse_address=True, limit=1 << 20)
            except OSError as e:
                log.error("iSCSI: unable to listen on %s:%d: %s", ip, port, e)
                continue
            self.listeners[portal] = srv
        return list(self.listeners)

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
                log.info("%s iSCSI Session SID %d is still active for %s, performing session "
                         "reinstatement.", "Discovery" if discovery else "Normal", s.sid,
                         initiator)
                self._close_session(s)

    def _new_tsih(self, tpg) -> int:
        key = self.tpg_key(tpg)
        n = (self._tsih.get(key, 0) + 1) & 0xFFFF
        if n == 0:
            n = 1
        self._tsih[key] = n
        return n

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
        self.sessions.pop(s.sid, None)
        if s.conn is not None:
            s.conn.closing = True
            s.conn.writer.close()
        if not s.discovery and s.tpg is not None:
            hook = getattr(s.tpg, "session_removed", None)
            if hook is not None:
                try:
                    hook(s.isid_str)
                except Exception:  # noqa: BLE001
                    log.exception("session_removed hook failed")

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._close_session(conn.sess)

    def session_list(self) -> list[dict]:
        """What is logged in (for a daemon's status output)."""
        return [{"sid": s.sid, "initiator": s.initiator, "isid": s.isid_str, "tsih": s.tsih,
                 "target": s.target_name, "discovery": s.discovery, "portal": s.portal}
                for s in self.sessions.values()]

    # -- one TCP connection ---------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      portal: tuple) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._login_writers.add(writer)
        ctx = LoginContext(backend=self.backend, portal=portal,
                           find_session=self._find_session, reinstate=self._reinstate,
                           new_tsih=self._new_tsih, cmdsn_depth=self._cmdsn_depth)
        m = LoginMachine(ctx)
        try:
            while True:
                bhs = await asyncio.wait_for(reader.readexactly(P.BHS_LEN), LOGIN_TIMEOUT)
                req = P.Pdu(bhs)
                if req.ahs_len:
                    await reader.readexactly(req.ahs_len)
                data = b""
                if req.dlength:
                    if req.dlength > 65536:
                        return
                    data = await asyncio.wait_for(
                        reader.readexactly(req.dlength + P.pad_len(req.dlength)),
                        LOGIN_TIMEOUT)
                    data = data[:req.dlength]
                req.data = data
                res = m.feed(req)
                if res.bhs is not None:
                    writer.write(res.bhs)
                    if res.data:
                        writer.write(res.data + P.PADDING[len(res.data) & 3])
                    await writer.drain()
                if res.state == "fail":
                    return
                if res.state == "complete":
                    break
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        finally:
            self._login_writers.discard(writer)
            if m.session_params is None or writer.is_closing():
                writer.close()
        params = m.session_params
        sess = Session(self, m.isid, m.tsih, m.initiator, m.target_name, m.tpg, m.discovery,
                       params, m.exp_cmdsn, m.max_cmdsn, portal)
        self.sessions[sess.sid] = sess
        conn = Connection(self, reader, writer, sess, m.statsn, m.cid)
        sess.conn = conn
        self.connections.add(conn)
        if not sess.discovery:
            hook = getattr(sess.tpg, "session_added", None)
            if hook is not None:
                try:
                    hook(sess.isid_str)
                except Exception:  # noqa: BLE001
                    log.exception("session_added hook failed")
        log.info("iSCSI %s session %d logged in: %s isid 0x%s -> %s", "discovery"
                 if sess.discovery else "normal", sess.sid, sess.initiator, sess.isid_str,
                 sess.target_name or "-")
        await conn.run()
