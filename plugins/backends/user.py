"""user: TCMU, backstores whose commands a userspace handler serves (target_core_user.c).

The control plane is the kernel's: tokens, attrib/ and action/ files, and enable. The user
space half is tcmu-runner's, played in the daemon: enabling a device "sends ADDED_DEVICE" to
an in-process runner, which picks the handler named by dev_config's first part
(simfs_plugins.handlers, entry point group ``simfs.handlers``), checks the cfgstring and opens
it; any failure fails the enable with ENOENT, as the kernel reports the runner's reply.
Commands then go to the handler (``handle_cmd`` first when it has one), the engine emulating
the rest through the handler's read/write/flush/unmap. ``nl_reply_supported=-1`` makes enable
not wait for the runner, as in the kernel.
"""

from __future__ import annotations

import errno

from simfs.configfs import Attribute, ConfigfsError
from simfs.core.backend import NOT_HANDLED, TRANSPORT_FLAG_PASSTHROUGH, ExecOps, \
    TRANSPORT_FLAG_PASSTHROUGH_ALUA, TRANSPORT_FLAG_PASSTHROUGH_PGR, Backend, BackendDevice
from simfs.core.dev_attrib import PASSTHROUGH_PR_ATTRIB_ATTRS
from simfs.core.kparse import (Token, cstr, kstrtoint, kstrtou8, kstrtou16, kstrtou32,
                                 kstrtoull, match_int, match_u64, tokenize)
from simfs.scsi import status as S
from simfs.scsi import vpd
from simfs.scsi.sense import SenseError, StatusError
from simfs_plugins.handlers import (STATUS_SENSE, Cmd, Device, HandlerError, Log, Status,
                                    discover_handlers)

PAGE_SIZE = 4096
TCMU_TIME_OUT = 30 * 1000
DATA_AREA_PAGES_DEF = 256 * 1024
TCMU_GLOBAL_MAX_PAGES_DEF = 512 * 1024
CMDR_SIZE_DEF_MB = 8
TCMU_CONFIG_LEN = 256

TOKENS = [Token("dev_config", "dev_config=%s"), Token("dev_size", "dev_size=%s"),
          Token("hw_block_size", "hw_block_size=%d"), Token("hw_max_sectors", "hw_max_sectors=%d"),
          Token("nl_reply_supported", "nl_reply_supported=%d"),
          Token("max_data_area_mb", "max_data_area_mb=%d"),
          Token("data_pages_per_blk", "data_pages_per_blk=%d"),
          Token("cmd_ring_size_mb", "cmd_ring_size_mb=%d")]


def _mb_to_pages(mb: int) -> int:
    return mb * (1024 * 1024 // PAGE_SIZE)


# -- the user-space half: tcmu-runner's device add/remove and command completion ---------------
#: tcmu-runner's standard INQUIRY identity (what initiators see; configfs keeps USER / 2.0)
RUNNER_PRODUCT, RUNNER_REVISION = b"TCMU device     ", b"0002"
#: commands that never see a pending runner unit attention (tcmu-runner handle_pending_ua)
_UA_EXEMPT = frozenset({S.INQUIRY, S.REQUEST_SENSE})


def runner_log(core, level: str, msg: str) -> None:
    """A line of the user-space runner: in the mount's log, marked ``tcmu-runner:``."""
    getattr(core.log, level)(f"tcmu-runner: {msg}")


def _uio_minor(core) -> int:
    """The lowest free UIO minor of this instance (uio_register_device)."""
    used = core.__dict__.setdefault("tcmu_uio_minors", set())
    minor = 0
    while minor in used:
        minor += 1
    used.add(minor)
    return minor


def _announce_runner(core) -> None:
    """tcmu-runner tells the module at start that it replies to netlink commands."""
    if not core.__dict__.get("tcmu_runner_up"):
        core.tcmu_runner_up = True
        core.log.info("tcmu daemon: command reply support 1.")


def to_scsi(e: BaseException, op: str, log) -> Exception:
    """What a handler's exception becomes: SenseError or StatusError (tcmu_sts_to_scsi)."""
    if isinstance(e, HandlerError):
        status, key, asc, ascq = STATUS_SENSE[e.status]
        if status == S.CHECK_CONDITION:
            return SenseError(key, asc, ascq, e.info, why=str(e))
        return StatusError(status, why=str(e))
    if isinstance(e, OSError):
        return to_scsi(HandlerError(Status.RD_ERR if op == "read" else Status.WR_ERR), op, log)
    log(f"handler {op} raised {type(e).__name__}: {e}")
    # an unknown completion: the kernel fails the command with LUN COMMUNICATION FAILURE
    return SenseError(S.NOT_READY, 0x08, 0x00)


class _RunnerPrStore:
    """A handler's PR store as the engine meets it: failures become SenseError/StatusError
    (loading as a read, storing as a write)."""

    def __init__(self, tdev: "TcmuDevice", store):
        self._tdev, self.inner = tdev, store

    def _call(self, op: str, call):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - every failure becomes status and sense
            raise to_scsi(e, op, lambda m: runner_log(self._tdev.dev.core, "err", m)) from None

    def load(self):
        return self._call("read", self.inner.load)

    def store(self, version, blob: bytes) -> bool:
        return self._call("write", lambda: self.inner.store(version, blob))


class TcmuDevice(BackendDevice):
    def __init__(self, dev):
        super().__init__(dev)
        self.dev_config = ""
        self.dev_size = 0
        self.cmd_time_out = TCMU_TIME_OUT
        self.qfull_time_out = -1
        self.data_pages_per_blk = 1
        self.data_area_mb = DATA_AREA_PAGES_DEF * PAGE_SIZE >> 20
        self.cmd_ring_size_mb = CMDR_SIZE_DEF_MB
        self.nl_reply_supported = 0
        self.tmr_notification = 0
        self.blocked = False
        self.enabled = False
        self.uio = -1
        self.handler = None  # the runner's handler while the device is open
        self.rdev: Device | None = None
        self.pending_capacity_ua = False
        self._pr_store: _RunnerPrStore | None = None

    def _int(self, arg: str, what: str) -> int:
        try:
            return match_int(arg)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, f"match_int() failed for {what}. Error -{e.errno}.") \
                from None

    def set_configfs_dev_params(self, buf: bytes) -> None:
        log, a = self.log, self.dev.attrib
        global_max_mb = TCMU_GLOBAL_MAX_PAGES_DEF * PAGE_SIZE >> 20
        for key, arg, _ in tokenize(buf, TOKENS):
            if key == "dev_config":
                value = arg[:TCMU_CONFIG_LEN - 1]
                if not value:
                    raise ConfigfsError(errno.EINVAL, "TCMU: empty dev_config=")
                self.dev_config = value
                log.debug(f"TCMU: Referencing Path: {value}")
            elif key == "dev_size":
                try:
                    self.dev_size = match_u64(arg)
                except ConfigfsError as e:
                    raise ConfigfsError(e.errno, f"match_u64() failed for dev_size=. Error "
                                        f"-{e.errno}.") from None
            elif key in ("hw_block_size", "hw_max_sectors"):
                value = self._int(arg, "dev attrib")
                if value <= 0:
                    raise ConfigfsError(errno.EINVAL, f"Invalid dev attrib value {value}. Must be "
                                        "greater than zero.")
                setattr(a, key, value)
            elif key == "nl_reply_supported":
                self.nl_reply_supported = self._int(arg, "nl_reply_supported=")
            elif key == "max_data_area_mb":
                value = self._int(arg, "max_data_area_mb=")
                if self.enabled:
                    raise ConfigfsError(errno.EINVAL,
                                        "Cannot set max_data_area_mb after it has been enabled.")
                if value <= 0:
                    raise ConfigfsError(errno.EINVAL, f"Invalid max_data_area {value}.")
                if value > global_max_mb:
                    log.err(f"{value} is too large. Adjusting max_data_area_mb to global limit "
                            f"of {global_max_mb}")
                    value = global_max_mb
                if _mb_to_pages(value) < self.data_pages_per_blk:
                    raise ConfigfsError(errno.EINVAL, f"Invalid max_data_area {value} "
                                        f"({_mb_to_pages(value)} pages): smaller than "
                                        f"data_pages_per_blk ({self.data_pages_per_blk} pages).")
                self.data_area_mb = value
            elif key == "data_pages_per_blk":
                value = self._int(arg, "data_pages_per_blk=")
                if self.enabled:
                    raise ConfigfsError(errno.EINVAL,
                                        "Cannot set data_pages_per_blk after it has been enabled.")
                if value > _mb_to_pages(self.data_area_mb):
                    raise ConfigfsError(errno.EINVAL, f"Invalid data_pages_per_blk {value}: "
                                        f"greater than max_data_area_mb {self.data_area_mb} -> "
                                        f"{_mb_to_pages(self.data_area_mb)} pages).")
                self.data_pages_per_blk = value
            elif key == "cmd_ring_size_mb":
                value = self._int(arg, "cmd_ring_size_mb=")
                if self.enabled:
                    raise ConfigfsError(errno.EINVAL,
                                        "Cannot set cmd_ring_size_mb after it has been enabled.")
                if value <= 0:
                    raise ConfigfsError(errno.EINVAL, f"Invalid cmd_ring_size_mb {value}.")
                if value > CMDR_SIZE_DEF_MB:
                    log.err(f"{value} is too large. Adjusting cmd_ring_size_mb to global limit "
                            f"of {CMDR_SIZE_DEF_MB}")
                    value = CMDR_SIZE_DEF_MB
                self.cmd_ring_size_mb = value

    # -- enable: the kernel's configure, then the runner's add_device -----------------------
    @property
    def uio_name(self) -> str:
        name = f"tcm-user/{self.dev.hba.host_id}/{self.dev.name}"
        return f"{name}/{self.dev_config}" if self.dev_config else name

    def configure_device(self) -> None:
        a, core = self.dev.attrib, self.dev.core
        _announce_runner(core)
        self.uio = _uio_minor(core)
        # what a refused enable puts back (the kernel keeps these; simfs's rule is that a
        # failed write changes nothing)
        saved = (a.hw_block_size, a.hw_max_sectors, a.hw_queue_depth, self.nl_reply_supported,
                 a.emulate_tpu, a.emulate_tpws, a.max_write_same_len)
        a.hw_block_size = a.hw_block_size or 512
        a.hw_max_sectors = a.hw_max_sectors or 128
        a.hw_queue_depth = 128
        if self.nl_reply_supported >= 0:
            self.nl_reply_supported = 1  # the runner announced reply support
        if self.nl_reply_supported > 0:
            self.log.debug("sleeping for nl reply")
        err = self._runner_add()
        if err and self.nl_reply_supported > 0:
            core.tcmu_uio_minors.discard(self.uio)
            self.uio = -1
            (a.hw_block_size, a.hw_max_sectors, a.hw_queue_depth, self.nl_reply_supported,
             a.emulate_tpu, a.emulate_tpws, a.max_write_same_len) = saved
            raise ConfigfsError(err, None)  # the kernel logs nothing more; the runner did
        self.enabled = True

    def _runner_add(self) -> int:
        """tcmu-runner's add_device + dev_added: 0, or the errno it replies (-ENOENT)."""
        core, uio = self.dev.core, f"uio{self.uio}"
        rlog = lambda msg: runner_log(core, "err", msg)  # noqa: E731
        cfg = self.dev_config
        if not cfg:
            rlog("invalid cfgstring")
            return errno.ENOENT
        handler = discover_handlers().get(cfg.partition("/")[0])
        if handler is None:
            rlog(f"could not find handler for {uio}")
            return errno.ENOENT
        reason = handler.check_config(cfg)
        if reason is not None:
            rlog(f"check_config failed for {uio} because of {reason}")
            return errno.ENOENT
        a = self.dev.attrib
        rdev = Device(cfgstring=cfg, hba=self.dev.hba.name, name=self.dev.name, uio=uio,
                      block_size=a.hw_block_size, num_lbas=self.dev_size // a.hw_block_size,
                      max_xfer_len=a.hw_max_sectors,
                      log=Log(lambda lvl, m: runner_log(core, lvl, m),
                              f"{handler.subtype}/{self.dev.name}: "))
        try:
            handler.open(rdev)
        except Exception:  # noqa: BLE001 - the handler said why in its own log lines
            rlog(f"handler open failed for {uio}")
            return errno.ENOENT
        self.handler, self.rdev = handler, rdev
        a.max_write_same_len = 0x1000  # the runner emulates WRITE SAME with write()
        if handler.unmap is not None:
            # thin provisioning is the runner's to announce (VPD B2 from handler->unmap)
            a.emulate_tpu = a.emulate_tpws = 1
        return 0

    def destroy_device(self) -> None:
        """rmdir: REMOVED_DEVICE; the runner closes the handler."""
        if self.handler is not None:
            try:
                self.handler.close(self.rdev)
            except Exception as e:  # noqa: BLE001 - removal goes on, as tcmu-runner's does
                runner_log(self.dev.core, "err", f"handler close failed for uio{self.uio}: {e}")
            self.handler = self.rdev = None
        if self.uio >= 0:
            self.dev.core.tcmu_uio_minors.discard(self.uio)
            self.uio = -1

    def reconfig(self, key: str, value) -> None:
        """RECONFIG_DEVICE for an enabled device (dev_config, dev_size, emulate_write_cache
        stored through attrib/): the runner asks the handler; a refusal fails the store."""
        if not self.enabled or self.nl_reply_supported <= 0:
            return
        h, rdev = self.handler, self.rdev
        err = 0
        if h is None or h.reconfig is None:
            err = errno.EOPNOTSUPP
        elif key == "dev_size" and value // rdev.block_size == rdev.num_lbas:
            return  # tcmu-runner's dev_resize: same size, nothing to do
        else:
            try:
                h.reconfig(rdev, key, value)
            except HandlerError:
                err = errno.EIO
            except OSError as e:
                err = e.errno or errno.EIO
            except Exception:  # noqa: BLE001
                err = errno.EIO
        if err:
            raise ConfigfsError(err, "Unable to reconfigure device")
        if key == "dev_size":
            rdev.num_lbas = value // rdev.block_size
            self.pending_capacity_ua = True
        elif key == "dev_config":
            rdev.cfgstring = value

    def pr_store(self):
        """The handler's shared PR store for this device (``Handler.pr_store``), its errors
        turned into status and sense as the data path's are; None keeps LIO's per-node PR."""
        h, rdev = self.handler, self.rdev  # once: a removal may clear them meanwhile
        if h is None or rdev is None or h.pr_store is None:
            return None
        store = h.pr_store(rdev)
        if store is None:
            return None
        # one wrapper per store the handler opened: the engine tells stores apart by identity
        if self._pr_store is None or self._pr_store.inner is not store:
            self._pr_store = _RunnerPrStore(self, store)
        return self._pr_store

    # -- the data path: the handler's callouts --------------------------------------------
    @property
    def exec_ops(self) -> ExecOps:
        """What the handler can do: read/write and WRITE SAME always (the engine writes
        the blocks), SYNCHRONIZE CACHE and UNMAP where the handler has flush/unmap."""
        h = self.handler
        return ExecOps(rw=True, write_same=True, sync_cache=h is not None and h.flush is not None,
                       unmap=h is not None and h.unmap is not None)

    def _call(self, op: str, *args):
        h = self.handler
        if h is None:
            # enabled without a runner reply: nothing serves the ring; the kernel's command
            # timer would fail it with LOGICAL UNIT COMMUNICATION FAILURE
            raise SenseError(S.NOT_READY, 0x08, 0x00, why="no handler")
        try:
            return getattr(h, op)(self.rdev, *args)
        except Exception as e:  # noqa: BLE001 - every failure becomes status and sense
            raise to_scsi(e, op, lambda m: runner_log(self.dev.core, "err", m)) from None

    def read(self, offset: int, length: int) -> bytes:
        return self._call("read", offset, length)

    def write(self, offset: int, data, fua: bool = False) -> None:
        self._call("write", offset, bytes(data))

    def flush(self) -> None:
        if self.handler is not None and self.handler.flush is not None:
            self._call("flush")

    def unmap(self, offset: int, length: int) -> None:
        self._call("unmap", offset, length)

    def configure_unmap(self) -> bool:
        if self.handler is None or self.handler.unmap is None:
            return False
        a = self.dev.attrib
        # tcmu-runner: optimal unmap granularity = max transfer length, aligned at 0
        a.max_unmap_lba_count = 0x2000
        a.max_unmap_block_desc_count = 1
        a.unmap_granularity = 1
        a.unmap_granularity_alignment = 0
        return True

    def handle_cmd(self, cmd):
        """What tcmu-runner does with a command before its generic emulation: the pending
        capacity UA, the handler's handle_cmd, its own standard INQUIRY identity."""
        op = cmd.opcode
        if self.pending_capacity_ua and op not in _UA_EXEMPT:
            self.pending_capacity_ua = False
            raise SenseError(S.UNIT_ATTENTION, 0x2A, 0x09)
        h = self.handler
        if h is not None and h.handle_cmd is not None:
            view = Cmd(cdb=bytes(cmd.cdb), data_out=bytes(cmd.data_out),
                       initiator=cmd.nexus.initiator, lun=cmd.nexus.lun)
            try:
                data = h.handle_cmd(self.rdev, view)
            except Exception as e:  # noqa: BLE001
                raise to_scsi(e, "handle_cmd", lambda m: runner_log(self.dev.core, "err", m)) \
                    from None
            if data is not None:
                return bytes(data)
        if op == S.INQUIRY and not cmd.cdb[1] & 0x01 and not cmd.cdb[2] and h is not None:
            buf = bytearray(vpd.inquiry_std(cmd))
            buf[16:32], buf[32:36] = RUNNER_PRODUCT, RUNNER_REVISION
            return bytes(buf)
        if cmd.execute is None:
            runner_log(self.dev.core, "warn", f"{self.dev.name}: Command 0x{op:x} not supported")
        return NOT_HANDLED

    def show_configfs_dev_params(self) -> str:
        return (f"Config: {self.dev_config or 'NULL'} Size: {self.dev_size} MaxDataAreaMB: "
                f"{self.data_area_mb} DataPagesPerBlk: {self.data_pages_per_blk} CmdRingSizeMB: "
                f"{self.cmd_ring_size_mb}\n")

    def get_blocks(self) -> int:
        if self.rdev is not None:  # READ CAPACITY is the runner's: its own num_lbas
            return self.rdev.num_lbas - 1
        bs = self.dev.attrib.block_size or 512
        return (self.dev_size - bs) // bs

    def describe_storage(self) -> str:
        return self.dev_config


def _udev(g) -> TcmuDevice:
    return g.dev.bdev


def _store_cmd_time_out(g, buf: bytes) -> None:
    dev = g.dev
    val = kstrtou32(buf, 0)
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, "Unable to set tcmu cmd_time_out while exports exist")
    _udev(g).cmd_time_out = val * 1000


def _show_qfull(g) -> str:
    v = _udev(g).qfull_time_out
    return f"{v // 1000 if v > 0 else v}\n"


def _store_qfull(g, buf: bytes) -> None:
    val = kstrtoint(buf, 0)
    if val >= 0:
        _udev(g).qfull_time_out = val * 1000
    elif val == -1:
        _udev(g).qfull_time_out = val
    else:
        raise ConfigfsError(errno.EINVAL, f"Invalid qfull timeout value {val}")


def _store_dev_config(g, buf: bytes) -> None:
    s = cstr(buf)
    if not s or len(s) > TCMU_CONFIG_LEN - 1:
        raise ConfigfsError(errno.EINVAL)  # the kernel refuses without a log line
    _udev(g).reconfig("dev_config", s)
    _udev(g).dev_config = s  # the kernel keeps the raw page, newline included


def _store_dev_size(g, buf: bytes) -> None:
    val = kstrtoull(buf, 0)
    _udev(g).reconfig("dev_size", val)
    _udev(g).dev_size = val


def _store_write_cache(g, buf: bytes) -> None:
    val = kstrtou8(buf, 0)
    _udev(g).reconfig("write_cache", val)
    g.dev.attrib.emulate_write_cache = val


def _store_tmr(g, buf: bytes) -> None:
    val = kstrtou8(buf, 0)
    if val > 1:
        raise ConfigfsError(errno.EINVAL)  # the kernel refuses without a log line
    _udev(g).tmr_notification = val


def _store_nl_reply(g, buf: bytes) -> None:
    val = kstrtoint(buf, 0)
    if not -128 <= val <= 127:
        raise ConfigfsError(errno.ERANGE)
    _udev(g).nl_reply_supported = val


def _field(name: str, fmt=lambda v: f"{v}\n"):
    return lambda g: fmt(getattr(_udev(g), name))


TCMU_ATTRIB_ATTRS = (
    Attribute("cmd_time_out", _field("cmd_time_out", lambda v: f"{v // 1000}\n"),
              _store_cmd_time_out),
    Attribute("qfull_time_out", _show_qfull, _store_qfull),
    Attribute("max_data_area_mb", _field("data_area_mb")),
    Attribute("data_pages_per_blk", _field("data_pages_per_blk")),
    Attribute("cmd_ring_size_mb", _field("cmd_ring_size_mb")),
    Attribute("dev_config", _field("dev_config", lambda v: f"{v}\n"), _store_dev_config),
    Attribute("dev_size", _field("dev_size"), _store_dev_size),
    Attribute("emulate_write_cache", lambda g: f"{g.dev.attrib.emulate_write_cache}\n",
              _store_write_cache),
    Attribute("tmr_notification", _field("tmr_notification"), _store_tmr),
    Attribute("nl_reply_supported", _field("nl_reply_supported"), _store_nl_reply),
)


def _need_enabled(g) -> TcmuDevice:
    udev = _udev(g)
    if not udev.enabled:
        raise ConfigfsError(errno.EINVAL, "Device is not configured.")
    return udev


def _store_block_dev(g, buf: bytes) -> None:
    udev = _need_enabled(g)
    val = kstrtou8(buf, 0)
    if val > 1:
        raise ConfigfsError(errno.EINVAL, f"Invalid block value {val}")
    udev.blocked = bool(val)


def _store_reset_ring(g, buf: bytes) -> None:
    _need_enabled(g)
    val = kstrtou8(buf, 0)
    if val not in (1, 2):
        raise ConfigfsError(errno.EINVAL, f"Invalid reset ring value {val}")


def _store_free_kept_buf(g, buf: bytes) -> None:
    _need_enabled(g)
    cmd_id = kstrtou16(buf, 0)
    raise ConfigfsError(errno.EINVAL, f"free_kept_buf: cmd_id {cmd_id} not found")


TCMU_ACTION_ATTRS = (
    Attribute("block_dev", lambda g: "blocked\n" if _udev(g).blocked else "unblocked\n",
              _store_block_dev),
    Attribute("reset_ring", None, _store_reset_ring),
    Attribute("free_kept_buf", None, _store_free_kept_buf),
)


class UserBackend(Backend):
    name = "user"
    kernel_module = "target_core_user"
    attrib_list = "passthrough"
    extra_attrib_attrs = tuple(PASSTHROUGH_PR_ATTRIB_ATTRS) + TCMU_ATTRIB_ATTRS
    action_attrs = TCMU_ACTION_ATTRS
    transport_flags_default = TRANSPORT_FLAG_PASSTHROUGH
    transport_flags_changeable = TRANSPORT_FLAG_PASSTHROUGH_PGR | TRANSPORT_FLAG_PASSTHROUGH_ALUA
    profiles = frozenset({"modern"})

    def alloc_device(self, dev) -> TcmuDevice:
        return TcmuDevice(dev)


BACKEND = UserBackend()
