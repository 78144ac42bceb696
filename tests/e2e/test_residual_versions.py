"""target_cmd_size_check's residual rules over iSCSI, per kernel version, as an initiator
sees them: the SCSI Response's status, sense and overflow/underflow residual.

Before 5.12 (simfs's 4.18) a WRITE whose Expected Data Transfer Length differs from the
CDB's is INVALID FIELD IN CDB with no residual in the response, and on a device whose block
size is not 512 every residual is refused ("Failing OVERFLOW/UNDERFLOW for LBA op CDB on
non 512-byte sector setup"). From 5.12 (5.14, 6.x) the residual is set first and the WRITE
is INVALID FIELD IN COMMAND INFORMATION UNIT; 4096-byte devices take residuals.
"""
from __future__ import annotations

import shutil

import pytest

from helpers import RawInitiator, free_port, mount, umount, wait_port

from simfs.iscsi import pdu as P

IQN = "iqn.2026-12.org.simfs:resid"
INI = "iqn.2026-12.org.example:resid"

pytestmark = pytest.mark.skipif(shutil.which("iscsi-inq") is None,
                                reason="libiscsi-bin is not installed")


@pytest.fixture(scope="module", params=["4.18", "5.14", "6.18"])
def site(request, tmp_path_factory):
    """LUN 0: fileio with 512-byte blocks; LUN 1: fileio with 4096-byte blocks."""
    m = mount(request.param)
    d = tmp_path_factory.mktemp("resid")
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    cmds = []
    for i, bs in enumerate((512, 4096)):
        dev = f"{t}/core/fileio_0/f{i}"
        cmds += [f"mkdir -p {dev}",
                 f"echo fd_dev_name={d}/f{i}.img,fd_dev_size={8 << 20} > {dev}/control",
                 f"echo 1 > {dev}/enable", f"echo {bs} > {dev}/attrib/block_size",
                 f"mkdir -p {tpg}/lun/lun_{i} {tpg}/acls/{INI}/lun_{i}",
                 f"ln -s {dev} {tpg}/lun/lun_{i}/l", f"ln -s {tpg}/lun/lun_{i} "
                 f"{tpg}/acls/{INI}/lun_{i}/m"]
    cmds += [f"mkdir {tpg}/np/127.0.0.1:{port}", f"echo 0 > {tpg}/attrib/authentication",
             f"echo 1 > {tpg}/enable"]
    m.ok(" && ".join(cmds))
    wait_port(port)
    ini = RawInitiator(port, target=IQN, initiator=INI)
    ini.full_login()
    for lun in (0, 1):  # the unit attentions of the mappings out of the way
        while ini.scsi(bytes(6), lun=lun)[0] != 0:
            pass
    yield m, ini, d
    ini.close()
    umount(m)


def _rsp(p):
    """(status, (key, asc, ascq) or None, residual flags, residual count)."""
    sense = None
    if p.opcode == P.OP_SCSI_RSP and p.bhs[3] == 2:
        s = p.data[2:]
        sense = (s[2] & 0x0F, s[12], s[13])
    return (p.bhs[3], sense, p.bhs[1] & (P.RSP_OVERFLOW | P.RSP_UNDERFLOW), p.u32(44))


@pytest.mark.parametrize("sent", [1024, 4096])
def test_write_with_a_residual(site, sent):
    """WRITE(10) of 4 blocks (2048 bytes) with ``sent`` bytes announced and sent."""
    m, ini, d = site
    mark = m.log_mark()
    status, _, p = ini.scsi(bytes([0x2A, 0, 0, 0, 0, 0x10, 0, 0, 4, 0]), write=b"\xab" * sent)
    flag = P.RSP_OVERFLOW if sent < 2048 else P.RSP_UNDERFLOW
    if m.profile == "4.18":
        assert _rsp(p) == (2, (5, 0x24, 0), 0, 0)
    else:
        assert _rsp(p) == (2, (5, 0x0E, 0x03), flag, abs(2048 - sent))
    log = m.log_since(mark)
    assert "Rejecting underflow/overflow for WRITE data CDB" in log
    with open(d / "f0.img", "rb") as f:  # nothing written
        f.seek(0x10 * 512)
        assert b"\xab" not in f.read(4096)


def test_read_with_a_residual_on_a_4096_byte_device(site):
    """READ(10) of 1 block (4096 bytes) with 2048 bytes expected, and INQUIRY with 255
    allocated and 36 expected, on LUN 1 (4096-byte blocks)."""
    m, ini, _ = site
    mark = m.log_mark()
    _, data, p = ini.scsi(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), read_len=2048, lun=1)
    _, _, q = ini.scsi(bytes([0x12, 0, 0, 0, 255, 0]), read_len=36, lun=1)
    line = ("Failing OVERFLOW/UNDERFLOW for LBA op CDB on non 512-byte sector setup "
            "subsystem plugin: fileio")
    log = m.log_since(mark)
    if m.profile == "4.18":
        assert _rsp(p) == (2, (5, 0x24, 0), 0, 0)
        assert _rsp(q) == (2, (5, 0x24, 0), 0, 0)
        assert log.count(line) == 2
    else:
        assert _rsp(p)[::2] == (0, P.RSP_OVERFLOW) and p.u32(44) == 2048
        assert len(data) == 2048
        assert _rsp(q)[::2] == (0, P.RSP_OVERFLOW) and q.u32(44) == 219
        assert line not in log
    # the same commands with matching lengths pass everywhere
    assert ini.scsi(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), read_len=4096, lun=1)[0] == 0
    assert ini.scsi(bytes([0x12, 0, 0, 0, 36, 0]), read_len=36, lun=1)[0] == 0
