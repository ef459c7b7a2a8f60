"""Active domain adaptation for semantic segmentation: ADA-MCU (ACCV 2022), acquisition, contrastive units, CLI."""

from __future__ import annotations

CLI_COMMANDS: dict[str, str] = {"adaseg": "pickwise.tasks.adaseg.cli:add_parser"}
