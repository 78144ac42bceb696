"""A model of configfs: groups, items, attributes, symlinks and configfs's own rules.

Nothing here knows about FUSE or about SCSI; the target core builds its tree from
these pieces and the FUSE adapter drives them.
"""

from simfs.configfs.errors import ConfigfsError
from simfs.configfs.node import Attribute, Group, Symlink, owner
from simfs.configfs.tree import ConfigfsTree, OpenAttribute

__all__ = ["Attribute", "ConfigfsError", "ConfigfsTree", "Group", "OpenAttribute", "Symlink",
           "owner"]
