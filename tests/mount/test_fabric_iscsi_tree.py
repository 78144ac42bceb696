"""The iSCSI fabric's tree (``target/iscsi``) through a real mount, and the interface the
iSCSI server uses (:class:`TreeIscsiBackend`) driven sans-I/O through a :class:`Sim`
(iscsi_target_configfs.c, iscsi_target_tpg.c, iscsi_target_nodeattrib.c,
iscsi_target_parameters.c, iscsi_target_login.c's portal/ACL lookup)."""
from __future__ import annotations

import errno
import itertools
import os
import socket

import pytest

from helpers import free_port
from test_fabric_tree import kernel_lines, logged, refused

_n = itertools.count()
I = "target/iscsi"
INIT = "iqn.1994-05.com.redhat:client1"


@pytest.fixture(scope="module")
def m(mnt_mod):
    mnt_mod.ok(f"mkdir -p {mnt_mod.root}/{I}")
    return mnt_mod


@pytest.fixture
def t(m):
    """A fresh TPG: path relative to the mount root."""
    rel = f"{I}/iqn.2003-01.org.linux-iscsi.sim:i{next(_n)}/tpgt_1"
    m.ok(f"mkdir -p {m.root}/{rel}")
    return rel


def P(m, rel):
    return f"{m.root}/{rel}"


# -- target/iscsi ----------------------------------------------------------------------------
def test_fabric_files(m):
    assert m.read(f"{I}/lio_version") == "Datera Inc. iSCSI Target v4.1.0\n"
    d = f"{I}/discovery_auth"
    assert sorted(os.listdir(P(m, d))) == ["authenticate_target", "enforce_discovery_auth",
                                           "password", "password_mutual", "userid",
                                           "userid_mutual"]
    for f in ("userid", "password", "userid_mutual", "password_mutual"):
        assert m.read(f"{d}/{f}") == "\n"
    assert m.read(f"{d}/authenticate_target") == "0\n"
    assert m.read(f"{d}/enforce_discovery_auth") == "0\n"


def test_discovery_auth_writes(m):
    d = P(m, f"{I}/discovery_auth")
    lines = logged(m, f"echo 1 > {d}/enforce_discovery_auth")
    assert lines == ["iSCSI Parameter updated to AuthMethod=CHAP",
                     "LIO-CORE[0] Successfully enabled authentication enforcement for iSCSI "
                     "Discovery TPG"]
    refused(m, f"echo 2 > {d}/enforce_discovery_auth", errno.EINVAL,
            "Illegal value for enforce_discovery_auth: 2")
    refused(m, f"echo x > {d}/enforce_discovery_auth", errno.EINVAL, None)
    assert m.read(f"{I}/discovery_auth/enforce_discovery_auth") == "1\n"
    m.ok(f"echo 0 > {d}/enforce_discovery_auth")
    # values are kept as written (newline included) and shown with %s\n
    m.ok(f"printf discuser > {d}/userid && printf mu > {d}/userid_mutual")
    assert m.read(f"{I}/discovery_auth/userid") == "discuser\n"
    assert m.read(f"{I}/discovery_auth/authenticate_target") == "0\n"
    m.ok(f"printf mp > {d}/password_mutual")
    assert m.read(f"{I}/discovery_auth/authenticate_target") == "1\n"
    m.ok(f"echo NULL > {d}/password_mutual")
    assert m.read(f"{I}/discovery_auth/authenticate_target") == "0\n"
    refused(m, f"echo 1 > {d}/authenticate_target", errno.EACCES, None)
    refused(m, f"python3 -c \"import os; os.write(os.open('{d}/userid', os.O_WRONLY), b'u'*256)\"",
            errno.EINVAL, None)
    m.ok(f"echo NULL > {d}/userid")


# -- wwn / tpgt ---------------------------------------------------------------------------------
def test_wwn_any_name_and_logs(m):
    w = P(m, f"{I}/eui.02004567A425678D")
    lines = logged(m, f"mkdir {w}")
    assert lines == ["CORE[0] - Added iSCSI Target IQN: eui.02004567A425678D",
                     "LIO_Target_ConfigFS: REGISTER -> eui.02004567A425678D",
                     "LIO_Target_ConfigFS: REGISTER -> Allocated Node: eui.02004567A425678D"]
    lines = logged(m, f"mkdir {w}/tpgt_1")
    assert lines == [
        "TARGET_CORE[iSCSI]: Allocated portal_group for endpoint: eui.02004567A425678D, "
        "Proto: 5, Portal Tag: 1",
        "CORE[eui.02004567A425678D]_TPG[1] - Added iSCSI Target Portal Group",
        "LIO_Target_ConfigFS: REGISTER -> eui.02004567A425678D",
        "LIO_Target_ConfigFS: REGISTER -> Allocated TPG: tpgt_1"]


@pytest.mark.parametrize("name, ok", [
    ("tpgt_2", True), ("my_tpgt_3", True), ("tpgt_0x10", True), ("tpgt_65535", True),
    ("tpgt_65536", False), ("tpgt_x", False), ("tpg_1", False),
])
def test_tpgt_names(m, name, ok):
    w = P(m, f"{I}/iqn.2003-01.org.linux-iscsi.sim:n{next(_n)}")
    m.ok(f"mkdir {w}")
    if ok:
        m.ok(f"mkdir {w}/{name}")
    else:
        refused(m, f"mkdir {w}/{name}", errno.EINVAL,
                'Unable to locate "tpgt_#" directory group' if "tpgt_" not in name else None)


# -- TPG attrib/ -----------------------------------------------------------------------------------
ATTRIB_DEFAULTS = [
    ("authentication", "1"), ("login_timeout", "15"),  # netif_timeout: gone in 6.6
    ("generate_node_acls", "0"), ("default_cmdsn_depth", "64"), ("cache_dynamic_acls", "0"),
    ("demo_mode_write_protect", "1"), ("prod_mode_write_protect", "0"),
    ("demo_mode_discovery", "1"), ("default_erl", "0"), ("t10_pi", "0"),
    ("fabric_prot_type", "0"), ("tpg_enabled_sendtargets", "1"),
    ("login_keys_workaround", "1"),
]


def test_attrib_defaults(m, t):
    assert sorted(os.listdir(P(m, f"{t}/attrib"))) == sorted(a for a, _ in ATTRIB_DEFAULTS)
    for a, v in ATTRIB_DEFAULTS:
        assert m.read(f"{t}/attrib/{a}") == v + "\n", a


@pytest.mark.parametrize("attr, value, log", [
    ("login_timeout", "31", "Requested Login Timeout 31 larger than maximum 30"),
    ("login_timeout", "4", "Requested Logout Timeout 4 smaller than minimum 5"),
    ("default_cmdsn_depth", "513", "Requested Default Queue Depth: 513 larger than maximum 512"),
    ("default_cmdsn_depth", "0", "Requested Default Queue Depth: 0 smaller than minimum 1"),
    ("generate_node_acls", "2", "Illegal value 2"),
    ("authentication", "2", "Illegal value for authentication parameter: 2, ignoring request."),
    ("default_erl", "3", "Illegal value for default_erl: 3"),
    ("fabric_prot_type", "2", "Illegal value for fabric_prot_type: 2"),
    ("demo_mode_write_protect", "5", "Illegal value 5"),
    ("login_timeout", "abc", None),
    ("login_timeout", "-1", None),
])
def test_attrib_bad_writes(m, t, attr, value, log):
    before = m.read(f"{t}/attrib/{attr}")
    refused(m, f"echo {value} > {P(m, t)}/attrib/{attr}", errno.EINVAL, log)
    assert m.read(f"{t}/attrib/{attr}") == before


def test_attrib_writes_and_side_effects(m, t):
    lines = logged(m, f"echo 20 > {P(m, t)}/attrib/login_timeout")
    assert lines == ["Set Logout Timeout to 20 for Target Portal Group 1"]
    lines = logged(m, f"echo 1 > {P(m, t)}/attrib/generate_node_acls")
    assert lines == ["iSCSI_TPG[1] - Generate Initiator Portal Group ACLs: Enabled",
                     "Explicitly setting cache_dynamic_acls=1 when generate_node_acls=1"]
    assert m.read(f"{t}/attrib/cache_dynamic_acls") == "1\n"
    lines = logged(m, f"echo 0 > {P(m, t)}/attrib/cache_dynamic_acls")
    assert lines == ["Skipping cache_dynamic_acls=0 when generate_node_acls=1"]
    assert m.read(f"{t}/attrib/cache_dynamic_acls") == "1\n"
    # authentication edits AuthMethod
    assert m.read(f"{t}/param/AuthMethod") == "CHAP\n"
    m.ok(f"echo 0 > {P(m, t)}/attrib/authentication")
    assert m.read(f"{t}/param/AuthMethod") == "CHAP,None\n"
    m.ok(f"echo 1 > {P(m, t)}/attrib/authentication")
    assert m.read(f"{t}/param/AuthMethod") == "CHAP\n"


# -- TPG param/ ---------------------------------------------------------------------------------
PARAM_DEFAULTS = [
    ("AuthMethod", "CHAP"), ("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C,None"),
    ("MaxConnections", "1"), ("TargetAlias", "LIO Target"), ("InitialR2T", "Yes"),
    ("ImmediateData", "Yes"), ("MaxRecvDataSegmentLength", "8192"),
    ("MaxXmitDataSegmentLength", "262144"), ("MaxBurstLength", "262144"),
    ("FirstBurstLength", "65536"), ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "20"),
    ("MaxOutstandingR2T", "1"), ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"),
    ("ErrorRecoveryLevel", "0"), ("IFMarker", "No"), ("OFMarker", "No"),
    ("IFMarkInt", "2048~65535"), ("OFMarkInt", "2048~65535"),
]


def test_param_defaults(m, t):
    assert sorted(os.listdir(P(m, f"{t}/param"))) == sorted(k for k, _ in PARAM_DEFAULTS)
    for k, v in PARAM_DEFAULTS:
        assert m.read(f"{t}/param/{k}") == v + "\n", k


@pytest.mark.parametrize("key, value", [
    ("HeaderDigest", "None"), ("HeaderDigest", "None,CRC32C"), ("AuthMethod", "None"),
    ("MaxRecvDataSegmentLength", "65536"), ("MaxRecvDataSegmentLength", "0x200"),
    ("InitialR2T", "No"), ("ErrorRecoveryLevel", "2"), ("TargetAlias", "my target"),
    ("MaxConnections", "8"), ("IFMarkInt", "Reject"),
])
def test_param_good_writes(m, t, key, value):
    lines = logged(m, f"echo '{value}' > {P(m, t)}/param/{key}")
    assert lines == [f"iSCSI Parameter updated to {key}={value}", f"Updated {key} to {value}"]
    assert m.read(f"{t}/param/{key}") == value + "\n"


@pytest.mark.parametrize("key, value, log", [
    ("HeaderDigest", "MD5", 'Illegal value for "HeaderDigest", must be "CRC32C" or "None".'),
    ("AuthMethod", "CHAP,PAP", 'Illegal value for "AuthMethod", must be "KRB5", "SPKM1", '
                               '"SPKM2", "SRP", "CHAP" or "None".'),
    ("InitialR2T", "yes", 'Illegal value for "InitialR2T", must be either "Yes" or "No".'),
    ("MaxRecvDataSegmentLength", "100",
     'Illegal value for "MaxRecvDataSegmentLength", must be between 512 and 16777215.'),
    ("ErrorRecoveryLevel", "3", 'Illegal value for "ErrorRecoveryLevel", must be between 0 '
                                'and 2.'),
    ("MaxConnections", "0", 'Illegal value for "MaxConnections", must be between 1 and 65535.'),
    ("TargetAlias", "a,b", 'Detected value separator ",", but key "TargetAlias" does not allow '
                           'a value list, protocol error.'),
    ("DataDigest", "Reject", "Received DataDigest=Reject"),
    ("DataDigest", "NotUnderstood", "Received illegal offer DataDigest=NotUnderstood"),
])
def test_param_bad_writes(m, t, key, value, log):
    before = m.read(f"{t}/param/{key}")
    refused(m, f"echo '{value}' > {P(m, t)}/param/{key}", errno.EINVAL, log)
    assert m.read(f"{t}/param/{key}") == before


# -- TPG auth/ and enable --------------------------------------------------------------------------
def test_tpg_auth(m, t):
    a = P(m, f"{t}/auth")
    assert sorted(os.listdir(a)) == ["authenticate_target", "password", "password_mutual",
                                     "userid", "userid_mutual"]
    m.ok(f"printf demo > {a}/userid && printf secret > {a}/password")
    assert m.read(f"{t}/auth/userid") == "demo\n"
    m.ok(f"echo x > {a}/userid")
    assert m.read(f"{t}/auth/userid") == "x\n\n"   # the written newline is kept
    m.ok(f"printf mu > {a}/userid_mutual && printf mp > {a}/password_mutual")
    assert m.read(f"{t}/auth/authenticate_target") == "1\n"


def test_enable(m, t):
    assert m.read(f"{t}/enable") == "0\n"
    lines = logged(m, f"echo 1 > {P(m, t)}/enable")
    assert lines == ["Enforcing iSCSI Authentication Methods for TPG: 1.",
                     "iSCSI_TPG[1] - Enabled iSCSI Target Portal Group"]
    assert m.read(f"{t}/enable") == "1\n"
    assert logged(m, f"echo 1 > {P(m, t)}/enable") == []   # same value: nothing happens
    refused(m, f"echo maybe > {P(m, t)}/enable", errno.EINVAL, None)
    lines = logged(m, f"echo 0 > {P(m, t)}/enable")
    assert lines == ["iSCSI_TPG[1] - Disabled iSCSI Target Portal Group"]
    # authentication=1 turns AuthMethod=None into CHAP at enable
    m.ok(f"echo None > {P(m, t)}/param/AuthMethod && echo 1 > {P(m, t)}/enable")
    assert m.read(f"{t}/param/AuthMethod") == "CHAP\n"


# -- np/ ----------------------------------------------------------------------------------------
def test_np_ipv4_and_ipv6(m, t):
    port, port6 = free_port(), free_port()
    lines = logged(m, f"mkdir {P(m, t)}/np/127.0.0.1:{port}")
    w = t.split("/")[2]
    assert lines[0] == f"LIO_Target_ConfigFS: REGISTER -> {w} TPGT: 1 PORTAL: 127.0.0.1:{port}"
    assert f"CORE[{w}] - Added Network Portal: 127.0.0.1:{port},1 on iSCSI/TCP" in lines
    assert lines[-1] == "LIO_Target_ConfigFS: addnptotpg done!"
    m.ok(f"mkdir '{P(m, t)}/np/[::1]:{port6}'")
    assert sorted(os.listdir(P(m, f"{t}/np/127.0.0.1:{port}"))) == ["cxgbit", "iser"]
    assert m.read(f"{t}/np/127.0.0.1:{port}/iser") == "0\n"
    refused(m, f"echo 2 > {P(m, t)}/np/127.0.0.1:{port}/iser", errno.EINVAL,
            "Illegal value for tpg_enable: 2")
    refused(m, f"echo 1 > {P(m, t)}/np/127.0.0.1:{port}/iser", errno.EINVAL,
            "Unable to request_module for ib_isert")
    m.ok(f"echo 0 > {P(m, t)}/np/127.0.0.1:{port}/cxgbit")
    lines = logged(m, f"rmdir {P(m, t)}/np/127.0.0.1:{port}")
    assert lines[0] == f"LIO_Target_ConfigFS: DEREGISTER -> {w} TPGT: 1 PORTAL: 127.0.0.1:{port}"


@pytest.mark.parametrize("name, log", [
    ("127.0.0.1", 'Unable to locate ":port" in IPv4 iSCSI network portal address'),
    ("[::1:3260", 'Unable to locate trailing "]" in IPv6 iSCSI network portal address'),
    ("[::1]3260", 'Unable to locate ":port" in IPv6 iSCSI network portal address'),
    ("300.1.1.1:3260", "malformed ip/port passed: 300.1.1.1:3260"),
    ("127.0.0.1:99999", "malformed ip/port passed: 127.0.0.1:99999"),
    ("host:3260", "malformed ip/port passed: host:3260"),
])
def test_np_refused(m, t, name, log):
    # every make_np failure is EINVAL: target_fabric_make_np hides the fabric's errno
    refused(m, f"mkdir '{P(m, t)}/np/{name}'", errno.EINVAL, log)


def test_np_same_portal_on_another_tpg_of_the_iqn(m):
    port = free_port()
    w = P(m, f"{I}/iqn.2003-01.org.linux-iscsi.sim:dup{next(_n)}")
    m.ok(f"mkdir -p {w}/tpgt_1/np/0.0.0.0:{port} {w}/tpgt_2")
    refused(m, f"mkdir {w}/tpgt_2/np/0.0.0.0:{port}", errno.EINVAL,
            rf"Network Portal: 0\.0\.0\.0 already exists on a different TPG on "
            rf"{os.path.basename(w)}")
    # another IQN may share it
    m.ok(f"mkdir -p {w}x/tpgt_1/np/0.0.0.0:{port}")


def test_np_port_in_use(m):
    """iscsit_setup_np: a port another program listens on fails the mkdir (kernel_bind's
    -EADDRINUSE, EINVAL from the generic make_np) and leaves no directory; a wildcard
    portal binds where the server listens (127.0.0.1 without --listen-any). The TPG is
    enabled: a disabled TPG's portal is not bound until the TPG is (simfs listens for
    enabled TPGs only)."""
    w = P(m, f"{I}/iqn.2003-01.org.linux-iscsi.sim:busy{next(_n)}")
    m.ok(f"mkdir -p {w}/tpgt_1 {w}/tpgt_2 && echo 1 > {w}/tpgt_1/enable")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        for name in (f"127.0.0.1:{port}", f"0.0.0.0:{port}"):
            mark = m.log_mark()
            refused(m, f"mkdir {w}/tpgt_1/np/{name}", errno.EINVAL,
                    f"kernel_bind\\(\\) failed: -{errno.EADDRINUSE}")
            lines = kernel_lines(m.log_since(mark))
            assert lines[0] == (f"LIO_Target_ConfigFS: REGISTER -> {os.path.basename(w)} "
                                f"TPGT: 1 PORTAL: {name}")
            assert not any("Added Network Portal" in ln for ln in lines), lines
            assert os.listdir(f"{w}/tpgt_1/np") == []
        m.ok(f"mkdir {w}/tpgt_2/np/127.0.0.1:{port}")   # a disabled TPG's portal
    m.ok(f"rmdir {w}/tpgt_2/np/127.0.0.1:{port}")
    m.ok(f"mkdir {w}/tpgt_1/np/127.0.0.1:{port}")   # free again
    assert os.listdir(f"{w}/tpgt_1/np") == [f"127.0.0.1:{port}"]


def test_np_shared_between_iqns_and_overlapping_portals(m):
    """The kernel shares one np (one socket) between TPGs of different IQNs on the same
    address (iscsit_get_np); another address that overlaps it on the same port (a
    wildcard, or IPv6's wildcard that takes IPv4 too) cannot bind."""
    port = free_port()
    a = P(m, f"{I}/iqn.2003-01.org.linux-iscsi.sim:sa{next(_n)}/tpgt_1")
    b = P(m, f"{I}/iqn.2003-01.org.linux-iscsi.sim:sb{next(_n)}")
    m.ok(f"mkdir -p {a}/np/127.0.0.1:{port} {b}/tpgt_1 {b}/tpgt_2 && echo 1 > {a}/enable")
    lines = logged(m, f"mkdir {b}/tpgt_1/np/127.0.0.1:{port}")   # shared: nothing to bind
    assert f"CORE[0] - Added Network Portal: 127.0.0.1:{port} on iSCSI/TCP" not in lines
    for name in (f"0.0.0.0:{port}", f"[::]:{port}"):
        refused(m, f"mkdir '{b}/tpgt_2/np/{name}'", errno.EINVAL,
                f"kernel_bind\\(\\) failed: -{errno.EADDRINUSE}")
    assert os.listdir(f"{b}/tpgt_2/np") == []
    m.ok(f"mkdir {b}/tpgt_2/np/127.0.0.2:{port}")   # another address on the same port
    m.ok(f"rmdir {a}/np/127.0.0.1:{port} {b}/tpgt_1/np/127.0.0.1:{port} "
         f"{b}/tpgt_2/np/127.0.0.2:{port}")


# -- ACLs -------------------------------------------------------------------------------------------
def test_acl_files(m, t):
    acl = f"{t}/acls/{INIT}"
    m.ok(f"mkdir {P(m, acl)}")
    assert m.read(f"{acl}/info") == f"No active iSCSI Session for Initiator Endpoint: {INIT}\n"
    assert m.read(f"{acl}/cmdsn_depth") == "64\n"
    assert m.read(f"{acl}/tag") == ""
    for k in ("MaxConnections", "InitialR2T", "ErrorRecoveryLevel"):
        assert m.read(f"{acl}/param/{k}") == "No Active iSCSI Session\n"
    refused(m, f"echo 1 > {P(m, acl)}/param/MaxConnections", errno.EACCES, None)
    assert os.listdir(P(m, f"{acl}/fabric_statistics")) == ["iscsi_sess_stats"]
    defaults = dict(dataout_timeout="3", dataout_timeout_retries="5", default_erl="0",
                    nopin_timeout="15", nopin_response_timeout="30",
                    random_datain_pdu_offsets="0", random_datain_seq_offsets="0",
                    random_r2t_offsets="0", authentication="-1")
    assert sorted(os.listdir(P(m, f"{acl}/attrib"))) == sorted(defaults)
    for k, v in defaults.items():
        assert m.read(f"{acl}/attrib/{k}") == v + "\n"
    assert sorted(os.listdir(P(m, f"{acl}/auth"))) == ["authenticate_target", "password",
                                                       "password_mutual", "userid",
                                                       "userid_mutual"]


def test_acl_cmdsn_depth_and_tag(m, t):
    acl = f"{t}/acls/{INIT}"
    m.ok(f"mkdir {P(m, acl)}")
    w = t.split("/")[2]
    lines = logged(m, f"echo 16 > {P(m, acl)}/cmdsn_depth")
    assert lines == [f"Successfully changed queue depth to: 16 for Initiator Node: {INIT} on "
                     "iSCSI Target Portal Group: 1",
                     f"LIO_Target_ConfigFS: {w}/tpgt_1 Set CmdSN Window: 16 forInitiatorName: "
                     f"{INIT}"]
    refused(m, f"echo 513 > {P(m, acl)}/cmdsn_depth", errno.EINVAL,
            "Passed cmdsn_depth: 513 exceeds TA_DEFAULT_CMDSN_DEPTH_MAX: 512")
    assert m.read(f"{acl}/cmdsn_depth") == "16\n"
    m.ok(f"echo mygroup > {P(m, acl)}/tag")
    assert m.read(f"{acl}/tag") == "mygroup\n"
    m.ok(f"echo NULL > {P(m, acl)}/tag")
    assert m.read(f"{acl}/tag") == ""


@pytest.mark.parametrize("attr, value, log", [
    ("dataout_timeout", "61", "Requested DataOut Timeout 61 larger than maximum 60"),
    ("dataout_timeout", "1", "Requested DataOut Timeout 1 smaller than minimum 2"),
    ("dataout_timeout_retries", "0",
     "Requested DataOut Timeout Retries 0 smaller than minimum 1"),
    ("nopin_timeout", "2", "Requested NopIn Timeout 2 smaller than minimum 3"),
    ("nopin_response_timeout", "61",
     "Requested NopIn Response Timeout 61 larger than maximum 60"),
    ("random_r2t_offsets", "2", "Requested Random R2T Offsets: 2 not 0 or 1"),
    ("default_erl", "3", "Requested default ERL: 3 larger than maximum 2"),
])
def test_acl_attrib_bad(m, t, attr, value, log):
    acl = f"{t}/acls/{INIT}"
    m.ok(f"mkdir -p {P(m, acl)}")
    before = m.read(f"{acl}/attrib/{attr}")
    refused(m, f"echo {value} > {P(m, acl)}/attrib/{attr}", errno.EINVAL, log)
    assert m.read(f"{acl}/attrib/{attr}") == before


def test_acl_attrib_good_and_acl_default_depth(m, t):
    m.ok(f"echo 32 > {P(m, t)}/attrib/default_cmdsn_depth")
    acl = f"{t}/acls/{INIT}"
    m.ok(f"mkdir -p {P(m, acl)}")
    assert m.read(f"{acl}/cmdsn_depth") == "32\n"
    m.ok(f"echo 0 > {P(m, acl)}/attrib/nopin_timeout")   # 0 disables NOPINs
    assert m.read(f"{acl}/attrib/nopin_timeout") == "0\n"
    m.ok(f"echo 10 > {P(m, acl)}/attrib/dataout_timeout")
    assert m.read(f"{acl}/attrib/dataout_timeout") == "10\n"
    refused(m, f"mkdir {P(m, acl)}", errno.EEXIST, None)


def test_dynamic_sessions_empty(m, t):
    assert m.read(f"{t}/dynamic_sessions") == ""
    refused(m, f"echo x > {P(m, t)}/dynamic_sessions", errno.EACCES, None)


# =================================================================================================
# TreeIscsiBackend, sans-I/O
# =================================================================================================
from simfs.iscsi.errors import LoginRefused  # noqa: E402
from simfs_plugins.fabrics.iscsi import TreeIscsiBackend  # noqa: E402
from simfs.scsi import status as S  # noqa: E402
from simfs.testing import Sim  # noqa: E402

IQN = "iqn.2003-01.org.linux-iscsi.sim:be"
W = f"/target/iscsi/{IQN}"
T = f"{W}/tpgt_1"
WRITE10 = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0])
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])
TUR = bytes(6)


def _luns(data: bytes) -> list[int]:
    n = int.from_bytes(data[:4], "big") // 8
    return [int.from_bytes(data[8 + 8 * i:10 + 8 * i], "big") & 0x3FFF for i in range(n)]


@pytest.fixture
def sim(tmp_path):
    s = Sim(tmp_path)
    s.rd_device()
    s.mkdir("/target/iscsi")
    s.mkdir(W)
    s.mkdir(T)
    s.mkdir(f"{T}/lun/lun_0")
    s.tree.symlink(f"{T}/lun/lun_0/d", "/target/core/rd_mcp_0/rd0")
    s.mkdir(f"{T}/np/0.0.0.0:3260")
    yield s
    s.close()


def test_backend_portals_need_enable(sim):
    b = TreeIscsiBackend(sim.core)
    assert b.portals() == []
    calls = []
    sim.core.events.iscsi_portals_changed = lambda: calls.append(1)
    sim.write(f"{T}/enable", "1")
    assert b.portals() == [("0.0.0.0", 3260)]
    assert calls
    sim.write(f"{T}/enable", "0")
    assert b.portals() == []


def test_backend_discovery(sim):
    b = TreeIscsiBackend(sim.core)
    assert b.discovery("iqn.x", ("127.0.0.1", 3260)) == []   # tpg_enabled_sendtargets=1
    sim.write(f"{T}/attrib/tpg_enabled_sendtargets", "0")
    assert b.discovery("iqn.x", ("127.0.0.1", 3260)) == [(IQN, ["127.0.0.1:3260,1"])]
    sim.write(f"{T}/enable", "1")
    sim.mkdir(f"{T}/np/[::1]:3261")
    assert b.discovery("iqn.x", ("127.0.0.1", 3260)) == [
        (IQN, ["127.0.0.1:3260,1", "[::1]:3261,1"])]
    # demo_mode_discovery=0 without demo mode: only initiators with an ACL see the target
    sim.write(f"{T}/attrib/demo_mode_discovery", "0")
    assert b.discovery("iqn.x", ("127.0.0.1", 3260)) == []
    sim.mkdir(f"{T}/acls/iqn.x")
    assert b.discovery("iqn.x", ("127.0.0.1", 3260))[0][0] == IQN
    assert b.discovery_auth() == dict(enforce=False, userid="", password="", userid_mutual="",
                                      password_mutual="", authenticate_target=False)
    sim.write("/target/iscsi/discovery_auth/enforce_discovery_auth", "1")
    assert b.discovery_auth()["enforce"] is True


def test_backend_login_refusals(sim):
    b = TreeIscsiBackend(sim.core)
    with pytest.raises(LoginRefused) as e:
        b.login("iqn.nope", ("127.0.0.1", 3260), INIT)
    # iscsi_target_locate_portal: TARGET ERROR / SERVICE UNAVAILABLE
    assert (e.value.status_class, e.value.status_detail) == (3, 1)
    assert "Unable to locate Target IQN: iqn.nope in Storage Node" in sim.log.text()
    with pytest.raises(LoginRefused) as e:   # not enabled
        b.login(IQN, ("127.0.0.1", 3260), INIT)
    assert (e.value.status_class, e.value.status_detail) == (3, 1)
    assert f"Unable to locate Target Portal Group on {IQN}" in sim.log.text()
    sim.write(f"{T}/enable", "1")
    with pytest.raises(LoginRefused) as e:   # wrong port
        b.login(IQN, ("127.0.0.1", 3261), INIT)
    assert (e.value.status_class, e.value.status_detail) == (3, 1)
    with pytest.raises(LoginRefused) as e:   # no ACL, generate_node_acls=0
        b.login(IQN, ("127.0.0.1", 3260), INIT)
    assert (e.value.status_class, e.value.status_detail) == (2, 2)
    assert (f"iSCSI Initiator Node: {INIT} is not authorized to access iSCSI target portal "
            "group: 1.") in sim.log.text()


def test_backend_explicit_acl(sim):
    b = TreeIscsiBackend(sim.core)
    sim.write(f"{T}/enable", "1")
    sim.mkdir(f"{T}/acls/{INIT}")
    sim.mkdir(f"{T}/acls/{INIT}/lun_7")
    sim.tree.symlink(f"{T}/acls/{INIT}/lun_7/x", f"{T}/lun/lun_0")
    sim.write(f"{T}/acls/{INIT}/auth/userid", "u1")
    sim.write(f"{T}/acls/{INIT}/auth/password", "p1")
    v = b.login(IQN, ("10.1.2.3", 3260), INIT)
    assert (v.tpgt, v.target_name) == (1, IQN)
    assert v.params["MaxRecvDataSegmentLength"] == "8192"
    assert v.params["AuthMethod"] == "CHAP"
    assert v.auth["enforce"] is True and v.auth["userid"] == "u1" and v.auth["password"] == "p1"
    assert v.luns() == [7]
    v.session_added(0x23D000000001)
    assert sim.read(f"{T}/acls/{INIT}/info").startswith(f"InitiatorName: {INIT}\n")
    r = v.submit(0x23D000000001, 7, REPORT_LUNS)
    assert r.ok and _luns(r.data) == [7]
    assert v.submit(0x23D000000001, 7, WRITE10, b"\0" * 512).ok
    # write_protect of the mapping, not of the LUN
    sim.write(f"{T}/acls/{INIT}/lun_7/write_protect", "1")
    r = v.submit(0x23D000000001, 7, WRITE10, b"\0" * 512)
    assert r.status == S.CHECK_CONDITION and r.sense_tuple() == (0x7, 0x27, 0x00)
    # unmapped LUN 0: the read-only virtual LUN 0; other LUNs: not supported
    assert v.submit(0x23D000000001, 0, TUR).ok
    r = v.submit(0x23D000000001, 0, WRITE10, b"\0" * 512)
    assert r.sense_tuple() == (0x7, 0x27, 0x00)
    r = v.submit(0x23D000000001, 3, TUR)
    assert r.sense_tuple() == (0x5, 0x25, 0x00)
    # in_cmds: the CDBs that parsed through lun_0 (the refused write and the virtual LUN
    # 0's commands are not its)
    st = f"{T}/lun/lun_0/statistics/scsi_tgt_port/in_cmds"
    assert sim.read(st) == "2\n"
    assert sim.read(f"{T}/acls/{INIT}/lun_7/statistics/scsi_att_intr_port/port_ident") == \
        f"{INIT}+i+23d000000001\n"
    v.session_removed(0x23D000000001)
    assert sim.read(f"{T}/acls/{INIT}/info").startswith("No active iSCSI Session")


def test_backend_demo_mode(sim):
    b = TreeIscsiBackend(sim.core)
    sim.write(f"{T}/enable", "1")
    sim.write(f"{T}/attrib/generate_node_acls", "1")
    sim.write(f"{T}/attrib/cache_dynamic_acls", "1")
    sim.write(f"{T}/auth/userid", "demo")
    v = b.login(IQN, ("127.0.0.1", 3260), INIT)
    assert v.luns() == [0]
    assert v.auth["userid"] == "demo"
    v.session_added("23d000000002")
    assert sim.read(f"{T}/dynamic_sessions") == f"{INIT}\n"
    # demo_mode_write_protect=1 (the iSCSI default): demo-mode LUNs are read-only
    r = v.submit("23d000000002", 0, WRITE10, b"\0" * 512)
    assert r.sense_tuple() == (0x7, 0x27, 0x00)
    assert "Adding READ-ONLY access for LUN in Demo Mode" in sim.log.text()
    # a LUN linked later is mapped into the dynamic ACL at once
    sim.mkdir(f"{T}/lun/lun_4")
    sim.tree.symlink(f"{T}/lun/lun_4/d", "/target/core/rd_mcp_0/rd0")
    assert sorted(v.luns()) == [0, 4]
    # an explicit ACL of the same name replaces the dynamic one
    sim.mkdir(f"{T}/acls/{INIT}")
    assert f"iSCSI_TPG[1] - Replacing dynamic ACL for {INIT}" in sim.log.text()
    assert sim.read(f"{T}/dynamic_sessions") == ""


def test_backend_dynamic_acl_goes_with_its_session(sim):
    b = TreeIscsiBackend(sim.core)
    sim.write(f"{T}/enable", "1")
    sim.write(f"{T}/attrib/generate_node_acls", "1")
    tpg = next(iter(next(iter(sim.core.fabric_modules["iscsi"].wwns.values())).tpgs.values()))
    tpg.private["attrib"]["cache_dynamic_acls"] = 0   # as if set before generate_node_acls
    v = b.login(IQN, ("127.0.0.1", 3260), INIT)
    v.session_added(1)
    assert INIT in tpg.acls
    v.session_removed(1)
    assert INIT not in tpg.acls


def _mapped_session(sim):
    """A session of INIT, which maps lun_0 as its LUN 7: (its TPG view, its ISID)."""
    b = TreeIscsiBackend(sim.core)
    sim.write(f"{T}/enable", "1")
    sim.mkdir(f"{T}/acls/{INIT}")
    sim.mkdir(f"{T}/acls/{INIT}/lun_7")
    sim.tree.symlink(f"{T}/acls/{INIT}/lun_7/x", f"{T}/lun/lun_0")
    v = b.login(IQN, ("10.1.2.3", 3260), INIT)
    v.session_added(0x23D000000001)
    return v, 0x23D000000001


def test_statistics_count_where_the_kernel_counts(sim):
    """transport_lookup_cmd_lun counts every command that reaches a LUN in its mapping and
    (unless refused there as a write to a read-only LUN) in the device, by the expected
    length, whatever the outcome; target_cmd_parse_cdb counts the LUN's in_cmds once the
    CDB parsed; target_complete_ok_work adds a GOOD transfer to the LUN's octets. An
    unmapped LUN counts nowhere and logs the kernel's line."""
    from simfs.scsi.command import DATA_IN, DATA_NONE, DATA_OUT
    v, isid = _mapped_session(sim)
    mib = 1 << 20
    read_2m = bytes([0x28, 0, 0, 0, 0, 0, 0, 0x10, 0, 0])            # 4096 blocks
    write_1m = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0x08, 0, 0])           # 2048 blocks

    def run(lun, cdb, data=b"", edtl=0, direction=DATA_NONE):
        return v.submit(isid, lun, cdb, data, data_length=edtl, data_direction=direction)

    assert run(7, read_2m, edtl=2 * mib, direction=DATA_IN).ok
    assert run(7, write_1m, bytes(mib), mib, DATA_OUT).ok
    # beyond the device's 8 MiB: sbc_parse_cdb refuses it (cmd exceeds last lba)
    far = bytes([0x28, 0, 0, 0, 0x40, 0, 0, 0x10, 0, 0])
    assert run(7, far, edtl=2 * mib, direction=DATA_IN).status == S.CHECK_CONDITION
    # an opcode nobody parses: counted at the lookup only
    assert run(7, bytes([0xC7, 0, 0, 0, 0, 0]), edtl=mib, direction=DATA_IN).sense_tuple() \
        == (0x5, 0x20, 0x00)
    assert run(7, TUR).ok
    # no LUN 3: the kernel's line, no counter moves
    assert run(3, TUR).sense_tuple() == (0x5, 0x25, 0x00)
    assert f"TARGET_CORE[iSCSI]: Detected NON_EXISTENT_LUN Access for 0x00000003 from " \
           f"{INIT}" in sim.log.text()
    # a write to the mapping made read-only: the mapping counts it, the device does not
    sim.write(f"{T}/acls/{INIT}/lun_7/write_protect", "1")
    assert run(7, write_1m, bytes(mib), mib, DATA_OUT).sense_tuple() == (0x7, 0x27, 0x00)
    assert "Detected WRITE_PROTECTED LUN Access for 0x00000007" in sim.log.text()

    lu = "/target/core/rd_mcp_0/rd0/statistics/scsi_lu"
    port = f"{T}/lun/lun_0/statistics/scsi_tgt_port"
    auth = f"{T}/acls/{INIT}/lun_7/statistics/scsi_auth_intr"
    got = {f: sim.read(f"{lu}/{f}") for f in ("num_cmds", "read_mbytes", "write_mbytes")}
    assert got == {"num_cmds": "5\n", "read_mbytes": "5\n", "write_mbytes": "1\n"}
    got = {f: sim.read(f"{port}/{f}") for f in ("in_cmds", "read_mbytes", "write_mbytes")}
    assert got == {"in_cmds": "3\n", "read_mbytes": "2\n", "write_mbytes": "1\n"}
    got = {f: sim.read(f"{auth}/{f}") for f in ("num_cmds", "read_mbytes", "write_mbytes")}
    assert got == {"num_cmds": "6\n", "read_mbytes": "5\n", "write_mbytes": "2\n"}


def test_the_virtual_lun_0_refuses_a_write_without_a_line(sim):
    """transport_lookup_cmd_lun answers a write to the virtual LUN 0 with WRITE PROTECTED
    and logs nothing (only a read-only mapping logs Detected WRITE_PROTECTED)."""
    v, _ = _mapped_session(sim)
    r = v.submit(0x23D000000001, 0, WRITE10, b"\0" * 512)
    assert r.sense_tuple() == (0x7, 0x27, 0x00)
    assert "WRITE_PROTECTED" not in sim.log.text()
    assert sim.read("/target/core/rd_mcp_0/rd0/statistics/scsi_lu/num_cmds") == "0\n"
