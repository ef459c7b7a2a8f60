"""The engine task: loss composition against F.cross_entropy, MCU gradients, mIoU against a naive count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pickwise.tasks.adaseg.contrastive import MCUConfig, MultiLevelContrastiveLoss
from pickwise.tasks.adaseg.losses import LossWeights, masked_cross_entropy, pseudo_labels
from pickwise.tasks.adaseg.task import ADASegModel, ADASegTask


class Net(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.body = nn.Conv2d(3, 5, 3, padding=1)
        self.cls, self.proj = nn.Conv2d(5, k, 1), nn.Conv2d(5, 4, 1)

    def forward(self, x):
        f = torch.relu(self.body(x))
        return {"logits": self.cls(f), "features": self.proj(f), "stride": 1}


def _batch(seed=0, hw=6):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(2, 3, hw, hw, generator=g)
    tgt = torch.randn(2, 3, hw, hw, generator=g)
    ls = torch.randint(0, 3, (2, hw, hw), generator=g)
    lt = torch.full((2, hw, hw), 255)
    lt[0, :2, :3] = torch.randint(0, 3, (2, 3), generator=g)
    return src, ls, tgt, lt, torch.tensor([0, 1])


def test_loss_is_source_ce_plus_active_ce_without_mcu():
    torch.manual_seed(0)
    net = Net()
    model = ADASegModel(net, MultiLevelContrastiveLoss(3, 4))
    task = ADASegTask(3, LossWeights(active=0.7), use_mcu=False)
    src, ls, tgt, lt, idx = _batch()
    loss, stats = task.training_loss(model, (src, ls, tgt, lt, idx), torch.device("cpu"), torch.Generator())
    logits = net(torch.cat([src, tgt]))["logits"]
    want = F.cross_entropy(logits[:2], ls) + 0.7 * F.cross_entropy(logits[2:], lt, ignore_index=255)
    torch.testing.assert_close(loss, want)
    assert stats["count"].item() == 4 and stats["mcu"].item() == 0


def test_mcu_adds_a_finite_term_with_gradients_into_the_projection_head():
    torch.manual_seed(0)
    net = Net()
    model = ADASegModel(net, MultiLevelContrastiveLoss(3, 4, MCUConfig(pseudo_threshold=0.0)))
    task = ADASegTask(3)
    batch = _batch(1)
    loss, stats = task.training_loss(model, batch, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and stats["mcu"].item() > 0
    loss.backward()
    assert net.proj.weight.grad is not None and net.proj.weight.grad.abs().sum() > 0
    assert "contrastive.centres_src" in model.state_dict()  # the engine checkpoints the contrastive state
    assert model.contrastive.seen_src.sum() > 0


def test_empty_target_labels_and_pseudo_labels():
    logits = torch.tensor([[[[4.0]], [[0.0]]], [[[0.1]], [[0.0]]]])  # confident, then unsure
    assert pseudo_labels(logits, 0.9).flatten().tolist() == [0, 255]
    zero = masked_cross_entropy(torch.randn(1, 3, 2, 2, requires_grad=True), torch.full((1, 2, 2), 255))
    assert zero.item() == 0.0 and zero.requires_grad
    task = ADASegTask(3, use_mcu=True)
    src, ls, tgt, _, idx = _batch(2)
    loss, stats = task.training_loss(
        ADASegModel(Net(), MultiLevelContrastiveLoss(3, 4)),
        (src, ls, tgt, torch.full_like(ls, 255), idx),
        torch.device("cpu"),
        torch.Generator(),
    )
    assert torch.isfinite(loss) and stats["ce_tgt"].item() == 0


def test_evaluation_miou_matches_a_naive_count():
    torch.manual_seed(3)
    net = Net().eval()
    task = ADASegTask(3)
    accs = task.make_accumulators()
    images = torch.randn(5, 3, 6, 6)
    labels = torch.randint(0, 3, (5, 6, 6))
    labels[0, 0] = 255
    for sl in (slice(0, 2), slice(2, 5)):
        task.evaluation_step(net, (images[sl], labels[sl], None), torch.device("cpu"), accs)
    out = task.compute(accs)
    pred = net(images)["logits"].argmax(1)
    valid = labels != 255
    ious = []
    for c in range(3):
        tp = ((pred == c) & (labels == c) & valid).sum().item()
        fp = ((pred == c) & (labels != c) & valid).sum().item()
        fn = ((pred != c) & (labels == c) & valid).sum().item()
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
            assert abs(out[f"IoU/{c}"] - ious[-1]) < 1e-12
    assert abs(out["mIoU"] - sum(ious) / len(ious)) < 1e-12


def test_one_cross_entropy_equals_the_separate_means_with_pseudo_labels_and_modes():
    torch.manual_seed(1)
    net = Net()
    model = ADASegModel(net, None)
    src, ls, tgt, lt, idx = _batch(4)
    weights = LossWeights(source=1.3, active=0.7, pseudo=0.4, pseudo_threshold=0.4)
    logits = net(torch.cat([src, tgt]))["logits"]
    pl = pseudo_labels(logits[2:].detach(), 0.4)
    pl[lt != 255] = 255
    assert (pl != 255).any() and (lt != 255).any()  # both target terms are exercised
    want = (
        1.3 * F.cross_entropy(logits[:2], ls)
        + 0.7 * F.cross_entropy(logits[2:], lt, ignore_index=255)
        + 0.4 * F.cross_entropy(logits[2:], pl, ignore_index=255)
    )
    loss, stats = ADASegTask(3, weights, use_mcu=False).training_loss(model, (src, ls, tgt, lt, idx), "cpu", None)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(stats["ce_src"] / 4, F.cross_entropy(logits[:2], ls).detach())
    torch.testing.assert_close(stats["ce_tgt"] / 4, F.cross_entropy(logits[2:], lt, ignore_index=255).detach())
    got = torch.autograd.grad(loss, net.cls.weight)[0]
    torch.testing.assert_close(got, torch.autograd.grad(want, net.cls.weight)[0])
    only_src, _ = ADASegTask(3, weights, source_only=True).training_loss(model, (src, ls, tgt, lt, idx), "cpu", None)
    torch.testing.assert_close(only_src, 1.3 * F.cross_entropy(net(src)["logits"], ls))
    only_tgt, _ = ADASegTask(3, LossWeights(active=0.5), target_only=True).training_loss(
        model, (src, ls, tgt, ls, idx), "cpu", None
    )
    torch.testing.assert_close(only_tgt, 0.5 * F.cross_entropy(net(tgt)["logits"], ls))
