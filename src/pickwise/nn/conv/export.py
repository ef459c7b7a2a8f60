r"""Export learned DGConv layers to plain grouped convolutions, with the channel permutations folded away.

Derivation (``docs/dgconv.md``): write a channel index in mixed radix with one digit per factor of ``U``. Then
``U[i, j] = prod over identity factors k of [i_k == j_k]``: two channels share a group iff their identity digits
agree. Reordering the digits so the identity digits come first
(:func:`~pickwise.nn.functional.dgconv.group_permutation`) gives ``U[perm_out][:, perm_in] = I_G ⊗ 1``, so with
``x_p = x[:, perm_in]`` and ``y_p = y[:, perm_out]``

.. math::
    y_p = \mathrm{conv2d}\big(x_p,\ \mathrm{blockdiag}\big((W \odot U)[\pi_{out}][:, \pi_{in}]\big),
    \ \mathrm{groups}=G\big)

exactly (the discarded off-diagonal blocks are zero). :func:`export_grouped_convs` then removes the permutations:
the producer of ``x`` (a dense conv, through per-channel norms and activations) is made to emit ``x_p`` directly by
permuting its output channels, and the consumer of ``y`` reads ``y_p`` by permuting its input channels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...exceptions import InvalidParameterError
from ..functional.dgconv import group_permutation
from ..norm.registry import is_batch_norm
from .dgconv import DGConv2d

__all__ = ["ChannelPermute", "ExportError", "dgconv_to_conv", "export_grouped_convs"]


class ExportError(InvalidParameterError):
    """A DGConv layer's channel permutation cannot be folded into its neighbours (``strict=True``)."""


class ChannelPermute(nn.Module):
    """Reorder channels: ``y = x[:, perm]`` (the runtime fallback of :func:`export_grouped_convs`)."""

    perm: torch.Tensor

    def __init__(self, perm: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gather channels along dim 1."""
        return x.index_select(1, self.perm)

    def extra_repr(self) -> str:
        """Number of channels."""
        return f"{self.perm.numel()}"


@torch.no_grad()
def dgconv_to_conv(module: DGConv2d) -> tuple[nn.Conv2d, torch.Tensor, torch.Tensor]:
    """Convert a DGConv layer to ``nn.Conv2d(groups=G)`` acting on permuted channels.

    The result satisfies ``conv(x[:, perm_in]) == module(x)[:, perm_out]`` (to round-off), i.e.
    ``module(x) == conv(x[:, perm_in])[:, perm_out.argsort()]``. Only the ``C_out * C_in / G`` weights inside the
    groups are kept.

    Args:
        module: The trained layer (its current hard gates define the groups).

    Returns:
        ``(conv, perm_in, perm_out)`` with ``perm_in`` of length ``C_in`` and ``perm_out`` of length ``C_out``.

    Raises:
        InvalidParameterError: If ``module`` is not a :class:`DGConv2d`.
    """
    if not isinstance(module, DGConv2d):
        raise InvalidParameterError(f"dgconv_to_conv: module must be a DGConv2d; got {type(module).__name__}")
    gates = module.hard_gates().cpu()
    groups = module.groups
    perm_in = group_permutation(gates, module.factors, module.r_in)
    perm_out = group_permutation(gates, module.factors, module.r_out)
    w = module.weight.detach()
    w = (w * module.mask().detach()[:, :, None, None])[perm_out.to(w.device)][:, perm_in.to(w.device)]
    co, ci = module.out_channels // groups, module.in_channels // groups
    kh, kw = module.kernel_size
    idx = torch.arange(groups, device=w.device)
    blocks = w.reshape(groups, co, groups, ci, kh, kw)[idx, :, idx]  # (G, co, ci, kh, kw)
    conv = nn.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=groups,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
        device=w.device,
        dtype=w.dtype,
    )
    conv.weight.copy_(blocks.reshape(module.out_channels, ci, kh, kw))
    if module.bias is not None and conv.bias is not None:
        conv.bias.copy_(module.bias.detach()[perm_out.to(w.device)])
    conv.train(module.training)
    return conv, perm_in, perm_out


# ---------------------------------------------------------------------------------------------------- folding
_ELEMENTWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.silu,
    F.gelu,
    F.hardswish,
    F.leaky_relu,
    F.elu,
    F.mish,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous"}
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, DGConv2d)
            or not any(True for _ in m.children())
            or super().is_leaf_module(m, module_qualified_name)
        )


#: Per-channel tensors that are permuted in norm layers (other channel-sized tensors make a layer unfoldable).
_PER_CHANNEL_NAMES = ("weight", "bias", "running_mean", "running_var")


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]


def _per_channel_tensors(module: nn.Module, channels: int) -> list[torch.Tensor]:
    return [t for n, t in _named_tensors(module) if n in _PER_CHANNEL_NAMES and t.shape == (channels,)]


def _blocks_preserved(perm: torch.Tensor, num_groups: int) -> bool:
    """True if ``perm`` maps each contiguous block of ``C / num_groups`` channels onto one block."""
    size = perm.numel() // num_groups
    owner = (perm // size).reshape(num_groups, size)
    return bool((owner == owner[:, :1]).all())


def _norm_problem(module: nn.Module, channels: int, perm: torch.Tensor) -> str | None:
    """``None`` if the per-channel tensors of ``module`` may be permuted by ``perm``; else the reason why not."""
    name = type(module).__name__
    if isinstance(module, nn.GroupNorm):
        if module.num_channels != channels:
            return f"{name} has {module.num_channels} channels, expected {channels}"
        if module.num_groups > 1 and not _blocks_preserved(perm, module.num_groups):
            return (
                f"{name}(num_groups={module.num_groups}) normalizes contiguous channel blocks and the learned "
                "grouping permutes channels across those blocks, which would change its statistics"
            )
        return None
    if is_batch_norm(module) or isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return None if module.num_features == channels else f"{name} has {module.num_features} channels"
    # duck-typed per-channel layers (the SN/SSN/EN/PN family): num_features == C and only (C,) or scalar tensors
    if getattr(module, "num_features", None) != channels:
        return f"{name} is not a known per-channel layer"
    if any(True for _ in module.children()):
        return f"{name} has submodules"
    odd = [n for n, t in _named_tensors(module) if channels in t.shape and n not in _PER_CHANNEL_NAMES]
    odd += [n for n, t in _named_tensors(module) if n in _PER_CHANNEL_NAMES and t.shape != (channels,)]
    if odd:
        return f"{name} has channel-sized tensors other than per-channel {'/'.join(_PER_CHANNEL_NAMES)}: {odd}"
    normalizers = getattr(module, "normalizers", ())
    if any(str(n).lower().startswith("gn") for n in normalizers):
        return f"{name} mixes in group normalization, whose channel blocks the permutation may break"
    num_groups = getattr(module, "num_groups", 1)
    if isinstance(num_groups, int) and num_groups > 1 and not _blocks_preserved(perm, num_groups):
        return f"{name}(num_groups={num_groups}) channel blocks would be broken by the permutation"
    return None


def _elementwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    extra = [*node.args[1:], *node.kwargs.values()]
    if any(isinstance(a, fx.Node) for a in extra):
        return False
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _dense_conv(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Conv2d | None:
    if node.op != "call_module":
        return None
    m = modules[str(node.target)]
    if type(m) is nn.Conv2d and m.groups == 1:
        return m
    return None


@dataclass
class _SidePlan:
    conv: nn.Conv2d | None = None
    norms: list[nn.Module] = field(default_factory=list)
    problem: str | None = None


def _plan_input(node: fx.Node, modules: dict[str, nn.Module], channels: int, perm: torch.Tensor) -> _SidePlan:
    plan = _SidePlan()
    cur = node.args[0] if node.args else None
    while True:
        if not isinstance(cur, fx.Node):
            plan.problem = "its input is not produced by a traced layer"
            return plan
        if len(cur.users) != 1:
            plan.problem = f"the tensor feeding it ({cur.name}) is also used elsewhere (e.g. a residual branch)"
            return plan
        conv = _dense_conv(cur, modules)
        if conv is not None:
            if conv.out_channels != channels:
                plan.problem = f"producer {cur.target} has {conv.out_channels} output channels"
                return plan
            plan.conv = conv
            return plan
        if cur.op == "call_module" and not _elementwise(cur, modules):
            norm = modules[str(cur.target)]
            problem = _norm_problem(norm, channels, perm)
            if problem is not None:
                plan.problem = f"between it and its producer, {cur.target}: {problem}"
                return plan
            plan.norms.append(norm)
        elif not _elementwise(cur, modules):
            plan.problem = f"its input comes from {cur.op} {cur.target!s}, not from a dense conv"
            return plan
        cur = cur.args[0]


def _plan_output(node: fx.Node, modules: dict[str, nn.Module], channels: int, perm: torch.Tensor) -> _SidePlan:
    plan = _SidePlan()
    cur = node
    while True:
        users = list(cur.users)
        if len(users) != 1:
            plan.problem = f"its output ({cur.name}) is used by {len(users)} nodes (e.g. a residual add)"
            return plan
        user = users[0]
        if user.args[0] is not cur or any(a is cur for a in (*user.args[1:], *user.kwargs.values())):
            plan.problem = f"its output feeds {user.op} {user.target!s} in a way that needs the original order"
            return plan
        conv = _dense_conv(user, modules)
        if conv is not None:
            if conv.in_channels != channels:
                plan.problem = f"consumer {user.target} has {conv.in_channels} input channels"
                return plan
            plan.conv = conv
            return plan
        if user.op == "call_module" and not _elementwise(user, modules):
            norm = modules[str(user.target)]
            problem = _norm_problem(norm, channels, perm)
            if problem is not None:
                plan.problem = f"between it and its consumer, {user.target}: {problem}"
                return plan
            plan.norms.append(norm)
        elif not _elementwise(user, modules):
            plan.problem = (
                f"its output goes to {user.op} {user.target!s}, not through per-channel layers to a dense conv"
            )
            return plan
        cur = user


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@torch.no_grad()
def export_grouped_convs(model: nn.Module, *, strict: bool = True, inplace: bool = False) -> nn.Module:
    """Replace every :class:`DGConv2d` in ``model`` by a plain ``nn.Conv2d(groups=G)``, folding the permutations.

    The model is traced with :mod:`torch.fx` (DGConv and childless modules as leaves). For each DGConv:

    - **input side**: walking back through per-channel layers (BatchNorm, InstanceNorm, LayerNorm2d, GroupNorm when
      the permutation keeps its channel blocks, SN-family layers whose tensors are ``(C,)``) and elementwise
      activations to a dense ``nn.Conv2d`` (``groups=1``), every tensor on the way is used only once. Then the
      producer's output channels (weight rows, bias) and those layers' ``(C,)`` tensors are permuted by ``perm_in``;
    - **output side**: likewise forward to a dense conv, whose input channels (weight columns) and the
      in-between layers' tensors are permuted by ``perm_out``.

    In a ResNeXt bottleneck this permutes ``conv1`` + ``bn1`` and ``bn2`` + ``conv3``; the residual add sees the
    original channel order, so the exported model needs no runtime permutation and its outputs equal the original's.

    Args:
        model: Model containing DGConv layers (a root DGConv is exported with runtime permutations if not strict).
        strict: Raise :class:`ExportError` when a side cannot be folded; ``False`` keeps a :class:`ChannelPermute`
            for that side instead (still exact). Default: ``True``.
        inplace: Modify ``model`` itself instead of a deep copy. Default: ``False``.

    Returns:
        The exported model (``model`` itself when ``inplace``).

    Raises:
        ExportError: With ``strict=True``, naming the layer and why its permutation cannot be folded.
    """
    if not inplace:
        model = copy.deepcopy(model)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, DGConv2d)]
    if not targets:
        return model
    modules = dict(model.named_modules())
    graph: fx.Graph | None = None
    trace_error = ""
    if not isinstance(model, DGConv2d):
        try:
            graph = _Tracer().trace(model)
        except Exception as err:
            trace_error = f"the model cannot be traced with torch.fx ({type(err).__name__}: {err})"
    plans = []
    for name, m in targets:
        conv, perm_in, perm_out = dgconv_to_conv(m)
        nodes = [] if graph is None else [n for n in graph.nodes if n.op == "call_module" and n.target == name]
        if len(nodes) == 1:
            p_in = _plan_input(nodes[0], modules, m.in_channels, perm_in)
            p_out = _plan_output(nodes[0], modules, m.out_channels, perm_out)
        else:
            why = trace_error or ("it is the root module" if not name else f"it is called {len(nodes)} times")
            p_in, p_out = _SidePlan(problem=why), _SidePlan(problem=why)
        for side, plan in (("input", p_in), ("output", p_out)):
            if plan.problem is not None and strict:
                raise ExportError(
                    f"export_grouped_convs: cannot fold the {side} permutation of DGConv2d {name or '<root>'!r} "
                    f"(groups={m.groups}): {plan.problem}. Pass strict=False to keep a runtime ChannelPermute"
                )
        plans.append((name, conv, perm_in, perm_out, p_in, p_out))
    if any(name == "" for name, *_ in plans):
        name, conv, perm_in, perm_out, *_ = plans[0]
        return nn.Sequential(ChannelPermute(perm_in), conv, ChannelPermute(torch.argsort(perm_out)))
    for name, conv, perm_in, perm_out, p_in, p_out in plans:
        parts: list[nn.Module] = []
        if p_in.problem is None:
            assert p_in.conv is not None
            pi = perm_in.to(p_in.conv.weight.device)
            p_in.conv.weight.copy_(p_in.conv.weight[pi])
            if p_in.conv.bias is not None:
                p_in.conv.bias.copy_(p_in.conv.bias[pi])
            for norm in p_in.norms:
                for t in _per_channel_tensors(norm, pi.numel()):
                    t.copy_(t[pi.to(t.device)])
        else:
            parts.append(ChannelPermute(perm_in.to(conv.weight.device)))
        parts.append(conv)
        if p_out.problem is None:
            assert p_out.conv is not None
            po = perm_out.to(p_out.conv.weight.device)
            p_out.conv.weight.copy_(p_out.conv.weight[:, po])
            for norm in p_out.norms:
                for t in _per_channel_tensors(norm, po.numel()):
                    t.copy_(t[po.to(t.device)])
        else:
            parts.append(ChannelPermute(torch.argsort(perm_out).to(conv.weight.device)))
        _set_submodule(model, name, parts[0] if len(parts) == 1 else nn.Sequential(*parts))
    return model
