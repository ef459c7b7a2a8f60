r"""Sparse Switchable Normalization (SSN): SN whose ratios come from SparsestMax, plus its training recipe.

Paper: ``shao2019ssn``: W. Shao, T. Meng, J. Li, R. Zhang, Y. Li, X. Wang and P. Luo, "SSN: Learning Sparse
Switchable Normalization via SparsestMax", CVPR 2019, https://arxiv.org/abs/1903.03793

Recipe (official ``Sparse_SwitchNorm`` trainer): the radius grows linearly from 0 to 1 over training
(:class:`SparsestmaxRadiusScheduler`), so every layer's ratios become one-hot and freeze; the importance logits get
``lr / 10`` and no weight decay (:func:`ssn_param_groups`), and their gradient norm is clipped to 1
(:func:`clip_switch_grad_norm_`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...exceptions import InvalidParameterError
from .._validation import nonnegative_float, one_of, positive_int
from ..functional.switchable import sparsestmax
from .registry import MIXTURE_LOGIT_NAMES, register_norm_layer
from .switchable import SwitchNorm2d

__all__ = [
    "SparseSwitchNorm2d",
    "SparsestmaxRadiusScheduler",
    "clip_switch_grad_norm_",
    "ssn_param_groups",
    "switch_parameters",
]


class SparseSwitchNorm2d(SwitchNorm2d):
    r"""Sparse Switchable Normalization for 4-D inputs: SN with ``sparsestmax`` ratios that end one-hot and freeze.

    Paper: W. Shao et al., "SSN: Learning Sparse Switchable Normalization via SparsestMax", CVPR 2019,
    https://arxiv.org/abs/1903.03793

    .. math::
        w = \operatorname{sparsestmax}(\lambda^{\mu}; r),\quad w' = \operatorname{sparsestmax}(\lambda^{\sigma}; r)

    Everything else is :class:`~pickwise.nn.SwitchNorm2d`. :func:`~pickwise.nn.functional.sparsestmax` equals
    sparsemax at ``r = 0`` and is one-hot for ``r >= sqrt((K-1)/K)``. Once the mean (or variance) ratios of a
    layer are one-hot in training, that selection is frozen: buffers ``mean_fixed``/``var_fixed`` flip to ``True``
    and ``mean_frozen``/``var_frozen`` keep the one-hot vector, which is used from then on (the logits receive zero
    gradient). All of it is tensor ops - no ``.item()``, no host sync, compile-friendly. Freezing applies at every
    radius, including ``r = 0`` (plain sparsemax, one-hot as soon as the top logit leads by >= 1), so start
    converted layers with :meth:`init_mixture` rather than a large logit gap.

    Official ``SSN2d`` checkpoints (switchablenorms/Sparse_SwitchNorm) load with ``strict=True``: their ``(1,)``
    ``radius``/``mean_fixed``/``var_fixed`` buffers are reshaped, and ``mean_frozen``/``var_frozen`` are rebuilt from
    the logits, which the official layer overwrites with the one-hot selection when it freezes.

    Args:
        num_features: Number of channels ``C``.
        eps: See :class:`~pickwise.nn.SwitchNorm2d`.
        momentum: PyTorch convention; the official SSN 0.997 is ``momentum=0.003``. Default: ``0.1``.
        affine: Learn ``weight``/``bias``. Default: ``True``.
        track_running_stats: Default: ``True``.
        normalizers: Default: ``("in", "ln", "bn")``.
        using_bn: Default: ``True``.
        radius: Initial radius ``r`` (change it with :meth:`set_radius`). Default: ``0.0``.
        device: Factory keyword.
        dtype: Factory keyword.

    Shape:
        - Input: ``(N, C, H, W)``
        - Output: same shape, dtype and memory format.
    """

    radius: Tensor
    mean_fixed: Tensor
    var_fixed: Tensor
    mean_frozen: Tensor
    var_frozen: Tensor

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        normalizers: Sequence[str] = ("in", "ln", "bn"),
        using_bn: bool = True,
        radius: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            normalizers=normalizers,
            using_bn=using_bn,
            device=device,
            dtype=dtype,
        )
        k = len(self.normalizers)
        self.register_buffer("radius", torch.tensor(0.0, device=device))
        self.register_buffer("mean_fixed", torch.tensor(False, device=device))
        self.register_buffer("var_fixed", torch.tensor(False, device=device))
        self.register_buffer("mean_frozen", torch.zeros(k, device=device))
        self.register_buffer("var_frozen", torch.zeros(k, device=device))
        self.reset_parameters()
        self.set_radius(radius)

    def reset_parameters(self) -> None:
        """SN's reset, plus the frozen selections cleared (the radius is kept)."""
        super().reset_parameters()
        if "mean_fixed" in self._buffers:
            self.mean_fixed.fill_(False)
            self.var_fixed.fill_(False)
            self.mean_frozen.zero_()
            self.var_frozen.zero_()

    def set_radius(self, radius: float | Tensor) -> None:
        """Set the SparsestMax radius ``r >= 0`` in place (a buffer, so compiled graphs are not invalidated)."""
        if isinstance(radius, Tensor):
            self.radius.copy_(radius.detach().reshape(()))
            return
        self.radius.fill_(nonnegative_float(f"{type(self).__name__}.set_radius", "radius", radius))

    def _selection(self, update: bool) -> Tensor:
        """``(2, K)`` ratios (row 0: means, row 1: variances); mean and variance selections in one batched call."""
        logits = torch.stack([self.mean_weight, self.var_weight])
        w = sparsestmax(logits if logits.dtype == torch.float64 else logits.float(), self.radius)
        fixed = torch.stack([self.mean_fixed, self.var_fixed])
        frozen = torch.stack([self.mean_frozen, self.var_frozen])
        if update:
            with torch.no_grad():
                one_hot_now = (w.amax(-1) - w.amin(-1)) >= 1.0 - 1e-6
                one_hot = torch.nn.functional.one_hot(w.argmax(-1), w.shape[-1]).to(frozen.dtype)
                frozen = torch.where(fixed.unsqueeze(-1), frozen, one_hot)
                fixed = fixed | one_hot_now
                self.mean_frozen.copy_(frozen[0])
                self.var_frozen.copy_(frozen[1])
                self.mean_fixed.copy_(fixed[0])
                self.var_fixed.copy_(fixed[1])
        return torch.where(fixed.unsqueeze(-1), frozen.to(w.dtype), w)

    def init_mixture(self, init: str, *, bn_logit_gap: float = 8.0) -> None:
        r"""Initialise the logits: ``"uniform"`` (the paper's equal logits) or ``"bn"`` (start next to BN).

        ``"bn"`` gives the ratios SN gets at the same ``bn_logit_gap`` — BN weight
        :math:`w_{bn} = 1 / (1 + (K-1)e^{-g})`, the others :math:`w_o = e^{-g} / (1 + (K-1)e^{-g})` — but through
        sparsemax: logits 0 for the others and :math:`1 - K w_o` for BN. That point is inside the simplex (all K
        normalizers in the support), where sparsemax's Jacobian is :math:`I - \mathbf 1\mathbf 1^\top/K` whatever
        :math:`w_o` is, so the logit gradients are not damped by :math:`w_o` as softmax's are, and the layer is not
        one-hot (a BN logit 1 or more above the rest is exactly one-hot, and freezes on the first training step).
        The radius is reset to 0 and the frozen selections cleared.
        """
        one_of(f"{type(self).__name__}.init_mixture", "init", init, ("bn", "uniform"))
        bn_logit_gap = nonnegative_float(f"{type(self).__name__}.init_mixture", "bn_logit_gap", bn_logit_gap)
        k = len(self.normalizers)
        with torch.no_grad():
            self.mean_fixed.fill_(False)
            self.var_fixed.fill_(False)
            self.mean_frozen.zero_()
            self.var_frozen.zero_()
            self.radius.zero_()
            for logits in (self.mean_weight, self.var_weight):
                logits.fill_(1.0 if init == "uniform" else 0.0)
                if init == "bn":
                    if "bn" not in self.normalizers:
                        raise InvalidParameterError(
                            f"{type(self).__name__}.init_mixture: init='bn' needs a 'bn' branch; got {self.normalizers}"
                        )
                    w_other = math.exp(-bn_logit_gap) / (1.0 + (k - 1) * math.exp(-bn_logit_gap))
                    logits[self.normalizers.index("bn")] = 1.0 - k * w_other

    def mixing_ratios(self) -> tuple[Tensor, Tensor]:
        """Differentiable sparsestmax ratios, replaced by the frozen one-hot selection once fixed."""
        w = self._selection(update=self.training)
        return w[0], w[1]

    @torch.no_grad()
    def ratios(self) -> dict[str, Tensor]:
        """Current (sparsestmax or frozen) ratios ``{"mean": (K,), "var": (K,)}``, without updating any buffer."""
        w = self._selection(update=False)
        return {"mean": w[0].clone(), "var": w[1].clone()}

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Official SSN2d checkpoints (switchablenorms/Sparse_SwitchNorm) store radius (1,) float, mean_fixed/var_fixed
        # (1,) int64 and no mean_frozen/var_frozen: once a selection is fixed, the official layer overwrites the
        # logits (mean_weight.data) with the one-hot sparsestmax output, so the frozen selection *is* the stored
        # logit vector. Rebuild our buffers from that; without this, strict loading fails on the missing keys and
        # non-strict loading leaves the frozen selection at [0, 0, 0] (all-zero ratios).
        for name in ("radius", "mean_fixed", "var_fixed"):
            key = prefix + name
            value = state_dict.get(key)
            if isinstance(value, Tensor) and value.numel() == 1 and value.dim() > 0:
                state_dict[key] = value.reshape(())
            value = state_dict.get(key)
            if isinstance(value, Tensor) and name != "radius" and value.dtype != torch.bool:
                state_dict[key] = value != 0
        for which in ("mean", "var"):
            frozen_key, fixed_key, logit_key = (prefix + f"{which}_{n}" for n in ("frozen", "fixed", "weight"))
            logits, fixed = state_dict.get(logit_key), state_dict.get(fixed_key)
            if frozen_key in state_dict or not isinstance(logits, Tensor) or not isinstance(fixed, Tensor):
                continue
            k = len(self.normalizers)
            if logits.shape != (k,):
                continue  # let the size-mismatch error name the key
            one_hot = torch.nn.functional.one_hot(logits.argmax(), k).to(self.mean_frozen.dtype)
            state_dict[frozen_key] = one_hot if bool(fixed) else torch.zeros(k, dtype=self.mean_frozen.dtype)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class SparsestmaxRadiusScheduler:
    """Linear SparsestMax radius ramp of the official SSN trainer, pushed into every SSN layer of a model.

    ``r(t) = start_radius + (max_radius - start_radius) * min(t / total_steps, 1)``; the official schedule is
    ``r = (epoch * iters_per_epoch + i) / (epochs * iters_per_epoch)`` (``start_radius=0``, ``max_radius=1``),
    so with K=3 every layer is one-hot after ~82% of training (``sqrt(2/3)``). Call :meth:`step` once per iteration.

    Args:
        model: Module whose :class:`SparseSwitchNorm2d` layers (at any depth) are driven.
        total_steps: Number of iterations of the ramp (``epochs * iters_per_epoch``).
        max_radius: Final radius. Default: ``1.0``.
        start_radius: Radius at step 0. Default: ``0.0``.
    """

    def __init__(self, model: nn.Module, total_steps: int, max_radius: float = 1.0, start_radius: float = 0.0) -> None:
        total_steps = positive_int("SparsestmaxRadiusScheduler", "total_steps", total_steps)
        start_radius = nonnegative_float("SparsestmaxRadiusScheduler", "start_radius", start_radius)
        max_radius = nonnegative_float("SparsestmaxRadiusScheduler", "max_radius", max_radius)
        if not start_radius <= max_radius:
            raise InvalidParameterError(
                "SparsestmaxRadiusScheduler: need 0 <= start_radius <= max_radius; "
                f"got start_radius={start_radius!r}, max_radius={max_radius!r}"
            )
        self.layers = [m for m in model.modules() if isinstance(m, SparseSwitchNorm2d)]
        self.total_steps = total_steps
        self.max_radius = float(max_radius)
        self.start_radius = float(start_radius)
        self.last_step = 0
        self._apply()

    def radius(self, step: int | None = None) -> float:
        """Radius at ``step`` (default: the current step)."""
        t = self.last_step if step is None else step
        return self.start_radius + (self.max_radius - self.start_radius) * min(max(t, 0) / self.total_steps, 1.0)

    def _apply(self) -> None:
        r = self.radius()
        for layer in self.layers:
            layer.set_radius(r)

    def step(self) -> float:
        """Advance one iteration and set the new radius on every layer; returns it."""
        self.last_step += 1
        self._apply()
        return self.radius()

    def state_dict(self) -> dict[str, Any]:
        """Resumable state."""
        return {
            "last_step": self.last_step,
            "total_steps": self.total_steps,
            "max_radius": self.max_radius,
            "start_radius": self.start_radius,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and re-apply the radius."""
        self.last_step = int(state["last_step"])
        self.total_steps = int(state["total_steps"])
        self.max_radius = float(state["max_radius"])
        self.start_radius = float(state["start_radius"])
        self._apply()


def _is_switch_param(module: nn.Module, name: str) -> bool:
    return name in MIXTURE_LOGIT_NAMES and hasattr(module, "normalizers")


def switch_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Importance logits (``mean_weight``, ``var_weight``, EN's ``ratio_weight``) of every learned-norm layer."""
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if _is_switch_param(module, name):
                yield param


def ssn_param_groups(
    model: nn.Module,
    lr: float,
    switch_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    *,
    switch_weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the SSN recipe: logits at ``lr * switch_lr_mult`` with no weight decay.

    Works for SN/SSN/EN (any layer with a ``normalizers`` attribute). Pass the result to e.g.
    ``torch.optim.SGD(groups, lr=lr, momentum=0.9)``, and call :func:`clip_switch_grad_norm_` after ``backward``.

    Returns:
        ``[{"params": others, "lr": lr, "weight_decay": weight_decay}, {"params": logits, "lr": lr *
        switch_lr_mult, "weight_decay": switch_weight_decay, "name": "switch"}]`` (empty groups dropped).
    """
    switch_ids = {id(p) for p in switch_parameters(model)}
    switch = [p for p in model.parameters() if id(p) in switch_ids]
    others = [p for p in model.parameters() if id(p) not in switch_ids]
    groups: list[dict[str, Any]] = []
    if others:
        groups.append({"params": others, "lr": lr, "weight_decay": weight_decay, "name": "default"})
    if switch:
        groups.append(
            {"params": switch, "lr": lr * switch_lr_mult, "weight_decay": switch_weight_decay, "name": "switch"}
        )
    return groups


def clip_switch_grad_norm_(model_or_params: nn.Module | Iterable[Tensor], max_norm: float = 1.0) -> Tensor:
    """Clip the gradient norm of the importance logits (the SSN recipe clips to 1); returns the total norm.

    No host sync: :func:`torch.nn.utils.clip_grad_norm_` scales with tensor ops.
    """
    params = (
        list(switch_parameters(model_or_params)) if isinstance(model_or_params, nn.Module) else list(model_or_params)
    )
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


register_norm_layer(
    "ssn",
    SparseSwitchNorm2d,
    aliases=("sparseswitchnorm", "sparseswitchnorm2d"),
    description="Sparse Switchable Normalization: SN with sparsestmax ratios that end one-hot (Shao et al., CVPR 2019)",
    family="mixture",
    batch_dependent=True,
    learned_mixture=True,
    convertible=True,
    sync="syncssn",
)
