"""Convolutions that learn their channel grouping (DGConv) and their export to plain grouped convolutions."""

from .complexity import ResourceConstraint, complexity, dense_complexity, group_budget, learned_groups
from .dgconv import DGConv2d
from .export import ChannelPermute, ExportError, dgconv_to_conv, export_grouped_convs

__all__ = [
    "ChannelPermute",
    "DGConv2d",
    "ExportError",
    "ResourceConstraint",
    "complexity",
    "dense_complexity",
    "dgconv_to_conv",
    "export_grouped_convs",
    "group_budget",
    "learned_groups",
]
