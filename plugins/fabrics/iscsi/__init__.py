"""The iSCSI fabric (drivers/target/iscsi), ``target/iscsi``, and the interface the iSCSI
server uses (:class:`TreeIscsiBackend`).

Which files each kernel version has (netif_timeout, ACL authentication, cpus_allowed_list,
iSCSI's own ``enable`` before 5.16) is the version table's (simfs.core.kernels); the
behaviour of each file is in the module of its level:

* :mod:`.fabric` — the fabric ops the generic tree calls (wwn, TPG, enable, demo mode, ACLs);
* :mod:`.wwn_configfs` — ``target/iscsi/``: ``lio_version``, ``cpus_allowed_list``;
  :mod:`.auth` — ``discovery_auth/`` and every ``auth/`` directory (CHAP credentials);
* :mod:`.tpg_configfs` — TPG ``attrib/`` (u32, then iscsit_ta_*'s range checks;
  ``generate_node_acls=1`` forces ``cache_dynamic_acls=1``), ``param/`` (through
  :mod:`.params`, iscsi_change_param_value), ``enable`` before 5.16, ``dynamic_sessions``;
* :mod:`.portals` — ``np/<ip>:<port>`` (any failure is EINVAL: the generic make_np hides
  the fabric's errno) and the hook that tells the server where to listen;
* :mod:`.acl_configfs` — ACL ``info``, ``cmdsn_depth`` (> 512 EINVAL), ``tag``, ``attrib/``,
  ``param/``;
* :mod:`.server_backend` — what the server asks the tree: portals, SendTargets, the login's
  lookups, and per session the nexus commands run on, TMFs and I_T nexus loss;
* :mod:`.constants` — iscsi_target_core.h's limits and defaults.

The plugin's entry point is ``simfs_plugins.fabrics.iscsi:FABRIC``.
"""

from simfs_plugins.fabrics.iscsi.acl_configfs import ACL_ATTRIB_ATTRS
from simfs_plugins.fabrics.iscsi.fabric import FABRIC, Iscsi
from simfs_plugins.fabrics.iscsi.server_backend import LoginRefused, TpgView, TreeIscsiBackend
from simfs_plugins.fabrics.iscsi.tpg_configfs import TPG_ATTRIB_ATTRS, TPG_BASE_ATTRS
from simfs_plugins.fabrics.iscsi.wwn_configfs import WWN_ATTRS

__all__ = ["ACL_ATTRIB_ATTRS", "FABRIC", "Iscsi", "LoginRefused", "TPG_ATTRIB_ATTRS",
           "TPG_BASE_ATTRS", "TpgView", "TreeIscsiBackend", "WWN_ATTRS"]
