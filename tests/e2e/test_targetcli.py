"""targetcli and rtslib-fb, unmodified (Debian's targetcli-fb), inside ``simfs run``."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import saved_config

DATA = Path(__file__).parent.parent / "data"

pytestmark = pytest.mark.skipif(shutil.which("targetcli") is None,
                                reason="Debian's targetcli-fb is not installed")


def simfs_run(state: Path, *cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["simfs", "run", "--state-dir", str(state), "--", *cmd],
                          capture_output=True, text=True, timeout=timeout)


def _mask_nexus(ls: str) -> str:
    # restoreconfig makes a new loopback I_T nexus WWN, as on a kernel (not in the JSON)
    return re.sub(r"\[naa\.[0-9a-f]{16}\]", "[naa.<nexus>]", ls)


@pytest.fixture
def loop(tmp_path):
    img = tmp_path / "blk.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("losetup unavailable")
    yield r.stdout.strip()
    subprocess.run(["losetup", "-d", r.stdout.strip()])


def test_scripted_session_round_trip(tmp_path, loop):
    out = tmp_path / "out"
    out.mkdir()
    r = simfs_run(tmp_path / "st", "bash", str(DATA / "targetcli-session.sh"), str(out), loop,
                  str(tmp_path / "f0.img"))
    assert r.returncode == 0, r.stdout + r.stderr
    ls1 = (out / "tc_ls1.txt").read_text()
    for needle in ("o- r0 ", "[(16.0MiB) activated]", f"[{loop} (64.0MiB) write-thru activated]",
                   "o- iqn.2026-12.org.simfs:tc ", "[TPGs: 1]", "o- mapped_lun1 ",
                   "[lun1 block/b0 (rw)]", "o- 0.0.0.0:3260 ", "o- naa.5001405aaaaaaaa1 ",
                   "[fileio/f0 (" + str(tmp_path / "f0.img") + ") (default_tg_pt_gp)]",
                   "[ALUA state: Active/optimized]"):
        assert needle in ls1, f"{needle!r} missing from targetcli ls:\n{ls1}"
    assert _mask_nexus(ls1) == _mask_nexus((out / "tc_ls2.txt").read_text())
    saved1 = json.loads((out / "tc_save1.json").read_text())
    # the same objects; only the order of siblings changes (readdir lists newest first)
    assert saved_config(saved1) == saved_config(json.loads((out / "tc_save2.json").read_text()))
    assert sorted(so["name"] for so in saved1["storage_objects"]) == ["b0", "f0", "r0"]
    iscsi = next(t for t in saved1["targets"] if t["fabric"] == "iscsi")
    acl = iscsi["tpgs"][0]["node_acls"][0]
    assert acl["chap_userid"] == "u" and acl["chap_password"] == "p"
    empty = (out / "tc_ls_empty.txt").read_text()
    assert "[Storage Objects: 0]" in empty and "[Targets: 0]" in empty
    assert (tmp_path / "f0.img").stat().st_size == 32 << 20  # fileio created it, sparse


def test_interactive_session_through_a_pty(tmp_path):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("simfs", ["simfs", "run", "--state-dir", str(tmp_path / "st"), "--",
                            "targetcli"])
    out = b""

    def expect(text: bytes, timeout: float = 60) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while text not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never came:\n{out.decode(errors='replace')[-3000:]}"
            if select.select([fd], [], [], left)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break

    try:
        expect(b"/>")
        os.write(fd, b"/backstores/ramdisk create rdx 8M\r")
        expect(b"Created ramdisk rdx")
        os.write(fd, b"/backstores/fileio create nofile\r")  # a targetcli-level error
        expect(b"/>")
        os.write(fd, b"ls /backstores/ramdisk\r")
        expect(b"rdx")
        os.write(fd, b"exit\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        os.close(fd)


def test_rtslib_api(tmp_path):
    script = (
        "import rtslib_fb as r\n"
        "root = r.RTSRoot()\n"
        "so = r.RDMCPStorageObject('api0', size=8*1024*1024)\n"
        "t = r.Target(r.FabricModule('iscsi'), 'iqn.2026-12.org.simfs:api')\n"
        "tpg = r.TPG(t, 1)\n"
        "lun = tpg.lun(0, so)\n"
        "acl = r.NodeACL(tpg, 'iqn.2026-12.org.example:api')\n"
        "acl.mapped_lun(0, lun)\n"
        "print(so.status, so.wwn != '', len(list(root.targets)), lun.lun,\n"
        "      [m.mapped_lun for m in acl.mapped_luns])\n"
        "open('/sys/kernel/config/target/core/rd_mcp_0/api0/info').read()\n"
    )
    r = simfs_run(tmp_path / "st", "/usr/bin/python3", "-c", script)
    if "No module named 'rtslib_fb'" in r.stderr:
        pytest.skip("python3-rtslib-fb is not installed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "activated True 1 0 [0]"


def test_unprivileged_targetcli(unprivileged):
    """An ordinary user runs targetcli: user + mount namespace, no root, no module."""
    r = unprivileged.simfs_run("targetcli /backstores/ramdisk create u0 8M && "
                               "targetcli /iscsi create iqn.2026-12.org.simfs:user && "
                               "targetcli saveconfig && targetcli ls", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "o- u0 " in r.stdout and "o- iqn.2026-12.org.simfs:user " in r.stdout
    saved = Path(unprivileged.home, ".local/state/simfs/run/modern/etc")
    assert list(saved.rglob("saveconfig.json")), "saveconfig landed outside the state dir"


def test_alua_groups_and_kernel_errors(tmp_path):
    """ALUA target port groups through targetcli, and errors users see: the kernel's."""
    script = "\n".join([
        "targetcli /backstores/ramdisk create r0 16M",
        "targetcli /backstores/ramdisk/r0/alua create tpg_b 2",
        "targetcli /backstores/ramdisk/r0/alua/tpg_b set alua alua_access_state=2",
        "targetcli /backstores/ramdisk/r0 set attribute block_size=513",
        "targetcli /iscsi create iqn.2026-12.org.simfs:x",
        "targetcli /iscsi/iqn.2026-12.org.simfs:x/tpg1/luns create /backstores/ramdisk/r0",
        "targetcli /backstores/ramdisk/r0 set attribute block_size=4096",
        "targetcli /iscsi/iqn.2026-12.org.simfs:x/tpg1/luns/lun0 set alua "
        "alua_tg_pt_gp_name=tpg_b",
        "targetcli ls",
        "cat /sys/kernel/config/target/core/rd_mcp_*/r0/alua/tpg_b/members",
    ])
    r = simfs_run(tmp_path / "st", "bash", "-c", script)
    out = r.stdout + r.stderr
    assert "Created ALUA TPG tpg_b." in out
    assert "[ALUA state: Standby]" in out
    # invalid block size (any time), then "not while exported": both EINVAL from the kernel
    assert out.count("Cannot set attribute block_size: [Errno 22] Invalid argument") == 2
    assert "[ramdisk/r0 (tpg_b)]" in out
    assert "iSCSI/iqn.2026-12.org.simfs:x/tpgt_1/lun_0" in out
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    assert "Illegal value for block_device: 513" in log
