"""Dual VGG16 + VGG19 feature fusion, Uçar (2022), the best earlier network on this data.

Uçar, "Classification of myositis from muscle ultrasound images using deep learning", Biomed.
Signal Process. Control 71 (2022) 103277: the convolutional features of VGG16 and VGG19 (timm's
`.features`, i.e. without timm's 4096-d ConvMlp pre-logits) see the same image; each is globally
average pooled to 512 values; the two vectors are concatenated and go through Dense 1024-512-256
with ReLU and a linear layer to the classes (the paper's softmax is in the loss). About 34.9 GMACs
and 36.4 M parameters at 3x224x224.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from models.registry import local_weights, register_model


class DualVGG(nn.Module):
    """Two VGG feature extractors on the same input, pooled, concatenated, then an MLP head."""

    def __init__(self, vgg16: nn.Module, vgg19: nn.Module, num_classes: int,
                 hidden: Sequence[int] = (1024, 512, 256), drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.vgg16 = vgg16
        self.vgg19 = vgg19
        self.pool = nn.AdaptiveAvgPool2d(1)
        layers, prev = [], 512 + 512
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            prev = width
        self.mlp = nn.Sequential(*layers)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pool(self.vgg16(x)).flatten(1)
        b = self.pool(self.vgg19(x)).flatten(1)
        return self.fc(self.mlp(torch.cat([a, b], dim=1)))


def _vgg_features(arch: str, in_chans: int, pretrained: bool, weights: str | Path | None) -> nn.Sequential:
    kwargs = {}
    if pretrained:  # resolve a local file first: fails at once when there is none, never downloads
        kwargs["pretrained_cfg_overlay"] = {"file": str(local_weights(arch, weights))}
    # num_classes=0 drops timm's classifier (and lets timm skip it when loading weights);
    # timm adapts the first conv's ImageNet weights to in_chans
    import timm  # lazily: see models/registry.py

    vgg = timm.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)
    return vgg.features


def _create_dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False,
                     vgg16_weights: str | Path | None = None, vgg19_weights: str | Path | None = None,
                     **kwargs) -> DualVGG:
    vgg16 = _vgg_features("vgg16", in_chans, pretrained, vgg16_weights)
    vgg19 = _vgg_features("vgg19", in_chans, pretrained, vgg19_weights)
    return DualVGG(vgg16, vgg19, num_classes, **kwargs)


@register_model("Dual VGG16+VGG19 (Uçar 2022)")
def dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> DualVGG:
    """Uçar's dual-branch fusion; pretrained=True reads ImageNet weights from local files only.

    Weights: `vgg16_weights=`/`vgg19_weights=` paths, else env vars MYOBENCH_WEIGHTS_VGG16 and
    MYOBENCH_WEIGHTS_VGG19, else the Hugging Face cache (timm/vgg16.tv_in1k, timm/vgg19.tv_in1k).
    """
    return _create_dual_vgg(num_classes, in_chans, pretrained, **kwargs)
