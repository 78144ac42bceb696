"""``core/<hba>/<dev>/wwn/``: the device's T10 identity (t10_wwn) and VPD designators."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simfs.configfs import Attribute, ConfigfsError, Group
from simfs.core.dev_group import DevGroup, dev_of
from simfs.core.kparse import cstr, kstrtou32

if TYPE_CHECKING:
    from simfs.core.device import SeDevice

INQUIRY_VENDOR_LEN = 8
INQUIRY_MODEL_LEN = 16
INQUIRY_REVISION_LEN = 4
INQUIRY_VPD_SERIAL_LEN = 254
DEFAULT_COMPANY_ID = 0x001405

PROTOCOL_NAMES = {
    0x0: "Fibre Channel", 0x1: "Parallel SCSI", 0x2: "SSA", 0x3: "IEEE 1394",
    0x4: "SCSI Remote Direct Memory Access Protocol", 0x5: "Internet SCSI (iSCSI)",
    0x6: "SAS Serial SCSI Protocol", 0x7: "Automation/Drive Interface Transport Protocol",
    0x8: "AT Attachment Interface ATA/ATAPI",
}
ASSOCIATION_NAMES = {0x00: "addressed logical unit", 0x10: "target port",
                     0x20: "SCSI target device"}
IDENT_TYPE_NAMES = {0x0: "Vendor specific", 0x1: "T10 Vendor ID based", 0x2: "EUI-64 based",
                    0x3: "NAA", 0x4: "Relative target port identifier", 0x8: "SCSI name string"}
CODE_SET_NAMES = {0x1: "Binary", 0x2: "ASCII", 0x3: "UTF-8"}


@dataclass
class VpdDescriptor:
    """One VPD 0x83 designator in the device's list: from a real device (pscsi), or in
    v3.0 also the emulated page the engine built at activation."""

    protocol_id: int | None
    association: int  # 0x00, 0x10, 0x20
    ident_type: int
    code_set: int
    ident: bytes

    def proto_text(self) -> str:
        name = PROTOCOL_NAMES.get(self.protocol_id or 0, f"Unknown 0x{self.protocol_id:02x}")
        return f"T10 VPD Protocol Identifier: {name}\n"

    def ident_text(self) -> str:
        """transport_dump_vpd_ident: binary as the type's hex digit then hex bytes; text
        up to its first NUL (it is printed with %s)."""
        kind = CODE_SET_NAMES.get(self.code_set, "Binary")
        if self.code_set == 0x1:
            value = f"{self.ident_type & 0xF:x}" + self.ident.hex()
        else:
            value = self.ident.split(b"\0", 1)[0].decode("latin-1")
        return f"T10 VPD {kind} Device Identifier: {value}\n"

    def assoc_text(self) -> str:
        return (f"T10 VPD Identifier Association: {ASSOCIATION_NAMES[self.association]}\n"
                f"T10 VPD Identifier Type: "
                f"{IDENT_TYPE_NAMES.get(self.ident_type, 'Unsupported')}\n" + self.ident_text())


class T10Wwn:
    """Vendor, product, revision, company id and unit serial of one device."""

    def __init__(self, dev: "SeDevice"):
        self.dev = dev
        self.vendor = "LIO-ORG"
        self.model = ""
        self.revision = ""
        self.company_id = DEFAULT_COMPANY_ID
        self.unit_serial = ""
        self.vpd: list[VpdDescriptor] = []

    def naa_designator(self) -> bytes:
        """The 16-byte NAA IEEE Registered Extended designator (VPD 0x83), if a serial is set.

        ``6``, the 24-bit company id, then the serial's hex digits (non-hex skipped)
        filling the remaining 25 nibbles.
        """
        nibbles = [6] + [(self.company_id >> s) & 0xF for s in range(20, -1, -4)]
        for ch in self.unit_serial:
            if len(nibbles) == 32:
                break
            if ch in "0123456789abcdefABCDEF":
                nibbles.append(int(ch, 16))
        nibbles += [0] * (32 - len(nibbles))
        return bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 32, 2))


def _dev(g: Group) -> "SeDevice":
    return dev_of(g)


def _check_printable(s: str) -> None:
    if any(not 0x20 <= ord(c) <= 0x7E for c in s):
        raise ConfigfsError(errno.EINVAL,
                            "Emulated T10 Inquiry Data contains non-ASCII-printable characters")


def _identity(field: str, limit: int, too_long: str, exported: str, done: str):
    def show(g: Group) -> str:
        return f"{getattr(_dev(g).wwn, field)}\n"

    def store(g: Group, buf: bytes) -> None:
        dev = _dev(g)
        raw = cstr(buf)
        # strscpy into limit+2 bytes (room for a newline and the NUL): longer -> E2BIG,
        # reported as EOVERFLOW like a too-long stripped value.
        value = raw.strip(" \t\n\r\v\f")
        if len(raw) > limit + 1 or len(value) > limit:
            raise ConfigfsError(errno.EOVERFLOW, too_long)
        _check_printable(value)
        if dev.export_count:
            raise ConfigfsError(errno.EINVAL, exported.format(n=dev.export_count))
        setattr(dev.wwn, field, value)
        dev.log.debug(done + value)
    return show, store


def _attr(name: str, *args) -> Attribute:
    show, store = _identity(*args)
    return Attribute(name, show, store)


def _c_alt_hex08(value: int) -> str:
    """C's "%#08x": the 0x prefix counts in the width, and 0 gets no prefix."""
    return f"{value:#08x}" if value else "00000000"


def _show_company_id(g: Group) -> str:
    return _c_alt_hex08(_dev(g).wwn.company_id) + "\n"


def _store_company_id(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    val = kstrtou32(buf, 0)
    if val >= 0x1000000:
        # target_wwn_company_id_store() returns -EOVERFLOW without a message.
        raise ConfigfsError(errno.EOVERFLOW, None)
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"Unable to set Company ID while {dev.export_count} "
                            "exports exist")
    dev.wwn.company_id = val
    dev.log.debug(f"Target_Core_ConfigFS: Set IEEE Company ID: {_c_alt_hex08(val)}")


def _show_serial(g: Group) -> str:
    return f"T10 VPD Unit Serial Number: {_dev(g).wwn.unit_serial}\n"


def _store_serial(g: Group, buf: bytes) -> None:
    dev = _dev(g)
    s = cstr(buf)
    if dev.firmware_serial:
        raise ConfigfsError(errno.EOPNOTSUPP, "Underlying SCSI device firmware provided VPD "
                            "Unit Serial, ignoring request")
    if len(s) >= INQUIRY_VPD_SERIAL_LEN:
        raise ConfigfsError(errno.EOVERFLOW, "Emulated VPD Unit Serial exceeds "
                            f"INQUIRY_VPD_SERIAL_LEN: {INQUIRY_VPD_SERIAL_LEN}")
    if dev.export_count:
        raise ConfigfsError(errno.EINVAL, f"Unable to set VPD Unit Serial while active "
                            f"{dev.export_count} $FABRIC_MOD exports exist")
    # strstrip: kernel isspace() is C's, which Python's strip() matches for ASCII.
    dev.wwn.unit_serial = s.strip(" \t\n\r\v\f")
    dev.emulated_serial = True
    dev.log.info(f"Target_Core_ConfigFS: Set emulated VPD Unit Serial: {dev.wwn.unit_serial}")


def _show_proto(g: Group) -> str:
    return "".join(d.proto_text() for d in _dev(g).wwn.vpd if d.protocol_id is not None)


def _show_assoc(association: int):
    def show(g: Group) -> str:
        return "".join(d.assoc_text() for d in _dev(g).wwn.vpd if d.association == association)
    return show


def _enosys(g: Group, buf: bytes) -> None:
    raise ConfigfsError(errno.ENOSYS, None)


WWN_ATTRS = (
    _attr("vendor_id", "vendor", INQUIRY_VENDOR_LEN,
          "Emulated T10 Vendor Identification exceeds INQUIRY_VENDOR_LEN: 8",
          "Unable to set T10 Vendor Identification while active {n} exports exist",
          "Target_Core_ConfigFS: Set emulated T10 Vendor Identification: "),
    _attr("product_id", "model", INQUIRY_MODEL_LEN,
          "Emulated T10 Vendor exceeds INQUIRY_MODEL_LEN: 16",
          "Unable to set T10 Model while active {n} exports exist",
          "Target_Core_ConfigFS: Set emulated T10 Model Identification: "),
    _attr("revision", "revision", INQUIRY_REVISION_LEN,
          "Emulated T10 Revision exceeds INQUIRY_REVISION_LEN: 4",
          "Unable to set T10 Revision while active {n} exports exist",
          "Target_Core_ConfigFS: Set emulated T10 Revision: "),
    Attribute("company_id", _show_company_id, _store_company_id),
    Attribute("vpd_unit_serial", _show_serial, _store_serial),
    Attribute("vpd_protocol_identifier", _show_proto),
    Attribute("vpd_assoc_logical_unit", _show_assoc(0x00)),
    Attribute("vpd_assoc_target_port", _show_assoc(0x10)),
    Attribute("vpd_assoc_scsi_target_device", _show_assoc(0x20)),
)

# v3.0: five files; the descriptor files were writable but their store said ENOSYS.
def _v3_needs_se_device(fn):
    """v3.0 read these through se_dev_ptr: ENODEV until the device is enabled."""
    def show(g: Group) -> str:
        if not _dev(g).configured:
            raise ConfigfsError(errno.ENODEV, None)
        return fn(g)
    return show


V3_WWN_ATTRS = (
    Attribute("vpd_unit_serial", _v3_needs_se_device(_show_serial), _store_serial),
    Attribute("vpd_protocol_identifier", _v3_needs_se_device(_show_proto), _enosys),
    Attribute("vpd_assoc_logical_unit", _v3_needs_se_device(_show_assoc(0x00)), _enosys),
    Attribute("vpd_assoc_target_port", _v3_needs_se_device(_show_assoc(0x10)), _enosys),
    Attribute("vpd_assoc_scsi_target_device", _v3_needs_se_device(_show_assoc(0x20)),
              _enosys),
)


class WwnGroup(DevGroup):
    """``<dev>/wwn``."""

    __slots__ = ()

    def __init__(self, dev: "SeDevice"):
        super().__init__("wwn", dev)

    def attribute_table(self):
        if self.dev.legacy:
            return V3_WWN_ATTRS
        return self.dev.core.kernel.table("dev_wwn", WWN_ATTRS)
