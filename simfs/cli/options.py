"""Options shared by ``simfs mount`` and ``simfs run``."""

from __future__ import annotations

import argparse

from simfs.core import kernels


def add_kernel_options(p: argparse.ArgumentParser) -> None:
    """``--kernel VERSION`` and its older spelling ``--profile`` (modern = the newest)."""
    p.add_argument("--kernel", choices=kernels.choices(), metavar="VERSION",
                   help=f"which kernel's target to be: {', '.join(kernels.names())} "
                   f"(default {kernels.NEWEST}; see docs/kernels.md)")
    p.add_argument("--profile", choices=kernels.choices(), metavar="VERSION",
                   help="the same as --kernel (modern is the newest)")


def resolve_kernel(a: argparse.Namespace) -> str:
    """The version ``--kernel``/``--profile`` name (the newest when neither does)."""
    names = {kernels.get(n).name for n in (a.kernel, a.profile) if n}
    if len(names) > 1:
        raise SystemExit(f"simfs: --kernel {a.kernel} and --profile {a.profile} disagree")
    return names.pop() if names else kernels.NEWEST
