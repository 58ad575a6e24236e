"""Dual VGG16 + VGG19 feature fusion, Uçar (2022), the best earlier network on this data.

Uçar, "Classification of myositis from muscle ultrasound images using deep learning", Biomed.
Signal Process. Control 71 (2022) 103277: the convolutional features of VGG16 and VGG19 (timm's
`.features`, i.e. without timm's 4096-d ConvMlp pre-logits) see the same image; each is globally
average pooled to 512 values; the two vectors are concatenated and go through Dense 1024-512-256
with ReLU and a linear layer to the classes (the paper's softmax is in the loss). About 34.9 GMACs
and 36.4 M parameters at 3x224x224.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.registry import WeightsNotFoundError, init_head, pretrained_weights, register_model, weight_names


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
        init_head(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.pool(self.vgg16(x)).flatten(1)
        b = self.pool(self.vgg19(x)).flatten(1)
        return self.fc(self.mlp(torch.cat([a, b], dim=1)))


def _vgg_features(arch: str, in_chans: int, pretrained: bool) -> nn.Sequential:
    """timm's `arch` convolutional features; with `pretrained`, its ImageNet weights, loaded by timm
    (which also adapts the first convolution to `in_chans`)."""
    import timm  # lazily: see models/registry.py

    if not pretrained:
        return timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans).features
    hub_id, path = pretrained_weights(arch)      # fails at once when they are not to be had
    # Only `.features` is used, so a checkpoint needs only its `features.*` tensors: timm loads
    # non-strictly (the 4096-d pre-logits are dropped anyway), and every feature tensor is checked here.
    vgg = timm.create_model(arch, pretrained=True, num_classes=0, in_chans=in_chans, pretrained_strict=False)
    missing = sorted(f"features.{k}" for k in vgg.features.state_dict() if f"features.{k}" not in weight_names(path))
    if missing:
        raise WeightsNotFoundError(f"pretrained weights for {arch}: {path} ({hub_id}) lacks {missing[:3]}"
                                   f"{'...' if len(missing) > 3 else ''}; it is not a {arch} checkpoint")
    return vgg.features


def _create_dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> DualVGG:
    import timm

    model = DualVGG(_vgg_features("vgg16", in_chans, pretrained), _vgg_features("vgg19", in_chans, pretrained),
                    num_classes, **kwargs)
    # the normalisation the branches' ImageNet weights expect (see registry.input_normalization)
    model.pretrained_cfg = timm.models.get_pretrained_cfg("vgg16").to_dict()
    return model


@register_model("Dual VGG16+VGG19 (Uçar 2022)")
def dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> DualVGG:
    """Uçar's dual-branch fusion; pretrained=True loads both branches' ImageNet weights (timm/vgg16.tv_in1k,
    timm/vgg19.tv_in1k) through timm and the Hugging Face cache."""
    return _create_dual_vgg(num_classes, in_chans, pretrained, **kwargs)
