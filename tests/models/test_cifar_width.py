import pytest
import torch

from pickwise.exceptions import InvalidParameterError
from pickwise.models import create_model


@pytest.mark.parametrize("width", [4, 8, 24])
def test_cifar_resnet_width_scales_stages(width):
    model = create_model("resnet8", width=width, num_classes=5, in_chans=1)
    assert model.num_features == 4 * width
    assert model.layer2[0].conv1.out_channels == 2 * width
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 4 * width, 7, 7)


def test_default_width_is_the_papers():
    model = create_model("resnet20")
    assert model.num_features == 64 and sum(p.numel() for p in model.parameters()) == 269_722  # 0.27M, as in the paper


def test_bad_width():
    with pytest.raises(InvalidParameterError, match="width"):
        create_model("resnet8", width=0)
