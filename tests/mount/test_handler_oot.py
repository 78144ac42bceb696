"""A user: handler installed from another package (docs/handlers.md's example, kept in
tests/data/ramhandler): pip installs it into a throwaway virtual environment layered on this
one, and a mount made from there serves ``dev_config=ram/...`` devices."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from helpers import sh, venv_with

DATA = Path(__file__).resolve().parents[1] / "data" / "ramhandler"
DOC = Path(__file__).resolve().parents[2] / "docs" / "handlers.md"


def test_the_example_is_the_docs():
    doc = re.search(r"```python\n# ramhandler.py\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert doc in (DATA / "ramhandler.py").read_text()
    toml = re.search(r"```toml\n# pyproject.toml\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert toml == (DATA / "pyproject.toml").read_text()


@pytest.fixture(scope="module")
def env_with_handler(tmp_path_factory):
    return venv_with(tmp_path_factory.mktemp("env_with_handler"), DATA)


def test_installed_handler_serves_user_ram(env_with_handler, tmp_path):
    py = env_with_handler / "bin" / "python"
    mp, st = tmp_path / "mp", tmp_path / "st"
    mp.mkdir()
    subprocess.run([str(py), "-m", "simfs", "mount", "--quiet", "--state-dir", str(st), str(mp)],
                   check=True, timeout=60)
    simfs = f"{py} -m simfs"
    try:
        d = f"{mp}/target/core/user_1/r"
        r = sh(f"mkdir -p {d} && echo dev_config=ram/x,dev_size=1048576 > {d}/control && "
               f"echo 1 > {d}/enable && printf 'hello ram' | dd of={tmp_path}/blk bs=512 "
               f"conv=sync status=none && {simfs} scsi {mp} user_1/r write 5 --in {tmp_path}/blk"
               f" && {simfs} scsi {mp} user_1/r --hex read 5 1")
        assert r.returncode == 0, r.stderr
        assert "68 65 6c 6c 6f 20 72 61 6d" in r.stdout or "68656c6c6f2072616d" in r.stdout
        # the same without the package: no handler, ENOENT and the runner's line
        r = sh(f"mkdir {mp}/target/core/user_1/q && "
               f"echo dev_config=nosuch/x > {mp}/target/core/user_1/q/control && "
               f"echo 1 > {mp}/target/core/user_1/q/enable")
        assert "No such file or directory" in r.stderr
    finally:
        subprocess.run([str(py), "-m", "simfs", "umount", str(mp)], check=False)
