"""STANet: the lightweight soft-threshold attention network of Tan et al. (2024), and its ablations.

Tan et al., "A lightweight convolutional neural network for myositis classification from muscle
ultrasound images", J Biomed Eng 2024, 41(5):895-902. The paper describes a backbone that
alternates depthwise separable convolution (DSC) and conventional convolution (CConv) blocks,
with soft-threshold attention (models/attention.py) removing redundant features, at 0.25% of
the computation of Uçar's dual VGG network. Its layer table is not available to us: the table
below is a RECONSTRUCTION from that description, sized so that its MACs at 3x224x224 are 0.25%
of dual_vgg's (pipeline/profile.py counts them; tests/test_profile.py holds it to 0.22-0.28%).

Each stage halves the resolution with a CConv block and then mixes features with DSC blocks, so
the two kinds alternate; the DSC blocks are residual units, those of stages 3 and 4 residual
shrinkage units: y = ReLU(x + SoftThreshold(BN(pw(ReLU(BN(dw(x))))))). Default layer table
(input 3x224x224; 88.4 MMACs = 0.254% of dual_vgg's 34.86 GMACs; 0.66 M parameters):

    stage  block                                   channels    stride  output
    stem   CConv 3x3 + BN + ReLU                   in -> 16    2       112x112
    1      CConv 3x3 + BN + ReLU                   16 -> 32    2       56x56
    1      DSC residual unit                       32          1       56x56
    2      CConv 3x3 + BN + ReLU                   32 -> 64    2       28x28
    2      2 x DSC residual unit                   64          1       28x28
    3      CConv 3x3 + BN + ReLU                   64 -> 128   2       14x14
    3      2 x DSC residual shrinkage unit         128         1       14x14
    4      CConv 3x3 + BN + ReLU                   128 -> 256  2       7x7
    4      2 x DSC residual shrinkage unit         256         1       7x7
    head   global average pool, dropout, linear    256 -> num_classes   1x1

Ablations at matched cost (3x224x224, 2 classes; the stem stays a CConv, as in MobileNet):
stanet_noatt, the same without attention (88.2 MMACs); stanet_dsc, every block DSC, widths
16/56/112/224/336 (87.8 MMACs); stanet_conv, every block CConv, widths 16/16/32/72/160 (88.1 MMACs).

Every layer works on a 1x1 feature map (3x3 convolutions are padded; no fixed-size pooling), so
the 32x32 CPU demo runs through the same network (stage 4 is then 1x1). Batch norm in training
needs more than one value per channel: train with batches of at least 2.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.attention import SoftThreshold
from models.registry import register_model


def conv_block(in_chans: int, out_chans: int, stride: int = 1) -> nn.Sequential:
    """Conventional convolution block: 3x3 conv + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


def dsc_block(in_chans: int, out_chans: int, stride: int = 1, last_act: bool = True) -> nn.Sequential:
    """Depthwise separable block: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN (+ ReLU)."""
    layers = [
        nn.Conv2d(in_chans, in_chans, 3, stride, 1, groups=in_chans, bias=False),
        nn.BatchNorm2d(in_chans),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_chans, out_chans, 1, bias=False),
        nn.BatchNorm2d(out_chans),
    ]
    if last_act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """y = ReLU(x + [SoftThreshold](body(x))): a residual shrinkage unit when `attention` is set."""

    def __init__(self, channels: int, block: str, attention: bool):
        super().__init__()
        if block == "dsc":
            self.body = dsc_block(channels, channels, last_act=False)
        else:  # the body's last activation moves after the addition, as in ResNet
            self.body = conv_block(channels, channels)[:2]
        self.shrink = SoftThreshold(channels) if attention else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.shrink(self.body(x)))


class STANet(nn.Module):
    """Stem, then per stage one stride-2 `down` block and `depths[i]` residual `mix` units, GAP, linear."""

    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 3,
        stem_width: int = 16,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 2, 2, 2),
        attention: Sequence[bool] = (False, False, True, True),
        down: str = "cconv",
        mix: str = "dsc",
        drop_rate: float = 0.2,
    ):
        super().__init__()
        if not len(widths) == len(depths) == len(attention):
            raise ValueError(f"widths {widths}, depths {depths} and attention {attention} must have one entry per stage")
        for key, value in (("down", down), ("mix", mix)):
            if value not in ("cconv", "dsc"):
                raise ValueError(f"{key}={value!r} is not accepted; expected 'cconv' or 'dsc'")
        self.num_classes = num_classes
        self.stem = conv_block(in_chans, stem_width, stride=2)
        stages, prev = [], stem_width
        for width, depth, att in zip(widths, depths, attention):
            first = conv_block(prev, width, 2) if down == "cconv" else dsc_block(prev, width, 2)
            stages.append(nn.Sequential(first, *[ResidualUnit(width, mix, att) for _ in range(depth)]))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(prev, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, ResidualUnit):
                # the residual branch starts near zero so each unit starts close to identity (as in
                # timm's zero_init_last); not exactly zero, so the shrinkage sees a signal at once
                nn.init.constant_(m.body[-1].weight, 0.1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling, (N, num_features, H/32, W/32)."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.fc(self.drop(x))


def _create_stanet(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> STANet:
    if pretrained:
        raise ValueError("STANet has no pretrained weights; use pretrained=False")
    return STANet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model("STANet (proposed)", weights=False)
def stanet(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> STANet:
    """The proposed network: CConv downsampling alternating with DSC units, soft-threshold attention in stages 3-4."""
    return _create_stanet(num_classes, in_chans, pretrained, **kwargs)


@register_model("STANet without attention (ablation)", weights=False)
def stanet_noatt(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> STANet:
    """STANet with the soft-threshold attention removed (residual units kept)."""
    return _create_stanet(num_classes, in_chans, pretrained, **{"attention": (False,) * 4, **kwargs})


@register_model("STANet, DSC blocks only (ablation)", weights=False)
def stanet_dsc(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> STANet:
    """STANet with every block depthwise separable (stem kept), widened to STANet's MACs."""
    cfg = dict(down="dsc", mix="dsc", stem_width=16, widths=(56, 112, 224, 336))
    return _create_stanet(num_classes, in_chans, pretrained, **{**cfg, **kwargs})


@register_model("STANet, conventional blocks only (ablation)", weights=False)
def stanet_conv(num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> STANet:
    """STANet with every block a conventional 3x3 convolution, narrowed to STANet's MACs."""
    cfg = dict(down="cconv", mix="cconv", stem_width=16, widths=(16, 32, 72, 160))
    return _create_stanet(num_classes, in_chans, pretrained, **{**cfg, **kwargs})
