"""The SCSI command engine (sans-I/O): CDB in, status + data + sense out.

Fabrics (iSCSI, loopback, the ``simfs scsi`` CLI) build a :class:`~.command.Nexus` and call
:meth:`~.engine.ScsiEngine.submit`; nothing here knows about sockets or FUSE. Command sets
split the way the standards do: :mod:`.spc` (all devices), :mod:`.sbc` (block devices),
:mod:`.pr` (persistent reservations), :mod:`.alua` (asymmetric access).
"""

from simfs.scsi.command import Nexus, Result, TargetPort
from simfs.scsi.engine import ScsiEngine
from simfs.scsi.sense import SenseError

__all__ = ["Nexus", "Result", "ScsiEngine", "SenseError", "TargetPort"]
