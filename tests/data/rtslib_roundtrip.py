"""A scripted rtslib-fb round trip, run inside ``simfs run`` (tests/e2e/test_rtslib_roundtrip.py).

    rtslib_roundtrip.py targetcli OUT SPEC    Debian's targetcli makes every object, saves,
                                              clears, restores and saves again
    rtslib_roundtrip.py api OUT SPEC PYTHON   the same through rtslib-fb's API, run by PYTHON
                                              (a virtual environment with PyPI's rtslib-fb)
    rtslib_roundtrip.py op OP OUT SPEC        one API step (make, save, clear, restore,
                                              sessions), in the python that runs it

SPEC is a JSON file: loop (a block device), dir (files for fileio/user), port (the iSCSI
portal's), fabrics ({fabric: [target wwn, acl wwn or null]}, the fabrics this kernel has).
OUT receives: tree1.json, save1.json (made), tree_empty.json (cleared), tree2.json,
save2.json (restored), sessions.json and sessions_detail.txt (during a libiscsi session),
steps.log (every command and its output).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CFS = "/sys/kernel/config/target"
IQN = "iqn.2026-12.org.simfs:rt"
INI1 = "iqn.2026-12.org.example:ini1"  # CHAP; lun 0 rw, lun 1 read-only; the session's
INI2 = "iqn.2026-12.org.example:ini2"  # mutual CHAP, a tag, an attribute
LOOPBACK = "naa.5001405aaaaaaaa1"
MB = 1 << 20


# -- the tree, as files and links -----------------------------------------------------
def dump_tree(root: str = CFS) -> dict:
    """Every directory, every attribute file's content (or its errno on read) and every
    link's target below ``root``, by path relative to it."""
    out: dict[str, str] = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        out[rel + "/"] = "dir"
        for name in sorted(dirs):  # a link to a directory shows up here
            p = os.path.join(d, name)
            if os.path.islink(p):
                out[os.path.join(rel, name)] = "-> " + os.readlink(p)
        dirs[:] = [n for n in sorted(dirs) if not os.path.islink(os.path.join(d, n))]
        for name in sorted(files):
            p = os.path.join(d, name)
            if os.path.islink(p):
                out[os.path.join(rel, name)] = "-> " + os.readlink(p)
                continue
            try:
                fd = os.open(p, os.O_RDONLY)
                try:
                    out[os.path.join(rel, name)] = os.read(fd, 65536).decode(errors="replace")
                finally:
                    os.close(fd)
            except OSError as e:
                out[os.path.join(rel, name)] = f"!{e.errno}"
    return out


def save_tree(path: str) -> None:
    with open(path, "w") as f:
        json.dump(dump_tree(), f, indent=1, sort_keys=True)


# -- steps ---------------------------------------------------------------------------
class Log:
    def __init__(self, out: str):
        self.out = out
        self.f = open(os.path.join(out, "steps.log"), "a")

    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        self.f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}[exit {r.returncode}]\n")
        self.f.flush()
        if check and r.returncode:
            raise SystemExit(f"failed: {' '.join(argv)}\n{r.stdout}{r.stderr}")
        return r


def targetcli_make(log: Log, spec: dict) -> None:
    """Every object type, through targetcli's commands (as a user types them)."""
    d, loop, port = spec["dir"], spec["loop"], spec["port"]
    tpg = f"/iscsi/{IQN}/tpg1"
    cmds = [
        f"/backstores/block create b0 {loop}",
        f"/backstores/fileio create f0 {d}/f0.img 32M write_back=false",
        "/backstores/fileio/f0 set attribute emulate_tpu=1 emulate_3pc=1",
        "/backstores/ramdisk create r0 16M",
        "/backstores/ramdisk create r1 8M nullio=true",
        f"/backstores/user:file create name=u0 size=16M cfgstring={d}/u0.img",
        "/backstores/ramdisk/r0/alua create tg_b 2",
        "/backstores/ramdisk/r0/alua/tg_b set alua alua_access_state=1 preferred=1 "
        "nonop_delay_msecs=50 alua_access_type=3",
        "/iscsi set discovery_auth enable=1 userid=du password=dp mutual_userid=dmu "
        "mutual_password=dmp",
        f"/iscsi create {IQN}",
        f"{tpg}/portals delete 0.0.0.0 3260",
        f"{tpg}/portals create 127.0.0.1 {port}",
        f"{tpg} set attribute authentication=1 default_cmdsn_depth=32 "
        "demo_mode_write_protect=1",
        f"{tpg} set parameter MaxRecvDataSegmentLength=65536 HeaderDigest=None",
        f"{tpg} set auth userid=tu password=tp",
        f"{tpg}/luns create /backstores/ramdisk/r0 lun=0 add_mapped_luns=false",
        f"{tpg}/luns create /backstores/block/b0 lun=1 add_mapped_luns=false",
        f"{tpg}/luns create /backstores/fileio/f0 lun=2 add_mapped_luns=false",
        f"{tpg}/luns create /backstores/user:file/u0 lun=3 add_mapped_luns=false",
        f"{tpg}/luns create /backstores/ramdisk/r1 lun=4 add_mapped_luns=false",
        f"{tpg}/luns/lun0 set alua alua_tg_pt_gp_name=tg_b",
        f"{tpg}/acls create {INI1} add_mapped_luns=false",
        f"{tpg}/acls/{INI1} create mapped_lun=0 tpg_lun_or_backstore=lun0",
        f"{tpg}/acls/{INI1} create mapped_lun=1 tpg_lun_or_backstore=lun1 write_protect=1",
        f"{tpg}/acls/{INI1} set auth userid=u1 password=p1",
        f"{tpg}/acls create {INI2} add_mapped_luns=false",
        f"{tpg}/acls/{INI2} create mapped_lun=0 tpg_lun_or_backstore=lun2",
        f"{tpg}/acls/{INI2} set auth userid=u2 password=p2 mutual_userid=mu2 "
        "mutual_password=mp2",
        f"{tpg}/acls/{INI2} set attribute dataout_timeout=5",
        f"{tpg}/acls tag {INI2} grp",
        f"/loopback create {LOOPBACK}",
        f"/loopback/{LOOPBACK}/luns create /backstores/fileio/f0",
    ]
    for fabric, (wwn, acl) in spec["fabrics"].items():
        sub = "/tpg1" if fabric in ("vhost", "xen-pvscsi") else ""
        cmds.append(f"/{fabric} create {wwn}")
        cmds.append(f"/{fabric}/{wwn}{sub}/luns create /backstores/ramdisk/r1")
        if acl:
            cmds.append(f"/{fabric}/{wwn}{sub}/acls create {acl}")
    # one targetcli process reads them all (as typed into its shell): a process per
    # command costs a second each; a refused command is seen in the transcript
    r = log.run(["targetcli"], input="\n".join(cmds + ["exit"]) + "\n")
    with open(os.path.join(log.out, "targetcli_make.txt"), "w") as f:
        f.write(r.stdout + r.stderr)


def api_make(spec: dict) -> None:
    """The same objects through the API (the names as targetcli's make them)."""
    import rtslib_fb as r
    d, loop, port = spec["dir"], spec["loop"], spec["port"]
    r.RTSRoot()
    b0 = r.BlockStorageObject("b0", dev=loop)
    f0 = r.FileIOStorageObject("f0", f"{d}/f0.img", size=32 * MB, write_back=False)
    f0.set_attribute("emulate_tpu", 1)
    f0.set_attribute("emulate_3pc", 1)
    r0 = r.RDMCPStorageObject("r0", size=16 * MB)
    r1 = r.RDMCPStorageObject("r1", size=8 * MB, nullio=True)
    u0 = r.UserBackedStorageObject("u0", config=f"file/{d}/u0.img", size=16 * MB)
    tg = r.ALUATargetPortGroup(r0, "tg_b", 2)
    tg.alua_access_state = 1
    tg.preferred = 1
    tg.nonop_delay_msecs = 50
    tg.alua_access_type = 3
    iscsi = r.FabricModule("iscsi")
    iscsi.discovery_userid, iscsi.discovery_password = "du", "dp"
    iscsi.discovery_mutual_userid, iscsi.discovery_mutual_password = "dmu", "dmp"
    iscsi.discovery_enable_auth = True
    tpg = r.TPG(r.Target(iscsi, IQN), 1)
    r.NetworkPortal(tpg, "127.0.0.1", port)
    tpg.set_attribute("authentication", 1)
    tpg.set_attribute("default_cmdsn_depth", 32)
    tpg.set_attribute("demo_mode_write_protect", 1)
    tpg.set_parameter("MaxRecvDataSegmentLength", "65536")
    tpg.set_parameter("HeaderDigest", "None")
    tpg.chap_userid, tpg.chap_password = "tu", "tp"
    luns = [r.LUN(tpg, i, so) for i, so in enumerate((r0, b0, f0, u0, r1))]
    luns[0].alua_tg_pt_gp_name = "tg_b"
    a1 = r.NodeACL(tpg, INI1)
    r.MappedLUN(a1, 0, luns[0])
    r.MappedLUN(a1, 1, luns[1], write_protect=True)
    a1.chap_userid, a1.chap_password = "u1", "p1"
    a2 = r.NodeACL(tpg, INI2)
    r.MappedLUN(a2, 0, luns[2])
    a2.chap_userid, a2.chap_password = "u2", "p2"
    a2.chap_mutual_userid, a2.chap_mutual_password = "mu2", "mp2"
    a2.set_attribute("dataout_timeout", 5)
    a2.tag = "grp"
    tpg.enable = True
    lb = r.TPG(r.Target(r.FabricModule("loopback"), LOOPBACK), 1)  # makes its nexus
    r.LUN(lb, 0, f0)
    for fabric, (wwn, acl) in spec["fabrics"].items():
        fm = r.FabricModule(fabric)
        t = r.Target(fm, wwn)
        t_tpg = r.TPG(t, 1)
        if os.path.exists(f"{t_tpg.path}/enable"):
            t_tpg.enable = True
        r.LUN(t_tpg, 0, r1)
        if acl:
            r.NodeACL(t_tpg, acl)


def api_op(op: str, out: str, spec: dict) -> None:
    import rtslib_fb as r
    if op == "make":
        api_make(spec)
    elif op == "save":
        r.RTSRoot().save_to_file(os.path.join(out, spec["file"]))
    elif op == "clear":
        r.RTSRoot().clear_existing(confirm=True)
    elif op == "restore":
        errors = r.RTSRoot().restore_from_file(os.path.join(out, "save1.json"))
        with open(os.path.join(out, "restore.txt"), "w") as f:
            f.write("".join(e + "\n" for e in errors))
    elif op == "sessions":
        sessions = [{k: v for k, v in s.items() if k != "parent_nodeacl"}
                    | {"acl": s["parent_nodeacl"].node_wwn} for s in r.RTSRoot().sessions]
        with open(os.path.join(out, "sessions.json"), "w") as f:
            json.dump(sessions, f, indent=1)
    print(f"{op}: rtslib-fb {getattr(r, '__version__', '?')} from {r.__file__}")


def pr_aptpl(log: Log) -> None:
    """A persistent reservation registration with APTPL: the kernel writes it to
    <dbroot>/pr/aptpl_<serial>, which rtslib-fb reads back into pr/res_aptpl_metadata when it
    recreates the device. The kernel makes no directory there; an administrator does."""
    with open(f"{CFS}/dbroot") as f:
        os.makedirs(os.path.join(f.read().strip(), "pr"), exist_ok=True)
    hba = next(h for h in sorted(os.listdir(f"{CFS}/core"))
               if os.path.isdir(f"{CFS}/core/{h}/f0"))
    log.run(["simfs", "scsi", "/sys/kernel/config", f"{hba}/f0", "-I", INI2, "--port",
             f"iSCSI/{IQN}/tpgt_1/lun_2", "persist", "--register", "--sa-key", "0x2",
             "--aptpl"])


# -- a libiscsi session ------------------------------------------------------------------
def with_session(log: Log, spec: dict, then) -> None:
    """Holds a libiscsi session (iscsi-perf, CHAP as INI1, LUN 0) open while ``then``
    runs; waits for the ACL's info to show it logged in."""
    url = f"iscsi://u1%p1@127.0.0.1:{spec['port']}/{IQN}/0"
    perf = subprocess.Popen(["iscsi-perf", "-i", INI1, "-m", "1", "-b", "1", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    info = f"{CFS}/iscsi/{IQN}/tpgt_1/acls/{INI1}/info"
    try:
        deadline = time.monotonic() + 60
        while True:
            with open(info) as f:
                text = f.read()
            if "TARG_CONN_STATE_LOGGED_IN" in text:
                break
            if perf.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"no session: iscsi-perf {perf.poll()} "
                                 f"{perf.stderr.read() if perf.poll() is not None else ''}\n"
                                 f"{text}")
            time.sleep(0.1)
        log.f.write(f"ACL info during the session:\n{text}\n")
        then()
    finally:
        perf.terminate()
        perf.wait(timeout=30)


# -- the round trip ----------------------------------------------------------------------
def round_trip(how: str, out: str, spec_path: str, python: str = "") -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    log = Log(out)
    me = os.path.abspath(__file__)

    def api(op: str, **extra) -> None:
        sp = spec_path
        if extra:
            sp = os.path.join(out, "spec-op.json")
            with open(sp, "w") as f:
                json.dump(spec | extra, f)
        log.run([python, me, "op", op, out, sp])

    os.makedirs("/etc/target", exist_ok=True)  # rtslib-fb 2.2's preferred dbroot
    if how == "targetcli":
        targetcli_make(log, spec)
    else:
        api("make")
    pr_aptpl(log)
    save_tree(os.path.join(out, "tree1.json"))
    if how == "targetcli":
        log.run(["targetcli", "saveconfig", f"{out}/save1.json"])
        log.run(["targetcli", "clearconfig", "confirm=True"])
    else:
        api("save", file="save1.json")
        api("clear")
    save_tree(os.path.join(out, "tree_empty.json"))
    if how == "targetcli":
        # the recoverable errors are the test's to judge (restore.txt)
        r = log.run(["targetcli", "restoreconfig", f"{out}/save1.json"], check=False)
        with open(os.path.join(out, "restore.txt"), "w") as f:
            f.write(r.stdout + r.stderr)
    else:
        api("restore")
    save_tree(os.path.join(out, "tree2.json"))
    if how == "targetcli":
        log.run(["targetcli", "saveconfig", f"{out}/save2.json"])
    else:
        api("save", file="save2.json")

    def look() -> None:
        log.run([python or "/usr/bin/python3", me, "op", "sessions", out, spec_path])
        if how == "targetcli":
            r = log.run(["targetcli", "sessions", "detail"])
            with open(os.path.join(out, "sessions_detail.txt"), "w") as f:
                f.write(r.stdout)
    with_session(log, spec, look)
    if how == "targetcli":
        log.run(["targetcli", "clearconfig", "confirm=True"])
    else:
        api("clear")


def main(argv: list[str]) -> None:
    if argv[0] == "op":
        with open(argv[3]) as f:
            api_op(argv[1], argv[2], json.load(f))
    else:
        round_trip(argv[0], argv[1], argv[2], *argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
