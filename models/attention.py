"""Soft-threshold attention: the channel-wise shrinkage of Deep Residual Shrinkage Networks.

Zhao et al., "Deep Residual Shrinkage Networks for Fault Diagnosis", IEEE TII 2019 (DRSN-CW):

    s     = mean |x|                      per sample and channel
    alpha = sigmoid(FC(ReLU(BN(FC(s)))))  in (0, 1)
    tau   = alpha * s                     so 0 <= tau <= mean |x|
    y     = sign(x) * max(|x| - tau, 0)   soft thresholding: small (noise-like) features become 0
"""
from __future__ import annotations

import torch
from torch import nn


class SoftThreshold(nn.Module):
    """Channel-wise soft thresholding with thresholds learned from the features themselves."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8):
        super().__init__()
        hidden = min(channels, max(channels // reduction, min_hidden))
        self.fc1 = nn.Linear(channels, hidden, bias=False)   # no bias: BN follows
        self.bn = nn.BatchNorm1d(hidden)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)

    def thresholds(self, x: torch.Tensor) -> torch.Tensor:
        """tau, shape (N, C): alpha * mean|x| per sample and channel."""
        s = x.abs().mean(dim=(2, 3))
        alpha = torch.sigmoid(self.fc2(self.act(self.bn(self.fc1(s)))))
        return alpha * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tau = self.thresholds(x)[:, :, None, None]
        # x - clamp(x, -tau, tau) equals sign(x) * max(|x| - tau, 0), in two kernels instead of
        # four, with the same gradients (1 where |x| > tau, else 0; -sign(x) to tau).
        return x - torch.clamp(x, -tau, tau)

    def macs(self, input_shape: torch.Size | tuple[int, ...]) -> int:
        """Multiply-accumulates of one forward on `input_shape` (N, C, H, W), for thop's custom rule.

        The two FC layers, plus per element one accumulate for mean|x| and one subtract for the
        shrinkage, plus N*C multiplies for tau; batch norm, ReLU, sigmoid and the clamp's compares
        count zero, as everywhere else in this project's MACs.
        """
        n, c, h, w = input_shape
        fc = n * (self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features)
        return int(fc + 2 * n * c * h * w + n * c)
