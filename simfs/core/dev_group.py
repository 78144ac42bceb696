"""The groups that stand for one backstore device: ``core/<hba>/<dev>`` and its default
groups (attrib/, wwn/, pr/, alua/, statistics/ ...), each holding the device it shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simfs.configfs import Group, owner

if TYPE_CHECKING:
    from simfs.core.device import SeDevice


class DevGroup(Group):
    """A group whose attributes act on one device (``dev``)."""

    __slots__ = ("dev",)

    def __init__(self, name: str, dev: "SeDevice"):
        super().__init__(name)
        self.dev = dev


def dev_of(g: Group) -> "SeDevice":
    """The device of the device group ``g`` an attribute lives in."""
    return owner(g, DevGroup).dev
