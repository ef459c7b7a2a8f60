"""Zoo/checkpoint candidates, fine-tune verification and ``pickwise transfer`` end to end on a tiny zoo."""

import argparse
import json

import numpy as np
import pytest
import torch

from pickwise.exceptions import DataNotFoundError, InvalidParameterError
from pickwise.zoo import ZooEntry, build_zoo

ENTRIES = (
    ZooEntry("tiny-digits", "resnet8", "bn", "digits", {"width": 8}, epochs=2, train_subset=512, batch_size=32),
    ZooEntry("tiny-untrained", "resnet8", "bn", None, {"width": 4}, untrained=True),
)


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    torch.set_num_threads(1)
    build_zoo(root, ENTRIES)
    return root


def _parser():
    from pickwise.cli import select, transfer

    parser = argparse.ArgumentParser(prog="pickwise")
    sub = parser.add_subparsers(dest="command")
    select.add_parser(sub)
    transfer.add_parser(sub)
    return parser


class TestCandidates:
    def test_zoo_and_ckpt_candidates(self, zoo_root, tmp_path):
        from pickwise.data import create_dataset
        from pickwise.selection.features import extract_features, preprocess_spec, resolve_candidate

        ds = create_dataset("digits", "train", subset=40)
        cand = resolve_candidate("zoo:tiny-digits", zoo_root=zoo_root)
        assert cand.kind == "zoo" and not cand.pretrained and len(cand.record["sha256"]) == 64
        f1, _ = extract_features("zoo:tiny-digits", ds, zoo_root=zoo_root, cache_dir=tmp_path, progress=False)
        assert f1.shape == (40, 32) and np.isfinite(f1).all()
        f2, _ = extract_features("zoo:tiny-digits", ds, zoo_root=zoo_root, cache_dir=tmp_path, progress=False)
        np.testing.assert_array_equal(f1, f2)
        # the cache records the preprocessing and the weights' hash
        from safetensors import safe_open

        (path,) = tmp_path.glob("*.safetensors")
        with safe_open(str(path), "np") as fh:
            meta = json.loads(fh.metadata()["pickwise"])
        assert meta["weights_sha256"] == cand.record["sha256"]
        assert meta["preprocessing"]["channels"] == "as-is" and meta["preprocessing"]["resize"] == "none"
        # a 3-channel candidate on gray data: channels repeated; a pretrained one on tiny images: upsampled to 64
        from pickwise.models import create_model

        rgb = type(cand)(create_model("resnet8", in_chans=3, width=4).eval(), "rgb", pretrained=False)
        spec = preprocess_spec(rgb, ds)
        assert spec["channels"] == "repeat 1->3" and spec["image_size"] is None
        x, _ = extract_features(rgb.model, ds, progress=False)
        assert x.shape == (40, 16)

    def test_pretrained_tiny_images_are_upsampled(self):
        from pickwise.data import create_dataset
        from pickwise.models import create_model
        from pickwise.selection.features import Candidate, preprocess_spec

        ds = create_dataset("digits", "train", subset=20)
        fake = create_model("resnet8", in_chans=3, width=4)
        cfg_type = type(fake.pretrained_cfg)
        fake.pretrained_cfg = cfg_type(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), input_size=(3, 224, 224))
        spec = preprocess_spec(Candidate(fake, "fake", pretrained=True), ds)
        assert spec["image_size"] == 64 and spec["source"] == "model" and spec["channels"] == "repeat 1->3"
        assert preprocess_spec(Candidate(fake, "fake", pretrained=True), ds, image_size=16)["image_size"] == 16

    def test_bad_candidates(self, zoo_root, tmp_path):
        from pickwise.selection.features import resolve_candidate
        from pickwise.selection.pipeline import candidate_list

        with pytest.raises(DataNotFoundError, match="no entry 'nope'"):
            resolve_candidate("zoo:nope", zoo_root=zoo_root)
        with pytest.raises(DataNotFoundError, match="finished pickwise run folder"):
            resolve_candidate(f"ckpt:{tmp_path / 'missing'}")
        with pytest.raises(DataNotFoundError, match="no zoo entries built"):
            candidate_list(None, zoo=True, zoo_root=tmp_path / "empty")
        with pytest.raises(InvalidParameterError, match="at least one candidate"):
            candidate_list("", zoo=False)
        from pickwise.selection.pipeline import load_split

        assert len(load_split("digits", "test", 10_000)) == 359  # subsets larger than the split: the whole split
        assert len(load_split("digits", "test", 50)) == 50
        assert candidate_list("a,zoo:tiny-digits", zoo=True, zoo_root=zoo_root) == [
            "a",
            "zoo:tiny-digits",
            "zoo:tiny-untrained",
        ]


class TestFinetune:
    def test_finetune_and_ckpt_round_trip(self, zoo_root, tmp_path):
        from pickwise.data import create_dataset
        from pickwise.selection.features import preprocess_spec, resolve_candidate
        from pickwise.selection.finetune import finetune

        train = create_dataset("digits", "train", subset=128)
        test = create_dataset("digits", "test", subset=100)
        cand = resolve_candidate("zoo:tiny-digits", zoo_root=zoo_root)
        before = {k: v.clone() for k, v in cand.model.state_dict().items()}
        prep = preprocess_spec(cand, train)
        out = finetune(cand.model, train, test, preprocess=prep, max_steps=4, batch_size=32, convert_norm="sn")
        assert 0.0 <= out["acc"] <= 1.0 and out["steps"] == 4 and out["converted_layers"] > 0
        for k, v in cand.model.state_dict().items():  # the candidate itself is not modified
            torch.testing.assert_close(v, before[k])
        with pytest.raises(InvalidParameterError, match="convert_norm must be one of"):
            finetune(cand.model, train, test, convert_norm="xx")
        with pytest.raises(InvalidParameterError, match="reset_classifier"):
            finetune(torch.nn.Linear(2, 2), train, test)
        run = tmp_path / "run"
        finetune(cand.model, train, test, max_steps=2, run_dir=run)
        assert (run / "train_log.csv").is_file()
        finetune(cand.model, train, test, max_steps=2, run_dir=run)  # a second run in the same folder starts fresh


class TestSelectTransferCLI:
    def test_select_zoo_ckpt_verify_finetune(self, zoo_root, tmp_path, capsys):
        run_dir = zoo_root / "_runs" / "tiny-digits"  # the engine's run folder: a ckpt: candidate
        args = _parser().parse_args(
            [
                "select",
                "--data",
                "digits",
                "--subset",
                "120",
                "--zoo",
                str(zoo_root),
                "--models",
                f"ckpt:{run_dir}",
                "--metrics",
                "logme,knn_accuracy",
                "--verify",
                "finetune",
                "--finetune-subset",
                "96",
                "--finetune-steps",
                "2",
                "--test-subset",
                "60",
                "--output-dir",
                str(tmp_path),
                "--no-progress",
            ]
        )
        assert args.handler(args) == 0
        data = json.loads((tmp_path / "select.json").read_text())
        assert data["models"] == [f"ckpt:{run_dir}", "zoo:tiny-digits", "zoo:tiny-untrained"]
        assert data["verify"]["mode"] == "finetune"
        assert all(0 <= a <= 1 for a in data["verify"]["accuracy"].values())
        assert all(d["steps"] == 2 and d["train_samples"] == 96 for d in data["verify"]["finetune"].values())
        assert np.isfinite(data["verify"]["evaluation"]["logme"]["weighted_tau"])
        assert data["preprocessing"]["zoo:tiny-digits"]["channels"] == "as-is"
        assert (tmp_path / "select.png").is_file()
        assert "weighted_tau" in capsys.readouterr().out

    def test_transfer_end_to_end(self, zoo_root, tmp_path, capsys):
        args = _parser().parse_args(
            [
                "transfer",
                "--data",
                "digits",
                "--subset",
                "150",
                "--zoo-root",
                str(zoo_root),
                "--metrics",
                "emms,logme",
                "--encoder",
                "hashing:32",
                "--convert-norm",
                "sn",
                "--runner-up",
                "--finetune-subset",
                "96",
                "--finetune-steps",
                "3",
                "--test-subset",
                "60",
                "--output-dir",
                str(tmp_path),
                "--no-progress",
            ]
        )
        assert args.zoo is None and args.models is None  # no candidates named: the whole zoo
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EMMS warns for D >= N/5 on this tiny subset
            assert args.handler(args) == 0
        out = capsys.readouterr().out
        data = json.loads((tmp_path / "transfer.json").read_text())
        assert set(data["ranking"]) == {"zoo:tiny-digits", "zoo:tiny-untrained"}
        assert data["picked"] == data["ranking"][0] and data["metric"] == "emms"
        assert set(data["finetune"]) == set(data["ranking"])  # top + runner-up
        assert data["finetune"][data["picked"]]["convert_norm"] == "sn"
        assert data["finetune"][data["picked"]]["converted_layers"] > 0
        assert data["pick_verdict"] in ("right", "wrong") and 0 <= data["accuracy"] <= 1
        assert f"picked {data['picked']}" in out and "fine-tuned test acc" in out

    def test_transfer_bad_input(self, zoo_root, tmp_path):
        base = ["transfer", "--data", "digits", "--output-dir", str(tmp_path), "--no-progress"]
        args = _parser().parse_args([*base, "--models", "zoo:nope", "--zoo-root", str(zoo_root)])
        with pytest.raises(DataNotFoundError, match="no entry 'nope'"):
            args.handler(args)
        args = _parser().parse_args([*base, "--models", f"ckpt:{tmp_path / 'none'}"])
        with pytest.raises(DataNotFoundError, match="config.yaml"):
            args.handler(args)
        args = _parser().parse_args([*base, "--zoo", str(tmp_path / "empty")])
        with pytest.raises(DataNotFoundError, match="no zoo entries built"):
            args.handler(args)
        # the norm registry decides which names the converter can produce (gn is registered but not a target)
        args = _parser().parse_args([*base, "--models", "resnet8:random", "--convert-norm", "gn"])
        with pytest.raises(InvalidParameterError, match="convert_norm"):
            args.handler(args)


# pickwise reproduce selection (needs >= 3 zoo entries) is tested in tests/zoo/test_reproduce_selection.py.
