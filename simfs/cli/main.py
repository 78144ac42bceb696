"""``simfs``: mount, unmount and read the log of a simulated target configfs."""

from __future__ import annotations

from simfs.cli import early_signals

early_signals.install()  # before the imports below, which are most of the start-up

import argparse  # noqa: E402
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from simfs import __version__
from simfs.cli.common import find_state_dir
from simfs.daemon import state
from simfs.daemon.options import add_target_options, target_options


def _is_mount(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    except OSError:
        return os.path.ismount(real)


def cmd_mount(a: argparse.Namespace) -> int:
    mp = a.mountpoint
    if not os.path.isdir(mp):
        print(f"simfs: {mp}: not a directory", file=sys.stderr)
        return 2
    try:
        opts = target_options(a)
    except ValueError as e:
        print(f"simfs: {e}", file=sys.stderr)
        return 2
    if a.foreground:
        from simfs.daemon import serve
        return serve(mp, opts, a.state_dir, a.dbroot, a.allow_other, debug=a.debug,
                     proc_modules=a.proc_modules)
    mp = state.resolve(mp)
    sdir = Path(a.state_dir) if a.state_dir else state.default_state_dir(mp)
    sdir.mkdir(parents=True, exist_ok=True)
    err_path = sdir / "daemon.err"
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "simfs.daemon", "--ready-fd", str(w), *opts.argv(),
           "--state-dir", str(sdir)]
    if a.dbroot:
        cmd += ["--dbroot", a.dbroot]
    if a.proc_modules:
        cmd += ["--proc-modules", a.proc_modules]
    if a.allow_other:
        cmd.append("--allow-other")
    cmd.append(mp)
    # Its own process group (no terminal signal reaches it), but not a new session: with
    # the kernel's autogroup scheduling (sched_autogroup_enabled) a session is a scheduling
    # group, and a daemon in a group of its own competes with every other group on each
    # request it answers; on a busy machine that made a FUSE round trip wait milliseconds
    # for a CPU (docs/performance.md).
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=err,
                                stderr=err, process_group=0)
    os.close(w)
    deadline = time.monotonic() + a.timeout
    got = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], 0.2)
        if ready:
            chunk = os.read(r, 64)
            got += chunk
            if b"ready" in got or not chunk:
                break
        if proc.poll() is not None:
            break
    os.close(r)
    if b"ready" not in got:
        if proc.poll() is None:
            proc.terminate()
        print(f"simfs: mounting {mp} failed", file=sys.stderr)
        sys.stderr.write(err_path.read_text(errors="replace")[-4000:])
        return 1
    if not a.quiet:
        print(f"simfs: {opts.kernel} target configfs mounted at {mp} "
              f"(state: {sdir}, pid {proc.pid})")
        print(f"export TARGET={mp}/target/core")
    return 0


def _unmount_commands(mp: str) -> tuple[list[str], list[str]]:
    """The plain unmount, and the lazy one for a daemon that died under its mount."""
    for name in ("fusermount3", "fusermount"):
        path = shutil.which(name)
        if path:
            return [path, "-u", mp], [path, "-uz", mp]
    return ["umount", mp], ["umount", "-l", mp]


def cmd_umount(a: argparse.Namespace) -> int:
    mp = state.resolve(a.mountpoint)
    rec = state.read_record(mp)
    plain, lazy = _unmount_commands(mp)
    res = subprocess.run(plain, capture_output=True, text=True)
    if res.returncode != 0:
        # A killed daemon leaves "Transport endpoint is not connected": detach it lazily.
        res_lazy = subprocess.run(lazy, capture_output=True, text=True)
        if res_lazy.returncode != 0:
            sys.stderr.write(res.stderr or res_lazy.stderr)
            return 1
    if rec:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and state._alive(rec["pid"]):
            time.sleep(0.05)
    state.remove_record(mp)
    return 0


def cmd_dmesg(a: argparse.Namespace) -> int:
    sdir = find_state_dir(a.mountpoint)
    if sdir is None:
        return 2
    path = state.log_path(sdir)
    if not path.exists():
        print(f"simfs: no log at {path}", file=sys.stderr)
        return 1
    with open(path, "r", errors="replace") as f:
        sys.stdout.write(f.read())
        sys.stdout.flush()
        while a.follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simfs", description="The Linux SCSI target's configfs "
                                "tree (/sys/kernel/config/target) in userspace.")
    p.add_argument("--version", action="version", version=f"simfs {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mount", help="mount a fresh target configfs (as after modprobe)")
    add_target_options(m)
    m.add_argument("--state-dir", help="where the log and on-disk state (dbroot) live")
    m.add_argument("--dbroot", help="initial target/dbroot (default: <state-dir>/var/target)")
    m.add_argument("--foreground", action="store_true", help="serve in this process")
    m.add_argument("--allow-other", action="store_true",
                   help="let other users see the mount (needs user_allow_other)")
    m.add_argument("--timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    m.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    # simfs run's /proc/modules (simfs/daemon/proc_modules.py)
    m.add_argument("--proc-modules", help=argparse.SUPPRESS)
    m.add_argument("-q", "--quiet", action="store_true")
    m.add_argument("mountpoint", help="the configfs root: MOUNTPOINT/target/core/... appears")
    m.set_defaults(func=cmd_mount)

    u = sub.add_parser("umount", help="unmount and close every backstore")
    u.add_argument("mountpoint")
    u.set_defaults(func=cmd_umount)

    d = sub.add_parser("dmesg", help="the kernel-style log of a mount")
    d.add_argument("--follow", "-w", action="store_true", help="wait for new lines")
    d.add_argument("mountpoint", nargs="?")
    d.set_defaults(func=cmd_dmesg)

    from simfs.cli.run import add_parser as add_run_parser
    from simfs.cli.scsi import add_parser as add_scsi_parser
    add_scsi_parser(sub)
    add_run_parser(sub)
    from simfs.cli.modprobe import add_parser as add_modprobe_parser
    add_modprobe_parser(sub)
    from simfs.cli.fault import add_parser as add_fault_parser
    add_fault_parser(sub)
    from simfs.cli.trace import add_parser as add_trace_parser  # trace, record, show
    add_trace_parser(sub)
    from simfs.cli.ceph import add_parser as add_ceph_parser  # a throwaway cluster (user:rbd)
    add_ceph_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `simfs scsi ... read 0 8 | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
