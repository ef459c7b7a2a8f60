"""Entry point: builds the argument parser from the subcommand modules and maps user errors to exit status 2.

User errors (:class:`~pickwise.exceptions.PickwiseUserError`) print one line and exit 2. Two exceptions keep their
traceback: a ``ShapeError`` raised inside ``pickwise.nn``, ``models``, ``metrics`` or ``engine`` (the CLI builds
those inputs itself, so a wrong shape there is a pickwise bug), and any user error when ``PICKWISE_TRACEBACK=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..exceptions import PickwiseUserError, ShapeError
from . import analyze, demo, listing, reproduce, select, transfer, zoo

__all__ = ["build_parser", "main"]


class _OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, like every other user error.

    The line is ``pickwise: error: ...`` and the exit status 2; ``--help`` still prints the full usage.
    """

    def error(self, message: str) -> typing.NoReturn:
        print(f"pickwise: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


# commands that belong to no task; task commands (``train``, ...) come from the tables in pickwise.tasks
_SUBCOMMANDS = (demo, listing, analyze, reproduce, select, transfer, zoo)


def _task_registrars() -> list[typing.Callable[[typing.Any], None]]:
    """``add_parser`` functions of every task subcommand, from each task's ``CLI_COMMANDS`` table."""
    import importlib

    from ..tasks import cli_commands

    registrars = []
    for target in cli_commands().values():
        module_name, _, function = target.partition(":")
        registrars.append(getattr(importlib.import_module(module_name), function or "add_parser"))
    return registrars


# Packages whose inputs the CLI builds itself: a ShapeError raised there means pickwise fed its own layers or
# accumulators a wrong tensor (a bug), not that the user gave something wrong.
_INTERNAL_SHAPE_PACKAGES = ("nn", "models", "metrics", "engine")


def _is_internal(err: BaseException) -> bool:
    """True for a :class:`ShapeError` raised inside a layer, model, accumulator or the engine (keep its traceback)."""
    if not isinstance(err, ShapeError) or err.__traceback__ is None:
        return False
    frames = traceback.extract_tb(err.__traceback__)
    parts = Path(frames[-1].filename).parts
    if "pickwise" not in parts:
        return False
    inner = parts[len(parts) - 1 - parts[::-1].index("pickwise") + 1 :]
    return bool(inner) and inner[0] in _INTERNAL_SHAPE_PACKAGES


def build_parser() -> argparse.ArgumentParser:
    """The full ``pickwise`` parser."""
    parser = _OneLineErrorParser(
        prog="pickwise",
        description="Learning to normalize, learning to group and model selection for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"pickwise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _task_registrars():  # task commands first (``train`` heads the list, as before)
        register(subparsers)
    for module in _SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help/--version (0) or a usage error already printed in one line (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"pickwise: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            if sys.stderr is sys.__stderr__:  # a real process, not a caller (or test) that captures warnings
                warnings.showwarning = show_warning  # one line per warning, like errors
            return int(args.handler(args) or 0)
    except PickwiseUserError as err:
        if _is_internal(err) or os.environ.get("PICKWISE_TRACEBACK", "") not in ("", "0"):
            raise  # a bug (or a user who asked for the traceback): keep it
        print(f"pickwise: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pickwise: interrupted", file=sys.stderr)
        return 130
