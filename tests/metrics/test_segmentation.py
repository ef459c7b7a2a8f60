"""Segmentation metrics against a plain numpy reference and torchmetrics' MulticlassJaccardIndex."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.metrics.segmentation import SegmentationMetric, confusion_matrix, mean_iou


def _numpy_confmat(pred: np.ndarray, target: np.ndarray, k: int, ignore: int = 255) -> np.ndarray:
    """Loop reference: one count per pixel."""
    m = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist()):
        if t == ignore:
            continue
        m[t, p] += 1
    return m


def _numpy_iou(m: np.ndarray) -> tuple[list[float], float]:
    """Textbook IoU = TP / (TP + FP + FN), NaN when the class never occurs; mIoU = mean over defined ones."""
    ious = []
    for c in range(m.shape[0]):
        tp = m[c, c]
        fp = m[:, c].sum() - tp
        fn = m[c, :].sum() - tp
        ious.append(float("nan") if tp + fp + fn == 0 else tp / (tp + fp + fn))
    defined = [v for v in ious if v == v]
    return ious, sum(defined) / len(defined)


def _random_case(seed: int, k: int = 5, shape=(3, 9, 11), absent: int | None = None):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, shape, generator=g)
    target[torch.rand(shape, generator=g) < 0.2] = 255
    logits = torch.randn(shape[0], k, *shape[1:], generator=g, dtype=torch.float64)
    if absent is not None:  # a class in neither the target nor the prediction
        target[target == absent] = 255
        logits[:, absent] = -1e9
    return logits, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_equals_numpy_loop(seed):
    logits, target = _random_case(seed)
    cm = confusion_matrix(logits, target, 5)
    assert cm.dtype == torch.int64
    ref = _numpy_confmat(logits.argmax(1).numpy(), target.numpy(), 5)
    np.testing.assert_array_equal(cm.numpy(), ref)
    # labels and logits give the same matrix
    assert torch.equal(confusion_matrix(logits.argmax(1).to(torch.uint8), target, 5), cm)


def test_mean_iou_equals_numpy_reference_with_absent_class():
    logits, target = _random_case(3, absent=2)
    r = mean_iou(confusion_matrix(logits, target, 5))
    ref, ref_miou = _numpy_iou(_numpy_confmat(logits.argmax(1).numpy(), target.numpy(), 5))
    assert np.isnan(r.per_class[2]) and not r.present[2]
    np.testing.assert_allclose(r.per_class, ref, rtol=0, atol=1e-12)
    assert r.miou == pytest.approx(ref_miou, abs=1e-12)
    keep = target != 255
    assert r.pixel_acc == pytest.approx(float((logits.argmax(1)[keep] == target[keep]).double().mean()), abs=1e-12)


def test_mean_iou_class_subset_and_all_absent():
    m = torch.tensor([[4, 0, 0], [2, 2, 0], [0, 0, 0]])
    r = mean_iou(m, classes=[1, 2])
    assert r.miou == pytest.approx(0.5)  # only class 1 (2 / (2 + 2)); class 2 undefined
    empty = mean_iou(torch.zeros(3, 3, dtype=torch.int64))
    assert np.isnan(empty.miou) and np.isnan(empty.pixel_acc) and np.isnan(empty.per_class).all()


def test_against_torchmetrics_jaccard():
    tm = pytest.importorskip("torchmetrics.classification")
    logits, target = _random_case(4, k=6, shape=(2, 16, 16), absent=4)
    r = mean_iou(confusion_matrix(logits, target, 6))
    # average=None with zero_division=NaN gives NaN for the class absent from both, like ours
    ref = tm.MulticlassJaccardIndex(6, average=None, ignore_index=255, zero_division=float("nan"))(
        logits.argmax(1), target
    )
    np.testing.assert_allclose(r.per_class, ref.double().numpy(), atol=1e-6)
    # torchmetrics 1.9's macro average leaves out the class absent from both as well (zero_division only fills the
    # per-class value), so it equals our NaN-excluding mIoU; a plain mean over all 6 with that class as 0 does not
    macro = float(tm.MulticlassJaccardIndex(6, average="macro", ignore_index=255)(logits.argmax(1), target))
    assert macro == pytest.approx(r.miou, abs=1e-6)
    assert abs(r.miou - float(np.nan_to_num(r.per_class).mean())) > 1e-3


def test_ignore_index_pixels_skipped_whatever_the_prediction():
    target = torch.tensor([[0, 255], [1, 255]])
    a = confusion_matrix(torch.tensor([[0, 0], [1, 1]]), target, 2)
    b = confusion_matrix(torch.tensor([[0, 1], [1, 0]]), target, 2)
    assert torch.equal(a, b) and int(a.sum()) == 2
    # a custom ignore index, and none: 255 is then an error
    assert int(confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -1]), 2, ignore_index=-1).sum()) == 1
    with pytest.raises(InvalidParameterError, match="255"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 255]), 2, ignore_index=None)


def test_out_of_range_labels_raise_clear_errors():
    with pytest.raises(InvalidParameterError, match=r"label 7 outside \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)
    with pytest.raises(InvalidParameterError, match="label -2"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -2]), 3)
    with pytest.raises(InvalidParameterError, match="prediction contains label 5"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)
    with pytest.raises(ShapeError, match="classes in dim 1"):
        confusion_matrix(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 3)
    with pytest.raises(ShapeError, match="upsample"):
        confusion_matrix(torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 2, dtype=torch.long), 3)
    with pytest.raises(InvalidParameterError, match="integer"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]), 3)


def test_accumulator_streams_merges_and_round_trips():
    logits, target = _random_case(5, shape=(4, 8, 8))
    whole = SegmentationMetric(5, subsets={"first3": [0, 1, 2]})
    whole.update(logits, target)
    a, b = SegmentationMetric(5, subsets={"first3": [0, 1, 2]}), SegmentationMetric(5, subsets={"first3": [0, 1, 2]})
    a.update(logits[:1], target[:1])
    b.update(logits[1:].argmax(1), target[1:])
    merged = a.merge(b).compute()
    ref = whole.compute()
    assert merged.keys() == ref.keys()
    assert all(merged[k] == ref[k] or (np.isnan(merged[k]) and np.isnan(ref[k])) for k in ref)
    assert ref["mIoU/first3"] == pytest.approx(float(np.nanmean(whole.result().per_class[:3])))
    assert set(ref) >= {"mIoU", "pixel_acc", "mean_acc", "IoU/0", "IoU/4"}
    c = SegmentationMetric(5, subsets={"first3": [0, 1, 2]})
    c.load_state_dict(whole.state_dict())
    assert torch.equal(c.confmat, whole.confmat)
    with pytest.raises(InvalidParameterError, match="subset"):
        SegmentationMetric(3, subsets={"bad": [3]})
