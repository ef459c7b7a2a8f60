"""Cheap tensor comparisons for tests."""

from __future__ import annotations

import torch


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float | None = None, atol: float | None = None) -> None:
    """``|a - b| <= atol + rtol |b|`` elementwise, torch's default tolerances per dtype (cheaper than
    ``torch.testing.assert_close``, whose first call imports for seconds)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    double = torch.float64 in (a.dtype, b.dtype)
    rtol = (1e-7 if double else 1.3e-6) if rtol is None else rtol
    atol = (1e-7 if double else 1e-5) if atol is None else atol
    diff = (a.double() - b.double()).abs()
    bound = atol + rtol * b.double().abs()
    assert bool((diff <= bound).all()), f"max abs diff {float(diff.max()):.3g}"
