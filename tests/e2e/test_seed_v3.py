"""The seed's v3.0 script, unchanged, against ``simfs mount --profile v3.0``.

The script names /sys/kernel/config, /dev/lio-test/test0, /dev/sdd and /dev/sde. A private
mount namespace (``unshare -m``, we run as root) puts simfs at /sys/kernel/config and a tmpfs
/dev whose nodes are real loop devices, so nothing outside the test sees either.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DATA = Path(__file__).parent.parent / "data"


def _loop(img: Path, size: int) -> str:
    with open(img, "wb") as f:
        f.truncate(size)
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"losetup unavailable: {r.stderr.strip()}")
    return r.stdout.strip()


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    w = tmp_path_factory.mktemp("seed")
    shutil.copy(DATA / "seed-v3.0.sh", w / "seed.sh")
    loops = [_loop(w / f"disk{i}.img", (256 + 64 * i) << 20) for i in range(3)]
    try:
        devs = []
        for dev in loops:
            st = os.stat(dev)
            devs.append(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        r = subprocess.run(["unshare", "-m", str(DATA / "seed-harness.sh"), str(w), *devs],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        yield w, loops
    finally:
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)


def test_script_runs_without_an_error(seed_run):
    w, _ = seed_run
    assert (w / "seed.rc").read_text().strip() == "0"
    assert (w / "seed.out").read_text() == ""  # no write error from any echo


def test_tree_is_the_seeds_25_directories_and_114_files(seed_run):
    w, _ = seed_run
    found = (w / "find.txt").read_text().splitlines()
    assert found == (DATA / "seed-v3.0-find.txt").read_text().splitlines()
    entries = [e for e in found if e != "."]
    # The seed's `tree` count: directories below core/ and every other entry.
    dirs = {e.rsplit("/", 1)[0] for e in entries if "/" in e[2:]}
    assert len(dirs) == 25
    assert len(entries) - len(dirs) == 114


def _in_order(log: str, patterns: list[str]) -> None:
    pos = 0
    for pat in patterns:
        m = re.compile(pat, re.M).search(log, pos)
        assert m, f"log line {pat!r} missing after offset {pos}:\n{log[pos:pos + 2000]}"
        pos = m.end()


def test_log_shows_the_seeds_registration_and_activation(seed_run):
    w, loops = seed_run
    log = (w / "dmesg.txt").read_text()
    ts = r"^\[ *\d+\.\d{6}\] "
    ib_major, ib_minor = (os.major(os.stat(loops[0]).st_rdev), os.minor(os.stat(loops[0]).st_rdev))
    _in_order(log, [
        ts + r"TARGET_CORE\[0\]: Loading Generic Kernel Storage Engine: v3\.0\.0 on Linux/",
        ts + r"TARGET_CORE\[0\]: Initialized ConfigFS Fabric Infrastructure: v1\.0\.0 on Linux/",
        ts + r"SE_PC\[0\] - Registered Plugin Class: TRANSPORT$",
        ts + r"PLUGIN_TRANSPORT\[1\] - pscsi registered$",
        ts + r"PLUGIN_TRANSPORT\[4\] - iblock registered$",
        ts + r"PLUGIN_TRANSPORT\[5\] - rd_dr registered$",
        ts + r"PLUGIN_TRANSPORT\[6\] - rd_mcp registered$",
        ts + r"PLUGIN_TRANSPORT\[7\] - fileio registered$",
        ts + r"SE_PC\[1\] - Registered Plugin Class: OBJ$",
        ts + r"PLUGIN_OBJ\[1\] - dev registered$",
        # iblock through fd 3
        ts + r"Target_Core_ConfigFS: Located se_plugin: [0-9a-f]{8} plugin_name: iblock "
             r"hba_type: 4 plugin_dep_id: 0$",
        ts + r"CORE_HBA\[0\] - Attached iBlock HBA: 0 to Generic Target Core TCQ Depth: 512$",
        ts + r"IBLOCK: Allocated ib_dev for lvm_test0$",
        ts + r"Target_Core_ConfigFS: Set emulated VPD Unit Serial: "
             r"a97e4ce21c0711de829b000c2943d57b$",
        ts + r"IBLOCK: Claiming struct block_device: [0-9a-f]{8}$",
        ts + rf"IBLOCK: Created bio_set\(\) for major/minor: {ib_major}:{ib_minor}$",
        ts + r"iblock: Using SPC3_PERSISTENT_RESERVATIONS emulation$",
        ts + r"iblock: Enabling ALUA Emulation for SPC-3 device$",
        ts + r"iblock: Adding to default ALUA LU Group: core/alua/lu_gps/default_lu_gp$",
        ts + rf"CORE_iBLOCK\[0\] - Activating Device with TCQ: 0 at Major: {ib_major} "
             rf"Minor {ib_minor}$",
        ts + r"Vendor: LIO-ORG Model: IBLOCK Revision: 3\.0$",
        ts + r"Type: Direct-Access ANSI SCSI revision: 05$",
        ts + r"T10 VPD Unit Serial Number: a97e4ce21c0711de829b000c2943d57b$",
        ts + r"T10 VPD Page Length: 72$",
        ts + r"T10 VPD Binary Device Identifier: 36001405a97e4ce21c0711de829b000c2$",
        ts + r"T10 VPD Identifer Length: 48$",
        ts + r"Target_Core_ConfigFS: Registered iblock se_dev->se_dev_ptr: [0-9a-f]{8} from fd$",
        ts + r"dev\[[0-9a-f]{8}\]: SE Device block_size changed to 4096$",
        ts + r"dev\[[0-9a-f]{8}\]: SE Device UA_INTRLCK_CTRL flag: 0$",
        # pscsi through fd 3 (a loop device, so an emulated disk is passed through)
        ts + r".*plugin_name: pscsi hba_type: 1 plugin_dep_id: 0$",
        ts + r"PSCSI: Allocated pdv: [0-9a-f]{8} for sdd$",
        ts + r".*Set emulated VPD Unit Serial: 66e418b4-e9ab-11dd-8f51-000c2943d57b$",
        ts + r"pscsi: Using SPC_PASSTHROUGH, no reservation emulation$",
        ts + r"pscsi: Using SPC_ALUA_PASSTHROUGH, no ALUA emulation$",
        ts + r"Target_Core_ConfigFS: Registered pscsi se_dev->se_dev_ptr: [0-9a-f]{8} from fd$",
        # rd_mcp
        ts + r".*plugin_name: rd_mcp hba_type: 6 plugin_dep_id: 0$",
        ts + r"CORE_HBA\[2\] - Attached Ramdisk HBA: 0 to Generic Target Core TCQ Depth: 256 "
             r"MaxSectors: 1024$",
        ts + r"RAMDISK: Referencing Page Count: 32768$",
        ts + r"CORE_RD\[0\] - Built Ramdisk Device ID: 0 space of 32768 pages in 11 tables$",
        ts + r"T10 VPD Unit Serial Number: 1234567890:2_0$",
        ts + r"T10 VPD Page Length: 39$",
        ts + r"CORE_RD\[0\] - Added LIO MEMCPY Ramdisk Device ID: 0 of 32768 pages in 11 "
             r"tables, 134217728 total bytes$",
        # fileio on a block device: the size comes from the device, less one block
        ts + r".*plugin_name: fileio hba_type: 7 plugin_dep_id: 0$",
        ts + r"FILEIO: Referencing Path: /dev/sde$",
        ts + r"FILEIO: Referencing Size: 134217728 bytes$",
        ts + r"FILEIO: Using size: 402652672 bytes from struct block_device blocks: 786431 "
             r"hardsect_size: 512$",
        ts + r"T10 VPD Unit Serial Number: 1234567890:3_0$",
        ts + r"T10 VPD Page Length: 34$",
        ts + r"CORE_FILE\[0\] - Added LIO FILEIO Device ID: 0 at /dev/sde, 402652672 total "
             r"bytes$",
    ])


def test_info_after_the_script(seed_run):
    w, _ = seed_run
    ib = (w / "info.iblock_0").read_text()
    assert ib.startswith("Status: DEACTIVATED  Execute/Left/Max Queue Depth: 0/32/32  ")
    assert "SectorSize: 4096" in ib
    assert "CLAIMED: IBLOCK" in ib
    rd = (w / "info.rd_mcp_0").read_text()
    assert rd == ("Status: DEACTIVATED  Execute/Left/Max Queue Depth: 0/32/32  SectorSize: 512  "
                  "MaxSectors: 1024\n        LIO RamDisk ID: 0  RamDisk Makeup: rd_mcp\n"
                  "        PAGES/PAGE_SIZE: 32768*4096  SG_table_count: 11\n")
    fio = (w / "info.fileio_0").read_text()
    assert fio.endswith("        LIO FILEIO ID: 0        File: /dev/sde  Size: 402652672  "
                        "CLAIMED: FILEIO\n")


def test_seed_under_simfs_run(tmp_path):
    """The same script through ``simfs run --profile v3.0``, with --dev standing loop devices
    in for the nodes it names."""
    loops = [_loop(tmp_path / f"d{i}.img", 256 << 20) for i in range(3)]
    try:
        names = ["/dev/lio-test/test0", "/dev/sdd", "/dev/sde"]
        devs = [a for n, lp in zip(names, loops) for a in ("--dev", f"{n}={lp}")]
        r = subprocess.run(
            ["simfs", "run", "--profile", "v3.0", "--state-dir", str(tmp_path / "st"), *devs,
             "--", "bash", "-c", f"bash {DATA / 'seed-v3.0.sh'} && cd /sys/kernel/config/"
             "target/core && find . | sort"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == (DATA / "seed-v3.0-find.txt").read_text().splitlines()
        log = (tmp_path / "st/mount/dmesg.log").read_text()
        assert "Target_Core_ConfigFS: Registered iblock se_dev->se_dev_ptr:" in log
        assert "Target_Core_ConfigFS: Registered pscsi se_dev->se_dev_ptr:" in log
        assert "CORE_FILE[0] - Added LIO FILEIO Device ID: 0 at /dev/sde" in log
    finally:
        for lp in loops:
            subprocess.run(["losetup", "-d", lp], check=False)
