"""Video person re-identification: MSTAT (Tang et al., IEEE TMM 2023), its data, losses, samplers and CLI."""

from __future__ import annotations

CLI_COMMANDS: dict[str, str] = {}
