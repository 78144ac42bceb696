"""simfs: the Linux SCSI target engine's configfs tree, in userspace."""

__version__ = "0.1.0"
