"""Where the target says what it did: kernel-style log lines and trace events.

The kernel's iscsi_target_mod explains every refused login and dropped connection in
dmesg; :class:`Reporter` writes those lines (the kernel's wording) to the mount's
:class:`simfs.klog.KernelLog` — or to Python logging when the server runs without one
(tests, an embedding program) — and, while someone runs ``simfs trace``, hands an event
to the trace hub that set :attr:`Reporter.trace`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

_pylog = logging.getLogger("simfs.iscsi")
_PY_LEVELS = {"err": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
              "debug": logging.DEBUG}


class Reporter:
    """Kernel-style lines (``err``/``warn``/``info``/``debug``) and trace events."""

    def __init__(self, klog: Any = None):
        self.klog = klog
        #: the trace hub while anyone listens (it sets this attribute), else None
        self.trace: Optional[Any] = None

    def line(self, level: str, msg: str) -> None:
        if self.klog is not None:
            getattr(self.klog, level)(msg)
        else:
            _pylog.log(_PY_LEVELS[level], "%s", msg)

    def err(self, msg: str) -> None:
        self.line("err", msg)

    def warn(self, msg: str) -> None:
        self.line("warn", msg)

    def info(self, msg: str) -> None:
        self.line("info", msg)

    def debug(self, msg: str) -> None:
        self.line("debug", msg)

    def event(self, what: str, result: str, reason: str, peer: str = "", portal: str = "",
              target: str = "", tpgt: Optional[int] = None, initiator: str = "") -> None:
        """A refused login (``what`` "login") or a dropped connection ("drop") for
        ``simfs trace``: path is the TPG's tree path when known, else ``iscsi``."""
        hub = self.trace
        if hub is None:
            return
        path = f"iscsi/{target}/tpgt_{tpgt}" if target and tpgt is not None else \
            (f"iscsi/{target}" if target else "iscsi")
        try:
            hub.event("iscsi", path, result, reason, event=what, peer=peer, portal=portal,
                      initiator=initiator)
        except Exception:  # noqa: BLE001 - tracing never breaks the target
            _pylog.exception("trace event failed")


def addr_text(addr: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) from a socket address tuple."""
    if not addr:
        return ""
    ip, port = str(addr[0]), addr[1]
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]  # a v4-mapped peer, shown as the kernel shows it: IPv4
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def host_text(addr: Any) -> str:
    """The address without the port (the kernel's %pISc)."""
    if not addr:
        return ""
    ip = str(addr[0])
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip
