"""The one table of what each kernel version of the target tree adds, removes or changes.

simfs plays one named kernel per mount (``simfs mount --kernel 6.1``). Everything that
differs between those kernels is data here, read by the tree, the SCSI engine and the iSCSI
target through :class:`Kernel`'s small API — code never compares version numbers itself:

* ``kernel.has(key)`` — a feature the version has (``kernel.has("tpg_rtpi")``);
* ``kernel.value(key)`` — a value that changed between versions
  (``kernel.value("dbroot_busy")`` is ``"fabrics"`` or ``"devices"``);
* ``kernel.files(group)`` — the attribute files of one configfs group, in the kernel's
  order (``kernel.files("dev_attrib")``); ``kernel.table(group, attrs)`` picks the
  :class:`~simfs.configfs.Attribute` objects for them.

Two kinds of rows make the table: :data:`CHANGES` (behaviours and values, each with the
release that first has it) and :data:`FILES` (every file of a versioned group, in kernel
order, with the release that added or removed it). ``docs/kernels.md`` is generated from
both (:func:`render_markdown`); a unit test keeps it current.

The seed's 2009 engine (``v3.0``) is a version too; its tree is the legacy one
(``kernel.legacy``), described by the v3.0 tables next to the modern ones in the code.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

#: the modern versions simfs plays, oldest first
VERSIONS: tuple[str, ...] = ("4.18", "5.14", "6.1", "6.12", "6.18")
NEWEST = VERSIONS[-1]
LEGACY = "v3.0"
#: other names accepted for a version (``--profile modern`` is the newest)
ALIASES: Mapping[str, str] = {"modern": NEWEST, "v5.0": NEWEST}

#: who runs each version, and which source simfs follows for it
WHO: Mapping[str, str] = {
    "4.18": "RHEL 8 and its rebuilds (AlmaLinux, Rocky, Oracle Linux 8): upstream 4.18",
    "5.14": "RHEL 9 and its rebuilds: upstream 5.14",
    "6.1": "Debian 12 (bookworm): the 6.1.y stable kernel Debian ships",
    "6.12": "Debian 13 (trixie), the 6.12 LTS: the 6.12.y stable kernel",
    "6.18": "the newest tracked release (mainline 6.18)",
    "v3.0": "the 2009 lio-core-2.6 target_core_mod v3.0 the seed script was written for",
}


def release(name: str) -> tuple[int, ...]:
    """``"6.12"`` -> ``(6, 12)``."""
    return tuple(int(p) for p in name.split("."))


@dataclass(frozen=True)
class Change:
    """One row: from release ``since`` on, ``key`` is ``value``."""

    since: str
    key: str
    value: Any = True
    #: what changed, in a user's words
    what: str = ""
    #: why it matters to a tool author
    why: str = ""
    #: where in the kernel source
    where: str = ""
    #: stable series that received the change earlier than ``since`` (backports)
    backported: tuple[str, ...] = ()


@dataclass(frozen=True)
class File:
    """One attribute file of a versioned group, in kernel order."""

    name: str
    since: Optional[str] = None
    until: Optional[str] = None  # first release without it
    why: str = ""


#: What 4.18 has; every later version is this plus the changes up to it.
BASELINE: Mapping[str, Any] = {
    "fabric_alias_lookup": False,
    "dev_flags_writable": False,
    "tpg_enable": "fabric",
    "dbroot_busy": "fabrics",
    "dbroot_check": "filp_open",
    "unmap_setup": "static",
    "model_alias_warning": "truncating to 16 bytes",
    "lu_gp_members_nul": True,
    "tpg_rtpi": False,
    "iblock_pgr_passthrough": False,
    "pr_non_holder_read_capacity": False,
    # rows v3.0 overrides (see LEGACY_ROWS); every modern version has these values
    "dev_info_status": "Status: {status}  Max Queue Depth: {max}  SectorSize: {block_size}  "
                       "HwMaxSectors: {hw_max_sectors}\n        ",
    "dev_info_before_enable": True,
    "enable_failure_einval": False,
    "dev_queue_depth_at_enable": False,
    "backend_info_vendor": "TCM",
    "rd_info_flags": ("nullio", "dummy"),
    "fileio_info_tail": "mode",
    "virtual_queue_depth": None,
    "iblock_max_sectors_cap": None,
    "pscsi_info_claimed": False,
    "control_needs_known_key": False,
    "control_parser": "match_token",
    "fileio_control_tokens": ("fd_dev_name", "fd_dev_size", "fd_buffered_io", "fd_async_io"),
    # -- EXTENDED COPY / RECEIVE COPY RESULTS (target_core_xcopy.c) --
    "xcopy": True,
    "xcopy_lookup": "devices",
    "xcopy_failure_sense": "LOGICAL UNIT COMMUNICATION FAILURE",
    "xcopy_chunk": ("blocks", 1024),
    "report_supported_opcodes": False,
    "rcr_3pc_check": False,
    # -- residuals (target_cmd_size_check) --
    "residuals": "reject",
    # -- fabric modules and their TPG files --
    "fabric_efct": False,
    "fabric_remote": False,
    "qla2xxx_enable_pins_tpg": True,
    "vhost_version_space": False,
    # -- rd_mcp control keys --
    "rd_dummy": False,
    # -- the core's command path (transport_lookup_cmd_lun, target_cmd_parse_cdb) --
    "lookup_write_protected_counts": True,
    "non_existent_lun_names_initiator": False,
}

CHANGES: tuple[Change, ...] = (
    Change("5.0", "fabric_alias_lookup", True,
           "`mkdir target/<name>` finds a fabric by its alias as well as its name "
           "(`iscsi` and `iSCSI` both work)",
           "on 4.18 only the module's own name works: `mkdir target/iSCSI` is EINVAL",
           "target_core_configfs.c target_core_get_fabric"),
    Change("5.8", "dev_flags_writable", True,
           "`attrib/alua_support` and `attrib/pgr_support` take writes (ENOSYS \"has fixed "
           "value\" when the backend cannot change them); passthrough devices show "
           "`emulate_pr`",
           "on 4.18 both files are read-only: a write fails at open with EACCES",
           "target_core_configfs.c alua_support_store, pgr_support_store"),
    Change("5.16", "tpg_enable", "generic",
           "`tpgt_N/enable` moved into the target core: booleans (y/n/on/off), writing the "
           "current state is a no-op, and it is listed after the fabric's own TPG files",
           "on 5.14 iSCSI's own `enable` takes 0 or 1 only (\"Illegal value for "
           "tpg_enable\"), enabling an enabled TPG fails, and `ls tpgt_1` starts with it",
           "target_core_fabric_configfs.c target_fabric_tpg_base_enable_store"),
    Change("5.19", "dbroot_busy", "devices",
           "`dbroot` can be changed until the first backstore device exists (\"db_root: "
           "cannot be changed because it's in use\")",
           "before, it was refused as soon as any fabric module was loaded (\"db_root: "
           "cannot be changed: target drivers registered\"): set dbroot before `mkdir "
           "target/iscsi`",
           "target_core_configfs.c target_core_item_dbroot_store"),
    Change("6.1", "dbroot_check", "kern_path",
           "a `dbroot` that cannot be used fails with the lookup's own errno (ENOENT, "
           "ENOTDIR, EACCES), logging \"db_root: cannot open\" (first seen after 5.19)",
           "before, every bad path was EINVAL", "target_core_configfs.c "
           "target_core_item_dbroot_store"),
    Change("6.1", "unmap_setup", "callout",
           "`emulate_tpu`/`emulate_tpws`/`unmap_zeroes_data`=1 on a device without UNMAP "
           "limits asks the backend to set them up (configure_unmap) before refusing",
           "on 4.18 and 5.14 they are ENOSYS unless the backend set the limits when the "
           "device was enabled",
           "target_core_configfs.c emulate_tpu_store"),
    Change("5.1", "model_alias_warning", "truncating to 15 characters",
           "the long-name warning of `emulate_model_alias` says \"truncating to 15 "
           "characters\" (first seen by 5.10)", "log matchers",
           "target_core_configfs.c dev_set_t10_wwn_model_alias"),
    Change("6.3", "tpg_rtpi", True,
           "relative target port ids belong to the TPG: `tpgt_N/rtpi` (0 until the TPG is "
           "enabled, then the lowest free id; writable while disabled), and every LUN of a "
           "TPG reports it (VPD 0x83, REPORT TARGET PORT GROUPS, PR, statistics)",
           "before, each LUN got an id from a per-device counter when it was linked: two "
           "LUNs of one TPG had different ids",
           "target_core_tpg.c target_tpg_register_rtpi"),
    Change("6.3", "iblock_pgr_passthrough", True,
           "iblock's `attrib/pgr_support` can be set to 0: PR commands then go to the block "
           "device and `pr/res_type` reads SPC_PASSTHROUGH",
           "before, ENOSYS \"pgr_support has fixed value\"",
           "target_core_iblock.c transport_flags_changeable"),
    Change("6.12", "unmap_setup", "try",
           "an UNMAP setup on a device that is not enabled yet is ENODEV (\"Generic Block "
           "Discard setup for <attr> requires device to be configured\") (first seen "
           "after 6.1)",
           "6.1 answers ENOSYS", "target_core_configfs.c target_try_configure_unmap"),
    Change("6.12", "pr_non_holder_read_capacity", True,
           "READ CAPACITY(10) from an unregistered initiator passes an Exclusive Access "
           "reservation (first seen after 6.1)",
           "older kernels answer RESERVATION CONFLICT", "target_core_pr.c "
           "core_scsi3_pr_seq_non_holder"),
    Change("6.18", "lu_gp_members_nul", False,
           "LU group `members` lines no longer end with a NUL byte (target port group "
           "`members` still do)",
           "parsers that stripped the NUL keep working; byte-exact comparisons change",
           "target_core_configfs.c target_lu_gp_members_show", backported=("6.1", "6.12")),
    # -- EXTENDED COPY / RECEIVE COPY RESULTS (target_core_xcopy.c) --
    Change("5.7", "xcopy_chunk", ("blocks", 4096),
           "EXTENDED COPY moves data in chunks of up to 4096 blocks (and each device's "
           "`hw_max_sectors`) instead of 1024",
           "a copy that fails part-way has copied more before it stopped",
           "target_core_xcopy.h XCOPY_MAX_SECTORS"),
    Change("5.11", "xcopy_lookup", "acl",
           "EXTENDED COPY finds the other device of a copy only among the LUNs mapped to "
           "the initiator's ACL (newest mapping first); before, any enabled device of the "
           "system with `emulate_3pc` was a candidate (CVE-2020-28374)",
           "on 4.18 an initiator can copy from or to a device it was never given; RHEL 8 "
           "and the 4.19+/5.4+/5.10+ stable kernels carry the fix",
           "target_core_xcopy.c target_xcopy_locate_se_dev_e4"),
    Change("5.15", "xcopy_failure_sense", "specific",
           "an EXTENDED COPY refused by its parameter list answers the reason (PARAMETER "
           "LIST LENGTH ERROR, INVALID FIELD IN PARAMETER LIST, TOO MANY ... DESCRIPTORS, "
           "COPY ABORTED when a device is not reachable or a chunk fails) and logs \"rc: N, "
           "sense: N, XCOPY operation failed\"",
           "before, every refusal found after the command was queued answered NOT READY, "
           "LOGICAL UNIT COMMUNICATION FAILURE (02h/08h/00h) and logged \"Setting X-COPY "
           "CHECK_CONDITION -> sending response\": initiators retry instead of falling back",
           "target_core_xcopy.c target_xcopy_do_work"),
    Change("6.2", "xcopy_chunk", ("bytes", 16 << 20),
           "EXTENDED COPY chunks are up to 16 MiB (and each device's `hw_max_sectors` * "
           "`hw_block_size`), whatever the block size",
           "4096-byte-block devices copied in 4096-block (16 MiB) chunks before too; "
           "512-byte ones in 2 MiB", "target_core_xcopy.c target_xcopy_do_work",
           backported=("6.1",)),
    Change("6.2", "report_supported_opcodes", True,
           "REPORT SUPPORTED OPERATION CODES is answered (the commands the device takes, "
           "EXTENDED COPY and RECEIVE COPY RESULTS only while `emulate_3pc` is 1)",
           "before, MAINTENANCE IN with that service action is INVALID COMMAND OPERATION "
           "CODE", "target_core_spc.c spc_emulate_report_supp_op_codes"),
    Change("6.2", "rcr_3pc_check", True,
           "RECEIVE COPY RESULTS is INVALID COMMAND OPERATION CODE while `emulate_3pc` is 0",
           "before, it answered OPERATING PARAMETERS whatever `emulate_3pc` said",
           "target_core_xcopy.c target_do_receive_copy_results"),
    # -- residuals (target_cmd_size_check) --
    Change("5.12", "residuals", "signal",
           "a command whose transfer length differs from the initiator's carries the "
           "overflow/underflow residual even when it is refused; a WRITE data CDB with a "
           "residual is refused with 5/0Eh/03h INVALID FIELD IN COMMAND INFORMATION UNIT; a "
           "write control CDB keeps all the data sent; 4096-byte-block devices take "
           "residuals like 512-byte ones",
           "before: such a WRITE was 5/24h/00h INVALID FIELD IN CDB with no residual, a "
           "write control CDB (PR OUT, MODE SELECT) saw only the CDB's length of the data, "
           "and any residual on a device whose block size is not 512 was refused (\"Failing "
           "OVERFLOW/UNDERFLOW for LBA op CDB on non 512-byte sector setup\")",
           "target_core_transport.c target_cmd_size_check"),
    # -- fabric modules and their TPG files --
    Change("5.14", "fabric_efct", True,
           "the `efct` fabric (Emulex/Broadcom LPe3x FC adapters in target mode)",
           "`modprobe efct` fails before", "drivers/scsi/elx/efct/efct_lio.c"),
    Change("5.1", "qla2xxx_enable_pins_tpg", False,
           "enabling a qla2xxx TPG no longer pins it (commit \"scsi: qla2xxx: deadlock by "
           "configfs_depend_item\", early 2019)",
           "on 4.18 `rmdir` of an enabled qla2xxx `tpgt_1` is EBUSY: write 0 to `enable` first",
           "drivers/scsi/qla2xxx/tcm_qla2xxx.c tcm_qla2xxx_tpg_enable_store"),
    Change("6.17", "vhost_version_space", True,
           "`target/vhost/version` reads `... on Linux/x86_64 on <release>`",
           "before, the space before the second `on` was missing (`Linux/x86_64on 6.12.0`) "
           "(a typo fix of June 2025, first seen after 6.12)",
           "drivers/vhost/scsi.c vhost_scsi_wwn_version_show"),
    Change("6.4", "fabric_remote", True,
           "the `remote` fabric (tcm_remote: LUNs for another node's initiator, no data path)",
           "`mkdir target/remote` is EINVAL before", "drivers/target/tcm_remote/tcm_remote.c"),
    # -- the core's command path --
    Change("5.11", "lookup_write_protected_counts", False,
           "a write refused by a read-only mapping (or sent to the virtual LUN 0) counts in "
           "the mapping's statistics only (scsi_auth_intr), not the device's (scsi_lu "
           "num_cmds, write_mbytes)",
           "on 4.18 transport_lookup_cmd_lun counted the refused write in the device too "
           "(the lookup jumped to its device accounting before returning WRITE PROTECTED; "
           "commit \"target: fix lun ref count handling\" of late 2020 returns first)",
           "target_core_device.c transport_lookup_cmd_lun"),
    Change("5.8", "non_existent_lun_names_initiator", True,
           "a command for a LUN the initiator has not mapped logs \"TARGET_CORE[iSCSI]: "
           "Detected NON_EXISTENT_LUN Access for 0x%08llx from <initiator name>\" (a task "
           "management request: \"... for <initiator name>\", at debug level)",
           "on 4.18 the line ends at the LUN number (commit \"target: Add initiatorname to "
           "NON_EXISTENT_LUN error\", mid 2020)",
           "target_core_device.c transport_lookup_cmd_lun"),
    # -- rd_mcp control keys (fileio's fd_async_io, commit 76931420c876 of spring 2018, is in
    # mainline before 4.18: every modern version has it) --
    Change("5.13", "rd_dummy", True,
           "rd_mcp `control` takes `rd_dummy=1`: the device reports peripheral type 0x3f "
           "(no device connected; `statistics/scsi_lu/dev_type` 63) and `info` ends with "
           "` dummy: N` (commit 0aecfa662e43, \"target: Add the DUMMY flag to rd_mcp\")",
           "before, `rd_dummy=` is a key the parser does not know and skips, as any other: "
           "the write succeeds, nothing is logged, the device stays a disk and `info` ends "
           "at `nullio: N`. RHEL 8 backported the key later (8.7's 4.18.0-394 has it); "
           "simfs's 4.18 is the upstream release",
           "target_core_rd.c rd_set_configfs_dev_params (match_token's Opt_err: default "
           "branch), rd_show_configfs_dev_params"),
)

_DEV_ATTRIB: tuple[File, ...] = (
    File("emulate_model_alias"), File("emulate_dpo"), File("emulate_fua_write"),
    File("emulate_fua_read"), File("emulate_write_cache"), File("emulate_ua_intlck_ctrl"),
    File("emulate_tas"), File("emulate_tpu"), File("emulate_tpws"), File("emulate_caw"),
    File("emulate_3pc"),
    File("emulate_pr", "5.7", why="turns PR emulation off (PR commands: INVALID OPCODE)"),
    File("pi_prot_type"), File("hw_pi_prot_type"), File("pi_prot_format"),
    File("pi_prot_verify"), File("enforce_pr_isids"), File("is_nonrot"),
    File("emulate_rest_reord"), File("force_pr_aptpl"), File("hw_block_size"),
    File("block_size"), File("hw_max_sectors"), File("optimal_sectors"),
    File("hw_queue_depth"), File("queue_depth"), File("max_unmap_lba_count"),
    File("max_unmap_block_desc_count"), File("unmap_granularity"),
    File("unmap_granularity_alignment"), File("unmap_zeroes_data"), File("max_write_same_len"),
    File("alua_support"), File("pgr_support"),
    File("emulate_rsoc", "6.2", why="REPORT SUPPORTED OPERATION CODES can be turned off"),
    File("submit_type", "6.10", why="0 fabric default, 1 direct, 2 queued submission"),
)

_PASSTHROUGH_ATTRIB: tuple[File, ...] = (
    File("hw_pi_prot_type"), File("hw_block_size"), File("hw_max_sectors"),
    File("hw_queue_depth"), File("emulate_pr", "5.8"), File("alua_support"),
    File("pgr_support"), File("submit_type", "6.10"),
)

FILES: Mapping[str, tuple[File, ...]] = {
    # core/<hba>/<dev>/attrib for backends using the SBC/SPC emulation
    "dev_attrib": _DEV_ATTRIB,
    # ... for pscsi and TCMU (passing CDBs through)
    "dev_attrib_passthrough": _PASSTHROUGH_ATTRIB,
    # ... added for TCMU, which may emulate PR
    "dev_attrib_passthrough_pr": (File("enforce_pr_isids", "5.8"), File("force_pr_aptpl", "5.8")),
    "dev_wwn": (
        File("vendor_id"), File("product_id"), File("revision"),
        File("company_id", "5.14", why="the IEEE company id in NAA designators"),
        File("vpd_unit_serial"), File("vpd_protocol_identifier"),
        File("vpd_assoc_logical_unit"), File("vpd_assoc_target_port"),
        File("vpd_assoc_scsi_target_device"),
    ),
    # target/<fabric>/<wwn>/param (the group itself exists from 5.12)
    "wwn_param": (
        File("cmd_completion_affinity", "5.12", why="CPU that completes commands"),
        File("default_submit_type", "6.10"), File("direct_submit_supported", "6.10"),
    ),
    # the generic files of target/<fabric>/<wwn>/tpgt_N, after the fabric's own
    "tpg_base": (
        File("enable", "5.16", why="owned by the core; before, fabrics had their own"),
        File("rtpi", "6.3", why="the TPG's relative target port id"),
    ),
    # the fabrics' own files of target/<fabric>/<wwn>/tpgt_N (each had its own `enable`
    # before 5.16: 0 or 1, see plugins/fabrics for what each said about other values)
    "qla2xxx_tpg_base": (
        File("enable", until="5.16",
             why="the core's `enable` replaces it, listed last; the own one took 0 or 1 "
                 "only, EEXIST when enabled again"),
        File("dynamic_sessions"), File("fabric_prot_type")),
    "qla2xxx_npiv_tpg_base": (File("enable", until="5.16", why="as qla2xxx's"),),
    "srpt_tpg_base": (
        File("enable", until="5.16",
             why="the core's `enable` replaces it; the own one took 0 or 1 only"),),
    "usb_gadget_tpg_base": (
        File("enable", until="5.16",
             why="the core's `enable` replaces it, listed last; writing the current state "
                 "to the own one was EINVAL"),
        File("nexus")),
    "ibmvscsis_tpg_base": (
        File("enable", until="5.16",
             why="the core's `enable` replaces it; the own one took 0 or 1 only"),),
    # target/iscsi/
    "iscsi_wwn": (File("lio_version"),
                  File("cpus_allowed_list", "5.18", why="CPUs for iSCSI RX/TX threads")),
    # target/iscsi/<iqn>/tpgt_N (iSCSI's own files)
    "iscsi_tpg_base": (File("enable", until="5.16"), File("dynamic_sessions")),
    "iscsi_tpg_attrib": (
        File("authentication"), File("login_timeout"),
        File("netif_timeout", until="6.6",
             why="never used; a saveconfig holding it does not restore on 6.6+"),
        File("generate_node_acls"), File("default_cmdsn_depth"), File("cache_dynamic_acls"),
        File("demo_mode_write_protect"), File("prod_mode_write_protect"),
        File("demo_mode_discovery"), File("default_erl"), File("t10_pi"),
        File("fabric_prot_type"), File("tpg_enabled_sendtargets"),
        File("login_keys_workaround"),
    ),
    "iscsi_acl_attrib": (
        File("dataout_timeout"), File("dataout_timeout_retries"), File("default_erl"),
        File("nopin_timeout"), File("nopin_response_timeout"),
        File("random_datain_pdu_offsets"), File("random_datain_seq_offsets"),
        File("random_r2t_offsets"),
        File("authentication", "6.0",
             why="per-initiator CHAP: -1 inherit the TPG's, 0 off, 1 on"),
    ),
}

#: Version strings of each generation: TARGET_CORE_VERSION, the engine (module load line),
#: the ConfigFS infrastructure (module load line and ``target/version``), and what
#: ``hba_info`` prints (the plugin's own version in v3.0)
_VERSION_STRINGS = {"modern": ("v5.0", "v5.0", "v5.0", "v5.0", "v5.0"),
                    "v3.0": ("v3.0", "v3.0.0", "v1.0.0", "v1.0.0", "v1.0.0")}


def _present(f: File, rel: tuple[int, ...]) -> bool:
    if f.since is not None and rel < release(f.since):
        return False
    if f.until is not None and rel >= release(f.until):
        return False
    return True


def _applies(c: Change, name: str) -> bool:
    return release(name) >= release(c.since) or name in c.backported


@dataclass(frozen=True, eq=False)
class Kernel:
    """One kernel version: its table values, file lists and version strings.

    It is also what the code calls the *profile* (``core.profile``): ``legacy`` is True for
    the 2009 tree, and ``kptr``/``uname`` format what the log and ``version`` print.
    """

    name: str
    legacy: bool
    values: Mapping[str, Any] = field(default_factory=dict)

    # -- the table API --------------------------------------------------------------------
    def has(self, key: str) -> bool:
        """True when this version has the feature ``key`` (a boolean row of the table)."""
        return bool(self.value(key))

    def value(self, key: str) -> Any:
        """This version's value of ``key``; KeyError for a key the table does not know."""
        if self.legacy:
            return _LEGACY_VALUES.get(key, BASELINE[key])
        return self.values[key]

    def files(self, group: str) -> tuple[str, ...]:
        """The attribute files of ``group`` this version has, in kernel order."""
        if self.legacy:
            return LEGACY_FILES.get(group, ())
        rel = release(self.name)
        return tuple(f.name for f in FILES[group] if _present(f, rel))

    def table(self, group: str, attrs: Sequence[Any]) -> tuple[Any, ...]:
        """The objects of ``attrs`` (anything with a ``name``) this version lists, in order."""
        by_name = {a.name: a for a in attrs}
        return tuple(by_name[n] for n in self.files(group))

    # -- what the rest of the code knew as the profile ----------------------------------
    @property
    def family(self) -> str:
        """``"modern"`` or ``"v3.0"``: what plugins declare they work with."""
        return "v3.0" if self.legacy else "modern"

    @property
    def core_version(self) -> str:
        """TARGET_CORE_VERSION as hba_info and HBA banners print it."""
        return _VERSION_STRINGS[self.family][0]

    @property
    def engine_version(self) -> str:
        """The version in target/version and the module-load line."""
        return _VERSION_STRINGS[self.family][1]

    @property
    def fabric_version(self) -> str:
        """The fabric infrastructure version in the module-load line."""
        return _VERSION_STRINGS[self.family][2]

    @property
    def configfs_version(self) -> str:
        """The version ``target/version`` prints."""
        return _VERSION_STRINGS[self.family][3]

    @property
    def plugin_version(self) -> str:
        """The version ``hba_info`` prints."""
        return _VERSION_STRINGS[self.family][4]

    def kptr(self, obj: object) -> str:
        """A kernel pointer as %p prints it: hashed 64-bit today, raw 32-bit (i686) in v3.0."""
        h = zlib.crc32(id(obj).to_bytes(8, "little"))
        if self.legacy:
            return f"{0xc0000000 | (h & 0x3ffffff0):08x}"
        return f"{h:016x}"

    def uname(self) -> tuple[str, str, str]:
        u = os.uname()
        return u.sysname, u.machine, u.release


# -- v3.0: the 2009 engine (lio-core-2.6 target_core_mod v3.0) ----------------------------------
# Read from two trees of 2009 on either side of the seed: the LIO maintainer's lio-core-2.6
# (drivers/target/, se_subsystem_dev_t era, tcm_strict_strtoul) and a tree carrying lio-core
# under drivers/lio-core/ (earlier: evpd_* files, simple_strtoul). Where they disagree, the one
# closer to the seed (its log lines and file names) wins; ``source`` says which.

@dataclass(frozen=True)
class LegacyRow:
    """One value the 2009 engine has instead of the modern one (BASELINE's key)."""

    key: str
    value: Any
    what: str
    source: str = ""


LEGACY_ROWS: tuple[LegacyRow, ...] = (
    LegacyRow("xcopy", False, "no EXTENDED COPY or RECEIVE COPY RESULTS: opcodes 83h and 84h "
              "are INVALID COMMAND OPERATION CODE (target_core_xcopy.c came with 3.12)"),
    LegacyRow("dbroot_busy", "fabrics", "no dbroot file at all; the value only keeps the "
              "shared code on its oldest rule"),
    LegacyRow("dev_info_status",
              "Status: {status}  Execute/Left/Max Queue Depth: {execute}/{left}/{max}  "
              "SectorSize: {block_size}  MaxSectors: {max_sectors}\n        ",
              "`info` starts `Status: DEACTIVATED  Execute/Left/Max Queue Depth: 0/32/32  "
              "SectorSize: 512  MaxSectors: 1024` (tasks executing, queue slots left, the "
              "device's queue depth)",
              "target_core_transport.c transport_dump_dev_state"),
    LegacyRow("dev_info_before_enable", False,
              "before `enable`, `info` is the plugin's lines alone (no se_device yet)",
              "target_core_configfs.c target_core_show_dev_info"),
    LegacyRow("enable_failure_einval", True,
              "an `enable` the plugin cannot carry out (a file that cannot be opened, a "
              "missing parameter) is EINVAL whatever the cause, its reason in the log",
              "target_core_configfs.c target_core_store_dev_enable"),
    LegacyRow("dev_queue_depth_at_enable", True,
              "the device's queue depth (`info`'s Max) is set when it is enabled, from the "
              "plugin's depth; modern kernels leave it 0 until `attrib/queue_depth` is written",
              "target_core_transport.c transport_add_device_to_core_hba"),
    LegacyRow("backend_info_vendor", "LIO",
              "rd and fileio `info` and their \"Added ...\" log lines say `LIO` "
              "(`LIO RamDisk ID`, `LIO FILEIO ID`, `Added LIO DIRECT Ramdisk Device`)",
              "target_core_rd.c __rd_get_dev_info, target_core_file.c __fd_get_dev_info"),
    LegacyRow("rd_info_flags", (),
              "rd `info`: `RamDisk Makeup: rd_mcp` or `rd_direct` and no nullio/dummy fields",
              "target_core_rd.c __rd_get_dev_info"),
    LegacyRow("fileio_info_tail", "claimed",
              "fileio `info`: `LIO FILEIO ID: N        File: PATH  Size: N  ` then "
              "`CLAIMED: FILEIO` for a block device (no Mode)",
              "target_core_file.c __fd_get_dev_info (the drivers/lio-core/ x"),
    LegacyRow("virtual_queue_depth", (32, 128),
              "rd, fileio and iblock start with `queue_depth` = `hw_queue_depth` = 32 and take "
              "up to 128 (\"exceeds LIO-Core/SE_Device MAX TCQ: 128\")",
              "`*_get_queue_depth`, `*_get_max_queue_depth`, target_core_device.c "
              "se_dev_set_queue_depth"),
    LegacyRow("pscsi_info_claimed", True,
              "pscsi `info`: the INQUIRY vendor, model and revision at their full 8/16/4 "
              "widths, then `   CLAIMED: PSCSI` for a disk whose block device it holds",
              "target_core_pscsi.c __pscsi_get_dev_info"),
    LegacyRow("iblock_max_sectors_cap", 128,
              "iblock's `hw_max_sectors` and `max_sectors` are the queue's limit capped at 128",
              "target_core_iblock.c iblock_get_max_sectors: the pre-2.6.31 branch "
              "(IBLOCK_MAX_SECTORS), the seed's kernel being 2.6.29"),
    LegacyRow("control_needs_known_key", True,
              "rd, fileio and pscsi `control` strings with no key the plugin knows (`foo=1`, "
              "`rd_pages` without `=`) are EINVAL; modern kernels accept and ignore them",
              "target_core_rd.c/target_core_file.c/target_core_pscsi.c "
              "*_set_configfs_dev_params: `return (params) ? count : -EINVAL`"),
    LegacyRow("control_parser", "2009",
              "rd `control` knows `rd_pages=` only (a key *containing* rd_pages), stops at "
              "the first piece it cannot use, and `rd_pages=abc` logs \"tcm_strict_strtoul() "
              "failed for rd_pages=\"",
              "target_core_rd.c rd_set_configfs_dev_params"),
    LegacyRow("fileio_control_tokens", ("fd_dev_name", "fd_dev_size"),
              "fileio `control` knows `fd_dev_name=` and `fd_dev_size=` only; a string "
              "with neither is EINVAL",
              "target_core_file.c fd_set_configfs_dev_params"),
)

#: v3.0 has the 4.18 baseline's values except where the 2009 engine is known to differ
_LEGACY_VALUES: Mapping[str, Any] = {r.key: r.value for r in LEGACY_ROWS}

#: what the 2009 engine does in code of its own (the v3.0 tables in simfs's code), for the docs
LEGACY_NOTES: tuple[str, ...] = (
    "attribute writes parse an unsigned number (\"tcm_strict_strtoul() failed with ret: -22\" "
    "and EINVAL otherwise); every refusal is EINVAL with the engine's log line",
    "`emulate_tas` takes 0 or 1 and `emulate_ua_intlck_ctrl` 0, 1 or 2 (\"Illegal value N\"); "
    "these, `block_size`, `max_sectors` and `queue_depth` are refused while the device is "
    "exported (\"Unable to change SE Device TAS while dev_export_obj: 1 count exists\")",
    "`max_sectors`: not 0, not below 16, not above `hw_max_sectors` (\"use force=1 to "
    "override.\" on rd, fileio and iblock, though nothing can set that force) and not above "
    "8192; `block_size` cannot change on pscsi; `task_timeout` at most 600",
    "`wwn/vpd_assoc_logical_unit` lists the VPD 0x83 designators the engine built at "
    "`enable` (NAA once a serial was written, then T10 vendor id); `vpd_unit_serial`, "
    "`vpd_protocol_identifier` and `vpd_assoc_*` are ENODEV before `enable`",
    "the two 2009 trees disagree on the attribute files (the drivers/lio-core/ tree still "
    "had status_thread and status_thread_tur, the maintainer's tree adds enforce_pr_isids) "
    "and on how attributes parse numbers (simple_strtoul, then tcm_strict_strtoul): simfs "
    "follows the seed, which lists neither set of extra files and reports \"tcm_strict_"
    "strtol() failed\" for `fd`",
)

#: the 2009 engine's file lists, in its order
LEGACY_FILES: Mapping[str, tuple[str, ...]] = {
    # lio_core_dev_attrs of the maintainer's tree without alias and udev_path (not in the
    # seed's tree)
    "dev": ("info", "control", "fd", "enable", "alua_lu_gp"),
    # target_core_dev_attrib_attrs of the maintainer's tree without enforce_pr_isids, which
    # the seed's tree does not list; the drivers/lio-core/ tree still had status_thread*
    "dev_attrib": ("emulate_ua_intlck_ctrl", "emulate_tas", "hw_block_size", "block_size",
                   "hw_max_sectors", "max_sectors", "hw_queue_depth", "queue_depth",
                   "task_timeout"),
}


def _build(name: str) -> Kernel:
    values = dict(BASELINE)
    for c in CHANGES:
        if _applies(c, name):
            values[c.key] = c.value
    return Kernel(name, False, values)


KERNELS: Mapping[str, Kernel] = {
    **{n: _build(n) for n in VERSIONS},
    LEGACY: Kernel(LEGACY, True, {}),
}


def names() -> tuple[str, ...]:
    """Every version simfs plays, the newest modern one last before v3.0."""
    return (*VERSIONS, LEGACY)


def choices() -> tuple[str, ...]:
    """What ``--kernel``/``--profile`` accept: versions and aliases."""
    return (*names(), *ALIASES)


def get(name: str) -> Kernel:
    """The version called ``name`` (an alias such as ``modern`` included)."""
    name = ALIASES.get(name, name)
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown kernel {name!r} (choose one of "
                         f"{', '.join(choices())})") from None


# -- docs/kernels.md ----------------------------------------------------------------------------
_GROUP_PATHS = {
    "dev_attrib": ("core/<hba>/<dev>/attrib/", "emulating backends"),
    "dev_attrib_passthrough": ("core/<hba>/<dev>/attrib/", "pscsi, user"),
    "dev_attrib_passthrough_pr": ("core/<hba>/<dev>/attrib/", "user, after the above"),
    "dev_wwn": ("core/<hba>/<dev>/wwn/", ""),
    "wwn_param": ("target/<fabric>/<wwn>/param/", ""),
    "tpg_base": ("target/<fabric>/<wwn>/tpgt_N/", "after the fabric's own files"),
    "qla2xxx_tpg_base": ("target/qla2xxx/<wwn>/tpgt_N/", "qla2xxx's own files"),
    "qla2xxx_npiv_tpg_base": ("target/qla2xxx_npiv/<wwn>/tpgt_N/", "qla2xxx_npiv's own files"),
    "srpt_tpg_base": ("target/srpt/<wwn>/tpgt_N/", "srpt's own files"),
    "usb_gadget_tpg_base": ("target/usb_gadget/<wwn>/tpgt_N/", "usb_gadget's own files"),
    "ibmvscsis_tpg_base": ("target/ibmvscsis/<wwn>/tpgt_N/", "ibmvscsis's own files"),
    "iscsi_wwn": ("target/iscsi/", ""),
    "iscsi_tpg_base": ("target/iscsi/<iqn>/tpgt_N/", "iSCSI's own files"),
    "iscsi_tpg_attrib": ("target/iscsi/<iqn>/tpgt_N/attrib/", ""),
    "iscsi_acl_attrib": ("target/iscsi/<iqn>/tpgt_N/acls/<initiator>/attrib/", ""),
}


def _where(group: str, name: str = "") -> str:
    path, note = _GROUP_PATHS[group]
    return f"`{path}{name}`" + (f" ({note})" if note else "")


def render_markdown() -> str:
    """``docs/kernels.md``: generated from this table (``python -m simfs.core.kernels``)."""
    out: list[str] = []
    w = out.append
    w("# LIO across kernel versions")
    w("")
    w("<!-- generated by `python -m simfs.core.kernels > docs/kernels.md`; edit "
      "simfs/core/kernels.py instead -->")
    w("")
    w("A real machine runs one kernel; simfs plays the one you name. Every version below is "
      "a complete target tree: the files and their order, defaults, accepted values, log "
      "lines and the SCSI behaviour of that kernel.")
    w("")
    w("<!-- test: run -->")  # tests/mount/test_docs.py runs the example
    w("```")
    w("mkdir -p /tmp/cfg-rhel9")
    w("simfs mount --kernel 5.14 /tmp/cfg-rhel9")
    w("ls /tmp/cfg-rhel9/target")
    w("simfs umount /tmp/cfg-rhel9")
    w("```")
    w("")
    w(f"Without `--kernel`, simfs plays {NEWEST}, the newest tracked version "
      "(`--profile modern` names it too).")
    w("")
    w("| version | who runs it |")
    w("| --- | --- |")
    for n in names():
        w(f"| `{n}` | {WHO[n]} |")
    w("")
    w("RHEL's kernels carry later fixes in their minor releases; simfs's 4.18 and 5.14 are "
      "the upstream releases they started from.")
    w("")
    w("## What changed, and when")
    w("")
    w("| since | change | why it matters |")
    w("| --- | --- | --- |")
    rows: list[tuple[tuple[int, ...], str, str, str]] = []
    for c in CHANGES:
        since = c.since + (" (and " + ", ".join(f"{b}.y" for b in c.backported) + ")"
                           if c.backported else "")
        rows.append((release(c.since), since, c.what, c.why))
    for group, files in FILES.items():
        for f in files:
            where = _where(group, f.name)
            if f.since is not None:
                rows.append((release(f.since), f.since, f"adds {where}", f.why))
            if f.until is not None:
                rows.append((release(f.until), f.until, f"removes {where}", f.why))
    for _, since, what, why in sorted(rows, key=lambda r: r[0]):
        w(f"| {since} | {what} | {why} |")
    w("")
    w("## Files per version, in kernel order")
    w("")
    w("Each list is in the order of the kernel's attribute table. configfs lists a directory")
    w("newest first, so `ls -U` shows the attributes of a group in the reverse of this order.")
    w("")
    for group in FILES:
        w(f"### {_where(group)}")
        w("")
        for n in VERSIONS:
            files = KERNELS[n].files(group)
            w(f"- {n}: " + (" ".join(f"`{f}`" for f in files) if files else "(none)"))
        w("")
    w("## The same in every version")
    w("")
    w("- `rmdir` of an item that a symlink points at is EBUSY, even when it also holds "
      "children (configfs checks links first); `ln -s` in a directory that takes no links "
      "is EPERM even when the target does not exist.")
    w("- A failed `mkdir core/<plugin>_<id>` still uses up an HBA index; iSCSI target "
      "indexes (`scsi_transport/indx`) count from 0 on their own.")
    w("- An ACL queue depth written as 0 reads back 1; `statistics/scsi_lu/vend`, `prod`, "
      "`rev` are padded to 8, 16 and 4 characters.")
    w("- A relative `dbroot` is taken from the writer's working directory.")
    w("")
    w("## v3.0")
    w("")
    w("The seed's engine (`--kernel v3.0`, `--profile v3.0`) is the 2009 tree: see "
      "[profiles.md](profiles.md). It follows the 2009 lio-core-2.6 sources on both sides "
      "of the seed; where they disagree, the one closer to the seed's own log and file "
      "names. What differs from every modern version:")
    w("")
    w("| v3.0 | 2009 source |")
    w("| --- | --- |")
    for r in LEGACY_ROWS:
        if r.source:
            w(f"| {r.what} | {r.source} |")
    w("")
    w("- `core/<hba>/<dev>/`: " + " ".join(f"`{f}`" for f in LEGACY_FILES["dev"]))
    w("- `core/<hba>/<dev>/attrib/`: " + " ".join(f"`{f}`" for f in LEGACY_FILES["dev_attrib"])
      + " (readable and writable only once the device is enabled: ENODEV before)")
    for note in LEGACY_NOTES:
        w(f"- {note}")
    w("")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - the docs generator
    print(render_markdown(), end="")
