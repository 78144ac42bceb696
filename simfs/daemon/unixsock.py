"""The daemon's Unix sockets (control.sock, trace.sock): one listener, one client connect.

Both live in the mount's state directory, mode 0600: only the user who mounted may use them.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Optional


class SunPath:
    """A path short enough for sockaddr_un (108 bytes): long ones go through
    /proc/self/fd/<dirfd>/, which the kernel resolves like the real directory."""

    def __init__(self, path: Path):
        self.path, self.dirfd = path, -1

    def __enter__(self) -> str:
        if len(os.fsencode(str(self.path))) < 100:
            return str(self.path)
        self.dirfd = os.open(self.path.parent, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self.dirfd}/{self.path.name}"

    def __exit__(self, *exc) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)


def connect(path: Path, timeout: Optional[float]) -> socket.socket:
    """A connected client socket to ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        with SunPath(path) as addr:
            s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


class UnixServer:
    """Listens on ``self.path`` and serves each connection on its own thread
    (subclasses set ``path`` and define ``_serve(conn)``)."""

    path: Path
    thread_name = "simfs-socket"
    _sock: Optional[socket.socket] = None

    def start(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # chmod, not umask: umask is process-wide and the FUSE threads are already running;
        # connect() needs write permission, which the default umask never gives others
        with SunPath(self.path) as addr:
            s.bind(addr)
        os.chmod(self.path, 0o600)
        s.listen(16)
        self._sock = s
        threading.Thread(target=self._accept, name=self.thread_name, daemon=True).start()

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
            try:
                self.path.unlink()
            except OSError:
                pass

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,),
                             name=f"{self.thread_name}-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError
