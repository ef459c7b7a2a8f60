"""Property-based fuzzing of ``pickwise train`` arguments, ``--set`` overrides and config files.

Property: the CLI either succeeds (exit 0) or exits 2 with exactly one ``pickwise: error:`` line on stderr; it never
raises (a traceback, exit 1). Every example runs ``--dry-run`` (resolve, validate, check names and model options on
the meta device, estimate memory; nothing is trained or written), so the whole file takes seconds. When it succeeds,
the printed config read back as a ``--config`` file resolves to the same config.
"""

import os
import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pickwise.cli.main import main
from pickwise.engine.config import RunConfig, _all_keys, config_to_dict, resolve_config

# PICKWISE_FUZZ_EXAMPLES=2000 for a deeper search (the default keeps the file to seconds)
FUZZ = settings(
    max_examples=int(os.environ.get("PICKWISE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
OUT = Path(tempfile.mkdtemp(prefix="pickwise-fuzz-"))  # dry runs write nothing; nothing may appear here

KEYS = _all_keys(RunConfig)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, -1, 10**6, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324]),
)
SAFE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_:/ ", max_size=12)
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), SAFE_TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "lr", "name", "drop_rate"]), inner)
    ),
    max_leaves=6,
)
RAW_VALUES = st.one_of(
    st.sampled_from(["nan", ".nan", ".inf", "-.inf", "1e400", "-5", "0", "[1, .nan]", "{a: 1}", "[", "'", "~", ""]),
    SAFE_TEXT,
    NUMBERS.map(str),
)
FLAG_VALUES = {
    "--model": st.one_of(st.sampled_from(["resnet8", "resnet20", "mobilenet_v2", "craft_vgg16_bn"]), SAFE_TEXT),
    "--norm": st.one_of(st.sampled_from(["bn", "gn", "ln", "in", "sn", "ssn", "en", "pn", ""]), SAFE_TEXT),
    "--data": st.one_of(st.sampled_from(["digits", "mnist-5k", "fashion-mnist", "textures"]), SAFE_TEXT),
    "--batch-size": NUMBERS.map(str),
    "--image-size": NUMBERS.map(str),
    "--train-subset": NUMBERS.map(str),
    "--test-subset": NUMBERS.map(str),
    "--augment": st.sampled_from(["none", "flip", "crop_flip", "crop"]),
    "--workers": NUMBERS.map(str),
    "--epochs": NUMBERS.map(str),
    "--max-steps": NUMBERS.map(str),
    "--lr": NUMBERS.map(str),
    "--optimizer": st.sampled_from(["sgd", "adamw", "adam"]),
    "--grad-accum": NUMBERS.map(str),
    "--amp": st.sampled_from(["none", "bf16", "fp16", "auto", "fp8"]),
    "--seed": NUMBERS.map(str),
    "--device": st.one_of(st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "meta", "cpu:0"]), SAFE_TEXT),
    "--checkpoint-every": NUMBERS.map(str),
    "--keep-last": NUMBERS.map(str),
    "--name": st.one_of(st.sampled_from(["r", "../x", "/abs", ".", "a/b", "", "a/../../b"]), SAFE_TEXT),
}


def _check(argv, capsys):
    """Run the CLI; assert exit 0, or exit 2 with one error line. Returns (code, stdout)."""
    code = main(["train", "--output-dir", str(OUT), "--dry-run", *argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code in (0, 2), (argv, code, captured.err)
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("pickwise: error: "), (argv, captured.err)
    else:
        assert lines == [], (argv, captured.err)
    assert not any(OUT.iterdir()), "a dry run wrote files"
    return code, captured.out


def _roundtrip(out, tmp_dir):
    """The printed config, used as a config file, resolves to itself."""
    printed = yaml.safe_load("\n".join(line for line in out.splitlines() if not line.startswith("#")))
    path = Path(tmp_dir) / "printed.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert config_to_dict(resolve_config([path])) == printed


@FUZZ
@given(
    st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=6, unique=True).flatmap(
        lambda flags: st.tuples(*[st.tuples(st.just(f), FLAG_VALUES[f]) for f in flags])
    )
)
def test_fuzz_cli_flags(capsys, pairs):
    argv = [item for pair in pairs for item in pair]
    code, out = _check(argv, capsys)
    if code == 0:
        with tempfile.TemporaryDirectory() as d:
            _roundtrip(out, d)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(KEYS), st.sampled_from(["model.kwargs.drop_rate", "model.norm_kwargs.eps"]), SAFE_TEXT
            ),
            RAW_VALUES,
        ),
        max_size=5,
    )
)
def test_fuzz_set_overrides(capsys, overrides):
    argv = ["--model", "resnet8", "--data", "digits"]
    for key, value in overrides:
        argv += ["--set", f"{key}={value}"]
    _check(argv, capsys)


@FUZZ
@given(
    st.one_of(
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.sampled_from(["model", "optim", "train", "_base_"])), VALUES, max_size=5
        ).map(lambda d: _nest(d)),
        VALUES,
    )
)
def test_fuzz_config_documents(capsys, document):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        _check(["--config", str(path), "--set", "model.name=resnet8", "--set", "data.name=digits"], capsys)


@FUZZ
@given(st.binary(max_size=64))
def test_fuzz_config_bytes(capsys, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_bytes(data)
        _check(["--config", str(path), "--model", "resnet8", "--data", "digits"], capsys)


def _nest(flat):
    """``{"optim.lr": 1}`` -> ``{"optim": {"lr": 1}}`` (later keys win on conflicts)."""
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        cursor = out
        for part in parts[:-1]:
            if not isinstance(cursor.get(part), dict):
                cursor[part] = {}
            cursor = cursor[part]
        cursor[parts[-1]] = value
    return out


TINY_RUN = {
    "--norm": st.sampled_from(["bn", "gn", "ln", "in", "sn", "ssn", "en", "pn"]),
    "--batch-size": st.integers(1, 48).map(str),
    "--grad-accum": st.integers(1, 3).map(str),
    "--train-subset": st.integers(1, 96).map(str),
    "--test-subset": st.integers(1, 40).map(str),
    "--augment": st.sampled_from(["none", "flip", "crop_flip"]),
    "--optimizer": st.sampled_from(["sgd", "adamw"]),
    "--amp": st.sampled_from(["none", "bf16"]),
    "--lr": st.one_of(st.floats(1e-6, 1.0), st.sampled_from([1e6, 1e30, 1e300])).map(repr),
    "--checkpoint-every": st.integers(1, 3).map(str),
    "--keep-last": st.integers(1, 3).map(str),
    "--set": st.sampled_from(
        [
            "schedule.name=step",
            "schedule.milestones=[0.1, 0.5]",
            "schedule.warmup_epochs=2",
            "optim.clip_grad_norm=0.5",
            "optim.norm_logit_clip=1.0",
            "train.log_every=1",
            "train.eval_every=0",
            "data.eval_batch_size=1",
            "model.gamma_decay=0.1",
            "optim.nesterov=true",
        ]
    ),
}


@settings(
    max_examples=int(os.environ.get("PICKWISE_FUZZ_RUNS", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.sampled_from(sorted(TINY_RUN)), max_size=6, unique=True).flatmap(
        lambda flags: st.tuples(*[st.tuples(st.just(f), TINY_RUN[f]) for f in flags])
    )
)
def test_fuzz_tiny_real_runs(capsys, pairs):
    """Real one-to-three-step runs of resnet8 on digits with random settings: a result, or one line."""
    argv = [item for pair in pairs for item in pair]
    with tempfile.TemporaryDirectory() as d:
        code = main(
            [
                "train",
                "--model",
                "resnet8",
                "--data",
                "digits",
                "--max-steps",
                "2",
                "--no-progress",
                "--set",
                "train.tensorboard=false",
                "--output-dir",
                d,
                "--name",
                "r",
                *argv,
            ]
        )
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert code in (0, 2), (argv, captured.err)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("pickwise: error: "), (argv, captured.err)
        else:
            assert (Path(d) / "r" / "results.json").is_file()
