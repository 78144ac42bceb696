"""user: TCMU, backstores whose commands a userspace handler serves (target_core_user.c).

The control plane is the kernel's: tokens, attrib/ and action/ files, and enable.
simfs has no UIO ring or netlink; an enabled device is "added" with no handler
listening, which the kernel also accepts (nl_reply_supported=0).
"""

from __future__ import annotations

import errno

from simfs.configfs import Attribute, ConfigfsError
from simfs.core.backend import TRANSPORT_FLAG_PASSTHROUGH, TRANSPORT_FLAG_PASSTHROUGH_ALUA, \
    TRANSPORT_FLAG_PASSTHROUGH_PGR, Backend, BackendDevice
from simfs.core.dev_attrib import PASSTHROUGH_PR_ATTRIB_ATTRS
from simfs.core.kparse import (Token, cstr, kstrtoint, kstrtou8, kstrtou16, kstrtou32,
                                 kstrtoull, match_int, match_u64, tokenize)

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

    def configure_device(self) -> None:
        a = self.dev.attrib
        a.hw_block_size = a.hw_block_size or 512
        a.hw_max_sectors = a.hw_max_sectors or 128
        a.hw_queue_depth = 128
        self.enabled = True
        name = f"tcm-user/{self.dev.hba.host_id}/{self.dev.name}"
        if self.dev_config:
            name += f"/{self.dev_config}"
        self.log.debug(f"TCMU: {name} added with no handler listening (simfs has no UIO ring)")

    def show_configfs_dev_params(self) -> str:
        return (f"Config: {self.dev_config or 'NULL'} Size: {self.dev_size} MaxDataAreaMB: "
                f"{self.data_area_mb} DataPagesPerBlk: {self.data_pages_per_blk} CmdRingSizeMB: "
                f"{self.cmd_ring_size_mb}\n")

    def get_blocks(self) -> int:
        bs = self.dev.attrib.block_size or 512
        return (self.dev_size - bs) // bs


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
    _udev(g).dev_config = s  # the kernel keeps the raw page, newline included


def _store_dev_size(g, buf: bytes) -> None:
    _udev(g).dev_size = kstrtoull(buf, 0)


def _store_write_cache(g, buf: bytes) -> None:
    g.dev.attrib.emulate_write_cache = kstrtou8(buf, 0)


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
    attrib_list = "passthrough"
    extra_attrib_attrs = tuple(PASSTHROUGH_PR_ATTRIB_ATTRS) + TCMU_ATTRIB_ATTRS
    action_attrs = TCMU_ACTION_ATTRS
    transport_flags_default = TRANSPORT_FLAG_PASSTHROUGH
    transport_flags_changeable = TRANSPORT_FLAG_PASSTHROUGH_PGR | TRANSPORT_FLAG_PASSTHROUGH_ALUA
    profiles = frozenset({"modern"})

    def alloc_device(self, dev) -> TcmuDevice:
        return TcmuDevice(dev)


BACKEND = UserBackend()
