"""Task systems built on the engine: each package holds a task, its config, its run function and its CLI table.

``classification`` is today's task (cross-entropy, top-k accuracy); ``reid``, ``adaseg`` and ``isp`` come with their
issues. A task package exposes ``CLI_COMMANDS``: a mapping from a ``pickwise`` subcommand name to
``"module:function"``, where ``function(subparsers)`` registers that subcommand; :func:`cli_commands` collects the
tables for :mod:`pickwise.cli.main`.

Example:
    >>> cli_commands()["train"]
    'pickwise.cli.train:add_parser'
"""

from __future__ import annotations

import importlib

__all__ = ["TASKS", "cli_commands"]

TASKS: tuple[str, ...] = ("classification", "reid", "adaseg", "isp")


def cli_commands() -> dict[str, str]:
    """``{subcommand: "module:function"}`` from every task's ``CLI_COMMANDS`` table, in :data:`TASKS` order.

    Raises:
        RuntimeError: Two tasks claim the same subcommand (a packaging bug, not a user error).
    """
    table: dict[str, str] = {}
    for task in TASKS:
        module = importlib.import_module(f"{__name__}.{task}")
        for name, target in getattr(module, "CLI_COMMANDS", {}).items():
            if name in table:
                raise RuntimeError(f"pickwise.tasks: subcommand {name!r} is claimed by two tasks")
            table[name] = target
    return table
