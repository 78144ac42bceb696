"""`simfs trace`: every operation on a mounted tree, live, with who did it and what came
back; SCSI commands with --scsi; the hub's cost when nobody listens is one attribute."""
from __future__ import annotations

import json
import re

import pytest
from helpers import mount, umount, sh
from tracing import Client

from simfs.testing import Sim
from simfs.daemon.trace import TraceHub, opcode_name, sense_text


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_scripted_session_order_bytes_errno(mnt, tmp_path):
    c = Client(["trace", mnt.root, "--json"])
    C = mnt.core
    mnt.ok(f"mkdir -p {C}/rd_mcp_0/rd0")
    mnt.ok(f"printf 'rd_pages=64' > {C}/rd_mcp_0/rd0/control")
    mnt.ok(f"echo 1 > {C}/rd_mcp_0/rd0/enable")
    assert sh(f"echo 2 > {C}/rd_mcp_0/rd0/enable").returncode != 0
    assert sh(f"printf 'x\\001\\n' > {C}/rd_mcp_0/rd0/attrib/emulate_tpu").returncode != 0
    mnt.ok(f"cat {C}/rd_mcp_0/rd0/info")
    mnt.ok(f"mkdir -p {mnt.root}/target/loopback/naa.5001405aaaaaaaa1/tpgt_1/lun/lun_0")
    mnt.ok(f"ln -s {C}/rd_mcp_0/rd0 {mnt.root}/target/loopback/naa.5001405aaaaaaaa1/tpgt_1"
           "/lun/lun_0/v")
    mnt.ok(f"rm {mnt.root}/target/loopback/naa.5001405aaaaaaaa1/tpgt_1/lun/lun_0/v")
    assert sh(f"rmdir {C}/rd_mcp_0/rd0/attrib").returncode != 0
    evs = _events(c.stop())
    got = [(e["op"], e["path"], e["result"]) for e in evs]
    dev = "target/core/rd_mcp_0/rd0"
    lun = "target/loopback/naa.5001405aaaaaaaa1/tpgt_1/lun/lun_0"
    want = [("mkdir", "target/core/rd_mcp_0", "ok"), ("mkdir", dev, "ok"),
            ("write", f"{dev}/control", "ok"), ("write", f"{dev}/enable", "ok"),
            ("write", f"{dev}/enable", "EINVAL"), ("write", f"{dev}/attrib/emulate_tpu", "EINVAL"),
            ("read", f"{dev}/info", "ok")]
    assert got[:len(want)] == want
    rest = got[len(want):]
    assert ("symlink", f"{lun}/v", "ok") in rest and ("unlink", f"{lun}/v", "ok") in rest
    assert rest.index(("symlink", f"{lun}/v", "ok")) < rest.index(("unlink", f"{lun}/v", "ok"))
    assert rest[-1] == ("rmdir", f"{dev}/attrib", "EPERM")
    # exact bytes, both ways a shell writes them
    assert evs[2]["data"] == "rd_pages=64" and evs[3]["data"] == "1\n"
    assert evs[5]["data"] == "x\x01\n"
    # the kernel's reason for each refusal, as dmesg has it
    assert evs[4]["reason"] == 'For dev_enable ops, only valid value is "1"'
    assert evs[4]["reason"] in mnt.dmesg()
    assert "default group" in evs[-1]["reason"]
    # who: the process that made the request, by pid and /proc/<pid>/comm
    assert evs[0]["comm"] == "mkdir" and evs[3]["comm"] == "bash"
    assert evs[6]["comm"] == "cat" and evs[6]["len"] > 0
    assert all(e["pid"] > 0 for e in evs)
    link = next(e for e in evs if e["op"] == "symlink")
    assert link["target"] == dev and link["comm"] == "ln"
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)


def test_text_lines_and_filters(mnt):
    all_ = Client(["trace", mnt.root])
    only = Client(["trace", mnt.root, "--path", f"{mnt.core}/rd_mcp_0/rd0/attrib",
                   "--comm", "bash"])
    mnt.ok(f"mkdir -p {mnt.core}/rd_mcp_0/rd0")
    mnt.ok(f"echo rd_pages=64 > {mnt.core}/rd_mcp_0/rd0/control")
    mnt.ok(f"echo 1 > {mnt.core}/rd_mcp_0/rd0/enable")
    mnt.ok(f"echo 16 > {mnt.core}/rd_mcp_0/rd0/attrib/queue_depth")
    sh(f"echo 0 > {mnt.core}/rd_mcp_0/rd0/attrib/block_size")
    mnt.ok(f"cat {mnt.core}/rd_mcp_0/rd0/attrib/queue_depth")  # comm cat: filtered out
    text = all_.stop().splitlines()
    filtered = only.stop().splitlines()
    assert re.match(r"\d\d:\d\d:\d\d\.\d{6} \d+\(mkdir\) +mkdir +target/core/rd_mcp_0 = ok$",
                    text[0]), text[0]
    assert text[4].endswith('write   target/core/rd_mcp_0/rd0/attrib/queue_depth "16\\n" = ok')
    assert re.search(r'block_size "0\\n" = EINVAL \(.+\)$', text[5]), text[5]
    assert len(filtered) == 2 and "queue_depth" in filtered[0] and "block_size" in filtered[1]


def test_scsi_commands(mnt):
    mnt.ok(f"mkdir -p {mnt.core}/rd_mcp_0/rd0")
    mnt.ok(f"echo rd_pages=64 > {mnt.core}/rd_mcp_0/rd0/control")
    mnt.ok(f"echo 1 > {mnt.core}/rd_mcp_0/rd0/enable")
    quiet = Client(["trace", mnt.root, "--json"])
    c = Client(["trace", mnt.root, "--scsi", "--json"])
    mnt.ok(f"simfs scsi {mnt.root} rd_mcp_0/rd0 -I iqn.1994-05.com.example:a inquiry")
    sh(f"simfs scsi {mnt.root} rd_mcp_0/rd0 read 0x7fffffff")
    mnt.ok(f"simfs scsi {mnt.root} rd_mcp_0/rd0 persist --register --sa-key 0x1")
    evs = [e for e in _events(c.stop()) if e["op"] == "scsi"]
    assert [e["opname"] for e in evs] == ["INQUIRY", "READ_16",
                                          "PERSISTENT_RESERVE_OUT/REGISTER"]
    assert evs[0]["initiator"] == "iqn.1994-05.com.example:a"
    assert evs[0]["result"] == "GOOD" and evs[0]["device"] == "rd_mcp_0/rd0"
    assert evs[1]["result"] == "CHECK_CONDITION"
    assert evs[1]["sense_text"] == "ILLEGAL REQUEST 21h/00h"  # LBA out of range
    assert not [e for e in _events(quiet.stop()) if e["op"] == "scsi"]


def test_trace_log_from_the_first_operation(tmp_path, monkeypatch):
    """SIMFS_TRACE_LOG: a mount traces into a file from its start (for `simfs run`)."""
    log = tmp_path / "trace.jsonl"
    monkeypatch.setenv("SIMFS_TRACE_LOG", str(log))
    m = mount("modern")
    try:
        m.ok(f"mkdir -p {m.core}/rd_mcp_0/rd0")
    finally:
        umount(m)
    r = sh(f"{' '.join(__import__('tracing').SIMFS)} trace --input {log}")
    assert r.returncode == 0, r.stderr
    assert "mkdir   target/core/rd_mcp_0/rd0 = ok" in r.stdout


def test_hub_is_one_attribute_when_idle(tmp_path):
    sim = Sim(tmp_path)
    hub = TraceHub(comm_of=lambda pid: "x")
    hub.attach(tree=sim.tree, engine=sim.engine)
    assert sim.tree.trace is None and sim.engine.trace is None
    sub = hub.subscribe()
    assert sim.tree.trace is hub and sim.engine.trace is None  # SCSI only when asked
    scsi = hub.subscribe(scsi=True)
    assert sim.engine.trace is hub
    sim.mkdir("/target/core/rd_mcp_0")
    ev = sub.get(timeout=1)
    assert (ev["op"], ev["path"], ev["result"]) == ("mkdir", "target/core/rd_mcp_0", "ok")
    hub.unsubscribe(sub)
    hub.unsubscribe(scsi)
    assert sim.tree.trace is None and sim.engine.trace is None
    sim.close()


@pytest.mark.parametrize("cdb,name", [
    (b"\x12\x00\x00\x00\xff\x00", "INQUIRY"),
    (b"\x5f\x04" + bytes(8), "PERSISTENT_RESERVE_OUT/PREEMPT"),
    (b"\x9e\x10" + bytes(14), "READ_CAPACITY_16"),
    (b"\xa3\x0a" + bytes(10), "REPORT_TARGET_PORT_GROUPS"),
])
def test_opcode_names(cdb, name):
    assert opcode_name(cdb) == name


def test_sense_text():
    fixed = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2A, 0x06])
    assert sense_text(fixed) == "UNIT ATTENTION 2ah/06h"
    assert sense_text(bytes([0x72, 0x05, 0x24, 0x00])) == "ILLEGAL REQUEST 24h/00h"
