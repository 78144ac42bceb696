"""ALUA groups in the tree: LU groups (``core/alua/lu_gps``), target port groups
(``core/<hba>/<dev>/alua``), the device's ``alua_lu_gp`` and ``lba_map``
(target_core_alua.c and its configfs side).

This module holds the groups' configuration and state; enforcement per SCSI
command is the SCSI engine's.
"""

from __future__ import annotations

import errno
import re
import time
from typing import TYPE_CHECKING, Optional

from simfs.configfs import Attribute, ConfigfsError, Group, owner
from simfs.core.kparse import cstr, kstrtoul
# access states, supported-state bits and names are SPC-4's (simfs.core.t10.spc)
from simfs.core.t10.spc import (ALUA_ACCESS_STATE_ACTIVE_NON_OPTIMIZED,  # noqa: F401
                                ALUA_ACCESS_STATE_ACTIVE_OPTIMIZED, ALUA_ACCESS_STATE_LBA_DEPENDENT,
                                ALUA_ACCESS_STATE_OFFLINE, ALUA_ACCESS_STATE_STANDBY,
                                ALUA_ACCESS_STATE_TRANSITION, ALUA_ACCESS_STATE_UNAVAILABLE,
                                ALUA_AN_SUP, ALUA_AO_SUP, ALUA_LBD_SUP, ALUA_O_SUP, ALUA_S_SUP,
                                ALUA_STATE_SUPPORT, ALUA_T_SUP, ALUA_U_SUP)
from simfs.core.t10.spc import ALUA_STATE_NAMES as STATE_NAMES

if TYPE_CHECKING:
    from simfs.core.core import TargetCore
    from simfs.core.device import SeDevice

STATUS_NAMES = {0: "None", 1: "Altered by Explicit STPG", 2: "Altered by Implicit ALUA"}
TYPE_NAMES = {3: "Implicit and Explicit", 1: "Implicit", 2: "Explicit", 0: "None"}

SUPPORT_BITS = (("transitioning", ALUA_T_SUP), ("offline", ALUA_O_SUP),
                ("lba_dependent", ALUA_LBD_SUP), ("unavailable", ALUA_U_SUP),
                ("standby", ALUA_S_SUP), ("active_nonoptimized", ALUA_AN_SUP),
                ("active_optimized", ALUA_AO_SUP))
STATE_SUPPORT = ALUA_STATE_SUPPORT

TPGS_IMPLICIT_ALUA = 0x10
TPGS_EXPLICIT_ALUA = 0x20

ALUA_MAX_NONOP_DELAY_MSECS = 10000
ALUA_MAX_TRANS_DELAY_MSECS = 30000
ALUA_MAX_IMPLICIT_TRANS_SECS = 255
LU_GROUP_NAME_BUF = 256
TG_PT_GROUP_NAME_BUF = 256


def dump_state(state: int) -> str:
    return STATE_NAMES.get(state, "Unknown")


class LuGroup:
    """t10_alua_lu_gp: a set of devices whose port groups move together."""

    def __init__(self, name: str):
        self.name = name
        self.id = 0
        self.valid_id = False
        #: Member devices in the order they joined (the kernel's list_add_tail), as the keys
        #: of a dict: a device leaves in O(1) however many share the group (10,000 in one
        #: default_lu_gp would make every rmdir scan them all).
        self.members: dict["SeDevice", None] = {}
        self.access_state = 0  # v3.0 only


class TgPtGp:
    """t10_alua_tg_pt_gp: one target port group of one device."""

    def __init__(self, dev: "SeDevice", name: str):
        self.dev = dev
        self.name = name
        self.id = 0
        self.valid_id = False
        self.access_state = ALUA_ACCESS_STATE_ACTIVE_OPTIMIZED
        self.access_status = 0
        self.access_type = TPGS_IMPLICIT_ALUA | TPGS_EXPLICIT_ALUA
        self.supported_states = (ALUA_T_SUP | ALUA_O_SUP | ALUA_U_SUP | ALUA_S_SUP
                                 | ALUA_AN_SUP | ALUA_AO_SUP)
        self.nonop_delay_msecs = 100
        self.trans_delay_msecs = 0
        self.implicit_trans_secs = 0
        self.preferred = 0
        self.write_metadata = 0
        #: Member LUNs (fabric side): objects with ``member_path()``.
        self.members: list = []


class Alua:
    """The module-wide ALUA state: LU groups and their id counter."""

    def __init__(self, core: "TargetCore"):
        self.core = core
        self.lu_gps_counter = 0
        self.lu_gps_count = 0
        self.lu_gps: list[LuGroup] = []  # only groups with a valid id (lookup list)
        self.default_lu_gp = LuGroup("default_lu_gp")
        self.default_lu_gp.id = self.lu_gps_counter
        self.lu_gps_counter += 1
        self.default_lu_gp.valid_id = True
        self.lu_gps_count += 1
        # v3.0: one global default target port group
        self.global_tg_pt_gp: Optional[TgPtGp] = None

    @property
    def log(self):
        return self.core.log

    # -- devices ------------------------------------------------------------------------
    def setup_device(self, dev: "SeDevice") -> None:
        """core_setup_alua: an emulated-ALUA device joins default_lu_gp at enable."""
        name = dev.backend.name
        if dev.hba.internal:
            return  # the internal virtual LUN 0 device takes part in no ALUA group
        if dev.passthrough_alua:
            self.log.debug(f"{name}: Using SPC_ALUA_PASSTHROUGH, no ALUA emulation")
            return
        dev.lu_gp_member = True
        self._attach(dev, self.default_lu_gp)
        if dev.legacy:
            self.log.info(f"{name}: Enabling ALUA Emulation for SPC-3 device")
            self.log.info(f"{name}: Adding to default ALUA LU Group: "
                          "core/alua/lu_gps/default_lu_gp")
        else:
            self.log.debug(f"{name}: Adding to default ALUA LU Group: "
                           f"core/alua/lu_gps/default_lu_gp, ID: {self.default_lu_gp.id}")

    def release_device(self, dev: "SeDevice") -> None:
        if dev.lu_gp is not None:
            self._drop(dev, dev.lu_gp)
        dev.lu_gp_member = False

    def _attach(self, dev: "SeDevice", lu_gp: LuGroup) -> None:
        dev.lu_gp = lu_gp
        lu_gp.members[dev] = None

    def _drop(self, dev: "SeDevice", lu_gp: LuGroup) -> None:
        lu_gp.members.pop(dev, None)
        dev.lu_gp = None

    def show_dev_lu_gp(self, dev: "SeDevice") -> str:
        if not dev.lu_gp_member or dev.lu_gp is None:
            return ""
        return f"LU Group Alias: {dev.lu_gp.name}\nLU Group ID: {dev.lu_gp.id}\n"

    def store_dev_lu_gp(self, dev: "SeDevice", buf: bytes) -> None:
        if not dev.lu_gp_member:
            return  # not configured, or ALUA passed through: a silent no-op
        if len(buf) > LU_GROUP_NAME_BUF:
            raise ConfigfsError(errno.EINVAL, "ALUA LU Group Alias too large!")
        name = cstr(buf).strip(" \t\n\r\v\f")
        new = None
        if name != "NULL":
            new = next((g for g in self.lu_gps if g.name == name), None)
            if new is None:
                # core_alua_get_lu_gp_by_name() found nothing: -ENODEV, no message.
                raise ConfigfsError(errno.ENODEV, None)
        old = dev.lu_gp
        where = f"{dev.hba.name}/{dev.name}"
        if old is not None:
            if new is None:
                self.log.debug(f"Target_Core_ConfigFS: Releasing {where} from ALUA LU Group: "
                               f"core/alua/lu_gps/{old.name}, ID: {old.id}")
                self._drop(dev, old)
                return
            self._drop(dev, old)
        if new is None:
            return
        self._attach(dev, new)
        self.log.debug(f"Target_Core_ConfigFS: {'Moving' if old else 'Adding'} {where} to "
                       f"ALUA LU Group: core/alua/lu_gps/{new.name}, ID: {new.id}")

    # -- LU group ids -------------------------------------------------------------------
    def set_lu_gp_id(self, lu_gp: LuGroup, want: int) -> None:
        if lu_gp.valid_id:
            raise ConfigfsError(errno.EINVAL,
                                "ALUA LU Group already has a valid ID, ignoring request")
        if self.lu_gps_count == 0xFFFF:
            raise ConfigfsError(errno.EINVAL, "Maximum ALUA alua_lu_gps_count: 0x0000ffff reached")
        used = {g.id for g in self.lu_gps}
        if want:
            if want in used:
                raise ConfigfsError(errno.EINVAL, f"ALUA Logical Unit Group ID: {want} already "
                                    "exists, ignoring request")
            new_id = want
        else:
            while True:
                new_id = self.lu_gps_counter & 0xFFFF
                self.lu_gps_counter += 1
                if new_id not in used:
                    break
        lu_gp.id = new_id
        lu_gp.valid_id = True
        self.lu_gps.append(lu_gp)
        self.lu_gps_count += 1

    def free_lu_gp(self, lu_gp: LuGroup) -> None:
        if lu_gp in self.lu_gps:
            self.lu_gps.remove(lu_gp)
            self.lu_gps_count -= 1
        for dev in list(lu_gp.members):
            self._drop(dev, lu_gp)
            if lu_gp is not self.default_lu_gp:
                self._attach(dev, self.default_lu_gp)

    # -- target port groups --------------------------------------------------------------
    def alloc_tg_pt_gp(self, dev: "SeDevice", name: str, default: bool) -> TgPtGp:
        gp = TgPtGp(dev, name)
        if default:
            gp.id = dev.tg_pt_gp_counter
            dev.tg_pt_gp_counter += 1
            gp.valid_id = True
            dev.tg_pt_gps.append(gp)
        return gp

    def set_tg_pt_gp_id(self, gp: TgPtGp, want: int) -> None:
        dev = gp.dev
        if gp.valid_id:
            raise ConfigfsError(errno.EINVAL,
                                "ALUA TG PT Group already has a valid ID, ignoring request")
        if len(dev.tg_pt_gps) >= 0xFFFF:
            raise ConfigfsError(errno.EINVAL,
                                "Maximum ALUA alua_tg_pt_gps_count: 0x0000ffff reached")
        used = {g.id for g in dev.tg_pt_gps}
        if want:
            if want in used:
                raise ConfigfsError(errno.EINVAL, f"ALUA Target Port Group ID: {want} already "
                                    "exists, ignoring request")
            new_id = want
        else:
            while True:
                new_id = dev.tg_pt_gp_counter & 0xFFFF
                dev.tg_pt_gp_counter += 1
                if new_id not in used:
                    break
        gp.id = new_id
        gp.valid_id = True
        dev.tg_pt_gps.append(gp)

    def free_tg_pt_gp(self, gp: TgPtGp) -> None:
        dev = gp.dev
        if gp in dev.tg_pt_gps:
            dev.tg_pt_gps.remove(gp)
        # core_alua_free_tg_pt_gp() decrements the id *counter* (u16), not the count:
        # the next auto-assigned id reuses (or steps back to) a lower value.
        dev.tg_pt_gp_counter = (dev.tg_pt_gp_counter - 1) & 0xFFFF
        default = dev.default_tg_pt_gp
        for lun in list(gp.members):
            lun.set_tg_pt_gp(default)

    def transition(self, gp: TgPtGp, new_state: int, explicit: bool) -> None:
        """core_alua_do_port_transition, as configfs (implicit) or STPG (explicit) asks it."""
        supported = gp.supported_states
        if new_state not in STATE_SUPPORT:
            raise ConfigfsError(errno.EINVAL, f"Unknown ALUA access state: 0x{new_state:02x}")
        if not supported & STATE_SUPPORT[new_state] or (
                explicit and new_state == ALUA_ACCESS_STATE_TRANSITION):
            raise ConfigfsError(errno.EINVAL,
                                f"ALUA access state {dump_state(new_state)} not supported")
        dev = gp.dev
        lu_gp = dev.lu_gp
        if lu_gp is None or lu_gp.id == 0:
            targets = [gp]
        else:
            targets = [g for d in lu_gp.members for g in d.tg_pt_gps
                       if g.valid_id and g.id == gp.id]
        for target in targets:
            self._transition_one(target, new_state, explicit)
        if lu_gp is not None and lu_gp.id != 0:
            self.log.debug(f"Successfully processed LU Group: {lu_gp.name} all ALUA TG PT Group "
                           f"IDs: {gp.id} {'explicit' if explicit else 'implicit'} transition "
                           f"to primary state: {dump_state(new_state)}")

    def _transition_one(self, gp: TgPtGp, new_state: int, explicit: bool) -> None:
        if gp.access_state == new_state:
            return
        previous = gp.access_state
        gp.access_state = ALUA_ACCESS_STATE_TRANSITION
        gp.access_status = 1 if explicit else 2
        self.core.events.alua_state_changed(gp)
        if new_state == ALUA_ACCESS_STATE_TRANSITION:
            return
        if gp.trans_delay_msecs:
            # The writer waits, as in the kernel; release the tree while sleeping.
            lock = self.core.tree_lock
            if lock is not None:
                lock.release()
            try:
                time.sleep(gp.trans_delay_msecs / 1000)
            finally:
                if lock is not None:
                    lock.acquire()
        gp.access_state = new_state
        self.core.events.alua_metadata(gp)
        self.log.debug(f"Successful {'explicit' if explicit else 'implicit'} ALUA transition "
                       f"TG PT Group: {gp.name} ID: {gp.id} from primary access state "
                       f"{dump_state(previous)} to {dump_state(new_state)}")
        # core_alua_do_transition_tg_pt queues the 2Ah/06h UAs again once the new state
        # is in place (an initiator may have consumed the first ones meanwhile).
        self.core.events.alua_state_changed(gp)

    # -- lba_map ---------------------------------------------------------------------------
    def show_lba_map(self, dev: "SeDevice") -> str:
        if not dev.lba_map:
            return ""
        size, mult = dev.lba_map_segment
        out = [f"{size} {mult}\n"]
        chars = {0: "O", 1: "A", 2: "S", 3: "U"}
        for first, last, members in dev.lba_map:
            out.append(f"{first} {last}" + "".join(
                f" {pg}:{chars.get(st, '.')}" for pg, st in members) + "\n")
        return "".join(out)

    def store_lba_map(self, dev: "SeDevice", buf: bytes) -> None:
        """target_dev_lba_map_store: sscanf-based, line by line.

        Quirks kept: a duplicate pg id only fails the write when no later member
        succeeds (the store keeps going after it); any successful write, even of an
        empty map, sets the LBA-dependent supported bit on every valid group
        (core_alua_set_lba_map is always handed a list); segment values are u32.
        """
        log = self.log
        entries = []
        segment = (0xFFFFFFFF, 0xFFFFFFFF)  # (unsigned long)-1 stored in u32 fields
        num = 0
        pg_num = -1
        ret = 0
        states = {"O": 0, "A": 1, "S": 2, "U": 3}
        for line in cstr(buf).split("\n"):
            if not line:
                continue
            if num == 0:
                m = re.match(r"[ \t\n\v\f\r]*(\d+)(?!\d)[ \t\n\v\f\r]*(\d+)", line)
                if not m:
                    raise ConfigfsError(errno.EINVAL, f"Invalid line {num}")
                segment = (int(m.group(1)) & 0xFFFFFFFF, int(m.group(2)) & 0xFFFFFFFF)
                num += 1
                continue
            m = re.match(r"[ \t\n\v\f\r]*(\d+)(?!\d)[ \t\n\v\f\r]*(\d+)", line)
            if not m:
                raise ConfigfsError(errno.EINVAL, f"Invalid line {num}")
            first = int(m.group(1)) & 0xFFFFFFFFFFFFFFFF
            last = int(m.group(2)) & 0xFFFFFFFFFFFFFFFF
            sp = line.find(" ")
            if sp < 0:
                raise ConfigfsError(errno.EINVAL, f"Invalid line {num}, missing end lba")
            rest = line[sp + 1:]
            sp = rest.find(" ")
            if sp < 0:
                raise ConfigfsError(errno.EINVAL, f"Invalid line {num}, missing state definitions")
            rest = rest[sp + 1:]
            members: list[tuple[int, int]] = []
            pg = 0
            while True:
                m = re.match(r"[ \t\n\v\f\r]*(-?\d+):(.)", rest, re.S)
                if not m:
                    break
                pg_id, ch = int(m.group(1)), m.group(2)
                if ch not in states:
                    raise ConfigfsError(errno.EINVAL, f"Invalid ALUA state '{ch}'")
                if any(p == pg_id for p, _ in members):
                    log.err(f"Duplicate pg_id {pg_id} in lba_map")
                    log.err(f"Invalid target descriptor {pg_id}:{ch} at line {num}")
                    ret = errno.EINVAL
                    break
                ret = 0
                members.append((pg_id, states[ch]))
                pg += 1
                sp = rest.find(" ")
                if sp < 0:
                    break
                rest = rest[sp + 1:]
            if pg_num == -1:
                pg_num = pg
            elif pg != pg_num:
                raise ConfigfsError(errno.EINVAL, f"Only {pg} from {pg_num} port groups "
                                    f"definitions at line {num}")
            entries.append((first, last, members))
            num += 1
        if ret:
            raise ConfigfsError(ret, None)
        dev.lba_map = entries
        dev.lba_map_segment = segment
        for gp in dev.tg_pt_gps:
            if gp.valid_id:
                gp.supported_states |= ALUA_LBD_SUP

    def clear_lba_map(self, dev: "SeDevice") -> None:
        """core_alua_set_lba_map(dev, NULL, 0, 0): the only path that clears the bit."""
        dev.lba_map = []
        dev.lba_map_segment = (0, 0)
        for gp in dev.tg_pt_gps:
            if gp.valid_id:
                gp.supported_states &= ~ALUA_LBD_SUP


# -- configfs groups -------------------------------------------------------------------------
def _members_text(lines: list[str], nul: bool = True) -> bytes:
    """members files put a NUL after every line (the kernel copies each terminator);
    LU groups stopped doing so (the version table's ``lu_gp_members_nul``)."""
    out = b""
    for line in lines:
        chunk = line.encode() + (b"\n\0" if nul else b"\n")
        if len(out) + len(chunk) > 4096:
            break
        out += chunk
    return out


def _lu_gp(g: Group) -> LuGroup:
    return owner(g, LuGpGroup).lu_gp


def _core(g: Group) -> "TargetCore":
    return owner(g, LuGpGroup).core


def _show_lu_gp_id(g: Group) -> str:
    gp = _lu_gp(g)
    return f"{gp.id}\n" if gp.valid_id else ""


def _store_lu_gp_id(g: Group, buf: bytes) -> None:
    core, gp = _core(g), _lu_gp(g)
    try:
        val = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"kstrtoul() returned -{e.errno} for lu_gp_id") from None
    if val > 0xFFFF:
        raise ConfigfsError(errno.EINVAL, f"ALUA lu_gp_id: {val} exceeds maximum: 0x0000ffff")
    core.alua.set_lu_gp_id(gp, val)
    core.log.debug(f"Target_Core_ConfigFS: Set ALUA Logical Unit Group: "
                   f"core/alua/lu_gps/{gp.name} to ID: {gp.id}")


def _show_lu_gp_members(g: Group) -> bytes:
    return _members_text([f"{d.hba.name}/{d.name}" for d in _lu_gp(g).members],
                         nul=_core(g).kernel.has("lu_gp_members_nul"))


def _show_v3_state(g: Group) -> str:
    return f"{_lu_gp(g).access_state}\n"


def _store_v3_lu_state(g: Group, buf: bytes) -> None:
    val = kstrtoul(buf, 0)
    if val not in STATE_SUPPORT:
        raise ConfigfsError(errno.EINVAL, f"Unknown ALUA access state: 0x{val:02x}")
    _lu_gp(g).access_state = val


LU_GP_ATTRS = (
    Attribute("lu_gp_id", _show_lu_gp_id, _store_lu_gp_id),
    Attribute("members", _show_lu_gp_members),
)
V3_LU_GP_ATTRS = (
    Attribute("alua_access_state", _show_v3_state, _store_v3_lu_state),
) + LU_GP_ATTRS


class LuGpGroup(Group):
    """``core/alua/lu_gps/<name>``."""

    __slots__ = ("core", "lu_gp")

    def __init__(self, core: "TargetCore", lu_gp: LuGroup):
        super().__init__(lu_gp.name)
        self.core = core
        self.lu_gp = lu_gp

    def attribute_table(self):
        return V3_LU_GP_ATTRS if self.core.profile.legacy else LU_GP_ATTRS


class LuGpsGroup(Group):
    """``core/alua/lu_gps``: mkdir makes an LU group without an id."""

    __slots__ = ("core",)

    def __init__(self, core: "TargetCore"):
        super().__init__("lu_gps")
        self.core = core
        self.add_default_group(LuGpGroup(core, core.alua.default_lu_gp))

    def make_group(self, name: str) -> Group:
        self.core.log.debug(f"Target_Core_ConfigFS: Allocated ALUA Logical Unit Group: "
                            f"core/alua/lu_gps/{name}")
        return LuGpGroup(self.core, LuGroup(name))

    def drop_item(self, child: Group) -> None:
        gp = owner(child, LuGpGroup).lu_gp
        self.core.log.debug(f"Target_Core_ConfigFS: Releasing ALUA Logical Unit Group: "
                            f"core/alua/lu_gps/{gp.name}, ID: {gp.id}")
        self.core.alua.free_lu_gp(gp)


# -- tg_pt_gp attributes ----------------------------------------------------------------------
def _gp(g: Group) -> TgPtGp:
    return owner(g, TgPtGpGroup).gp


def _show_state(g: Group) -> str:
    return f"{_gp(g).access_state}\n"


def _store_state(g: Group, buf: bytes) -> None:
    gp = _gp(g)
    if not gp.valid_id:
        raise ConfigfsError(errno.EINVAL, "Unable to do implicit ALUA on invalid tg_pt_gp ID")
    if gp.dev is None:  # v3.0 global group: no device behind it
        gp.access_state = kstrtoul(buf, 0)
        return
    if not gp.dev.configured:
        raise ConfigfsError(errno.ENODEV, "Unable to set alua_access_state while device is "
                            "not configured")
    try:
        val = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"Unable to extract new ALUA access state from "
                            f"{cstr(buf).strip()}") from None
    if not gp.access_type & TPGS_IMPLICIT_ALUA:
        raise ConfigfsError(errno.EINVAL, "Unable to process implicit configfs ALUA transition "
                            "while TPGS_IMPLICIT_ALUA is disabled")
    if gp.access_type & TPGS_EXPLICIT_ALUA and val == ALUA_ACCESS_STATE_LBA_DEPENDENT:
        raise ConfigfsError(errno.EINVAL, "Unable to process implicit configfs ALUA transition "
                            "while explicit ALUA management is enabled")
    gp.dev.core.alua.transition(gp, val, explicit=False)


def _show_status(g: Group) -> str:
    return f"{STATUS_NAMES.get(_gp(g).access_status, 'Unknown')}\n"


def _store_status(g: Group, buf: bytes) -> None:
    gp = _gp(g)
    if not gp.valid_id:
        raise ConfigfsError(errno.EINVAL, "Unable to set ALUA access status on invalid "
                            "tg_pt_gp ID")
    try:
        val = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"Unable to extract new ALUA access status from "
                            f"{cstr(buf).strip()}") from None
    if val not in (0, 1, 2):
        raise ConfigfsError(errno.EINVAL, f"Illegal ALUA access status: 0x{val:02x}")
    gp.access_status = val


def _show_type(g: Group) -> str:
    t = _gp(g).access_type
    code = (1 if t & TPGS_IMPLICIT_ALUA else 0) | (2 if t & TPGS_EXPLICIT_ALUA else 0)
    return f"{TYPE_NAMES[code]}\n"


def _store_type(g: Group, buf: bytes) -> None:
    try:
        val = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, "Unable to extract alua_access_type") from None
    if val > 3:
        raise ConfigfsError(errno.EINVAL, f"Illegal value for alua_access_type: {val}")
    _gp(g).access_type = (TPGS_IMPLICIT_ALUA if val & 1 else 0) | \
        (TPGS_EXPLICIT_ALUA if val & 2 else 0)


def _support_attr(name: str, bit: int) -> Attribute:
    def show(g: Group) -> str:
        return f"{1 if _gp(g).supported_states & bit else 0}\n"

    def store(g: Group, buf: bytes) -> None:
        gp = _gp(g)
        if not gp.valid_id:
            raise ConfigfsError(errno.EINVAL, f"Unable to set {name} ALUA state on invalid "
                                "tg_pt_gp ID")
        try:
            val = kstrtoul(buf, 0)
        except ConfigfsError:
            raise ConfigfsError(errno.EINVAL, f"Invalid value '{cstr(buf)}', must be '0' or "
                                "'1'") from None
        if val > 1:
            raise ConfigfsError(errno.EINVAL, f"Invalid value '{val}', must be '0' or '1'")
        if val:
            gp.supported_states |= bit
        else:
            gp.supported_states &= ~bit
    return Attribute(f"alua_support_{name}", show, store)


def _int_attr(name: str, field: str, limit: int, extract: str, too_big: str) -> Attribute:
    def show(g: Group) -> str:
        return f"{getattr(_gp(g), field)}\n"

    def store(g: Group, buf: bytes) -> None:
        try:
            val = kstrtoul(buf, 0)
        except ConfigfsError as e:
            raise ConfigfsError(e.errno, extract) from None
        if val > limit:
            raise ConfigfsError(errno.EINVAL, too_big.format(val=val))
        setattr(_gp(g), field, val)
    return Attribute(name, show, store)


def _show_tg_pt_gp_id(g: Group) -> str:
    gp = _gp(g)
    return f"{gp.id}\n" if gp.valid_id else ""


def _store_tg_pt_gp_id(g: Group, buf: bytes) -> None:
    gp = _gp(g)
    try:
        val = kstrtoul(buf, 0)
    except ConfigfsError as e:
        raise ConfigfsError(e.errno, f"ALUA tg_pt_gp_id: invalid value '{cstr(buf)}' for "
                            "tg_pt_gp_id") from None
    if val > 0xFFFF:
        raise ConfigfsError(errno.EINVAL, f"ALUA tg_pt_gp_id: {val} exceeds maximum: 0x0000ffff")
    core = owner(g, TgPtGpGroup).core
    core.alua.set_tg_pt_gp_id(gp, val)
    core.log.debug(f"Target_Core_ConfigFS: Set ALUA Target Port Group: "
                   f"core/alua/tg_pt_gps/{gp.name} to ID: {gp.id}")


def _show_tg_pt_gp_members(g: Group) -> bytes:
    return _members_text([lun.member_path() for lun in _gp(g).members])


TG_PT_GP_ATTRS = (
    Attribute("alua_access_state", _show_state, _store_state),
    Attribute("alua_access_status", _show_status, _store_status),
    Attribute("alua_access_type", _show_type, _store_type),
    _support_attr("transitioning", ALUA_T_SUP),
    _support_attr("offline", ALUA_O_SUP),
    _support_attr("lba_dependent", ALUA_LBD_SUP),
    _support_attr("unavailable", ALUA_U_SUP),
    _support_attr("standby", ALUA_S_SUP),
    _support_attr("active_nonoptimized", ALUA_AN_SUP),
    _support_attr("active_optimized", ALUA_AO_SUP),
    _int_attr("alua_write_metadata", "write_metadata", 1, "Unable to extract "
              "alua_write_metadata", "Illegal value for alua_write_metadata: {val}"),
    _int_attr("nonop_delay_msecs", "nonop_delay_msecs", ALUA_MAX_NONOP_DELAY_MSECS,
              "Unable to extract nonop_delay_msecs", "Passed nonop_delay_msecs: {val}, exceeds "
              f"ALUA_MAX_NONOP_DELAY_MSECS: {ALUA_MAX_NONOP_DELAY_MSECS}"),
    _int_attr("trans_delay_msecs", "trans_delay_msecs", ALUA_MAX_TRANS_DELAY_MSECS,
              "Unable to extract trans_delay_msecs", "Passed trans_delay_msecs: {val}, exceeds "
              f"ALUA_MAX_TRANS_DELAY_MSECS: {ALUA_MAX_TRANS_DELAY_MSECS}"),
    _int_attr("implicit_trans_secs", "implicit_trans_secs", ALUA_MAX_IMPLICIT_TRANS_SECS,
              "Unable to extract implicit_trans_secs", "Passed implicit_trans_secs: {val}, "
              f"exceeds ALUA_MAX_IMPLICIT_TRANS_SECS: {ALUA_MAX_IMPLICIT_TRANS_SECS}"),
    _int_attr("preferred", "preferred", 1, "Unable to extract preferred ALUA value",
              "Illegal value for preferred ALUA: {val}"),
    Attribute("tg_pt_gp_id", _show_tg_pt_gp_id, _store_tg_pt_gp_id),
    Attribute("members", _show_tg_pt_gp_members),
)

V3_TG_PT_GP_ATTRS = (
    Attribute("alua_access_state", _show_state, _store_state),
    Attribute("members", _show_tg_pt_gp_members),
    Attribute("tg_pt_gp_id", _show_tg_pt_gp_id, _store_tg_pt_gp_id),
)


class TgPtGpGroup(Group):
    """``core/<hba>/<dev>/alua/<name>`` (and v3.0's global ``core/alua/tg_pt_gps/<name>``)."""

    __slots__ = ("core", "gp")

    def __init__(self, core: "TargetCore", gp: TgPtGp):
        super().__init__(gp.name)
        self.core = core
        self.gp = gp

    def attribute_table(self):
        return V3_TG_PT_GP_ATTRS if self.core.profile.legacy else TG_PT_GP_ATTRS


class TgPtGpsGroup(Group):
    """``core/<hba>/<dev>/alua``: mkdir makes a target port group without an id."""

    __slots__ = ("dev",)

    def __init__(self, dev: "SeDevice"):
        super().__init__("alua")
        self.dev = dev
        gp = dev.core.alua.alloc_tg_pt_gp(dev, "default_tg_pt_gp", default=True)
        dev.default_tg_pt_gp = gp
        self.add_default_group(TgPtGpGroup(dev.core, gp))

    def make_group(self, name: str) -> Group:
        dev = self.dev
        dev.log.debug(f"Target_Core_ConfigFS: Allocated ALUA Target Port Group: "
                      f"alua/tg_pt_gps/{name}")
        return TgPtGpGroup(dev.core, dev.core.alua.alloc_tg_pt_gp(dev, name, default=False))

    def drop_item(self, child: Group) -> None:
        gp = owner(child, TgPtGpGroup).gp
        self.dev.log.debug(f"Target_Core_ConfigFS: Releasing ALUA Target Port Group: "
                           f"alua/tg_pt_gps/{gp.name}, ID: {gp.id}")
        self.dev.core.alua.free_tg_pt_gp(gp)


class V3TgPtGpsGroup(Group):
    """v3.0's global ``core/alua/tg_pt_gps`` with its ``default_tg_pt_gp``."""

    __slots__ = ("core",)

    def __init__(self, core: "TargetCore"):
        super().__init__("tg_pt_gps")
        self.core = core
        gp = TgPtGp(None, "default_tg_pt_gp")  # type: ignore[arg-type]
        gp.valid_id = True
        core.alua.global_tg_pt_gp = gp
        self.add_default_group(TgPtGpGroup(core, gp))


class AluaGroup(Group):
    """``core/alua``: holds lu_gps (and, in v3.0, the global tg_pt_gps)."""

    __slots__ = ("core",)

    def __init__(self, core: "TargetCore"):
        super().__init__("alua")
        self.core = core
        self.add_default_group(LuGpsGroup(core))
        if core.profile.legacy:
            self.add_default_group(V3TgPtGpsGroup(core))
