"""Learned smartphone ISP (AIM 2020, Zurich RAW-to-RGB): RAW I/O, unprocessing, losses, tiled inference, CLI."""

from __future__ import annotations

CLI_COMMANDS: dict[str, str] = {"isp": "pickwise.tasks.isp.cli:add_parser"}
