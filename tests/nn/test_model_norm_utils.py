"""convert_norm_layers / collapse_norm_layers / fold_batch_norms / recalibrate_norm_stats / norm_ratio_report."""

import copy

import pytest
import torch
from torch import nn

from pickwise.exceptions import InvalidParameterError
from pickwise.models import create_model
from pickwise.nn.norm.collapse import collapse_norm_layers, fold_batch_norms
from pickwise.nn.norm.convert import convert_norm_layers
from pickwise.nn.norm.recalibrate import recalibrate_norm_stats
from pickwise.nn.norm.report import norm_ratio_report, summarize_ratios


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial γ, β and running statistics so that equivalence tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model.eval()


def test_fold_batch_norms_is_exact_on_resnet20():
    model = _randomize_bn(create_model("resnet20", num_classes=10))
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    folded = fold_batch_norms(model)
    assert len(folded) == 19  # stem + 18 block convs, each followed by its BN
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_fold_requires_eval():
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norms(create_model("resnet8").train())


def _conv_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3))


@pytest.mark.parametrize("estimator", ["pooled", "mean_of_var"])
def test_recalibrate_matches_direct_statistics(estimator):
    model = _conv_bn()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 2, 6, 6, generator=g) * (1 + i) + i for i in range(3)]
    used = recalibrate_norm_stats(model, [(b, None) for b in batches], num_batches=10, estimator=estimator)
    assert used == 3
    with torch.no_grad():
        outs = [model[0](b).transpose(0, 1).reshape(3, -1).double() for b in batches]
    allout = torch.cat(outs, 1)
    torch.testing.assert_close(model[1].running_mean.double(), allout.mean(1), rtol=1e-5, atol=1e-6)
    if estimator == "pooled":
        expected_var = allout.var(1, unbiased=True)
    else:
        expected_var = torch.stack([o.var(1, unbiased=True) for o in outs]).mean(0)
    torch.testing.assert_close(model[1].running_var.double(), expected_var, rtol=1e-5, atol=1e-6)
    assert model.training  # modes restored (Sequential was in train mode)


def test_recalibrate_bad_input():
    with pytest.raises(InvalidParameterError, match="estimator"):
        recalibrate_norm_stats(_conv_bn(), [], estimator="median")
    with pytest.raises(InvalidParameterError, match="no batches"):
        recalibrate_norm_stats(_conv_bn(), [])
    with pytest.raises(InvalidParameterError, match="no layer with running statistics"):
        recalibrate_norm_stats(nn.Linear(2, 2), [torch.randn(2, 2)])


def test_convert_unknown_target_lists_choices():
    with pytest.raises(InvalidParameterError, match=r"did you mean 'sn'"):
        convert_norm_layers(create_model("resnet8"), "snn")


@pytest.mark.parametrize("target", ["sn", "pn", "en", "ssn"])
def test_convert_init_bn_keeps_eval_output(target):
    model = _randomize_bn(create_model("resnet20", num_classes=10))
    x = torch.randn(3, 3, 32, 32)
    expected = model(x)
    # a large gap keeps the eval output to float32 round-off (the default gap 8 trades ~1 % for learnable logits)
    converted = convert_norm_layers(model, target, init="bn", bn_logit_gap=30.0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    assert not converted.training
    torch.testing.assert_close(converted(x), expected, rtol=1e-5, atol=1e-5)


def test_convert_uniform_uses_papers_init_and_changes_output():
    model = _randomize_bn(create_model("resnet8", num_classes=10))
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    converted = convert_norm_layers(model, "sn", init="uniform")
    rows = norm_ratio_report(converted)
    assert rows and all(abs(r["mean"]["bn"] - 1 / 3) < 1e-6 for r in rows)
    assert (converted(x) - expected).abs().max() > 1e-3


def test_convert_respects_exclude_and_root_module():
    model = create_model("resnet8")
    converted = convert_norm_layers(model, "sn", exclude=["layer3.*"])
    assert isinstance(converted.layer3[0].bn1, nn.BatchNorm2d)
    assert type(converted.layer1[0].bn1).__name__ == "SwitchNorm2d"
    root = convert_norm_layers(nn.BatchNorm2d(4), "sn")
    assert type(root).__name__ == "SwitchNorm2d"


def test_collapse_after_bn_init_round_trips_and_folds():
    model = _randomize_bn(create_model("resnet20", num_classes=10))
    x = torch.randn(3, 3, 32, 32)
    expected = model(x)
    convert_norm_layers(model, "sn", init="bn")
    model, report = collapse_norm_layers(model)
    assert len(report) == 19
    assert all(r["replaced_by"] == "BatchNorm2d" and r["folded_into"] for r in report)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_collapse_reports_mixed_picks_and_hardens():
    model = create_model("resnet8", num_classes=10, norm_layer="sn").eval()
    layer = model.bn1
    with torch.no_grad():
        layer.mean_weight.copy_(torch.tensor([0.0, 0.0, 2.0]))  # mean: BN
        layer.var_weight.copy_(torch.tensor([0.0, 3.0, 0.0]))  # variance: LN
        model.layer1[0].bn1.mean_weight.copy_(torch.tensor([5.0, 0.0, 0.0]))
        model.layer1[0].bn1.var_weight.copy_(torch.tensor([5.0, 0.0, 0.0]))
    model, report = collapse_norm_layers(model, fold=False)
    first = report[0]
    assert (first["mean_pick"], first["var_pick"], first["mixed"]) == ("bn", "ln", True)
    assert first["replaced_by"] == "hard-mixed"
    ratios = model.bn1.ratios()
    assert float(ratios["mean"][2]) == pytest.approx(1.0) and float(ratios["var"][1]) == pytest.approx(1.0)
    assert report[1]["replaced_by"] == "InstanceNorm2d"
    assert type(model.layer1[0].bn1).__name__ == "InstanceNorm2d"


def test_ratio_report_rows_and_summary():
    model = create_model("resnet8", norm_layer="sn")
    rows = norm_ratio_report(model)
    assert [r["depth"] for r in rows] == list(range(len(rows)))
    assert rows[0]["relative_depth"] == 0.0 and rows[-1]["relative_depth"] == 1.0
    for row in rows:
        assert sum(row["mean"].values()) == pytest.approx(1.0)
        assert row["normalizers"] == ["in", "ln", "bn"]
    summary = summarize_ratios(rows)
    assert summary["both"]["bn"] == pytest.approx(1 / 3, abs=1e-6)


def test_conversion_round_trip_on_real_mobilenet_v2():
    pytest.importorskip("skimage")
    try:
        model = create_model("mobilenet_v2", pretrained=True).eval()
    except Exception as err:  # weights package missing
        pytest.skip(f"weights unavailable: {err}")
    import skimage.data
    import torch.nn.functional as F

    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(model.pretrained_cfg.mean)[:, None, None]
    std = torch.tensor(model.pretrained_cfg.std)[:, None, None]
    x = (image - mean) / std
    expected = model(x).detach()
    default = convert_norm_layers(copy.deepcopy(model), "sn", init="bn")(x).detach()  # gap 8: close, not equal
    assert 1e-4 < float((default - expected).norm() / expected.norm()) < 0.05
    assert int(default.argmax()) == int(expected.argmax())
    convert_norm_layers(model, "sn", init="bn", bn_logit_gap=30.0)
    converted = model(x)
    torch.testing.assert_close(converted, expected, rtol=1e-4, atol=1e-4)
    assert int(converted.argmax()) == int(expected.argmax())
    model, report = collapse_norm_layers(model)
    assert all(r["replaced_by"] == "BatchNorm2d" for r in report)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_conversion_round_trip_on_resnet50():
    model = _randomize_bn(create_model("resnet50", num_classes=10))
    x = torch.randn(1, 3, 64, 64)
    expected = model(x)
    convert_norm_layers(model, "sn", init="bn", bn_logit_gap=30.0)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    model, report = collapse_norm_layers(model)
    assert len(report) == 53
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
