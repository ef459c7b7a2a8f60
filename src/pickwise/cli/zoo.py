"""``pickwise zoo build|list``: the candidate models for model selection."""

from __future__ import annotations

import argparse
from typing import Any

from ._format import format_table

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``zoo``."""
    p = subparsers.add_parser(
        "zoo",
        help="build or list the zoo of candidate models",
        description="Train and store a small zoo of candidate models on the embedded datasets.",
    )
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    build = sub.add_parser("build", help="train the zoo (keeps entries already built)")
    build.add_argument("--root", help="zoo folder (default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)")
    build.add_argument("--quick", action="store_true", help="smaller training runs (~1 min on 2 cores)")
    build.add_argument("--force", action="store_true", help="rebuild entries that exist")
    build.add_argument("--only", help="comma-separated entry names")
    build.set_defaults(handler=_build)
    listing = sub.add_parser("list", help="list built entries")
    listing.add_argument("--root")
    listing.set_defaults(handler=_list)


def _table(records: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["name"],
            r["model"],
            r["norm"],
            r.get("source_data") or "-",
            r["num_features"],
            "-" if r.get("source_test_acc") is None else round(r["source_test_acc"], 4),
        ]
        for r in records
    ]
    return format_table(["entry", "model", "norm", "source data", "features", "source test acc"], rows)


def _build(args: argparse.Namespace) -> int:
    from ..exceptions import InvalidParameterError
    from ..zoo import DEFAULT_ZOO, QUICK_ZOO, build_zoo, default_zoo_dir

    entries = QUICK_ZOO if args.quick else DEFAULT_ZOO
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - {e.name for e in entries}
        if unknown:
            raise InvalidParameterError(f"zoo: unknown entries {sorted(unknown)}; known: {[e.name for e in entries]}")
        entries = tuple(e for e in entries if e.name in names)
    root = args.root or default_zoo_dir()
    records = build_zoo(root, entries, force=args.force)
    print(_table(records))
    print(f"zoo: {root}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..zoo import default_zoo_dir, list_zoo

    root = args.root or default_zoo_dir()
    records = list_zoo(root)
    print(_table(records) if records else f"zoo: nothing built in {root}; run `pickwise zoo build`")
    return 0
