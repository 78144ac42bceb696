"""The core's command counters and the lookup's log line, per kernel version
(transport_lookup_cmd_lun in target_core_device.c: upstream 4.18 jumps to the device's
accounting before answering WRITE PROTECTED and names no initiator for a LUN it cannot
find; 5.14 on returns first and names the initiator)."""
from __future__ import annotations

import pytest

from simfs.core import kernels
from simfs.scsi import status as S
from simfs.scsi.command import DATA_IN, DATA_OUT
from simfs.testing import Sim
from simfs_plugins.fabrics.iscsi import TreeIscsiBackend

IQN = "iqn.2003-01.org.linux-iscsi.sim:counters"
T = f"/target/iscsi/{IQN}/tpgt_1"
INIT = "iqn.1994-05.com.redhat:client1"
ISID = 0x23D000000001
WRITE10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0])
READ10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
LU = "/target/core/rd_mcp_0/rd0/statistics/scsi_lu"
AUTH = f"{T}/acls/{INIT}/lun_7/statistics/scsi_auth_intr"


@pytest.fixture(params=kernels.VERSIONS)
def rig(request, tmp_path):
    sim = Sim(state_dir=tmp_path / "st", profile=kernels.get(request.param))
    sim.rd_device()
    for d in ("/target/iscsi", f"/target/iscsi/{IQN}", T, f"{T}/lun/lun_0",
              f"{T}/acls/{INIT}", f"{T}/acls/{INIT}/lun_7"):
        sim.mkdir(d)
    sim.tree.symlink(f"{T}/lun/lun_0/d", "/target/core/rd_mcp_0/rd0")
    sim.tree.symlink(f"{T}/acls/{INIT}/lun_7/x", f"{T}/lun/lun_0")
    sim.mkdir(f"{T}/np/0.0.0.0:3260")
    sim.write(f"{T}/enable", "1")
    view = TreeIscsiBackend(sim.core).login(IQN, ("10.1.2.3", 3260), INIT)
    view.session_added(ISID)
    yield request.param, sim, view
    sim.close()


def test_a_write_refused_by_a_read_only_mapping(rig):
    version, sim, v = rig
    assert v.submit(ISID, 7, READ10, data_length=4096, data_direction=DATA_IN).ok
    sim.write(f"{T}/acls/{INIT}/lun_7/write_protect", "1")
    r = v.submit(ISID, 7, WRITE10, bytes(4096), data_length=4096, data_direction=DATA_OUT)
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (0x7, 0x27, 0x00)
    assert "Detected WRITE_PROTECTED LUN Access for 0x00000007" in sim.log.text()
    assert sim.read(f"{AUTH}/num_cmds") == "2\n"   # the mapping counts both, always
    dev = sim.core.hbas["rd_mcp_0"].devices["rd0"]
    if version == "4.18":  # counted in the device on the way to WRITE PROTECTED
        assert (dev.num_cmds, dev.read_bytes, dev.write_bytes) == (2, 4096, 4096)
    else:
        assert (dev.num_cmds, dev.read_bytes, dev.write_bytes) == (1, 4096, 0)
    assert sim.read(f"{LU}/num_cmds") == f"{dev.num_cmds}\n"


def test_a_lun_the_initiator_has_not_mapped(rig):
    version, sim, v = rig
    r = v.submit(ISID, 3, bytes(6))
    assert r.sense_tuple() == (0x5, 0x25, 0x00)
    line = "TARGET_CORE[iSCSI]: Detected NON_EXISTENT_LUN Access for 0x00000003"
    full = line + ("" if version == "4.18" else f" from {INIT}")
    assert [ln.split("] ", 1)[1] for ln in sim.log.text().splitlines()
            if line in ln] == [full]
    assert sim.read(f"{LU}/num_cmds") == "0\n" and sim.read(f"{AUTH}/num_cmds") == "0\n"


def test_a_task_management_request_for_a_lun_not_mapped(rig):
    """transport_lookup_tmr_lun: only the ACL's mappings count (no virtual LUN 0), and a
    miss is a debug line naming the initiator from 5.8 on ("for", where a command's line
    says "from")."""
    version, sim, v = rig
    assert v.tmr_lun(7)
    assert not v.tmr_lun(0) and not v.tmr_lun(3)
    line = "TARGET_CORE[iSCSI]: Detected NON_EXISTENT_LUN Access for 0x00000003"
    full = line + ("" if version == "4.18" else f" for {INIT}")
    assert [ln.split("] ", 1)[1] for ln in sim.log.text().splitlines()
            if line in ln] == [full]
