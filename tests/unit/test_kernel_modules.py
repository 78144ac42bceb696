"""Which kernel modules of the target a machine has loaded (``TargetCore.modules``, what
``simfs run``'s /proc/modules lists), in process: target_core_mod alone at first; the
backends with the first HBA mkdir whose name parses; iscsi_target_mod and tcm_loop by
mkdir; other fabric modules by modprobe only; never a module the version lacks."""
from __future__ import annotations

import errno

import pytest

from simfs.configfs import ConfigfsError
from simfs.core.core import SUBSYSTEM_MODULES
from simfs.core.fabric import load_module
from simfs.core.profile import get_profile
from simfs.daemon.proc_modules import ProcModules, listing
from simfs.testing import Sim


@pytest.fixture
def sim(tmp_path):
    s = Sim(state_dir=tmp_path / "st", profile=get_profile("4.18"))
    yield s
    s.close()


def test_the_first_hba_loads_the_backend_modules(sim):
    changes = []
    sim.core.events.modules_changed = lambda: changes.append(list(sim.core.modules))
    for bad in ("fileio", "fileio_x"):  # refused before transport_subsystem_check_init
        with pytest.raises(ConfigfsError):
            sim.mkdir(f"/target/core/{bad}")
    assert sim.core.modules == ["target_core_mod"] and changes == []
    sim.mkdir("/target/core/fileio_0")
    sim.mkdir("/target/core/iblock_0")
    assert sim.core.modules == ["target_core_mod", *SUBSYSTEM_MODULES]
    assert len(changes) == 1  # one change for the four, none for the second HBA


def test_fabric_modules_by_mkdir_and_by_modprobe(sim):
    with pytest.raises(ConfigfsError) as e:
        sim.mkdir("/target/vhost")  # no request_module for vhost
    assert e.value.errno == errno.EINVAL and sim.core.modules == ["target_core_mod"]
    sim.mkdir("/target/iscsi")
    assert load_module(sim.core, "tcm_vhost") == ["vhost"]
    assert load_module(sim.core, "efct") == []  # 4.18 has no efct
    assert sim.core.modules == ["target_core_mod", "iscsi_target_mod", "vhost_scsi"]


def test_listing_is_newest_first_then_the_machines_other_modules():
    text = listing(["target_core_mod", "iscsi_target_mod", "vhost_scsi"],
                   "fuse 155648 3 - Live 0x0000000000000000\n")
    assert text == ("vhost_scsi 0 0 - Live 0x0000000000000000\n"
                    "iscsi_target_mod 0 0 - Live 0x0000000000000000\n"
                    "target_core_mod 0 2 vhost_scsi,iscsi_target_mod, Live 0x0000000000000000\n"
                    "fuse 155648 3 - Live 0x0000000000000000\n")


def test_the_file_is_rewritten_in_place(sim, tmp_path):
    path = tmp_path / "modules"
    path.write_text("fuse 155648 3 - Live 0x0000000000000000\n")
    inode = path.stat().st_ino
    ProcModules(path, sim.core).attach()
    sim.mkdir("/target/loopback")
    assert path.stat().st_ino == inode  # a bind mount over /proc/modules keeps showing it
    assert path.read_text().splitlines() == [
        "tcm_loop 0 0 - Live 0x0000000000000000",
        "target_core_mod 0 1 tcm_loop, Live 0x0000000000000000",
        "fuse 155648 3 - Live 0x0000000000000000"]


@pytest.mark.parametrize("version", ["4.18", "6.12"])
def test_backends_register_when_their_modules_load(tmp_path, version):
    """transport_backend_register's line: rd_mcp's at target_core_mod's init (rd_module_init,
    after "Initialized ConfigFS Fabric Infrastructure"), iblock, fileio, pscsi and user's
    when transport_subsystem_check_init loads their modules at the first HBA mkdir."""
    sim = Sim(state_dir=tmp_path / "st", profile=get_profile(version))
    try:
        def registered() -> list[str]:
            return [line.split("plugin: ")[1].split()[0] for line in sim.log.text().splitlines()
                    if "TCM: Registered subsystem plugin: " in line]
        text = sim.log.text()
        assert registered() == ["rd_mcp"]
        assert text.index("Initialized ConfigFS Fabric Infrastructure") < \
            text.index("Registered subsystem plugin: rd_mcp")
        sim.mkdir("/target/core/rd_mcp_1")
        assert registered() == ["rd_mcp", "iblock", "fileio", "pscsi", "user"]
        sim.mkdir("/target/core/fileio_0")
        assert registered() == ["rd_mcp", "iblock", "fileio", "pscsi", "user"]  # once
    finally:
        sim.close()


def test_v30_registers_its_plugins_at_init(tmp_path):
    sim = Sim(state_dir=tmp_path / "st", profile=get_profile("v3.0"))
    try:
        text = sim.log.text()
        assert "PLUGIN_TRANSPORT[4] - iblock registered" in text
        assert "TCM: Registered subsystem plugin" not in text
        sim.mkdir("/target/core/iblock_0")
        assert "TCM: Registered subsystem plugin" not in sim.log.text()
    finally:
        sim.close()
