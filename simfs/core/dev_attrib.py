"""``core/<hba>/<dev>/attrib/``: the device attributes (se_dev_attrib) and their rules.

The tables follow target_core_configfs.c: ``sbc_attrib_attrs`` for emulated
backends, ``passthrough_attrib_attrs`` (+ ``passthrough_pr_attrib_attrs`` for
TCMU), and the 2009 list for the v3.0 profile.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Callable

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.dev_group import DevGroup, dev_of
from simfs.core.backend import TRANSPORT_FLAG_PASSTHROUGH_ALUA, TRANSPORT_FLAG_PASSTHROUGH_PGR
from simfs.core.kparse import cstr, kstrtobool, kstrtou8, kstrtou32

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

DA_TASK_TIMEOUT_MAX = 600
DA_STATUS_MAX_SECTORS_MIN = 16
DA_STATUS_MAX_SECTORS_MAX = 8192
TARGET_QUEUE_SUBMIT = 2


class DevAttrib:
    """se_dev_attrib with the defaults target_alloc_device gives a new device."""

    __slots__ = (
        "emulate_model_alias", "emulate_dpo", "emulate_fua_write", "emulate_fua_read",
        "emulate_write_cache", "emulate_ua_intlck_ctrl", "emulate_tas", "emulate_tpu",
        "emulate_tpws", "emulate_caw", "emulate_3pc", "emulate_pr", "pi_prot_type",
        "hw_pi_prot_type", "pi_prot_verify", "enforce_pr_isids", "is_nonrot",
        "emulate_rest_reord", "force_pr_aptpl", "hw_block_size", "block_size",
        "hw_max_sectors", "optimal_sectors", "hw_queue_depth", "queue_depth",
        "max_unmap_lba_count", "max_unmap_block_desc_count", "unmap_granularity",
        "unmap_granularity_alignment", "unmap_zeroes_data", "max_write_same_len",
        "emulate_rsoc", "submit_type", "max_sectors", "task_timeout",
    )

    def __init__(self) -> None:
        self.emulate_model_alias = 0
        self.emulate_dpo = 1
        self.emulate_fua_write = 1
        self.emulate_fua_read = 1
        self.emulate_write_cache = 0
        self.emulate_ua_intlck_ctrl = 0
        self.emulate_tas = 1
        self.emulate_tpu = 0
        self.emulate_tpws = 0
        self.emulate_caw = 1
        self.emulate_3pc = 1
        self.emulate_pr = 1
        self.pi_prot_type = 0
        self.hw_pi_prot_type = 0
        self.pi_prot_verify = 0
        self.enforce_pr_isids = 1
        self.is_nonrot = 0
        self.emulate_rest_reord = 0
        self.force_pr_aptpl = 0
        self.hw_block_size = 0
        self.block_size = 0
        self.hw_max_sectors = 0
        self.optimal_sectors = 0
        self.hw_queue_depth = 0
        self.queue_depth = 0
        self.max_unmap_lba_count = 0
        self.max_unmap_block_desc_count = 0
        self.unmap_granularity = 0
        self.unmap_granularity_alignment = 0
        self.unmap_zeroes_data = 0
        self.max_write_same_len = 0
        self.emulate_rsoc = 1
        self.submit_type = 0
        # v3.0 only
        self.max_sectors = 0
        self.task_timeout = 0


def _dev(g: Group) -> "SeDevice":
    return dev_of(g)


def _s32(val: int) -> int:
    """A u32 as the kernel's ``%d`` prints it (pr_err("Illegal value %d", u32) shows -1)."""
    return val - (1 << 32) if val & 0x80000000 else val


def _show_field(field: str) -> Callable[[Group], str]:
    def show(g: Group) -> str:
        return f"{getattr(_dev(g).attrib, field)}\n"
    return show


def _ro(field: str) -> Attribute:
    return Attribute(field, _show_field(field))


def _rw(field: str, store) -> Attribute:
    return Attribute(field, _show_field(field), store)


def _plain_bool(field: str):
    def store(g: Group, buf: bytes) -> None:
        setattr(_dev(g).attrib, field, int(kstrtobool(buf)))
    return store


def _plain_u32(field: str):
    def store(g: Group, buf: bytes) -> None:
        setattr(_dev(g).attrib, field, kstrtou32(buf, 0))
    return store


def _deprecated(field: str):
    def store(g: Group, buf: bytes) -> None:
        dev = _dev(g)
        warned = dev.core.warned_once
        if field not in warned:
            warned.add(field)
            dev.log.warn(f"ignoring deprecated {field} attribute")
    return store


def _store_model_alias(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change model alias while "
                            f"export_count is {dev.export_count}")
    flag = kstrtobool(buf)
    if flag:
        if len(dev.name) >= 16:
            dev.log.warn(f"dev[{dev.ptr}]: Backstore name '{dev.name}' is too long for "
                         f"INQUIRY_MODEL, {dev.core.kernel.value('model_alias_warning')}")
        dev.wwn.model = dev.name[:15]
    else:
        dev.wwn.model = dev.backend.inquiry_prod
    dev.attrib.emulate_model_alias = int(flag)


def _store_write_cache(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = kstrtobool(buf)
    if flag and dev.bdev.has_get_write_cache():
        raise ConfigfsError(errno.EINVAL, "emulate_write_cache not supported for this device")
    dev.attrib.emulate_write_cache = int(flag)
    dev.log.debug(f"dev[{dev.ptr}]: SE Device WRITE_CACHE_EMULATION flag: {int(flag)}")


def _store_ua_intlck_ctrl(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = kstrtou32(buf, 0)
    if val not in (0, 1, 2):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {_s32(val)}")
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change SE Device "
                            f"UA_INTRLCK_CTRL while export_count is {dev.export_count}")
    dev.attrib.emulate_ua_intlck_ctrl = val
    dev.log.debug(f"dev[{dev.ptr}]: SE Device UA_INTRLCK_CTRL flag: {val}")


def _store_tas(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = kstrtobool(buf)
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change SE Device TAS "
                            f"while export_count is {dev.export_count}")
    dev.attrib.emulate_tas = int(flag)
    dev.log.debug(f"dev[{dev.ptr}]: SE Device TASK_ABORTED status bit: "
                  f"{'Enabled' if flag else 'Disabled'}")


def _try_configure_unmap(dev: "SeDevice", key: str) -> None:
    """Set up UNMAP for ``key`` on a device whose backend has not: three generations."""
    how = dev.core.kernel.value("unmap_setup")
    if how == "static":  # the limits came from the backend at enable, or never
        if key == "unmap_zeroes_data":
            raise ConfigfsError(errno.ENOSYS, f"dev[{dev.ptr}]: Thin Provisioning LBPRZ will not "
                                "be set because max_unmap_block_desc_count is zero")
        raise ConfigfsError(errno.ENOSYS, "Generic Block Discard not supported")
    if how == "callout":  # ask the backend, whatever the device's state
        if not dev.bdev.has_configure_unmap() or not dev.bdev.configure_unmap():
            if key == "unmap_zeroes_data":
                raise ConfigfsError(errno.ENOSYS, f"dev[{dev.ptr}]: Thin Provisioning LBPRZ "
                                    "will not be set because max_unmap_block_desc_count is zero")
            raise ConfigfsError(errno.ENOSYS, "Generic Block Discard not supported")
        return
    if not dev.bdev.has_configure_unmap():
        raise ConfigfsError(errno.ENOSYS, "Generic Block Discard not supported")
    if not dev.configured:
        raise ConfigfsError(errno.ENODEV, f"Generic Block Discard setup for {key} requires "
                            "device to be configured")
    if not dev.bdev.configure_unmap():
        raise ConfigfsError(errno.ENOSYS, f"Generic Block Discard setup for {key} failed")


def _unmap_bool(field: str, what: str, exported_check: bool = False):
    def store(g: Group, buf: bytes) -> None:
        dev = _dev(g)
        flag = kstrtobool(buf)
        if exported_check and dev.export_count:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change SE Device "
                                f"{field} while export_count is {dev.export_count}")
        if flag and not dev.attrib.max_unmap_block_desc_count:
            _try_configure_unmap(dev, field)
        setattr(dev.attrib, field, int(flag))
        dev.log.debug(f"dev[{dev.ptr}]: SE Device Thin Provisioning {what}: {int(flag)}")
    return store


def _store_pi_prot_type(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = kstrtou32(buf, 0)
    if val not in (0, 1, 2, 3):
        raise ConfigfsError(errno.EINVAL, f"Illegal value {_s32(val)} for pi_prot_type")
    if val == 2:
        raise ConfigfsError(errno.ENOSYS, "DIF TYPE2 protection currently not supported")
    if dev.attrib.hw_pi_prot_type:
        dev.log.warn("DIF protection enabled on underlying hardware, ignoring")
        return
    if not dev.bdev.has_prot():
        if val == 0:
            return
        raise ConfigfsError(errno.ENOSYS, f"DIF protection not supported by backend: "
                            f"{dev.backend.name}")
    if not dev.configured:
        raise ConfigfsError(errno.ENODEV, "DIF protection requires device to be configured")
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change SE Device PROT "
                            f"type while export_count is {dev.export_count}")
    old = dev.attrib.pi_prot_type
    dev.attrib.pi_prot_type = val
    if val and not old:
        try:
            dev.bdev.init_prot()
        except ConfigfsError:
            dev.attrib.pi_prot_type = old
            dev.attrib.pi_prot_verify = int(bool(old))
            raise
    elif old and not val:
        dev.bdev.free_prot()
    dev.attrib.pi_prot_verify = int(bool(val))
    dev.log.debug(f"dev[{dev.ptr}]: SE Device Protection Type: {val}")


def _store_pi_prot_format(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    if not kstrtobool(buf):
        return
    if not dev.bdev.has_format_prot():
        raise ConfigfsError(errno.ENOSYS, f"DIF protection format not supported by backend "
                            f"{dev.backend.name}")
    if not dev.configured:
        raise ConfigfsError(errno.ENODEV, "DIF protection format requires device to be configured")
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to format SE Device PROT "
                            f"type while export_count is {dev.export_count}")
    dev.bdev.format_prot()
    dev.log.debug(f"dev[{dev.ptr}]: SE Device Protection Format complete")


def _store_pi_prot_verify(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    if not kstrtobool(buf):
        dev.attrib.pi_prot_verify = 0
        return
    if dev.attrib.hw_pi_prot_type:
        dev.log.warn("DIF protection enabled on underlying hardware, ignoring")
        return
    if not dev.attrib.pi_prot_type:
        dev.log.warn("DIF protection not supported by backend, ignoring")
        return
    dev.attrib.pi_prot_verify = 1


def _store_force_pr_aptpl(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = kstrtobool(buf)
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to set force_pr_aptpl while "
                            f"export_count is {dev.export_count}")
    dev.attrib.force_pr_aptpl = int(flag)
    dev.log.debug(f"dev[{dev.ptr}]: SE Device force_pr_aptpl: {int(flag)}")


def _store_rest_reord(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = kstrtobool(buf)
    if flag:
        raise ConfigfsError(errno.ENOSYS, f"dev[{dev.ptr}]: SE Device emulation of restricted "
                            "reordering not implemented")
    dev.attrib.emulate_rest_reord = 0
    dev.log.debug(f"dev[{dev.ptr}]: SE Device emulate_rest_reord: 0")


def _store_queue_depth(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    a = dev.attrib
    val = kstrtou32(buf, 0)
    dev.refuse_if_exported("TCQ")
    if val == 0:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Illegal ZERO value for queue_depth")
    if val > a.queue_depth and val > a.hw_queue_depth:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed queue_depth: {val} exceeds "
                            f"TCM/SE_Device MAX TCQ: {a.hw_queue_depth}")
    a.queue_depth = dev.queue_depth = val
    dev.log.debug(f"dev[{dev.ptr}]: SE Device TCQ Depth changed to: {val}")


def _store_optimal_sectors(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = kstrtou32(buf, 0)
    dev.refuse_if_exported("optimal_sectors")
    if val > dev.attrib.hw_max_sectors:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed optimal_sectors {val} cannot "
                            f"be greater than hw_max_sectors: {dev.attrib.hw_max_sectors}")
    dev.attrib.optimal_sectors = val
    dev.log.debug(f"dev[{dev.ptr}]: SE Device optimal_sectors changed to {val}")


def _store_block_size(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = kstrtou32(buf, 0)
    dev.refuse_if_exported("block_size")
    if val not in (512, 1024, 2048, 4096):
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Illegal value for block_device: "
                            f"{val} for SE device, must be 512, 1024, 2048 or 4096")
    dev.attrib.block_size = val
    dev.log.debug(f"dev[{dev.ptr}]: SE Device block_size changed to {val}")


def _passthrough_flag(name: str, flag: int):
    def show(g: Group) -> str:
        return f"{0 if _dev(g).transport_flags & flag else 1}\n"

    def store(g: Group, buf: bytes) -> None:
        dev = _dev(g)
        want = kstrtobool(buf)
        current = not dev.transport_flags & flag
        if want == current:
            return
        if not dev.backend.flags_changeable(dev.core.kernel) & flag:
            raise ConfigfsError(errno.ENOSYS, f"dev[{dev.ptr}]: Unable to change SE Device "
                                f"{name}: {name} has fixed value")
        if want:
            dev.transport_flags &= ~flag
        else:
            dev.transport_flags |= flag
    return Attribute(name, show, store)


def _store_rsoc(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = kstrtobool(buf)
    dev.attrib.emulate_rsoc = int(flag)
    dev.log.debug(f"dev[{dev.ptr}]: SE Device REPORT_SUPPORTED_OPERATION_CODES_EMULATION "
                  f"flag: {int(flag)}")


def _store_submit_type(g: Group, buf: bytes) -> None:
    val = kstrtou8(buf, 0)
    if val > TARGET_QUEUE_SUBMIT:
        # submit_type_store returns -EINVAL without a word in the log.
        raise ConfigfsError(errno.EINVAL)
    _dev(g).attrib.submit_type = val


# -- the tables ---------------------------------------------------------------------------------
ALUA_SUPPORT = _passthrough_flag("alua_support", TRANSPORT_FLAG_PASSTHROUGH_ALUA)
PGR_SUPPORT = _passthrough_flag("pgr_support", TRANSPORT_FLAG_PASSTHROUGH_PGR)
EMULATE_PR = _rw("emulate_pr", _plain_bool("emulate_pr"))
SUBMIT_TYPE = _rw("submit_type", _store_submit_type)

SBC_ATTRIB_ATTRS = (
    _rw("emulate_model_alias", _store_model_alias),
    _rw("emulate_dpo", _deprecated("emulate_dpo")),
    _rw("emulate_fua_write", _plain_bool("emulate_fua_write")),
    _rw("emulate_fua_read", _deprecated("emulate_fua_read")),
    _rw("emulate_write_cache", _store_write_cache),
    _rw("emulate_ua_intlck_ctrl", _store_ua_intlck_ctrl),
    _rw("emulate_tas", _store_tas),
    _rw("emulate_tpu", _unmap_bool("emulate_tpu", "UNMAP bit")),
    _rw("emulate_tpws", _unmap_bool("emulate_tpws", "WRITE_SAME")),
    _rw("emulate_caw", _plain_bool("emulate_caw")),
    _rw("emulate_3pc", _plain_bool("emulate_3pc")),
    EMULATE_PR,
    _rw("pi_prot_type", _store_pi_prot_type),
    _ro("hw_pi_prot_type"),
    Attribute("pi_prot_format", lambda g: "0\n", _store_pi_prot_format),
    _rw("pi_prot_verify", _store_pi_prot_verify),
    _rw("enforce_pr_isids", _plain_bool("enforce_pr_isids")),
    _rw("is_nonrot", _plain_bool("is_nonrot")),
    _rw("emulate_rest_reord", _store_rest_reord),
    _rw("force_pr_aptpl", _store_force_pr_aptpl),
    _ro("hw_block_size"),
    _rw("block_size", _store_block_size),
    _ro("hw_max_sectors"),
    _rw("optimal_sectors", _store_optimal_sectors),
    _ro("hw_queue_depth"),
    _rw("queue_depth", _store_queue_depth),
    _rw("max_unmap_lba_count", _plain_u32("max_unmap_lba_count")),
    _rw("max_unmap_block_desc_count", _plain_u32("max_unmap_block_desc_count")),
    _rw("unmap_granularity", _plain_u32("unmap_granularity")),
    _rw("unmap_granularity_alignment", _plain_u32("unmap_granularity_alignment")),
    _rw("unmap_zeroes_data", _unmap_bool("unmap_zeroes_data", "LBPRZ bit", exported_check=True)),
    _rw("max_write_same_len", _plain_u32("max_write_same_len")),
    ALUA_SUPPORT,
    PGR_SUPPORT,
    _rw("emulate_rsoc", _store_rsoc),
    SUBMIT_TYPE,
)

PASSTHROUGH_ATTRIB_ATTRS = (
    _ro("hw_pi_prot_type"), _ro("hw_block_size"), _ro("hw_max_sectors"),
    _ro("hw_queue_depth"), EMULATE_PR, ALUA_SUPPORT, PGR_SUPPORT, SUBMIT_TYPE,
)

PASSTHROUGH_PR_ATTRIB_ATTRS = (
    _rw("enforce_pr_isids", _plain_bool("enforce_pr_isids")),
    _rw("force_pr_aptpl", _store_force_pr_aptpl),
)


# -- v3.0: the 2009 engine's attrib/ (target_core_configfs.c DEF_DEV_ATTRIB, se_dev_set_*) -------
def _legacy(fn):
    """In the 2009 engine attrib/ did not exist for real until enable: ENODEV before."""
    def wrapped(g: Group, *args):
        dev = _dev(g)
        if not dev.configured:
            raise ConfigfsError(errno.ENODEV, f"Target_Core_ConfigFS: {dev.path()} is not "
                                "enabled yet (no se_device)")
        return fn(g, *args)
    return wrapped


def _v3_value(buf: bytes) -> int:
    """The store macro's parse: an unsigned long of the i686 kernel, then (u32)."""
    try:
        return kstrtou32(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(errno.EINVAL, f"tcm_strict_strtoul() failed with ret: "
                            f"{-e.errno}") from None


def _v3_refuse_if_exported(dev: "SeDevice", what: str) -> None:
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Unable to change SE Device {what} "
                            f"while dev_export_obj: {dev.export_count} count exists")


def _v3_flag(val: int, allowed: tuple[int, ...]) -> int:
    flag = _s32(val)  # the setters take an int
    if flag not in allowed:
        raise ConfigfsError(errno.EINVAL, f"Illegal value {flag}")
    return flag


def _v3_store_ua_intlck_ctrl(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = _v3_flag(_v3_value(buf), (0, 1, 2))
    _v3_refuse_if_exported(dev, "UA_INTRLCK_CTRL")
    dev.attrib.emulate_ua_intlck_ctrl = flag
    dev.log.info(f"dev[{dev.ptr}]: SE Device UA_INTRLCK_CTRL flag: {flag}")


def _v3_store_tas(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    flag = _v3_flag(_v3_value(buf), (0, 1))
    _v3_refuse_if_exported(dev, "TAS")
    dev.attrib.emulate_tas = flag
    dev.log.info(f"dev[{dev.ptr}]: SE Device TASK_ABORTED status bit: "
                 f"{'Enabled' if flag else 'Disabled'}")


def _v3_store_block_size(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = _v3_value(buf)
    _v3_refuse_if_exported(dev, "block_size")
    if val not in (512, 1024, 2048, 4096):
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Illegal value for block_device: "
                            f"{val} for SE device, must be 512, 1024, 2048 or 4096")
    if dev.passthrough:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Not allowed to change block_size "
                            "for Physical Device, use for Linux/SCSI to change block_size for "
                            "underlying hardware")
    dev.attrib.block_size = val
    dev.log.info(f"dev[{dev.ptr}]: SE Device block_size changed to {val}")


def _v3_store_max_sectors(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    a = dev.attrib
    val = _v3_value(buf)
    _v3_refuse_if_exported(dev, "max_sectors")
    if val == 0:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Illegal ZERO value for max_sectors")
    if val < DA_STATUS_MAX_SECTORS_MIN:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed max_sectors: {val} less than "
                            f"DA_STATUS_MAX_SECTORS_MIN: {DA_STATUS_MAX_SECTORS_MIN}")
    if dev.passthrough:
        if val > a.hw_max_sectors:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed max_sectors: {val} "
                                "greater than LIO-Core/SE_Device max_sectors: "
                                f"{a.hw_max_sectors}")
    else:
        # The source has a "force" for virtual devices, but nothing can set it.
        if val > a.hw_max_sectors:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed max_sectors: {val} "
                                "greater than LIO-Core/SE_Device max_sectors: "
                                f"{a.hw_max_sectors}, use force=1 to override.")
        if val > DA_STATUS_MAX_SECTORS_MAX:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed max_sectors: {val} "
                                "greater than DA_STATUS_MAX_SECTORS_MAX: "
                                f"{DA_STATUS_MAX_SECTORS_MAX}")
    a.max_sectors = val
    # printk without a level: the default (warning) level
    dev.log.warn(f"dev[{dev.ptr}]: SE Device max_sectors changed to {val}")


def _v3_store_queue_depth(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    a = dev.attrib
    val = _v3_value(buf)
    _v3_refuse_if_exported(dev, "TCQ")
    if val == 0:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Illegal ZERO value for queue_depth")
    if dev.passthrough:
        if val > a.hw_queue_depth:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed queue_depth: {val} "
                                f"exceeds LIO-Core/SE_Device TCQ: {a.hw_queue_depth}")
    else:
        depth = dev.core.kernel.value("virtual_queue_depth")
        limit = depth[1] if depth else a.hw_queue_depth
        if val > a.hw_queue_depth and val > limit:
            raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed queue_depth: {val} "
                                f"exceeds LIO-Core/SE_Device MAX TCQ: {limit}")
    a.queue_depth = dev.queue_depth = val
    dev.log.info(f"dev[{dev.ptr}]: SE Device TCQ Depth changed to: {val}")


def _v3_store_task_timeout(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = _v3_value(buf)
    if val > DA_TASK_TIMEOUT_MAX:
        raise ConfigfsError(errno.EINVAL, f"dev[{dev.ptr}]: Passed task_timeout: {val} larger "
                            "then DA_TASK_TIMEOUT_MAX")
    dev.attrib.task_timeout = val
    dev.log.info(f"dev[{dev.ptr}]: Set SE Device task_timeout: {val}")


def _v3(name: str, store=None) -> Attribute:
    show = _legacy(_show_field(name))
    return Attribute(name, show, _legacy(store) if store else None)


#: the 2009 files; kernels.LEGACY_FILES["dev_attrib"] gives their order
V3_ATTRIB_ATTRS = (
    _v3("emulate_ua_intlck_ctrl", _v3_store_ua_intlck_ctrl),
    _v3("emulate_tas", _v3_store_tas),
    _v3("hw_block_size"),
    _v3("block_size", _v3_store_block_size),
    _v3("hw_max_sectors"),
    _v3("max_sectors", _v3_store_max_sectors),
    _v3("hw_queue_depth"),
    _v3("queue_depth", _v3_store_queue_depth),
    _v3("task_timeout", _v3_store_task_timeout),
)


# before 5.8 alua_support and pgr_support were CONFIGFS_ATTR_RO: a write fails at open
_READ_ONLY = {a.name: Attribute(a.name, a.show) for a in (ALUA_SUPPORT, PGR_SUPPORT)}
_TABLES: dict[tuple[str, str], tuple] = {}


def attrib_table(dev: "SeDevice"):
    """The device's attrib/ files: the version table says which, in which order."""
    kernel = dev.core.kernel
    if dev.legacy:
        return kernel.table("dev_attrib", V3_ATTRIB_ATTRS)
    key = (kernel.name, dev.backend.name)
    table = _TABLES.get(key)
    if table is None:
        impls = list(SBC_ATTRIB_ATTRS)
        if not kernel.has("dev_flags_writable"):
            impls = [_READ_ONLY.get(a.name, a) for a in impls]
        group = ("dev_attrib_passthrough" if dev.backend.attrib_list == "passthrough"
                 else "dev_attrib")
        extra = tuple(dev.backend.extra_attrib_attrs)
        pr_names = {a.name for a in PASSTHROUGH_PR_ATTRIB_ATTRS}
        listed = set(kernel.files("dev_attrib_passthrough_pr"))
        extra = tuple(a for a in extra if a.name not in pr_names or a.name in listed)
        table = _TABLES[key] = kernel.table(group, impls) + extra
    return table


class AttribGroup(DevGroup):
    """``<dev>/attrib``."""

    __slots__ = ("_table",)

    def __init__(self, dev: "SeDevice"):
        super().__init__("attrib", dev)
        self._table = attrib_table(dev)

    def attribute_table(self):
        return self._table


class ActionGroup(DevGroup):
    """``<dev>/action``: empty except for backends with actions (TCMU)."""

    __slots__ = ()

    def __init__(self, dev: "SeDevice"):
        super().__init__("action", dev)

    def attribute_table(self):
        return self.dev.backend.action_attrs


__all__ = ["ActionGroup", "AttribGroup", "DevAttrib", "attrib_table", "cstr"]
