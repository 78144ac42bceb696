"""Exceptions shared between the iSCSI target server and the fabric tree that backs it."""

from __future__ import annotations


class LoginRefused(Exception):
    """A login the target refuses: the Login Response carries ``status_class``/``status_detail``.

    Raised by a backend's ``login(target_name, portal, initiator)``; the classes and details
    are RFC 7143 §11.13.5 (see :mod:`simfs.iscsi.pdu`: ``STATUS_*`` constants). Typical ones,
    as the kernel's iscsi_target_locate_portal sends them:

    * target name unknown, or the portal is not in the target's TPG: ``(3, 1)`` (SVC_UNAVAILABLE)
    * initiator not in the TPG's ACLs and demo mode off: ``(2, 2)`` (TGT_FORBIDDEN)
    * TPG disabled: ``(3, 1)``
    """

    def __init__(self, status_class: int, status_detail: int, reason: str = ""):
        super().__init__(reason or f"login refused {status_class:#04x}/{status_detail:#04x}")
        self.status_class = status_class
        self.status_detail = status_detail
        self.reason = reason


class ProtocolError(Exception):
    """The initiator broke the protocol badly enough that the connection is dropped."""
