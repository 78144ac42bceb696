"""simfs's pytest plugin, used as another project uses it: a pytest run of its own, which
finds the fixtures through the ``pytest11`` entry point of the installed simfs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_TESTS = textwrap.dedent('''
    import os, shutil, subprocess
    import pytest

    def test_configfs_is_a_fresh_tree(configfs):
        assert configfs.read("target/version").startswith("Target Engine Core ConfigFS")
        assert sorted(os.listdir(configfs.core)) == ["alua"]
        os.mkdir(configfs.core / "rd_mcp_0")          # a change no later test may see

    def test_configfs_is_fresh_again(configfs):
        assert not (configfs.core / "rd_mcp_0").exists()

    @pytest.mark.simfs_kernel("v3.0")
    def test_kernel_by_marker(configfs):
        assert " v1.0.0 on " in configfs.read("target/version")

    @pytest.mark.parametrize("configfs", ["v3.0", "modern"], indirect=True)
    def test_kernel_by_parameter(configfs):
        want = " v1.0.0 on " if configfs.kernel == "v3.0" else " v5.0 on "
        assert want in configfs.read("target/version")

    @pytest.mark.parametrize("simfs_kernel", ["v3.0"])
    def test_kernel_passes_to_simfs_run(simfs_run):
        r = simfs_run("cat /sys/kernel/config/target/version")
        assert " v1.0.0 on " in r.stdout, r.stderr

    def test_bad_input_is_the_kernels_errno(configfs):
        with pytest.raises(OSError) as e:
            configfs.write("target/dbroot", "/nonexistent-dir")
        assert e.value.errno == 2  # ENOENT: 6.1+ passes kern_path's error through
        assert "db_root: cannot open: /nonexistent-dir" in configfs.dmesg()

    def test_rtslib_root(rtslib_root, configfs, tmp_path):
        from rtslib_fb import FileIOStorageObject
        FileIOStorageObject("d1", str(tmp_path / "d1.img"), size=1 << 20)
        assert (configfs.core / "fileio_0" / "d1").is_dir()
        assert [so.name for so in rtslib_root.storage_objects] == ["d1"]
        assert rtslib_root.dbroot == str(tmp_path / "rtslib-dbroot")

    def test_rtslib_root_is_fresh_again(rtslib_root):
        assert list(rtslib_root.storage_objects) == []

    def test_iscsi_target(iscsi_target):
        assert iscsi_target.url.startswith("iscsi://127.0.0.1:")
        r = subprocess.run(["iscsi-readcapacity16", iscsi_target.url],
                           capture_output=True, text=True, timeout=60)
        assert "Total size:67108864" in r.stdout, r.stdout + r.stderr

    def test_simfs_run(simfs_run):
        r = simfs_run("modprobe target_core_mod && ls /sys/kernel/config/target && "
                      "mkdir -p /etc/target && echo kept > /etc/target/x")
        assert r.returncode == 0, r.stderr
        assert "core" in r.stdout.split()
        assert simfs_run(["cat", "/etc/target/x"]).stdout == "kept\\n"  # one state dir per test
''')


def run_pytest(where: Path, *args: str, user: str | None = None, python: str = sys.executable,
               prefix: tuple = (), timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [*prefix, python, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args, str(where)]
    if user:
        cmd = ["runuser", "-u", user, "--", "env", f"HOME={os.path.dirname(where)}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=where)


def test_every_fixture_as_root(tmp_path):
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    r = run_pytest(tmp_path, "-q")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "11 passed" in r.stdout, r.stdout[-2000:]


def test_as_an_ordinary_user(unprivileged):
    """Where /dev/fuse is open to users (the unprivileged fixture makes it 0666)."""
    where = Path(unprivileged.home) / "plugin-tests"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir()
    (where / "test_user.py").write_text(USER_TESTS)
    subprocess.run(["chown", "-R", unprivileged.user, str(where)], check=True)
    r = run_pytest(where, "-q", user=unprivileged.user, python=unprivileged.python)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "11 passed" in r.stdout, r.stdout[-2000:]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_without_fuse_the_fixture_says_why(tmp_path):
    """A machine (or container) without /dev/fuse: each fixture skips with the reason, or
    with --simfs-require fails with it."""
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    old = tmp_path / "dev"
    old.mkdir()
    # a private /dev holding the usual nodes but no fuse (as in a container without it)
    nofuse = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
              f"mount --rbind /dev {old} && mount -t tmpfs none /dev && "
              "for n in null zero random urandom; do touch /dev/$n && "
              f"mount --bind {old}/$n /dev/$n; done && ln -s /proc/self/fd /dev/fd && "
              'exec "$@"', "sh")
    r = run_pytest(tmp_path, "-q", prefix=nofuse)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "11 skipped" in r.stdout, r.stdout[-3000:]
    assert "simfs: /dev/fuse does not exist: the fuse kernel module is not loaded" in r.stdout
    r = run_pytest(tmp_path, "-q", "--simfs-require", "-k", "fresh_again", prefix=nofuse)
    assert r.returncode == 1
    assert "2 errors" in r.stdout  # a fixture that fails is an error of its tests
    assert "ERROR at setup of test_configfs_is_fresh_again" in r.stdout
    assert "\nsimfs: /dev/fuse does not exist: the fuse kernel module" in r.stdout
