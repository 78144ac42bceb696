"""The backend (storage plugin) interface, modelled on the kernel's target_backend_ops.

A backend plugin is one module under ``simfs_plugins.backends`` (or another package
declaring the ``simfs.backends`` entry point) that defines ``BACKEND``, an instance of
a :class:`Backend` subclass. The core never imports a backend by name.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from simfs.configfs import Attribute, ConfigfsError

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.core.hba import SeHba
    from simfs.core.storage import FdStorage

# transport_flags (target_core_backend.h)
TRANSPORT_FLAG_PASSTHROUGH = 0x1
TRANSPORT_FLAG_PASSTHROUGH_ALUA = 0x2
TRANSPORT_FLAG_PASSTHROUGH_PGR = 0x4

TYPE_DISK = 0x00
TYPE_NO_LUN = 0x7F

#: What :meth:`BackendDevice.handle_cmd` returns for a command it leaves to the engine.
NOT_HANDLED = object()


@dataclass(frozen=True)
class ExecOps:
    """Which data-path handlers a backend has: the ``exec_cmd_ops`` a kernel backend hands
    to sbc_parse_cdb. Without ``unmap``/``write_same`` those commands are refused (and left
    out of REPORT SUPPORTED OPERATION CODES); without ``sync_cache`` SYNCHRONIZE CACHE does
    nothing."""

    rw: bool = True
    sync_cache: bool = False
    write_same: bool = False
    unmap: bool = False


#: execute_rw, execute_sync_cache, execute_write_same and execute_unmap
ALL_EXEC_OPS = ExecOps(rw=True, sync_cache=True, write_same=True, unmap=True)


class Backend:
    """One storage plugin: what the kernel's ``target_backend_ops`` says about it."""

    #: The plugin name used in ``core/<name>_<id>``.
    name = ""
    #: INQUIRY product and revision defaults ("" where the device supplies them).
    inquiry_prod = ""
    inquiry_rev = ""
    #: Which attrib/ list the device gets: "sbc" (emulated) or "passthrough".
    attrib_list = "sbc"
    #: Extra attrib/ attributes (TCMU's), appended to the list above.
    extra_attrib_attrs: Sequence[Attribute] = ()
    #: attributes of the device's action/ group (TCMU's).
    action_attrs: Sequence[Attribute] = ()
    transport_flags_default = 0
    transport_flags_changeable = 0
    #: Profiles that have this plugin ("modern", "v3.0").
    profiles = frozenset({"modern", "v3.0"})
    #: The kernel module that registers this backend when it loads (at the first HBA
    #: mkdir, transport_subsystem_check_init); "" for one built into target_core_mod
    #: (rd_mcp) or from outside the kernel, registered with the core.
    kernel_module = ""
    #: The v3.0-era plugin type number (PLUGIN_TRANSPORT[n]); 0 when it did not exist then.
    v3_hba_type = 0
    #: The v3.0 banner name ("iBlock", "FILEIO", ...), used in v3.0 log lines.
    v3_banner = ""

    def flags_changeable(self, kernel) -> int:
        """transport_flags_changeable in ``kernel`` (a backend may differ between versions)."""
        return self.transport_flags_changeable

    def attach_hba(self, hba: "SeHba") -> None:
        """Called when ``core/<name>_<id>`` is made: print the backend's banner."""

    def detach_hba(self, hba: "SeHba") -> None:
        """Called when the HBA is removed."""

    def alloc_device(self, dev: "SeDevice") -> "BackendDevice":
        raise NotImplementedError

    def has_pmode(self) -> bool:
        return type(self).pmode_enable_hba is not Backend.pmode_enable_hba

    def pmode_enable_hba(self, hba: "SeHba", flag: int) -> int:
        raise ConfigfsError(errno.EINVAL)


class BackendDevice:
    """One backstore object of a backend (the kernel's per-backend ``*_dev``).

    What the SCSI engine may ask of it is declared here: the data path (``read``,
    ``write``, ``flush``, ``unmap``), which of those exist (``exec_ops``), the largest
    single I/O, the logical-block geometry, and the log lines its failures produce (each
    kernel backend logs its own). The engine never asks which backend it is.
    """

    #: the data-path handlers this backend has
    exec_ops: ExecOps = ExecOps()
    #: the largest single READ/WRITE in bytes, None for no limit
    max_io_bytes: Optional[int] = None
    #: WRITE SAME without a payload is INVALID FIELD IN CDB (the handler needs a data SGL)
    write_same_needs_payload = False

    def __init__(self, dev: "SeDevice"):
        self.dev = dev

    @property
    def log(self):
        return self.dev.core.log

    # -- control plane --------------------------------------------------------------
    def set_configfs_dev_params(self, buf: bytes) -> None:
        """Apply a write to ``control``."""

    def show_configfs_dev_params(self) -> str:
        """The backend text at the end of ``info``."""
        return "\n"

    def configure_device(self) -> None:
        """Open the storage and set hw_* attributes; raise ConfigfsError to refuse enable."""
        raise ConfigfsError(errno.EINVAL)

    def destroy_device(self) -> None:
        """Close whatever configure_device opened (rmdir of the device)."""

    def free_device(self) -> None:
        """Release what alloc_device made."""

    def get_blocks(self) -> int:
        """The last LBA, in units of the device's current block_size."""
        return 0

    def get_device_type(self) -> int:
        return TYPE_DISK

    def configure_unmap(self) -> bool:
        """Fill the unmap attributes from the storage; False when it cannot discard."""
        return False

    def has_configure_unmap(self) -> bool:
        return type(self).configure_unmap is not BackendDevice.configure_unmap

    def get_write_cache(self) -> Optional[bool]:
        """The storage's own write cache state, for backends that have one (iblock)."""
        return None

    def has_get_write_cache(self) -> bool:
        return type(self).get_write_cache is not BackendDevice.get_write_cache

    # -- T10-PI (the kernel's init_prot / free_prot / format_prot) -----------------------
    def init_prot(self) -> None:
        """Set up protection information storage; raise ConfigfsError to refuse."""
        raise NotImplementedError

    def free_prot(self) -> None:
        """Drop what init_prot set up."""

    def format_prot(self) -> None:
        """Fill the protection information with its escape value (all 0xff)."""
        raise NotImplementedError

    def has_prot(self) -> bool:
        """Whether pi_prot_type can be set (the backend has init_prot and free_prot)."""
        return type(self).init_prot is not BackendDevice.init_prot

    def has_format_prot(self) -> bool:
        return type(self).format_prot is not BackendDevice.format_prot

    def legacy_activation(self) -> tuple[str, Optional[str]]:
        """v3.0's "Activating Device ..." line and its closing "Added ..." line (or None)."""
        return (f"CORE_{self.dev.backend.name.upper()}[{self.dev.hba.host_id}] - Activating "
                "Device with TCQ: 0", None)

    def legacy_release(self) -> Optional[str]:
        """v3.0's release_phydevice line for a block device the plugin claimed, or None."""
        return None

    def attach_fd(self, fd_path: str, fd_num: int) -> None:
        """The v3.0 ``fd`` attribute: take storage from a descriptor of the writer."""
        raise ConfigfsError(errno.EINVAL,
                            f"{self.dev.backend.name}: cannot take a file descriptor")

    # -- data path -------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        raise ConfigfsError(errno.EIO)

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        raise ConfigfsError(errno.EIO)

    def flush(self) -> None:
        pass

    def unmap(self, offset: int, length: int) -> None:
        pass

    # -- geometry (target_backend_ops get_lbppbe / get_alignment_offset_lbas) ----------
    def get_lbppbe(self) -> int:
        """log2(physical / logical block size) for READ CAPACITY(16); 0 when unknown."""
        return 0

    def get_alignment_offset_lbas(self) -> int:
        """The lowest aligned LBA for READ CAPACITY(16); 0 when unknown."""
        return 0

    # -- how failures are logged (each kernel backend's execute_* says it its own way) ------
    def log_io_too_large(self, length: int) -> None:
        """A READ/WRITE above ``max_io_bytes`` is refused: say why."""
        self.log.err(f"{self.dev.backend.name}: I/O of {length} bytes exceeds "
                     f"{self.max_io_bytes}")

    def log_rw_error(self, write: bool, err: int, nbytes: int, exc: Exception) -> None:
        """A read or write of ``nbytes`` failed with -``err``."""
        self.log.err(f"{self.dev.backend.name}: {'write' if write else 'read'} returned {err}")

    def log_flush_error(self, err: int) -> None:
        self.log.err(f"{self.dev.backend.name}: cache flush failed: {err}")

    def log_discard_error(self, err: int) -> None:
        self.log.err(f"blkdev_issue_discard() failed: {err}")

    def log_write_same_error(self, err: int) -> None:
        """A WRITE SAME's write failed (some backends say nothing)."""

    # -- user space (TCMU): whole CDBs -------------------------------------------------------
    def handle_cmd(self, cmd):
        """A passthrough backend whose commands a user-space program serves (TCMU) gets each
        command the kernel would pass up (all but REPORT LUNS and the emulated PR and ALUA
        ones), after the unit-attention, ALUA and reservation checks: return the data-in bytes
        (b"" for none), raise ``simfs.scsi.sense.SenseError``/``StatusError``, or return
        :data:`NOT_HANDLED` to let the engine emulate it."""
        return NOT_HANDLED

    def has_handle_cmd(self) -> bool:
        return type(self).handle_cmd is not BackendDevice.handle_cmd

    # -- shared persistent reservations (a simfs extension) ----------------------------------
    def pr_store(self):
        """Where the device's SPC-3 reservation state lives when several nodes share it:
        an object with ``load()`` and ``store(version, blob)`` (see simfs.scsi.pr_store), or
        None, LIO's way: the state stays in this node's memory."""
        return None

    def describe_storage(self) -> str:
        """A one-line description of the backing storage (for simfs's own tools)."""
        return ""


class StorageDevice(BackendDevice):
    """A backend device whose blocks live behind a file descriptor (a file or a block
    device): ``storage`` is set when the device is configured, and the data path is the
    storage's (simfs.core.storage.FdStorage). What differs per backend (geometry, limits,
    failure log lines) stays in the subclass."""

    def __init__(self, dev: "SeDevice"):
        super().__init__(dev)
        self.storage: Optional["FdStorage"] = None

    def _fd(self) -> "FdStorage":
        assert self.storage is not None, "the data path runs on a configured device only"
        return self.storage

    def read(self, offset: int, length: int) -> bytes:
        return self._fd().read(offset, length)

    def readinto(self, offset: int, view: memoryview) -> None:
        self._fd().readinto(offset, view)

    def write(self, offset: int, data, fua: bool = False) -> None:
        self._fd().write(offset, data, fua)

    def flush(self) -> None:
        self._fd().flush()

    def unmap(self, offset: int, length: int) -> None:
        self._fd().unmap(offset, length)
