"""The target core "module": what ``modprobe target_core_mod`` sets up, and ``target/``.

:class:`TargetCore` holds the module-wide state (HBAs, counters, dbroot, ALUA LU
groups, registered backends) and builds the configfs tree the kernel would show:
``target/{version,dbroot}``, ``target/core/`` and ``target/core/alua/lu_gps/``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from simfs.configfs import Attribute, ConfigfsError, ConfigfsTree, Group, owner
from simfs.klog import KernelLog
from simfs.core.alua import Alua, AluaGroup, TgPtGp
from simfs.core.backend import Backend
from simfs.core.idr import Idr
from simfs.core.hba import HbaGroup, SeHba, parse_hba_name
from simfs.core.kparse import cstr
from simfs.core.profile import Profile
from simfs.core.registry import BackendRegistry, discover_backends

if TYPE_CHECKING:
    from simfs.core.acl import DevEntry
    from simfs.core.lun import SeLun

DB_ROOT_LEN = 4096
#: what transport_subsystem_check_init asks request_module() for at the first HBA mkdir
#: (target_core_transport.c; rd_mcp is part of target_core_mod itself)
SUBSYSTEM_MODULES = ("target_core_iblock", "target_core_file", "target_core_pscsi",
                     "target_core_user")


class CoreEvents:
    """Hooks the SCSI engine fills in (unit attentions ...); metadata files are written here.

    The core calls down into nothing above it: where the kernel's core calls into its
    command-path code (target_core_ua.c, target_core_pr.c, target_core_alua.c), simfs's core
    calls one of these, and the engine (``simfs.scsi.engine``) sets them when it is made.
    Until then they do nothing.
    """

    def __init__(self, core: "TargetCore"):
        self.core = core
        #: a LOGICAL UNIT RESET drops the device's SPC-2 reservation (engine state)
        self.release_spc2_reservation: Callable[[Any], None] = lambda dev: None
        #: target_dev_ua_allocate: a unit attention for every I_T nexus reaching a device
        self.dev_ua_allocate: Callable[[Any, int, int], None] = lambda dev, asc, ascq: None
        #: core_scsi3_ua_allocate: queue (asc, ascq) on one mapping's ``DevEntry.ua_list``
        self.ua_allocate: Callable[["DevEntry", int, int], None] = lambda deve, asc, ascq: None
        #: core_scsi3_check_aptpl_registration: a new mapping (device, LUN, initiator name,
        #: mapped LUN) takes up a waiting APTPL pre-registration
        self.check_aptpl_registration: Callable[[Any, "SeLun", str, int], None] = \
            lambda dev, lun, initiator, mapped_lun: None
        #: core_alua_set_tg_pt_secondary_state(lun, explicit, offline): False when the LUN
        #: cannot make the transition
        self.set_secondary_state: Callable[["SeLun", bool, bool], bool] = \
            lambda lun, explicit, offline: False
        #: the set of iSCSI portals changed (the daemon's iSCSI server listens)
        self.iscsi_portals_changed: Callable[[], None] = lambda: None
        #: where the iSCSI server would listen for a portal address (none without a server):
        #: the fabric checks at np mkdir that those addresses can be bound
        self.iscsi_listen_hosts: Callable[[str], list[str]] = lambda ip: []
        #: a kernel module of the target was loaded (``TargetCore.modules`` grew): the
        #: daemon keeps ``simfs run``'s /proc/modules current
        self.modules_changed: Callable[[], None] = lambda: None

    def alua_state_changed(self, gp: TgPtGp) -> None:
        """A target port group changed state: the engine queues 2Ah/06h unit attentions."""


    def alua_metadata(self, gp: TgPtGp) -> None:
        """alua_write_metadata=1: ``<dbroot>/alua/tpgs_<serial>/<group>`` as the kernel writes it."""
        if not gp.write_metadata or gp.dev is None:
            return
        path = Path(self.core.dbroot) / "alua" / f"tpgs_{gp.dev.wwn.unit_serial}" / gp.name
        text = (f"tg_pt_gp_id={gp.id}\nalua_access_state=0x{gp.access_state:02x}\n"
                f"alua_access_status=0x{gp.access_status:02x}\n")
        try:
            # Like the kernel, never create tpgs_<serial>/: it must exist already.
            atomic_write(path, text.encode())
        except OSError:
            self.core.log.err(f"filp_open({path}) for ALUA metadata failed")


def atomic_write(path: Path, data: bytes, mode: int = 0o600, mkdirs: bool = False) -> None:
    """Write, fsync, rename, fsync the directory: a reader, a crash or a power loss sees the
    old file or the new one, never half of one."""
    if mkdirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


class TargetCore:
    """The state of one simulated target_core_mod, and its configfs tree."""

    def __init__(self, profile: Profile, log: Optional[KernelLog] = None,
                 state_dir: Optional[Path] = None, dbroot: Optional[str] = None,
                 backends: Optional[Iterable[Backend]] = None):
        self.profile = profile
        self.log = log or KernelLog()
        self.state_dir = Path(state_dir) if state_dir else None
        self.events = CoreEvents(self)
        #: the configfs tree's lock (the tree adopts it): every entry point serialises on
        #: it, and a writer that sleeps releases it
        self.tree_lock = threading.RLock()
        #: the SCSI engine serving this core (made by the daemon or the first fabric that
        #: needs one); declared here so no layer attaches it
        self.engine: Any = None
        #: tpg_xa (6.3+): every enabled TPG's relative target port id, across fabrics
        self.tpg_rtpis = Idr()
        #: fabric modules loaded so far (they stay loaded after rmdir, like modules)
        self.fabric_modules: dict[str, Any] = {}
        #: the fabric plugins this kernel version has, by configfs name (found once)
        self.fabric_plugins: Optional[dict[str, Any]] = None
        #: the kernel modules of the target loaded so far, oldest first: target_core_mod,
        #: then what request_module() or a modprobe brought (fabric and backend modules)
        self.modules: list[str] = ["target_core_mod"]
        #: the machine's hardware fabric ports, {fabric: [port]} (``--wwn``)
        self.hardware_ports: dict[str, list[str]] = {}
        self._writer_pid: Callable[[], int] = lambda: 0
        self.warned_once: set[str] = set()
        self.hbas: dict[str, SeHba] = {}
        self.hba_id_counter = 0
        self.scsi_index: dict[str, int] = {}
        self.dev_index_next = 0
        self.used_dev_indexes: set[int] = set()
        self.target_devices = 0
        sysname, machine, release = profile.uname()
        engine = profile.engine_version
        self.log.info(f"TARGET_CORE[0]: Loading Generic Kernel Storage Engine: {engine} on "
                      f"{sysname}/{machine} on {release}")
        self.dbroot = dbroot or self._default_dbroot()
        #: dbroot as last written (the kernel shows a relative path as written)
        self.dbroot_text: Optional[str] = None
        initialized = (f"TARGET_CORE[0]: Initialized ConfigFS Fabric Infrastructure: "
                       f"{profile.fabric_version} on {sysname}/{machine} on {release}")
        if profile.legacy:
            # v3.0's init_module set up configfs before it registered any plugin
            self.log.info(initialized)
        self.registry = BackendRegistry(
            discover_backends() if backends is None else backends, profile, self.log)
        self.alua = Alua(self)
        if not profile.legacy:
            self.log.info(initialized)
            self.registry.register_builtin()  # rd_module_init, after the line above
            self._setup_virtual_lun0()

    # -- module-wide helpers ----------------------------------------------------------------
    def _default_dbroot(self) -> str:
        """simfs keeps what the kernel keeps under /var/target in its own state directory."""
        if self.state_dir is None:
            return "/var/target"
        path = self.state_dir / "var" / "target"
        # what a distribution's package would install: dbroot with its pr/ and alua/
        for sub in ("pr", "alua"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return str(path)

    def next_scsi_index(self, kind: str) -> int:
        """scsi_get_new_index: per-kind SCSI-MIB indexes, starting at 1."""
        self.scsi_index[kind] = self.scsi_index.get(kind, 0) + 1
        return self.scsi_index[kind]

    def alloc_dev_index(self) -> int:
        """A cyclic id, from 0, global across HBAs (the kernel's devices_idr)."""
        while self.dev_index_next in self.used_dev_indexes:
            self.dev_index_next = (self.dev_index_next + 1) & 0x7FFFFFFF
        index = self.dev_index_next
        self.used_dev_indexes.add(index)
        self.dev_index_next = (index + 1) & 0x7FFFFFFF
        return index

    def free_dev_index(self, index: int) -> None:
        self.used_dev_indexes.discard(index)

    def writer_pid(self) -> int:
        return self._writer_pid()

    # -- kernel modules -----------------------------------------------------------------------
    def module_loaded(self, *names: str) -> None:
        """Kernel modules of the target loaded now (a fabric's, a backend's): they stay
        loaded, and /proc/modules lists them."""
        new = [n for n in names if n not in self.modules]
        if new:
            self.modules.extend(new)
            self.registry.modules_loaded(new)
            self.events.modules_changed()

    def subsystem_check_init(self) -> None:
        """transport_subsystem_check_init: the first HBA mkdir loads the backend modules."""
        self.backend_modules_loaded(*SUBSYSTEM_MODULES)

    def backend_modules_loaded(self, *names: str) -> None:
        """Backend modules loaded now (all four at the first HBA, or one by ``modprobe``);
        the 2009 engine had its backends inside target_core_mod."""
        if not self.profile.legacy:
            self.module_loaded(*(n for n in names if n in SUBSYSTEM_MODULES))

    # -- HBAs -------------------------------------------------------------------------------------
    @property
    def kernel(self) -> Profile:
        """The kernel version this core plays (simfs.core.kernels): ``core.kernel.has(...)``."""
        return self.profile

    def alloc_hba(self, name: str, plugin: str, host_id: int, internal: bool = False) -> SeHba:
        # core_alloc_hba takes the SCSI-MIB index before it looks the plugin up, so a
        # mkdir that names no plugin still uses one up.
        hba_index = None if self.profile.legacy else self.next_scsi_index("inst")
        backend = self.registry.get(plugin)
        if backend is None:
            raise ConfigfsError(errno.EINVAL, f"Target_Core_ConfigFS: Unable to locate backend "
                                f"plugin {plugin!r} for {name} (known: "
                                f"{', '.join(sorted(self.registry.backends))})")
        hba = SeHba(self, name, backend, host_id, hba_index)
        hba.internal = internal
        if self.profile.legacy:
            # The v3.0 engine numbered the HBA first and printed its plugin lookup.
            hba.hba_id = self.hba_id_counter
            self.hba_id_counter += 1
            self.log.info(f"Target_Core_ConfigFS: Located se_plugin: {self.profile.kptr(backend)}"
                          f" plugin_name: {plugin} hba_type: {backend.v3_hba_type} "
                          f"plugin_dep_id: {host_id}")
            backend.attach_hba(hba)
        else:
            backend.attach_hba(hba)  # its banner still sees hba_id 0: the kernel's order
            hba.hba_id = self.hba_id_counter
            self.hba_id_counter += 1
        self.log.debug(f"CORE_HBA[{hba.hba_id}] - Attached HBA to Generic Target Core")
        if not internal:
            self.hbas[name] = hba
        return hba

    def delete_hba(self, hba: SeHba) -> None:
        hba.backend.detach_hba(hba)
        self.hbas.pop(hba.name, None)
        self.log.debug(f"CORE_HBA[{hba.hba_id}] - Detached HBA from Generic Target Core")

    def _setup_virtual_lun0(self) -> None:
        """The internal rd_mcp HBA and read-only LUN 0 device made at module load."""
        from simfs.core.device import SeDevice
        if self.registry.get("rd_mcp") is None:
            return
        hba = self.alloc_hba("rd_mcp_0", "rd_mcp", 0, internal=True)
        dev = SeDevice(hba, "virt_lun0")
        if self.kernel.has("rd_dummy"):
            dev.bdev.set_configfs_dev_params(b"rd_pages=8,rd_nullio=1,rd_dummy=1")
        else:
            dev.bdev.set_configfs_dev_params(b"rd_pages=8,rd_nullio=1")
            # before 5.13 spc_emulate_inquiry answered 0x3f (not connected) for the virtual
            # LUN 0 itself: the same answer as the dummy flag gives it later
            dev.bdev.dummy = True
        dev.configure()
        dev.read_only = True
        self.lun0_hba, self.lun0_dev = hba, dev

    # -- the tree -------------------------------------------------------------------------------
    def build_tree(self) -> ConfigfsTree:
        root = Group("")
        target = root.add_default_group(TargetGroup(self))
        tree = ConfigfsTree(root, self.log.err, lock=self.tree_lock)
        self._writer_pid = lambda: tree.writer_pid
        self.tree = tree
        self.target_group = target
        return tree

    def shutdown(self) -> None:
        """Unmount: close every device's storage (rmdir order: devices, then HBAs)."""
        for hba in list(self.hbas.values()):
            for dev in list(hba.devices.values()):
                try:
                    dev.free()
                except Exception as e:  # noqa: BLE001 - keep closing the rest
                    self.log.err(f"simfs: closing {dev.path()} failed: {e}")
        if hasattr(self, "lun0_dev"):
            self.lun0_dev.free()


# -- target/ ------------------------------------------------------------------------------------
def _core(g: Group) -> TargetCore:
    return owner(g, TargetGroup).core


def _show_version(g: Group) -> str:
    core = _core(g)
    sysname, machine, release = core.profile.uname()
    return (f"Target Engine Core ConfigFS Infrastructure {core.profile.configfs_version} on "
            f"{sysname}/{machine} on {release}\n")


def _show_dbroot(g: Group) -> str:
    core = _core(g)
    return f"{core.dbroot_text or core.dbroot}\n"


def _dbroot_busy(core: TargetCore) -> Optional[str]:
    """Why dbroot cannot change now: devices exist (5.19+), or any fabric is loaded (before)."""
    if core.kernel.value("dbroot_busy") == "devices":
        return "db_root: cannot be changed because it's in use" if core.target_devices else None
    from simfs.core.fabric import fabric_modules
    return "db_root: cannot be changed: target drivers registered" if fabric_modules(core) \
        else None


def _writer_path(core: TargetCore, path: str) -> str:
    """``path`` as the writer's own open would see it: relative to the writer's cwd."""
    if os.path.isabs(path):
        return path
    try:
        cwd = os.readlink(f"/proc/{core.writer_pid()}/cwd")
    except OSError:
        cwd = "/"
    return os.path.join(cwd, path)


def _store_dbroot(g: Group, buf: bytes) -> int:
    core = _core(g)
    busy = _dbroot_busy(core)
    if busy:
        raise ConfigfsError(errno.EINVAL, busy)
    if len(buf) > DB_ROOT_LEN - 1:
        raise ConfigfsError(errno.EINVAL, f"db_root: count {len(buf)} exceeds DB_ROOT_LEN-1: "
                            f"{DB_ROOT_LEN - 1}")
    stage = cstr(buf)
    read_bytes = len(stage)
    if not read_bytes:
        raise ConfigfsError(errno.EINVAL, "db_root: empty path")
    if stage.endswith("\n"):
        stage = stage[:-1]
    real = _writer_path(core, stage)
    if core.kernel.value("dbroot_check") == "kern_path":
        # kern_path(LOOKUP_FOLLOW | LOOKUP_DIRECTORY): its errno reaches the writer.
        try:
            if not stage:
                raise FileNotFoundError(errno.ENOENT, "empty path")  # kern_path("")
            st = os.stat(real)
        except OSError as e:
            raise ConfigfsError(e.errno, f"db_root: cannot open: {stage}") from None
        if not stat.S_ISDIR(st.st_mode):
            core.log.err(f"db_root: cannot open: {stage}")
            raise ConfigfsError(errno.ENOTDIR, f"db_root: not a directory: {stage}")
    else:
        # filp_open(O_RDONLY), then S_ISDIR: every failure is EINVAL.
        try:
            fd = os.open(real, os.O_RDONLY)
        except OSError:
            raise ConfigfsError(errno.EINVAL, f"db_root: cannot open: {stage}") from None
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise ConfigfsError(errno.EINVAL, f"db_root: not a directory: {stage}")
        finally:
            os.close(fd)
    # The kernel keeps the text as written; simfs's own files go where it pointed.
    core.dbroot = real
    core.dbroot_text = stage
    core.log.debug(f"Target_Core_ConfigFS: db_root set to {stage}")
    return read_bytes


TARGET_ATTRS = (
    Attribute("version", _show_version),
    Attribute("dbroot", _show_dbroot, _store_dbroot),
)
V3_TARGET_ATTRS = (Attribute("version", _show_version),)


class CoreGroup(Group):
    """``target/core``: mkdir ``<plugin>_<id>`` makes an HBA."""

    __slots__ = ("core",)

    def __init__(self, core: TargetCore):
        super().__init__("core")
        self.core = core
        self.add_default_group(AluaGroup(core))

    def make_group(self, name: str) -> Group:
        plugin, host_id = parse_hba_name(self.core, name)
        self.core.subsystem_check_init()  # after the name parsed, before the plugin lookup
        return HbaGroup(self.core.alloc_hba(name, plugin, host_id))


class TargetGroup(Group):
    """``target/``: version, dbroot, core/, and (fabrics issue) one directory per fabric."""

    __slots__ = ("core",)

    def __init__(self, core: TargetCore):
        super().__init__("target")
        self.core = core
        self.add_default_group(CoreGroup(core))

    def attribute_table(self):
        return V3_TARGET_ATTRS if self.core.profile.legacy else TARGET_ATTRS

    def make_group(self, name: str) -> Group:
        self.core.log.debug(f"Target_Core_ConfigFS: REGISTER -> group: "
                            f"{self.core.profile.kptr(self)} name: {name}")
        from simfs.core.fabric import make_fabric_group
        return make_fabric_group(self.core, name)
