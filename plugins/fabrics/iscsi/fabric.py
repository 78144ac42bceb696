"""The iSCSI fabric's ops (iscsi_target_configfs.c iscsi_ops): module load, wwn, TPG, np,
demo mode and ACL hooks; the files of each level come from the sibling modules."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

from simfs.configfs import ConfigfsError, Group
from simfs.scsi import status as S
from simfs.core import kparse
from simfs.core.idr import Idr
from simfs.core.fabric import FabricModule, FabricOps, SeWwn, register_template

from simfs_plugins.fabrics.iscsi import portals, stats
from simfs_plugins.fabrics.iscsi.acl_configfs import (ACL_ATTRIB_ATTRS, ACL_AUTH_ATTRS,
                                                      ACL_BASE_ATTRS, ACL_PARAM_ATTRS)
from simfs_plugins.fabrics.iscsi.auth import DISCOVERY_ATTRS, NodeAuth
from simfs_plugins.fabrics.iscsi.constants import (
    ISCSI_IQN_LEN, ISCSIT_VERSION, NA_AUTHENTICATION_INHERITED, NA_DATAOUT_TIMEOUT,
    NA_DATAOUT_TIMEOUT_RETRIES, NA_NOPIN_RESPONSE_TIMEOUT, NA_NOPIN_TIMEOUT)
from simfs_plugins.fabrics.iscsi.params import default_params, update_param
from simfs_plugins.fabrics.iscsi.portals import NP_ATTRS, IscsiNp, portals_changed
from simfs_plugins.fabrics.iscsi.tpg_configfs import (TPG_ATTRIB_ATTRS, TPG_ATTRIBS,
                                                      TPG_AUTH_ATTRS, TPG_BASE_ATTRS,
                                                      TPG_PARAM_ATTRS, ta_authentication,
                                                      tpg_attrib)
from simfs_plugins.fabrics.iscsi.wwn_configfs import WWN_ATTRS

if TYPE_CHECKING:
    from simfs.core.acl import NodeAcl
    from simfs.core.tpg import SePortalGroup


class Iscsi(FabricOps):
    name = "iscsi"
    fabric_name = "iSCSI"
    module = "iscsi_target_mod"
    wwn_attrs = WWN_ATTRS
    discovery_attrs = DISCOVERY_ATTRS
    tpg_base_attrs = TPG_BASE_ATTRS
    tpg_attrib_attrs = TPG_ATTRIB_ATTRS
    tpg_auth_attrs = TPG_AUTH_ATTRS
    tpg_param_attrs = TPG_PARAM_ATTRS
    np_attrs = NP_ATTRS
    acl_base_attrs = ACL_BASE_ATTRS
    acl_attrib_attrs = ACL_ATTRIB_ATTRS
    acl_auth_attrs = ACL_AUTH_ATTRS
    acl_param_attrs = ACL_PARAM_ATTRS
    has_enable = True
    has_np = True
    versioned = {"wwn": "iscsi_wwn", "tpg_base": "iscsi_tpg_base",
                 "tpg_attrib": "iscsi_tpg_attrib", "acl_attrib": "iscsi_acl_attrib"}
    default_submit_type = 1  # TARGET_DIRECT_SUBMIT
    direct_submit_supported = 1

    def load(self, fmod: FabricModule) -> None:
        log = fmod.log
        log.debug(f"iSCSI-Target {ISCSIT_VERSION}")
        register_template(fmod)
        params = default_params()
        params["AuthMethod"] = "CHAP,None"
        fmod.state.update(discovery_auth=NodeAuth(), discovery_params=params,
                          discovery_authentication=0)
        log.debug("CORE[0] - Allocated Discovery TPG")

    # wwn
    def make_wwn(self, fmod: FabricModule, name: str) -> SeWwn:
        if len(name) >= ISCSI_IQN_LEN:
            raise ConfigfsError(errno.EINVAL, f"Target IQN exceeds {ISCSI_IQN_LEN} bytes")
        wwn = SeWwn(fmod, name)
        # tiqn_idr: the lowest free index from 0, iSCSI's own (not the SCSI-MIB counters)
        wwn.private["tiqn_index"] = fmod.state.setdefault("tiqn_idr", Idr()).alloc(
            wwn, 0, 0x7FFFFFFF)
        wwn.private["stats"] = stats.TiqnStats()
        fmod.log.debug(f"CORE[0] - Added iSCSI Target IQN: {name}")
        fmod.log.debug(f"LIO_Target_ConfigFS: REGISTER -> {name}")
        fmod.log.debug(f"LIO_Target_ConfigFS: REGISTER -> Allocated Node: {name}")
        return wwn

    def drop_wwn(self, wwn: SeWwn) -> None:
        if "tiqn_index" in wwn.private:
            wwn.fmod.state["tiqn_idr"].remove(wwn.private["tiqn_index"])
        wwn.log.debug(f"LIO_Target_ConfigFS: DEREGISTER -> {wwn.name}")
        wwn.log.debug(f"CORE[0] - Deleted iSCSI Target IQN: {wwn.name}")

    def wwn_stat_groups(self, wwn: SeWwn) -> list[Group]:
        return stats.wwn_stat_groups(wwn)

    # tpg
    def make_tpg(self, wwn: SeWwn, name: str) -> int:
        idx = name.find("tpgt_")
        if idx < 0:
            raise ConfigfsError(errno.EINVAL, 'Unable to locate "tpgt_#" directory group')
        try:
            return kparse.kstrtou16(name[idx + 5:], 0)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, None) from None

    def proto_id(self, tpg: "SePortalGroup") -> int:
        return S.PROTO_ISCSI

    def init_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.private.update(attrib={n: d for n, d, _ in TPG_ATTRIBS}, params=default_params(),
                           demo_auth=NodeAuth())
        log = tpg.log
        log.debug(f"CORE[{tpg.wwn.name}]_TPG[{tpg.tpgt}] - Added iSCSI Target Portal Group")
        log.debug(f"LIO_Target_ConfigFS: REGISTER -> {tpg.wwn.name}")
        log.debug(f"LIO_Target_ConfigFS: REGISTER -> Allocated TPG: {tpg.name}")

    def drop_tpg(self, tpg: "SePortalGroup") -> None:
        tpg.log.debug("LIO_Target_ConfigFS: DEREGISTER -> Releasing TPG")
        was_enabled = tpg.enabled
        tpg.enabled = False
        tpg.log.debug(f"CORE[{tpg.wwn.name}]_TPG[{tpg.tpgt}] - Deleted iSCSI Target Portal Group")
        if was_enabled and tpg.nps:
            portals_changed(tpg.core)

    def enable_tpg(self, tpg: "SePortalGroup", enable: bool) -> None:
        if enable:
            params = tpg.private["params"]
            if tpg_attrib(tpg)["authentication"]:
                if params["AuthMethod"] == "None":
                    update_param(tpg.log, params, "AuthMethod", "CHAP")
                ta_authentication(tpg, 1)
            tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Enabled iSCSI Target Portal Group")
        else:
            for acl in list(tpg.acls.values()):  # force=1: every session is released
                for isid in list(acl.sessions):
                    tpg.remove_session(acl, isid)
            tpg.log.debug(f"iSCSI_TPG[{tpg.tpgt}] - Disabled iSCSI Target Portal Group")
        tpg.enabled = enable
        portals_changed(tpg.core)

    def make_np(self, tpg: "SePortalGroup", name: str) -> IscsiNp:
        return portals.make_np(tpg, name)

    def drop_np(self, tpg: "SePortalGroup", np: IscsiNp) -> None:
        portals.drop_np(tpg, np)

    # demo mode
    def demo_mode(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg_attrib(tpg)["generate_node_acls"])

    def demo_mode_cache(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg_attrib(tpg)["cache_dynamic_acls"])

    def demo_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg_attrib(tpg)["demo_mode_write_protect"])

    def prod_mode_write_protect(self, tpg: "SePortalGroup") -> bool:
        return bool(tpg_attrib(tpg)["prod_mode_write_protect"])

    def default_depth(self, tpg: "SePortalGroup") -> int:
        return tpg_attrib(tpg)["default_cmdsn_depth"]

    def inst_index(self, tpg: "SePortalGroup") -> int:
        return tpg.wwn.private["tiqn_index"]

    # ACLs
    def init_nodeacl(self, acl: "NodeAcl") -> None:
        acl.private["attrib"] = dict(
            dataout_timeout=NA_DATAOUT_TIMEOUT, dataout_timeout_retries=NA_DATAOUT_TIMEOUT_RETRIES,
            default_erl=tpg_attrib(acl.tpg)["default_erl"], nopin_timeout=NA_NOPIN_TIMEOUT,
            nopin_response_timeout=NA_NOPIN_RESPONSE_TIMEOUT, random_datain_pdu_offsets=0,
            random_datain_seq_offsets=0, random_r2t_offsets=0,
            authentication=NA_AUTHENTICATION_INHERITED)
        acl.private["auth"] = NodeAuth()

    def acl_stat_groups(self, acl: "NodeAcl") -> list[Group]:
        return stats.acl_stat_groups(acl)

    def initiator_sid(self, isid: Optional[str]) -> str:
        return isid or ""


FABRIC = Iscsi()
