"""``--iscsi-poll-us``: the iSCSI server polls its sockets for up to that long before its
loop sleeps (simfs.iscsi.idle_poll). The daemon gets the value; commands one at a time give
the same answers with polling on and off, and configfs stays usable while they run."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from helpers import RawInitiator, free_port, mount, umount, wait_port  # noqa: E402

from simfs.daemon import state  # noqa: E402

IQN = "iqn.2026-12.org.simfs:poll"


def _target(m, tmp_path) -> tuple[int, str]:
    port = free_port()
    t = f"{m.root}/target"
    tpg = f"{t}/iscsi/{IQN}/tpgt_1"
    img = tmp_path / "lun0.img"
    m.ok(f"mkdir -p {t}/core/fileio_0/f0 && "
         f"echo fd_dev_name={img},fd_dev_size=4194304 > {t}/core/fileio_0/f0/control && "
         f"echo 1 > {t}/core/fileio_0/f0/enable && "
         f"mkdir -p {tpg}/lun/lun_0 && ln -s {t}/core/fileio_0/f0 {tpg}/lun/lun_0/lun0 && "
         f"mkdir {tpg}/np/127.0.0.1:{port} && "
         f"echo 0 > {tpg}/attrib/authentication && "
         f"echo 1 > {tpg}/attrib/generate_node_acls && "
         f"echo 0 > {tpg}/attrib/demo_mode_write_protect && "
         f"echo 1 > {tpg}/enable")
    wait_port(port)
    return port, tpg


def _daemon_argv(m) -> list[str]:
    pid = int(state.read_record(os.path.realpath(m.root))["pid"])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def _one_at_a_time(port: int, n: int) -> list[tuple]:
    """``n`` WRITE(10)s then READ(10)s of 4 KiB, each waiting for the one before."""
    ini = RawInitiator(port, target=IQN, initiator="iqn.2026-12.org.simfs:poll-ini")
    ini.full_login()
    got = []
    for i in range(n):
        block = bytes([i & 0xFF]) * 4096
        cdb = bytes([0x2A, 0]) + (i * 8).to_bytes(4, "big") + bytes([0, 0, 8, 0])
        st, _, _ = ini.scsi(cdb, write=block)
        got.append(("w", st))
    for i in range(n):
        cdb = bytes([0x28, 0]) + (i * 8).to_bytes(4, "big") + bytes([0, 0, 8, 0])
        st, data, _ = ini.scsi(cdb, read_len=4096)
        got.append(("r", st, data == bytes([i & 0xFF]) * 4096))
    ini.close()
    return got


@pytest.mark.parametrize("poll", [None, "0", "250"])
def test_commands_one_at_a_time_answer_the_same_with_polling_on_and_off(poll, tmp_path):
    m = mount("modern", [] if poll is None else ["--iscsi-poll-us", poll])
    try:
        assert f"--iscsi-poll-us={poll or 100}" in _daemon_argv(m)
        port, tpg = _target(m, tmp_path)
        errors: list = []
        reads = []

        def control_plane():  # configfs while the connection keeps the loop busy
            try:
                for _ in range(50):
                    with open(f"{tpg}/attrib/default_cmdsn_depth") as f:
                        reads.append(f.read())
            except OSError as e:  # noqa: PERF203
                errors.append(e)
        t = threading.Thread(target=control_plane)
        t.start()
        got = _one_at_a_time(port, 200)
        t.join(timeout=60)
        assert not t.is_alive() and not errors
        assert set(reads) == {"64\n"}
        assert got == [("w", 0)] * 200 + [("r", 0, True)] * 200
    finally:
        umount(m)


def test_a_bad_poll_time_is_refused_before_anything_is_mounted(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    for bad in ("-1", "10001", "soon"):
        r = subprocess.run(["simfs", "mount", "--iscsi-poll-us", bad, str(mp)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert "--iscsi-poll-us" in r.stderr
        assert not os.path.ismount(mp)
