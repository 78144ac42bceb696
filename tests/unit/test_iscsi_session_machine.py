"""The full feature phase as a sans-I/O machine (simfs.iscsi.machine): PDU bytes in, PDUs
and actions out, no socket, no event loop. Each test plays the initiator and the driver."""
from __future__ import annotations

import struct

import pytest

from simfs.iscsi import digest as D
from simfs.iscsi import pdu as P
from simfs.iscsi.machine import ConnectionMachine, Execute, ManageTask, SENSE_BUFFER
from simfs.iscsi.session import Session
from simfs.iscsi.text import SessionParams
from simfs.scsi.command import DATA_IN, Result


class Log:
    def __init__(self):
        self.lines: list = []
        self.events: list = []

    def line(self, level, msg):
        self.lines.append((level, msg))

    def err(self, msg):
        self.line("err", msg)

    def debug(self, msg):
        self.line("debug", msg)

    def event(self, *a, **kw):
        self.events.append((a, kw))


class Tpg:
    tpgt = 1
    target_name = "iqn.2026-12.test:t"

    def luns(self):
        return [0]

    def block_size(self, lun):
        return 512

    def sync_cache(self, lun):
        return True

    def connection_timed_out(self, initiator):
        self.timed_out = getattr(self, "timed_out", []) + [initiator]


def machine(exp_cmdsn=1, window=4, **params):
    kw = dict(immediate_data=True, initial_r2t=True, max_recv_dsl=8192, max_xmit_dsl=8192,
              max_burst=16384, first_burst=8192, max_outstanding_r2t=1)
    kw.update(params)
    sess = Session(None, b"\x80\0\0\0\0\1", 1, "iqn.2026-12.test:i", Tpg.target_name, Tpg(),
                   False, SessionParams(**kw), exp_cmdsn, exp_cmdsn + window - 1,
                   ("127.0.0.1", 3260))
    log = Log()
    m = ConnectionMachine(sess, statsn=10, cid=0, log=log)
    return m, sess, log


def pdus(m: ConnectionMachine, digests: bool = False, data_digests: bool = False) -> list:
    """The machine's output, split into PDUs (data without padding); ``digests``: header
    and data digests, ``data_digests``: data digests only."""
    raw = b"".join(bytes(b) for b in m.take_output())
    out = []
    while raw:
        p = P.Pdu(raw[:48])
        pos = 48 + (4 if digests else 0)
        n = p.dlength
        p.data = raw[pos:pos + n]
        pos += n + P.pad_len(n) + (4 if (digests or data_digests) and n else 0)
        out.append(p)
        raw = raw[pos:]
    return out


def wire(bhs, data=b"") -> bytes:
    return bytes(bhs) + bytes(data) + P.PADDING[len(data) & 3]


def read10(lba, blocks):
    return bytes([0x28, 0, *struct.pack(">I", lba), 0, *struct.pack(">H", blocks), 0])


def write10(lba, blocks):
    return bytes([0x2A, 0, *struct.pack(">I", lba), 0, *struct.pack(">H", blocks), 0])


def cmd(itt, cmdsn, cdb, edtl, read=False, write=False, data=b"", final=True):
    flags = (P.F_FINAL if final else 0) | (P.CMD_READ if read else 0) | \
        (P.CMD_WRITE if write else 0)
    return wire(P.build_scsi_cmd(flags, 0, itt, edtl, cmdsn, 0, cdb, len(data)), data)


def executes(m) -> list:
    acts = m.take_actions()
    assert all(isinstance(a, Execute) for a in acts)
    return acts


# -- CmdSN window ---------------------------------------------------------------------------------
def test_commands_run_in_cmdsn_order_and_an_early_one_waits_for_the_gap():
    m, sess, _ = machine()
    m.feed(cmd(0x11, 2, read10(0, 1), 512, read=True))   # ahead of ExpCmdSN 1: held
    assert m.take_actions() == [] and sess.exp_cmdsn == 1
    m.feed(cmd(0x10, 1, read10(8, 1), 512, read=True))   # fills the gap: both run, in order
    assert [a.task.itt for a in executes(m)] == [0x10, 0x11]
    assert sess.exp_cmdsn == 3 and m.take_output() == []


def test_cmdsn_below_the_window_or_above_maxcmdsn_is_dropped_silently():
    m, sess, log = machine(exp_cmdsn=5, window=2)   # MaxCmdSN 6
    m.feed(cmd(0x20, 4, read10(0, 1), 512, read=True))
    m.feed(cmd(0x21, 7, read10(0, 1), 512, read=True))
    assert m.take_actions() == [] and m.take_output() == []
    assert sess.exp_cmdsn == 5 and not m.closing and m.tasks == {}  # nothing kept
    assert ("debug", "Received CmdSN: 0x00000004 is less than ExpCmdSN: 0x00000005, "
            "ignoring.") in log.lines
    assert ("err", "Received CmdSN: 0x00000007 is greater than MaxCmdSN: 0x00000006, "
            "ignoring.") in log.lines


def test_a_read_completes_with_phase_collapse_and_opens_the_window():
    m, sess, _ = machine(max_xmit_dsl=4096)
    m.feed(cmd(0x30, 1, read10(0, 16), 8192, read=True))
    (a,) = executes(m)
    assert a.args[2] == read10(0, 16) + bytes(6)  # the BHS carries 16 CDB bytes
    assert a.kw == {"data_length": 8192, "data_direction": DATA_IN}
    payload = bytes(range(256)) * 32
    m.complete(a.task, Result(data=payload))
    out = pdus(m)
    assert [p.opcode for p in out] == [P.OP_DATA_IN, P.OP_DATA_IN]   # cut to 4096
    assert [p.u32(36) for p in out] == [0, 1] and [p.u32(40) for p in out] == [0, 4096]
    assert not out[0].flags & P.DATAIN_STATUS
    assert out[1].flags & (P.F_FINAL | P.DATAIN_STATUS) == P.F_FINAL | P.DATAIN_STATUS
    assert b"".join(p.data for p in out) == payload
    assert out[1].u32(24) == 10 and m.statsn == 11           # StatSN in the last one only
    assert out[1].u32(32) == sess.max_cmdsn == 5              # MaxCmdSN moved by one


def test_residual_underflow_when_edtl_is_larger_than_the_cdb():
    m, _, _ = machine()
    m.feed(cmd(0x31, 1, read10(0, 1), 1024, read=True))
    (a,) = executes(m)
    m.complete(a.task, Result(data=bytes(512)))
    (last,) = pdus(m)
    assert last.flags & P.DATAIN_UNDERFLOW and last.u32(44) == 512


# -- immediate data, R2T and Data-Out -------------------------------------------------------------
def test_immediate_data_then_r2ts_then_data_out_into_one_buffer():
    m, sess, _ = machine(max_burst=8192, first_burst=4096)
    data = bytes(range(256)) * 80   # 20480 bytes: 4096 immediate, then two R2T bursts
    m.feed(cmd(0x40, 1, write10(0, 40), len(data), write=True, data=data[:4096]))
    (r2t,) = pdus(m)
    assert r2t.opcode == P.OP_R2T and r2t.itt == 0x40
    ttt, r2tsn, off, length = r2t.u32(20), r2t.u32(36), r2t.u32(40), r2t.u32(44)
    assert (r2tsn, off, length) == (0, 4096, 8192)
    # the burst in two Data-Out PDUs, split across feeds in odd places
    d1 = wire(P.build_data_out(False, 0, 0x40, ttt, 0, 0, 4096, 4096), data[4096:8192])
    d2 = wire(P.build_data_out(True, 0, 0x40, ttt, 0, 1, 8192, 4096), data[8192:12288])
    stream = d1 + d2
    for cut in (7, 50, 3000, len(stream)):
        m.feed(stream[:cut])
        stream = stream[cut:]
    (r2t2,) = pdus(m)                      # MaxOutstandingR2T 1: the next one only now
    assert (r2t2.u32(36), r2t2.u32(40), r2t2.u32(44)) == (1, 12288, 8192)
    assert m.take_actions() == []
    m.feed(wire(P.build_data_out(True, 0, 0x40, r2t2.u32(20), 0, 0, 12288, 8192),
                data[12288:]))
    (a,) = executes(m)
    assert bytes(a.args[3]) == data
    m.complete(a.task, Result())
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_SCSI_RSP and rsp.bhs[3] == 0 and rsp.itt == 0x40


def test_after_a_large_data_out_only_the_next_header_is_read_into_the_buffer():
    """A 64 KiB Data-Out payload goes straight into its command's buffer; the next read is
    then offered a header's room only, so the next payload is not read into the receive
    buffer and copied from there; any other PDU ends that."""
    m, _, _ = machine(max_burst=1 << 16, first_burst=1 << 16, max_recv_dsl=1 << 16)
    n = 1 << 16
    data = bytes(range(256)) * (3 * n // 256)
    m.feed(cmd(0x50, 1, write10(0, 3 * n // 512), 3 * n, write=True, data=data[:n]))
    (r2t,) = pdus(m)
    ttt = r2t.u32(20)
    assert len(m.get_buffer()) > 4096           # no Data-Out went direct yet
    m.feed(wire(P.build_data_out(True, 0, 0x50, ttt, 0, 0, n, n)))   # the header alone
    assert len(m.get_buffer()) == n             # the payload: straight to the command
    m.feed(data[n:2 * n])
    assert len(m.get_buffer()) == P.BHS_LEN     # the next Data-Out's header only
    (r2t2,) = pdus(m)
    hdr = wire(P.build_data_out(True, 0, 0x50, r2t2.u32(20), 0, 0, 2 * n, n))
    m.feed(hdr[:20])
    assert len(m.get_buffer()) == P.BHS_LEN - 20
    m.feed(hdr[20:])
    assert len(m.get_buffer()) == n
    m.feed(data[2 * n:])
    (a,) = executes(m)
    assert bytes(a.args[3]) == data
    assert len(m.get_buffer()) == P.BHS_LEN
    m.feed(cmd(0x51, 2, read10(0, 1), 512, read=True))   # not a Data-Out: the room again
    assert len(m.get_buffer()) > 4096
    assert [x.task.itt for x in executes(m)] == [0x51]


def test_unsolicited_data_out_with_initial_r2t_no():
    m, _, _ = machine(initial_r2t=False, first_burst=8192)
    data = bytes([7]) * 8192
    m.feed(cmd(0x41, 1, write10(0, 16), 8192, write=True, data=data[:2048], final=False))
    assert m.take_output() == [] and m.take_actions() == []
    m.feed(wire(P.build_data_out(True, 0, 0x41, P.RSVD_TAG, 0, 0, 2048, 6144), data[2048:]))
    (a,) = executes(m)
    assert bytes(a.args[3]) == data and m.take_output() == []


def test_a_write_whose_data_out_stops_coming_closes_at_the_dataout_timeout():
    """iscsit_handle_dataout_timeout at ERL 0: the DataOUT timer starts with the R2T, each
    Data-Out restarts it, all the data stops it; when it runs out the connection goes and
    counts as a connection timeout."""
    m, sess, log = machine(max_burst=4096, first_burst=4096)
    m.now = 100.0
    m.feed(cmd(0x45, 1, write10(0, 16), 8192, write=True))
    (r2t,) = pdus(m)
    assert m.dataout_wanted == 3.0                        # the ACL's dataout_timeout
    m.dataout_wanted = None
    m.now = 102.0                                         # the first burst, 2 s later
    m.feed(wire(P.build_data_out(True, 0, 0x45, r2t.u32(20), 0, 0, 0, 4096), bytes(4096)))
    (r2t2,) = pdus(m)
    assert m.dataout_wanted is None                       # the timer runs on
    m.now = 103.0
    assert m.dataout_check() == 2.0 and not m.closing     # restarted at 102
    m.now = 105.0
    assert m.dataout_check() is None and m.closing
    assert m.close_reason == ("Unable to recover from DataOut timeout while in ERL=0, "
                              "closing iSCSI connection for I_T Nexus iqn.2026-12.test:i,"
                              "i,0x800000000001,iqn.2026-12.test:t,t,0x01")
    assert sess.conn_timeout_errors == 1 and sess.tpg.timed_out == ["iqn.2026-12.test:i"]


def test_the_dataout_timer_stops_when_the_data_is_in():
    m, sess, _ = machine(max_burst=8192, first_burst=4096, initial_r2t=False)
    m.now = 10.0
    m.feed(cmd(0x46, 1, write10(0, 16), 8192, write=True, data=bytes(1024), final=False))
    assert m.dataout_wanted == 3.0 and pdus(m) == []     # unsolicited data to come
    m.feed(wire(P.build_data_out(True, 0, 0x46, P.RSVD_TAG, 0, 0, 1024, 3072), bytes(3072)))
    (r2t,) = pdus(m)
    m.feed(wire(P.build_data_out(True, 0, 0x46, r2t.u32(20), 0, 0, 4096, 4096), bytes(4096)))
    (a,) = executes(m)
    m.now = 60.0
    assert m.dataout_check() is None and not m.closing   # nothing waits any more
    assert sess.conn_timeout_errors == 0


def ping(itt: int) -> bytes:
    """An immediate NOP-Out ping: 48 bytes that a target which parses them answers."""
    return bytes(P.build_generic(P.OP_NOOP_OUT | P.OP_IMMEDIATE, P.F_FINAL, itt,
                                 w20=P.RSVD_TAG, cmdsn=1))


def test_a_data_out_with_a_higher_datasn_is_refused_and_its_payload_is_parsed_next():
    """iscsit_check_dataout_hdr fails (DATAOUT_CANNOT_RECOVER) and iscsit_handle_data_out
    returns without reading the payload: the connection stays, and the payload's bytes are
    taken as the next PDU (here a NOP-Out ping, answered)."""
    m, _, log = machine(max_burst=8192, first_burst=4096)
    m.feed(cmd(0x42, 1, write10(0, 16), 8192, write=True))
    (r2t,) = pdus(m)
    m.feed(wire(P.build_data_out(True, 0, 0x42, r2t.u32(20), 0, 1, 0, 48), ping(0x77)))
    assert log.lines[-2:] == [
        ("err", "Command ITT: 0x42000000, received DataSN: 0x00000001 higher than expected "
                "0x00000000."),
        ("err", "Unable to perform within-command recovery while ERL=0.")]
    (nopin,) = pdus(m)
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x77)
    assert not m.closing and m.take_actions() == [] and m.tasks[0x42].received == 0


def test_data_out_lower_datasn_is_discarded_and_an_offset_past_edtl_is_rejected():
    m, _, log = machine(max_burst=8192, first_burst=4096)
    m.feed(cmd(0x43, 1, write10(0, 16), 8192, write=True))
    (r2t,) = pdus(m)
    ttt = r2t.u32(20)
    m.feed(wire(P.build_data_out(False, 0, 0x43, ttt, 0, 0, 0, 4096), bytes([1]) * 4096))
    m.feed(wire(P.build_data_out(False, 0, 0x43, ttt, 0, 0, 0, 4096), bytes([2]) * 4096))
    assert ("err", "Command ITT: 0x43000000, received DataSN: 0x00000000 lower than "
            "expected 0x00000001, discarding payload.") in log.lines
    assert not m.closing and m.take_output() == []
    m.feed(wire(P.build_data_out(True, 0, 0x43, ttt, 0, 1, 8160, 48), ping(0x78)))
    rej, nopin = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_BOOKMARK_INVALID
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x78)  # the payload, parsed next
    assert log.lines[-1] == ("err", "DataOut Offset: 8160, Length 48 greater than iSCSI "
                                    "Command EDTL 8192, protocol error.")
    assert not m.closing and m.tasks[0x43].received == 4096


def test_data_out_with_data_digests():
    m, _, _ = machine(data_digest=True, max_burst=8192, first_burst=4096)
    m.feed(cmd(0x44, 1, write10(0, 2), 1024, write=True)[:48])
    (r2t,) = pdus(m, digests=False)
    data = bytes([9]) * 1024
    good = bytes(P.build_data_out(True, 0, 0x44, r2t.u32(20), 0, 0, 0, 1024)) + data + \
        D.digest(data)
    m.feed(good)
    (a,) = executes(m)
    assert bytes(a.args[3]) == data


@pytest.mark.parametrize("pdu, line, why, reason", [
    (bytes(P.build_generic(P.OP_NOOP_OUT, P.F_FINAL, 0x50, w20=P.RSVD_TAG, cmdsn=1,
                           dlength=4)) + b"ping",
     "Ping data CRC32C DataDigest 0x00000000 does not match computed 0x%08x",
     "Unable to recover from NOPOUT Ping DataCRC failure while in ERL=0.", None),
    (cmd(0x51, 1, write10(0, 1), 512, write=True, data=bytes([5]) * 4, final=False),
     "ImmediateData CRC32C DataDigest 0x00000000 does not match computed 0x%08x",
     "Unable to recover from Immediate Data digest failure while in ERL=0.",
     P.REASON_DATA_DIGEST_ERROR),
    (bytes(P.build_generic(P.OP_TEXT_REQ, P.F_FINAL, 0x52, w20=P.RSVD_TAG, cmdsn=1,
                           dlength=4)) + b"a=b\0",
     "Text data CRC32C DataDigest 0x00000000 does not match computed 0x%08x",
     "Unable to recover from Text Data digest failure while in ERL=0.",
     P.REASON_PROTOCOL_ERROR),
])
def test_a_data_digest_error_closes_the_connection(pdu, line, why, reason):
    """At ERL 0 a DataDigest that does not match closes the connection, with the lines of
    the PDU's kind and, for a command or a Text request, a Reject."""
    m, _, log = machine(data_digest=True, max_burst=8192, first_burst=4096)
    m.feed(pdu + bytes(4))
    want = int.from_bytes(D.digest(pdu[48:]), "little")
    assert log.lines[-2:] == [("err", line % want), ("err", why)]
    assert m.closing and m.close_reason == why and m.take_actions() == []
    rejects = [x for x in pdus(m, data_digests=True) if x.opcode == P.OP_REJECT]
    assert [x.bhs[2] for x in rejects] == ([reason] if reason is not None else [])


def test_a_data_out_digest_error_prints_the_header_as_the_kernel_reads_it():
    m, _, log = machine(data_digest=True, max_burst=8192, first_burst=4096)
    m.feed(cmd(0x44, 1, write10(0, 2), 1024, write=True)[:48])
    (r2t,) = pdus(m, digests=False)
    m.feed(bytes(P.build_data_out(True, 0, 0x44, r2t.u32(20), 0, 0, 0, 1024)) + bytes(1028))
    want = int.from_bytes(D.digest(bytes(1024)), "little")
    # ITT, Offset and DataSN as they lie in the header, read as little-endian numbers
    assert log.lines[-2:] == [
        ("err", "ITT: 0x44000000, Offset: 0, Length: 1024, DataSN: 0x00000000, CRC32C "
                f"DataDigest 0x00000000 does not match computed 0x{want:08x}"),
        ("err", "Unable to recover from DataOUT CRC failure while ERL=0, closing session.")]
    (rej,) = pdus(m, data_digests=True)
    assert rej.bhs[2] == P.REASON_DATA_DIGEST_ERROR and m.closing


# -- sense -----------------------------------------------------------------------------------------
def test_sense_goes_in_a_96_byte_buffer():
    m, _, _ = machine()
    m.feed(cmd(0x51, 1, read10(0, 1), 512, read=True))
    (a,) = executes(m)
    sense = bytes([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0])
    m.complete(a.task, Result(status=2, sense=sense))
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_SCSI_RSP and rsp.bhs[3] == 2
    assert rsp.dlength == 2 + SENSE_BUFFER == 98
    assert rsp.data[:2] == b"\x00\x60" and rsp.data[2:20] == sense
    assert rsp.data[20:] == bytes(78)


# -- NOP -------------------------------------------------------------------------------------------
def test_nop_out_ping_is_echoed_and_a_nop_in_ping_expects_an_answer():
    m, sess, log = machine()
    m.feed(wire(P.build_generic(P.OP_NOOP_OUT, P.F_FINAL, 0x60, w20=P.RSVD_TAG, cmdsn=1,
                                dlength=5), b"hello"))
    (nop,) = pdus(m)
    assert nop.opcode == P.OP_NOOP_IN and nop.itt == 0x60 and nop.data == b"hello"
    assert sess.exp_cmdsn == 2
    assert m.nopin_ping() and not m.nopin_ping()        # one ping outstanding at a time
    (ping,) = pdus(m)
    assert ping.opcode == P.OP_NOOP_IN and ping.itt == P.RSVD_TAG
    m.feed(wire(P.build_generic(P.OP_NOOP_OUT, P.F_FINAL, P.RSVD_TAG, w20=ping.u32(20),
                                cmdsn=2, immediate=True)))
    m.nopin_expired()
    assert not m.closing and m.take_output() == []
    assert m.nopin_ping()
    m.nopin_expired()                                    # no answer this time
    assert m.closing and m.close_reason.startswith(
        "Did not receive response to NOPIN on CID: 0, failing connection for I_T Nexus "
        "iqn.2026-12.test:i,i,0x800000000001,iqn.2026-12.test:t,t,0x01")


def test_an_unanswered_ping_counts_a_connection_timeout_for_the_session_and_the_iqn():
    m, sess, _ = machine()
    assert m.nopin_ping()
    m.nopin_expired()
    assert m.closing and sess.conn_timeout_errors == 1
    assert sess.tpg.timed_out == ["iqn.2026-12.test:i"]   # iscsit_fill_cxn_timeout_err_stats
    m.nopin_expired()                                    # already closing: counted once
    assert sess.conn_timeout_errors == 1 and len(sess.tpg.timed_out) == 1


def test_a_discovery_session_timing_out_counts_nowhere():
    m, sess, _ = machine()
    sess.discovery = True
    assert m.nopin_ping()
    m.nopin_expired()
    assert m.closing and sess.conn_timeout_errors == 0
    assert not hasattr(sess.tpg, "timed_out")


# -- task management -------------------------------------------------------------------------------
def test_abort_task_drops_the_command_and_answers_after_the_device():
    m, sess, _ = machine()
    m.feed(cmd(0x70, 1, read10(0, 1), 512, read=True))
    (a,) = executes(m)
    m.feed(wire(P.build_generic(P.OP_TMF_REQ, P.F_FINAL | P.TMF_ABORT_TASK, 0x71, w20=0x70,
                                cmdsn=2, immediate=True) + b""))
    # RefCmdSN is at byte 32: 0 here, so the TMF is rejected (kernel: not the task's CmdSN)
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_TMF_RSP and rsp.bhs[2] == P.TMF_RSP_REJECTED
    tmf = P.build_generic(P.OP_TMF_REQ, P.F_FINAL | P.TMF_ABORT_TASK, 0x72, w20=0x70,
                          cmdsn=2, immediate=True)
    struct.pack_into(">I", tmf, 32, 1)
    m.feed(wire(tmf))
    (mt,) = m.take_actions()
    assert isinstance(mt, ManageTask) and (mt.function, mt.ref_itt) == (P.TMF_ABORT_TASK, 0x70)
    assert a.task.aborted and m.take_output() == []
    m.complete(a.task, Result(data=bytes(512)))          # the aborted command says nothing
    assert m.take_output() == []
    m.tmf_done(mt.req, P.TMF_RSP_COMPLETE)
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_TMF_RSP and rsp.itt == 0x72 and rsp.bhs[2] == 0


def test_abort_task_of_an_unknown_lun():
    m, _, _ = machine()
    m.feed(wire(P.build_generic(P.OP_TMF_REQ, P.F_FINAL | P.TMF_ABORT_TASK, 0x73, w20=1,
                                lun=5, immediate=True)))
    (rsp,) = pdus(m)
    assert rsp.bhs[2] == P.TMF_RSP_NO_LUN and m.take_actions() == []


def tmf(fn, itt, lun=0, rtt=P.RSVD_TAG, cmdsn=1, immediate=False):
    return wire(P.build_generic(P.OP_TMF_REQ, P.F_FINAL | fn, itt, w20=rtt, cmdsn=cmdsn,
                                lun=lun, immediate=immediate))


def test_tmf_checks_before_cmdsn_ordering():
    """iscsit_handle_task_mgt_cmd: an unknown function and a TASK_REASSIGN that is not
    immediate are Rejects that take no CmdSN; a RefTaskTag other than 0xFFFFFFFF on any
    function but ABORT TASK and TASK REASSIGN is logged and ignored."""
    m, sess, log = machine()
    m.feed(tmf(0x0F, 0x90))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_BOOKMARK_NO_RESOURCES
    assert ("err", "Unknown iSCSI TMR Function: 0x0f") in log.lines
    m.feed(tmf(P.TMF_TASK_REASSIGN, 0x91, rtt=0x12))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert ("err", "Task Management Request TASK_REASSIGN not issued as immediate command, "
            "bad iSCSI Initiatorimplementation") in log.lines
    assert sess.exp_cmdsn == 1 and not m.closing   # neither took CmdSN 1
    assert ("err", "RefTaskTag should be set to 0xFFFFFFFF.") not in log.lines
    m.feed(tmf(P.TMF_LOGICAL_UNIT_RESET, 0x92, rtt=0x1234))
    (mt,) = m.take_actions()
    assert isinstance(mt, ManageTask) and sess.exp_cmdsn == 2
    assert ("err", "RefTaskTag should be set to 0xFFFFFFFF.") in log.lines
    m.feed(tmf(P.TMF_TASK_REASSIGN, 0x93, immediate=True, cmdsn=2))
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_TMF_RSP and rsp.bhs[2] == P.TMF_RSP_NOT_SUPPORTED


@pytest.mark.parametrize("fn", [P.TMF_ABORT_TASK_SET, P.TMF_CLEAR_ACA, P.TMF_CLEAR_TASK_SET,
                                P.TMF_LOGICAL_UNIT_RESET, P.TMF_TARGET_WARM_RESET,
                                P.TMF_TARGET_COLD_RESET])
def test_every_tmf_but_task_reassign_needs_its_lun(fn):
    """transport_lookup_tmr_lun runs for every function but TASK REASSIGN, before the
    function's own checks: a target reset naming a LUN the session has not mapped answers
    LUN DOES NOT EXIST, not AUTHORIZATION FAILED."""
    m, _, log = machine()
    m.feed(tmf(fn, 0x94, lun=5, immediate=True))
    (rsp,) = pdus(m)
    assert rsp.bhs[2] == P.TMF_RSP_NO_LUN and m.take_actions() == []
    assert not any("authorization failed" in line for _, line in log.lines)


@pytest.mark.parametrize("flags,itt,immediate,line", [
    (0, 0x60, False, "NopOUT Flag's, Left Most Bit not set, protocol error."),
    (P.F_FINAL, P.RSVD_TAG, False, "NOPOUT ITT is reserved, but Immediate Bit is not set, "
     "protocol error."),
])
def test_nop_out_header_refusals(flags, itt, immediate, line):
    """iscsit_setup_nop_out: a NOP-Out without the F bit, or with the reserved ITT but not
    immediate, is a Reject (PROTOCOL ERROR) before CmdSN ordering; the connection stays."""
    m, sess, log = machine()
    m.feed(wire(P.build_generic(P.OP_NOOP_OUT, flags, itt, w20=P.RSVD_TAG, cmdsn=1,
                                immediate=immediate)))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert ("err", line) in log.lines
    assert sess.exp_cmdsn == 1 and not m.closing


def test_a_data_out_without_data_is_ignored():
    """iscsit_check_dataout_hdr: a Data-Out with DataSegmentLength 0 is dropped with a
    warning before its ITT or TTT is looked at."""
    m, _, log = machine(first_burst=4096)
    m.feed(cmd(0x61, 1, write10(0, 16), 8192, write=True, data=bytes(4096)))
    (r2t,) = pdus(m)
    m.feed(wire(P.build_data_out(False, 0, 0x61, r2t.u32(20), 0, 0, 4096, 0)))
    m.feed(wire(P.build_data_out(False, 0, 0x99, 0x1234, 0, 0, 0, 0)))   # unknown ITT too
    assert log.lines.count(("warn", "DataOUT payload is ZERO, ignoring.")) == 2
    assert m.take_output() == [] and not m.closing and m.tasks[0x61].received == 4096


# -- logout and protocol errors --------------------------------------------------------------------
def test_logout_answers_then_closes():
    m, sess, _ = machine()
    m.feed(wire(P.build_generic(P.OP_LOGOUT_REQ, P.F_FINAL | P.LOGOUT_CLOSE_SESSION, 0x80,
                                cmdsn=1)))
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_LOGOUT_RSP and rsp.itt == 0x80 and rsp.bhs[2] == 0
    assert m.closing and m.close_reason is None
    m.feed(cmd(0x81, 2, read10(0, 1), 512, read=True))  # nothing after logout
    assert m.take_actions() == []


def test_a_logout_to_remove_a_connection_for_recovery_is_unsupported_at_erl_0():
    m, sess, log = machine()
    m.feed(wire(P.build_generic(P.OP_LOGOUT_REQ, P.F_FINAL | P.LOGOUT_REMOVE_CONN_FOR_RECOVERY,
                                0x82, cmdsn=1)))
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_LOGOUT_RSP and rsp.bhs[2] == P.LOGOUT_RECOVERY_UNSUPPORTED
    assert log.lines[-1] == ("err", "Received Logout Request REMOVECONNFORRECOVERY while "
                                    "ERL!=2.")
    assert not m.closing


def test_an_ahs_other_than_an_extended_cdb_is_rejected_with_its_type():
    m, sess, log = machine()
    bhs = P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, 0, 0x83, 512, 1, 0, read10(0, 1), 0)
    bhs[4] = 1  # one word of AHS: length 1, type 2 (bidirectional read length)
    m.feed(bytes(bhs) + bytes([0, 1, 2, 0]))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_CMD_NOT_SUPPORTED
    assert log.lines[-1] == ("err", "Additional Header Segment type 2 not supported!")
    assert m.take_actions() == [] and not m.closing


def test_snack_is_rejected_and_an_unknown_opcode_closes():
    m, _, log = machine()
    m.feed(wire(P.build_generic(P.OP_SNACK, P.F_FINAL, 0x90)))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert ("err", "Initiator sent SNACK request while in ErrorRecoveryLevel=0.") \
        in log.lines and not m.closing
    m.feed(wire(P.build_generic(0x1F, P.F_FINAL, 0x91)))
    (rej,) = pdus(m)
    assert rej.bhs[2] == P.REASON_CMD_NOT_SUPPORTED and m.closing


def test_a_header_digest_error_closes_before_anything_runs():
    m, _, log = machine(header_digest=True)
    bhs = bytes(P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, 0, 1, 512, 1, 0, read10(0, 1), 0))
    m.feed(bhs + b"\0\0\0\0")
    assert m.closing and m.take_actions() == []
    assert ("err", "Got unknown iSCSI OpCode: 0xff") in log.lines


def test_a_header_digest_error_counts_in_the_session_not_as_a_timeout():
    m, sess, _ = machine(header_digest=True)
    bhs = bytes(P.build_scsi_cmd(P.F_FINAL | P.CMD_READ, 0, 1, 512, 1, 0, read10(0, 1), 0))
    m.feed(bhs + b"\0\0\0\0")
    assert m.closing and sess.conn_digest_errors == 1
    assert sess.conn_timeout_errors == 0 and sess.cmd_pdus == 0  # never parsed as a command
    assert not hasattr(sess.tpg, "timed_out")


@pytest.mark.parametrize("pdu,params,reason,line", [
    (cmd(0x50, 1, read10(0, 1), 512, read=True, final=False), {}, P.REASON_BOOKMARK_INVALID,
     "ISCSI_FLAG_CMD_WRITE & ISCSI_FLAG_CMD_FINAL not set. Bad iSCSI Initiator."),
    (cmd(0x51, 1, read10(0, 1), 512), {}, P.REASON_BOOKMARK_INVALID,
     "ISCSI_FLAG_CMD_READ and/or ISCSI_FLAG_CMD_WRITE MUST be set if Expected Data Transfer "
     "Length is not 0. Bad iSCSI Initiator"),
    (cmd(0x52, 1, write10(0, 1), 512, write=True, data=bytes(512)), {"immediate_data": False},
     P.REASON_PROTOCOL_ERROR, "ImmediateData=No but DataSegmentLength=512, protocol error."),
    (cmd(0x53, 1, write10(0, 1), 512, write=True, data=bytes(512), final=False), {},
     P.REASON_PROTOCOL_ERROR, "Expected Data Transfer Length and Length of Immediate Data "
     "are the same, but ISCSI_FLAG_CMD_FINAL bit is not set protocol error"),
    # the kernel prints EDTL from the header as it lies in memory: 512 reads as 131072
    (cmd(0x54, 1, write10(0, 2), 512, write=True, data=bytes(1024)), {},
     P.REASON_PROTOCOL_ERROR, "DataSegmentLength: 1024 is greater than EDTL: 131072, "
     "protocol error."),
])
def test_scsi_command_header_refusals_log_the_kernels_line(pdu, params, reason, line):
    """iscsit_setup_scsi_cmd: each refusal is a Reject with its reason and its log line,
    and the command runs nowhere."""
    m, sess, log = machine(**params)
    m.feed(pdu)
    rej, *rest = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == reason
    assert ("err", line) in log.lines
    assert m.take_actions() == [] and m.tasks == {}
    # refused before its data segment was read: the segment (zeros) is parsed as NOP-Outs
    # without the F bit, each rejected
    dlen = int.from_bytes(pdu[5:8], "big")
    assert len(rest) == dlen // 48 and all(r.bhs[2] == P.REASON_PROTOCOL_ERROR
                                           for r in rest)


def test_read_or_write_bits_with_edtl_0_are_fixed_up_with_a_warning():
    m, _, log = machine()
    m.feed(cmd(0x55, 1, bytes(6), 0, read=True))     # TEST UNIT READY with R set
    (a,) = executes(m)
    assert a.kw["data_length"] == 0 and not a.task.read and not a.task.write
    assert ("warn", "ISCSI_FLAG_CMD_READ or ISCSI_FLAG_CMD_WRITE set when Expected Data "
            "Transfer Length is 0 for CDB: 0x00, Fixing up flags") in log.lines


def test_session_counters_count_data_out_not_immediate_data():
    """iscsi_sess_stats as the kernel counts: every SCSI Command PDU (a rejected one too),
    SCSI Response PDUs (not a status collapsed into Data-In), Data-In payload, and only
    Data-Out payload as received data (iscsit_check_dataout_hdr), not immediate data."""
    m, sess, _ = machine(first_burst=4096)
    data = bytes(8192)
    m.feed(cmd(0x40, 1, write10(0, 16), 8192, write=True, data=data[:4096]))
    (r2t,) = pdus(m)
    assert sess.rx_data_octets == 0 and sess.cmd_pdus == 1
    m.feed(wire(P.build_data_out(True, 0, 0x40, r2t.u32(20), 0, 0, 4096, 4096), data[4096:]))
    assert sess.rx_data_octets == 4096
    (a,) = executes(m)
    m.complete(a.task, Result())
    m.feed(cmd(0x41, 2, read10(0, 1), 512, read=True))
    (a,) = executes(m)
    m.complete(a.task, Result(data=bytes(512)))          # status rides on the Data-In
    (din,) = pdus(m)[-1:]
    assert din.opcode == P.OP_DATA_IN
    assert (sess.cmd_pdus, sess.rsp_pdus, sess.tx_data_octets) == (2, 1, 512)
    m.feed(cmd(0x42, 3, read10(0, 1), 512, read=True, write=True))   # bidirectional
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and sess.cmd_pdus == 3 and sess.rsp_pdus == 1


def test_an_oversized_ping_is_rejected_and_its_data_is_parsed_next():
    """iscsit_setup_nop_out refuses the ping before reading its data: a Reject, the line,
    and the bytes after the header are the next PDU (a ping here, answered)."""
    m, _, log = machine(max_recv_dsl=8192)
    m.feed(bytes(P.build_generic(P.OP_NOOP_OUT, P.F_FINAL, 0x92, w20=P.RSVD_TAG,
                                 dlength=65536)) + ping(0x93))
    rej, nopin = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x93) and not m.closing
    assert log.lines[-1] == ("err", "NOPOUT Ping Data DataSegmentLength: 65536 is greater "
                                    "than MaxXmitDataSegmentLength: 8192, protocol error.")


@pytest.mark.parametrize("size", [1, 48, 4096])
def test_byte_by_byte_or_in_chunks_the_same_pdus(size):
    m, _, _ = machine(max_burst=65536, first_burst=8192, max_recv_dsl=65536)
    data = bytes(range(256)) * 64
    stream = cmd(0xA0, 1, write10(0, 32), 16384, write=True, data=data[:8192])
    m.feed(stream)
    (r2t,) = pdus(m)
    stream = wire(P.build_data_out(True, 0, 0xA0, r2t.u32(20), 0, 0, 8192, 8192), data[8192:])
    stream += cmd(0xA1, 2, read10(0, 1), 512, read=True)
    for i in range(0, len(stream), size):
        m.feed(stream[i:i + size])
    acts = executes(m)
    assert [a.task.itt for a in acts] == [0xA0, 0xA1] and bytes(acts[0].args[3]) == data


def _r2t_write(m, itt=0x50, edtl=16384):
    """A WRITE(10) of ``edtl`` bytes with no immediate data: its first R2T's TTT."""
    m.feed(cmd(itt, 1, write10(0, edtl // 512), edtl, write=True))
    (r2t,) = pdus(m)
    assert (r2t.opcode, r2t.u32(40), r2t.u32(44)) == (P.OP_R2T, 0, min(edtl, 8192))
    return r2t.u32(20)


def _data_out(itt, ttt, datasn, offset, n, final=True):
    return wire(P.build_data_out(final, 0, itt, ttt, 0, datasn, offset, n), bytes(n))


# iscsit_check_pre_dataout with DataSequenceInOrder=Yes and DataPDUInOrder=Yes: what it
# refuses, with the kernel's lines (MaxBurstLength 8192, FirstBurstLength 4096)
@pytest.mark.parametrize("pdu, lines, why", [
    (_data_out(0x50, 0, 0, 512, 4096, final=False),  # not where the data stands
     ["Command ITT: 0x50000000, received offset 512 different than expected 0."],
     "Unable to perform within-command recovery while ERL=0."),
    (_data_out(0x50, 0, 0, 0, 4096, final=True),  # F before the burst's end
     [], "Command ITT: 0x50000000 set ISCSI_FLAG_CMD_FINAL before end of DataOUT sequence, "
         "protocol error."),
    (_data_out(0x50, 0, 0, 0, 8192, final=False),  # a whole burst without F
     [], "Command ITT: 0x50000000 reached MaxBurstLength: 8192, but ISCSI_FLAG_CMD_FINAL is "
         "not set, protocol error."),
])
def test_data_out_sequence_errors_refuse_the_header(pdu, lines, why):
    """Each fails iscsit_check_pre_dataout (DATAOUT_CANNOT_RECOVER): the lines, nothing
    received, and the payload (zeros here) parsed as what follows."""
    m, sess, log = machine(max_burst=8192, first_burst=4096)
    _r2t_write(m)
    m.feed(pdu)
    i = log.lines.index(("err", why))
    assert log.lines[i - len(lines):i] == [("err", x) for x in lines]
    assert not m.closing and m.take_actions() == [] and m.tasks[0x50].received == 0


def test_data_out_beyond_maxburstlength_is_outside_the_sequence():
    """The sequence's offsets are checked before the burst's length: a PDU that would
    overrun MaxBurstLength is dumped as outside the sequence."""
    m, sess, log = machine(max_burst=8192, first_burst=4096, max_recv_dsl=16384)
    _r2t_write(m)
    m.feed(_data_out(0x50, 0, 0, 0, 4096, final=False))
    m.feed(_data_out(0x50, 0, 1, 4096, 8192))
    assert log.lines[-1] == ("err", "Command ITT: 0x50000000 with Offset: 4096, Length: 8192 "
                                    "outside of Sequence 0:8192 while DataSequenceInOrder=Yes.")
    assert not m.closing and m.tasks[0x50].received == 4096


def test_data_out_outside_the_sequence_is_dumped_and_the_connection_stays():
    m, sess, log = machine(max_burst=8192, first_burst=4096)
    ttt = _r2t_write(m)
    m.feed(_data_out(0x50, ttt, 0, 8192, 4096))  # the second burst's offsets, not asked yet
    assert ("err", "Command ITT: 0x50000000 with Offset: 8192, Length: 4096 outside of "
            "Sequence 0:8192 while DataSequenceInOrder=Yes.") == log.lines[-1]
    assert not m.closing and pdus(m) == [] and m.tasks[0x50].received == 0


def test_the_target_transfer_tag_of_in_order_data_is_not_checked():
    """The kernel finds a Data-Out's place by its offset (iscsit_get_r2t_for_eos), not by
    its TTT: two bursts with a made-up TTT complete the command."""
    m, sess, log = machine(max_burst=8192, first_burst=4096)
    _r2t_write(m)
    m.feed(_data_out(0x50, 0x1234, 0, 0, 8192))
    (r2t,) = pdus(m)
    assert (r2t.opcode, r2t.u32(36), r2t.u32(40), r2t.u32(44)) == (P.OP_R2T, 1, 8192, 8192)
    m.feed(_data_out(0x50, 0x1234, 0, 8192, 8192))
    (a,) = m.take_actions()
    assert a.task.itt == 0x50 and bytes(a.task.data_out()) == bytes(16384)
    assert not [x for x in log.lines if x[0] == "err"]


def test_data_out_after_all_the_data_is_dumped_as_an_unknown_itt():
    """iscsit_find_cmd_from_itt_or_dump skips a command that has all its data: a Data-Out
    for it is dumped as one for an ITT nobody uses, and nothing changes."""
    m, sess, log = machine(max_burst=8192, first_burst=4096)
    m.feed(cmd(0x51, 1, write10(0, 8), 4096, write=True, data=bytes(4096)))
    rx = sess.rx_data_octets
    m.feed(_data_out(0x51, P.RSVD_TAG, 0, 0, 4096))
    assert log.lines[-1] == ("err", "Unable to locate ITT: 0x51000000 on CID: 0, dumping "
                                    "payload")
    assert not m.closing and pdus(m) == [] and sess.rx_data_octets == rx
    assert len(m.take_actions()) == 1  # the command alone


@pytest.mark.parametrize("imm, n, final, why, cc", [
    (1024, 4096, True, "Command ITT: 0x52000000 with Offset: 1024, Length: 4096 outside of "
                       "Unsolicited Sequence 1024:4096 while DataSequenceInOrder=Yes.", False),
    (1024, 2048, True, "Unsolicited non-immediate data received 3072 does not equal "
                       "FirstBurstLength: 4096, and does not equal ExpXferLen 16384.", True),
    (1024, 3072, False, "Command ITT: 0x52000000 reached FirstBurstLength: 4096, but "
                        "ISCSI_FLAG_CMD_FINAL is not set. protocol error.", False),
])
def test_unsolicited_data_out_errors_refuse_the_header(imm, n, final, why, cc):
    """The unsolicited burst's checks: the line; a wrong amount of data also ends the
    command in CHECK CONDITION (ABORTED COMMAND, NOT ENOUGH UNSOLICITED DATA)."""
    m, sess, log = machine(max_burst=8192, first_burst=4096, initial_r2t=False)
    m.feed(cmd(0x52, 1, write10(0, 32), 16384, write=True, data=bytes(imm), final=False))
    m.feed(wire(P.build_data_out(final, 0, 0x52, P.RSVD_TAG, 0, 0, imm, 48), ping(0x79))
           if n == 48 else _data_out(0x52, P.RSVD_TAG, 0, imm, n, final=final))
    assert ("err", why) in log.lines and not m.closing and m.take_actions() == []
    rsps = [x for x in pdus(m) if x.opcode == P.OP_SCSI_RSP]
    if cc:
        (rsp,) = rsps
        assert (rsp.itt, rsp.bhs[3]) == (0x52, 0x02) and 0x52 not in m.tasks
        assert (rsp.data[2 + 2] & 0x0F, rsp.data[2 + 12], rsp.data[2 + 13]) == (0x0B, 0x0C, 0x0D)
    else:
        assert rsps == [] and m.tasks[0x52].received == imm


def test_unsolicited_data_with_initialr2t_yes_ends_the_command():
    """Unsolicited Data-Out while InitialR2T=Yes: the line, CHECK CONDITION (ILLEGAL
    REQUEST, UNEXPECTED UNSOLICITED DATA) for the command, the payload parsed next."""
    m, sess, log = machine(max_burst=8192, first_burst=4096, initial_r2t=True)
    m.feed(cmd(0x53, 1, write10(0, 32), 16384, write=True, final=False))
    assert pdus(m) == []
    m.feed(wire(P.build_data_out(True, 0, 0x53, P.RSVD_TAG, 0, 0, 0, 48), ping(0x7A)))
    rsp, nopin = pdus(m)
    assert log.lines[-1] == ("err", "Received unexpected unsolicited data while "
                                    "InitialR2T=Yes, protocol error.")
    assert (rsp.opcode, rsp.itt, rsp.bhs[3]) == (P.OP_SCSI_RSP, 0x53, 0x02)
    assert (rsp.data[2 + 2] & 0x0F, rsp.data[2 + 12], rsp.data[2 + 13]) == (0x05, 0x0C, 0x0C)
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x7A) and not m.closing


def _text(itt, data, final=True, cont=False, ttt=P.RSVD_TAG):
    flags = (P.F_FINAL if final else 0) | (P.TEXT_CONTINUE if cont else 0)
    return wire(P.build_generic(P.OP_TEXT_REQ | P.OP_IMMEDIATE, flags, itt, w20=ttt, cmdsn=1,
                                dlength=len(data)), data)


@pytest.mark.parametrize("data, why", [
    (b"", "Unable to locate text_in buffer for sendtargets discovery"),
    (b"TargetAlias=x\0", "Received Text Data that is not SendTargets, cannot continue."),
    (b"SendTargets=\0", "Unable to locate valid SendTargets= value"),
    (b"SendTargets=naa.5001\0", "Unable to locate valid SendTargets=naa.5001 value"),
    # the kernel makes the last byte a NUL: without one, "All" loses its "l"
    (b"SendTargets=All", "Unable to locate valid SendTargets=Al value"),
])
def test_a_text_request_that_is_not_sendtargets_is_rejected_and_closes(data, why):
    """iscsit_process_text_cmd: anything but SendTargets=All or =<iqn./eui. name> is a
    Reject (PROTOCOL ERROR) with the kernel's line, and the connection goes."""
    m, _, log = machine()
    m.feed(_text(0x60, data))
    (rej,) = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_PROTOCOL_ERROR
    assert m.closing and m.close_reason == why and ("err", why) in log.lines


@pytest.mark.parametrize("final, cont", [(False, False), (True, True)])
def test_a_multi_sequence_text_request_is_rejected_before_its_data(final, cont):
    """iscsit_setup_text_cmd refuses a Text request without F or with C before reading
    its data: a Reject (COMMAND NOT SUPPORTED), and the data is parsed as what follows."""
    m, _, log = machine()
    m.feed(_text(0x61, ping(0x62), final=final, cont=cont))
    rej, nopin = pdus(m)
    assert rej.opcode == P.OP_REJECT and rej.bhs[2] == P.REASON_CMD_NOT_SUPPORTED
    assert (nopin.opcode, nopin.itt) == (P.OP_NOOP_IN, 0x62) and not m.closing
    assert ("err", "Multi sequence text commands currently not supported") in log.lines


def test_sendtargets_all_is_answered():
    m, _, log = machine()
    m._discovery = lambda ini, local: [("iqn.2026-12.test:t", ["127.0.0.1:3260,1"])]
    m.sess.target_name = "iqn.2026-12.test:t"
    m.feed(_text(0x63, b"SendTargets=All\0"))
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_TEXT_RSP and not m.closing
    assert rsp.data == b"TargetName=iqn.2026-12.test:t\0TargetAddress=127.0.0.1:3260,1\0"


@pytest.mark.parametrize("op", [P.OP_TMF_REQ, P.OP_LOGOUT_REQ, P.OP_SNACK])
def test_a_data_segment_length_on_a_request_without_data_is_ignored(op):
    """Task management, Logout and SNACK handlers read no data segment: the bytes after
    the header are the next PDU (a ping here, answered), whatever DataSegmentLength says."""
    m, _, log = machine()
    flags = P.F_FINAL | {P.OP_TMF_REQ: P.TMF_ABORT_TASK_SET,  # a logout that stays:
                         P.OP_LOGOUT_REQ: P.LOGOUT_REMOVE_CONN_FOR_RECOVERY}.get(op, 0)
    bhs = P.build_generic(op | P.OP_IMMEDIATE, flags, 0x64, w20=P.RSVD_TAG, cmdsn=1,
                          dlength=48)
    m.feed(bytes(bhs) + ping(0x65))
    out = pdus(m)
    assert (out[-1].opcode, out[-1].itt) == (P.OP_NOOP_IN, 0x65)


def _abort_task(itt, rtt, ref_cmdsn):
    bhs = P.build_generic(P.OP_TMF_REQ | P.OP_IMMEDIATE, P.F_FINAL | P.TMF_ABORT_TASK, itt,
                          w20=rtt, cmdsn=2)
    bhs[32:36] = ref_cmdsn.to_bytes(4, "big")
    return bytes(bhs)


def test_abort_task_lines_print_the_tags_as_they_came_off_the_wire():
    """iscsit_tmr_abort_task's lines print the RefTaskTag (itt_t) and RefCmdSN (__be32)
    unconverted: big-endian bytes read as a little-endian number."""
    m, sess, log = machine(max_burst=8192, first_burst=4096)
    m.feed(cmd(0x70, 1, write10(0, 16), 8192, write=True))  # waits for its Data-Out
    pdus(m)
    m.feed(_abort_task(0x71, 0x99, 2))
    assert log.lines[-2:] == [("err", "Unable to locate ITT: 0x99000000 on CID: 0"),
                              ("err", "Unable to locate RefTaskTag: 0x99000000 on CID: 0.")]
    (rsp,) = pdus(m)
    assert rsp.opcode == P.OP_TMF_RSP and rsp.bhs[2] == P.TMF_RSP_COMPLETE  # in the window
    m.feed(_abort_task(0x72, 0x70, 5))
    assert log.lines[-1] == ("err", "RefCmdSN 0x05000000 does not equal task's CmdSN "
                                    "0x00000001. Rejecting ABORT_TASK.")
    (rsp,) = pdus(m)
    assert rsp.bhs[2] == P.TMF_RSP_REJECTED and 0x70 in m.tasks
