"""A small, libiscsi-free iSCSI initiator for the WRITE half of the data-plane benchmark.

libiscsi's ``iscsi-perf`` (what bench/dataplane.py uses for READs) only reads. This one
logs in (no authentication, no digests), then keeps ``qd`` WRITE(16) commands in flight
for ``seconds``, sequential or random, and prints one JSON object: IOPS and MB/s. It is
the same initiator for simfs and for tgt, so the ratio is fair even though the initiator's
own Python cost is part of both figures (at 4 KiB it is the larger part: see
docs/performance.md).

    python3 bench/iscsi_ini.py HOST PORT TARGET_IQN LUN --blocks 8 --qd 32 --seconds 5
                               [--random] [--block-size 512] [--read]

Writes go as the RFC allows with the keys it offers: ImmediateData=Yes, InitialR2T=Yes,
so the first ``min(FirstBurstLength, target's MaxRecvDataSegmentLength)`` bytes go in the
command PDU and the rest answer R2Ts (Data-Out PDUs of at most the target's
MaxRecvDataSegmentLength). ``--read`` does READ(16) the same way (a check of the tool
against iscsi-perf, not used by the bench).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time

OP_NOOP_OUT, OP_SCSI_CMD, OP_LOGIN, OP_DATA_OUT = 0x00, 0x01, 0x03, 0x05
OP_NOOP_IN, OP_SCSI_RSP, OP_LOGIN_RSP, OP_DATA_IN, OP_R2T, OP_ASYNC, OP_REJECT = \
    0x20, 0x21, 0x23, 0x25, 0x31, 0x32, 0x3F
RSVD = 0xFFFFFFFF


def _text(keys: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys)


def _parse_text(data: bytes) -> dict:
    out = {}
    for kv in data.split(b"\0"):
        if b"=" in kv:
            k, v = kv.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def _pad(n: int) -> bytes:
    return b"\0" * (-n & 3)


class Initiator:
    def __init__(self, host: str, port: int, target: str, lun: int,
                 name: str = "iqn.2026-12.org.simfs:bench-ini"):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=1 << 20)
        self.target, self.name = target, name
        self.lun_bytes = struct.pack(">HHHH", (0x4000 | lun) if lun > 255 else lun, 0, 0, 0)
        self.cmdsn = 1
        self.exp_statsn = 0
        self.max_cmdsn = 1
        self.itt = 0
        self.keys: dict = {}

    # -- wire ----------------------------------------------------------------------------
    def _send(self, bhs: bytes, data=b"") -> None:
        if data:
            self.sock.sendmsg([bhs, data, _pad(len(data))])
        else:
            self.sock.sendall(bhs)

    def _recv(self) -> tuple[bytes, bytes]:
        bhs = self.rf.read(48)
        if len(bhs) < 48:
            raise EOFError("target closed the connection")
        ahs = bhs[4] * 4
        if ahs:
            self.rf.read(ahs)
        dlen = (bhs[5] << 16) | (bhs[6] << 8) | bhs[7]
        data = b""
        if dlen:
            data = self.rf.read(dlen + (-dlen & 3))[:dlen]
        return bhs, data

    # -- login ---------------------------------------------------------------------------
    def login(self, extra: list[tuple[str, str]] | None = None) -> dict:
        isid = b"\x80\x00\x00\x00\x42\x01"
        stage = [(0, 1, [("InitiatorName", self.name), ("TargetName", self.target),
                         ("SessionType", "Normal"), ("AuthMethod", "None")]),
                 (1, 3, [("HeaderDigest", "None"), ("DataDigest", "None"),
                         ("MaxRecvDataSegmentLength", "262144"), ("ImmediateData", "Yes"),
                         ("InitialR2T", "Yes"), ("MaxBurstLength", "1048576"),
                         ("FirstBurstLength", "65536"), ("MaxOutstandingR2T", "1"),
                         ("ErrorRecoveryLevel", "0"), ("DataPDUInOrder", "Yes"),
                         ("DataSequenceInOrder", "Yes"), ("MaxConnections", "1"),
                         ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "0")]
                  + (extra or []))]
        tsih = 0
        for csg, nsg, keys in stage:
            data = _text(keys)
            for _ in range(8):
                flags = 0x80 | (csg << 2) | nsg
                bhs = bytearray(48)
                bhs[0] = OP_LOGIN | 0x40
                bhs[1] = flags
                bhs[5:8] = len(data).to_bytes(3, "big")
                bhs[8:14] = isid
                bhs[14:16] = tsih.to_bytes(2, "big")
                struct.pack_into(">IHxxII", bhs, 16, 0x1000, 0, self.cmdsn, self.exp_statsn)
                self._send(bytes(bhs), data)
                rsp, rdata = self._recv()
                if rsp[0] & 0x3F != OP_LOGIN_RSP or rsp[36] != 0:
                    raise RuntimeError(f"login failed: class {rsp[36]} detail {rsp[37]}")
                self.keys.update(_parse_text(rdata))
                tsih = int.from_bytes(rsp[14:16], "big")
                self.exp_statsn = struct.unpack_from(">I", rsp, 24)[0] + 1
                self.max_cmdsn = struct.unpack_from(">I", rsp, 32)[0]
                if rsp[1] & 0x80 and (rsp[1] & 3) == nsg:
                    break
                data = b""  # the target wants another round: nothing more to say
            else:
                raise RuntimeError("login did not converge")
        return self.keys

    def tur(self) -> int:
        """TEST UNIT READY; returns the status (clears the power-on unit attention)."""
        self.itt = (self.itt + 1) & 0x7FFFFFFF
        bhs = bytearray(48)
        bhs[0], bhs[1] = OP_SCSI_CMD, 0x80
        bhs[8:16] = self.lun_bytes
        struct.pack_into(">IIII", bhs, 16, self.itt, 0, self.cmdsn, self.exp_statsn)
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        self._send(bytes(bhs))
        while True:
            rsp, _ = self._recv()
            if rsp[0] & 0x3F == OP_SCSI_RSP:
                self.exp_statsn = (struct.unpack_from(">I", rsp, 24)[0] + 1) & 0xFFFFFFFF
                self.max_cmdsn = struct.unpack_from(">I", rsp, 32)[0]
                return rsp[3]

    # -- the loop ------------------------------------------------------------------------
    def run(self, blocks: int, qd: int, seconds: float, rand: bool, read: bool,
            block_size: int = 512, capacity_blocks: int = 0) -> dict:
        k = self.keys
        for _ in range(4):
            if self.tur() == 0:
                break
        t_mrdsl = int(k.get("MaxRecvDataSegmentLength", "8192"))
        first_burst = min(int(k.get("FirstBurstLength", "65536")), 65536)
        immediate = k.get("ImmediateData", "Yes") == "Yes"
        nbytes = blocks * block_size
        payload = memoryview(bytes(range(256)) * (nbytes // 256 + 1))[:nbytes]
        imm = min(nbytes, first_burst, t_mrdsl) if (immediate and not read) else 0
        span = max(1, (capacity_blocks or (256 << 20) // block_size) // blocks)
        rng = random.Random(1)
        cmd = struct.Struct(">BBxxB3s8sIIII")
        dout = struct.Struct(">BBxxB3s8sIIIIIII4x")
        outstanding: set = set()
        seq = 0
        done = 0
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        stopping = False
        while True:
            # fill the queue, within the target's CmdSN window
            while (not stopping and len(outstanding) < qd
                   and ((self.max_cmdsn - self.cmdsn) & 0xFFFFFFFF) < 0x80000000):
                lba = (rng.randrange(span) if rand else seq % span) * blocks
                seq += 1
                self.itt = (self.itt + 1) & 0x7FFFFFFF
                itt = self.itt
                opc = 0x88 if read else 0x8A
                cdb = struct.pack(">BBQIBB", opc, 0, lba, blocks, 0, 0)
                dl = imm
                flags = 0x80 | (0x40 if read else 0x20)
                bhs = cmd.pack(OP_SCSI_CMD, flags, 0, dl.to_bytes(3, "big"), self.lun_bytes,
                               itt, nbytes, self.cmdsn, self.exp_statsn) + cdb
                self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
                if dl:
                    self.sock.sendmsg([bhs, payload[:dl], _pad(dl)])
                else:
                    self.sock.sendall(bhs)
                outstanding.add(itt)
            if not outstanding:
                break
            bhs, data = self._recv()
            op = bhs[0] & 0x3F
            if op == OP_SCSI_RSP or (op == OP_DATA_IN and bhs[1] & 0x01):
                itt = struct.unpack_from(">I", bhs, 16)[0]
                statsn = struct.unpack_from(">I", bhs, 24)[0]
                if bhs[3] != 0 or (op == OP_SCSI_RSP and bhs[2] != 0):
                    raise RuntimeError(f"command failed: status {bhs[3]:#x} {data[:32].hex()}")
                self.exp_statsn = (statsn + 1) & 0xFFFFFFFF
                self.max_cmdsn = struct.unpack_from(">I", bhs, 32)[0]
                outstanding.discard(itt)
                done += 1
                if not stopping and time.perf_counter() >= deadline:
                    stopping = True
                    elapsed = time.perf_counter() - t0
                    measured = done
            elif op == OP_DATA_IN:
                continue
            elif op == OP_R2T:
                itt, ttt, _, _, maxc, _, off, length = struct.unpack_from(">IIIIIIII", bhs, 16)
                self.max_cmdsn = maxc
                sn = 0
                end = off + length
                while off < end:
                    n = min(t_mrdsl, end - off)
                    h = dout.pack(OP_DATA_OUT, 0x80 if off + n >= end else 0, 0,
                                  n.to_bytes(3, "big"), self.lun_bytes, itt, ttt, 0,
                                  self.exp_statsn, 0, sn, off)
                    self.sock.sendmsg([h, payload[off:off + n], _pad(n)])
                    off += n
                    sn += 1
            elif op == OP_NOOP_IN:
                itt, ttt = struct.unpack_from(">II", bhs, 16)
                self.max_cmdsn = struct.unpack_from(">I", bhs, 32)[0]
                if ttt != RSVD:  # a ping: answer it (immediate, no CmdSN advance)
                    h = bytearray(48)
                    h[0] = OP_NOOP_OUT | 0x40
                    h[1] = 0x80
                    struct.pack_into(">IIII", h, 16, RSVD, ttt, self.cmdsn, self.exp_statsn)
                    self._send(bytes(h))
            elif op in (OP_REJECT, OP_ASYNC):
                raise RuntimeError(f"target sent opcode {op:#x}")
        return {"iops": measured / elapsed, "MBps": measured * nbytes / elapsed / 1e6,
                "commands": measured, "seconds": elapsed, "target_mrdsl": t_mrdsl,
                "immediate_bytes": imm}

    def logout(self) -> None:
        h = bytearray(48)
        h[0] = 0x06 | 0x40
        h[1] = 0x80
        struct.pack_into(">IIII", h, 16, 0x7FFFFFF0, 0, self.cmdsn, self.exp_statsn)
        try:
            self._send(bytes(h))
            self._recv()
        except (OSError, EOFError):
            pass
        self.sock.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("target")
    p.add_argument("lun", type=int)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--qd", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--random", action="store_true")
    p.add_argument("--read", action="store_true")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--capacity-blocks", type=int, default=0)
    a = p.parse_args(argv)
    ini = Initiator(a.host, a.port, a.target, a.lun)
    ini.login()
    res = ini.run(a.blocks, a.qd, a.seconds, a.random, a.read, a.block_size,
                  a.capacity_blocks)
    ini.logout()
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
