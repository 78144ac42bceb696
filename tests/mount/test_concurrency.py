"""Concurrency: many writers at once, over a real mount and into the engine.

* Eight bash loops hammer one mount for a few seconds - attribute writes and reads, mkdir
  and rmdir of devices and HBAs, ALUA groups, a reader walking the whole tree - each
  under a timeout (a deadlock fails the test). Afterwards the tree is consistent: every
  directory lists, every readable attribute reads, every device that exists has all its
  default groups (no half-made device), and the daemon still answers.
* Eight threads submit WRITE/READ to the engine on distinct and overlapping LBAs of an
  rd_mcp and a fileio device; every block carries its LBA, writer and a CRC. No block is
  lost (each thread's private blocks read back exactly as last written) or torn (every
  block of the shared range is one whole write of one thread).
"""
from __future__ import annotations

import os
import random
import struct
import subprocess
import threading
import zlib

import pytest

from simfs.scsi import status as S
from simfs.testing import Sim

SECONDS = 6


def _loops(core: str, tmp: str) -> list[str]:
    rd = f"{core}/rd_mcp_0"
    end = f"n=0; trap 'echo $n' EXIT; end=$((SECONDS+{SECONDS})); while [ $SECONDS -lt $end ]; do n=$((n+1));"
    return [
        # attribute writers on a shared, enabled device
        (f"{end} for v in 0 1; do echo $v > {rd}/shared/attrib/emulate_tpu; "
         f"echo $v > {rd}/shared/attrib/emulate_write_cache; done; "
         f"echo LIO-$RANDOM > {rd}/shared/wwn/vendor_id; done"),
        (f"{end} echo alias$RANDOM > {rd}/shared/alias; cat {rd}/shared/alias "
         f"{rd}/shared/info {rd}/shared/attrib/* >/dev/null; "
         f"echo 4096 > {rd}/shared/attrib/block_size 2>/dev/null; "
         f"echo 512 > {rd}/shared/attrib/block_size 2>/dev/null; done"),
        # device makers: mkdir, control, enable, rmdir (racing each other on names)
        *[(f"{end} for d in a b c; do mkdir {rd}/dev_$d 2>/dev/null && "
           f"echo rd_pages=64 > {rd}/dev_$d/control && echo 1 > {rd}/dev_$d/enable; "
           f"rmdir {rd}/dev_$d 2>/dev/null; done; done") for _ in range(2)],
        # HBA makers, with a fileio device inside
        *[(f"{end} for h in 7 8; do mkdir {core}/fileio_$h 2>/dev/null; "
           f"mkdir {core}/fileio_$h/f 2>/dev/null && echo fd_dev_name={tmp}/f$h.img,"
           f"fd_dev_size=1048576 > {core}/fileio_$h/f/control && "
           f"echo 1 > {core}/fileio_$h/f/enable; rmdir {core}/fileio_$h/f 2>/dev/null; "
           f"rmdir {core}/fileio_$h 2>/dev/null; done; done") for _ in range(2)],
        # ALUA groups
        (f"{end} mkdir {core}/alua/lu_gps/g 2>/dev/null; "
         f"echo 5 > {core}/alua/lu_gps/g/lu_gp_id 2>/dev/null; "
         f"mkdir {rd}/shared/alua/tg 2>/dev/null; "
         f"echo 9 > {rd}/shared/alua/tg/tg_pt_gp_id 2>/dev/null; "
         f"rmdir {rd}/shared/alua/tg {core}/alua/lu_gps/g 2>/dev/null; done"),
        # a reader of the whole tree
        (f"{end} find {core} -type f -perm -u+r 2>/dev/null | head -400 | "
         f"xargs cat >/dev/null 2>&1; done"),
    ]


@pytest.mark.mount
def test_many_shell_writers_no_deadlock_consistent_tree(mnt, tmp_path):
    core = mnt.core
    mnt.ok(f"mkdir -p {core}/rd_mcp_0/shared && echo rd_pages=256 > "
           f"{core}/rd_mcp_0/shared/control && echo 1 > {core}/rd_mcp_0/shared/enable")
    procs = [subprocess.Popen(["bash", "-c", loop], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL) for loop in _loops(core, str(tmp_path))]
    rounds = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=SECONDS + 40)  # a hang here is a deadlock
            rounds.append(int(out.split()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(r > 0 for r in rounds), rounds
    print(f"\nconcurrency: 8 shell loops, {sum(rounds)} rounds in {SECONDS} s: {rounds}")

    # the tree is consistent
    dirs = files = 0
    for root, dnames, fnames in os.walk(mnt.root):
        dirs += 1
        for f in fnames:
            path = os.path.join(root, f)
            mode = os.stat(path).st_mode
            if mode & 0o444:
                with open(path, "rb") as fh:
                    fh.read()
                files += 1
    assert dirs > 10 and files > 100
    for hba in os.listdir(core):
        if hba == "alua":
            continue
        assert os.path.isfile(f"{core}/{hba}/hba_info"), hba
        for dev in os.listdir(f"{core}/{hba}"):
            if not os.path.isdir(f"{core}/{hba}/{dev}"):
                continue
            have = set(os.listdir(f"{core}/{hba}/{dev}"))
            missing = {"attrib", "pr", "wwn", "alua", "statistics", "control", "enable",
                       "info"} - have
            assert not missing, (hba, dev, missing)
    # the daemon survived and still works
    mnt.ok(f"mkdir {core}/rd_mcp_0/after && rmdir {core}/rd_mcp_0/after")
    assert mnt.read("target/core/rd_mcp_0/shared/enable").strip() == "1"
    assert "Traceback" not in mnt.dmesg()


# -- engine: concurrent WRITE/READ --------------------------------------------------------------
BS = 512
HDR = struct.Struct(">QII")  # lba, writer, sequence


def block(lba: int, writer: int, seq: int) -> bytes:
    body = HDR.pack(lba, writer, seq) + bytes([writer & 0xFF]) * (BS - HDR.size - 4)
    return body + struct.pack(">I", zlib.crc32(body))


def check_block(b: bytes, lba: int) -> tuple[int, int]:
    body, crc = b[:-4], struct.unpack(">I", b[-4:])[0]
    assert zlib.crc32(body) == crc, f"torn block at LBA {lba}"
    got_lba, writer, seq = HDR.unpack(body[:HDR.size])
    assert got_lba == lba, f"block for LBA {got_lba} found at LBA {lba}"
    return writer, seq


def w16(lba, n):
    return struct.pack(">BBQIBB", 0x8A, 0, lba, n, 0, 0)


def r16(lba, n):
    return struct.pack(">BBQIBB", 0x88, 0, lba, n, 0, 0)


@pytest.mark.parametrize("backend", ["rd_mcp", "fileio"])
def test_threads_write_read_no_lost_or_torn_blocks(tmp_path, backend):
    sim = Sim(state_dir=tmp_path / "s")
    if backend == "rd_mcp":
        dev = sim.rd_device(pages=512)
    else:
        dev = sim.fileio_device(tmp_path / "d.img", size=2 << 20, buffered=True)
    port = sim.port(dev)
    nthreads, private, shared_base, shared_len = 8, 64, 1024, 32
    last: dict[int, int] = {}   # private LBA -> last sequence its owner wrote
    errors: list[BaseException] = []
    counts = {"writes": 0, "reads": 0}
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            rng = random.Random(t)
            nx = sim.nexus(f"iqn.1994-05.com.example:t{t}", port)
            base = t * private
            mine = {}
            for seq in range(1, 151):
                if rng.random() < 0.5:   # private range, 1..4 blocks
                    lba = base + rng.randrange(private - 4)
                else:                    # the shared range, overlapping other threads
                    lba = shared_base + rng.randrange(shared_len - 8)
                n = rng.randint(1, 4 if lba < shared_base else 8)
                data = b"".join(block(lba + i, t, seq) for i in range(n))
                res = sim.engine.submit(nx, dev, w16(lba, n), data)
                assert res.status == S.GOOD, res
                if lba < shared_base:
                    for i in range(n):
                        mine[lba + i] = seq
                rd = sim.engine.submit(nx, dev, r16(lba, n))
                assert rd.status == S.GOOD
                for i in range(n):
                    w, s = check_block(rd.data[i * BS:(i + 1) * BS], lba + i)
                    if lba < shared_base:
                        assert (w, s) == (t, mine[lba + i]), "lost write in a private range"
                with lock:
                    counts["writes"] += 1
                    counts["reads"] += 1
            with lock:
                last.update(mine)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "engine deadlock"
    assert not errors, errors[0]
    nx = sim.nexus("iqn.1994-05.com.example:check", port)
    for lba, seq in last.items():
        rd = sim.engine.submit(nx, dev, r16(lba, 1))
        assert check_block(rd.data, lba) == (lba // private, seq)
    rd = sim.engine.submit(nx, dev, r16(shared_base, shared_len))
    for i in range(shared_len):
        chunk = rd.data[i * BS:(i + 1) * BS]
        if any(chunk):
            check_block(chunk, shared_base + i)
    assert counts["writes"] == nthreads * 150
    sim.close()
