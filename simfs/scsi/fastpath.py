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

Commands that arrive together (a fabric's queue of READ/WRITEs for one LUN) can go as a run
(:func:`submit_run`): what the checks read about the device, its port and the nexus is read
once, under one hold of the tree lock, since no command of the run can change it, and
each command's own fields and range are checked as it comes; the first one that cannot
take the fast path ends the run and takes the full pipeline, after the ones before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

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
    st = state.peek(dev)
    if st is None:
        return None  # the device's first command makes its state
    f = st.faults
    if f is not None and f.any():
        return None  # an injected fault needs its checks
    attrib = dev.attrib
    t = _transfer(cdb, data_out, data_length, data_direction,
                  attrib.block_size or attrib.hw_block_size or 512)
    if t is None:
        return None
    write, lba, sectors, size = t
    with core_lock:
        if not _device_ok(nexus, dev, st) or write and _write_protected(nexus, dev) \
                or lba + sectors > dev.get_blocks() + 1:
            return None
        # what the full pipeline counts on its way to the transfer
        stats.lookup(nexus, dev, data_length, data_direction, len(data_out))
        stats.parsed(nexus.port)
    with st.io_lock:  # a storage error raises, as it does from the full pipeline's execute
        if write:
            sbc.backend_write(dev, lba, data_out, False)
            data = b""
        else:
            data = sbc.backend_read(dev, lba, size)
    return Result(status=S.GOOD, data=data)


def submit_run(core_lock: Any, nexus: Nexus, dev: "SeDevice", cmds: Sequence[tuple],
               start: int = 0) -> list:
    """The commands ``cmds[start:]`` (each ``(cdb, data_out, data_length,
    data_direction)``, one nexus, in order) as :func:`submit` would run them one after the
    other, for as long as each may take the fast path: the device, port and nexus are
    checked once under one hold of ``core_lock`` (none of these commands can change what
    they read), each command's own fields and range one by one. Returns one outcome per
    command run, in order: its Result, or the SenseError, StatusError or other exception
    its transfer raised; empty when ``cmds[start]`` must take the full pipeline."""
    st = state.peek(dev)
    if st is None:
        return []
    f = st.faults
    if f is not None and f.any():
        return []
    attrib = dev.attrib
    bs = attrib.block_size or attrib.hw_block_size or 512
    run = []
    with core_lock:
        if not _device_ok(nexus, dev, st):
            return []
        protected = _write_protected(nexus, dev)
        end = dev.get_blocks() + 1
        port = nexus.port
        for i in range(start, len(cmds)):
            cdb, data_out, data_length, data_direction = cmds[i]
            t = _transfer(cdb, data_out, data_length, data_direction, bs) \
                if cdb and cdb[0] in _RW else None
            if t is None or t[0] and protected or t[1] + t[2] > end:
                break
            stats.lookup(nexus, dev, data_length, data_direction, len(data_out))
            stats.parsed(port)
            run.append((t, data_out))
    out = []
    with st.io_lock:
        for (write, lba, _, size), data_out in run:
            try:
                if write:
                    sbc.backend_write(dev, lba, data_out, False)
                    out.append(Result(status=S.GOOD, data=b""))
                else:
                    out.append(Result(status=S.GOOD, data=sbc.backend_read(dev, lba, size)))
            except Exception as e:  # noqa: BLE001 - the caller answers it as submit's caller would
                out.append(e)
    return out


def _transfer(cdb: bytes, data_out: Any, data_length: Optional[int],
              data_direction: Optional[str], bs: int) -> Optional[tuple]:
    """(write, lba, sectors, bytes) of a READ/WRITE(10/16) whose own fields leave nothing
    for the parser to check or refuse (``bs`` the block size); None otherwise."""
    write, lba_at, lba_len, len_at, len_len = _RW[cdb[0]]
    if len(cdb) < len_at + len_len + 1 or cdb[1] & 0xF8:
        return None  # short CDB, or PROTECT, DPO, FUA: the parser's checks and log lines
    sectors = _from_bytes(cdb[len_at:len_at + len_len], "big")
    if not sectors:
        return None
    size = sectors * bs
    if write:
        if data_direction != DATA_OUT or data_length != size or len(data_out) != size:
            return None
    elif data_direction != DATA_IN or data_length != size or data_out:
        return None
    return write, _from_bytes(cdb[lba_at:lba_at + lba_len], "big"), sectors, size


def _write_protected(nexus: Nexus, dev: "SeDevice") -> bool:
    return nexus.read_only or nexus.port.write_protect or dev.read_only


def _device_ok(nexus: Nexus, dev: "SeDevice", st: Any) -> bool:
    """Under the tree lock: nothing about the device, its port or the nexus (a unit
    attention, ALUA, a reservation, protection information, pass-through) stops a read."""
    if not dev.configured or dev.passthrough or dev.attrib.pi_prot_type:
        return False
    if st.ua.has_pending(nexus) or getattr(dev.hba, "internal", False):
        return False
    if not dev.passthrough_alua:
        port = nexus.port
        if port.offline:
            return False
        gp = port.tg_pt_gp
        if gp is not None and gp.access_state != alua.AO:
            return False
    # the full pipeline's checks remember every nexus that reaches the device (who gets
    # ALUA and reset UAs, who may meet an APTPL pre-registration): a nexus new to the
    # device takes that path once
    key = nexus.key()
    return key in st.nexuses and pr.quiet_for(dev, nexus, key, st)
