"""pytest fixtures for tools that drive the Linux SCSI target (LIO): a fresh simfs per test.

Installed with simfs and loaded by pytest on its own (entry point ``pytest11``: ``simfs``).

Fixtures:

``configfs``
    A freshly mounted simfs tree (what ``/sys/kernel/config`` is): :class:`ConfigfsMount`.
``rtslib_root``
    An rtslib-fb ``RTSRoot`` bound to that tree, without a namespace (rtslib-fb 2.1.x as
    ``rtslib_fb``, 2.2.x as ``rtslib`` and ``rtslib_fb``); skipped when rtslib-fb is missing.
``iscsi_target``
    A ready 64 MiB LUN exported over iSCSI on a free 127.0.0.1 port: :class:`IscsiTarget`
    (``.url`` is ``iscsi://127.0.0.1:PORT/IQN/0``).
``simfs_run``
    Runs a command under ``simfs run`` (where ``/sys/kernel/config`` is simfs, so tools with
    the path built in work unchanged) and returns its ``CompletedProcess``.
``simfs_kernel``
    The kernel the tree simulates: ``@pytest.mark.simfs_kernel("v3.0")``, or
    ``@pytest.mark.parametrize("simfs_kernel", [...])``, or ``--simfs-kernel``; the default
    is simfs's own default. ``configfs`` also takes it as an indirect parameter.

When FUSE (or, for ``simfs_run``, a mount namespace) is not available, the fixtures skip the
test and say exactly why; ``--simfs-require`` makes that a failure instead (for CI jobs that
must not pass by skipping).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import pytest

#: names ``--profile`` knows; any other value is passed on as ``--kernel VERSION``
PROFILES = ("modern", "v3.0")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("simfs", "simfs: a simulated LIO configfs tree")
    group.addoption("--simfs-kernel", default=None, metavar="VERSION",
                    help="kernel (or profile) the simfs fixtures simulate by default")
    group.addoption("--simfs-require", action="store_true",
                    help="fail, instead of skipping, tests whose simfs fixtures cannot run here")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "simfs_kernel(version): the kernel (or simfs profile) "
                            "the simfs fixtures of this test simulate")


# -- what this machine allows -----------------------------------------------------------
def _simfs_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "simfs", *args]


def fuse_problem() -> Optional[str]:
    """Why a FUSE mount cannot work here, or None when it can be tried."""
    dev = "/dev/fuse"
    try:
        st = os.stat(dev)
    except FileNotFoundError:
        return ("/dev/fuse does not exist: the fuse kernel module is not loaded, or this "
                "container was started without the device (docker: --device /dev/fuse)")
    if not stat.S_ISCHR(st.st_mode):
        return "/dev/fuse is not a character device"
    try:
        os.close(os.open(dev, os.O_RDWR))
    except OSError as e:
        who = f"uid {os.geteuid()}"
        return (f"cannot open /dev/fuse ({e.strerror}); it is mode "
                f"{stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}, and this is "
                f"{who}: make it 0666 (as most distributions ship it) or add the user to its group")
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "fusermount3 is not installed (Debian/Ubuntu: apt install fuse3)"
    return None


def namespace_problem() -> Optional[str]:
    """Why ``simfs run`` cannot make its private mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed (util-linux)"
    cmd = ["unshare", "--mount", "true"]
    if os.geteuid() != 0:
        cmd[1:1] = ["--user", "--map-root-user"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        hint = ("" if os.geteuid() == 0 else
                " (unprivileged user namespaces are off: user.max_user_namespaces, or Ubuntu's"
                " kernel.apparmor_restrict_unprivileged_userns=1)")
        return f"`{' '.join(cmd)}` failed: {r.stderr.strip()}{hint}"
    return None


def _unavailable(request, reason: str):
    if request.config.getoption("simfs_require"):
        pytest.fail(f"simfs: {reason}", pytrace=False)
    pytest.skip(f"simfs: {reason}")


# -- the kernel -------------------------------------------------------------------------
def _kernel_args(kernel: Optional[str]) -> list[str]:
    if kernel is None:
        return []
    return ["--profile", kernel] if kernel in PROFILES else ["--kernel", kernel]


@pytest.fixture
def simfs_kernel(request) -> Optional[str]:
    """The kernel the simfs fixtures simulate (None: simfs's default)."""
    if hasattr(request, "param"):
        return request.param
    marker = request.node.get_closest_marker("simfs_kernel")
    if marker is not None:
        return marker.args[0]
    return request.config.getoption("simfs_kernel")


# -- configfs ---------------------------------------------------------------------------
@dataclass
class ConfigfsMount:
    """A mounted simfs tree: ``path`` stands for /sys/kernel/config."""

    path: Path
    state_dir: Path
    kernel: Optional[str]

    @property
    def target(self) -> Path:
        """``<path>/target``: rtslib-fb's configfs_dir."""
        return self.path / "target"

    @property
    def core(self) -> Path:
        return self.path / "target" / "core"

    def read(self, rel: str) -> str:
        """The text of ``<path>/rel``."""
        return (self.path / rel).read_text()

    def write(self, rel: str, text: str) -> None:
        """One write(2) of ``text`` to ``<path>/rel`` (an error is the kernel's errno)."""
        fd = os.open(self.path / rel, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def dmesg(self) -> str:
        """The kernel-style log of this mount (``simfs dmesg``)."""
        return (self.state_dir / "dmesg.log").read_text(errors="replace")


def _mount(where: Path, kernel: Optional[str]) -> ConfigfsMount:
    mp, sdir = where / "config", where / "state"
    mp.mkdir()
    sdir.mkdir()
    r = subprocess.run(_simfs_cmd("mount", "--quiet", *_kernel_args(kernel), "--state-dir",
                                  str(sdir), str(mp)), capture_output=True, text=True,
                       timeout=120)
    if r.returncode == 2:  # the arguments: a kernel this simfs does not know, say
        pytest.fail(f"simfs mount {' '.join(_kernel_args(kernel))}: {r.stderr.strip()}",
                    pytrace=False)
    if r.returncode:
        raise RuntimeError(f"simfs mount failed: {r.stderr.strip()}")
    return ConfigfsMount(mp, sdir, kernel)


def _umount(m: ConfigfsMount) -> None:
    subprocess.run(_simfs_cmd("umount", str(m.path)), capture_output=True, timeout=60)


@pytest.fixture
def configfs(request, simfs_kernel, tmp_path_factory):
    """A fresh simfs tree mounted for this test, unmounted after it."""
    kernel = getattr(request, "param", simfs_kernel)
    problem = fuse_problem()
    if problem:
        _unavailable(request, problem)
    try:
        m = _mount(tmp_path_factory.mktemp("simfs"), kernel)
    except RuntimeError as e:
        _unavailable(request, str(e))
    try:
        yield m
    finally:
        _umount(m)


# -- rtslib-fb --------------------------------------------------------------------------
def _rtslib_packages() -> list:
    """The importable rtslib-fb trees: ``rtslib_fb`` (2.1.x, and 2.2.x's second copy) and
    ``rtslib`` (2.2.x). Each is its own set of module objects."""
    import importlib
    found = []
    for name in ("rtslib_fb", "rtslib"):
        try:
            pkg = importlib.import_module(name)
            mods = {m: importlib.import_module(f"{name}.{m}")
                    for m in ("node", "root", "tcm", "fabric")}
        except ImportError:
            continue
        if not hasattr(mods["root"], "RTSRoot"):  # an unrelated "rtslib"
            continue
        found.append((pkg, mods))
    return found


@pytest.fixture
def rtslib_root(configfs, monkeypatch, tmp_path):
    """``RTSRoot()`` of rtslib-fb, bound to the ``configfs`` tree of this test.

    rtslib-fb has the path built in as the class attribute ``CFSNode.configfs_dir``; it is
    set to this tree for the test. Also for the test only: no mounting of configfs and no
    modprobe (the "modules" are simfs), the dbroot and the default saveconfig file in the
    test's temporary directory (never the machine's /etc/target), and a fresh storage-object
    index cache.
    """
    packages = _rtslib_packages()
    if not packages:
        pytest.skip("rtslib-fb is not importable (Debian: python3-rtslib-fb; pip: rtslib-fb)")
    dbroot = tmp_path / "rtslib-dbroot"
    dbroot.mkdir()

    def noop(*_args, **_kwargs):
        return None

    for _pkg, m in packages:
        monkeypatch.setattr(m["node"].CFSNode, "configfs_dir", str(configfs.target))
        monkeypatch.setattr(m["root"], "mount_configfs", noop)
        for mod in (m["root"], m["fabric"]):
            monkeypatch.setattr(mod, "modprobe", noop)
        monkeypatch.setattr(m["root"].RTSRoot, "_preferred_dbroot", str(dbroot), raising=False)
        monkeypatch.setattr(m["root"], "default_save_file", str(tmp_path / "saveconfig.json"))
        monkeypatch.setattr(m["tcm"], "lock_file", str(tmp_path / "rtslib_backstore.lock"))
        m["tcm"].bs_cache.clear()
    root = packages[0][1]["root"].RTSRoot()
    try:
        yield root
    finally:
        for _pkg, m in packages:
            m["tcm"].bs_cache.clear()


# -- iSCSI ------------------------------------------------------------------------------
@dataclass
class IscsiTarget:
    """An iSCSI target with one LUN, listening on ``host:port``."""

    configfs: ConfigfsMount
    iqn: str
    host: str
    port: int
    lun: int
    backing_file: Path
    size: int

    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """libiscsi's URL of the LUN: ``iscsi://HOST:PORT/IQN/LUN``."""
        return f"iscsi://{self.host}:{self.port}/{self.iqn}/{self.lun}"

    @property
    def tpg(self) -> Path:
        return self.configfs.target / "iscsi" / self.iqn / "tpgt_1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.05)
    return False


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@pytest.fixture
def iscsi_target(configfs, request, tmp_path):
    """A 64 MiB fileio LUN exported on a free 127.0.0.1 port, demo mode (any initiator,
    read-write, no CHAP)."""
    size = 64 << 20
    img = tmp_path / "iscsi-lun0.img"
    with open(img, "wb") as f:
        f.truncate(size)
    dev = configfs.core / "fileio_0" / "lun0"
    dev.mkdir(parents=True)
    _write(dev / "control", f"fd_dev_name={img},fd_dev_size={size}")
    _write(dev / "enable", "1")
    iqn = "iqn.2003-01.org.simfs.pytest:" + "".join(
        c if c.isalnum() else "-" for c in request.node.name.lower())[:160]
    port = free_port()
    t = IscsiTarget(configfs, iqn, "127.0.0.1", port, 0, img, size)
    try:
        (t.tpg / "lun" / "lun_0").mkdir(parents=True)
    except OSError as e:
        pytest.skip(f"simfs: this kernel has no iSCSI fabric here: {e}")
    os.symlink(dev, t.tpg / "lun" / "lun_0" / "lun0")
    (t.tpg / "np" / t.portal).mkdir()
    for name, value in (("generate_node_acls", "1"), ("demo_mode_write_protect", "0"),
                        ("authentication", "0"), ("cache_dynamic_acls", "1")):
        _write(t.tpg / "attrib" / name, value)
    _write(t.tpg / "enable", "1")
    if not _wait_listening(t.host, t.port):
        raise RuntimeError(f"simfs: nothing listens on {t.portal}:\n{configfs.dmesg()[-2000:]}")
    return t


# -- simfs run --------------------------------------------------------------------------
@pytest.fixture
def simfs_run(request, simfs_kernel, tmp_path):
    """``simfs_run(command, **kw)``: run ``command`` (a shell line, or an argument list)
    under ``simfs run``; returns the ``subprocess.CompletedProcess`` (text). Keyword
    arguments: ``check``, ``timeout`` (default 120 s), ``input``, ``env``, ``state_dir``
    (default: one per test, so /etc/target persists between the test's runs), ``kernel``."""
    for problem in (fuse_problem(), namespace_problem()):
        if problem:
            _unavailable(request, problem)
    default_state = tmp_path / "simfs-run"

    def run(command: Union[str, Sequence[str]], *, check: bool = False, timeout: float = 120,
            input: Optional[str] = None, env: Optional[dict] = None,
            state_dir: Optional[Union[str, Path]] = None,
            kernel: Optional[str] = simfs_kernel) -> subprocess.CompletedProcess:
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        cmd = _simfs_cmd("run", *_kernel_args(kernel), "--state-dir",
                         str(state_dir or default_state), "--", *argv)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              input=input, env=env, check=check)

    return run
