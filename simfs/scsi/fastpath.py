"""READ and WRITE (10/16) when nothing but the transfer can happen.

The full pipeline (:meth:`simfs.scsi.engine.ScsiEngine.submit`) builds a command, runs
sbc_parse_cdb's checks, then the unit attention, ALUA and reservation checks, then the
transfer. Most commands a fabric sends are READ/WRITE(10/16) for which every one of those
checks passes trivially: no unit attention queued for the nexus, no injected fault, the
port Active/Optimized, no reservation of either kind, no PROTECT/DPO/FUA bit, the fabric's
length equal to the CDB's, the range inside the device, a LUN that may be written. Then the
outcome is the transfer alone, and :func:`submit` runs it after reading a handful of
attributes. Anything else returns None and the command takes the full pipeline, which gives
the answer it always gave (sense, log lines, side effects); so the fast path changes how
long a command takes, never what it does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from simfs.scsi import alua, pr, sbc, state, stats
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_OUT, Nexus, Result

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

#: opcode -> (is a write, LBA offset, LBA size, transfer length offset, its size)
_RW = {
    S.READ_10: (False, 2, 4, 7, 2),
    S.READ_16: (False, 2, 8, 10, 4),
    S.WRITE_10: (True, 2, 4, 7, 2),
    S.WRITE_16: (True, 2, 8, 10, 4),
}
OPCODES = frozenset(_RW)

_from_bytes = int.from_bytes


def submit(core_lock: Any, nexus: Nexus, dev: "SeDevice", cdb: bytes, data_out: Any,
           data_length: Optional[int], data_direction: Optional[str]) -> Optional[Result]:
    """Run ``cdb`` if it is a READ/WRITE(10/16) that nothing can stop (see the module
    docstring); None when the full pipeline must run it. ``core_lock`` is the tree lock the
    checks read the configuration under. A storage error raises the SenseError or
    StatusError the full pipeline's execute would raise."""
    write, lba_at, lba_len, len_at, len_len = _RW[cdb[0]]
    if len(cdb) < len_at + len_len + 1 or cdb[1] & 0xF8:
        return None  # short CDB, or PROTECT, DPO, FUA: the parser's checks and log lines
    st = state.peek(dev)
    if st is None:
        return None  # the device's first command makes its state
    f = st.faults
    if f is not None and f.any():
        return None  # an injected fault needs its checks
    sectors = _from_bytes(cdb[len_at:len_at + len_len], "big")
    if not sectors:
        return None
    attrib = dev.attrib
    bs = attrib.block_size or attrib.hw_block_size or 512
    size = sectors * bs
    if write:
        if data_direction != DATA_OUT or data_length != size or len(data_out) != size:
            return None
    elif data_direction != DATA_IN or data_length != size or data_out:
        return None
    lba = _from_bytes(cdb[lba_at:lba_at + lba_len], "big")
    port = nexus.port
    with core_lock:
        if not dev.configured or dev.passthrough or attrib.pi_prot_type:
            return None
        if write and (nexus.read_only or port.write_protect or dev.read_only):
            return None
        if lba + sectors > dev.get_blocks() + 1:
            return None
        if st.ua.has_pending(nexus):
            return None
        if getattr(dev.hba, "internal", False):
            return None
        if not dev.passthrough_alua:
            if port.offline:
                return None
            gp = port.tg_pt_gp
            if gp is not None and gp.access_state != alua.AO:
                return None
        # the full pipeline's checks remember every nexus that reaches the device (who
        # gets ALUA and reset UAs, who may meet an APTPL pre-registration): a nexus new to
        # the device takes that path once
        key = nexus.key()
        if key not in st.nexuses or not pr.quiet_for(dev, nexus, key, st):
            return None
        # what the full pipeline counts on its way to the transfer
        stats.lookup(nexus, dev, data_length, data_direction, len(data_out))
        stats.parsed(port)
    with st.io_lock:  # a storage error raises, as it does from the full pipeline's execute
        if write:
            sbc.backend_write(dev, lba, data_out, False)
            data = b""
        else:
            data = sbc.backend_read(dev, lba, size)
    return Result(status=S.GOOD, data=data)
