"""A user:file (TCMU) backstore exported over iSCSI and driven by libiscsi's conformance
tests, and the same made by unmodified targetcli inside ``simfs run`` (it lists the handlers
through tcmu-runner's D-Bus service, org.kernel.TCMUService1)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from helpers import free_port, mount, umount, wait_port
from test_iscsi_e2e import KERNEL_FAILS

IQN = "iqn.2026-12.org.simfs:tcmu"
INIT_A = "iqn.2026-12.org.example:host-a"
INIT_B = "iqn.2026-12.org.example:host-b"
SIZE = 64 << 20

pytestmark = pytest.mark.skipif(shutil.which("iscsi-test-cu") is None,
                                reason="libiscsi-bin is not installed")


def run(*cmd: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    m = mount("modern")
    img = tmp_path_factory.mktemp("tcmu") / "u0.img"
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    m.ok(f"mkdir -p {t}/core/user_1/u0 && "
         f"echo dev_config=file/{img},dev_size={SIZE} > {t}/core/user_1/u0/control && "
         f"echo 1 > {t}/core/user_1/u0/enable && "
         f"mkdir -p {tpg}/lun/lun_0 && ln -s {t}/core/user_1/u0 {tpg}/lun/lun_0/lun0 && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && echo 0 > {tpg}/attrib/authentication && "
         f"mkdir -p {tpg}/acls/{INIT_A}/lun_0 {tpg}/acls/{INIT_B}/lun_0 && "
         f"ln -s {tpg}/lun/lun_0 {tpg}/acls/{INIT_A}/lun_0/m && "
         f"ln -s {tpg}/lun/lun_0 {tpg}/acls/{INIT_B}/lun_0/m && echo 1 > {tpg}/enable")
    wait_port(port)
    yield m, port, img
    umount(m)


def url(port: int) -> str:
    return f"iscsi://127.0.0.1:{port}/{IQN}/0"


def test_identity_and_data_reach_the_file(target):
    m, port, img = target
    r = run("iscsi-inq", "-i", INIT_A, url(port))
    # the runner answers standard INQUIRY with tcmu-runner's identity
    assert "Vendor:LIO-ORG" in r.stdout and "Product:TCMU device" in r.stdout, r.stdout
    assert "Revision:0002" in r.stdout
    r = run("iscsi-readcapacity16", "-i", INIT_A, url(port))
    assert f"Total size:{SIZE}" in r.stdout, r.stdout + r.stderr
    # a write through the engine lands in the handler's file at LBA * 512, and reads back
    src = img.parent / "block.bin"
    src.write_bytes(bytes(range(256)) * 2)
    m.ok(f"simfs scsi {m.root} user_1/u0 write 7 --in {src}")
    with open(img, "rb") as f:
        f.seek(7 * 512)
        assert f.read(512) == src.read_bytes()
    out = m.ok(f"simfs scsi {m.root} user_1/u0 --hex read 7 1")
    assert "fe ff" in out or "feff" in out.replace(" ", "")
    assert "Status: ACTIVATED" in m.read("target/core/user_1/u0/info")


def _cu(port: int, families: str) -> tuple[set, str]:
    r = run("iscsi-test-cu", "-d", "-n", "-i", INIT_A, "-I", INIT_B, f"--test={families}",
            url(port), timeout=900)
    failed = {f"{s}.{t}" for s, t in re.findall(r"Suite (\S+), Test (\S+) had failures",
                                                 r.stdout)}
    ran = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", r.stdout)
    assert ran, r.stdout[-3000:] + r.stderr[-2000:]
    return failed, r.stdout


@pytest.mark.parametrize("family", [
    "SCSI.Read6", "SCSI.Read10", "SCSI.Read12", "SCSI.Read16",
    "SCSI.Write10", "SCSI.Write12", "SCSI.Write16",
    "SCSI.Verify10", "SCSI.Verify12", "SCSI.Verify16",
    "SCSI.WriteVerify10", "SCSI.WriteVerify12", "SCSI.WriteVerify16",
    "SCSI.ReadCapacity10", "SCSI.ReadCapacity16", "SCSI.Inquiry", "SCSI.TestUnitReady",
    "SCSI.WriteSame10", "SCSI.WriteSame16", "SCSI.Unmap", "SCSI.CompareAndWrite",
    "SCSI.ProutRegister", "SCSI.ProutReserve",
])
def test_iscsi_test_cu_family(target, family):
    _, port, _ = target
    failed, out = _cu(port, family)
    unexpected = failed - KERNEL_FAILS
    assert not unexpected, f"{family}: {sorted(unexpected)}\n{out[-4000:]}"


# -- unmodified targetcli in simfs run ----------------------------------------------------------
SESSION = r"""
set -e
IMG=$1; PORT=$2; OUT=$3
targetcli ls /backstores > $OUT/ls0.txt
targetcli /backstores/user:file help create > $OUT/help.txt
targetcli /backstores/user:file create name=bad size=1M cfgstring=/no/such/dir/x.img \
    > $OUT/bad.txt 2>&1 || true
targetcli /backstores/user:file create name=u1 size=32M cfgstring=$IMG
targetcli /iscsi create iqn.2026-12.org.simfs:tc
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/luns create /backstores/user:file/u1
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/portals delete 0.0.0.0 3260
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1/portals create 127.0.0.1 $PORT
targetcli /iscsi/iqn.2026-12.org.simfs:tc/tpg1 set attribute authentication=0 \
    generate_node_acls=1 demo_mode_write_protect=0
targetcli ls > $OUT/ls1.txt
targetcli /backstores/user:file changemedium u1 32M $IMG.2 > $OUT/cm.txt 2>&1 || true
targetcli saveconfig $OUT/save.json
iscsi-test-cu -d -n --test=SCSI.Read10,SCSI.Write10 \
    iscsi://127.0.0.1:$PORT/iqn.2026-12.org.simfs:tc/0 > $OUT/cu.txt 2>&1 || true
targetcli clearconfig confirm=True
targetcli restoreconfig $OUT/save.json > $OUT/restore.txt 2>&1 || true
targetcli saveconfig $OUT/save2.json
"""


def test_targetcli_creates_user_file(tmp_path):
    if shutil.which("targetcli") is None or shutil.which("dbus-daemon") is None:
        pytest.skip("targetcli-fb and dbus are needed")
    out = tmp_path / "out"
    out.mkdir()
    img, port = tmp_path / "u1.img", free_port()
    r = run("simfs", "run", "--state-dir", str(tmp_path / "st"), "--", "bash", "-c", SESSION,
            "session", str(img), str(port), str(out), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # the handler list comes from org.kernel.TCMUService1 (GetManagedObjects)
    assert "o- user:file " in (out / "ls0.txt").read_text()
    assert "The path to the file to use as a backstore." in (out / "help.txt").read_text()
    # CheckConfig refuses before anything is made
    assert "cfgstring invalid: /no/such/dir does not exist" in (out / "bad.txt").read_text()
    ls1 = (out / "ls1.txt").read_text()
    assert "o- u1 " in ls1 and f"[{img} (32.0MiB) activated]" in ls1, ls1
    assert "o- bad " not in ls1
    # ChangeMedium rewrites dev_config through configfs: the file handler's reconfig says no,
    # as tcmu-runner's does for a new cfgstring
    assert "ChangeMedium failed: Operation not supported" in (out / "cm.txt").read_text()
    assert img.exists()
    cu = (out / "cu.txt").read_text()
    counts = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", cu)
    assert counts and counts.group(4) == "0" and int(counts.group(3)) > 0, cu[-3000:]
    saved = json.loads((out / "save.json").read_text())
    so = [s for s in saved["storage_objects"] if s["name"] == "u1"][0]
    assert so["plugin"] == "user" and so["config"] == f"file/{img}" and so["size"] == 32 << 20
    # restoreconfig rewrites attrib/dev_config and emulate_write_cache of the enabled device:
    # the runner's reconfig refuses both for the file handler, as the same targetcli run
    # against tcmu-runner shows (targetcli-fb pull request 144: "Cannot set attribute
    # dev_config: [Errno 95] Operation not supported, skipped")
    restore = (out / "restore.txt").read_text()
    assert "Storage Object user/u1: Cannot set attribute dev_config: [Errno 95] Operation " \
        "not supported, skipped" in restore, restore
    assert "Cannot set attribute emulate_write_cache: [Errno 95]" in restore
    assert json.loads((out / "save2.json").read_text()) == saved  # the rest round-trips
