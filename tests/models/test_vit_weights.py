"""Tests for loading ImageNet ViT weights into MSTAT (pickwise.models._vit_weights).

Random checkpoints are generated here in the timm layout (.pth, .safetensors) and the Google augreg layout (.npz) with
the right shapes. Every tensor is checked at its destination, and the loaded model's tokens are compared with a
per-frame ViT forward computed directly from the checkpoint (for the .npz, in the Flax kernel layout with einsum),
so the key mapping and the transposes are checked independently of the loader.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pickwise.models.mstat as M
from pickwise.exceptions import CheckpointError
from pickwise.models import create_model
from pickwise.models._vit_weights import load_vit_weights, npz_to_timm_state_dict

D, HEADS, DEPTH, P, STRIDE, SRC = 32, 4, 2, 8, 6, 4  # source pos grid 4x4
IMG = (40, 24)  # grid ((40-8)//6+1, (24-8)//6+1) = (6, 3)


def _model(**kw):
    torch.manual_seed(0)
    cfg = {
        "num_classes": 3,
        "seq_len": 2,
        "img_size": IMG,
        "patch_size": P,
        "stride": STRIDE,
        "embed_dim": D,
        "depth": DEPTH,
        "num_heads": HEADS,
        "drop_path_rate": 0.0,
        "num_stages": 2,
    }
    return M.MSTAT(**{**cfg, **kw})


def _timm_state(d=D, depth=DEPTH, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, offset=0.0):
        return torch.randn(*shape, generator=g) * 0.2 + offset

    sd = {
        "patch_embed.proj.weight": r(d, 3, P, P),
        "patch_embed.proj.bias": r(d),
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, 1 + SRC * SRC, d),
        "norm.weight": r(d, offset=1.0),
        "norm.bias": r(d),
        "head.weight": r(10, d),
        "head.bias": r(10),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": r(d, offset=1.0),
                b + "norm1.bias": r(d),
                b + "attn.qkv.weight": r(3 * d, d),
                b + "attn.qkv.bias": r(3 * d),
                b + "attn.proj.weight": r(d, d),
                b + "attn.proj.bias": r(d),
                b + "norm2.weight": r(d, offset=1.0),
                b + "norm2.bias": r(d),
                b + "mlp.fc1.weight": r(4 * d, d),
                b + "mlp.fc1.bias": r(4 * d),
                b + "mlp.fc2.weight": r(d, 4 * d),
                b + "mlp.fc2.bias": r(d),
            }
        )
    return sd


def _resized_pos(pe):
    """Reference resize: the (1, D, 4, 4) grid through F.interpolate bicubic to the model's 6x3 grid."""
    grid = pe[:, 1:].reshape(1, SRC, SRC, -1).permute(0, 3, 1, 2).double()
    grid = F.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False)
    return torch.cat([pe[:, :1].double(), grid.permute(0, 2, 3, 1).reshape(1, 18, -1)], 1)


def _ln(x, w, b):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-6) * w + b


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _softmax_attention(q, k, v):
    """q, k, v: (L, H, d) → (L, H, d) with plain matmul/softmax per head."""
    s = torch.einsum("lhd,mhd->hlm", q, k) / math.sqrt(q.shape[-1])
    a = torch.exp(s - s.max(-1, keepdim=True).values)
    return torch.einsum("hlm,mhd->lhd", a / a.sum(-1, keepdim=True), v)


def _ref_timm_tokens(sd, frames):
    """Per-frame ViT from a timm state dict in float64: conv patches, cls + pos, pre-LN blocks, final norm."""
    sd = {k: v.double() for k, v in sd.items()}
    x = F.conv2d(frames.double(), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=STRIDE)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd["cls_token"].expand(x.shape[0], 1, D), x], 1) + _resized_pos(sd["pos_embed"])
    out = []
    for seq in x:
        for i in range(DEPTH):
            b = f"blocks.{i}."
            h = _ln(seq, sd[b + "norm1.weight"], sd[b + "norm1.bias"])
            qkv = (h @ sd[b + "attn.qkv.weight"].T + sd[b + "attn.qkv.bias"]).reshape(-1, 3, HEADS, D // HEADS)
            a = _softmax_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2]).reshape(-1, D)
            seq = seq + a @ sd[b + "attn.proj.weight"].T + sd[b + "attn.proj.bias"]
            h = _ln(seq, sd[b + "norm2.weight"], sd[b + "norm2.bias"])
            h = _gelu(h @ sd[b + "mlp.fc1.weight"].T + sd[b + "mlp.fc1.bias"])
            seq = seq + h @ sd[b + "mlp.fc2.weight"].T + sd[b + "mlp.fc2.bias"]
        out.append(_ln(seq, sd["norm.weight"], sd["norm.bias"]))
    return torch.stack(out)


def _clip(seed=3):
    return torch.randn(2, 2, 3, *IMG, generator=torch.Generator().manual_seed(seed))


def _check_landed(model, sd):
    own = model.state_dict()
    for k, v in sd.items():
        if k.startswith("head.") or k == "pos_embed":
            continue
        if k.startswith("norm."):
            for s in range(len(model.stage_norms)):
                torch.testing.assert_close(own[f"stage_norms.{s}.{k[5:]}"], v, rtol=0, atol=0)
            continue
        torch.testing.assert_close(own[k], v, rtol=0, atol=0, msg=k)
        if ".attn." in k:
            torch.testing.assert_close(own[k.replace(".attn.", ".temporal_attn.")], v, rtol=0, atol=0)
        if ".norm1." in k:
            torch.testing.assert_close(own[k.replace(".norm1.", ".temporal_norm.")], v, rtol=0, atol=0)
    torch.testing.assert_close(own["pos_embed"].double(), _resized_pos(sd["pos_embed"]), rtol=1e-6, atol=1e-6)


def test_timm_pth_lands_everywhere_and_forward_matches_a_plain_vit(tmp_path):
    sd = _timm_state()
    path = tmp_path / "vit.pth"
    torch.save(sd, path)
    model = _model()
    fresh_time = model.time_embed.detach().clone()
    loaded = load_vit_weights(model, path)
    _check_landed(model, sd)
    assert "time_embed" not in loaded and not any(k.startswith(("heads.", "necks.")) for k in loaded)
    torch.testing.assert_close(model.time_embed, fresh_time)
    assert not model.blocks[0].temporal_fc.weight.detach().any()
    x = _clip()
    with torch.no_grad():
        got = model.eval().forward_tokens(x)
    ref = _ref_timm_tokens(sd, x.flatten(0, 1)).reshape(got.shape)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)


def test_safetensors_and_wrapped_pth_load_the_same(tmp_path):
    from safetensors.torch import save_file

    sd = _timm_state(seed=1)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "vit.safetensors"))
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    a, b = _model(), _model()
    load_vit_weights(a, tmp_path / "vit.safetensors")
    load_vit_weights(b, tmp_path / "wrapped.pth")
    _check_landed(a, sd)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)


def _augreg_arrays(seed=2, big_vision=False):
    rng = np.random.default_rng(seed)
    hd = D // HEADS

    def r(*shape, offset=0.0):
        return (rng.standard_normal(shape) * 0.2 + offset).astype(np.float32)

    pre = "opt/target/" if big_vision else ""
    mha, ln2, mlp = (0, 1, 0) if big_vision else (1, 2, 3)
    w = {
        "embedding/kernel": r(P, P, 3, D),
        "embedding/bias": r(D),
        "cls": r(1, 1, D),
        "Transformer/posembed_input/pos_embedding": r(1, 1 + SRC * SRC, D),
        "Transformer/encoder_norm/scale": r(D, offset=1.0),
        "Transformer/encoder_norm/bias": r(D),
        "head/kernel": r(D, 10),
        "head/bias": r(10),
    }
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}/"
        a = f"{b}MultiHeadDotProductAttention_{mha}/"
        w.update(
            {
                b + "LayerNorm_0/scale": r(D, offset=1.0),
                b + "LayerNorm_0/bias": r(D),
                f"{b}LayerNorm_{ln2}/scale": r(D, offset=1.0),
                f"{b}LayerNorm_{ln2}/bias": r(D),
                a + "out/kernel": r(HEADS, hd, D),
                a + "out/bias": r(D),
                f"{b}MlpBlock_{mlp}/Dense_0/kernel": r(D, 4 * D),
                f"{b}MlpBlock_{mlp}/Dense_0/bias": r(4 * D),
                f"{b}MlpBlock_{mlp}/Dense_1/kernel": r(4 * D, D),
                f"{b}MlpBlock_{mlp}/Dense_1/bias": r(D),
            }
        )
        for n in ("query", "key", "value"):
            w[f"{a}{n}/kernel"] = r(D, HEADS, hd)
            w[f"{a}{n}/bias"] = r(HEADS, hd)
    return {pre + k: v for k, v in w.items()}


def _ref_flax_tokens(w, frames):
    """Per-frame ViT computed from Flax arrays: HWIO patch kernel, DenseGeneral (D, H, d) attention kernels."""
    t = {k: torch.from_numpy(v).double() for k, v in w.items()}
    cols = F.unfold(frames.double(), P, stride=STRIDE)  # (N, C*P*P, L), channel-major then kh, kw
    kernel = t["embedding/kernel"].permute(2, 0, 1, 3).reshape(3 * P * P, D)
    x = torch.einsum("ncl,cd->nld", cols, kernel) + t["embedding/bias"]
    pe = t["Transformer/posembed_input/pos_embedding"]
    x = torch.cat([t["cls"].expand(x.shape[0], 1, D), x], 1) + _resized_pos(pe)
    out = []
    for seq in x:
        for i in range(DEPTH):
            b = f"Transformer/encoderblock_{i}/"
            a = b + "MultiHeadDotProductAttention_1/"
            h = _ln(seq, t[b + "LayerNorm_0/scale"], t[b + "LayerNorm_0/bias"])
            q, k, v = (
                torch.einsum("ld,dhk->lhk", h, t[f"{a}{n}/kernel"]) + t[f"{a}{n}/bias"]
                for n in ("query", "key", "value")
            )
            seq = (
                seq + torch.einsum("lhk,hkd->ld", _softmax_attention(q, k, v), t[a + "out/kernel"]) + t[a + "out/bias"]
            )
            h = _ln(seq, t[b + "LayerNorm_2/scale"], t[b + "LayerNorm_2/bias"])
            h = _gelu(h @ t[b + "MlpBlock_3/Dense_0/kernel"] + t[b + "MlpBlock_3/Dense_0/bias"])
            seq = seq + h @ t[b + "MlpBlock_3/Dense_1/kernel"] + t[b + "MlpBlock_3/Dense_1/bias"]
        out.append(_ln(seq, t["Transformer/encoder_norm/scale"], t["Transformer/encoder_norm/bias"]))
    return torch.stack(out)


def test_augreg_npz_lands_everywhere_and_forward_matches_flax_math(tmp_path):
    w = _augreg_arrays()
    np.savez(tmp_path / "vit.npz", **w)
    model = _model()
    load_vit_weights(model, tmp_path / "vit.npz")
    own = model.state_dict()
    torch.testing.assert_close(
        own["patch_embed.proj.weight"], torch.from_numpy(w["embedding/kernel"]).permute(3, 2, 0, 1)
    )
    q = w["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"]
    torch.testing.assert_close(own["blocks.1.attn.qkv.weight"][:D], torch.from_numpy(q.reshape(D, D).T))
    x = _clip()
    with torch.no_grad():
        got = model.eval().forward_tokens(x)
    ref = _ref_flax_tokens(w, x.flatten(0, 1)).reshape(got.shape)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)


def test_big_vision_npz_naming_converts_like_augreg():
    augreg = npz_to_timm_state_dict(_augreg_arrays(seed=4))
    big = npz_to_timm_state_dict(_augreg_arrays(seed=4, big_vision=True))
    assert set(augreg) == set(big)
    for k, v in augreg.items():
        torch.testing.assert_close(big[k], v, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), r"1 missing keys \(first: blocks\.1\.mlp\.fc2\.bias\)"),
        (lambda sd: sd.update({"foo.bar": torch.zeros(1)}), r"1 unexpected keys \(first: foo\.bar\)"),
        (
            lambda sd: sd.update({"blocks.0.mlp.fc1.weight": torch.zeros(7, D)}),
            r"1 shape mismatches \(first: blocks\.0\.mlp\.fc1\.weight \(7, 32\)",
        ),
    ],
)
def test_bad_checkpoints_fail_in_one_line(tmp_path, edit, message):
    sd = _timm_state()
    edit(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message) as err:
        load_vit_weights(_model(), tmp_path / "bad.pth")
    assert "\n" not in str(err.value)


def test_width_depth_and_file_errors(tmp_path):
    torch.save(_timm_state(d=48), tmp_path / "wide.pth")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_vit_weights(_model(), tmp_path / "wide.pth")
    deep = _timm_state(depth=3)
    torch.save(deep, tmp_path / "deep.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(first: blocks\.2\."):
        load_vit_weights(_model(), tmp_path / "deep.pth")
    model = _model()
    load_vit_weights(model, tmp_path / "deep.pth", strict=False)
    _check_landed(model, {k: v for k, v in deep.items() if not k.startswith("blocks.2.")})
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_vit_weights(_model(), tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no file"):
        load_vit_weights(_model(), tmp_path / "missing.pth")


def test_global_pool_checkpoint_uses_fc_norm(tmp_path):
    sd = _timm_state()
    sd["fc_norm.weight"], sd["fc_norm.bias"] = sd.pop("norm.weight"), sd.pop("norm.bias")
    torch.save(sd, tmp_path / "gap.pth")
    model = _model()
    load_vit_weights(model, tmp_path / "gap.pth")
    torch.testing.assert_close(model.stage_norms[1].weight, sd["fc_norm.weight"], rtol=0, atol=0)


def test_joint_attention_and_mobilenet_stem_models_load(tmp_path):
    sd = _timm_state()
    torch.save(sd, tmp_path / "vit.pth")
    joint = _model(attention="joint")
    load_vit_weights(joint, tmp_path / "vit.pth")
    torch.testing.assert_close(joint.state_dict()["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    stem = _model(stem="mobilenet_v2", stem_pretrained=False, img_size=(64, 32))
    first_conv = stem.patch_embed.features[0][0].weight.detach().clone()
    load_vit_weights(stem, tmp_path / "vit.pth", source_grid=(SRC, SRC))
    torch.testing.assert_close(stem.patch_embed.features[0][0].weight, first_conv, rtol=0, atol=0)
    torch.testing.assert_close(stem.state_dict()["blocks.0.mlp.fc1.weight"], sd["blocks.0.mlp.fc1.weight"])


def test_create_model_pretrained_file(tmp_path):
    sd = _timm_state()
    torch.save(sd, tmp_path / "vit.pth")
    dims = {"embed_dim": D, "depth": DEPTH, "num_heads": HEADS, "patch_size": P, "stride": STRIDE, "img_size": IMG}
    model = create_model("mstat_tiny", num_classes=3, num_stages=2, pretrained_file=str(tmp_path / "vit.pth"), **dims)
    torch.testing.assert_close(model.cls_token, sd["cls_token"], rtol=0, atol=0)
