"""rtslib-fb round trips on every kernel simfs plays: Debian's targetcli (rtslib-fb 2.1.75)
and PyPI's rtslib-fb 2.2 each make every object type simfs has, save, clear, restore and
save again, inside ``simfs run --kernel V``; then, during a libiscsi session, both see the
connection (``RTSRoot().sessions``, ``targetcli sessions detail``).

One ``simfs run`` per version runs both (tests/data/rtslib_roundtrip.py); the PyPI
environment is built once per session. What may differ between the tree before ``clear``
and after ``restore`` is what the kernel (not rtslib) makes anew: see ``REGENERATED``.

v3.0 (the 2009 engine) cannot be driven by rtslib-fb at all: ``test_v3_0_rtslib_fails``
shows the failures a 2009 kernel gives it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers import free_port, mount, saved_config, sh, umount
from simfs.core import kernels
from simfs.core.fabric import discover_fabrics

DATA = Path(__file__).parent.parent / "data"
DRIVER = DATA / "rtslib_roundtrip.py"
VERSIONS = ["4.18", "5.14", "6.1", "6.12", "6.18"]
RTSLIBS = ["debian", "pypi"]
IQN = "iqn.2026-12.org.simfs:rt"
INI1, INI2 = "iqn.2026-12.org.example:ini1", "iqn.2026-12.org.example:ini2"

#: hardware ports (simfs run --wwn) and, per fabric rtslib-fb knows: target wwn, ACL or None
WWNS = ["qla2xxx=21:00:00:24:ff:31:4c:48", "efct=10:00:00:10:9b:1a:2b:3c",
        "tcm_fc=20:00:00:11:22:33:44:55", "srpt=fe80:0000:0000:0000:0002:c903:0003:1235",
        "ibmvscsis=30000003"]
FABRICS = {
    "vhost": ("naa.5001405aaaaaaaa2", "naa.5001405aaaaaaaa9"),
    "xen-pvscsi": ("naa.5001405aaaaaaaa3", None),
    "tcm_fc": ("naa.2000001122334455", "naa.1000000000c91122"),
    "qla2xxx": ("naa.21000024ff314c48", "naa.21000024ff314c49"),
    "srpt": ("ib.fe800000000000000002c90300031235", "ib.fe800000000000000002c90300031236"),
    "efct": ("naa.100000109b1a2b3c", "naa.100000109b1a2b3d"),
    "ibmvscsis": ("30000003", None),
}
#: the version-table row each dated fabric plugin carries (efct 5.14, remote 6.4)
_ROWS = {ops.name: ops.kernel_row for ops in discover_fabrics() if ops.kernel_row}
#: fabric modules rtslib-fb knows that a version does not have (efct came with 5.14)
ABSENT = {v: {f for f in FABRICS  # rtslib-fb's tcm_fc is target/fc
              if (row := _ROWS.get({"tcm_fc": "fc"}.get(f, f))) and not kernels.get(v).has(row)}
          for v in VERSIONS}

#: the files whose content the kernel makes anew when the objects are made again, and why
REGENERATED = [
    # scsi_get_new_index(): HBA, device and port indexes only ever grow
    (r"core/[^/]+/hba_info$", r"HBA Index: \d+", "HBA Index: N"),
    (r"/statistics/.*/(inst|indx|dev|port_auth_indx)$", r"\d+", "N"),
    (r"/statistics/scsi_port/role$", r"Device\d+", "DeviceN"),
    # jiffies at creation
    (r"/statistics/.*/creation_time$", r"\d+", "N"),
    # dev->queue_depth is set only by a write of attrib/queue_depth, which restore makes
    # (target_core_configfs.c queue_depth_store; transport_dump_dev_state prints it)
    (r"core/[^/]+/[^/]+/info$", r"Max Queue Depth: \d+", "Max Queue Depth: N"),
    # tcm_loop adds a new SCSI host for the TPG's nexus; host numbers are not reused
    (r"loopback/.*/tpgt_\d+/address$", r"^\d+:", "H:"),
    # rtslib-fb writes a freshly generated nexus WWN when it makes the TPG (not saved)
    (r"/tpgt_\d+/nexus$", r"naa\.[0-9a-f]{16}", "naa.<nexus>"),
    # relative target port ids are not saved: they follow the order objects are made in,
    # and rtslib-fb restores fabric by fabric in its own order (srpt, iscsi, loopback,
    # qla2xxx, ...): 6.3+ gives a TPG the lowest free id when it is enabled, older kernels
    # number a device's ports as its LUNs are linked. The port statistics name it.
    (r"/tpgt_\d+/rtpi$", r"0x[0-9a-f]+", "<rtpi>"),
    (r"/statistics/scsi_tgt_port/name$", r"Port#\d+", "Port#N"),
    # the PR OUT that made the APTPL registration was a command, counted in the device, the
    # initiator's mapping and the LUN it came through; the restore sends none
    (r"/statistics/scsi_lu/num_cmds$", r"\d+", "N"),
    (r"/statistics/scsi_auth_intr/num_cmds$", r"\d+", "N"),
    (r"/statistics/scsi_tgt_port/in_cmds$", r"\d+", "N"),
]


#: an HBA directory: rtslib-fb names it ``<plugin>_<next free index>``, and a restore makes
#: the storage objects in the order the save listed them (configfs lists newest first), so
#: the same device comes back under another HBA number
HBA = re.compile(r"\b(iblock|fileio|rd_mcp|rd_dr|pscsi|user)_\d+\b")


def _mask(tree: dict) -> dict:
    out = {}
    for path, value in tree.items():
        path, value = HBA.sub(r"\1_N", path), HBA.sub(r"\1_N", value)
        if path.endswith("/members"):
            # a group lists its members in the order they joined it (as above)
            value = "\n".join(sorted(value.replace("\0", "").splitlines()))
        for where, what, repl in REGENERATED:
            if re.search(where, path):
                value = re.sub(what, repl, value)
        out[path] = value
    return out


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pypi_python(tmp_path_factory) -> str:
    """A virtual environment (no system packages) with PyPI's rtslib-fb 2.2."""
    d = tmp_path_factory.mktemp("pypi-rtslib") / "venv"
    venv.EnvBuilder(with_pip=True).create(d)
    r = subprocess.run([str(d / "bin/pip"), "install", "-q", "rtslib-fb>=2.2,<2.3"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        pytest.skip(f"pip cannot install rtslib-fb 2.2 here: {r.stderr[-300:]}")
    return str(d / "bin/python")


@pytest.fixture(scope="session")
def session_loopdev(tmp_path_factory):
    img = tmp_path_factory.mktemp("rtslib-loop") / "b0.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    r = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"losetup unavailable here: {r.stderr.strip()}")
    yield r.stdout.strip()
    subprocess.run(["losetup", "-d", r.stdout.strip()], check=False)


@pytest.fixture(scope="session")
def round_trips(pypi_python, session_loopdev, tmp_path_factory):
    """``round_trips(version)``: the output folder of that version's run (made once), with
    one sub-folder per rtslib-fb (``debian``, ``pypi``)."""
    if shutil.which("targetcli") is None or shutil.which("iscsi-perf") is None:
        pytest.skip("needs Debian's targetcli-fb and libiscsi-bin")
    done: dict[str, Path] = {}

    def run(version: str) -> Path:
        if version in done:
            return done[version]
        base = tmp_path_factory.mktemp(f"rtslib-{version}")
        (base / "files").mkdir()
        fabrics = {f: v for f, v in FABRICS.items() if f not in ABSENT.get(version, ())}
        steps = []
        for how in RTSLIBS:
            (base / how).mkdir()
            spec = base / how / "spec.json"
            spec.write_text(json.dumps({"loop": session_loopdev, "dir": str(base / "files"),
                                        "port": free_port(), "fabrics": fabrics}))
            args = (["targetcli", str(base / how), str(spec)] if how == "debian" else
                    ["api", str(base / how), str(spec), pypi_python])
            steps.append(" ".join(["/usr/bin/python3", str(DRIVER), *args]))
        cmd = [sys.executable, "-m", "simfs", "run", "--kernel", version, "--state-dir",
               str(base / "state")]
        for w in WWNS:
            if w.split("=")[0] in fabrics:
                cmd += ["--wwn", w]
        r = subprocess.run(cmd + ["--", "bash", "-ec", "\n".join(steps)], capture_output=True,
                           text=True, timeout=900)
        (base / "run.txt").write_text(r.stdout + r.stderr)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        done[version] = base
        return base

    return run


def _load(p: Path):
    return json.loads(p.read_text())


# -- the round trip ---------------------------------------------------------------------
@pytest.mark.parametrize("rtslib", RTSLIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_round_trip(round_trips, version, rtslib):
    out = round_trips(version) / rtslib
    # rtslib-fb points dbroot at its preferred directory (Debian's: /etc/rtslib-fb-target;
    # 2.2's: /etc/target, where the kernel starts). A run is a freshly booted machine:
    # Debian's targetcli, first, sets it before any fabric module is loaded. Up to 5.18 the
    # kernel refuses any change once one is registered ("db_root: cannot be changed: target
    # drivers registered"): rtslib-fb 2.2, second in the same run, warns and keeps Debian's
    refused = kernels.get(version).value("dbroot_busy") == "fabrics"
    want = "/etc/target" if rtslib == "pypi" and not refused else "/etc/rtslib-fb-target"
    assert _load(out / "tree1.json")["./dbroot"] == want + "\n"
    preferred = "/etc/rtslib-fb-target" if rtslib == "debian" else "/etc/target"
    warned = f"UserWarning: Cannot set dbroot to {preferred}" in (out / "steps.log").read_text()
    assert warned == (rtslib == "pypi" and refused)
    if rtslib == "debian":
        made = (out / "targetcli_make.txt").read_text()
        # one targetcli reads the commands; a refused one prints no "Created"/"now" line
        bad = [line for line in made.splitlines() if re.search(
            r"(?i)error|cannot|could not|not found|no such|invalid|missing|failed", line)
            and "dbroot" not in line]
        assert not bad, made
    save1, save2 = _load(out / "save1.json"), _load(out / "save2.json")
    # nothing in rtslib-fb's JSON is made anew by a restore: the LUN and mapped LUN link
    # names are saved as 'alias', the serials as 'wwn'; the nexus WWNs are not saved.
    # Only the order of siblings changes (readdir lists newest first).
    assert saved_config(save1) == saved_config(save2)
    sos = {so["name"]: so for so in save1["storage_objects"]}
    assert {n: so["plugin"] for n, so in sos.items()} == {
        "b0": "block", "f0": "fileio", "r0": "ramdisk",
        "r1": "ramdisk", "u0": "user"}
    assert sos["r1"]["nullio"] is True and sos["f0"]["write_back"] is False
    assert sos["f0"]["attributes"]["emulate_tpu"] == 1
    assert sos["u0"]["config"].startswith("file/")
    tg_b = next(g for g in sos["r0"]["alua_tpgs"] if g["name"] == "tg_b")
    assert (tg_b["tg_pt_gp_id"], tg_b["alua_access_state"], tg_b["preferred"],
            tg_b["nonop_delay_msecs"]) == (2, 1, 1, 50)
    assert save1["fabric_modules"] == [{
        "name": "iscsi", "discovery_enable_auth": True, "discovery_userid": "du",
        "discovery_password": "dp", "discovery_mutual_userid": "dmu",
        "discovery_mutual_password": "dmp"}]
    targets = {t["wwn"]: t for t in save1["targets"]}
    fabrics = {f for f in FABRICS if f not in ABSENT.get(version, ())}
    assert sorted(t["fabric"] for t in save1["targets"]) == sorted(
        fabrics | {"iscsi", "loopback"})
    (tpg,) = targets[IQN]["tpgs"]
    assert tpg["enable"] is True and tpg["chap_userid"] == "tu"
    assert tpg["attributes"]["authentication"] == 1
    assert tpg["attributes"]["default_cmdsn_depth"] == 32
    assert tpg["parameters"]["MaxRecvDataSegmentLength"] == "65536"
    assert [p["ip_address"] for p in tpg["portals"]] == ["127.0.0.1"]
    assert sorted((lun["index"], lun["storage_object"], lun["alua_tg_pt_gp_name"])
                  for lun in tpg["luns"])[:2] == [(0, "/backstores/ramdisk/r0", "tg_b"),
                                            (1, "/backstores/block/b0", "default_tg_pt_gp")]
    acls = {a["node_wwn"]: a for a in tpg["node_acls"]}
    assert sorted((m["index"], m["tpg_lun"], m["write_protect"])
                  for m in acls[INI1]["mapped_luns"]) == [(0, 0, False), (1, 1, True)]
    assert acls[INI2]["tag"] == "grp" and acls[INI2]["chap_mutual_userid"] == "mu2"
    assert acls[INI2]["attributes"]["dataout_timeout"] == 5
    # the kernel tree: empty after clear; after restore as it was, but for what the
    # kernel makes anew (REGENERATED)
    empty = _load(out / "tree_empty.json")
    assert not [p for p in empty if re.match(r"core/(?!alua/)[^/]+/|[^/]+/[^/]+/tpgt_", p)]
    tree1, tree2 = _load(out / "tree1.json"), _load(out / "tree2.json")
    m1, m2 = _mask(tree1), _mask(tree2)
    assert [(p, m1.get(p), m2.get(p)) for p in sorted(set(m1) | set(m2))
            if m1.get(p) != m2.get(p)] == []
    # the APTPL registration came back from <dbroot>/pr/aptpl_<serial> (rtslib-fb writes it
    # into pr/res_aptpl_metadata when it makes the device again)
    (pr,) = [v for p, v in tree2.items() if p.endswith("/f0/pr/res_pr_registered_i_pts")]
    assert f"iSCSI Node: {INI2} Key: 0x0000000000000002" in pr
    (aptpl,) = [v for p, v in tree2.items() if p.endswith("/f0/pr/res_aptpl_active")]
    assert aptpl == "APTPL Bit Status: Activated\n"
    # tcmu-runner's file handler has no reconfig: restoring rewrites dev_config and
    # emulate_write_cache of the enabled user:file device and gets EOPNOTSUPP (as on a
    # kernel with tcmu-runner); nothing else is refused
    restore = (out / "restore.txt").read_text()
    refused = sorted(re.findall(r"Cannot set attribute (\w+): \[Errno 95\]", restore))
    assert refused == ["dev_config", "emulate_write_cache"], restore
    assert len(re.findall(r"skipped", restore)) == 2, restore


@pytest.mark.parametrize("rtslib", RTSLIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_sessions_during_a_libiscsi_session(round_trips, version, rtslib):
    """iscsi-perf (libiscsi) logged in with CHAP as INI1 while rtslib-fb looked."""
    out = round_trips(version) / rtslib
    (s,) = _load(out / "sessions.json")
    assert (s["acl"], s["type"], s["state"], s["alias"]) == (INI1, "Normal", "LOGGED_IN", "")
    assert s["connections"] == [{"cid": 0, "cstate": "LOGGED_IN", "address": "127.0.0.1",
                                 "transport": "TCP"}]
    if rtslib == "debian":
        detail = (out / "sessions_detail.txt").read_text()
        assert "address: 127.0.0.1 (TCP)  cid: 0 connection-state: LOGGED_IN" in detail
        assert re.search(r"alias: \s*sid: \d+ type: Normal session-state: LOGGED_IN", detail)
        assert "mapped-lun: 1 backstore: block/b0 mode: r\n" in detail


# -- v3.0: the 2009 tree ----------------------------------------------------------------
def test_v3_0_rtslib_fails(pypi_python, tmp_path):
    """rtslib-fb cannot drive a 2009 kernel's tree, and simfs's v3.0 fails it the way that
    kernel would (lio-core-2.6, 2009, target_core_configfs.c):

    * a device's ``enable`` is write-only (``S_IWUSR``, no show); rtslib-fb reads it to
      know whether the device is configured: EACCES, right after it enabled the device;
    * a device has only the attrib, pr and wwn default groups (target port groups were
      global, under core/alua/tg_pt_gps): rtslib-fb lists ``<device>/alua`` in every
      storage object it looks at (its clean-up after the failure, ``dump``, ``targetcli
      ls``): ENOENT;
    * ``mkdir target/iscsi`` asks for iscsi_target_mod, which the seed's engine has not:
      EINVAL, and rtslib-fb's ``modprobe iscsi_target_mod`` finds no such module either, so
      targetcli cannot even list an empty tree.
    """
    if shutil.which("targetcli") is None:
        pytest.skip("needs Debian's targetcli-fb")
    t = "/sys/kernel/config/target/core"
    script = f"""
targetcli ls > {tmp_path}/ls_empty.txt 2>&1 || echo "exit $?" >> {tmp_path}/ls_empty.txt
mkdir -p {t}/rd_mcp_9/seed && echo rd_pages=64 > {t}/rd_mcp_9/seed/control
echo 1 > {t}/rd_mcp_9/seed/enable
/usr/bin/python3 {DATA / 'rtslib_v3.py'} r_deb > {tmp_path}/debian.json
{pypi_python} {DATA / 'rtslib_v3.py'} r_pypi > {tmp_path}/pypi.json
targetcli ls > {tmp_path}/ls_seed.txt 2>&1 || echo "exit $?" >> {tmp_path}/ls_seed.txt
"""
    r = subprocess.run([sys.executable, "-m", "simfs", "run", "--kernel", "v3.0",
                        "--state-dir", str(tmp_path / "st"), "--", "bash", "-ec", script],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for name, so in (("debian", "rd_mcp_0/r_deb"), ("pypi", "rd_mcp_1/r_pypi")):
        got = json.loads((tmp_path / f"{name}.json").read_text())
        (first, *_, last) = got["create"]
        assert first[:3] == ["PermissionError", 13, f"{t}/{so}/enable"], got
        assert last[:3] == ["FileNotFoundError", 2, f"{t}/{so}/alua"], got
        # dump stops at the first storage object it lists (newest first: either one)
        assert [e[:2] for e in got["dump"]] == [["FileNotFoundError", 2]], got
        assert re.fullmatch(rf"{t}/rd_mcp_\d+/(seed|r_deb|r_pypi)/alua", got["dump"][0][2]), got
    empty = (tmp_path / "ls_empty.txt").read_text()
    # rtslib-fb, finding no iscsi_target_mod in /proc/modules, runs modprobe: not found
    assert "modprobe: FATAL: Module iscsi_target_mod not found in directory" in empty
    assert "exit " in empty
    seed = (tmp_path / "ls_seed.txt").read_text()
    assert re.search(rf"No such file or directory: '{t}/rd_mcp_\d+/\w+/alua'", seed), seed
    log = (tmp_path / "st/mount/dmesg.log").read_text()
    assert "request_module() failed for iscsi_target_mod.ko: -2" in log
    assert "target_core_get_fabric() failed for iscsi" in log


@pytest.mark.parametrize("version,module,fabric,present", [
    ("4.18", "efct", "efct", False), ("5.14", "efct", "efct", True),
    ("6.1", "tcm_remote", "remote", False), ("6.12", "tcm_remote", "remote", True)])
def test_fabric_modules_by_version(version, module, fabric, present):
    """A fabric module the kernel does not have yet: modprobe does not find it (exit 1, its
    FATAL line; the shim `simfs run` puts on PATH says the same, -q keeps it quiet) and
    ``mkdir target/<fabric>`` is EINVAL with target_core_register_fabric's lines."""
    m = mount(version)
    try:
        r = sh(f"simfs modprobe {m.root} {module}")
        shim = sh(f"{sys.executable} -m simfs.cli.modprobe {m.state_dir} {module}")
        quiet = sh(f"{sys.executable} -m simfs.cli.modprobe {m.state_dir} -q {module}")
        if present:
            assert r.returncode == shim.returncode == quiet.returncode == 0, r.stderr
        else:
            assert r.returncode == shim.returncode == quiet.returncode == 1
            assert f"FATAL: Module {module} not found in directory /lib/modules/" in r.stderr
            assert shim.stderr.startswith(f"modprobe: FATAL: Module {module} not found")
            assert quiet.stderr == ""
        r = sh(f"mkdir {m.root}/target/{fabric}")
        if present:
            assert r.returncode == 0, r.stderr
            return
        assert "Invalid argument" in r.stderr
        assert not os.path.exists(f"{m.root}/target/{fabric}")
        assert f"target_core_get_fabric() failed for {fabric}" in m.dmesg()
    finally:
        umount(m)
