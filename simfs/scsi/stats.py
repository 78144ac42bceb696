"""The core's command counters, counted where the kernel counts them.

What the statistics groups show (target_core_stat.c) comes from three places:

* :func:`lookup`, transport_lookup_cmd_lun: every command that reaches a LUN counts in its
  mapping (``se_dev_entry``: scsi_auth_intr ``num_cmds``, ``read_mbytes``,
  ``write_mbytes``), then, unless it is a write refused there because the LUN is read-only
  for the initiator (counted there too before 5.11: ``lookup_write_protected_counts``), in
  the device (scsi_lu ``num_cmds``, ``read_mbytes``, ``write_mbytes``). Bytes are the fabric's expected transfer length by its data direction,
  counted before the command runs, whatever its outcome.
* :func:`parsed`, target_cmd_parse_cdb: the LUN's ``cmd_pdus`` (scsi_tgt_port ``in_cmds``)
  once the CDB parsed; a command refused by the parser does not count.
* :func:`completed`, target_complete_ok_work: a command that ended GOOD adds its transfer to
  the LUN's ``tx_data_octets`` (reads; scsi_tgt_port ``read_mbytes``) or
  ``rx_data_octets`` (writes, ``write_mbytes``).

A command without a fabric's length and direction (the ``simfs scsi`` CLI) stands for its
data: what it sends is a write of that length, and what a read returns is counted when it
returns. Callers hold the core's tree lock (the kernel's counters are atomic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from simfs.scsi.command import DATA_IN, DATA_OUT

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Nexus


def _mapping(nexus: "Nexus") -> Any:
    """The node ACL's mapping the command came through (None: none, or virtual LUN 0)."""
    acl = nexus.acl
    if acl is None:
        return None
    port = nexus.port
    ml = nexus.mapped_lun
    deve = acl.deves.get(port.lun if ml is None else ml)
    return deve if deve is not None and deve.lun is port else None


def lookup(nexus: "Nexus", dev: "SeDevice", length: Optional[int], direction: Optional[str],
           n_out: int) -> None:
    """transport_lookup_cmd_lun's counters for a command of ``length`` bytes in
    ``direction`` (the fabric's; ``n_out`` bytes came with it)."""
    if direction is None:
        if n_out:
            length, direction = n_out, DATA_OUT
    elif length is None:
        length = n_out
    deve = _mapping(nexus) if nexus.acl is not None else None
    if deve is not None:
        deve.total_cmds += 1
        if direction == DATA_OUT:
            deve.write_bytes += length
        elif direction == DATA_IN:
            deve.read_bytes += length
    if direction == DATA_OUT and (nexus.read_only or nexus.port.write_protect
                                  or dev.read_only) \
            and not dev.core.kernel.has("lookup_write_protected_counts"):
        return  # TCM_WRITE_PROTECTED from the lookup: the device never sees it
    dev.num_cmds += 1
    if direction == DATA_OUT:
        dev.write_bytes += length
    elif direction == DATA_IN:
        dev.read_bytes += length


def parsed(port: Any) -> None:
    """target_cmd_parse_cdb's count: the CDB parsed (the LUN's cmd_pdus)."""
    port.cmd_pdus += 1


def completed(nexus: "Nexus", dev: "SeDevice", length: Optional[int],
              direction: Optional[str], n_out: int, n_in: int) -> None:
    """target_complete_ok_work's counters for a command that ended GOOD with ``n_in`` bytes
    of data-in (the transfer is the fabric's length cut to what was sent)."""
    port = nexus.port
    if direction is None and not n_out:
        # no fabric's word: a read is known by what it returned
        if n_in:
            deve = _mapping(nexus)
            if deve is not None:
                deve.read_bytes += n_in
            dev.read_bytes += n_in
            port.tx_data_octets += n_in
        return
    if direction == DATA_IN:
        port.tx_data_octets += n_in if length is None or n_in < length else length
    elif direction == DATA_OUT or direction is None:
        port.rx_data_octets += n_out if length is None else length
