"""``pickwise reproduce TOPIC``: the papers' claims in miniature, on embedded data.

Each topic lives in ``pickwise.reproduce.<topic>`` and provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TOPICS", "add_parser"]

# topic -> (module, one-line help)
TOPICS: dict[str, tuple[str, str]] = {
    "norms": ("pickwise.reproduce.norms", "SN/SSN/EN/PN vs BN/GN across batch sizes on Fashion-MNIST"),
    "convert": (
        "pickwise.reproduce.convert",
        "pretrained MobileNetV2 with BN kept vs converted to SN/SSN/EN, fine-tuned at batch 2 and 4",
    ),
    "dgconv": ("pickwise.reproduce.dgconv", "learned vs fixed channel groups (DGConv / G-ResNeXt)"),
    "selection": ("pickwise.reproduce.selection", "EMMS, LogME and baselines ranked against fine-tuned accuracy"),
    "reid": ("pickwise.reproduce.reid", "MSTAT vs frame-averaged baselines and its ablations on reid-synth"),
    "adaseg": ("pickwise.reproduce.adaseg", "ADA-MCU vs random/entropy/RIPU acquisition at equal pixel budgets"),
    "isp": ("pickwise.reproduce.isp", "classical ISP vs U-Net, PyNET, MW-ISPNet-, AWNet-style on embedded RAW pairs"),
}


def add_parser(subparsers: Any) -> None:
    """Register ``reproduce`` and one sub-subcommand per available topic."""
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the papers' claims in miniature",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    topics = p.add_subparsers(dest="topic", metavar="TOPIC")
    for topic, (module_name, help_text) in TOPICS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # topic not implemented in this build
            raise
        sub = topics.add_parser(topic, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
