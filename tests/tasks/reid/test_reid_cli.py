"""``pickwise reid``: make-data, a tiny end-to-end train + evaluate on generated reid-synth, resume, one-line errors.

The CLI runs in-process (``pickwise.cli.main.main``) with only the reid command table, so the test does not depend
on the other task packages' commands.
"""

from __future__ import annotations

import json

import pytest

import pickwise.tasks as tasks_pkg
from pickwise.cli.main import main
from pickwise.tasks.reid import CLI_COMMANDS

TINY_DATA = [
    "--set", "num_train_ids=6", "--set", "num_test_ids=4", "--set", "num_distractors=2", "--set", "num_junk=1",
    "--set", "num_cameras=2", "--set", "tracklets_per_id=[2, 3]", "--set", "seq_len_range=[2, 5]",
    "--set", "size=[32, 16]",
]  # fmt: skip
TINY_MODEL = [
    "--model", "mstat_tiny", "--seq-len", "4", "--epochs", "1", "--device", "cpu", "--no-progress",
    "--set", "model.kwargs={embed_dim: 32, depth: 3, num_heads: 2, patch_size: 8, stride: 8}",
    "--set", "data.height=32", "--set", "data.width=16",
    "--set", "sampler.num_identities=3", "--set", "sampler.num_instances=2",
    "--set", "train.tensorboard=false", "--set", "train.eval_every=0",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _only_reid(monkeypatch):
    monkeypatch.setattr(tasks_pkg, "cli_commands", lambda: dict(CLI_COMMANDS))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("reid") / "synth"
    assert main(["reid", "make-data", "--root", str(root), *TINY_DATA]) == 0
    return root


def _one_line_error(capsys, code):
    assert code == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("pickwise: error: "), lines
    return lines[0]


def test_train_evaluate_resume(synth_root, tmp_path, capsys):
    common = [*TINY_MODEL, "--data", "reid-synth", "--data-dir", str(synth_root), "--output-dir", str(tmp_path)]
    assert main(["reid", "train", *common, "--name", "r"]) == 0
    out = capsys.readouterr().out
    assert "| R1 | R5 | R10 | R20 | mAP | mINP |" in out
    run = tmp_path / "r"
    for name in ("config.yaml", "results.json", "metrics.md", "model.safetensors", "cmc.png", "ranked.png"):
        assert (run / name).is_file(), name
    res = json.loads((run / "results.json").read_text())
    assert 0.0 <= res["metrics"]["rank1"] <= res["metrics"]["rank5"] <= 1.0
    assert res["metrics"]["num_valid_queries"] > 0
    frames = res["frames"]
    assert frames["seq_len"] == 4 and frames["test_policy"] == "evenly"
    assert frames["short_tracklets_padded"]["train"] > 0  # tracklets of 2-3 frames are padded to 4
    assert res["config"]["sampler"] == {"num_identities": 3, "num_instances": 2}
    assert (run / "ranked.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["reid", "evaluate", str(run), "--rerank", "--no-progress"]) == 0
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["eval"]["rerank"] is True and (run / "eval-ranked.png").is_file()
    plain_out = tmp_path / "plain"
    assert main(["reid", "evaluate", str(run), "--no-progress", "--output-dir", str(plain_out)]) == 0
    plain = json.loads((plain_out / "evaluation.json").read_text())["metrics"]
    assert plain["mAP"] == pytest.approx(res["metrics"]["mAP"], abs=1e-6)  # same weights, same protocol
    capsys.readouterr()

    assert main(["reid", "train", *common, "--name", "r", "--resume"]) == 0  # a finished run: evaluates again
    resumed = json.loads((run / "results.json").read_text())
    assert resumed["steps"] == res["steps"] and resumed["metrics"]["mAP"] == pytest.approx(res["metrics"]["mAP"])
    capsys.readouterr()
    msg = _one_line_error(capsys, main(["reid", "train", *common, "--name", "r"]))
    assert "already holds a run" in msg
    msg = _one_line_error(capsys, main(["reid", "evaluate", str(run), "--set", "data.seq_len=8"]))
    assert "cannot change at evaluation" in msg


def test_bad_input_is_one_line_and_writes_nothing(synth_root, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    (wrong / "some_folder").mkdir(parents=True)
    (wrong / "some_folder" / "x.jpg").write_bytes(b"not an image")
    out_dir = tmp_path / "runs"
    args = ["reid", "train", *TINY_MODEL, "--data", "mars", "--data-dir", str(wrong), "--output-dir", str(out_dir)]
    msg = _one_line_error(capsys, main(args))
    assert "mars" in msg
    assert not out_dir.exists()
    args = ["reid", "train", "--data", "reid-synth", "--data-dir", str(synth_root), "--output-dir", str(out_dir)]
    msg = _one_line_error(capsys, main([*args, "--set", "sampler.num_identities=50"]))
    assert "fewer than P" in msg and not out_dir.exists()
    msg = _one_line_error(capsys, main([*args, "--model", "mstat_tinyy", "--set", "sampler.num_identities=3"]))
    assert "mstat_tiny" in msg and not out_dir.exists()  # close match named, no run folder left behind
    _one_line_error(capsys, main(["reid", "train", "--set", "data.test_frames=all"]))
    _one_line_error(capsys, main(["reid", "evaluate", str(tmp_path / "missing")]))
    _one_line_error(capsys, main(["reid", "make-data", "--root", str(tmp_path / "s"), "--set", "num_cameras=1"]))
    _one_line_error(capsys, main(["reid", "extract", "no_video.mp4", str(tmp_path / "x"), "--set", "bad key=1"]))


def test_all_invalid_queries_refused_before_writing(synth_root, tmp_path):
    import dataclasses

    from pickwise.exceptions import DataFormatError
    from pickwise.tasks.reid import resolve_reid_config, run_reid
    from pickwise.tasks.reid.datasets import load_reid_dataset

    ds = load_reid_dataset("reid-synth", synth_root)
    query_cams = {(q.pid, q.camid) for q in ds.query}
    same_cam_only = [g for g in ds.gallery if (g.pid, g.camid) in query_cams or g.pid not in {q.pid for q in ds.query}]
    broken = dataclasses.replace(ds, gallery=same_cam_only, query=[q for q in ds.query if q.camid == 0])
    broken = dataclasses.replace(broken, gallery=[g for g in broken.gallery if g.camid == 0])
    cfg = resolve_reid_config(overrides=[f"output_dir={tmp_path}", "name=x", "sampler.num_identities=3"])
    with pytest.raises(DataFormatError, match="queries has a gallery tracklet"):
        run_reid(cfg, dataset=broken)
    assert not (tmp_path / "x").exists()


def test_resume_after_an_interruption_ends_with_the_same_weights(synth_root, tmp_path):
    import shutil

    from pickwise.engine.checkpoint import checkpoint_step, find_checkpoints
    from pickwise.tasks.reid import resolve_reid_config, run_reid
    from pickwise.tasks.reid.datasets import load_reid_dataset

    ds = load_reid_dataset("reid-synth", synth_root)
    overrides = [
        "model.kwargs={embed_dim: 16, depth: 3, num_heads: 2, patch_size: 8, stride: 8}",
        "data.height=32", "data.width=16", "data.seq_len=3", "sampler.num_identities=3", "sampler.num_instances=2",
        "train.epochs=2", "train.device=cpu", "train.progress=false", "train.tensorboard=false",
        "train.eval_every=0", "checkpoint.every_steps=1", "checkpoint.keep_last=20", "eval.figures=false",
        f"output_dir={tmp_path}",
    ]  # fmt: skip
    full = run_reid(resolve_reid_config(overrides=[*overrides, "name=full"]), dataset=ds)
    cut_cfg = resolve_reid_config(overrides=[*overrides, "name=cut"])
    run_reid(cut_cfg, dataset=ds)
    run = tmp_path / "cut"
    for ckpt in find_checkpoints(run / "checkpoints"):  # "crash" after the second optimizer step
        if checkpoint_step(ckpt) > 2:
            shutil.rmtree(ckpt)
    for name in ("model.safetensors", "results.json"):
        (run / name).unlink()
    resumed = run_reid(resolve_reid_config(overrides=[*overrides, "name=cut"]), dataset=ds, resume=True)
    assert full.steps == resumed.steps > 2
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "full" / "model.safetensors").read_bytes()
    assert resumed.metrics == full.metrics
