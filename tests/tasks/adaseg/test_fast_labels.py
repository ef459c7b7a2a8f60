"""numba label kernels against the torch code they replace: class maxima (ties, NaN) and the majority vote."""

from __future__ import annotations

import pytest
import torch

from pickwise.tasks.adaseg import fast_labels
from pickwise.tasks.adaseg.contrastive import downsample_labels

pytest.importorskip("numba")


@pytest.fixture
def torch_only(monkeypatch):
    def use_torch():
        monkeypatch.setattr(fast_labels, "_KERNELS", None)
        monkeypatch.setattr(fast_labels, "_TRIED", True)

    return use_torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_max_equals_torch_max_with_ties_and_nan(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(3, 5, 7, 6, generator=g, dtype=dtype), dim=1)
    x[0, 1:3, 0, 0] = x[0, :, 0, 0].max() + 1  # a tie: the first class wins
    x[1, :, 2, 2] = 0.2  # all equal
    x[2, 3, 1, 1] = float("nan")
    x[2, 1, 4, 4], x[2, 4, 4, 4] = float("nan"), float("nan")  # two NaNs: the first one
    got_v, got_i = fast_labels.class_max(x)
    want_v, want_i = x.max(1)
    assert torch.equal(got_i, want_i)
    torch.testing.assert_close(got_v, want_v, equal_nan=True, rtol=0, atol=0)
    noncontig = x.permute(0, 1, 3, 2)
    assert torch.equal(fast_labels.class_max(noncontig)[1], noncontig.max(1)[1])


GRIDS = [((3, 8, 12), (2, 3), 0.75), ((2, 10, 10), (2, 5), 0.7), ((1, 9, 6), (3, 2), 0.5), ((2, 6, 6), (3, 3), 1.0)]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(("shape", "size", "min_ratio"), GRIDS)
def test_vote_kernel_equals_the_torch_vote(torch_only, sparse, shape, size, min_ratio):
    g = torch.Generator().manual_seed(sum(shape))
    for density in (0.05, 0.5, 1.0):
        labels = torch.randint(0, 4, shape, generator=g)
        labels[torch.rand(shape, generator=g) > density] = 255
        labels[0, 0, 0] = 7  # out of the class table: ignored
        labels[-1, :2, :2] = -1
        assert fast_labels.vote_counts_available(labels, size)
        fast = downsample_labels(labels, size, 5, min_ratio=min_ratio, sparse=sparse)
        torch_only()
        ref = downsample_labels(labels, size, 5, min_ratio=min_ratio, sparse=sparse)
        assert not fast_labels.vote_counts_available(labels, size)
        assert torch.equal(fast, ref)
        fast_labels._TRIED = False  # numba again for the next density (the fixture restores the attributes)


def test_vote_hand_cases_both_paths(torch_only):
    lab = torch.tensor([[[0, 0, 1, 2], [0, 255, 1, 2], [3, 3, 2, 2], [3, 3, 2, 2]]])
    sparse = torch.full((1, 4, 4), 255)
    sparse[0, 0, 1], sparse[0, 2, 2], sparse[0, 3, 3] = 2, 1, 0
    for _ in range(2):
        assert downsample_labels(lab, (2, 2), 4).tolist() == [[[0, 255], [3, 2]]]  # 3/4 kept; a 2/4 tie ignored
        assert downsample_labels(sparse, (2, 2), 3, sparse=True).tolist() == [[[2, 255], [255, 255]]]
        torch_only()
