"""What the engine keeps per device beyond the configfs-visible state, declared in one place.

One :class:`DeviceState` per device, made on first use and dropped with the device (the
registry is keyed by the device's id and holds no reference to it), so nothing is attached
to core objects.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Optional

from simfs.scsi.ua import UnitAttentions

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.faults import DeviceFaults
    from simfs.scsi.pr import PrRuntime


class DeviceState:
    """The engine's state of one device."""

    def __init__(self, dev: Optional["SeDevice"] = None) -> None:
        #: pending unit attentions: the device's mappings' queues, and those of nexuses
        #: made without a node ACL
        self.ua = UnitAttentions(dev)
        #: serialises data commands on the device against each other
        self.io_lock = threading.Lock()
        #: persistent/SPC-2 reservation state the tree does not show (made by pr.runtime)
        self.pr: Optional["PrRuntime"] = None
        #: injected faults (made by faults.inject); None on the fast path
        self.faults: Optional["DeviceFaults"] = None
        #: every I_T nexus that reached the device: who gets ALUA and reset UAs
        self.nexuses: dict[tuple, Any] = {}


#: id(device) -> its state; an entry leaves when its device is collected (a finalizer), so
#: an id is never found again for another device. Not a WeakKeyDictionary: its lookups
#: build a weak reference each time, and every command looks its device up a few times.
_states: dict[int, DeviceState] = {}
_lock = threading.Lock()


def _forget(key: int) -> None:
    _states.pop(key, None)


def of(dev: "SeDevice") -> DeviceState:
    """The engine state of ``dev`` (made once, on first use)."""
    st = _states.get(id(dev))
    if st is None:
        with _lock:
            st = _states.get(id(dev))
            if st is None:
                st = _states[id(dev)] = DeviceState(dev)
                weakref.finalize(dev, _forget, id(dev))
    return st


def peek(dev: "SeDevice") -> Optional[DeviceState]:
    """The engine state of ``dev`` if any command or fault ever made one."""
    return _states.get(id(dev))
