"""``core/<hba>/<dev>/statistics/``: scsi_dev, scsi_tgt_dev and scsi_lu (target_core_stat.c)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.dev_group import DevGroup, dev_of

if TYPE_CHECKING:
    from simfs.core.device import SeDevice


def _dev(g: Group) -> "SeDevice":
    return dev_of(g)


def _a(name: str, fn) -> Attribute:
    return Attribute(name, lambda g: fn(_dev(g)))


def _padded(value: str, width: int) -> str:
    """``%-8s``/``%-16s``/``%-4s`` then a newline (target_stat_lu_vend_show and friends)."""
    return f"{value:<{width}}\n"


def _creation_time(dev: "SeDevice") -> str:
    # Hundredths of a second since boot, as the jiffies-based creation_time prints.
    return f"{int(dev.creation_boottime * 100) & 0xFFFFFFFF}\n"


SCSI_DEV_ATTRS = (
    _a("inst", lambda d: f"{d.hba.hba_index}\n"),
    _a("indx", lambda d: f"{d.dev_index}\n"),
    _a("role", lambda d: "Target\n"),
    _a("ports", lambda d: f"{d.export_count}\n"),
)

SCSI_TGT_DEV_ATTRS = (
    _a("inst", lambda d: f"{d.hba.hba_index}\n"),
    _a("indx", lambda d: f"{d.dev_index}\n"),
    _a("num_lus", lambda d: "1\n"),
    # The kernel prints this one without a newline.
    _a("status", lambda d: "activated" if d.export_count else "deactivated"),
    _a("non_access_lus", lambda d: "0\n" if d.export_count else "1\n"),
    _a("resets", lambda d: f"{d.num_resets}\n"),
    _a("aborts_complete", lambda d: "0\n"),
    _a("aborts_no_task", lambda d: "0\n"),
)

SCSI_LU_ATTRS = (
    _a("inst", lambda d: f"{d.hba.hba_index}\n"),
    _a("dev", lambda d: f"{d.dev_index}\n"),
    _a("indx", lambda d: "1\n"),
    _a("lun", lambda d: "0\n"),
    _a("lu_name", lambda d: f"{d.wwn.unit_serial or 'None'}\n"),
    _a("vend", lambda d: _padded(d.wwn.vendor, 8)),
    _a("prod", lambda d: _padded(d.wwn.model, 16)),
    _a("rev", lambda d: _padded(d.wwn.revision, 4)),
    _a("dev_type", lambda d: f"{d.bdev.get_device_type()}\n"),
    _a("status", lambda d: "available\n" if d.export_count else "notavailable\n"),
    _a("state_bit", lambda d: "exposed\n"),
    _a("num_cmds", lambda d: f"{d.num_cmds}\n"),
    _a("read_mbytes", lambda d: f"{d.read_bytes >> 20}\n"),
    _a("write_mbytes", lambda d: f"{d.write_bytes >> 20}\n"),
    _a("resets", lambda d: f"{d.num_resets}\n"),
    _a("full_stat", lambda d: "0\n"),
    _a("hs_num_cmds", lambda d: "0\n"),
    _a("creation_time", _creation_time),
)


class _StatGroup(DevGroup):
    __slots__ = ("_table",)

    def __init__(self, dev: "SeDevice", name: str, table):
        super().__init__(name, dev)
        self._table = table

    def attribute_table(self):
        return self._table


class StatisticsGroup(DevGroup):
    """``<dev>/statistics``: mkdir here is refused with ENOSYS (its make_group says so)."""

    __slots__ = ()

    def __init__(self, dev: "SeDevice"):
        super().__init__("statistics", dev)
        self.add_default_group(_StatGroup(dev, "scsi_dev", SCSI_DEV_ATTRS))
        self.add_default_group(_StatGroup(dev, "scsi_tgt_dev", SCSI_TGT_DEV_ATTRS))
        self.add_default_group(_StatGroup(dev, "scsi_lu", SCSI_LU_ATTRS))

    def make_group(self, name: str) -> Group:
        raise ConfigfsError(errno.ENOSYS, f"configfs: mkdir {self.dev.path()}/statistics/{name}:"
                            " statistics groups are fixed")
