"""INQUIRY data: the standard page and the VPD pages (the kernel's spc_emulate_inquiry_std and
spc_emulate_evpd_* in target_core_spc.c).

Every builder returns the bytes the kernel would transfer: it fills a zeroed buffer the way
the kernel does (so its quirks survive) and cuts it at the page's own length; the engine then
truncates to the allocation length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from simfs.core.fabric import TARGET_PROT_DIN_PASS, TARGET_PROT_DOUT_PASS
from simfs.scsi import sense
from simfs.scsi import status as S

if TYPE_CHECKING:
    from simfs.core.device import SeDevice
    from simfs.scsi.command import Command

SE_INQUIRY_BUF = 1024
INQUIRY_VENDOR_LEN, INQUIRY_MODEL_LEN, INQUIRY_REVISION_LEN = 8, 16, 4

TYPE_DISK, TYPE_TAPE, TYPE_ROM = 0x00, 0x01, 0x05

# include/scsi/scsi_proto.h: enum scsi_version_descriptor
VD_FCP4, VD_ISCSI, VD_SAM5, VD_SAS3 = 0x0A40, 0x0960, 0x00A0, 0x0C60
VD_SBC3, VD_SBP3, VD_SPC4, VD_SRP = 0x04C0, 0x0980, 0x0460, 0x0940

TRANSPORT_VD = {S.PROTO_FCP: VD_FCP4, S.PROTO_ISCSI: VD_ISCSI, S.PROTO_SAS: VD_SAS3,
                S.PROTO_1394: VD_SBP3, S.PROTO_SRP: VD_SRP}

TPGS_EXPLICIT_ALUA = 0x20


def device_type(dev: "SeDevice") -> int:
    return dev.bdev.get_device_type()


def check_wce(dev: "SeDevice") -> bool:
    """target_check_wce: the backend's own write cache state, else emulate_write_cache."""
    if dev.bdev.has_get_write_cache():
        return bool(dev.bdev.get_write_cache())
    return dev.attrib.emulate_write_cache > 0


def check_fua(dev: "SeDevice") -> bool:
    """target_check_fua: FUA is only advertised together with a write cache."""
    return check_wce(dev) and dev.attrib.emulate_fua_write > 0


def sup_prot_pass(cmd: "Command") -> bool:
    """sess->sup_prot_ops & (TARGET_PROT_DIN_PASS | TARGET_PROT_DOUT_PASS): whether the
    fabric passes T10-PI through its sessions (its FabricOps.sup_prot_ops, on the port)."""
    return bool(cmd.nexus.port.sup_prot_ops & (TARGET_PROT_DIN_PASS | TARGET_PROT_DOUT_PASS))


def prot_type(cmd: "Command") -> int:
    """dev pi_prot_type, when the session can pass protection information, else 0
    (sess_prot_type, a fabric-side setting, is not modelled)."""
    return cmd.dev.attrib.pi_prot_type if sup_prot_pass(cmd) else 0


def sense_desc_format(dev: "SeDevice") -> bool:
    """target_sense_desc_format: descriptor sense for devices past 2^32 blocks."""
    try:
        return dev.bdev.get_blocks() > 0xFFFFFFFF
    except Exception:  # noqa: BLE001 - an unconfigured backend has no size
        return False


def _put16(buf: bytearray, off: int, v: int) -> None:
    buf[off:off + 2] = (v & 0xFFFF).to_bytes(2, "big")


def _put32(buf: bytearray, off: int, v: int) -> None:
    buf[off:off + 4] = (v & 0xFFFFFFFF).to_bytes(4, "big")


def _put64(buf: bytearray, off: int, v: int) -> None:
    buf[off:off + 8] = (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def _ascii(s: str) -> bytes:
    return s.encode("latin-1", "replace")


def _padded(s: str, n: int) -> bytes:
    """memset to spaces then memcpy strnlen(s, n) bytes: left-aligned, space-padded."""
    return _ascii(s)[:n].ljust(n, b" ")


# -- standard INQUIRY ---------------------------------------------------------------------------
def inquiry_std(cmd: "Command") -> bytes:
    """spc_emulate_inquiry_std: 96 bytes (additional length 91)."""
    dev, port = cmd.dev, cmd.nexus.port
    dtype = device_type(dev)
    buf = bytearray(SE_INQUIRY_BUF)
    buf[0] = dtype
    if dtype == TYPE_TAPE:
        buf[1] = 0x80  # RMB
    buf[2] = 0x06  # SPC-4
    buf[3] = 2  # NORMACA=0, HISUP=0, RESPONSE DATA FORMAT=2
    # spc_fill_alua_data: SCCS, then TPGS from the LUN's target port group
    buf[5] = 0x80
    gp = port.tg_pt_gp
    if gp is not None:
        buf[5] |= gp.access_type & 0x30
    if dev.attrib.emulate_3pc:
        buf[5] |= 0x08
    if prot_type(cmd):
        buf[5] |= 0x01  # PROTECT
    if dev.export_count > 1:
        buf[6] |= 0x10  # MULTIP
    buf[7] = 0x02  # CmdQue
    w = dev.wwn
    buf[8:16] = _padded(w.vendor, INQUIRY_VENDOR_LEN)
    buf[16:32] = _padded(w.model, INQUIRY_MODEL_LEN)
    buf[32:36] = _padded(w.revision, INQUIRY_REVISION_LEN)
    _put16(buf, 58, VD_SAM5)
    vd = TRANSPORT_VD.get(port.proto_id)
    if vd is None:
        dev.log.warn("Cannot find VERSION DESCRIPTOR value for unknown SCSI transport "
                     f"PROTOCOL IDENTIFIER {_c_alt_hex(port.proto_id)}")
        vd = 0
    _put16(buf, 60, vd)
    _put16(buf, 62, VD_SPC4)
    if dtype == TYPE_DISK:
        _put16(buf, 64, VD_SBC3)
    buf[4] = 91
    return bytes(buf[:buf[4] + 5])


def _c_alt_hex(v: int) -> str:
    """C's %#x: 0 has no prefix."""
    return f"{v:#x}" if v else "0"


# -- VPD pages --------------------------------------------------------------------------------
def _evpd_80(cmd: "Command", buf: bytearray) -> None:
    dev = cmd.dev
    if dev.emulated_serial:
        s = _ascii(dev.wwn.unit_serial)
        buf[4:4 + len(s)] = s
        buf[3] = (len(s) + 1) & 0xFF  # + the NUL terminator


def naa_6h(dev: "SeDevice") -> bytes:
    """spc_gen_naa_6h_vendor_specific: 16 bytes, NAA 6 + company id + serial hex digits."""
    buf = bytearray(16)
    cid = dev.wwn.company_id
    buf[0] = 0x60 | ((cid >> 20) & 0xF)
    buf[1] = (cid >> 12) & 0xFF
    buf[2] = (cid >> 4) & 0xFF
    buf[3] = (cid & 0xF) << 4
    off, nxt = 3, True
    for ch in dev.wwn.unit_serial:
        if off >= 16:
            break
        if ch not in "0123456789abcdefABCDEF":
            continue
        val = int(ch, 16)
        if nxt:
            nxt = False
            buf[off] |= val
            off += 1
        else:
            nxt = True
            buf[off] = val << 4
    return bytes(buf)


def _scsi_name(buf: bytearray, off: int, proto_id: int, assoc: int, text: str) -> int:
    """A SCSI name string designator (UTF-8, PIV=1): returns the descriptor's size."""
    buf[off] = ((proto_id << 4) | 0x3) & 0xFF
    buf[off + 1] = 0x80 | assoc | 0x8
    name = text.encode("utf-8")
    n = len(name) + 1  # NUL terminator
    n += (-n) & 3
    n = min(n, 256)
    body = name[:n]
    buf[off + 4:off + 4 + len(body)] = body
    buf[off + 3] = n & 0xFF
    return 4 + n


def _evpd_83(cmd: "Command", buf: bytearray) -> None:
    dev, port = cmd.dev, cmd.nexus.port
    w = dev.wwn
    off, length = 4, 0
    if dev.emulated_serial:
        buf[4] = 0x01  # binary
        buf[5] = 0x03  # association LU, NAA
        buf[7] = 0x10
        buf[8:24] = naa_6h(dev)
        length = 20
        off = length + 4
    # T10 vendor identification
    id_len = 8
    if dev.emulated_serial:
        text = _ascii(f"{w.model}:{w.unit_serial}")
        buf[off + 12:off + 12 + len(text)] = text
        id_len += len(text)
    buf[off] = 0x02  # ASCII
    buf[off + 1] = 0x01  # T10 vendor ID
    buf[off + 2] = 0x00
    buf[off + 4:off + 12] = _padded(w.vendor, INQUIRY_VENDOR_LEN)
    id_len += 1  # NUL terminator
    buf[off + 3] = id_len & 0xFF
    length += id_len + 4
    off += id_len + 4
    proto = port.proto_id
    # relative target port identifier
    buf[off] = ((proto << 4) | 0x1) & 0xFF
    buf[off + 1] = 0x80 | 0x10 | 0x4
    buf[off + 3] = 4
    _put16(buf, off + 6, port.rtpi)
    off += 8
    length += 8
    # target port group
    gp = port.tg_pt_gp
    if gp is not None:
        buf[off] = ((proto << 4) | 0x1) & 0xFF
        buf[off + 1] = 0x80 | 0x10 | 0x5
        buf[off + 3] = 4
        _put16(buf, off + 6, gp.id)
        off += 8
        length += 8
    # logical unit group (no protocol identifier, no PIV, association LU)
    if dev.lu_gp_member and dev.lu_gp is not None:
        buf[off] |= 0x1
        buf[off + 1] |= 0x6
        buf[off + 3] = 4
        _put16(buf, off + 6, dev.lu_gp.id)
        off += 8
        length += 8
    # SCSI name strings: the target port, then the target device
    n = _scsi_name(buf, off, proto, 0x10, port.name())
    off += n
    length += n
    n = _scsi_name(buf, off, proto, 0x20, port.wwn)
    off += n
    length += n
    _put16(buf, 2, length)


def _evpd_86(cmd: "Command", buf: bytearray) -> None:
    dev = cmd.dev
    buf[3] = 0x3C
    pt = prot_type(cmd)
    if pt == 1:
        buf[4] = 0x05  # GRD_CHK + REF_CHK (type 1)
    elif pt == 3:
        buf[4] = 0x04  # GRD_CHK only (type 3)
    if device_type(dev) == TYPE_DISK and pt:
        buf[4] |= 0x3 << 3  # SPT: types 1 and 3 supported
    buf[5] = 0x07  # HEADSUP, ORDSUP, SIMPSUP
    if check_wce(dev):
        buf[6] = 0x01  # V_SUP
    if dev.lba_map:
        buf[8] = 0x10  # R_SUP


def _evpd_b0(cmd: "Command", buf: bytearray) -> None:
    dev, a = cmd.dev, cmd.dev.attrib
    have_tp = bool(a.emulate_tpu or a.emulate_tpws)
    buf[0] = device_type(dev)
    buf[3] = 0x3C if have_tp else 0x10
    buf[4] = 0x01  # WSNZ
    if a.emulate_caw:
        buf[5] = 0x01  # MAXIMUM COMPARE AND WRITE LENGTH
    io_min = _backend_hint(dev, "get_io_min")
    _put16(buf, 6, io_min // a.block_size if io_min else 1)
    mtl = 0
    sg_nents = getattr(cmd.nexus.port, "max_data_sg_nents", 0) or 0
    if sg_nents and a.block_size:
        mtl = (sg_nents * 4096) // a.block_size
    io_max_blocks = (a.hw_max_sectors * a.hw_block_size // a.block_size) if a.block_size else 0
    _put32(buf, 8, min(mtl, io_max_blocks) if mtl and io_max_blocks else (mtl or io_max_blocks))
    io_opt = _backend_hint(dev, "get_io_opt")
    _put32(buf, 12, io_opt // a.block_size if io_opt else a.optimal_sectors)
    if have_tp:
        _put32(buf, 20, a.max_unmap_lba_count)
        _put32(buf, 24, a.max_unmap_block_desc_count)
        _put32(buf, 28, a.unmap_granularity)
        _put32(buf, 32, a.unmap_granularity_alignment)
        if a.unmap_granularity_alignment:
            buf[32] |= 0x80  # UGAVALID
    _put64(buf, 36, a.max_write_same_len)


def _backend_hint(dev: "SeDevice", name: str) -> int:
    """The backend's get_io_min/get_io_opt (a block queue's limits), 0 when it has none."""
    fn = getattr(dev.bdev, name, None)
    if fn is None:
        return 0
    try:
        return int(fn() or 0)
    except Exception:  # noqa: BLE001
        return 0


def _evpd_b1(cmd: "Command", buf: bytearray) -> None:
    buf[0] = device_type(cmd.dev)
    buf[3] = 0x3C
    buf[5] = 1 if cmd.dev.attrib.is_nonrot else 0


def _evpd_b2(cmd: "Command", buf: bytearray) -> None:
    a = cmd.dev.attrib
    buf[0] = device_type(cmd.dev)
    _put16(buf, 2, 0x0004)
    buf[4] = 0x00  # THRESHOLD EXPONENT
    if a.emulate_tpu:
        buf[5] = 0x80  # LBPU
    if a.emulate_tpws:
        buf[5] |= 0x40 | 0x20  # LBPWS, LBPWS10
    if (a.emulate_tpu or a.emulate_tpws) and a.unmap_zeroes_data:
        buf[5] |= 0x04  # LBPRZ


def _evpd_b3(cmd: "Command", buf: bytearray) -> None:
    dev = cmd.dev
    buf[0] = device_type(dev)
    buf[3] = 0x0C
    size, mult = dev.lba_map_segment
    _put32(buf, 8, size)
    _put32(buf, 12, mult)


def _evpd_00(cmd: "Command", buf: bytearray) -> None:
    # Pages are listed only once a unit serial (hence the NAA designator) exists.
    if cmd.dev.emulated_serial:
        buf[3] = len(EVPD_HANDLERS)
        for i, (page, _) in enumerate(EVPD_HANDLERS):
            buf[4 + i] = page


EVPD_HANDLERS: list[tuple[int, Callable[["Command", bytearray], None]]] = [
    (0x00, _evpd_00), (0x80, _evpd_80), (0x83, _evpd_83), (0x86, _evpd_86),
    (0xB0, _evpd_b0), (0xB1, _evpd_b1), (0xB2, _evpd_b2), (0xB3, _evpd_b3),
]


def evpd(cmd: "Command", page: int) -> Optional[bytes]:
    """One VPD page, or None when the kernel has no handler for ``page``."""
    for code, handler in EVPD_HANDLERS:
        if code == page:
            buf = bytearray(SE_INQUIRY_BUF)
            buf[0] = device_type(cmd.dev)
            buf[1] = page
            handler(cmd, buf)
            return bytes(buf[:int.from_bytes(buf[2:4], "big") + 4])
    return None


def emulate_inquiry(cmd: "Command") -> bytes:
    """spc_emulate_inquiry."""
    cdb, dev = cmd.cdb, cmd.dev
    if not cdb[1] & 0x01:
        if cdb[2]:
            dev.log.err(f"INQUIRY with EVPD==0 but PAGE CODE={cdb[2]:02x}")
            raise sense.INVALID_CDB_FIELD()
        return inquiry_std(cmd)
    data = evpd(cmd, cdb[2])
    if data is None:
        dev.log.debug(f"Unknown VPD Code: 0x{cdb[2]:02x}")
        raise sense.INVALID_CDB_FIELD()
    return data
