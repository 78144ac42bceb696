"""``lioexport add|list|remove``: the command line of lioexport."""

from __future__ import annotations

import argparse
import sys

from rtslib_fb import RTSRoot

from . import export, exports, unexport


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lioexport", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="export a file as LUN 0 of a new target")
    a.add_argument("path")
    a.add_argument("iqn")
    a.add_argument("--portal", default="127.0.0.1:3260")
    a.add_argument("--size", type=int, help="bytes, when the file does not exist yet")
    a.add_argument("--allow", action="append", default=[], metavar="INITIATOR_IQN")
    sub.add_parser("list", help="list exports")
    r = sub.add_parser("remove", help="remove a target")
    r.add_argument("iqn")
    args = p.parse_args(argv)
    root = RTSRoot()
    if args.cmd == "add":
        e = export(root, args.path, args.iqn, args.portal, args.size, tuple(args.allow))
        print(f"exported {e.path} ({e.size} bytes) as {e.iqn} on {e.portal}")
    elif args.cmd == "list":
        for e in exports(root):
            who = ",".join(e.initiators) or "any initiator"
            print(f"{e.iqn} {e.portal} {e.path} {e.size} {who}")
    else:
        try:
            unexport(root, args.iqn)
        except LookupError as e:
            print(f"lioexport: {e}", file=sys.stderr)
            return 1
    return 0
