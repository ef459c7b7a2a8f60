"""Learned smartphone ISP (AIM 2020 challenge, Zurich RAW-to-RGB): RAW I/O, data, training, inference.

- :mod:`.raw`: CFA patterns, ZRR packing (B, Gb, R, Gr), the three published normalisations, RAW PNG and DNG I/O,
  :class:`ZRRDataset`;
- :mod:`.unprocess`: Brooks et al. (CVPR 2019) unprocessing and the forward ``process`` that inverts it;
- :mod:`.classical`: :class:`ClassicalISP`, the non-learned pipeline (Malvar/Menon demosaicing, white balance, CCM,
  gamma) with the learned models' interface;
- :mod:`.synth`, :mod:`.datasets`: the embedded ``isp-synth`` pairs in ZRR layout and :func:`load_isp_dataset`;
- :mod:`.losses`, :mod:`.task`, :mod:`.config`, :mod:`.run`: losses, :class:`ISPTask`, :class:`ISPRunConfig`,
  :func:`run_isp` / :func:`evaluate_isp` (PyNET's level-wise schedule as resumable phases);
- :mod:`.tiling`, :mod:`.export`: tiled full-resolution inference, x8 self-ensemble, ONNX export;
- :mod:`.figures`, :mod:`.cli`: figures and ``pickwise isp train | evaluate | infer | make-data``.

The networks are in :mod:`pickwise.models.isp`, the metrics in :mod:`pickwise.metrics.image`.

Example:
    >>> import torch
    >>> from pickwise.tasks.isp import pack_bayer, unpack_bayer
    >>> mosaic = torch.arange(16.0).reshape(4, 4)
    >>> bool((unpack_bayer(pack_bayer(mosaic, "RGGB"), "RGGB") == mosaic).all())
    True
"""

from __future__ import annotations

from .classical import ClassicalISP
from .config import ISPRunConfig, resolve_isp_config
from .datasets import load_isp_dataset
from .export import export_onnx
from .raw import ZRRDataset, normalize_raw, pack_bayer, read_dng, read_raw_png, unpack_bayer, write_dng
from .run import evaluate_isp, run_isp
from .synth import make_isp_synth
from .task import ISPTask
from .tiling import self_ensemble, tiled_forward
from .unprocess import CameraParams, process, unprocess

CLI_COMMANDS: dict[str, str] = {"isp": "pickwise.tasks.isp.cli:add_parser"}

__all__ = [
    "CLI_COMMANDS",
    "CameraParams",
    "ClassicalISP",
    "ISPRunConfig",
    "ISPTask",
    "ZRRDataset",
    "evaluate_isp",
    "export_onnx",
    "load_isp_dataset",
    "make_isp_synth",
    "normalize_raw",
    "pack_bayer",
    "process",
    "read_dng",
    "read_raw_png",
    "resolve_isp_config",
    "run_isp",
    "self_ensemble",
    "tiled_forward",
    "unpack_bayer",
    "unprocess",
    "write_dng",
]
