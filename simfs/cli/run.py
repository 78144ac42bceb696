"""``simfs run [--profile P] [--state-dir DIR] (--shell | -- CMD ...)``.

Runs a command in a private mount namespace in which ``/sys/kernel/config`` is a fresh simfs
mount, so tools that hard-code that path (targetcli, rtslib-fb, LIO shell scripts) work
unchanged, without the kernel module. As root the namespace is a mount namespace; as an
ordinary user it is a user + mount namespace (``unshare -Urm``), so no root is needed.

Inside, and only there: a tmpfs over ``/sys/kernel`` makes room for ``config``; ``/etc`` and
``/var`` are overlaid so what tools write there (``/etc/target``, Debian's
``/etc/rtslib-fb-target`` saveconfig and backups, ``/var/target`` APTPL files) lands in the
state directory (``DIR/etc``, ``DIR/var``) and persists from run to run; ``modprobe`` succeeds quietly (the
"module" is simfs); a private D-Bus system bus is started when ``dbus-daemon`` exists
(Debian's targetcli asks the system bus for tcmu-runner's service).
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

from simfs.daemon import state

CONFIGFS = "/sys/kernel/config"
OVERLAID = ("/etc", "/var")  # kept in the state dir between runs
#: directories made in the overlays' upper layers, so they are the command's own even in a
#: user namespace (where the machine's root-owned directories stay read-only)
WRITABLE = {"/etc": ("target/backup", "target/pr", "target/alua", "rtslib-fb-target/backup"),
            "/var": ("target/pr", "target/alua")}


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a command where /sys/kernel/config is simfs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="modern", choices=["modern", "v3.0"])
    p.add_argument("--state-dir", help="kept between runs: the log, /etc/target, /var/target "
                   "(default: ~/.local/state/simfs/run/<profile>)")
    p.add_argument("--shell", action="store_true", help="open an interactive shell there")
    p.add_argument("--dev", action="append", default=[], metavar="/dev/NAME=DEVICE",
                   help="make /dev/NAME inside the namespace stand for DEVICE (e.g. "
                   "--dev /dev/sdd=/dev/loop1 for a script that names /dev/sdd)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                   help="on SIGINT, SIGTERM or SIGHUP: how long the command may take to "
                   "finish before it is killed and the run cleans up (default 5)")
    p.set_defaults(func=cmd_run)


def cmd_run(a: argparse.Namespace) -> int:
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if a.shell:
        command = [os.environ.get("SHELL", "/bin/bash")]
    if not command:
        print("simfs run: name a command after --, or use --shell", file=sys.stderr)
        return 2
    if shutil.which("unshare") is None:
        print("simfs run: unshare(1) (util-linux) is needed", file=sys.stderr)
        return 1
    sdir = Path(a.state_dir) if a.state_dir else state.state_home() / "run" / a.profile
    sdir = sdir.resolve()
    sdir.mkdir(parents=True, exist_ok=True)
    devs = []
    for item in a.dev:
        name, eq, source = item.partition("=")
        if not eq or not name.startswith("/dev/") or ".." in name.split("/"):
            print(f"simfs run: --dev wants /dev/NAME=DEVICE, not {item!r}", file=sys.stderr)
            return 2
        devs.append((name, os.path.realpath(source)))
    spec = json.dumps({"profile": a.profile, "state_dir": str(sdir), "command": command,
                       "devs": devs})
    ns = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        ns[1:1] = ["--user", "--map-root-user"]
    # how a run stops (SIGINT, SIGTERM, SIGHUP; --grace): simfs/cli/run_signals.py
    from simfs.cli import run_signals
    stopping = json.dumps(run_signals.spec(a.grace))
    return run_signals.run_forwarding(ns + [sys.executable, "-m", "simfs.cli.run", spec,
                                            stopping])


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
    sock = scratch / "system_bus_socket"
    r = subprocess.run(["dbus-daemon", "--session", f"--address=unix:path={sock}", "--fork",
                        "--print-pid"], capture_output=True, text=True)
    if r.returncode != 0:
        return 0
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={sock}"
    return int(r.stdout.split()[0])


def inner(spec: dict, stopping: dict) -> int:
    """Inside the namespace: set up, run the command, and always clean up (docs/run.md);
    ``stopping`` is what run_signals.spec() made outside."""
    from simfs.cli import run_signals
    stops = run_signals.StopSignals(stopping["ignored"]).install()
    run_signals.guard_inner(stopping["parent"])
    sdir = Path(spec["state_dir"])
    cleanup = _Cleanup(sdir / ".ns", sdir)
    try:
        return _inner(spec, stops, cleanup, stopping)
    finally:
        cleanup.run()


class _Cleanup:
    """What a run leaves to undo, whatever stopped it: the mount (the daemon exits with
    it), the private bus, then /etc and /var copied to the state directory."""

    def __init__(self, scratch: Path, sdir: Path) -> None:
        self.scratch, self.sdir = scratch, sdir
        self.bus = 0
        self.first: list = []  # more to undo before the unmount: add(callable)

    def add(self, undo) -> None:
        """Run ``undo()`` at cleanup, before the unmount (last added, first run)."""
        self.first.insert(0, undo)

    def run(self) -> None:
        from simfs.cli import run_signals
        for undo in self.first:
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - the rest of the cleanup must still run
                print(f"simfs run: cleanup: {e}", file=sys.stderr)
        if _simfs_mounted(CONFIGFS):
            subprocess.run([sys.executable, "-m", "simfs", "umount", CONFIGFS])
        if self.bus:
            run_signals.stop_process(self.bus)
        _persist(self.scratch, self.sdir)
        run_signals.reap_orphans()


def _simfs_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path and " - fuse.simfs " in line for line in f)


def _inner(spec: dict, stops, cleanup: _Cleanup, stopping: dict) -> int:
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
    modprobe = bindir / "modprobe"
    modprobe.write_text("#!/bin/sh\n# simfs run: the target modules are simfs itself\nexit 0\n")
    modprobe.chmod(0o755)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    mount = subprocess.run([sys.executable, "-m", "simfs", "mount", "--quiet", "--profile",
                            spec["profile"], "--state-dir", str(sdir / "mount"), CONFIGFS])
    if mount.returncode != 0:
        return mount.returncode
    bus = _dbus(scratch, env)
    cleanup.bus = bus
    if stops.stopping:
        return 128 + stops.received[0]
    from simfs.cli import run_signals
    return run_signals.Command(spec["command"], env, stops, stopping).run()


if __name__ == "__main__":
    sys.exit(inner(json.loads(sys.argv[1]), json.loads(sys.argv[2])))
