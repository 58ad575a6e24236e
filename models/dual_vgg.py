"""Dual VGG16 + VGG19 feature fusion, Uçar (2022), the best earlier network on this data.

Uçar, "Classification of myositis from muscle ultrasound images using deep learning", Biomed.
Signal Process. Control 71 (2022) 103277: the convolutional features of VGG16 and VGG19 (timm's
`.features`, i.e. without timm's 4096-d ConvMlp pre-logits) see the same image; each is globally
average pooled to 512 values; the two vectors are concatenated and go through Dense 1024-512-256
with ReLU and a linear layer to the classes (the paper's softmax is in the loss). About 34.9 GMACs
and 36.4 M parameters at 3x224x224.

`dual_vgg_bn` is the same fusion on batch-normalised VGG16_bn and VGG19_bn, for runs that must
train from scratch in minutes (the CPU demo): the plain VGGs, trained from scratch on a few
hundred images, barely leave their initial state (their logits differed by about 1e-4 across
inputs after a demo's steps). It is not the published network, and every report names it so.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.registry import WeightsNotFoundError, init_head, pretrained_weights, register_model


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


def _fresh_features(arch: str, in_chans: int) -> nn.Sequential:
    """timm's VGG `.features` for `arch` (layer for layer, the same names and initialisation), built
    alone: timm's VGG also builds a 4096-d ConvMlp of 100 M parameters that `.features` leaves unused
    (2 s and half a gigabyte per model, for nothing)."""
    from timm.models.vgg import cfgs

    batch_norm = arch.endswith("_bn")
    layers: list[nn.Module] = []
    prev = in_chans
    for v in cfgs[arch.removesuffix("_bn")]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(prev, v, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")   # as timm's VGG._init_weights
        nn.init.zeros_(conv.bias)
        layers += [conv, *([nn.BatchNorm2d(v)] if batch_norm else []), nn.ReLU(inplace=True)]
        prev = v
    return nn.Sequential(*layers)


def _vgg_features(arch: str, in_chans: int, pretrained: bool) -> nn.Sequential:
    """timm's `arch` convolutional features; with `pretrained`, its ImageNet weights from the Hugging
    Face cache (timm's files, found the way timm finds them), the first convolution adapted to
    `in_chans` by timm's own rule (`adapt_input_conv`), as `timm.create_model(pretrained=True)` does.

    Only the `features.*` tensors are read: timm's VGG would first build and randomly initialise its
    4096-d ConvMlp pre-logits (100 M parameters, about 2 s a branch) and read their 400 MB from the
    file, all to be dropped. The branches are built on the meta device and take the checkpoint's
    tensors (in float32), so they draw no random numbers either: the fusion head's initialisation
    depends on the seed alone. Every feature tensor is checked to be in the file."""
    if not pretrained:
        return _fresh_features(arch, in_chans)
    from timm.models import adapt_input_conv

    hub_id, path = pretrained_weights(arch)      # fails at once when they are not to be had
    with torch.device("meta"):
        features = _fresh_features(arch, in_chans)
    wanted = [f"features.{k}" for k in features.state_dict()]
    found = _read_tensors(path, wanted)          # the file read once: its feature tensors, those it has
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise WeightsNotFoundError(f"pretrained weights for {arch}: {path} ({hub_id}) lacks {missing[:3]}"
                                   f"{'...' if len(missing) > 3 else ''}; it is not a {arch} checkpoint")
    state = {k.removeprefix("features."): v for k, v in found.items()}
    if in_chans != state["0.weight"].shape[1]:       # adapted in the file's dtype, then cast, as timm does
        state["0.weight"] = adapt_input_conv(in_chans, state["0.weight"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    features.load_state_dict(state, strict=True, assign=True)
    return features


def _read_tensors(path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Those of the tensors `names` that a .safetensors file (each read alone) or a torch checkpoint holds."""
    if str(path).endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            held = set(f.keys())
            return {k: f.get_tensor(k) for k in names if k in held}
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: state[k] for k in names if k in state}


def _create_dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False, batch_norm: bool = False,
                     **kwargs) -> DualVGG:
    suffix = "_bn" if batch_norm else ""
    if pretrained:   # both branches' weights looked for before either is loaded: one message names both
        missing = []
        for arch in ("vgg16" + suffix, "vgg19" + suffix):
            try:
                pretrained_weights(arch)
            except WeightsNotFoundError as e:
                missing.append(str(e))
        if missing:
            raise WeightsNotFoundError(f"dual_vgg{suffix} needs the ImageNet weights of both branches, "
                                       f"vgg16{suffix} and vgg19{suffix}; {len(missing)} of them missing: "
                                       + " | ".join(missing))
    model = DualVGG(_vgg_features("vgg16" + suffix, in_chans, pretrained),
                    _vgg_features("vgg19" + suffix, in_chans, pretrained), num_classes, **kwargs)
    if pretrained:   # the normalisation the branches' ImageNet weights expect (registry.input_normalization)
        import timm

        model.pretrained_cfg = timm.models.get_pretrained_cfg("vgg16" + suffix).to_dict()
    return model


@register_model("Dual VGG16+VGG19 (Uçar 2022)")
def dual_vgg(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> DualVGG:
    """Uçar's dual-branch fusion; pretrained=True loads both branches' ImageNet weights (timm/vgg16.tv_in1k,
    timm/vgg19.tv_in1k) through timm and the Hugging Face cache."""
    return _create_dual_vgg(num_classes, in_chans, pretrained, **kwargs)


@register_model("Dual VGG16_bn+VGG19_bn (Uçar 2022 with batch norm, from scratch)")
def dual_vgg_bn(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> DualVGG:
    """Uçar's fusion on batch-normalised VGGs: the from-scratch stand-in of the CPU demo (see the module docstring)."""
    return _create_dual_vgg(num_classes, in_chans, pretrained, batch_norm=True, **kwargs)
