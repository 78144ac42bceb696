"""The iSCSI statistics a session's events move, read with cat through a real mount
(iscsi_target_stat.c's files): the IQN's iscsi_sess_err, iscsi_instance and the ACL's
iscsi_sess_stats, provoked on the wire by the raw initiator (tests/helpers.py)."""
from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from helpers import RawInitiator, free_port, mount, sh, umount, wait_port  # noqa: E402

from simfs.iscsi import digest as D  # noqa: E402
from simfs.iscsi import pdu as P  # noqa: E402

RAW = "iqn.2026-01.test:raw"
TGT = "iqn.2026-12.org.simfs:stats"
FS = f"target/iscsi/{TGT}/fabric_statistics"
SESS = f"target/iscsi/{TGT}/tpgt_1/acls/{RAW}/fabric_statistics/iscsi_sess_stats"


@pytest.fixture
def site():
    """TGT with an rd_mcp LUN 0 for RAW's ACL, NOP-In pings every 3 s answered within 3 s,
    Data-Out awaited 2 s."""
    m = mount("modern")
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{TGT}/tpgt_1"
    acl = f"{tpg}/acls/{RAW}"
    m.ok(f"mkdir -p {t}/core/rd_mcp_0/s && echo rd_pages=256 > {t}/core/rd_mcp_0/s/control"
         f" && echo 1 > {t}/core/rd_mcp_0/s/enable && mkdir -p {tpg}/lun/lun_0 && "
         f"ln -s {t}/core/rd_mcp_0/s {tpg}/lun/lun_0/l && mkdir -p {acl}/lun_0 && "
         f"ln -s {tpg}/lun/lun_0 {acl}/lun_0/m && echo 3 > {acl}/attrib/nopin_timeout && "
         f"echo 3 > {acl}/attrib/nopin_response_timeout && "
         f"echo 2 > {acl}/attrib/dataout_timeout && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && echo 0 > {tpg}/attrib/authentication && "
         f"echo 1 > {tpg}/enable")
    wait_port(port)
    try:
        yield m, port
    finally:
        umount(m)


def cat(m, rel: str) -> str:
    """One statistics file, read by cat through the mount."""
    r = sh(f"cat {m.root}/{rel}")
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def sess_err(m) -> list[str]:
    return [cat(m, f"{FS}/iscsi_sess_err/{f}")
            for f in ("digest_errors", "cxn_errors", "format_errors")]


def instance(m) -> list[str]:
    return [cat(m, f"{FS}/iscsi_instance/{f}")
            for f in ("sessions", "fail_sess", "fail_type", "fail_rem_name")]


def sessions_become(m, n: int) -> None:
    """The daemon ends a closed connection's session just after the socket goes."""
    for _ in range(200):
        if cat(m, f"{FS}/iscsi_instance/sessions") == str(n):
            return
        time.sleep(0.05)
    raise AssertionError(f"sessions stay {cat(m, f'{FS}/iscsi_instance/sessions')}")


class Initiator(RawInitiator):
    """The raw initiator with an ISID of its own (one ISID is one session)."""

    def __init__(self, port: int, isid: int):
        super().__init__(port, target=TGT, initiator=RAW)
        self.isid = b"\x80\0\0\0" + isid.to_bytes(2, "big")

    def login(self, keys, csg, nsg, transit=True, isid=None):
        return super().login(keys, csg, nsg, transit, isid or self.isid)


def initiator(port: int, isid: int) -> Initiator:
    return Initiator(port, isid)


def login(ini: RawInitiator, keys: list, discovery: bool = False) -> None:
    """Security then operational stage with ``keys``, ending in full feature phase."""
    first = [("InitiatorName", ini.initiator), ("SessionType",
                                                "Discovery" if discovery else "Normal"),
             ("AuthMethod", "None")]
    if not discovery:
        first.insert(1, ("TargetName", ini.target))
    rsp, _ = ini.login(first, 0, 1)
    assert (rsp.bhs[36], rsp.bhs[37]) == (0, 0)
    rsp, _ = ini.login(keys, 1, 3)
    assert (rsp.bhs[36], rsp.bhs[37]) == (0, 0) and rsp.bhs[1] & 0x83 == 0x83


def until_closed(ini: RawInitiator) -> list[int]:
    """Read (answering nothing) until the target closes; the opcodes that came."""
    ini.sock.settimeout(60)
    got = []
    try:
        while True:
            got.append(ini.recv().opcode)
    except EOFError:
        return got


def test_only_a_connection_timeout_is_a_session_error(site):
    """iscsit_fill_cxn_timeout_err_stats is the one place the kernel counts in
    iscsi_sess_err: a connection whose NOP-In ping goes unanswered (cxn_errors, and the
    instance's fail_sess, fail_type 2 = ISCSI_SESS_ERR_CXN_TIMEOUT, fail_rem_name). A header
    digest error closes the connection but digest_errors stays 0, and a Reject is no
    format error: nothing in the kernel increments those two."""
    m, port = site
    assert sess_err(m) == ["0", "0", "0"]
    assert instance(m) == ["0", "0", "0", "None"]

    ini = initiator(port, 0x2001)
    ini.full_login(digests=True)
    bhs = P.build_scsi_cmd(P.F_FINAL, 0, 0x10, 0, 1, ini.statsn, bytes(16), 0)
    bad = (int.from_bytes(D.digest(bytes(bhs)), "little") ^ 1).to_bytes(4, "little")
    mark = m.log_mark()
    ini.sock.sendall(bytes(bhs) + bad)
    assert until_closed(ini) == []
    ini.close()
    assert "HeaderDigest CRC32C failed" in m.log_since(mark)
    sessions_become(m, 0)
    assert sess_err(m) == ["0", "0", "0"]
    assert instance(m) == ["0", "0", "0", "None"]

    ini = initiator(port, 0x2002)
    ini.full_login()
    snack = bytearray(48)
    snack[0], snack[1] = P.OP_SNACK, 0x80
    ini.send(snack)
    assert ini.recv().opcode == P.OP_REJECT               # the connection stays
    assert sess_err(m) == ["0", "0", "0"]
    assert cat(m, f"{SESS}/conn_timeout_errors") == "0"
    mark = m.log_mark()
    assert P.OP_NOOP_IN in until_closed(ini)              # pinged, never answered
    ini.close()
    assert (f"Did not receive response to NOPIN on CID: 0, failing connection for I_T Nexus "
            f"{RAW},i,0x800000002002,{TGT},t,0x01") in m.log_since(mark)
    assert sess_err(m) == ["0", "1", "0"]
    sessions_become(m, 0)
    assert instance(m) == ["0", "1", "2", RAW]
    assert cat(m, f"{SESS}/conn_timeout_errors") == ""   # the session went with it


def test_a_write_left_without_its_data_out_times_the_connection_out(site):
    """iscsit_handle_dataout_timeout at ERL 0: the R2T started the command's DataOUT timer
    (the ACL's dataout_timeout); no Data-Out comes, the connection is closed and counted
    as a connection timeout."""
    m, port = site
    ini = initiator(port, 0x2007)
    ini.full_login()
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 16, 0])
    ini.send(P.build_scsi_cmd(P.F_FINAL | P.CMD_WRITE, 0, 0x30, 8192, 1, ini.statsn, cdb, 0))
    assert ini.recv().opcode == P.OP_R2T
    mark = m.log_mark()
    until_closed(ini)
    ini.close()
    assert (f"Unable to recover from DataOut timeout while in ERL=0, closing iSCSI connection "
            f"for I_T Nexus {RAW},i,0x800000002007,{TGT},t,0x01") in m.log_since(mark)
    assert "Did not receive response to NOPIN" not in m.log_since(mark)
    assert sess_err(m) == ["0", "1", "0"]
    sessions_become(m, 0)
    assert instance(m) == ["0", "1", "2", RAW]


def test_session_counts_data_out_but_not_immediate_data(site):
    """iscsi_sess_stats: rxdata_octs is Data-Out payload only (immediate data is not
    counted), cmd_pdus every SCSI Command PDU, rsp_pdus every SCSI Response PDU (a command
    for an unmapped LUN has one too; a read's status rides on its Data-In)."""
    m, port = site
    ini = initiator(port, 0x2003)
    login(ini, [("HeaderDigest", "None"), ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "4096"), ("ImmediateData", "Yes"),
                ("InitialR2T", "Yes"), ("MaxBurstLength", "8192"),
                ("FirstBurstLength", "4096"), ("MaxOutstandingR2T", "1"),
                ("ErrorRecoveryLevel", "0")])
    sessions_become(m, 1)  # registered just after the final Login Response
    assert cat(m, f"{SESS}/cmd_pdus") == "0"
    data = bytes(range(256)) * 32                          # 8192: 4096 immediate, 4096 R2T'd
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 16, 0])
    ini.send(P.build_scsi_cmd(P.F_FINAL | P.CMD_WRITE, 0, 0x20, 8192, 1, ini.statsn, cdb,
                              4096), data[:4096])
    r2t = ini.recv()
    assert r2t.opcode == P.OP_R2T and (r2t.u32(40), r2t.u32(44)) == (4096, 4096)
    ini.send(P.build_data_out(True, 0, 0x20, r2t.u32(20), ini.statsn, 0, 4096, 4096),
             data[4096:])
    rsp = ini.recv()
    assert rsp.opcode == P.OP_SCSI_RSP and rsp.bhs[3] == 0
    ini.statsn = rsp.u32(24) + 1
    ini.cmdsn = 2
    assert cat(m, f"{SESS}/rxdata_octs") == "4096"
    status, got, last = ini.scsi(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0]), read_len=8192)
    assert status == 0 and got == data and last.opcode == P.OP_DATA_IN
    status, _, last = ini.scsi(bytes(6), lun=5)            # TEST UNIT READY, no such LUN
    assert status == 2 and last.opcode == P.OP_SCSI_RSP
    assert [cat(m, f"{SESS}/{f}") for f in
            ("cmd_pdus", "rsp_pdus", "txdata_octs", "rxdata_octs")] == ["3", "2", "8192", "4096"]
    ini.close()


def test_a_discovery_session_holds_a_session_index_but_is_no_iqn_session(site):
    """Every session takes the lowest free index of the module's sess_ida, a discovery
    session too; the IQN's sessions, login accepts and logouts count only its own."""
    m, port = site
    disc = initiator(port, 0x2004)
    login(disc, [("HeaderDigest", "None"), ("DataDigest", "None")], discovery=True)
    ini = initiator(port, 0x2005)
    ini.full_login()
    sessions_become(m, 1)  # registered just after the final Login Response, as the kernel does
    assert cat(m, f"{SESS}/indx") == "1"                  # 0 is the discovery session's
    assert cat(m, f"{FS}/iscsi_instance/sessions") == "1"
    assert cat(m, f"{FS}/iscsi_login_stats/accepts") == "1"
    # the same ISID again reinstates the session; the new one took its index at its first
    # login PDU (iscsi_login_zero_tsih_s1), while 0 and 1 were still held
    again = initiator(port, 0x2005)
    again.full_login()
    assert until_closed(ini) == []                        # the old session was ended
    ini.close()
    for _ in range(100):  # the new session registers just after its final Login Response
        if cat(m, f"{SESS}/indx") == "2":
            break
        time.sleep(0.05)
    assert cat(m, f"{SESS}/indx") == "2"
    assert cat(m, f"{FS}/iscsi_instance/sessions") == "1"
    logout = bytearray(48)
    logout[0], logout[1] = P.OP_LOGOUT_REQ | P.OP_IMMEDIATE, 0x80
    logout[16:20] = (0x99).to_bytes(4, "big")
    disc.send(logout)
    assert disc.recv().opcode == P.OP_LOGOUT_RSP
    disc.close()
    assert cat(m, f"{FS}/iscsi_logout_stats/normal_logouts") == "0"
    again.close()
    # AuthMethod=None was acceptable because the discovery TPG offers CHAP,None; enforced
    # discovery authentication leaves only CHAP, and the login is dropped unanswered
    m.ok(f"echo 1 > {m.root}/target/iscsi/discovery_auth/enforce_discovery_auth")
    mark = m.log_mark()
    disc = initiator(port, 0x2006)
    with pytest.raises(EOFError):
        login(disc, [], discovery=True)
    disc.close()
    assert ('Proposer\'s value list "None" contains no valid values from Acceptor\'s value '
            'list "CHAP".') in m.log_since(mark)
