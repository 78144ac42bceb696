"""The mount daemon: builds the target core and its tree, and serves it over FUSE."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simfs.daemon import state
from simfs.daemon.control import ControlServer
from simfs.daemon.options import TargetOptions, add_target_options, target_options
from simfs.daemon.proc_modules import ProcModules
from simfs.klog import KernelLog
from simfs.scsi import ScsiEngine
from simfs.core.core import TargetCore
from simfs.core.fabric import set_hardware_ports
from simfs.core.profile import get_profile


def serve(mountpoint: str, opts: TargetOptions = TargetOptions(), state_dir: str | None = None,
          dbroot: str | None = None, allow_other: bool = False, ready_fd: int = -1,
          debug: bool = False, proc_modules: str | None = None) -> int:
    """Mount and serve until unmounted. Writes "ready" to ``ready_fd`` once the tree is up.
    ``opts``: the kernel version, the machine's hardware fabric ports, where wildcard iSCSI
    portals listen (simfs.daemon.options). ``proc_modules``: a file that lists the loaded
    target modules as /proc/modules does (``simfs run``'s, simfs/daemon/proc_modules.py)."""
    from simfs.daemon.fuse_adapter import SimfsOperations, mount

    profile = get_profile(opts.kernel)
    mountpoint = state.resolve(mountpoint)  # before mounting: later it would stat ourselves
    sdir = Path(state_dir) if state_dir else state.default_state_dir(mountpoint)
    sdir.mkdir(parents=True, exist_ok=True)
    logfile = state.log_path(sdir)
    try:
        logfile.unlink()  # a mount is a fresh "modprobe": its log starts empty
    except OSError:
        pass
    log = KernelLog(logfile)
    core = TargetCore(profile, log=log, state_dir=sdir, dbroot=dbroot)
    set_hardware_ports(core, opts.wwns)
    if proc_modules:
        ProcModules(Path(proc_modules), core).attach()
    tree = core.build_tree()
    engine = ScsiEngine(core)
    # the engine registers itself as core.engine: one for every entry point (CLI, iSCSI, loopback)
    control = ControlServer(core, engine, sdir)
    tracer = _trace_server(core, tree, engine, sdir, profile.name)
    iscsi = _iscsi_server(core, log, opts.listen_any, opts.iscsi_poll_us)
    if iscsi is not None:
        tracer.hub.attach(events=iscsi)  # refused logins, dropped connections

    def ready() -> None:
        try:
            control.start()
        except OSError as e:  # the tree still works; only `simfs scsi` needs the socket
            log.err(f"simfs: control socket {control.path} unavailable: {e}")
        try:
            tracer.start()
        except OSError as e:  # only `simfs trace/record/show` need it
            log.err(f"simfs: trace socket {tracer.path} unavailable: {e}")
        if iscsi is not None:
            iscsi.start()
        state.write_record(mountpoint, sdir, os.getpid(), profile.name)
        if ready_fd >= 0:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)

    def destroy() -> None:
        control.stop()
        tracer.stop()
        if iscsi is not None:
            iscsi.stop()
        with tree.lock:
            core.shutdown()
        state.remove_record(mountpoint)

    ops = SimfsOperations(tree, mountpoint, log, on_ready=ready, on_destroy=destroy)
    # SIGTERM, SIGHUP, SIGINT: libfuse's handlers end the loop, its teardown unmounts and
    # calls destroy() (tests/mount/test_daemon_signals.py)
    try:
        mount(ops, mountpoint, foreground=True, allow_other=allow_other, debug=debug)
    finally:
        state.remove_record(mountpoint)
        log.close()
    return 0


def _trace_server(core: TargetCore, tree, engine: ScsiEngine, sdir: Path, profile: str):
    """``trace.sock``: `simfs trace`, `simfs record` and `simfs show` (simfs/daemon/trace.py)."""
    from simfs.daemon.show import handle as show
    from simfs.daemon.trace import TraceHub, TraceServer
    hub = TraceHub()
    hub.attach(tree=tree, engine=engine)
    server = TraceServer(hub, sdir, show=lambda req: show(core, req),
                         info={"profile": profile, "pid": os.getpid()})
    if os.environ.get("SIMFS_TRACE_LOG"):  # trace from the first operation (docs/introspection.md)
        server.log_to(os.environ["SIMFS_TRACE_LOG"])
    return server


def _iscsi_server(core: TargetCore, log: KernelLog, listen_any: bool = False,
                  poll_us: int = 0):
    """The iSCSI target server, listening where enabled TPGs' np/ portals say."""
    if core.profile.legacy:
        return None  # the v3.0 engine's iSCSI fabric was a separate module (LIO-Target)
    try:
        from simfs.iscsi import IscsiServer
        from simfs.iscsi.server import listen_hosts
        from simfs_plugins.fabrics.iscsi import TreeIscsiBackend
    except ImportError as e:
        log.warn(f"simfs: iSCSI server unavailable: {e}")
        return None
    backend = TreeIscsiBackend(core)
    server = IscsiServer(backend, klog=log, listen_any=listen_any, poll_us=poll_us)
    # called from configfs stores (np/, enable): never wait for the server thread there
    core.events.iscsi_portals_changed = lambda: server.request_sync(backend.portals())
    core.events.iscsi_listen_hosts = lambda ip: listen_hosts(ip, listen_any)
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="simfs-daemon")
    add_target_options(p)
    p.add_argument("--state-dir")
    p.add_argument("--dbroot")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--ready-fd", type=int, default=-1)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--proc-modules")
    p.add_argument("mountpoint")
    a = p.parse_args(argv)
    return serve(a.mountpoint, target_options(a), a.state_dir, a.dbroot, a.allow_other,
                 a.ready_fd, a.debug, a.proc_modules)


if __name__ == "__main__":
    sys.exit(main())
