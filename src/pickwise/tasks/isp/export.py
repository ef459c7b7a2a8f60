"""ONNX export of ISP networks at a fixed packed tile size, checked against eager PyTorch in onnxruntime.

The models pad their input to a size multiple in Python, so an export is traced for one input size: export at the
tile size of :func:`~pickwise.tasks.isp.tiling.tiled_forward` and run full images tile by tile. The exported graph
uses standard ONNX operators only (convolutions, PixelShuffle as DepthToSpace, resize, reductions). AWNet's pyramid
pooling needs an output side ``2h`` divisible by 6 (``h`` a multiple of 48 after padding) for ONNX's pooling.

Example:
    >>> import torch  # doctest: +SKIP
    >>> net = create_model("isp_unet_tiny").eval()  # doctest: +SKIP
    >>> export_onnx(net, "unet.onnx", packed_size=(128, 128))  # doctest: +SKIP
    >>> check_onnx(net, "unet.onnx") < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from ...exceptions import DataNotFoundError, InvalidParameterError

__all__ = ["check_onnx", "export_onnx", "onnx_session"]


def export_onnx(model: nn.Module, path: str | Path, packed_size: tuple[int, int] = (128, 128), opset: int = 17) -> Path:
    """Export ``model`` (eval mode) for packed RAW ``[1, 4, h, w]`` to ``path`` (written atomically).

    Input ``raw`` float32 ``[1, 4, h, w]``, output ``rgb`` float32 ``[1, 3, 2h, 2w]``.

    Raises:
        InvalidParameterError: Bad ``packed_size``, or an operator ONNX cannot express at this size (one line).
    """
    h, w = (int(v) for v in packed_size)
    if h < 1 or w < 1:
        raise InvalidParameterError(f"export_onnx: packed_size must be two positive ints; got {packed_size!r}")
    was_training = model.training
    model.eval()
    x = torch.rand(1, 4, h, w)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                buf,  # type: ignore[arg-type]  # the stub says path-like; the exporter writes to file objects too
                dynamo=False,
                opset_version=opset,
                input_names=["raw"],
                output_names=["rgb"],
            )
    except Exception as err:  # the exporter's own error types vary across torch versions
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidParameterError(
            f"export_onnx: {type(model).__name__} cannot be exported at packed size {h}x{w} ({first[:200]})"
        ) from None
    finally:
        model.train(was_training)
    from ...utils.io import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def onnx_session(path: str | Path) -> object:
    """An onnxruntime CPU session for ``path``.

    Raises:
        DataNotFoundError: onnxruntime is not installed, or the file does not exist.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise DataNotFoundError("onnx: needs the optional package onnxruntime (`pip install onnxruntime`)") from None
    if not Path(path).is_file():
        raise DataNotFoundError(f"onnx: file not found: {path}")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_onnx(model: nn.Module, path: str | Path, raw: torch.Tensor | None = None, seed: int = 0) -> float:
    """Max absolute difference between onnxruntime and eager PyTorch on ``raw`` (default: a seeded random input).

    The input size must be the exported one.
    """
    session = onnx_session(path)
    shape = session.get_inputs()[0].shape  # type: ignore[attr-defined]
    if raw is None:
        raw = torch.rand(*[int(s) for s in shape], generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        ref = model(raw.float()).float()
    finally:
        model.train(was_training)
    out = session.run(None, {"raw": raw.float().numpy()})[0]  # type: ignore[attr-defined]
    return float((torch.from_numpy(out) - ref).abs().max())
