"""The mount daemon stopped by SIGTERM, SIGHUP or SIGINT (what `systemctl stop`, a closed
terminal or a CI runner's cancel send): it unmounts, exits, and its APTPL and ALUA metadata
files are whole and hold every PERSISTENT RESERVE OUT it acknowledged."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import mount, umount

SERIAL = "5eed51a15e00"
INITIATORS = [f"iqn.1994-05.com.example:node{n}" for n in range(5)]

# Registers and unregisters initiators with APTPL=1 and cycles the ALUA state, as fast as
# it can, printing the number of each step once the daemon acknowledged all of it.
HAMMER = f"""
import sys
from pathlib import Path
from simfs.daemon import control
from simfs.scsi import cdbs
sdir, state = Path(sys.argv[1]), sys.argv[2]
inits = {INITIATORS!r}
def pr(init, key):
    cdb, data = cdbs.pr_out(0x06, sa_key=key, aptpl=True)  # REGISTER AND IGNORE EXISTING KEY
    rep = control.request(sdir, {{"op": "scsi", "device": "rd_mcp_0/r", "initiator": init,
                                 "cdb": cdb.hex(), "data_out": data.hex()}})
    assert rep["status"] == 0, rep
i = 0
try:
    while True:
        i += 1
        pr(inits[i % 5], 0x1000 + i)
        if i % 3 == 0:
            pr(inits[(i + 2) % 5], 0)
        with open(state, "w") as f:
            f.write(str(i % 3))
        print(i, flush=True)
except Exception:
    pass
"""


def registrations_after(step: int) -> list[dict[str, int]]:
    """The registrations (initiator -> key) HAMMER leaves after each half of ``step + 1``:
    after ``step`` whole, after the next REGISTER, after the next step whole."""
    keys: dict[str, int] = {}
    for i in range(1, step + 1):
        keys[INITIATORS[i % 5]] = 0x1000 + i
        if i % 3 == 0:
            keys.pop(INITIATORS[(i + 2) % 5], None)
    done = dict(keys)
    i = step + 1
    keys[INITIATORS[i % 5]] = 0x1000 + i
    half = dict(keys)
    if i % 3 == 0:
        keys.pop(INITIATORS[(i + 2) % 5], None)
    return [done, half, dict(keys)]


def aptpl_registrations(data: bytes) -> dict[str, int]:
    assert data.endswith(b"\0"), data[-40:]
    text = data[:-1].decode()
    if text.startswith("No Registrations or Reservations"):
        return {}
    blocks = text.split("PR_REG_START: ")[1:]
    assert text.endswith(f"PR_REG_END: {len(blocks) - 1}\n"), text[-80:]
    out = {}
    for n, block in enumerate(blocks):
        assert block.startswith(f"{n}\n") and f"PR_REG_END: {n}\n" in block, block
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[fields["initiator_node"]] = int(fields["sa_res_key"])
    return out


def daemon_pid(m) -> int:
    pids = subprocess.run(["pgrep", "-f", f"simfs.daemon .*--state-dir {m.state_dir} "],
                          capture_output=True, text=True).stdout.split()
    assert len(pids) == 1, pids
    return int(pids[0])


def exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda s: s.name)
def test_stop_signal_unmounts_and_keeps_metadata_whole(sig):
    rng = random.Random(sig)
    for attempt in range(3):  # stopped at three different moments of the traffic
        m = mount("modern")
        try:
            dev = f"{m.core}/rd_mcp_0/r"
            m.ok(f"mkdir -p {dev} && echo rd_pages=64 > {dev}/control && "
                 f"echo {SERIAL} > {dev}/wwn/vpd_unit_serial && echo 1 > {dev}/enable")
            dbroot = Path(m.read("target/dbroot").strip())
            (dbroot / "pr").mkdir(parents=True, exist_ok=True)
            (dbroot / "alua" / f"tpgs_{SERIAL}").mkdir(parents=True, exist_ok=True)
            gp = f"{dev}/alua/default_tg_pt_gp"
            m.ok(f"echo 1 > {gp}/alua_write_metadata")
            hammer = subprocess.Popen([sys.executable, "-c", HAMMER, m.state_dir,
                                       f"{gp}/alua_access_state"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            assert hammer.stdout.readline().strip() == "1", hammer.stderr.read()
            time.sleep(rng.uniform(0.05, 0.6))
            pid = daemon_pid(m)
            os.kill(pid, sig)
            out, _ = hammer.communicate(timeout=60)
            deadline = time.monotonic() + 30
            while not exited(pid):
                assert time.monotonic() < deadline, "the daemon did not exit"
                time.sleep(0.05)
            assert not is_mounted(m.root)
            last = int(out.split()[-1]) if out.split() else 1
            pr = dbroot / "pr"
            assert aptpl_registrations((pr / f"aptpl_{SERIAL}").read_bytes()) in \
                registrations_after(last)
            alua = (dbroot / "alua" / f"tpgs_{SERIAL}" / "default_tg_pt_gp").read_text()
            assert alua.splitlines()[0] == "tg_pt_gp_id=0" and len(alua.splitlines()) == 3
            # no temporary file of an interrupted atomic write
            assert sorted(os.listdir(pr)) == [f"aptpl_{SERIAL}"]
            assert os.listdir(dbroot / "alua" / f"tpgs_{SERIAL}") == ["default_tg_pt_gp"]
        finally:
            umount(m)
