"""ONNX export of the ISP nets matches eager PyTorch in onnxruntime to 1e-4."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pickwise.exceptions import DataNotFoundError, InvalidParameterError
from pickwise.models.isp import AWNet, HaarDWT, HaarIWT, ISPUNet, MWISPNet, PyNET
from pickwise.tasks.isp.export import check_onnx, export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize(
    ("name", "build", "size"),
    [
        ("unet", lambda: ISPUNet(width=4, depth=2), (20, 24)),  # padded inside: the trace keeps the padding
        (
            "haar",  # MW-ISPNet's wavelet ops in a tiny graph (the whole net is in the slow test)
            lambda: torch.nn.Sequential(
                HaarDWT(),
                torch.nn.Conv2d(16, 16, 3, padding=1),
                HaarIWT(),
                torch.nn.Conv2d(4, 12, 1),
                torch.nn.PixelShuffle(2),
            ),
            (16, 16),
        ),
    ],
)
def test_export_matches_eager(tmp_path: Path, name: str, build, size) -> None:
    torch.manual_seed(0)
    net = build()
    path = export_onnx(net, tmp_path / f"{name}.onnx", packed_size=size)
    assert path.is_file()
    assert check_onnx(net, path) < 1e-4
    x = torch.rand(1, 4, *size)
    assert check_onnx(net, path, x) < 1e-4


@pytest.mark.slow  # PyNET's and AWNet's graphs take tens of seconds to trace
def test_export_pynet_awnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for name, net, size in (
        ("mwisp", MWISPNet(c1=4, c2=4, c3=4, n_blocks=1, reduction=2), (16, 16)),
        ("pynet", PyNET(width=2), (32, 32)),
        ("awnet", AWNet(base=8, blocks=(1,) * 5, n_dense=1, growth=4), (48, 48)),
    ):
        path = export_onnx(net, tmp_path / f"{name}.onnx", packed_size=size)
        assert check_onnx(net, path) < 1e-4


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError):
        export_onnx(ISPUNet(width=2, depth=1), tmp_path / "x.onnx", packed_size=(0, 8))
    with pytest.raises(DataNotFoundError):
        check_onnx(ISPUNet(width=2, depth=1), tmp_path / "missing.onnx")
