"""The mount's iSCSI target as its users meet it: why a login was refused (`simfs dmesg`,
`simfs trace`), the ACL's `info` during a session (as rtslib-fb parses it), the kernel's
residuals, and one slow device that does not slow the others.

Targets are made with shell commands in a real FUSE mount; initiators are libiscsi's tools
and the small raw initiator of test_iscsi_server.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from helpers import free_port, mount, sh, umount, wait_port  # noqa: E402
from iscsi_fake import TARGET  # noqa: E402
from test_iscsi_server import RawInitiator as _Raw  # noqa: E402
from tracing import Client  # noqa: E402

from simfs.iscsi import pdu as P  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("iscsi-inq") is None,
                                reason="libiscsi-bin is not installed")

RAW = "iqn.2026-01.test:raw"  # RawInitiator's name
CHAP_INI = "iqn.2026-12.org.example:chap"
STRANGER = "iqn.2026-12.org.example:stranger"
NAMED = "iqn.2026-12.org.example:raw"  # the raw initiator under a name rtslib-fb accepts
TARGET2 = "iqn.2026-12.org.simfs:other"
TARGET3 = "iqn.2026-12.org.simfs:chap"


class RawInitiator(_Raw):
    """The raw initiator, each one with its own ISID (one ISID is one session: a second
    login with the same one would reinstate, i.e. end, the first)."""

    _next = iter(range(0x1234, 0x10000))

    def __init__(self, port: int):
        super().__init__(port)
        self.isid = b"\x80\x00\x00\x00" + next(self._next).to_bytes(2, "big")

    def login(self, keys, csg, nsg, transit=True, isid=None):
        return super().login(keys, csg, nsg, transit, isid or self.isid)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """TARGET (lun 0 fileio f0, lun 1 rd_mcp r1; an ACL for RAW) on one portal; TARGET2
    (lun 0 rd_mcp r2, demo mode) and TARGET3 (authentication=1, CHAP_INI's ACL with CHAP
    credentials, lun 0 r2) on another."""
    m = mount("modern")
    img = tmp_path_factory.mktemp("iscsi") / "f0.img"
    port, port2 = free_port(), free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{TARGET}/tpgt_1"
    tpg2 = f"{t}/iscsi/{TARGET2}/tpgt_1"
    tpg3 = f"{t}/iscsi/{TARGET3}/tpgt_1"
    m.ok(f"mkdir -p {t}/core/fileio_0/f0 {t}/core/rd_mcp_0/r1 {t}/core/rd_mcp_0/r2 && "
         f"echo fd_dev_name={img},fd_dev_size=16777216 > {t}/core/fileio_0/f0/control && "
         f"echo 1 > {t}/core/fileio_0/f0/enable && "
         f"echo rd_pages=4096 > {t}/core/rd_mcp_0/r1/control && "
         f"echo 1 > {t}/core/rd_mcp_0/r1/enable && "
         f"echo rd_pages=4096 > {t}/core/rd_mcp_0/r2/control && "
         f"echo 1 > {t}/core/rd_mcp_0/r2/enable && "
         f"mkdir -p {tpg}/lun/lun_0 {tpg}/lun/lun_1 && "
         f"ln -s {t}/core/fileio_0/f0 {tpg}/lun/lun_0/l0 && "
         f"ln -s {t}/core/rd_mcp_0/r1 {tpg}/lun/lun_1/l1 && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && echo 0 > {tpg}/attrib/authentication && "
         f"mkdir -p {tpg}/acls/{RAW}/lun_0 {tpg}/acls/{RAW}/lun_1 "
         f"&& ln -s {tpg}/lun/lun_0 {tpg}/acls/{RAW}/lun_0/m && "
         f"ln -s {tpg}/lun/lun_1 {tpg}/acls/{RAW}/lun_1/m && "
         f"echo 1 > {tpg}/enable && "
         f"mkdir -p {tpg3}/lun/lun_0 {tpg3}/acls/{CHAP_INI}/lun_0 && "
         f"ln -s {t}/core/rd_mcp_0/r2 {tpg3}/lun/lun_0/l0 && "
         f"ln -s {tpg3}/lun/lun_0 {tpg3}/acls/{CHAP_INI}/lun_0/m && "
         f"echo -n chapuser > {tpg3}/acls/{CHAP_INI}/auth/userid && "
         f"echo -n chapsecret12 > {tpg3}/acls/{CHAP_INI}/auth/password && "
         f"mkdir {tpg3}/np/127.0.0.1:{port2} && echo 1 > {tpg3}/enable && "
         f"mkdir -p {tpg2}/lun/lun_0 && ln -s {t}/core/rd_mcp_0/r2 {tpg2}/lun/lun_0/l0 && "
         f"mkdir {tpg2}/np/127.0.0.1:{port2} && echo 0 > {tpg2}/attrib/authentication && "
         f"echo 1 > {tpg2}/attrib/generate_node_acls && "
         f"echo 0 > {tpg2}/attrib/demo_mode_write_protect && echo 1 > {tpg2}/enable")
    wait_port(port)
    wait_port(port2)
    yield m, port, port2, tpg
    umount(m)


def inq(port: int, iqn: str, initiator: str, auth: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["iscsi-inq", "-i", initiator,
                           f"iscsi://{auth}127.0.0.1:{port}/{iqn}/0"],
                          capture_output=True, text=True, timeout=60)


# -- say why ----------------------------------------------------------------------------------
def test_refused_logins_and_drops_are_explained(site):
    m, port, port2, _ = site
    trace = Client(["trace", m.root, "--json"])
    mark = m.log_mark()

    # a wrong CHAP secret: the digest differs (a debug line), then the kernel's two errors
    r = inq(port2, TARGET3, CHAP_INI, "chapuser%wrongsecret1@")
    assert r.returncode != 0
    log = m.log_since(mark)
    assert re.search(r"\] \[server\] md5 Digests do not match!\n.*\] Security negotiation "
                     r"failed\.\n.*\] iSCSI Login negotiation failed\.\n", log), log
    # a wrong CHAP user
    mark = m.log_mark()
    assert inq(port2, TARGET3, CHAP_INI, "someone%chapsecret12@").returncode != 0
    assert "] CHAP_N values do not match!\n" in m.log_since(mark)
    # the right one logs in (and leaves nothing of the kind)
    mark = m.log_mark()
    r = inq(port2, TARGET3, CHAP_INI, "chapuser%chapsecret12@")
    assert r.returncode == 0, r.stderr
    assert "negotiation failed" not in m.log_since(mark)
    # an initiator without an ACL
    mark = m.log_mark()
    assert inq(port, TARGET, STRANGER).returncode != 0
    assert (f"] iSCSI Initiator Node: {STRANGER} is not authorized to access iSCSI target "
            "portal group: 1.\n") in m.log_since(mark)

    # a bad PDU before login, and an oversized login segment
    mark = m.log_mark()
    for bhs in (bytearray(48), P.build_login_req(b"\x80" + bytes(5), 0, 1, 0, 1, 0, 0, 1,
                                                 True, 9000)):
        if not bhs[0]:
            bhs[0] = 0x01  # a SCSI Command before login
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(bytes(bhs))
            s.settimeout(5)
            while s.recv(4096):
                pass
    log = m.log_since(mark)
    assert "] Received unknown opcode 0x01.\n" in log
    assert ("] Login request payload exceeds default MaxRecvDataSegmentLength: 8192, "
            "protocol error.\n") in log

    # an oversized ping in full feature phase is rejected before its data is read, as
    # iscsit_setup_nop_out does: what follows its header is the next PDU (a ping here)
    mark = m.log_mark()
    ini = RawInitiator(port)
    ini.full_login()
    ini.sock.sendall(bytes(_nop_out(ini, 300000)) + bytes(_nop_out(ini, 0)))
    rej, nopin = ini.recv(), ini.recv()
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x77)
    assert ("] NOPOUT Ping Data DataSegmentLength: 300000 is greater than "
            "MaxXmitDataSegmentLength: 262144, protocol error.\n") in m.log_since(mark)
    # an opcode nobody knows drops the connection
    ini.send(P.build_generic(0x1F, P.F_FINAL, 0x78))
    ini.sock.settimeout(5)
    with pytest.raises((EOFError, ConnectionError)):
        while True:
            ini.recv()
    ini.close()

    events = [json.loads(line) for line in trace.stop(settle=0.5).splitlines()]
    mine = [e for e in events if e.get("op") == "iscsi"]
    reasons = [(e["event"], e["result"], e.get("reason", "")) for e in mine]
    assert ("login", "refused", "[server] md5 Digests do not match!") in reasons
    assert ("login", "refused", "CHAP_N values do not match!") in reasons
    assert ("login", "refused", f"iSCSI Initiator Node: {STRANGER} is not authorized to "
            "access iSCSI target portal group: 1.") in reasons
    assert ("login", "refused", "Received unknown opcode 0x01.") in reasons
    assert ("drop", "dropped", "Cannot recover from unknown opcode while ERL=0, closing iSCSI "
            "connection.") in reasons
    assert all(e["path"].startswith("iscsi") and e["peer"].startswith("127.0.0.1:")
               for e in mine)
    refused = next(e for e in mine if e.get("reason") == "CHAP_N values do not match!")
    assert refused["path"] == f"iscsi/{TARGET3}/tpgt_1" and refused["initiator"] == CHAP_INI


def _nop_out(ini: RawInitiator, dlen: int) -> bytearray:
    bhs = bytearray(48)
    bhs[0] = P.OP_NOOP_OUT | P.OP_IMMEDIATE
    bhs[1] = 0x80
    bhs[5:8] = dlen.to_bytes(3, "big")
    bhs[16:20] = (0x77).to_bytes(4, "big")
    bhs[20:24] = P.RSVD_TAG.to_bytes(4, "big")
    bhs[24:28] = ini.cmdsn.to_bytes(4, "big")
    bhs[28:32] = ini.statsn.to_bytes(4, "big")
    return bhs


def test_login_timeout_is_logged(site):
    """A connection that says nothing is dropped at the kernel's 15 s login timeout."""
    m, port, _, _ = site
    mark = m.log_mark()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        t0 = time.monotonic()
        assert s.recv(10) == b""
        waited = time.monotonic() - t0
    assert 10 < waited < 25
    log = m.log_since(mark)
    assert re.search(r"\] Entering iscsi_target_login_timeout >+\n.*\] iSCSI Login "
                     r"negotiation failed\.\n", log), log


# -- ACL info during a session -----------------------------------------------------------------
def test_acl_info_shows_the_session_and_connection(site):
    m, port, _, tpg = site
    info = f"{tpg}/acls/{RAW}/info"
    assert m.ok(f"cat {info}") == f"No active iSCSI Session for Initiator Endpoint: {RAW}\n"
    ini = RawInitiator(port)
    keys = ini.full_login()
    assert keys
    try:
        text = m.ok(f"cat {info}")
        lines = text.splitlines()
        assert lines[0] == f"InitiatorName: {RAW}"
        assert lines[1] == "InitiatorAlias: "  # the raw initiator sends none
        isid = ini.isid.hex(" ")
        assert re.fullmatch(rf"LIO Session ID: \d+   ISID: 0x{isid}  TSIH: \d+  "
                            r"SessionType: Normal", lines[2]), lines[2]
        assert lines[3] == "Session State: TARG_SESS_STATE_LOGGED_IN"
        assert lines[4] == "---------------------[iSCSI Session Values]---------------------" \
            "--"
        assert lines[5] == "  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    " \
            ":     TTT"
        vals = [int(v, 16) for v in lines[6].split()]
        assert vals[0] == 64 and vals[1] == 64  # the ACL's cmdsn_depth; a full window
        assert vals[2] == ini.exp_cmdsn and vals[3] == ini.exp_cmdsn + 63
        assert vals[4] == 0x01000000  # the login ITT 0x1, as a little-endian host reads it
        assert lines[7] == "----------------------[iSCSI Connections]-----------------------" \
            "--"
        assert lines[8] == "CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN"
        assert re.fullmatch(r"   Address 127\.0\.0\.1 TCP  StatSN: 0x[0-9a-f]{8}", lines[9])
        assert int(lines[9].split("0x")[1], 16) == ini.statsn
        # rtslib-fb's own parser (NodeACL.session) finds the connection
        rtslib = pytest.importorskip("rtslib_fb.target")
        acl = type("Acl", (), {"path": f"{tpg}/acls/{RAW}"})()
        sess = rtslib.NodeACL._get_session(acl)
        assert sess["state"] == "LOGGED_IN" and sess["type"] == "Normal"
        assert sess["connections"] == [{"cid": 0, "cstate": "LOGGED_IN",
                                        "address": "127.0.0.1", "transport": "TCP"}]
        # the negotiated values behind param/
        assert m.ok(f"cat {tpg}/acls/{RAW}/param/ImmediateData") == "0\n"
        assert m.ok(f"cat {tpg}/acls/{RAW}/param/MaxBurstLength") == "8192\n"
    finally:
        ini.close()
    deadline = time.monotonic() + 5
    while "No active" not in m.ok(f"cat {info}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.ok(f"cat {info}").startswith("No active iSCSI Session")


# -- residuals (target_cmd_size_check) --------------------------------------------------------
@pytest.mark.parametrize("lun,cdb,edtl,flags,residual", [
    (0, bytes([0x12, 0, 0, 0, 255, 0]), 8, P.RSP_OVERFLOW, 247),  # INQUIRY 255, EDTL 8
    (0, bytes([0x35, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 0, P.RSP_OVERFLOW, 4096),  # SYNC CACHE
    (0, bytes([0x2F, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 0, P.RSP_OVERFLOW, 4096),  # VERIFY(10)
    (1, bytes([0x35, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 0, 0, 0),  # rd_mcp syncs nothing: size 0
])
def test_residuals(site, lun, cdb, edtl, flags, residual):
    _, port, _, _ = site
    ini = RawInitiator(port)
    ini.full_login()
    try:
        # unit attentions live per ACL mapping and are queued before any session (3Fh/0Eh
        # from the mappings made after the first): TEST UNIT READY reports them first
        for _ in range(4):
            if ini.scsi(bytes(6), lun=lun)[0] == 0:
                break
        lun_bytes = bytes([0, lun]) + bytes(6)
        ini.itt += 1
        f = P.F_FINAL | (P.CMD_READ if edtl else 0)
        bhs = P.build_scsi_cmd(f, 0, ini.itt, edtl, ini.cmdsn, ini.statsn, cdb, 0)
        bhs[8:16] = lun_bytes
        ini.send(bhs)
        ini.cmdsn += 1
        while True:
            p = ini.recv()
            if p.opcode == P.OP_SCSI_RSP or (p.opcode == P.OP_DATA_IN
                                             and p.flags & P.DATAIN_STATUS):
                break
        assert p.bhs[3] == 0  # GOOD
        assert p.bhs[1] & (P.RSP_OVERFLOW | P.RSP_UNDERFLOW) == flags
        assert p.u32(44) == residual
    finally:
        ini.close()


# -- one slow device ------------------------------------------------------------------------
def _timed(fn, n=3) -> float:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def test_a_slow_device_delays_only_its_own_commands(site):
    """`simfs fault ... latency 2000` on fileio_0/f0 with four sessions reading it: a login
    + INQUIRY on another target stays within 2x of its idle time (generous bound, as the
    issue asks), and a READ of another device of the same target is not held back."""
    m, port, port2, _ = site

    def other_target():
        r = inq(port2, TARGET2, STRANGER)
        assert r.returncode == 0, r.stderr

    def read(ini: RawInitiator, lun: int) -> None:
        ini.itt += 1
        bhs = P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, 0, ini.itt, 512, ini.cmdsn,
                               ini.statsn, bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 0)
        bhs[8:16] = bytes([0, lun]) + bytes(6)
        ini.send(bhs)
        ini.cmdsn += 1
        while True:
            p = ini.recv()
            if p.opcode == P.OP_DATA_IN and p.flags & P.DATAIN_STATUS or \
                    p.opcode == P.OP_SCSI_RSP:
                assert p.bhs[3] == 0
                return

    idle = _timed(other_target)
    probe = RawInitiator(port)
    probe.full_login()
    idle_read = _timed(lambda: read(probe, 1))
    sh(f"simfs fault {m.root} fileio_0/f0 latency 2000")
    slow = _timed(lambda: read(probe, 0), n=1)
    stop = threading.Event()
    loaders = []

    def load():
        ini = RawInitiator(port)
        ini.sock.settimeout(60)
        ini.full_login()
        while not stop.is_set():
            read(ini, 0)
        ini.close()
    try:
        for _ in range(4):
            t = threading.Thread(target=load, daemon=True)
            t.start()
            loaders.append(t)
        time.sleep(0.5)
        loaded = _timed(other_target)
        loaded_read = _timed(lambda: read(probe, 1))
    finally:
        stop.set()
        sh(f"simfs fault {m.root} fileio_0/f0 clear")
        for t in loaders:
            t.join(timeout=30)
        probe.close()
    print(f"slow READ {slow:.3f}s; other target login+INQUIRY idle {idle:.3f}s loaded "
          f"{loaded:.3f}s; READ of r1 idle {idle_read:.4f}s loaded {loaded_read:.4f}s")
    assert slow >= 2.0  # the fault is there, on f0
    assert loaded <= 2 * idle + 0.1, (idle, loaded)
    assert loaded_read <= max(2 * idle_read, 0.2), (idle_read, loaded_read)


# -- targetcli and rtslib-fb see the session ---------------------------------------------------
@pytest.mark.skipif(shutil.which("targetcli") is None, reason="targetcli-fb is not installed")
def test_targetcli_sessions_detail(tmp_path):
    """Inside `simfs run`: while the raw initiator is logged in, rtslib-fb's
    RTSRoot().sessions lists its connection and `targetcli sessions detail` prints it."""
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    ready = tmp_path / "ready"
    login = (f"import sys, time; sys.path[:0] = [{here!r}, {os.path.dirname(here)!r}]\n"
             "from test_iscsi_server import RawInitiator\n"
             "class R(RawInitiator):  # an IQN rtslib-fb accepts as a node ACL name\n"
             "    def login(self, keys, *a, **kw):\n"
             f"        keys = [(k, {NAMED!r} if k == 'InitiatorName' else v) for k, v in keys]\n"
             "        return super().login(keys, *a, **kw)\n"
             f"i = R({port}); i.full_login()\n"
             f"open({str(ready)!r}, 'w').close(); time.sleep(60)\n")
    (tmp_path / "login.py").write_text(login)
    t = "/sys/kernel/config/target"
    tpg = f"{t}/iscsi/{TARGET}/tpgt_1"
    script = f"""set -e
mkdir -p {t}/core/rd_mcp_0/r0 && echo rd_pages=256 > {t}/core/rd_mcp_0/r0/control
echo 1 > {t}/core/rd_mcp_0/r0/enable
mkdir -p {tpg}/lun/lun_0 {tpg}/acls/{NAMED}/lun_0
ln -s {t}/core/rd_mcp_0/r0 {tpg}/lun/lun_0/l0
ln -s {tpg}/lun/lun_0 {tpg}/acls/{NAMED}/lun_0/m
mkdir {tpg}/np/127.0.0.1:{port}
echo 0 > {tpg}/attrib/authentication
echo 1 > {tpg}/enable
{sys.executable} {tmp_path / 'login.py'} &
for i in $(seq 100); do [ -e {ready} ] && break; sleep 0.1; done
targetcli sessions detail
/usr/bin/python3 -c 'import rtslib_fb; print([(s["type"], s["state"], s["connections"]) for s in rtslib_fb.RTSRoot().sessions])'
kill %1
"""
    r = subprocess.run(["simfs", "run", "--state-dir", str(tmp_path / "st"), "--", "bash",
                        "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"alias: \s*sid: \d+ type: Normal session-state: LOGGED_IN", r.stdout), \
        r.stdout
    assert "address: 127.0.0.1 (TCP)  cid: 0 connection-state: LOGGED_IN" in r.stdout
    assert ("[('Normal', 'LOGGED_IN', [{'cid': 0, 'cstate': 'LOGGED_IN', 'address': "
            "'127.0.0.1', 'transport': 'TCP'}])]") in r.stdout


def _read_keys(ini: RawInitiator) -> list[int]:
    """PERSISTENT RESERVE IN, READ KEYS (a unit attention first is taken and retried)."""
    cdb = bytes([0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0])
    for _ in range(4):
        status, data, _ = ini.scsi(cdb, read_len=64)
        if status == 0:
            n = int.from_bytes(data[4:8], "big")
            return [int.from_bytes(data[8 + i:16 + i], "big") for i in range(0, n, 8)]
    raise AssertionError(f"READ KEYS kept failing: status 0x{status:02x}")


def test_aptpl_registration_comes_back_at_a_demo_mode_login():
    """core_tpg_check_initiator_node_acl maps a demo-mode ACL's LUNs at login, and mapping
    brings back the APTPL registration waiting for the initiator: another initiator's READ
    KEYS sees it right after the login, before the registered initiator sent any command."""
    m = mount("modern")
    try:
        port = free_port()
        t = f"{m.root}/target"
        tgt = "iqn.2026-12.org.simfs:aptpl"
        tpg = f"{t}/iscsi/{tgt}/tpgt_1"
        meta = (f"initiator_node={RAW},sa_res_key=0xabcd,mapped_lun=0,target_node={tgt},"
                "tpgt=1,target_lun=0")
        # the registration exists before any session (metadata, as after a reboot)
        m.ok(f"mkdir -p {t}/core/rd_mcp_0/a && echo rd_pages=256 > {t}/core/rd_mcp_0/a/control"
             f" && echo 1 > {t}/core/rd_mcp_0/a/enable && "
             f"echo '{meta}' > {t}/core/rd_mcp_0/a/pr/res_aptpl_metadata && "
             f"mkdir -p {tpg}/lun/lun_0 && ln -s {t}/core/rd_mcp_0/a {tpg}/lun/lun_0/l && "
             f"mkdir {tpg}/np/127.0.0.1:{port} && echo 0 > {tpg}/attrib/authentication && "
             f"echo 1 > {tpg}/attrib/generate_node_acls && echo 1 > {tpg}/enable")
        wait_port(port)
        regs = "target/core/rd_mcp_0/a/pr/res_pr_registered_i_pts"
        assert "abcd" not in m.read(regs)   # a pre-registration is not a registration yet
        owner = RawInitiator(port)
        owner.target = tgt
        owner.full_login()       # and not one command
        assert "abcd" in m.read(regs)
        other = RawInitiator(port)
        other.target, other.initiator = tgt, "iqn.2026-01.test:other"
        other.full_login()
        assert _read_keys(other) == [0xABCD]
        assert _read_keys(owner) == [0xABCD]
        owner.close()
        other.close()
    finally:
        umount(m)


STAT_FILES = {
    "iscsi_instance": ["inst", "min_ver", "max_ver", "portals", "nodes", "sessions",
                       "fail_sess", "fail_type", "fail_rem_name", "disc_time", "description",
                       "vendor", "version"],
    "iscsi_sess_err": ["inst", "digest_errors", "cxn_errors", "format_errors"],
    "iscsi_tgt_attr": ["inst", "indx", "login_fails", "last_fail_time", "last_fail_type",
                       "fail_intr_name", "fail_intr_addr_type", "fail_intr_addr"],
    "iscsi_login_stats": ["inst", "indx", "accepts", "other_fails", "redirects",
                          "authorize_fails", "authenticate_fails", "negotiate_fails"],
    "iscsi_logout_stats": ["inst", "indx", "normal_logouts", "abnormal_logouts"],
}


def test_fabric_statistics_count_logins_sessions_and_logouts():
    """iscsi_target_stat.c: the IQN's statistics groups hold the kernel's files, in its
    order, and count what happens on the wire: a refused login (the ACL's 0x0202), an
    accepted one, the session's commands and data, a Close Session logout."""
    m = mount("modern")
    try:
        port = free_port()
        t = f"{m.root}/target"
        tgt = "iqn.2026-12.org.simfs:stats"
        w = f"target/iscsi/{tgt}"
        tpg = f"{t}/iscsi/{tgt}/tpgt_1"
        m.ok(f"mkdir -p {t}/core/rd_mcp_0/s && echo rd_pages=256 > {t}/core/rd_mcp_0/s/control"
             f" && echo 1 > {t}/core/rd_mcp_0/s/enable && mkdir -p {tpg}/lun/lun_0 && "
             f"ln -s {t}/core/rd_mcp_0/s {tpg}/lun/lun_0/l && mkdir -p {tpg}/acls/{RAW}/lun_0 && "
             f"ln -s {tpg}/lun/lun_0 {tpg}/acls/{RAW}/lun_0/m && "
             f"mkdir {tpg}/np/127.0.0.1:{port} && echo 0 > {tpg}/attrib/authentication && "
             f"mkdir -p {tpg}/acls/{CHAP_INI} && echo 1 > {tpg}/acls/{CHAP_INI}/attrib/authentication"
             f" && echo -n chapuser > {tpg}/acls/{CHAP_INI}/auth/userid && "
             f"echo -n chapsecret12 > {tpg}/acls/{CHAP_INI}/auth/password && "
             f"echo 1 > {tpg}/enable")
        wait_port(port)
        fs = f"{w}/fabric_statistics"
        for group, files in STAT_FILES.items():
            # configfs lists newest first: the kernel's attribute table reversed
            assert os.listdir(f"{m.root}/{fs}/{group}") == files[::-1], group

        def stat(path: str) -> str:
            return m.read(f"{fs}/{path}").rstrip("\n")
        assert [stat(f"iscsi_instance/{f}") for f in STAT_FILES["iscsi_instance"]] == [
            "0", "0", "0", "1", "1", "0", "0", "0", "None", "0", "Storage Engine Target",
            "Datera, Inc. iSCSI-Target", "v4.1.0"]
        assert [stat(f"iscsi_tgt_attr/{f}") for f in STAT_FILES["iscsi_tgt_attr"]] == [
            "0", "1", "0", "0", "0", "None", "ipv4", "(einval)"]
        sess = f"{w}/tpgt_1/acls/{RAW}/fabric_statistics/iscsi_sess_stats"
        assert os.listdir(f"{m.root}/{sess}")[::-1] == [
            "inst", "node", "indx", "cmd_pdus", "rsp_pdus", "txdata_octs", "rxdata_octs",
            "conn_digest_errors", "conn_timeout_errors"]
        assert m.read(f"{sess}/inst") == "0\n" and m.read(f"{sess}/cmd_pdus") == ""

        assert inq(port, tgt, STRANGER).returncode != 0      # no ACL: 0x0202
        assert stat("iscsi_login_stats/authorize_fails") == "1"
        assert stat("iscsi_tgt_attr/login_fails") == "1"
        assert stat("iscsi_tgt_attr/last_fail_type") == "4"   # ISCSI_LOGIN_FAIL_AUTHORIZE
        assert stat("iscsi_tgt_attr/fail_intr_name") == STRANGER
        assert stat("iscsi_tgt_attr/fail_intr_addr") == "127.0.0.1"
        assert int(stat("iscsi_tgt_attr/last_fail_time")) > 0

        assert inq(port, tgt, CHAP_INI, "chapuser%wrongsecret1@").returncode != 0  # 0x0201
        assert stat("iscsi_login_stats/authenticate_fails") == "1"
        assert stat("iscsi_tgt_attr/last_fail_type") == "5"   # ISCSI_LOGIN_FAIL_AUTHENTICATE
        assert stat("iscsi_tgt_attr/fail_intr_name") == CHAP_INI
        assert stat("iscsi_tgt_attr/login_fails") == "2"
        assert inq(port, "iqn.2026-12.org.simfs:nowhere", RAW).returncode != 0  # no such IQN
        assert stat("iscsi_tgt_attr/login_fails") == "2"      # not this IQN's failure

        ini = RawInitiator(port)
        ini.target = tgt
        ini.full_login()
        # the session is registered after its final Login Response went out (the kernel's
        # iscsi_post_login_handler runs after iscsi_target_do_tx_login_io too): wait for it
        for _ in range(100):
            if stat("iscsi_instance/sessions") == "1":
                break
            time.sleep(0.05)
        assert stat("iscsi_login_stats/accepts") == "1"
        assert stat("iscsi_instance/sessions") == "1"
        assert m.read(f"{sess}/node") == "1\n" and m.read(f"{sess}/cmd_pdus") == "0\n"
        rsp_pdus = 0
        for cdb, n in ((bytes(6), 0),                                   # TEST UNIT READY
                       (bytes([0x12, 0, 0, 0, 36, 0]), 36),             # INQUIRY
                       (bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 512)):  # READ(10)
            status, data, pdu = ini.scsi(cdb, read_len=n)
            assert status == 0 and len(data) == n
            rsp_pdus += pdu.opcode == P.OP_SCSI_RSP
        assert m.read(f"{sess}/cmd_pdus") == "3\n"
        assert m.read(f"{sess}/txdata_octs") == f"{36 + 512}\n"
        assert m.read(f"{sess}/rxdata_octs") == "0\n"
        assert m.read(f"{sess}/rsp_pdus") == f"{rsp_pdus}\n"
        # Logout Request, reason 0 (close the session), immediate
        bhs = bytearray(48)
        bhs[0], bhs[1] = P.OP_LOGOUT_REQ | 0x40, 0x80
        bhs[16:20] = (0x7777).to_bytes(4, "big")
        bhs[24:28] = ini.cmdsn.to_bytes(4, "big")
        bhs[28:32] = ini.statsn.to_bytes(4, "big")
        ini.send(bhs)
        assert ini.recv().opcode == P.OP_LOGOUT_RSP
        ini.close()
        for _ in range(100):
            if stat("iscsi_instance/sessions") == "0":
                break
            time.sleep(0.05)
        assert stat("iscsi_logout_stats/normal_logouts") == "1"
        assert stat("iscsi_logout_stats/abnormal_logouts") == "0"
        assert stat("iscsi_instance/sessions") == "0"
        assert m.read(f"{sess}/cmd_pdus") == ""
    finally:
        umount(m)
