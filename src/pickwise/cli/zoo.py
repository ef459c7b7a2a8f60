"""``pickwise zoo build|list``: the candidate models for model selection."""

from __future__ import annotations

import argparse
from typing import Any

from ._format import format_table

__all__ = ["add_parser"]


# measured with OMP_NUM_THREADS=1 on the 2-core CPU machine shared with five other jobs (2.8 and 11.6 min; see
# docs/selection.md); a free machine is faster
QUICK_COUNT = 8
QUICK_TIME_TEXT = "about 0.3 min on an idle 2-core CPU, 3 min measured with the cores shared"
FULL_TIME_TEXT = "about 2.3 min on an idle 2-core CPU, 12 min measured with the cores shared"


def add_parser(subparsers: Any) -> None:
    """Register ``zoo``."""
    p = subparsers.add_parser(
        "zoo",
        help="build or list the zoo of candidate models",
        description=(
            "Train and store a small zoo of candidate models on the embedded datasets "
            f"(full zoo {FULL_TIME_TEXT}; --quick {QUICK_TIME_TEXT}). Every trained entry must reach "
            "chance + 0.2 accuracy on its source test split (one retry with twice the epochs at half the learning "
            "rate, then it is dropped)."
        ),
    )
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    build = sub.add_parser("build", help=f"train the zoo, keeping entries already built ({FULL_TIME_TEXT})")
    build.add_argument("--root", help="zoo folder (default: $PICKWISE_ZOO_DIR or ~/.cache/pickwise/zoo)")
    build.add_argument(
        "--quick",
        action="store_true",
        help=f"the quick zoo: {QUICK_COUNT} cheap entries, 1 epoch on <= 1,200 images ({QUICK_TIME_TEXT})",
    )
    build.add_argument("--force", action="store_true", help="retrain every requested entry from scratch")
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
            "-" if r.get("accuracy_floor") is None else round(r["accuracy_floor"], 3),
        ]
        for r in records
    ]
    return format_table(["entry", "model", "norm", "source data", "features", "source test acc", "floor"], rows)


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
    missing = [e.name for e in entries if e.name not in {r["name"] for r in records}]
    print(_table(records))
    if missing:
        print(f"zoo: not built (see the messages above): {', '.join(missing)}")
    print(f"zoo: {root}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..zoo import default_zoo_dir, list_zoo

    root = args.root or default_zoo_dir()
    records = list_zoo(root)
    print(_table(records) if records else f"zoo: nothing built in {root}; run `pickwise zoo build`")
    return 0
