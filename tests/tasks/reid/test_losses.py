"""Re-ID losses against naive float64 loops: label-smoothed CE, batch-hard triplet (margin and soft), centre loss."""

from __future__ import annotations

import math

import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.tasks.reid.losses import (
    CenterLoss,
    batch_hard_triplet_loss,
    label_smoothed_cross_entropy,
    reid_loss,
)


def _naive_ce(logits, targets, eps):
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        n = len(row)
        for i, v in enumerate(row):
            q = (1 - eps + eps / n) if i == t else eps / n
            total -= q * (v - lse)
    return total / len(targets)


def _naive_triplet(x, pids, margin, metric="euclidean"):
    x, pids = x.double().tolist(), pids.tolist()

    def d(a, b):
        if metric == "euclidean":
            return math.sqrt(max(sum((u - v) ** 2 for u, v in zip(a, b)), 1e-12))
        na, nb = math.sqrt(sum(u * u for u in a)), math.sqrt(sum(v * v for v in b))
        return 1 - sum(u * v for u, v in zip(a, b)) / (na * nb)

    terms = []
    for i in range(len(x)):
        pos = [d(x[i], x[j]) for j in range(len(x)) if pids[j] == pids[i]]
        neg = [d(x[i], x[j]) for j in range(len(x)) if pids[j] != pids[i]]
        if not neg:
            continue
        gap = max(pos) - min(neg)
        terms.append(max(0.0, margin + gap) if margin else math.log1p(math.exp(gap)))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_label_smoothed_ce_matches_naive_and_torch(eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 5, (7,), generator=g)
    got = float(label_smoothed_cross_entropy(logits, targets, eps))
    assert got == pytest.approx(_naive_ce(logits, targets, eps), rel=1e-10)
    ref = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=eps)
    assert got == pytest.approx(float(ref), rel=1e-10)


@pytest.mark.parametrize("margin", [0.3, 2.0, None])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_batch_hard_triplet_matches_naive_loop(margin, metric):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 5])  # pid 5 has no other positive
    got = float(batch_hard_triplet_loss(x, pids, margin, metric))
    assert got == pytest.approx(_naive_triplet(x, pids, margin, metric), rel=1e-9, abs=1e-12)


def test_batch_hard_triplet_gradcheck_and_degenerate_batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.autograd.gradcheck(lambda f: batch_hard_triplet_loss(f, pids, None), (x,))
    assert torch.autograd.gradcheck(lambda f: batch_hard_triplet_loss(f, pids, 5.0), (x,))
    one_id = batch_hard_triplet_loss(x, torch.zeros(8, dtype=torch.long), 0.3)
    assert float(one_id.detach()) == 0.0 and one_id.requires_grad
    with pytest.raises(ShapeError):
        batch_hard_triplet_loss(x, pids[:3])
    with pytest.raises(InvalidParameterError):
        batch_hard_triplet_loss(x, pids, -1.0)


def test_center_loss_value_and_decoupled_gradients():
    torch.manual_seed(0)
    center = CenterLoss(3, 4).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    pids = torch.tensor([0, 1, 1, 2, 0])
    c = center.centers.detach()
    naive = sum(0.5 * float(((x[i] - c[pids[i]]) ** 2).sum()) for i in range(5)) / 5
    assert float(center(x, pids)) == pytest.approx(naive, rel=1e-12)
    w = 0.01
    loss = center.weighted(x, pids, w)
    assert float(loss) == pytest.approx(w * naive, rel=1e-12)
    loss.backward()
    # features: w * dL/dx = w * (x_i - c_{y_i}) / B ; centres: unweighted -(1/B) sum_{i: y_i=j} (x_i - c_j)
    assert torch.allclose(x.grad, w * (x.detach() - c[pids]) / 5)
    expected = torch.zeros_like(c)
    for i in range(5):
        expected[pids[i]] -= (x.detach()[i] - c[pids[i]]) / 5
    assert torch.allclose(center.centers.grad, expected)


def test_reid_loss_sums_stages_with_weights():
    g = torch.Generator().manual_seed(3)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = [torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    feats = [torch.randn(6, d, generator=g, dtype=torch.float64) for d in (4, 5, 6)]
    out = reid_loss({"logits": logits, "features": feats}, pids, label_smoothing=0.1, margin=0.3)
    manual = sum((_naive_ce(lg, pids, 0.1) + _naive_triplet(f, pids, 0.3)) / 3 for lg, f in zip(logits, feats))
    assert float(out["loss"]) == pytest.approx(manual, rel=1e-9)
    weighted = reid_loss(
        {"logits": logits, "features": feats}, pids, stage_weights=[1.0, 0.0, 2.0], id_weight=0.5, margin=None
    )
    manual = sum(
        w * (0.5 * _naive_ce(lg, pids, 0.1) + _naive_triplet(f, pids, None))
        for w, lg, f in zip([1.0, 0.0, 2.0], logits, feats)
    )
    assert float(weighted["loss"]) == pytest.approx(manual, rel=1e-9)
    with pytest.raises(InvalidParameterError):
        reid_loss({"logits": logits, "features": feats}, pids, stage_weights=[1.0])
    with pytest.raises(ShapeError):
        reid_loss(torch.zeros(6, 3), pids)
