"""Sense data: the kernel's reasons (``TCM_*``) and the bytes an initiator sees.

A command that fails raises :class:`SenseError`; the engine turns it into CHECK CONDITION
with fixed-format sense (descriptor format for devices beyond 2^32 blocks, as the kernel's
``target_sense_desc_format`` chooses).
"""

from __future__ import annotations

from typing import Optional

from simfs.scsi import status as S


class SenseError(Exception):
    """A CHECK CONDITION: sense key, ASC, ASCQ, and the INFORMATION field when set."""

    def __init__(self, key: int, asc: int = 0, ascq: int = 0, info: Optional[int] = None,
                 why: str = "", tcm: int = 0):
        super().__init__(why or f"sense {key:x}/{asc:02x}/{ascq:02x}")
        self.key, self.asc, self.ascq, self.info = key, asc, ascq, info
        #: the kernel's sense_reason_t number (some log lines print it), 0 when unknown
        self.tcm = tcm
        #: False when the kernel refused the command before setting its residual
        self.residual = True


class ReservationConflict(Exception):
    """RESERVATION CONFLICT status (no sense data)."""


class StatusError(Exception):
    """A status without sense data other than RESERVATION CONFLICT (BUSY, TASK SET FULL), as
    a backend that completes commands itself may return."""

    def __init__(self, status: int, why: str = ""):
        super().__init__(why or f"status {status:#04x}")
        self.status = status


def _reason(key: int, asc: int = 0, ascq: int = 0, tcm: int = 0):
    def make(info: Optional[int] = None, why: str = "") -> SenseError:
        return SenseError(key, asc, ascq, info, why, tcm)
    return make


# The kernel's sense_detail_table, by TCM reason.
NON_EXISTENT_LUN = _reason(S.ILLEGAL_REQUEST, 0x25, 0x00)
UNSUPPORTED_SCSI_OPCODE = _reason(S.ILLEGAL_REQUEST, 0x20, 0x00, tcm=0x02)
SECTOR_COUNT_TOO_MANY = _reason(S.ILLEGAL_REQUEST, 0x20, 0x00)
UNKNOWN_MODE_PAGE = _reason(S.ILLEGAL_REQUEST, 0x24, 0x00)
INVALID_CDB_FIELD = _reason(S.ILLEGAL_REQUEST, 0x24, 0x00, tcm=0x08)
INVALID_PARAMETER_LIST = _reason(S.ILLEGAL_REQUEST, 0x26, 0x00, tcm=0x09)
PARAMETER_LIST_LENGTH_ERROR = _reason(S.ILLEGAL_REQUEST, 0x1A, 0x00, tcm=0x13)
INVALID_RELEASE_OF_PR = _reason(S.ILLEGAL_REQUEST, 0x26, 0x04)
INSUFFICIENT_REGISTRATION_RESOURCES = _reason(S.ILLEGAL_REQUEST, 0x55, 0x04)
ADDRESS_OUT_OF_RANGE = _reason(S.ILLEGAL_REQUEST, 0x21, 0x00)
WRITE_PROTECTED = _reason(S.DATA_PROTECT, 0x27, 0x00)
MISCOMPARE_VERIFY = _reason(S.MISCOMPARE, 0x1D, 0x00)
INCORRECT_AMOUNT_OF_DATA = _reason(S.ABORTED_COMMAND, 0x0C, 0x0D)
UNEXPECTED_UNSOLICITED_DATA = _reason(S.ILLEGAL_REQUEST, 0x0C, 0x0C)
CHECK_CONDITION_ABORT_CMD = _reason(S.ABORTED_COMMAND, 0x29, 0x03)
LOGICAL_UNIT_COMMUNICATION_FAILURE = _reason(S.NOT_READY, 0x08, 0x00, tcm=0x0A)
OUT_OF_RESOURCES = LOGICAL_UNIT_COMMUNICATION_FAILURE
MEDIUM_ERROR_READ = _reason(S.MEDIUM_ERROR, 0x11, 0x00)  # UNRECOVERED READ ERROR
MEDIUM_ERROR_WRITE = _reason(S.MEDIUM_ERROR, 0x0C, 0x00)  # WRITE ERROR
ALUA_TG_PT_STANDBY = _reason(S.NOT_READY, 0x04, 0x0B)
ALUA_TG_PT_UNAVAILABLE = _reason(S.NOT_READY, 0x04, 0x0C)
ALUA_STATE_TRANSITION = _reason(S.NOT_READY, 0x04, 0x0A)
ALUA_OFFLINE = _reason(S.NOT_READY, 0x04, 0x12)
# third-party copy (target_core_xcopy.c)
COPY_TARGET_DEVICE_NOT_REACHABLE = _reason(S.COPY_ABORTED, 0x0D, 0x02, tcm=0x18)
TOO_MANY_TARGET_DESCS = _reason(S.ILLEGAL_REQUEST, 0x26, 0x06, tcm=0x19)
UNSUPPORTED_TARGET_DESC_TYPE_CODE = _reason(S.ILLEGAL_REQUEST, 0x26, 0x07, tcm=0x1A)
TOO_MANY_SEGMENT_DESCS = _reason(S.ILLEGAL_REQUEST, 0x26, 0x08, tcm=0x1B)
UNSUPPORTED_SEGMENT_DESC_TYPE_CODE = _reason(S.ILLEGAL_REQUEST, 0x26, 0x09, tcm=0x1C)


def unit_attention(asc: int, ascq: int) -> SenseError:
    return SenseError(S.UNIT_ATTENTION, asc, ascq)


def build_sense(e: SenseError, descriptor: bool = False) -> bytes:
    """Sense bytes for ``e``: fixed format (70h, 18 bytes) or descriptor format (72h)."""
    if descriptor:
        body = b""
        if e.info is not None:
            body = bytes([0x00, 0x0A, 0x80, 0x00]) + e.info.to_bytes(8, "big")
        return bytes([0x72, e.key, e.asc, e.ascq, 0, 0, 0, len(body)]) + body
    buf = bytearray(18)
    buf[0] = 0x70
    buf[2] = e.key
    buf[7] = 0x0A
    buf[12], buf[13] = e.asc, e.ascq
    if e.info is not None:
        buf[0] |= 0x80  # VALID: the INFORMATION field holds something
        buf[3:7] = (e.info & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(buf)
