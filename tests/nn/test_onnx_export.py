"""ONNX export of a model with SN layers runs in onnxruntime with matching outputs (needs the `export` extra)."""

import numpy as np
import pytest
import torch

from pickwise.models import create_model
from pickwise.nn.norm.convert import convert_norm_layers

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("norm", ["sn", "en"])
def test_onnx_export_matches_eager(tmp_path, norm):
    model = create_model("resnet8", num_classes=10, in_chans=1)
    model.train()
    with torch.no_grad():  # non-trivial running statistics and mixture weights
        for _ in range(3):
            model(torch.randn(8, 1, 16, 16) * 2 + 0.5)
    model = convert_norm_layers(model, norm, init="uniform").eval()
    x = torch.randn(2, 1, 16, 16)
    expected = model(x).detach().numpy()
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
