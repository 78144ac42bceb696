"""EXTENDED COPY and RECEIVE COPY RESULTS over iSCSI, on a target made with shell commands.

Two fileio devices with unit serials (so VPD page 83h carries the NAA designator copies
are addressed by, as targetcli always sets one), both mapped to the initiators' ACLs.
libiscsi's ExtendedCopy and ReceiveCopyResults families run against LUN 0; a raw initiator
copies between the two LUNs and reads the result back. Every kernel version whose EXTENDED
COPY differs runs: 4.18 (any device of the system can be copied to, every failure found by
the work item is LOGICAL UNIT COMMUNICATION FAILURE), 5.14 (ACL lookup, same failures),
6.1 and 6.18.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from helpers import RawInitiator, free_port, mount, umount, wait_port

from simfs.core import kernels

IQN = "iqn.2026-12.org.simfs:xcopy"
INIT_A = "iqn.2026-12.org.example:host-a"
INIT_B = "iqn.2026-12.org.example:host-b"
SERIALS = ("6a1f2e3d-0001-4c5b-9a8e-7d6c5b4a3921", "6a1f2e3d-0002-4c5b-9a8e-7d6c5b4a3922")
SIZE = 64 << 20

pytestmark = pytest.mark.skipif(shutil.which("iscsi-test-cu") is None,
                                reason="libiscsi-bin is not installed")

# The kernel keeps no copy state (target_do_receive_copy_results answers OPERATING
# PARAMETERS only): COPY STATUS after an EXTENDED COPY is INVALID FIELD IN CDB, on every
# version. Before 5.15 every refusal of the parameter list is LOGICAL UNIT COMMUNICATION
# FAILURE (02h/08h/00h), which the descriptor tests do not accept (0394b5048efd's message
# names ValidTgtDescr too: libiscsi 1.19's version of it passes either way).
KERNEL_FAILS = {"ReceiveCopyResults.CopyStatus"}
KERNEL_FAILS_BEFORE_5_15 = KERNEL_FAILS | {
    "ExtendedCopy.ParamHdr", "ExtendedCopy.DescrLimits", "ExtendedCopy.DescrType",
    "ExtendedCopy.ValidSegDescr"}
VERSIONS = ("4.18", "5.14", "6.1", "6.18")
OLD_SENSE = ("4.18", "5.14")


@pytest.fixture(scope="module", params=VERSIONS)
def target(request, tmp_path_factory):
    m = mount(request.param)
    d = tmp_path_factory.mktemp("xcopy")
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    cmds = []
    for i, serial in enumerate(SERIALS):
        dev = f"{t}/core/fileio_0/f{i}"
        cmds += [f"mkdir -p {dev}",
                 f"echo fd_dev_name={d}/lun{i}.img,fd_dev_size={SIZE} > {dev}/control",
                 f"echo {serial} > {dev}/wwn/vpd_unit_serial",
                 f"echo 1 > {dev}/enable",
                 f"mkdir -p {tpg}/lun/lun_{i}",
                 f"ln -s {dev} {tpg}/lun/lun_{i}/lun{i}"]
        for ini in (INIT_A, INIT_B):
            cmds += [f"mkdir -p {tpg}/acls/{ini}/lun_{i}",
                     f"ln -s {tpg}/lun/lun_{i} {tpg}/acls/{ini}/lun_{i}/m"]
    cmds += [f"mkdir {tpg}/np/127.0.0.1:{port}", f"echo 0 > {tpg}/attrib/authentication",
             f"echo 1 > {tpg}/enable"]
    m.ok(" && ".join(cmds))
    wait_port(port)
    yield m, port, d
    umount(m)


def _cu(port: int, family: str) -> tuple[set, str]:
    r = subprocess.run(["iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B,
                        f"--test={family}", f"iscsi://127.0.0.1:{port}/{IQN}/0"],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    summary = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out)
    assert summary, out[-3000:]
    failed = {f"{s}.{t}" for s, t in re.findall(r"Suite (\S+), Test (\S+) had failures", out)}
    return failed, out


@pytest.mark.parametrize("family,count", [("SCSI.ExtendedCopy", 6),
                                          ("SCSI.ReceiveCopyResults", 2)])
def test_libiscsi_families(target, family, count):
    m, port, _ = target
    failed, out = _cu(port, family)
    ran = re.search(r"tests\s+\d+\s+(\d+)", out)
    assert ran and int(ran.group(1)) == count, out[-3000:]
    fails = KERNEL_FAILS_BEFORE_5_15 if m.profile in OLD_SENSE else KERNEL_FAILS
    want = {f for f in fails if family.endswith("." + f.split(".")[0])}
    assert failed == want, f"{sorted(failed)}\n{out[-4000:]}\n{m.dmesg()[-4000:]}"
    # implemented as the kernel implements them: nothing is skipped as "not implemented"
    skips = [ln.strip() for ln in out.splitlines() if "[SKIPPED]" in ln]
    if not kernels.get(m.profile).has("report_supported_opcodes"):
        # libiscsi looks at REPORT SUPPORTED OPERATION CODES first (6.2+), then goes on
        skips = [ln for ln in skips if "REPORT_SUPPORTED_OPCODES is not implemented" not in ln]
    assert not skips, out[-4000:]


def _naa(ini: RawInitiator, lun: int) -> bytes:
    status, data, _ = ini.scsi(bytes([0x12, 1, 0x83, 0, 255, 0]), read_len=255, lun=lun)
    assert status == 0
    assert data[4:8] == bytes([0x01, 0x03, 0x00, 0x10]), data[:8].hex()  # binary NAA, LU
    return data[8:24]


def _cscd(naa: bytes) -> bytes:
    d = bytearray(32)
    d[0], d[4], d[5], d[7] = 0xE4, 0x01, 0x03, 16
    d[8:24] = naa
    d[29:32] = (512).to_bytes(3, "big")  # DISK BLOCK LENGTH
    return bytes(d)


def _xcopy(src: bytes, dst: bytes, blocks: int, src_lba: int, dst_lba: int) -> tuple:
    seg = bytearray(28)
    seg[0], seg[2:4] = 0x02, (0x18).to_bytes(2, "big")
    seg[4:8] = bytes([0, 0, 0, 1])  # source CSCD 0, destination CSCD 1
    seg[10:12] = blocks.to_bytes(2, "big")
    seg[12:20], seg[20:28] = src_lba.to_bytes(8, "big"), dst_lba.to_bytes(8, "big")
    cscds = _cscd(src) + _cscd(dst)
    hdr = bytearray(16)
    hdr[2:4], hdr[8:12] = len(cscds).to_bytes(2, "big"), (28).to_bytes(4, "big")
    params = bytes(hdr) + cscds + bytes(seg)
    cdb = bytes([0x83]) + bytes(9) + len(params).to_bytes(4, "big") + bytes(2)
    return cdb, params


def _rw16(op: int, lba: int, blocks: int) -> bytes:
    return bytes([op, 0]) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big") + bytes(2)


def test_copy_between_two_luns(target):
    """EXTENDED COPY on LUN 1 pulls 64 blocks from LUN 0 (the other device is found in the
    initiator's ACL by its NAA designator); reading LUN 1 over iSCSI returns them, the
    blocks around them are untouched, and the backing file holds them too."""
    m, port, d = target
    ini = RawInitiator(port, target=IQN, initiator=INIT_A)
    try:
        ini.full_login()
        payload = os.urandom(64 * 512)
        status, _, _ = ini.scsi(_rw16(0x8A, 1000, 64), write=payload, lun=0)
        assert status == 0
        naa0, naa1 = _naa(ini, 0), _naa(ini, 1)
        assert naa0 != naa1
        cdb, params = _xcopy(naa0, naa1, 64, 1000, 5000)
        status, _, rsp = ini.scsi(cdb, write=params, lun=1)
        assert status == 0, rsp.data.hex()
        status, data, _ = ini.scsi(_rw16(0x88, 4999, 66), read_len=66 * 512, lun=1)
        assert status == 0
        assert data[512:-512] == payload
        assert data[:512] == bytes(512) and data[-512:] == bytes(512)
        # a designator no device of this ACL has: COPY ABORTED, COPY TARGET DEVICE NOT
        # REACHABLE (0Ah/0Dh/02h) (before 5.15: LOGICAL UNIT COMMUNICATION FAILURE), and
        # the destination is left as it was
        cdb, params = _xcopy(bytes([0x60]) + bytes(15), naa1, 64, 0, 7000)
        status, _, rsp = ini.scsi(cdb, write=params, lun=1)
        sense = rsp.data[2:]  # SCSI Response data: 2-byte sense length, then sense
        want = (0x02, 0x08, 0x00) if m.profile in OLD_SENSE else (0x0A, 0x0D, 0x02)
        assert status == 2 and (sense[2] & 0x0F, sense[12], sense[13]) == want
        status, data, _ = ini.scsi(_rw16(0x88, 7000, 64), read_len=64 * 512, lun=1)
        assert status == 0 and data == bytes(64 * 512)
    finally:
        ini.close()
    with open(d / "lun1.img", "rb") as f:
        f.seek(5000 * 512)
        assert f.read(64 * 512) == payload
    log = m.dmesg()
    assert "Unable to locate 0xe4 descriptor for EXTENDED_COPY" in log
    if m.profile in OLD_SENSE:
        assert ("target_xcopy_do_work: rc: 0, Setting X-COPY CHECK_CONDITION -> sending "
                "response") in log
    else:
        assert "target_xcopy_do_work: rc: 0, sense: 24, XCOPY operation failed" in log


def test_device_outside_the_acl(target):
    """A device enabled but mapped to nobody: 4.18 copies into it (it looked at every
    device of the system, CVE-2020-28374); later kernels do not find it."""
    m, port, d = target
    serial = "6a1f2e3d-0003-4c5b-9a8e-7d6c5b4a3923"
    dev = f"{m.root}/target/core/fileio_0/f2"
    m.ok(f"mkdir -p {dev} && echo fd_dev_name={d}/other.img,fd_dev_size={SIZE} > "
         f"{dev}/control && echo {serial} > {dev}/wwn/vpd_unit_serial && "
         f"echo 1 > {dev}/enable")
    ini = RawInitiator(port, target=IQN, initiator=INIT_A)
    try:
        ini.full_login()
        payload = os.urandom(8 * 512)
        assert ini.scsi(_rw16(0x8A, 0, 8), write=payload, lun=0)[0] == 0
        naa0 = _naa(ini, 0)
        # the NAA designator of the unmapped device: same company id, its own serial hash
        other = _naa_for(serial, naa0)
        cdb, params = _xcopy(naa0, other, 8, 0, 0)
        status, _, _ = ini.scsi(cdb, write=params, lun=0)
    finally:
        ini.close()
    with open(d / "other.img", "rb") as f:
        copied = f.read(8 * 512) == payload
    if m.profile == "4.18":
        assert status == 0 and copied
    else:
        assert status == 2 and not copied
    m.ok(f"rmdir {dev}")


def _naa_for(serial: str, like: bytes) -> bytes:
    """The NAA designator VPD page 83h reports for a device with ``serial``: ``like``'s
    NAA type and company id, then the serial's first 25 hex digits."""
    digits = [int(c, 16) for c in serial if c in "0123456789abcdefABCDEF"][:25]
    nibbles = [like[i // 2] >> 4 if i % 2 == 0 else like[i // 2] & 0xF for i in range(7)]
    nibbles += digits + [0] * (32 - 7 - len(digits))
    return bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 32, 2))
