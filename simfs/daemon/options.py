"""What a target is mounted with: ``--kernel``, ``--wwn``, ``--listen-any``,
``--iscsi-poll-us``.

One definition for ``simfs mount``, ``simfs run`` and the daemon's own command line: each
adds the options with :func:`add_target_options`, reads them back as a
:class:`TargetOptions` (:func:`target_options`), and hands them on with
:meth:`TargetOptions.argv` (to a ``simfs mount`` or daemon command line) or
:meth:`TargetOptions.to_json` (into ``simfs run``'s namespace). A new option is added here
only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from simfs.core import kernels
from simfs.core.fabric import parse_hardware_ports

#: ``--iscsi-poll-us``'s default (simfs.iscsi.idle_poll; not imported here, the CLI starts
#: without the iSCSI server's modules)
DEFAULT_POLL_US = 100


@dataclass(frozen=True)
class TargetOptions:
    """The kernel version a mount plays and the machine it pretends to be on."""

    #: the kernel version's name (simfs.core.kernels)
    kernel: str = kernels.NEWEST
    #: the machine's hardware fabric ports, ``FABRIC=PORT`` (``--wwn``)
    wwns: tuple[str, ...] = ()
    #: wildcard iSCSI portals listen on every interface, not only loopback
    listen_any: bool = False
    #: the iSCSI server's longest poll before it sleeps, in microseconds (0: never polls)
    iscsi_poll_us: int = DEFAULT_POLL_US

    def argv(self) -> list[str]:
        """The same options as command-line words (read back by :func:`target_options`)."""
        return (["--kernel", self.kernel] + [f"--wwn={w}" for w in self.wwns]
                + (["--listen-any"] if self.listen_any else [])
                + [f"--iscsi-poll-us={self.iscsi_poll_us}"])

    def to_json(self) -> dict:
        return {"kernel": self.kernel, "wwns": list(self.wwns), "listen_any": self.listen_any,
                "iscsi_poll_us": self.iscsi_poll_us}

    @classmethod
    def from_json(cls, d: dict) -> "TargetOptions":
        return cls(kernel=d["kernel"], wwns=tuple(d["wwns"]), listen_any=bool(d["listen_any"]),
                   iscsi_poll_us=int(d.get("iscsi_poll_us", DEFAULT_POLL_US)))


def _microseconds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of microseconds: {text!r}")
    if not 0 <= n <= 10_000:
        raise argparse.ArgumentTypeError(f"{n} is not between 0 and 10000")
    return n


def add_target_options(p: argparse.ArgumentParser, wwn_help: str = "") -> None:
    """``--kernel VERSION`` (and its older spelling ``--profile``), ``--wwn``, ``--listen-any``,
    ``--iscsi-poll-us``; ``wwn_help`` adds what ``--wwn`` does for this command."""
    p.add_argument("--kernel", choices=kernels.choices(), metavar="VERSION",
                   help=f"which kernel's target to be: {', '.join(kernels.names())} "
                   f"(default {kernels.NEWEST}; see docs/kernels.md)")
    p.add_argument("--profile", choices=kernels.choices(), metavar="VERSION",
                   help="the same as --kernel (modern is the newest)")
    p.add_argument("--wwn", action="append", default=[], metavar="FABRIC=PORT",
                   help="a hardware port of this machine for a fabric that drives hardware "
                   "(qla2xxx, efct, tcm_fc, srpt, ibmvscsis, usb_gadget); repeatable"
                   + (f"; {wwn_help}" if wwn_help else ""))
    p.add_argument("--listen-any", action="store_true",
                   help="wildcard iSCSI portals (0.0.0.0, [::]) listen on every interface, "
                   "not only on loopback (docs/iscsi.md)")
    p.add_argument("--iscsi-poll-us", type=_microseconds, default=DEFAULT_POLL_US, metavar="US",
                   help="the longest the iSCSI server polls its connections before it sleeps, "
                   f"in microseconds (default {DEFAULT_POLL_US}; 0: never polls; "
                   "docs/performance.md)")


def resolve_kernel(a: argparse.Namespace) -> str:
    """The version ``--kernel``/``--profile`` name (the newest when neither does)."""
    names = {kernels.get(n).name for n in (a.kernel, a.profile) if n}
    if len(names) > 1:
        raise SystemExit(f"simfs: --kernel {a.kernel} and --profile {a.profile} disagree")
    return names.pop() if names else kernels.NEWEST


def target_options(a: argparse.Namespace) -> TargetOptions:
    """The options :func:`add_target_options` added, as parsed. SystemExit when --kernel and
    --profile disagree; ValueError for a bad --wwn."""
    opts = TargetOptions(kernel=resolve_kernel(a), wwns=tuple(a.wwn), listen_any=a.listen_any,
                         iscsi_poll_us=a.iscsi_poll_us)
    # refuse a bad --wwn, or a driver this kernel has not, before anything is mounted
    parse_hardware_ports(opts.wwns, kernels.get(opts.kernel))
    return opts
