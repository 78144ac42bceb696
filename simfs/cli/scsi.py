"""``simfs scsi MOUNTPOINT HBA/DEV COMMAND ...``: send SCSI commands to a mounted device.

No network, no initiator stack: the command goes over the mount's control socket to the
daemon's engine, so the configfs files (pr/, alua/, statistics/) show its effect at once.
Results are printed decoded; ``--hex`` prints the raw data-in too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simfs.daemon import control, state
from simfs.scsi import cdbs


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (decimal, or hex as 0x..)")


def _hex(text: str) -> bytes:
    """Hex bytes as typed on a command line; spaces and colons between bytes allowed."""
    clean = text.replace(" ", "").replace(":", "")
    try:
        return bytes.fromhex(clean)
    except ValueError:
        bad = next((c for c in clean if c not in "0123456789abcdefABCDEF"), None)
        why = f"{bad!r} is not a hex digit" if bad else "an odd number of hex digits"
        raise argparse.ArgumentTypeError(
            f"{why}: give whole bytes in hex, e.g. 00ff10 "
            "(512 zero bytes: $(printf '00%.0s' $(seq 512)))") from None


#: SET TARGET PORT GROUPS states by name (SPC-4 table "Asymmetric access state"), as
#: REPORT TARGET PORT GROUPS and the alua_access_state file number them
STPG_STATES = {"active/optimized": 0x0, "ao": 0x0, "optimized": 0x0,
               "active/nonoptimized": 0x1, "active/non-optimized": 0x1, "ano": 0x1,
               "nonoptimized": 0x1, "standby": 0x2, "unavailable": 0x3, "offline": 0xE}


def _alua_state(text: str) -> int:
    name = text.strip().lower().replace("_", "/").replace(" ", "")
    if name in STPG_STATES:
        return STPG_STATES[name]
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}: 0 or active/optimized, 1 or active/nonoptimized, "
            "2 or standby, 3 or unavailable, 14 or offline") from None


def _nexus_options(p: argparse.ArgumentParser, default) -> None:
    """The options that say which I_T nexus sends the command. Given to ``simfs scsi``
    and again to each command (with no defaults there), so they may come before or
    after the command's name."""
    p.add_argument("--initiator", "-I", default=default(control.CLI_INITIATOR),
                   help="initiator port name (the I_T nexus the command comes from)")
    p.add_argument("--isid", default=default(None),
                   help="iSCSI session id (hex) of the initiator port")
    p.add_argument("--lun", type=int, default=default(None),
                   help="which exported LUN to go through (default: first)")
    p.add_argument("--port", default=default(None), metavar="FABRIC/WWN/tpgt_N/lun_M",
                   help="which target port to go through, as alua/*/members lists it")
    p.add_argument("--hex", action="store_true", default=default(False),
                   help="also print the data-in bytes in hex")


def add_parser(sub) -> None:
    p = sub.add_parser("scsi", help="send SCSI commands to a device of a mounted tree",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint")
    p.add_argument("device", help="HBA/DEVICE under target/core, e.g. rd_mcp_0/ramdisk")
    _nexus_options(p, lambda v: v)
    common = argparse.ArgumentParser(add_help=False)
    _nexus_options(common, lambda v: argparse.SUPPRESS)
    cmds = p.add_subparsers(dest="scsi_command", required=True)
    _add = cmds.add_parser

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)
    cmds.add_parser = add  # type: ignore[method-assign]

    cmds.add_parser("tur", help="TEST UNIT READY")
    q = cmds.add_parser("inquiry", help="INQUIRY (standard data or a VPD page)")
    q.add_argument("--vpd", type=_int, help="VPD page code, e.g. 0x83")
    cmds.add_parser("readcap", help="READ CAPACITY(16)")
    cmds.add_parser("sense", help="REQUEST SENSE (reports and clears a pending unit attention)")
    cmds.add_parser("luns", help="REPORT LUNS")
    r = cmds.add_parser("read", help="READ(16)")
    r.add_argument("lba", type=_int)
    r.add_argument("blocks", type=_int, nargs="?", default=1)
    r.add_argument("--out", help="write the data to this file instead of hex to stdout")
    w = cmds.add_parser("write", help="WRITE(16)")
    w.add_argument("lba", type=_int)
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=_hex, help="hex bytes (a multiple of the block size)")
    src.add_argument("--in", dest="infile", help="read the data from this file")
    w.add_argument("--fua", action="store_true")
    cmds.add_parser("sync", help="SYNCHRONIZE CACHE(16)")

    pr = cmds.add_parser("persist", help="PERSISTENT RESERVE IN/OUT")
    act = pr.add_mutually_exclusive_group(required=True)
    for name in cdbs.PR_IN_SA:
        act.add_argument(f"--{name}", dest="pr_in", action="store_const", const=name)
    for name in cdbs.PR_OUT_SA:
        if name != "register-move":
            act.add_argument(f"--{name}", dest="pr_out", action="store_const", const=name)
    pr.add_argument("--key", type=_int, default=0, help="RESERVATION KEY")
    pr.add_argument("--sa-key", type=_int, default=0, help="SERVICE ACTION RESERVATION KEY")
    pr.add_argument("--type", dest="pr_type", type=_int, default=0,
                    help="1 WE, 3 EA, 5 WE_RO, 6 EA_RO, 7 WE_AR, 8 EA_AR")
    pr.add_argument("--aptpl", action="store_true")
    pr.add_argument("--all-tg-pt", action="store_true")

    cmds.add_parser("rtpg", help="REPORT TARGET PORT GROUPS")
    st = cmds.add_parser("stpg", help="SET TARGET PORT GROUPS (explicit ALUA transition)")
    st.add_argument("--group", type=_int, required=True, help="target port group id")
    st.add_argument("--state", type=_alua_state, required=True,
                    help="0 or active/optimized, 1 or active/nonoptimized, 2 or standby, "
                    "3 or unavailable, 14 or offline")

    raw = cmds.add_parser("raw", help="any CDB, in hex")
    raw.add_argument("cdb", type=_hex, help="e.g. 12000000ff00")
    raw.add_argument("--data", type=_hex, default=b"", help="data-out, in hex")
    p.set_defaults(func=cmd_scsi)


class Unreachable(Exception):
    """The mount's daemon cannot be asked: the message says why, for the user."""


def _state_dir(a) -> Path:
    mp = state.resolve(a.mountpoint)
    rec = state.read_record(mp)
    if rec:
        return Path(rec["state_dir"])
    if not os.path.ismount(mp):
        raise Unreachable(f"{a.mountpoint} is not mounted (simfs mount {a.mountpoint} first)")
    return state.default_state_dir(mp)


def _send(a, cdb: bytes, data_out: bytes = b"") -> dict:
    sdir = _state_dir(a)
    req = {"op": "scsi", "device": a.device, "cdb": cdb.hex(), "data_out": data_out.hex(),
           "initiator": a.initiator, "isid": a.isid, "lun": a.lun}
    if a.port:
        req["port"] = a.port
    try:
        return control.request(sdir, req)
    except OSError as e:
        raise Unreachable(f"cannot reach the daemon of {a.mountpoint} "
                          f"({e.strerror or e}): is it still mounted?") from None


def cmd_scsi(a: argparse.Namespace) -> int:
    try:
        return _run(a)
    except Unreachable as e:
        print(f"simfs scsi: {e}", file=sys.stderr)
        return 1


def _run(a: argparse.Namespace) -> int:
    decode = None
    data_out = b""
    c = a.scsi_command
    if c == "tur":
        cdb = cdbs.test_unit_ready()
    elif c == "inquiry":
        cdb = cdbs.inquiry(a.vpd)
        decode = cdbs.decode_inquiry if a.vpd is None else cdbs.decode_vpd
    elif c == "readcap":
        cdb, decode = cdbs.read_capacity_16(), cdbs.decode_read_capacity_16
    elif c == "sense":
        cdb = cdbs.request_sense()
        decode = lambda d: [cdbs.decode_sense(d) or "NO SENSE"]  # noqa: E731
    elif c == "luns":
        cdb = cdbs.report_luns()
        decode = lambda d: [f"LUN {int.from_bytes(d[i:i + 2], 'big') & 0x3FFF}"  # noqa: E731
                            for i in range(8, 8 + int.from_bytes(d[:4], "big"), 8)]
    elif c == "read":
        cdb = cdbs.read_16(a.lba, a.blocks)
    elif c == "write":
        if a.data is not None:
            data_out = a.data
        else:
            try:
                data_out = Path(a.infile).read_bytes()
            except OSError as e:
                print(f"simfs scsi: cannot read {a.infile}: {e.strerror}", file=sys.stderr)
                return 2
        bs = _block_size(a)
        if bs is None:
            return 1
        if len(data_out) % bs:
            print(f"simfs scsi: {len(data_out)} bytes is not a multiple of the block size {bs}",
                  file=sys.stderr)
            return 2
        cdb = cdbs.write_16(a.lba, len(data_out) // bs, fua=a.fua)
    elif c == "sync":
        cdb = cdbs.synchronize_cache_16()
    elif c == "persist":
        if a.pr_in:
            sa = cdbs.PR_IN_SA[a.pr_in]
            cdb = cdbs.pr_in(sa)
            decode = lambda d, sa=sa: cdbs.decode_pr_in(sa, d)  # noqa: E731
        else:
            cdb, data_out = cdbs.pr_out(cdbs.PR_OUT_SA[a.pr_out], key=a.key, sa_key=a.sa_key,
                                        pr_type=a.pr_type, aptpl=a.aptpl,
                                        all_tg_pt=a.all_tg_pt)
    elif c == "rtpg":
        cdb, decode = cdbs.report_target_port_groups(), cdbs.decode_rtpg
    elif c == "stpg":
        cdb, data_out = cdbs.set_target_port_groups([(a.state, a.group)])
    else:  # raw
        cdb, data_out = a.cdb, a.data
    rep = _send(a, cdb, data_out)
    if "error" in rep:
        print(f"simfs scsi: {rep['error']}", file=sys.stderr)
        return 1
    status = rep["status"]
    data = bytes.fromhex(rep["data"])
    print(f"Status: {cdbs.STATUS_NAMES.get(status, hex(status))}")
    if rep["sense"]:
        print(f"Sense: {cdbs.decode_sense(bytes.fromhex(rep['sense']))}")
    if status == 0:
        if c == "read" and a.out:
            Path(a.out).write_bytes(data)
        elif decode is not None and data:
            for line in decode(data):
                print(line)
        elif data and c in ("read", "raw"):
            print(data.hex())
    if a.hex and data and c != "read":
        print(data.hex())
    return 0 if status == 0 else 3


def _block_size(a) -> int | None:
    rep = _send(a, cdbs.read_capacity_16())
    if "error" in rep:
        print(f"simfs scsi: {rep['error']}", file=sys.stderr)
        return None
    if rep.get("status") != 0:
        print("simfs scsi: READ CAPACITY failed: "
              + cdbs.decode_sense(bytes.fromhex(rep.get("sense", ""))), file=sys.stderr)
        return None
    return int.from_bytes(bytes.fromhex(rep["data"])[8:12], "big")
