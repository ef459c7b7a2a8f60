"""Port of the official ``SwitchNorm2d`` (switchablenorms/Switchable-Normalization, ``devkit/ops/switchable_norm.py``).

Luo et al., "Differentiable Learning-to-Normalize via Switchable Normalization", ICLR 2019; see
§2.2 of the design notes' normalization.md. Kept as upstream computes it: many separate ops, unbiased IN
variances, LN/BN statistics pooled as E[x²] − E[x]², parameters of shape (1, C, 1, 1), running statistics of shape
(1, C, 1) updated with SN's momentum convention (``running = momentum * running + (1 - momentum) * batch``), softmax
over three importance logits each for the means and the variances. The benchmarks time it; tests may compare a
pickwise layer that loads its state with it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OfficialStyleSwitchNorm2d"]


class OfficialStyleSwitchNorm2d(nn.Module):
    """The official ``SwitchNorm2d`` forward (``using_moving_average=True``, ``using_bn=True``, ``last_gamma=False``).

    Args:
        num_features: Channels C.
        eps: Added to the variances.
        momentum: Weight of the old running statistics (SN's convention: 0.9 keeps 90 % of them).
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(1, num_features, 1))
        self.register_buffer("running_var", torch.zeros(1, num_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.view(n, c, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)
        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in**2
        var_ln = temp.mean(1, keepdim=True) - mean_ln**2
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = temp.mean(0, keepdim=True) - mean_bn**2
            self.running_mean.mul_(self.momentum)
            self.running_mean.add_((1 - self.momentum) * mean_bn.data)
            self.running_var.mul_(self.momentum)
            self.running_var.add_((1 - self.momentum) * var_bn.data)
        else:
            mean_bn = self.running_mean
            var_bn = self.running_var
        softmax = nn.Softmax(0)
        mean_weight = softmax(self.mean_weight)
        var_weight = softmax(self.var_weight)
        mean = mean_weight[0] * mean_in + mean_weight[1] * mean_ln + mean_weight[2] * mean_bn
        var = var_weight[0] * var_in + var_weight[1] * var_ln + var_weight[2] * var_bn
        x = (x - mean) / (var + self.eps).sqrt()
        x = x.view(n, c, h, w)
        return x * self.weight + self.bias
