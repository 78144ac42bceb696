"""The login machine and the device workers, in process (no sockets): the kernel's lines for
refused logins, the header checks made before a data segment is read, the AHS a login
never waits for, and commands that queue per device."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from iscsi_fake import TARGET, FakeBackend  # noqa: E402

from simfs.iscsi import pdu as P  # noqa: E402
from simfs.iscsi.chap import chap_response  # noqa: E402
from simfs.iscsi.login import LoginContext, LoginMachine  # noqa: E402
from simfs.iscsi.report import Reporter  # noqa: E402
from simfs.iscsi.server import listen_hosts  # noqa: E402
from simfs.iscsi.text import encode_text, parse_text  # noqa: E402
from simfs.iscsi.workers import DeviceWorkers, QueueFull  # noqa: E402

ISID = b"\x80\x00\x00\x00\x00\x01"


class Lines:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        if level in ("err", "warn", "info", "debug"):
            return lambda msg: self.lines.append((level, msg))
        raise AttributeError(level)


@pytest.fixture(scope="module")
def backend():
    b = FakeBackend()
    yield b
    b.close()


def machine(backend, auth=None):
    log = Lines()
    backend.auth = {"enforce": False, "userid": "", "password": "", "userid_mutual": "",
                    "password_mutual": "", **(auth or {})}
    ctx = LoginContext(backend=backend, portal=("127.0.0.1", 3260),
                       find_session=lambda *a: None, reinstate=lambda *a: None,
                       new_tsih=lambda tpg: 1, log=Reporter(log))
    return LoginMachine(ctx), log


def req(keys, csg=0, nsg=1, transit=True, ahs_words=0, itt=1, opcode=None, dlength=None):
    data = encode_text(keys) if keys else b""
    bhs = bytearray(P.build_login_req(ISID, 0, itt, 0, 1, 0, csg, nsg, transit, len(data)))
    bhs[4] = ahs_words
    if opcode is not None:
        bhs[0] = opcode
    if dlength is not None:
        bhs[5:8] = dlength.to_bytes(3, "big")
    p = P.Pdu(bytes(bhs))
    p.data = data
    return p


FIRST = [("InitiatorName", "iqn.2026-01.org.test:Host"), ("TargetName", TARGET),
         ("SessionType", "Normal")]


OPERATIONAL = [("HeaderDigest", "None"), ("DataDigest", "None"),
               ("MaxRecvDataSegmentLength", "4096"), ("ImmediateData", "No"),
               ("InitialR2T", "Yes"), ("MaxBurstLength", "8192"), ("FirstBurstLength", "4096"),
               ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0")]


def test_an_ahs_length_is_not_waited_for(backend):
    """A login header announcing 1020 AHS bytes and no data: header() lets the data (none)
    be read, and the empty request is refused for its missing InitiatorName at once."""
    m, log = machine(backend)
    r = req([], ahs_words=255)
    assert m.header(r) is None
    res = m.feed(r)
    assert res.state == "fail" and (res.bhs[36], res.bhs[37]) == (0x02, 0x07)
    assert log.lines == [("err", "InitiatorName key not received in first login request."),
                         ("err", "iSCSI Login negotiation failed.")]


@pytest.mark.parametrize("dlen,send", [(8192, None), (8193, False), ((1 << 24) - 1, False)])
def test_data_segment_length_is_checked_on_the_header(backend, dlen, send):
    m, log = machine(backend)
    res = m.header(req(FIRST, dlength=dlen))
    if send is None:
        assert res is None and log.lines == []
        return
    assert res.state == "fail" and res.bhs is None  # dropped without a response
    assert log.lines[0] == ("err", "Login request payload exceeds default "
                                   "MaxRecvDataSegmentLength: 8192, protocol error.")


def test_other_opcodes_and_flags_fail_on_the_header(backend):
    m, log = machine(backend)
    res = m.header(req(FIRST, opcode=0x01))
    assert (res.bhs[36], res.bhs[37]) == (0x02, 0x00)
    assert log.lines[0] == ("err", "Received unknown opcode 0x01.")
    m, log = machine(backend)
    bad = req(FIRST)
    bhs = bytearray(bad.bhs)
    bhs[1] |= P.LOGIN_CONTINUE  # C and T both
    assert m.header(P.Pdu(bytes(bhs))).state == "fail"
    assert log.lines[0] == ("err", "Login request has both ISCSI_FLAG_LOGIN_CONTINUE and "
                                   "ISCSI_FLAG_LOGIN_TRANSIT set, protocol error.")


def _chap(backend, user, secret):
    m, log = machine(backend, {"enforce": True, "userid": "u1", "password": "s" * 12})
    res = m.feed(req(FIRST + [("AuthMethod", "CHAP")], transit=False))
    assert res.state == "continue"
    res = m.feed(req([("CHAP_A", "5")], transit=False))
    keys = dict(parse_text(res.data))
    ident, chal = int(keys["CHAP_I"]), bytes.fromhex(keys["CHAP_C"][2:])
    resp = chap_response(5, ident, secret, chal)
    res = m.feed(req([("CHAP_N", user), ("CHAP_R", "0x" + resp.hex())]))
    return m, res, log


def test_wrong_chap_secret_is_explained(backend):
    m, res, log = _chap(backend, "u1", "wrong-secret")
    assert res.state == "fail" and (res.bhs[36], res.bhs[37]) == (0x02, 0x01)
    assert log.lines == [("debug", "[server] md5 Digests do not match!"),
                         ("err", "Security negotiation failed."),
                         ("err", "iSCSI Login negotiation failed.")]
    assert m.failure == "[server] md5 Digests do not match!"


def test_wrong_chap_user_is_explained(backend):
    m, res, log = _chap(backend, "nobody", "s" * 12)
    assert res.state == "fail"
    assert log.lines[0] == ("err", "CHAP_N values do not match!")


def test_right_chap_logs_no_failure(backend):
    m, res, log = _chap(backend, "u1", "s" * 12)
    assert res.state == "continue" and log.lines == []
    assert m.initiator_name == "iqn.2026-01.org.test:Host" and m.initiator == \
        "iqn.2026-01.org.test:host"


def test_initiator_alias_only_when_sent(backend):
    for alias in (None, "host-a"):
        m, log = machine(backend)
        extra = [("InitiatorAlias", alias)] if alias else []
        assert m.feed(req(FIRST + [("AuthMethod", "None")] + extra)).state == "continue"
        res = m.feed(req(OPERATIONAL, 1, 3))
        assert res.state == "complete"
        assert m.session_params.initiator_alias == (alias or "")


# -- device workers -----------------------------------------------------------------------------
def test_one_device_in_order_others_alongside():
    w = DeviceWorkers()
    out, done = [], threading.Event()
    slow_started = threading.Event()

    def slow(i):
        slow_started.set()
        time.sleep(0.3)
        return i

    def fast(i):
        return i

    def note(res, err):
        out.append(res)
        if len(out) == 4:
            done.set()
    w.submit("a", slow, ("a0",), note)
    w.submit("a", fast, ("a1",), note)  # behind a0 on the same device
    slow_started.wait(2)
    w.submit("b", fast, ("b0",), note)
    w.submit("b", fast, ("b1",), note)
    assert done.wait(5)
    assert out.index("a0") < out.index("a1")  # FIFO per device
    assert out.index("b1") < out.index("a0")  # device b did not wait for device a
    w.stop()


def test_a_full_queue_is_refused():
    w = DeviceWorkers(max_queued=2)
    gate = threading.Event()
    w.submit("d", gate.wait, (5,), lambda r, e: None)  # running
    time.sleep(0.1)
    w.submit("d", int, (), lambda r, e: None)
    w.submit("d", int, (), lambda r, e: None)
    with pytest.raises(QueueFull):
        w.submit("d", int, (), lambda r, e: None)
    gate.set()
    w.stop()


def test_errors_reach_the_completion():
    w = DeviceWorkers()
    got = []
    ev = threading.Event()
    w.submit("d", lambda: 1 / 0, (), lambda r, e: (got.append(e), ev.set()))
    assert ev.wait(2) and isinstance(got[0], ZeroDivisionError)
    w.stop()


@pytest.mark.parametrize("ip,listen_any,hosts", [
    ("0.0.0.0", False, ["127.0.0.1"]), ("::", False, ["::1", "127.0.0.1"]),
    ("0.0.0.0", True, ["0.0.0.0"]), ("::", True, ["::"]),
    ("192.0.2.7", False, ["192.0.2.7"]), ("[::1]", False, ["::1"]),
])
def test_listen_hosts(ip, listen_any, hosts):
    assert listen_hosts(ip, listen_any) == hosts


# -- residuals (target_cmd_size_check, target_complete_cmd_with_length) ------------------------
from simfs.iscsi.session import residuals  # noqa: E402

O, U = P.RSP_OVERFLOW, P.RSP_UNDERFLOW


@pytest.mark.parametrize("read,write,edtl,n,size,want", [
    (True, False, 8, 8, 255, (O, 247, 8)),        # INQUIRY alloc 255, EDTL 8
    (True, False, 64, 36, 255, (O, 28, 36)),      # ... and less data than EDTL: OVERFLOW, 28
    (True, False, 255, 36, 255, (U, 219, 36)),    # alloc = EDTL, short answer
    (True, False, 512, 512, 512, (0, 0, 512)),
    (True, False, 4096, 512, 512, (U, 3584, 512)),  # the CDB asks less than EDTL
    (False, False, 0, 0, 4096, (O, 4096, 0)),     # SYNCHRONIZE CACHE/VERIFY 8 blocks, no data
    (False, False, 0, 0, 0, (0, 0, 0)),           # SYNCHRONIZE CACHE on rd_mcp: size 0
    (False, True, 1024, 0, 512, (U, 512, 0)),     # write residuals (the engine refuses them)
    (False, True, 512, 0, 1024, (O, 512, 0)),
])
def test_residuals(read, write, edtl, n, size, want):
    assert residuals(read, write, edtl, n, 0, lambda: size) == want


def test_no_residual_for_check_condition():
    assert residuals(True, False, 512, 0, 2, lambda: 512) == (0, 0, 0)
