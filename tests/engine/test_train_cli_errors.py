"""Every promised one-line error of ``pickwise train`` (exit 2, one stderr line, no traceback), through ``main``;
names and options are checked before any data are loaded."""

import json

import pytest
import torch

import pickwise.data
from pickwise.cli.main import main

FAST = [
    "--model",
    "resnet8",
    "--data",
    "digits",
    "--batch-size",
    "32",
    "--no-progress",
    "--set",
    "train.tensorboard=false",
]


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("pickwise: error: "), err
    return lines[0]


@pytest.fixture
def no_data_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data were loaded before the config was checked")

    monkeypatch.setattr(pickwise.data, "create_dataset", refuse)


def _yaml(tmp_path, content: bytes):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    return ["--config", str(path)]


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda t: _yaml(t, b"_base_: 5\n"), "_base_ must be a file path or a list"),
        (lambda t: _yaml(t, b"_base_: [a.yaml, 3]\n"), "_base_ must be a file path or a list"),
        (lambda t: _yaml(t, b"optim:\n  lr: 0.1\n# caf\xe9\n"), "is not UTF-8 text (byte 0xe9"),
        (lambda t: _yaml(t, b"- 1\n- 2\n"), "must hold a mapping"),
        (lambda t: ["--set", "model.kwargs.nope=1"], "model.kwargs.nope is not an option of model resnet8"),
        (lambda t: ["--set", "model.kwargs.drop_rat=0.1"], "did you mean 'drop_rate'"),
        (lambda t: ["--set", "model.kwargs.num_classes=3"], "is set by the engine"),
        (lambda t: ["--set", "model.kwargs.width=abc"], "width must be an int"),
        (lambda t: ["--set", "model.kwargs.width=[1]"], "width must be an int"),
        (lambda t: ["--norm", "gn", "--set", "model.norm_kwargs.num_grups=2"], "did you mean 'num_groups'"),
        (lambda t: ["--image-size", "100000"], "GB of memory"),
        (lambda t: ["--batch-size", "4000000000"], "GB of memory"),
        (lambda t: ["--set", "name=../../x"], "inside output_dir"),
        (lambda t: ["--name", str(t / "elsewhere")], "inside output_dir"),
        (lambda t: ["--norm", "sx"], "unknown norm layer 'sx'; did you mean 'sn'"),
        (lambda t: ["--model", "resnet_8"], "unknown model 'resnet_8'"),
        (lambda t: ["--data", "digitz"], "unknown dataset 'digitz'"),
        (lambda t: ["--data", str(t / "no" / "such")], "does not exist"),
        (lambda t: ["--device", "tpu"], "train.device must be auto, cpu, cuda or cuda:N"),
        (lambda t: ["--lr", "nan"], "optim.lr must be a finite number"),
        (lambda t: ["--epochs", "x"], "invalid int value"),
    ],
)
def test_one_line_errors_before_data_loading(tmp_path, capsys, no_data_loading, make_args, match):
    args = ["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path / "runs"), *make_args(tmp_path)]
    assert main(args) == 2
    line = _one_line(capsys)
    assert match in line, line
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_on_a_cpu_only_machine(tmp_path, capsys, no_data_loading):
    assert main(["train", *FAST, "--device", "cuda", "--output-dir", str(tmp_path)]) == 2
    assert "CUDA is not available" in _one_line(capsys)


def _broken_state(tmp_path, capsys, edit):
    run = tmp_path / "r"
    assert main(["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]) == 0
    state_file = run / "checkpoints" / "ckpt-00000002" / "state.json"
    state = json.loads(state_file.read_text())
    edit(state)
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    return state_file


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("global_step"), "missing or invalid entry (KeyError: 'global_step')"),
        (lambda s: s.pop("optimizer"), "lacks optimizer"),
        (lambda s: s.update(epoch="two"), "missing or invalid entry (ValueError"),
        (lambda s: s["rng"].update(python=[3, [1, 2, 3], None]), "invalid RNG entry"),
        (lambda s: s["rng"]["numpy"].update(keys="abc"), "invalid RNG entry"),
        (lambda s: s["rng"].pop("numpy") and s["rng"].update(numpy={"name": "MT19937"}), "invalid RNG entry"),
    ],
)
def test_bad_state_json_is_a_checkpoint_error_naming_the_file(tmp_path, capsys, edit, match):
    state_file = _broken_state(tmp_path, capsys, edit)
    args = ["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]
    assert main([*args, "--resume", str(state_file.parent)]) == 2
    line = _one_line(capsys)
    assert match in line and str(state_file.parent) in line, line


def test_dry_run_checks_and_prints_without_writing(tmp_path, capsys):
    args = ["train", *FAST, "--max-steps", "2", "--output-dir", str(tmp_path), "--name", "r"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "name: resnet8" in out and f"# dry run: would train into {tmp_path / 'r'} on cpu" in out
    assert "# memory estimate: data " in out and not (tmp_path / "r").exists()
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 2  # predicts the refusal
    assert "already holds a run" in _one_line(capsys)
    assert main([*args, "--dry-run", "--overwrite"]) == 0
    assert "would delete the previous run's outputs" in capsys.readouterr().out


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", *FAST, "--max-steps", "1", "--output-dir", str(tmp_path / "file"), "--name", "r"]) == 2
    assert "cannot be created" in _one_line(capsys)


def test_help_still_prints_the_full_usage(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out and "--overwrite" in out
