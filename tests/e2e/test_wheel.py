"""The package as a user gets it: ``python3 -m build`` makes a wheel and an sdist, and the
wheel installed (not editable) into a clean virtual environment mounts a tree, runs
targetcli under ``simfs run``, and runs the example project's tests with its plugin.

Built once per session from a copy of the checkout; the installs come from the package
index (pip's cache makes later runs fast).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import simfs

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}


def run(cmd: list[str], timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python3 -m build`` of a copy of the checkout: dist/ with the sdist and the wheel."""
    base = tmp_path_factory.mktemp("build")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP
                                                        or n.endswith(".egg-info")])
    tools = base / "tools"
    run([sys.executable, "-m", "venv", str(tools)])
    run([str(tools / "bin/pip"), "install", "-q", "build"])
    run([str(tools / "bin/python"), "-m", "build", "--outdir", str(base / "dist"), str(src)])
    return base / "dist"


@pytest.fixture(scope="module")
def clean_venv(dist, tmp_path_factory) -> Path:
    """A virtual environment without the system's packages, with the wheel, pytest and
    rtslib-fb from the package index installed."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
    run(["/usr/bin/python3", "-m", "venv", str(venv)])
    (wheel,) = dist.glob("simfs-*.whl")
    run([str(venv / "bin/pip"), "install", "-q", str(wheel), "pytest", "rtslib-fb"])
    return venv


def test_build_makes_sdist_and_wheel_with_plugins_and_entry_points(dist):
    version = simfs.__version__
    assert sorted(p.name for p in dist.iterdir()) == [f"simfs-{version}-py3-none-any.whl",
                                                       f"simfs-{version}.tar.gz"]
    with zipfile.ZipFile(dist / f"simfs-{version}-py3-none-any.whl") as whl:
        names = set(whl.namelist())
        entry_points = whl.read(f"simfs-{version}.dist-info/entry_points.txt").decode()
    for module in ("simfs/cli/main.py", "simfs/pytest_plugin.py", "simfs/daemon/__init__.py",
                   "simfs_plugins/backends/fileio.py", "simfs_plugins/fabrics/iscsi/__init__.py"):
        assert module in names
    assert not any(n.startswith(("plugins/", "tests/")) for n in names)
    assert "[pytest11]\nsimfs = simfs.pytest_plugin\n" in entry_points
    assert "rd_mcp = simfs_plugins.backends.rd_mcp:BACKEND" in entry_points
    assert "iscsi = simfs_plugins.fabrics.iscsi:FABRIC" in entry_points
    with tarfile.open(dist / f"simfs-{version}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "plugins/backends/fileio.py",
            "simfs/pytest_plugin.py"} <= members


def test_clean_install_version_mount_run_and_example(clean_venv, tmp_path):
    env = dict(os.environ, PATH=f"{clean_venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin")
    env.pop("PYTHONPATH", None)
    py = str(clean_venv / "bin/python")
    # the installed files, not this checkout
    where = run([py, "-c", "import simfs, simfs_plugins; print(simfs.__file__)"], env=env,
                cwd=tmp_path).stdout
    assert where.startswith(str(clean_venv))
    meta = run([py, "-c", "import importlib.metadata as m; print(m.version('simfs'))"],
               env=env, cwd=tmp_path).stdout.strip()
    assert run(["simfs", "--version"], env=env).stdout == f"simfs {meta}\n"
    assert meta == simfs.__version__

    mp = tmp_path / "cfg"
    mp.mkdir()
    run(["simfs", "mount", "--quiet", "--state-dir", str(tmp_path / "st"), str(mp)], env=env)
    try:
        assert (mp / "target/version").read_text().startswith("Target Engine Core ConfigFS")
    finally:
        run(["simfs", "umount", str(mp)], env=env)

    r = run(["simfs", "run", "--state-dir", str(tmp_path / "run"), "--", "targetcli", "ls"],
            env=env)
    assert r.stdout.startswith("o- / ") and "o- iscsi " in r.stdout

    r = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "examples/lioexport")],
            env=env, cwd=tmp_path)
    assert "8 passed" in r.stdout, r.stdout[-2000:]
