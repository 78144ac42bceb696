"""configfs fuzzing on every named kernel version, not only the newest.

test_fuzz_configfs.py fuzzes the default version at length. Here each other version builds
the objects it has (v3.0: the seed's backends and ALUA groups; 4.18 on: every fabric
module that version provides) and every writable attribute takes hostile writes. After
each refused write the whole tree must be unchanged and the error an errno; an accepted
write must leave every attribute readable.

Each attribute takes one payload per version, picked in rotation so that across the
attributes of one version every payload class is used: the snapshot after each write
costs what the whole tree costs, and the default version's sweep already does six each.
"""
from __future__ import annotations

import errno
import zlib
from pathlib import Path

import pytest

from simfs.configfs import ConfigfsError
from simfs.core import fabric
from simfs.core.kernels import LEGACY, NEWEST, VERSIONS
from simfs.core.profile import get_profile
from simfs.testing import Sim

from test_fuzz_configfs import FABRIC_TPGS, _mkdir_p, attributes, snapshot

OLDER = [v for v in VERSIONS if v != NEWEST] + [LEGACY]
PAYLOADS = [b"\xff\xfe\x00garbage", b"18446744073709551616", b"-1", b" 0x", b"4294967296\n",
            b"1" * 5000, b"0\n", b"1\n", b"2", b"\n"]


def build(tmp: Path, version: str) -> Sim:
    """One of every object type ``version`` has."""
    sim = Sim(state_dir=tmp / "state", profile=get_profile(version))
    (tmp / "state" / "var" / "target" / "pr").mkdir(parents=True, exist_ok=True)
    (tmp / "state" / "var" / "target" / "alua").mkdir(parents=True, exist_ok=True)
    sim.rd_device()
    sim.fileio_device(tmp / "f0.img", size=1 << 20, buffered=True)
    hbas = [("iblock_0", "ib0"), ("pscsi_0", "ps0"), ("rd_mcp_1", "rd_off")]
    if version != "v3.0":
        hbas.append(("user_0", "u0"))   # TCMU came with 3.18
    for hba, dev in hbas:
        sim.mkdir(f"/target/core/{hba}")
        sim.mkdir(f"/target/core/{hba}/{dev}")
    sim.mkdir("/target/core/alua/lu_gps/lg1")
    sim.write("/target/core/alua/lu_gps/lg1/lu_gp_id", "7")
    if version == "v3.0":
        return sim                      # no fabric of target_core_mod's own, no port groups yet
    sim.mkdir("/target/core/rd_mcp_0/rd0/alua/tg1")
    sim.write("/target/core/rd_mcp_0/rd0/alua/tg1/tg_pt_gp_id", "3")
    tpg = "/target/iscsi/iqn.2026-12.org.simfs:fuzz/tpgt_1"
    for d in (f"{tpg}/lun/lun_0", f"{tpg}/acls/iqn.2026-12.org.example:a/lun_0",
              f"{tpg}/np/127.0.0.1:1", "/target/loopback/naa.5001405000000042/tpgt_1/lun/lun_0"):
        _mkdir_p(sim, d)
    sim.tree.symlink(f"{tpg}/lun/lun_0/rd0", "/target/core/rd_mcp_0/rd0")
    sim.tree.symlink(f"{tpg}/acls/iqn.2026-12.org.example:a/lun_0/m", f"{tpg}/lun/lun_0")
    sim.write("/target/loopback/naa.5001405000000042/tpgt_1/nexus", "naa.5001405000000043")
    _fabrics_of(sim)
    return sim


def _fabrics_of(sim: Sim) -> None:
    """The other fabrics' TPGs, for the fabric modules this version provides."""
    fabric.set_hardware_ports(sim.core, [
        "qla2xxx=21:00:00:24:ff:31:4c:48", "efct=10:00:00:10:9b:1a:2b:3c",
        "tcm_fc=20:00:00:11:22:33:44:55", "srpt=fe80:0000:0000:0000:0002:c903:0003:1235",
        "ibmvscsis=30000003", "usb_gadget=tcm.0"])
    for module in ("tcm_vhost", "xen-scsiback", "tcm_usb_gadget", "tcm_qla2xxx", "efct",
                   "tcm_fc", "ib_srpt", "ibmvscsis", "tcm_remote"):
        fabric.load_module(sim.core, module)
    for tpg, initiator in FABRIC_TPGS.items():
        try:
            _mkdir_p(sim, f"{tpg}/lun/lun_0")
        except ConfigfsError:
            continue                    # this version has no such fabric
        sim.tree.symlink(f"{tpg}/lun/lun_0/rd0", "/target/core/rd_mcp_0/rd0")
        if initiator and "nexus" in sim.tree.lookup(tpg).entries():
            sim.write(f"{tpg}/nexus", initiator)
        elif initiator:
            _mkdir_p(sim, f"{tpg}/acls/{initiator}/lun_0")
            sim.tree.symlink(f"{tpg}/acls/{initiator}/lun_0/m", f"{tpg}/lun/lun_0")


@pytest.fixture(scope="module", params=OLDER)
def version_env(request, tmp_path_factory):
    sim = build(tmp_path_factory.mktemp(f"fuzz-{request.param}"), request.param)
    refs = attributes(sim.tree.root, [])
    writable = sorted({r.path() for r in refs if r.attr.store is not None})
    yield request.param, sim, writable
    sim.close()


def test_every_writable_attribute(version_env, monkeypatch):
    version, sim, writable = version_env
    import simfs.core.alua as core_alua
    import simfs.scsi.alua as scsi_alua
    monkeypatch.setattr(core_alua.time, "sleep", lambda s: None)
    monkeypatch.setattr(scsi_alua, "sleep", lambda s: None)
    refused = accepted = 0
    before = snapshot(sim)
    for i, path in enumerate(writable):
        data = PAYLOADS[(i + zlib.crc32(path.encode())) % len(PAYLOADS)]
        try:
            sim.tree.write_attr(path, data)
        except ConfigfsError as e:
            assert isinstance(e, OSError) and e.errno in errno.errorcode, (version, path, e)
            refused += 1
            after = snapshot(sim)
            changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
            # alias/udev_path: the kernel copies the value before refusing an empty one
            if path.rsplit("/", 1)[-1] in ("alias", "udev_path") and changed == [path]:
                changed = []
            assert not changed, (version, path, data[:40], e.errno, changed[:3])
        else:
            accepted += 1
            after = snapshot(sim)
        before = after
    assert refused > len(writable) // 4 and accepted > 5, (version, refused, accepted)


def test_empty_write_is_efault(version_env):
    version, sim, writable = version_env
    before = snapshot(sim)
    for path in writable:
        with pytest.raises(ConfigfsError) as ei:
            sim.tree.write_attr(path, b"")
        assert ei.value.errno == errno.EFAULT, (version, path)
    assert snapshot(sim) == before
