"""lioexport's command line, run where /sys/kernel/config is simfs (``simfs run``), as
it runs on a real machine: rtslib-fb's built-in path, targetcli next to it."""
import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
IQN = "iqn.2003-01.org.example.lioexport:cli"


def lioexport(*args: str) -> list[str]:
    return ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "lioexport", *args]


def test_add_list_and_targetcli_sees_it(simfs_run, tmp_path):
    img = tmp_path / "cli.img"
    r = simfs_run(lioexport("add", str(img), IQN, "--size", str(2 << 20)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"exported {img} ({2 << 20} bytes) as {IQN} on 127.0.0.1:3260\n"
    script = " && ".join([" ".join(lioexport("add", str(img), IQN, "--size", "2097152")),
                          " ".join(lioexport("list")), "targetcli ls /iscsi 1"])
    r = simfs_run(script)
    assert r.returncode == 0, r.stderr
    assert f"{IQN} 127.0.0.1:3260 {img} 2097152 any initiator" in r.stdout
    assert IQN in r.stdout.split("\n", 2)[2]  # targetcli's listing


def test_remove_unknown_target_fails(simfs_run):
    r = simfs_run(lioexport("remove", IQN))
    assert r.returncode == 1
    assert r.stderr == f"lioexport: no target {IQN}\n"
