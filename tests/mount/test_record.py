"""`simfs record`: a scripted shell session on one mount, recorded as a shell script,
replayed on a fresh mount, gives the same tree (a full dump of both compared)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import free_port, mount, sh, umount
from tracing import Client, dump

from simfs.cli import record

SESSION = Path(__file__).parent.parent / "data" / "record-session.sh"

# Files whose content legitimately differs between two mounts: jiffies at creation, and
# the dbroot (each mount's own state directory).
VOLATILE = ("/creation_time", "target/dbroot")


def _comparable(tree: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tree.items() if not k.endswith(VOLATILE)}


def test_record_replays_to_the_same_tree(tmp_path):
    a = mount("modern")
    try:
        rec = Client(["record", a.root, "-o", str(tmp_path / "rec.sh")])
        r = sh(f"bash {SESSION} {a.root} {tmp_path}/disk0.img {free_port()}")
        assert r.returncode == 0, r.stderr
        rec.stop()
        before = dump(a.root)
    finally:
        umount(a)  # frees the portal's port for the replay
    script = (tmp_path / "rec.sh").read_text()
    # only successful changes: the refused writes and mkdir are not in it
    assert "echo 7 >" not in script and "echo 9 >" not in script
    assert "printf 'rd_pages=1024' >" in script  # no newline written, none replayed
    assert 'ln -s "$CONFIGFS/target/core/fileio_0/disk0" ' in script
    assert script.count("rmdir ") == 2
    assert "echo 2048 > " not in script  # block_size refused while exported

    b = mount("modern")
    try:
        env = dict(os.environ, CONFIGFS=b.root)
        r = subprocess.run(["sh", str(tmp_path / "rec.sh")], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        after = dump(b.root)
    finally:
        umount(b)
    assert len(before) > 400  # the dump is the whole tree, not a stub
    assert any(k.endswith("lun_5/map0") for k in before)
    one, two = _comparable(before), _comparable(after)
    diff = {k: (one.get(k), two.get(k)) for k in one.keys() | two.keys()
            if one.get(k) != two.get(k)}
    assert not diff, diff


def test_record_exact_bytes_through_sh(tmp_path):
    """Every byte value (NUL aside: a C string cannot hold it) survives the printf form."""
    data = bytes(range(1, 256)) + b"%s\\n-x\n"
    ev = {"op": "write", "result": "ok", "path": "f", "data": data.decode("latin-1")}
    line = record.command(ev)
    assert line.startswith("printf ")
    r = subprocess.run(["sh", "-c", line], env=dict(os.environ, CONFIGFS=str(tmp_path)),
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("data,expect", [
    (b"1\n", "echo 1 > "),
    (b"fd_dev_name=/tmp/a b,fd_dev_size=1\n", "echo 'fd_dev_name=/tmp/a b,fd_dev_size=1' > "),
    (b"-n\n", "printf '\\055n\\n' > "),
    (b"a\\b\n", "printf 'a\\\\b\\n' > "),
    (b"50%\n", "echo 50% > "),
    (b"%d", "printf '%%d' > "),
    (b"it's\n", "echo 'it'\\''s' > "),
])
def test_write_forms(data, expect):
    ev = {"op": "write", "result": "ok", "path": "target/x", "data": data.decode("latin-1")}
    assert record.command(ev) == expect + '"$CONFIGFS/target/x"'


def test_only_successful_changes():
    evs = [{"op": "read", "result": "ok", "path": "a"},
           {"op": "write", "result": "EINVAL", "path": "a", "data": "1\n"},
           {"op": "mkdir", "result": "EEXIST", "path": "a"},
           {"op": "scsi", "result": "GOOD", "path": "a"},
           {"op": "unlink", "result": "ok", "path": "x/y z"}]
    body = record.script(evs).splitlines()
    assert body[-1] == 'rm "$CONFIGFS"/\'x/y z\''
    assert not any(l.startswith(("echo", "mkdir", "printf")) for l in body)


def test_replay_leaves_dbroot_alone_unless_asked(mnt, tmp_path):
    """targetcli's first write points dbroot at the host's /etc/rtslib-fb-target; the
    recorded script replays it only with DBROOT=DIR, so a replay into a simfs mount never
    sends a simulation's APTPL files to the host."""
    evs = [{"op": "write", "result": "ok", "path": "target/dbroot",
            "data": "/etc/rtslib-fb-target\n"},
           {"op": "mkdir", "result": "ok", "path": "target/core/rd_mcp_0"}]
    script = tmp_path / "s.sh"
    script.write_text(record.script(evs))
    assert "/etc/rtslib-fb-target" not in [l for l in script.read_text().splitlines()
                                           if not l.startswith("#")]
    dbroot = f"{mnt.root}/target/dbroot"
    before = open(dbroot).read()
    env = dict(os.environ, CONFIGFS=mnt.root)
    r = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(dbroot).read() == before and os.path.isdir(f"{mnt.core}/rd_mcp_0")
    chosen = tmp_path / "db"
    chosen.mkdir()
    r = subprocess.run(["sh", str(script)], env=dict(env, DBROOT=str(chosen)),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(dbroot).read() == f"{chosen}\n", r.stderr
    kept = record.script(evs, keep_dbroot=True)
    assert 'echo /etc/rtslib-fb-target > "$CONFIGFS/target/dbroot"' in kept
