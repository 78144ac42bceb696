"""A backend installed from another package appears in the tree with no change to simfs:
pip installs tests/data/oot-backend into a throwaway virtual environment that sees this
simfs, and a mount made from that environment has ``zero_N`` HBAs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import sh, venv_with

DATA = Path(__file__).resolve().parents[1] / "data" / "oot-backend"


@pytest.fixture(scope="module")
def env_with_plugin(tmp_path_factory):
    """A venv layered on the running one, with the out-of-tree backend installed."""
    return venv_with(tmp_path_factory.mktemp("env_with_plugin"), DATA)


def test_out_of_tree_backend_mounts_and_serves(env_with_plugin, tmp_path):
    py = env_with_plugin / "bin" / "python"
    mp, st = tmp_path / "mp", tmp_path / "st"
    mp.mkdir()
    subprocess.run([str(py), "-m", "simfs", "mount", "--quiet", "--state-dir", str(st), str(mp)],
                   check=True, timeout=60)
    try:
        core = f"{mp}/target/core"
        r = sh(f"mkdir {core}/zero_0 {core}/zero_0/z && "
               f"echo zero_size=1048576 > {core}/zero_0/z/control && "
               f"echo 1 > {core}/zero_0/z/enable && cat {core}/zero_0/z/info")
        assert r.returncode == 0, r.stderr
        assert "ZERO size: 1048576" in r.stdout
        # bad input reaches the plugin's refusal: EINVAL, its log line, still disabled
        r = sh(f"mkdir {core}/zero_0/y && echo 1 > {core}/zero_0/y/enable")
        assert "Invalid argument" in r.stderr
        assert open(f"{core}/zero_0/y/enable").read() == "0\n"
        log = subprocess.run([str(py), "-m", "simfs", "dmesg", str(mp)], capture_output=True,
                             text=True).stdout
        assert "Missing zero_size= parameter" in log
    finally:
        subprocess.run([str(py), "-m", "simfs", "umount", str(mp)], check=False)


def test_the_plugin_is_not_in_the_base_environment(mnt):
    """Without the package, the same mkdir is refused: the plugin really came from pip."""
    r = sh(f"mkdir {mnt.core}/zero_0")
    assert r.returncode != 0
