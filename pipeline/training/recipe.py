"""The training recipe, as a library: what one step, one epoch's schedule and one validation do.

The optimiser and its per-step schedule, the training step, precise batch norm, prediction and the
validation figures that choose the epoch. The train stage (pipeline/train.py) sets a fold up, loops
over the epochs and writes; benchmarks/throughput.py times the same step on the same data path.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.params import OptimParams
from pipeline.core.scores import balanced_accuracy
from pipeline.training import accel
from pipeline.training.batches import ImageBank, eval_batches


def seed_everything(seed: int, device: torch.device) -> None:
    """One seed for python, numpy and torch; deterministic algorithms on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        # torch.use_deterministic_algorithms(True) also sets torch.compile's (inductor's) flag, and
        # importing inductor costs 1.5 s in every process that does not import timm; on the CPU,
        # where nothing is compiled, the flag the kernels read is all that is needed
        torch._C._set_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True  # speed over bit-exactness on the GPU (documented)


def make_optimizer(model: torch.nn.Module, o: OptimParams, steps_per_epoch: int, epochs: int,
                   device: torch.device) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Optimizer and a per-step schedule (linear warm-up, then cosine, constant or step decay)."""
    fused = accel.for_device(device).optimizer_kwargs()   # fused on the CUDA path, else foreach
    if o.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, **fused)
    elif o.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, **fused)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                              nesterov=True, **fused)
    total = max(1, steps_per_epoch * epochs)
    warm = steps_per_epoch * o.warmup_epochs

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        if o.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if o.schedule == "step":
            return 0.1 ** int(progress * 3)  # x0.1 at 1/3 and 2/3 of training
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def make_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
              criterion: Callable, device: torch.device,
              world_size: int = 1) -> Callable[..., torch.Tensor]:
    """One training step on a batch; returns the loss as a device tensor (no host sync).

    As one of `world_size` ranks, the step also takes the labels of the whole global batch, and
    `criterion` must sum over this rank's slice (see `global_batch_weight`)."""
    acc = accel.for_device(device)

    def step(x: torch.Tensor, y: torch.Tensor, batch_labels: torch.Tensor | None = None) -> torch.Tensor:
        with acc.autocast(device):
            loss = criterion(model(x), y)
        if batch_labels is not None:
            # DDP averages the ranks' gradients: the slice's sum over the global batch's weight, times
            # the world size, makes that average the gradient of the global batch's mean loss, however
            # unevenly the batch split
            loss = loss * (world_size / global_batch_weight(criterion, batch_labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.detach()

    return step


def make_criterion(train_labels: np.ndarray, n_classes: int, class_weighting: bool, label_smoothing: float,
                   distributed: bool, device: torch.device) -> torch.nn.CrossEntropyLoss:
    """Cross-entropy, with each class weighted by the inverse of its share of the training part when
    `class_weighting`; among several ranks (`distributed`) each sums over its slice, and the step divides
    by the global batch's weight."""
    weight = None
    if class_weighting:
        counts = np.bincount(train_labels, minlength=n_classes).astype(np.float64)
        weight = torch.tensor(counts.sum() / (n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing,
                                     reduction="sum" if distributed else "mean")


def global_batch_weight(criterion: torch.nn.CrossEntropyLoss, labels: torch.Tensor) -> torch.Tensor | int:
    """What the mean loss over the batch `labels` divides by: its size, or, with class weights, the sum of
    its images' weights (as CrossEntropyLoss's mean does, label smoothing included)."""
    return len(labels) if criterion.weight is None else criterion.weight[labels].sum()


@torch.no_grad()
def predict(model: torch.nn.Module, bank: ImageBank, ids: np.ndarray, batch_size: int, mean: float,
            std: float, channels_last: bool) -> torch.Tensor:
    """Softmax probabilities (n, classes), float32, on the device, for the images `ids`."""
    model.eval()
    acc = accel.for_device(bank.device)
    outs = []
    for x in eval_batches(bank, ids, batch_size, mean, std, channels_last):
        with acc.autocast(bank.device):
            outs.append(model(x).float().softmax(dim=1))
    model.train()
    return torch.cat(outs) if outs else torch.empty(0, device=bank.device)


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, bank: ImageBank, ids: np.ndarray, batch_size: int, mean: Any,
                   std: Any, channels_last: bool) -> None:
    """Precise batch norm (Wu and Johnson 2021): every batch-norm layer's running statistics replaced by
    their average over the images `ids` (un-augmented), computed with the current weights. Only the
    batch-norm layers run in training mode (no dropout, no random draws); the weights do not change.

    Running statistics updated with momentum 0.1 over a few dozen steps of a network trained from
    scratch, on augmented batches, can be far from those of the images validation and test see:
    measured on the demo, efficientnet_b0's test accuracy went from 0.53-0.59 to 0.74-0.76 with them.
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    if not layers:
        return
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None          # a cumulative average over the batches below
        m.train()
    acc = accel.for_device(bank.device)
    for x in eval_batches(bank, ids, batch_size, mean, std, channels_last):
        if len(x) > 1:
            with acc.autocast(bank.device):
                model(x)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)


def selection_key(row: dict[str, float], select_by: str) -> tuple[float, float]:
    """Larger is better: the validation figure train.select_by names, then the lower validation loss;
    `last`: the later epoch (a choice made by the schedule, not by the validation part).

    val_balanced_accuracy (the default) cannot prefer an epoch that predicts the majority class for
    every image, which plain accuracy on a small, unbalanced validation part often does.
    """
    loss = -row.get("val_loss", math.inf)
    if select_by == "last":
        return (row.get("epoch", 0), 0.0)
    return (loss, 0.0) if select_by == "val_loss" else (row.get(select_by, -1.0), loss)


@torch.no_grad()
def validate(runner: torch.nn.Module, model: torch.nn.Module, bank: ImageBank, val_ids: np.ndarray,
             val_labels: torch.Tensor, train_ids: np.ndarray, o: OptimParams, eval_batch_size: int, mean: Any,
             std: Any, channels_last: bool, n_classes: int) -> dict[str, float]:
    """The validation figures of the current weights (after precise batch norm when `o.precise_bn`):
    val_loss, val_accuracy and val_balanced_accuracy, and the probabilities they came from (`prob`)."""
    if o.precise_bn:
        recalibrate_bn(model, bank, train_ids, o.batch_size, mean, std, channels_last)
    prob = predict(runner, bank, val_ids, eval_batch_size, mean, std, channels_last)
    return {"val_loss": float(F.nll_loss(prob.clamp_min(1e-12).log(), val_labels)),
            "val_accuracy": float((prob.argmax(1) == val_labels).float().mean()),
            "val_balanced_accuracy": balanced_accuracy(val_labels, prob.argmax(1), n_classes), "prob": prob}
