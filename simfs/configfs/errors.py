"""The one exception that carries a kernel errno out of the model."""

import errno as _errno
import os


class ConfigfsError(OSError):
    """A refused configfs operation: the errno the kernel returns, and why.

    ``reason`` is the kernel log line explaining the refusal (``None`` where the
    kernel stays silent; the tree then logs a configfs-level explanation).
    """

    def __init__(self, err: int, reason: str | None = None):
        super().__init__(err, os.strerror(err))
        self.reason = reason

    @property
    def name(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))
