"""Export of DGConv2d to plain grouped convolutions: exactness, permutation folding, fallbacks and errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from pickwise.exceptions import InvalidParameterError
from pickwise.models.resnext import ResNeXtBottleneck
from pickwise.nn import create_norm_layer, get_norm_layer
from pickwise.nn.conv import ChannelPermute, DGConv2d, ExportError, dgconv_to_conv, export_grouped_convs


def _random_gates(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DGConv2d):
                m.gate.copy_(torch.randn(m.gate.shape, generator=gen))


def _set_gates(m: DGConv2d, pattern) -> None:
    with torch.no_grad():
        m.gate.copy_(torch.tensor([1.0 if g else -1.0 for g in pattern]))


def _warm_stats(model: nn.Module, shape) -> None:
    """A few training-mode passes so running statistics are not the identity, then eval."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(*shape) * 2 + 0.5)
    model.eval()
    with torch.no_grad():  # non-trivial affine parameters too
        for m in model.modules():
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(p, nn.Parameter) and p.ndim == 1 and not isinstance(m, DGConv2d):
                    p.add_(0.3 * torch.randn_like(p))


def _no_dgconv(model: nn.Module) -> bool:
    return not any(isinstance(m, (DGConv2d, ChannelPermute)) for m in model.modules())


class TestDGConvToConv:
    @pytest.mark.parametrize(
        ("cin", "cout", "kwargs"),
        [
            (8, 8, {"kernel_size": 3, "padding": 1}),
            (16, 16, {"kernel_size": 3, "stride": 2, "padding": 1, "bias": True}),
            (8, 8, {"kernel_size": 3, "dilation": 2, "padding": 2}),
            (8, 8, {"kernel_size": (3, 1), "padding": (1, 0), "stride": (2, 1)}),
            (8, 8, {"kernel_size": 3, "padding": 1, "padding_mode": "reflect", "bias": True}),
            (16, 32, {"kernel_size": 1}),
            (24, 12, {"kernel_size": 3, "padding": 1}),
            (12, 12, {"kernel_size": 3, "padding": "same"}),
            (32, 32, {"kernel_size": 3, "padding": 1, "factors": (4, 8)}),
        ],
    )
    def test_exact_on_random_gates(self, cin, cout, kwargs):
        gen = torch.Generator().manual_seed(cin + cout)
        m = DGConv2d(cin, cout, **kwargs).eval()
        x = torch.randn(2, cin, 9, 9)
        for _ in range(4):
            _random_gates(m, gen)
            conv, perm_in, perm_out = dgconv_to_conv(m)
            assert type(conv) is nn.Conv2d and conv.groups == m.groups
            assert conv.weight.shape == (cout, cin // m.groups, *m.kernel_size)
            with torch.no_grad():
                ref = m(x)
                torch.testing.assert_close(conv(x[:, perm_in]), ref[:, perm_out])
                torch.testing.assert_close(conv(x[:, perm_in])[:, perm_out.argsort()], ref)

    @pytest.mark.parametrize("pattern", list(itertools.product([0, 1], repeat=3)))
    def test_every_k3_pattern(self, pattern):
        m = DGConv2d(8, 8, 3, padding=1, bias=True)
        _set_gates(m, pattern)
        conv, perm_in, perm_out = dgconv_to_conv(m)
        assert conv.groups == 2 ** (3 - sum(pattern))
        x = torch.randn(2, 8, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(conv(x[:, perm_in]), m(x)[:, perm_out])

    def test_not_a_dgconv(self):
        with pytest.raises(InvalidParameterError, match="module must be a DGConv2d; got Conv2d"):
            dgconv_to_conv(nn.Conv2d(4, 4, 1))


def _bottleneck(norm: str, width: int = 16) -> nn.Module:
    return ResNeXtBottleneck(32, width, 32, 1, None, get_norm_layer(norm), learn_groups=True)


class TestFolding:
    @pytest.mark.parametrize("norm", ["bn", "ln", "in"])
    def test_bottleneck_random_gates(self, norm):
        gen = torch.Generator().manual_seed(3)
        for _ in range(3):
            block = _bottleneck(norm)
            _random_gates(block, gen)
            _warm_stats(block, (4, 32, 6, 6))
            exported = export_grouped_convs(block)
            assert _no_dgconv(exported)
            assert exported.conv2.groups == block.conv2.groups
            x = torch.randn(3, 32, 6, 6)
            with torch.no_grad():
                torch.testing.assert_close(exported(x), block(x), rtol=1e-5, atol=1e-5)
            # the original is untouched (deep copy)
            assert isinstance(block.conv2, DGConv2d)

    def test_bottleneck_switchable_norm(self):
        try:
            create_norm_layer("sn", 8)
        except Exception as err:
            pytest.skip(f"norm_layer='sn' not available in this build: {err}")
        gen = torch.Generator().manual_seed(4)
        block = _bottleneck("sn")
        _random_gates(block, gen)
        _warm_stats(block, (4, 32, 6, 6))
        exported = export_grouped_convs(block)
        assert _no_dgconv(exported)
        x = torch.randn(3, 32, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), block(x), rtol=1e-5, atol=1e-5)

    def test_group_norm_compatible_patterns(self):
        # GN(num_groups=8) on 16 channels normalizes pairs (the 3 top bits). Patterns whose identity bits are a prefix
        # of the bits, or contain the top 3 bits, keep GN's blocks and fold exactly
        for pattern in [(0, 0, 0, 0), (0, 0, 0, 1), (1, 1, 1, 1), (0, 1, 1, 1)]:
            block = _bottleneck("gn")
            assert block.bn1.num_groups == 8
            _set_gates(block.conv2, pattern)
            _warm_stats(block, (4, 32, 6, 6))
            exported = export_grouped_convs(block)
            x = torch.randn(3, 32, 6, 6)
            with torch.no_grad():
                torch.testing.assert_close(exported(x), block(x), rtol=1e-5, atol=1e-5)

    def test_group_norm_incompatible_pattern(self):
        block = _bottleneck("gn")
        _set_gates(block.conv2, (1, 0, 1, 0))  # identity bits 2 and 4: channels leave their GN pairs
        block.eval()
        with pytest.raises(ExportError, match=r"cannot fold the input permutation of DGConv2d 'conv2'.*GroupNorm"):
            export_grouped_convs(block)
        exported = export_grouped_convs(block, strict=False)  # runtime permutation fallback, still exact
        assert any(isinstance(m, ChannelPermute) for m in exported.modules())
        x = torch.randn(3, 32, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), block(x), rtol=1e-5, atol=1e-5)

    def test_sequential_chain(self):
        gen = torch.Generator().manual_seed(5)
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=True),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            DGConv2d(16, 32, 3, stride=2, padding=1, bias=True),
            nn.BatchNorm2d(32),
            nn.SiLU(),
            nn.Conv2d(32, 8, 1, bias=True),
        )
        _random_gates(model, gen)
        _warm_stats(model, (4, 3, 8, 8))
        exported = export_grouped_convs(model)
        assert _no_dgconv(exported)
        x = torch.randn(2, 3, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)

    def test_residual_input_needs_runtime_permutation(self):
        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = DGConv2d(8, 8, 3, padding=1)
                self.head = nn.Conv2d(8, 4, 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(self.conv(x) + x)

        block = Block().eval()
        _set_gates(block.conv, (0, 1, 0))
        with pytest.raises(ExportError, match=r"input permutation of DGConv2d 'conv'.*\(x\) is also used elsewhere"):
            export_grouped_convs(block)
        exported = export_grouped_convs(block, strict=False)
        assert isinstance(exported.conv, nn.Sequential)
        x = torch.randn(2, 8, 5, 5)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), block(x))

    def test_root_dgconv(self):
        m = DGConv2d(8, 8, 3, padding=1).eval()
        _set_gates(m, (1, 0, 0))
        with pytest.raises(ExportError, match="it is the root module"):
            export_grouped_convs(m)
        exported = export_grouped_convs(m, strict=False)
        x = torch.randn(1, 8, 5, 5)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), m(x))

    def test_inplace_and_no_dgconv(self):
        model = nn.Sequential(nn.Conv2d(2, 2, 1))
        assert export_grouped_convs(model, inplace=True) is model
        block = _bottleneck("bn").eval()
        assert export_grouped_convs(block, inplace=True) is block
        assert _no_dgconv(block)


class _OddNorm(nn.Module):
    """A duck-typed per-channel layer with an extra channel-sized tensor that the exporter must not guess about."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.weight = nn.Parameter(torch.ones(num_features))
        self.scale = nn.Parameter(torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.weight * self.scale)[:, None, None]


def test_unknown_channel_tensor_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), _OddNorm(8), DGConv2d(8, 8, 1), nn.Conv2d(8, 2, 1)).eval()
    _set_gates(model[2], (0, 1, 0))
    with pytest.raises(ExportError, match=r"_OddNorm has channel-sized tensors other than per-channel .*\['scale'\]"):
        export_grouped_convs(model)
    exported = export_grouped_convs(model, strict=False)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x))
