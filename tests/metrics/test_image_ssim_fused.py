"""The fused numba SSIM kernel against the torch path: same values, dtypes, odd shapes, threads, fallbacks."""

from __future__ import annotations

import os
import threading

import pytest
import torch

import pickwise.metrics.image as image
from pickwise.metrics._ssim_fused import fused_ssim_and_cs, fused_ssim_available
from pickwise.metrics.image import gaussian_window, ms_ssim, ssim

pytest.importorskip("numba")


def _pair(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.nn.functional.avg_pool2d(torch.rand(*shape, generator=g, dtype=torch.float64), 3, 1, 1)
    pred = (target + 0.1 * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return pred.to(dtype), target.to(dtype)


def _torch_path(pred, target, win_size=11, sigma=1.5, data_range=1.0, k1=0.01, k2=0.03):
    win = gaussian_window(win_size, sigma, dtype=pred.dtype)
    return image._ssim_and_cs_batch(pred, target, win, data_range, k1, k2)


@pytest.mark.parametrize(
    ("shape", "win_size"),
    [((2, 3, 37, 52), 11), ((1, 1, 11, 11), 11), ((3, 2, 20, 13), 7), ((1, 4, 64, 9), 3), ((2, 1, 5, 5), 1)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_torch_path(shape, win_size, dtype):
    pred, target = _pair(shape, dtype, seed=sum(shape))
    win = gaussian_window(win_size, 1.5, dtype=dtype)
    got_ssim, got_cs = fused_ssim_and_cs(pred, target, win, 0.01**2, 0.03**2)
    ref_ssim, ref_cs = _torch_path(pred, target, win_size)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert got_ssim.dtype == dtype and got_ssim.shape == shape[:2]
    torch.testing.assert_close(got_ssim, ref_ssim, atol=tol, rtol=0)
    torch.testing.assert_close(got_cs, ref_cs, atol=tol, rtol=0)


def test_fused_handles_data_range_and_non_contiguous_inputs():
    pred, target = _pair((2, 3, 30, 40), seed=3)
    pred255, target255 = (pred * 255).transpose(2, 3), (target * 255).transpose(2, 3)  # non-contiguous views
    got = ssim(pred255, target255, data_range=255, reduction="none")
    ref = _torch_path(pred255.contiguous(), target255.contiguous(), data_range=255)[0].mean(1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_fused_is_used_without_autograd_and_skipped_with_it():
    pred, target = _pair((1, 3, 16, 16))
    assert fused_ssim_available(pred, target)
    assert not fused_ssim_available(pred.requires_grad_(True), target)
    with torch.no_grad():
        assert fused_ssim_available(pred, target)
    assert not fused_ssim_available(pred.half(), target.half())
    loss = 1 - ssim(pred, target)  # the torch path keeps the graph
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_fused_result_does_not_depend_on_thread_count():
    pred, target = _pair((3, 3, 48, 50), seed=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ssim(pred, target, reduction="none")
        torch.set_num_threads(2)
        two = ssim(pred, target, reduction="none")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_fused_kernel_leaves_torch_thread_count_alone():
    pred, target = _pair((1, 3, 24, 24), seed=9)
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            ssim(pred, target)
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_concurrent_calls_from_python_threads():
    pred, target = _pair((4, 3, 64, 64), seed=6)
    expected = ssim(pred, target, reduction="none")
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(3):
                results.append(ssim(pred, target, reduction="none"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 9
    assert all(torch.equal(r, expected) for r in results)


def test_ms_ssim_fused_equals_torch_path(monkeypatch):
    pred, target = _pair((2, 3, 171, 183), seed=7)
    fused = ms_ssim(pred, target, reduction="none")
    monkeypatch.setattr(image, "fused_ssim_available", lambda p, t: False)
    torch.testing.assert_close(fused, ms_ssim(pred, target, reduction="none"), atol=1e-5, rtol=0)


def test_without_numba_the_torch_path_answers(monkeypatch):
    import pickwise.metrics._ssim_fused as fused

    pred, target = _pair((2, 3, 30, 30), seed=8)
    expected = ssim(pred, target, reduction="none")
    monkeypatch.setattr(fused, "_KERNEL", None)
    monkeypatch.setattr(fused, "_TRIED", True)
    assert not fused_ssim_available(pred, target)
    torch.testing.assert_close(ssim(pred, target, reduction="none"), expected, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        fused_ssim_and_cs(pred, target, gaussian_window(), 1e-4, 9e-4)


def _score_in_child(queue, pred, target):  # runs in a forked child, as a DataLoader worker would
    torch.set_num_threads(1)
    queue.put((fused_ssim_available(pred, target), float(ssim(pred, target))))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_after_kernel_launch_takes_the_torch_path():
    import multiprocessing

    pred, target = _pair((2, 3, 40, 40), seed=10)
    expected = float(ssim(pred, target))  # launches the kernel's threads in this process
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue, pred, target))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    used_fused, value = queue.get(timeout=10)
    assert not used_fused and value == pytest.approx(expected, abs=1e-5)
