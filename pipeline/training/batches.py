"""The training data path: the whole processed cohort as one uint8 tensor on the training device.

Batches are sliced by index from that tensor and augmented as whole batches, on the device, with
no per-image Python work and no host round trip. All randomness comes from one `torch.Generator`
on the device, so a checkpoint that stores its state resumes the exact same stream.

Augmentation, and why each choice:
- random resized crop with shift (scale 0.80-1.00 of each side, anywhere inside the image): probe
  position and zoom vary between acquisitions;
- horizontal flip: left and right limbs, and probe orientation across the muscle, are mirror
  images; echo intensity is unchanged by it;
- NO vertical flip: depth carries meaning (skin at the top, bone and its shadow at the bottom,
  attenuation with depth);
- gain (x 0.85-1.15), brightness (+-0.08) and contrast (x 0.8-1.2 around the image mean): device
  gain, time-gain compensation and dynamic range differ between machines and operators.
Crop, shift and flip are one affine resampling (`grid_sample`), so the whole batch costs a few
kernel launches.

Data-parallel training (pipeline/training/distributed.py): each rank takes a contiguous slice of every
global batch, but draws the permutation and the augmentation randoms of the whole global batch, so
that every rank's generator stays in step with the others epoch after epoch. With one rank the
slice is the whole batch and the draws are those of a plain run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.training.distributed import World


@dataclass(frozen=True)
class Augment:
    """Ranges of the batch augmentation (see the module docstring for why each is there)."""
    min_scale: float = 0.80
    flip: bool = True
    gain: tuple[float, float] = (0.85, 1.15)
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.8, 1.2)


class ImageBank:
    """The processed cohort as one uint8 tensor (N, C, S, S) on `device`; batches index into it by image id."""

    def __init__(self, images: np.ndarray, device: torch.device):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 array (N, C, S, S), got {images.dtype} {images.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.device = device

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def normalizer(self, ids: torch.Tensor) -> tuple[float, float]:
        """Mean and std of pixel values (in 0..1) over the images `ids` (the training part)."""
        x = self.images[ids].float().div_(255)
        return float(x.mean()), float(x.std().clamp_min(1e-3))


class BatchStream:
    """Shuffled, augmented, normalised training batches of one part of the cohort.

    `epoch_batches()` draws one permutation of the part and yields (x, y) pairs; batches of a
    single image are dropped, because batch norm cannot train on them. As one rank of a distributed
    `world`, it yields this rank's slice of each global batch of `batch_size`, with the labels of
    the whole global batch as a third element; a batch that would leave a rank fewer than two images
    is dropped, for the same reason.
    """

    def __init__(self, bank: ImageBank, ids: np.ndarray, labels: np.ndarray, batch_size: int,
                 generator: torch.Generator, mean: float, std: float, augment: Augment | None,
                 channels_last: bool = False, world: World = World(), max_batches: int = 0):
        self.bank = bank
        self.max_batches = max_batches   # 0: every batch of the part; n: the first n of each epoch's order
        self.ids = torch.tensor(np.asarray(ids), dtype=torch.long, device=bank.device)
        self.labels = torch.tensor(np.asarray(labels), dtype=torch.long, device=bank.device)
        self.batch_size = batch_size
        self.generator = generator
        self.mean, self.std = mean, std
        self.augment = augment
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.world = world

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.ids)
        full, rest = divmod(n, self.batch_size)
        batches = full + (1 if rest >= 2 * self.world.size else 0)
        return min(batches, self.max_batches) if self.max_batches else batches

    def epoch_batches(self):
        """Yield one epoch of (images float (B, C, S, S), labels long (B,)) on the device; as one of several
        ranks, this rank's slice of each and the global batch's labels (B_global,) as a third element."""
        order = torch.randperm(len(self.ids), generator=self.generator, device=self.bank.device)
        for b in range(len(self)):
            pos = order[b * self.batch_size:(b + 1) * self.batch_size]
            mine = self.world.part(len(pos))
            batch = self.make_batch(self.ids[pos], mine), self.labels[pos[mine]]
            yield (*batch, self.labels[pos]) if self.world.distributed else batch

    def make_batch(self, ids: torch.Tensor, part: slice = slice(None)) -> torch.Tensor:
        """Slice, augment and normalise the images `ids[part]` (a device tensor of image ids); the
        augmentation randoms are drawn for all of `ids`, so the generator advances the same on every rank."""
        x = self.bank.images[ids[part]].float().div_(255)
        if self.augment is not None:
            x = augment_batch(x, self.augment, augment_draws(len(ids), self.generator, x.device)[part])
        x = x.sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=self.memory_format)


def augment_draws(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """The randoms that augment a batch of `n` images: (n, 7) uniform in [0, 1), one row per image."""
    return torch.rand(n, 7, generator=gen, device=device)


def augment_batch(x: torch.Tensor, aug: Augment, r: torch.Tensor) -> torch.Tensor:
    """Random resized crop, shift and horizontal flip, then gain, brightness and contrast; x in 0..1,
    `r` its rows of `augment_draws`."""
    b, dev = x.shape[0], x.device
    scale = aug.min_scale + (1 - aug.min_scale) * r[:, 0]
    # the crop window stays inside the image: centre offset up to (1 - scale) in grid units
    tx = (2 * r[:, 1] - 1) * (1 - scale)
    ty = (2 * r[:, 2] - 1) * (1 - scale)
    flip = torch.where(r[:, 3] < 0.5, -1.0, 1.0) if aug.flip else torch.ones(b, device=dev)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = aug.gain[0] + (aug.gain[1] - aug.gain[0]) * r[:, 4]
    bright = (2 * r[:, 5] - 1) * aug.brightness
    contrast = aug.contrast[0] + (aug.contrast[1] - aug.contrast[0]) * r[:, 6]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    view = (b, 1, 1, 1)
    x = (x - mean) * contrast.view(view) + mean
    x = x * gain.view(view) + bright.view(view)
    return x.clamp_(0, 1)


def eval_batches(bank: ImageBank, ids: np.ndarray, batch_size: int, mean: float, std: float,
                 channels_last: bool = False):
    """Yield normalised, un-augmented batches of the images `ids`, in order."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long, device=bank.device)
    for start in range(0, len(ids_t), batch_size):
        x = bank.images[ids_t[start:start + batch_size]].float().div_(255).sub_(mean).div_(std)
        yield x.contiguous(memory_format=fmt)
