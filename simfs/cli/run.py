"""``simfs run [--kernel VERSION] [--state-dir DIR] (--shell | -- CMD ...)``.

Runs a command in a private mount namespace in which ``/sys/kernel/config`` is a fresh simfs
mount, so tools that hard-code that path (targetcli, rtslib-fb, LIO shell scripts) work
unchanged, without the kernel module. As root the namespace is a mount namespace; as an
ordinary user it is a user + mount namespace (``unshare -Urm``), so no root is needed.

Inside, and only there: a tmpfs over ``/sys/kernel`` makes room for ``config``; ``/etc`` and
``/var`` are overlaid so what tools write there (``/etc/target``, Debian's
``/etc/rtslib-fb-target`` saveconfig and backups, ``/var/target`` APTPL files) lands in the
state directory (``DIR/etc``, ``DIR/var``) and persists from run to run; as on a freshly
booted machine only target_core_mod is loaded: ``modprobe`` (a shim) loads a fabric module
into the mount, ``mkdir target/iscsi`` loads iscsi_target_mod as the kernel does, and
``/proc/modules`` says what is loaded (the "modules" are simfs); ``--wwn`` hardware
ports appear in /sys (simfs/cli/sysfs.py); a private D-Bus system bus is started when
``dbus-daemon`` exists, and on it tcmu-runner's service ``org.kernel.TCMUService1`` for
simfs's ``user:`` handlers (Debian's targetcli asks the system bus for it: ``docs/handlers.md``).

SIGINT, SIGTERM and SIGHUP all stop a run the same way: the command gets the signal and
``--grace`` seconds, then the daemon, the bus and the mount go and /etc and /var are kept
(run_signals.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

# Only what takes over the stop signals is imported up here: the rest is imported where it
# is used, so the process inside the namespace holds SIGINT/SIGTERM/SIGHUP sooner.
from simfs.cli import run_signals

CONFIGFS = "/sys/kernel/config"
OVERLAID = ("/etc", "/var")  # kept in the state dir between runs
#: directories made in the overlays' upper layers, so they are the command's own even in a
#: user namespace (where the machine's root-owned directories stay read-only)
WRITABLE = {"/etc": ("target/backup", "target/pr", "target/alua", "rtslib-fb-target/backup"),
            "/var": ("target/pr", "target/alua")}


def add_parser(sub) -> None:
    from simfs.daemon.options import add_target_options

    p = sub.add_parser("run", help="run a command where /sys/kernel/config is simfs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_options(p, wwn_help="shown in /sys as its driver would show it "
                       "(docs/fabrics.md)")
    p.add_argument("--state-dir", help="kept between runs: the log, /etc/target, /var/target "
                   "(default: ~/.local/state/simfs/run/<kernel>)")
    p.add_argument("--shell", action="store_true", help="open an interactive shell there")
    p.add_argument("--dev", action="append", default=[], metavar="/dev/NAME=DEVICE",
                   help="make /dev/NAME inside the namespace stand for DEVICE (e.g. "
                   "--dev /dev/sdd=/dev/loop1 for a script that names /dev/sdd)")
    p.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                   help="on SIGINT, SIGTERM or SIGHUP: how long the command may take to "
                   "finish before it is killed and the run cleans up (default 5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_run)


def cmd_run(a: argparse.Namespace) -> int:
    # here, not at the top: the process inside the namespace starts faster without the
    # daemon package, and so takes over SIGINT/SIGTERM/SIGHUP sooner
    from simfs.daemon import state
    from simfs.daemon.options import target_options

    # the default run keeps its state under run/modern whichever kernel is the newest
    label = a.kernel or a.profile or "modern"
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if a.shell:
        command = [os.environ.get("SHELL", "/bin/bash")]
    if not command:
        print("simfs run: name a command after --, or use --shell", file=sys.stderr)
        return 2
    if shutil.which("unshare") is None:
        print("simfs run: unshare(1) (util-linux) is needed", file=sys.stderr)
        return 1
    devs = []
    for item in a.dev:
        name, eq, source = item.partition("=")
        if not eq or not name.startswith("/dev/") or ".." in name.split("/"):
            print(f"simfs run: --dev wants /dev/NAME=DEVICE, not {item!r}", file=sys.stderr)
            return 2
        devs.append((name, os.path.realpath(source)))
    try:
        opts = target_options(a)
    except ValueError as e:
        print(f"simfs run: {e}", file=sys.stderr)
        return 2
    # only once the options are good: a refused run leaves nothing behind
    sdir = Path(a.state_dir) if a.state_dir else state.state_home() / "run" / label
    sdir = sdir.resolve()
    sdir.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"target": opts.to_json(), "state_dir": str(sdir), "command": command,
                       "devs": devs, **run_signals.spec(a.grace)})
    ns = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        ns[1:1] = ["--user", "--map-root-user"]
    return run_signals.run_forwarding(ns + [sys.executable, "-m", "simfs.cli.run", spec])


# -- inside the namespace -------------------------------------------------------------------
def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _overlay(scratch: Path, sdir: Path) -> None:
    """Overlay /etc and /var on a scratch tmpfs, starting from what earlier runs kept in the
    state dir; /run becomes an empty tmpfs (lock files such as targetcli's)."""
    _mount("-t", "tmpfs", "simfs-run", "/run")
    for top in OVERLAID:
        name = top.strip("/")
        upper, work = scratch / f"{name}.upper", scratch / f"{name}.work"
        upper.mkdir()
        work.mkdir()
        saved = sdir / name
        if saved.is_dir():
            shutil.copytree(saved, upper, symlinks=True, dirs_exist_ok=True)
        for sub in WRITABLE[top]:
            (upper / sub).mkdir(parents=True, exist_ok=True)
        try:
            _mount("-t", "overlay", "overlay", "-o",
                   f"lowerdir={top},upperdir={upper},workdir={work}", top)
        except subprocess.CalledProcessError:
            print(f"simfs run: cannot overlay {top}; {top}/target is the machine's",
                  file=sys.stderr)


def _devices(scratch: Path, devs: list) -> None:
    """Overlay /dev and bind each DEVICE onto its /dev/NAME (made in the upper layer, so it
    works in a user namespace too, where mknod does not)."""
    upper, work = scratch / "dev.upper", scratch / "dev.work"
    upper.mkdir()
    work.mkdir()
    for name, _ in devs:
        node = upper / name[len("/dev/"):]
        node.parent.mkdir(parents=True, exist_ok=True)
        node.touch()
    _mount("-t", "overlay", "overlay", "-o", f"lowerdir=/dev,upperdir={upper},workdir={work}",
           "/dev")
    for name, source in devs:
        _mount("--bind", source, name)


def _persist(scratch: Path, sdir: Path) -> None:
    """Keep what the command changed under /etc and /var (the overlays' upper layers)."""
    for top in OVERLAID:
        name = top.strip("/")
        made = scratch / f"{name}.upper"
        saved = sdir / name
        if made.is_dir():
            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(made, saved, symlinks=True, ignore_dangling_symlinks=True,
                            ignore=_whiteouts)


def _whiteouts(directory: str, names: list[str]) -> list[str]:
    """overlayfs records deletions as 0:0 character devices; they are not files to keep."""
    out = []
    for n in names:
        try:
            st = os.lstat(os.path.join(directory, n))
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            out.append(n)
    return out


def _dbus(scratch: Path, env: dict) -> int:
    if shutil.which("dbus-daemon") is None:
        return 0
    # in the namespace's own /run (a Unix socket path holds at most 107 bytes, which a
    # state directory under a long $HOME exceeds)
    sock = Path("/run/dbus/system_bus_socket")
    sock.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dbus-daemon", "--session", f"--address=unix:path={sock}", "--fork",
                        "--print-pid"], capture_output=True, text=True)
    if r.returncode != 0:
        return 0
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={sock}"
    return int(r.stdout.split()[0])


def inner(spec: dict) -> int:
    """Inside the namespace: set up, run the command, and always clean up (docs/run.md)."""
    stops = run_signals.StopSignals(spec.get("ignored", ())).install()
    run_signals.unblock_stops()
    run_signals.guard_inner(spec["parent"])
    sdir = Path(spec["state_dir"])
    cleanup = _Cleanup(sdir / ".ns", sdir)
    try:
        return _inner(spec, stops, cleanup)
    finally:
        cleanup.run()


class _Cleanup:
    """What a run leaves to undo, whatever stopped it: the TCMU service, the mount (the
    daemon exits with it), the private bus, then /etc and /var copied to the state
    directory."""

    def __init__(self, scratch: Path, sdir: Path) -> None:
        self.scratch, self.sdir = scratch, sdir
        self.bus = 0
        self.tcmu = None

    def run(self) -> None:
        if self.tcmu is not None:
            from simfs.daemon import tcmu_dbus
            tcmu_dbus.stop(self.tcmu)
        if _simfs_mounted(CONFIGFS):
            subprocess.run([sys.executable, "-m", "simfs", "umount", CONFIGFS])
        if self.bus:
            run_signals.stop_process(self.bus)
        _persist(self.scratch, self.sdir)
        run_signals.reap_orphans()


def _simfs_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path and " - fuse.simfs " in line for line in f)


def _inner(spec: dict, stops: run_signals.StopSignals, cleanup: _Cleanup) -> int:
    from simfs.cli import modprobe, proc_modules, sysfs
    from simfs.core import kernels
    from simfs.core.fabric import parse_hardware_ports
    from simfs.daemon import tcmu_dbus
    from simfs.daemon.options import TargetOptions

    sdir = Path(spec["state_dir"])
    scratch = sdir / ".ns"
    scratch.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "simfs-run", str(scratch))
    _mount("-t", "tmpfs", "simfs-run", "/sys/kernel")
    os.mkdir(CONFIGFS)
    _overlay(scratch, sdir)
    if spec.get("devs"):
        _devices(scratch, spec["devs"])
    if stops.stopping:  # asked to stop while setting up: no mount, no command
        return 128 + stops.received[0]
    env = dict(os.environ)
    bindir = scratch / "bin"
    bindir.mkdir()
    modprobe.install_shim(bindir, sdir / "mount")  # fabric modules load into the mount
    opts = TargetOptions.from_json(spec["target"])
    sysfs.provide(scratch, parse_hardware_ports(opts.wwns))  # hardware fabrics' ports in /sys
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    # rtslib's module check: the daemon lists each target module as it loads
    modules = proc_modules.provide(scratch, env)
    # the kernel starts at /etc/target when that is a directory (target_init_dbroot), as it
    # is here: the namespace's own /etc, kept in the state dir, so no host file is touched
    dbroot = [] if kernels.get(opts.kernel).legacy else ["--dbroot", "/etc/target"]
    mount = subprocess.run([sys.executable, "-m", "simfs", "mount", "--quiet", *opts.argv(),
                            "--state-dir", str(sdir / "mount"), "--proc-modules", str(modules),
                            *dbroot, CONFIGFS])
    if mount.returncode != 0:
        return mount.returncode
    bus = _dbus(scratch, env)
    cleanup.bus = bus
    cleanup.tcmu = tcmu_dbus.start(env, CONFIGFS) if bus else None  # user: handlers, targetcli
    if stops.stopping:
        return 128 + stops.received[0]
    return run_signals.Command(spec["command"], env, stops, spec).run()


if __name__ == "__main__":
    sys.exit(inner(json.loads(sys.argv[1])))
