"""APTPL metadata: the token list written to ``pr/res_aptpl_metadata``."""

from __future__ import annotations

import errno

from simfs.configfs import ConfigfsError
from simfs.core.kparse import Token, kstrtoull, match_int, tokenize

PR_APTPL_MAX_IPORT_LEN = 256
PR_APTPL_MAX_TPORT_LEN = 256
PR_REG_ISID_LEN = 16

TOKENS = [Token(k, f"{k}=%s") for k in (
    "initiator_fabric", "initiator_node", "initiator_sid", "sa_res_key", "target_fabric",
    "target_node")] + [Token(k, f"{k}=%d") for k in (
        "res_holder", "res_type", "res_scope", "res_all_tg_pt", "tpgt", "port_rtpi")] + [
    Token("mapped_lun", "mapped_lun=%u"), Token("target_lun", "target_lun=%u")]


def parse_aptpl_metadata(buf: bytes, log=None) -> dict:
    """Parse one pre-registration; EINVAL with the kernel's reason when it is unusable.

    As in target_pr_res_aptpl_metadata_store(): an over-long initiator_node=,
    initiator_sid= or target_node= is reported (pr_err) but does not fail the write,
    because the store only ``break``s out of its switch and the return code is later
    overwritten by core_scsi3_alloc_aptpl_registration(). A zero sa_res_key counts as
    missing, and res_type is kept as a u8.
    """
    out: dict = {"res_holder": 0, "res_type": 0, "res_scope": 0, "res_all_tg_pt": 0,
                 "mapped_lun": 0, "tpgt": 0, "port_rtpi": 0, "target_lun": 0,
                 "sa_res_key": 0}
    limits = {"initiator_node": ("APTPL metadata initiator_node= exceeds "
                                 f"PR_APTPL_MAX_IPORT_LEN: {PR_APTPL_MAX_IPORT_LEN}",
                                 PR_APTPL_MAX_IPORT_LEN),
              "initiator_sid": ("APTPL metadata initiator_isid= exceeds "
                                f"PR_REG_ISID_LEN: {PR_REG_ISID_LEN}", PR_REG_ISID_LEN),
              "target_node": ("APTPL metadata target_node= exceeds "
                              f"PR_APTPL_MAX_TPORT_LEN: {PR_APTPL_MAX_TPORT_LEN}",
                              PR_APTPL_MAX_TPORT_LEN)}
    for key, arg, _ in tokenize(buf, TOKENS):
        if key is None:
            continue
        if key in limits and len(arg) >= limits[key][1] and log is not None:
            log.err(limits[key][0])
        if key == "sa_res_key":
            try:
                out[key] = kstrtoull(arg, 0)
            except ConfigfsError as e:
                raise ConfigfsError(e.errno, "kstrtoull() failed for sa_res_key=") from None
        elif key in ("mapped_lun", "target_lun"):
            out[key] = kstrtoull(arg, 0)
        elif key in ("initiator_fabric", "initiator_node", "initiator_sid", "target_fabric",
                     "target_node"):
            out[key] = arg
        else:
            out[key] = match_int(arg)
    out["res_type"] &= 0xFF  # type = (u8)arg
    out["tpgt"] &= 0xFFFF  # tpgt = (u16)arg
    if "initiator_node" not in out or "target_node" not in out or not out["sa_res_key"]:
        raise ConfigfsError(errno.EINVAL, "Illegal parameters for APTPL registration")
    if out["res_holder"] and not out["res_type"]:
        raise ConfigfsError(errno.EINVAL,
                            f"Illegal PR type: 0x{out['res_type']:02x} for reservation holder")
    if log is not None:
        log.debug("SPC-3 PR APTPL Successfully added registration"
                  f"{'+reservation' if out['res_holder'] else ''} from metadata")
    return out
