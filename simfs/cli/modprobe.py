"""``simfs modprobe MOUNTPOINT MODULE``: load a fabric module into a mount, and the
``modprobe`` that ``simfs run`` puts first on PATH.

Like the kernel, a mount autoloads only iscsi_target_mod and tcm_loop (``mkdir
target/iscsi``, ``target/loopback``); ``mkdir target/vhost`` is EINVAL until
``modprobe tcm_vhost`` (vhost_scsi) — rtslib-fb does exactly that: mkdir, modprobe on
failure, mkdir again. The fabric modules: vhost_scsi (tcm_vhost), tcm_fc, tcm_qla2xxx,
ib_srpt, usb_f_tcm (tcm_usb_gadget), xen-scsiback, ibmvscsis, efct (5.14+), tcm_remote
(6.4+); on an older ``--kernel`` those two are "not found", as modprobe says on such a
machine. Any other module name succeeds quietly (target_core_mod, configfs: simfs itself).

Inside ``simfs run`` the machine is freshly booted: only target_core_mod is loaded, and
this ``modprobe`` loads the others into the run's mount as a tool asks for them (rtslib-fb
reads the run's /proc/modules and runs modprobe only for a module it does not find there).
``modprobe target_core_iblock`` (and _file, _pscsi, _user) loads that backend module;
the kernel loads all four at the first ``mkdir core/<hba>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simfs.cli.common import control_request
from simfs.daemon import control


def add_parser(sub) -> None:
    p = sub.add_parser("modprobe", help="load a fabric module (vhost, qla2xxx, ...) into a mount",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mountpoint")
    p.add_argument("module", help="e.g. tcm_vhost, tcm_qla2xxx, ib_srpt")
    p.set_defaults(func=cmd_modprobe)


def _load(sdir: Path, module: str) -> dict:
    return control.request(sdir, {"op": "modprobe", "module": module})


def cmd_modprobe(a: argparse.Namespace) -> int:
    req = {"op": "modprobe", "module": a.module}
    return 0 if control_request("simfs modprobe", a.mountpoint, req) is not None else 1


def install_shim(bindir: Path, mount_state_dir: Path) -> None:
    """``simfs run``: a ``modprobe`` that loads fabric modules into the run's mount."""
    shim = bindir / "modprobe"
    shim.write_text("#!/bin/sh\n# simfs run: the target modules are simfs itself\n"
                    f"exec '{sys.executable}' -m simfs.cli.modprobe '{mount_state_dir}' \"$@\"\n")
    shim.chmod(0o755)


def shim(argv: list[str]) -> int:
    """modprobe [-q] [-v] [-a] [-r] MODULE [PARAM=VALUE...]: succeeds, but for a fabric
    module of a later kernel than the mount's (modprobe's "Module X not found", exit 1)."""
    sdir, args = Path(argv[0]), argv[1:]
    opts = [x for x in args if x.startswith("-")]
    names = [x for x in args if not x.startswith("-")]
    if any(o in ("-r", "--remove") for o in opts) or not names:
        return 0
    modules = names if any(o in ("-a", "--all") for o in opts) else names[:1]
    quiet = any(o in ("-q", "--quiet") for o in opts)
    rc = 0
    for module in modules:
        try:
            rep = _load(sdir, module)
        except OSError:
            continue
        if rep.get("not_found"):  # a fabric module this kernel version does not have yet
            if not quiet:
                print(f"modprobe: {rep['error']}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:]))
