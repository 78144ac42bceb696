"""A userspace iSCSI target (RFC 7143) that behaves like the Linux kernel's iscsi_target_mod.

Modules: :mod:`.pdu` (PDU encode/decode), :mod:`.digest` (CRC32C), :mod:`.text` (keys and
the kernel's negotiation), :mod:`.chap`, :mod:`.login` (login state machine), :mod:`.session`
(sessions, the connection's asyncio driver), :mod:`.machine` (the full feature phase,
sans-I/O), :mod:`.residual` (residual counts), :mod:`.server` (asyncio listeners in
their own thread), :mod:`.workers` (a worker thread per device), :mod:`.report` (log lines,
trace events).

The server serves a *backend* (duck-typed; the fabric tree provides
``simfs_plugins.fabrics.iscsi.TreeIscsiBackend``):

* ``portals() -> [(ip, port), ...]``
* ``discovery(initiator, portal) -> [(target_iqn, ["ip:port,tpgt", ...]), ...]``
* ``discovery_auth() -> {enforce, userid, password, userid_mutual, password_mutual}``
* ``login(target_name, portal, initiator) -> TpgView`` or raise :class:`LoginRefused` (the
  backend logs the refusal in the kernel's words; the server adds "iSCSI Login negotiation
  failed.")

and a ``TpgView``: ``tpgt``, ``target_name``, ``params`` (the TPG's ``param/`` values),
``auth`` (dict as above), ``luns()``, ``submit(isid, lun, cdb, data_out) -> Result``; optional
``task_management(isid, function, lun, ref_itt) -> response``, ``device_key(lun)`` (what
commands of that LUN queue on: the device, or None when there is none), ``abort()`` (a
failed login after the ACL lookup), ``session_added(isid, session)`` (the server's
:class:`~simfs.iscsi.session.Session`),
``session_removed(isid)``, ``cmdsn_depth`` (default 64), ``nopin_timeout`` (15 s),
``nopin_response_timeout`` (30 s), ``dataout_timeout`` (3 s), ``block_size(lun)`` (residual reporting),
``tmr_warm_reset``/``tmr_cold_reset`` (default False), ``logout_received(reason)`` and
``connection_timed_out(initiator)`` (the IQN's logout and session error statistics). The
session's own counters (``index``, ``cmd_pdus``, ``rsp_pdus``, ``tx_data_octets``,
``rx_data_octets``, ``conn_digest_errors``, ``conn_timeout_errors``) live on the
:class:`~simfs.iscsi.session.Session` handed to ``session_added``.
"""

from simfs.iscsi.errors import LoginRefused, ProtocolError
from simfs.iscsi.server import IscsiServer

__all__ = ["IscsiServer", "LoginRefused", "ProtocolError"]
