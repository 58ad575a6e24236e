"""Stage `train`: one model under one protocol of one scenario, on every fold.

    python -m pipeline.train --scenario S1 --model stanet --protocol patient            # train.folds
    python -m pipeline.train --scenario S1 --model stanet --protocol patient --fold 2   # one fold

Reads data/processed/images.npy (kept in memory, on the GPU when training there) and
data/splits/<scenario>.csv; for each fold, trains on the fold's train part, selects the epoch by the
validation part (`train.select_by`, never by test), and writes, for every repeat of split.repeats,
runs/<scenario>/<model>/<protocol>/fold-<k>/ (repeat-<r>/fold-<k>/ after the first repeat, each repeat
seeded by Params.repeat_seed): weights.pt (state_dict of the selected epoch), history.csv,
predictions.csv on the test part, validation.csv (the validation part under the same weights) and
metrics.json (what train knows: budget, seconds, threads, provenance; the test metrics are evaluate's,
from predictions.csv). The folds of every repeat run in one stage
because starting Python, torch and timm costs more than training a small fold, train.parallel_folds
of them side by side in worker processes (pipeline/training/foldpool.py), each on train.threads //
parallel_folds threads; each fold is seeded afresh, so its result is the same as when it is trained
alone on as many threads.

A checkpoint is written at the end of every epoch outside DVC's outputs (pipeline/training/checkpoint.py):
a killed run started again continues from the last complete epoch with the same result as an
uninterrupted one (on the CPU), and a finished fold is not trained again.

One fold can also be trained data-parallel by several processes (pipeline/training/distributed.py):

    torchrun --nproc_per_node 2 -m pipeline.train --model stanet --protocol patient --fold 1

(--scenario may be left out when split.scenarios names one scenario). The global batch stays
train.optim.batch_size, split between the ranks; rank 0 validates, checkpoints and writes.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

import models
from pipeline.core import coverage, cpu, fingerprints, grid, layout, scenarios, stagetime
from pipeline.core.atomic import atomic_path, ensure_writable, torch_bytes, write_bytes_to
from pipeline.core.cli import run_stage
from pipeline.core.errors import DataError, TrainingError
from pipeline.core.params import OptimParams, Params, TrainParams, load, to_dict
from pipeline.core.readers import read_table
from pipeline.training import accel, checkpoint, distributed, foldpool, tuning
from pipeline.training.batches import Augment, BatchStream, ImageBank, eval_batches
from pipeline.training.distributed import World
from pipeline.training.modelcheck import check_model
from pipeline.training.recipe import (make_criterion, make_optimizer, make_step, predict, seed_everything, selection_key,
                             validate)
from pipeline.core.sysinfo import cpu_name


def select_device(preference: str) -> torch.device:
    """cuda when asked for or available under `auto`, else cpu."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device("cuda" if preference in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """Human-readable name of the training hardware."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


@dataclass
class FoldData:
    """The image ids and labels of one fold's parts."""
    train_ids: np.ndarray
    train_labels: np.ndarray
    val_ids: np.ndarray
    val_labels: np.ndarray
    test: pd.DataFrame  # image_id, patient_id, label
    patients: dict[str, int]   # patients per part
    val: pd.DataFrame | None = None   # image_id, patient_id, label of the validation part (val_ids' rows)


def fold_data(splits: pd.DataFrame, scenario: str, protocol: str, fold: int, repeat: int = 1) -> FoldData:
    """Select one fold of one repeat of one protocol from a scenario's splits file, refusing a fold that
    is not there."""
    rows = grid.fold_rows(splits, scenario, protocol, fold, repeat)
    coverage.require_parts(rows, str(layout.splits_path(scenario)))   # every class in training and test
    parts = {p: rows[rows["part"] == p].sort_values("image_id") for p in ("train", "val", "test")}
    for p, r in parts.items():
        if r.empty:
            raise DataError(f"{layout.splits_path(scenario)}: protocol {protocol!r} fold {fold} has an empty {p} part")
    ids = {p: (r["image_id"].to_numpy(dtype=np.int64, copy=True), r["label"].to_numpy(dtype=np.int64, copy=True))
           for p, r in parts.items()}
    return FoldData(*ids["train"], *ids["val"],
                    parts["test"][["image_id", "patient_id", "label"]].reset_index(drop=True),
                    {p: int(r["patient_id"].nunique()) for p, r in parts.items()},
                    parts["val"][["image_id", "patient_id", "label"]].reset_index(drop=True))


def code_digest() -> str:
    """Digest of the code this stage runs: the files dvc.yaml declares as the train stage's code deps
    (`fingerprints.declared_code`), which tests/test_layout.py keeps equal to what it imports.

    Part of the checkpoint fingerprint, so that a finished or half-finished fold is never reused
    after the training step, the data path or a network changed.
    """
    return checkpoint.fingerprint({rel: fingerprints.file_sha256(fingerprints.ROOT / rel)
                                   for rel in fingerprints.declared_code("train")})


@dataclass
class FoldRun:
    """One fold's training, set up: the data, the network, the optimiser and what has been done so far."""
    model_name: str
    protocol: str
    fold: int
    scenario: str
    class_names: tuple[str, ...]
    device: torch.device
    data: FoldData
    bank: ImageBank
    model: torch.nn.Module
    runner: torch.nn.Module          # the model, or its torch.compile'd form: what validation runs
    optim: OptimParams
    epochs: int
    opt: torch.optim.Optimizer | None           # None for a model fitted in closed form
    sched: torch.optim.lr_scheduler.LambdaLR | None
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stream: BatchStream
    gen: torch.Generator
    mean: float | torch.Tensor     # a scalar, or per channel (1, C, 1, 1) for pretrained weights
    std: float | torch.Tensor
    pretrained: bool
    channels_last: bool
    fingerprint: str
    history: list[dict[str, float]]
    best: dict[str, Any]
    start_epoch: int = 1
    finished: bool = False
    selection: list[dict[str, float]] | None = None    # models fitted in closed form: the settings tried
    world: World = World()           # the ranks training this fold together; one by default
    repeat: int = 1                  # which repeat of the cross-validation this fold belongs to
    seed: int = 0                    # the repeat's seed (Params.repeat_seed)
    # the selected epoch's validation probabilities, as its validation computed them (not checkpointed: a
    # resumed run predicts them again); None where validation ran another module than `model` (compiled)
    best_val_prob: torch.Tensor | None = None

    @property
    def name(self) -> str:
        """scenario/model/protocol/fold-k (or .../repeat-r/fold-k), for messages."""
        return f"{self.scenario}/{self.model_name}/{self.protocol}/{layout.fold_name(self.fold, self.repeat)}"


def _fold_config(params: Params, scenario: str, model_name: str, protocol: str, fold: int, data: FoldData,
                 device: torch.device, world: World, data_digest: str, repeat: int = 1) -> dict[str, Any]:
    """Everything that decides a fold's training: what its checkpoint's fingerprint is made of."""
    tp = params.train
    return {"model": model_name, "protocol": protocol, "fold": fold, "repeat": repeat, "scenario": scenario,
            "seed": params.repeat_seed(repeat),
            "optim": to_dict(tp.optim_for(model_name)), "epochs": tp.epochs_for(model_name),
            "pretrained": tp.pretrained_for(model_name) and models.has_weights(model_name), "select_by": tp.select_by,
            "class_weighting": tp.class_weighting, "label_smoothing": tp.label_smoothing,
            "augment": tp.augment, **({"max_steps_per_epoch": tp.max_steps_per_epoch} if tp.max_steps_per_epoch else {}),
            "device": device.type, "world_size": world.size, "data": data_digest,
            "code": code_digest(),
            # the thread count and CPU code paths change the rounding, so the trajectory: not reusable
            "threads": torch.get_num_threads(), "cpu": cpu.in_effect(),
            "split": checkpoint.fingerprint({"ids": [data.train_ids.tolist(), data.val_ids.tolist(),
                                                     data.test["image_id"].tolist()]}),
            **({"accel": acc.describe()} if (acc := accel.for_device(device, tp.compile)).forced else {})}


def _build_model(model_name: str, n_classes: int, in_chans: int, pretrained: bool, device: torch.device,
                 channels_last: bool) -> torch.nn.Module:
    """The network on the device (its initialisation draws from the seeded global generator)."""
    try:
        model = models.create_model(model_name, num_classes=n_classes, in_chans=in_chans,
                                    pretrained=pretrained).to(device)
    except models.WeightsNotFoundError as e:
        raise DataError(f"train.overrides.{model_name}.pretrained: {e}") from None
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _normalization(model: torch.nn.Module, bank: ImageBank, train_ids: np.ndarray, pretrained: bool,
                   device: torch.device) -> tuple[Any, Any]:
    """The input mean and std: ImageNet's per channel for pretrained weights that expect them, else the
    training part's own."""
    expected = models.input_normalization(model, bank.input_size[0]) if pretrained else None
    if expected is not None:
        mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in expected)
        return mean, std
    return bank.normalizer(torch.as_tensor(train_ids, device=device))


def _check_batches(stream: BatchStream, batch_size: int, world: World, model_name: str, where: str,
                   n_train: int) -> None:
    """Refuse a batch size or training part that leaves a rank without a batch norm can train on."""
    if batch_size < 2 * world.size and world.distributed:
        raise DataError(f"batch size {batch_size} (train.optim.batch_size or train.overrides.{model_name}."
                        f"batch_size) leaves some of the {world.size} processes fewer than 2 images, on which batch "
                        f"norm cannot train; use a batch size of at least {2 * world.size}, or fewer processes")
    if len(stream) == 0:
        raise DataError(f"{where} has {n_train} training image(s); at least {2 * world.size} are needed")


def set_up(params: Params, scenario: str, model_name: str, protocol: str, fold: int, *, images: np.ndarray,
           splits: pd.DataFrame, data_digest: str, world: World = World(), repeat: int = 1) -> FoldRun:
    """Seed, select the fold, build the network, the batch stream and the optimiser (in this order:
    the network's initialisation draws from the seeded generator)."""
    tp = params.train
    device = world.device(select_device(tp.device))
    if tp.fold_threads:   # train.threads shared by the folds side by side: fixed by params alone
        torch.set_num_threads(tp.fold_threads)
    seed = params.repeat_seed(repeat)   # each repeat trains with its own seed
    seed_everything(seed, device)
    names = scenarios.class_names(scenario)
    data = fold_data(splits, scenario, protocol, fold, repeat)
    o, epochs = tp.optim_for(model_name), tp.epochs_for(model_name)
    pretrained = tp.pretrained_for(model_name) and models.has_weights(model_name)   # see modelcheck
    bank = ImageBank(images, device)
    acc = accel.for_device(device, tp.compile)   # the CUDA path's settings (pipeline/training/accel.py)
    channels_last = acc.channels_last
    config = _fold_config(params, scenario, model_name, protocol, fold, data, device, world, data_digest, repeat)
    model = _build_model(model_name, len(names), bank.input_size[0], pretrained, device, channels_last)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + fold)
    mean, std = _normalization(model, bank, data.train_ids, pretrained, device)
    stream = BatchStream(bank, data.train_ids, data.train_labels, o.batch_size, gen, mean, std,
                         Augment() if tp.augment else None, channels_last, world, tp.max_steps_per_epoch)
    _check_batches(stream, o.batch_size, world, model_name,
                   f"{layout.splits_path(scenario)}: protocol {protocol!r} fold {fold}", len(data.train_ids))
    trainer = world.wrap(model, device)   # under DistributedDataParallel among several ranks
    # a model fitted in closed form never steps: no optimiser (whose first use imports torch._dynamo, ~1.5 s)
    opt, sched = (None, None) if hasattr(model, "fit") else make_optimizer(model, o, len(stream), epochs, device)
    criterion = make_criterion(data.train_labels, len(names), tp.class_weighting, tp.label_smoothing,
                               world.distributed, device)
    compiled = torch.compile if acc.compile else (lambda m: m)
    runner = compiled(model)   # validation runs the model itself: DDP's forward may call a collective
    trainer = compiled(trainer) if world.distributed else runner
    if hasattr(model, "fit"):
        epochs = 1     # fitted in closed form (see fit_fold): one fit, no epochs
    return FoldRun(model_name=model_name, protocol=protocol, fold=fold, scenario=scenario, class_names=names,
                   device=device, data=data, bank=bank, model=model, runner=runner, optim=o, epochs=epochs,
                   opt=opt, sched=sched, step=make_step(trainer, opt, sched, criterion, device, world.size),
                   stream=stream, world=world, repeat=repeat, seed=seed,
                   gen=gen, mean=mean, std=std, pretrained=pretrained, channels_last=channels_last,
                   fingerprint=checkpoint.fingerprint(config), history=[],
                   best={"epoch": 0, "val_accuracy": -1.0, "val_balanced_accuracy": -1.0, "val_loss": math.inf,
                         "state": None})


def resume(run: FoldRun, state: dict[str, Any] | None, log: Callable[[str], None] = print) -> None:
    """Continue from a matching checkpoint: weights, history, best epoch, optimiser and every RNG state."""
    if state is None:
        return
    back = checkpoint.restore(state, model=run.model, optimizer=run.opt, scheduler=run.sched, generator=run.gen,
                              device=run.device)
    run.history, run.best, run.selection, run.finished = back.history, back.best, back.selection, back.finished
    run.start_epoch = back.epoch + 1
    log(f"{run.name}: " + ("finished earlier; writing outputs from the checkpoint" if run.finished
                           else f"resuming after epoch {back.epoch}"))


def _checkpoint(run: FoldRun, epoch: int, finished: bool) -> dict[str, Any]:
    """The run's checkpoint after `epoch` (pipeline/training/checkpoint.py says what it holds)."""
    return checkpoint.contents(fingerprint=run.fingerprint, epoch=epoch, finished=finished, history=run.history,
                               best=run.best, model=run.model, optimizer=run.opt, scheduler=run.sched,
                               generator=run.gen, device=run.device, selection=run.selection)


def train_epochs(run: FoldRun, tp: TrainParams, ckpt_path: Path, log: Callable[[str], None] = print,
                 on_epoch: Callable[[dict[str, float]], None] | None = None) -> None:
    """The epoch loop: train, validate, keep the best epoch, checkpoint after every epoch (among several
    ranks, all train and rank 0 alone validates and checkpoints); `on_epoch(row)` after each epoch's
    checkpoint (a tuning trial's pruner: it may raise to stop the loop)."""
    val_labels_t = torch.as_tensor(run.data.val_labels, device=run.device)
    saver = checkpoint.BackgroundSaver()
    interactive = sys.stderr.isatty()
    o = run.optim
    try:
        for epoch in range(run.start_epoch, run.epochs + 1) if not run.finished else ():
            t0 = time.perf_counter()
            losses = torch.zeros(len(run.stream), device=run.device)
            bar = _progress(len(run.stream), f"{run.model_name} {run.protocol} fold {run.fold} epoch "
                                             f"{epoch}/{run.epochs}", interactive and run.world.main)
            for i, batch in enumerate(run.stream.epoch_batches()):
                losses[i] = run.step(*batch)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            run.world.average(losses)   # the ranks' shares of each global batch's mean loss
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):  # checked once per epoch, so the loop never waits on the device
                raise TrainingError(f"non-finite training loss ({losses[bad[0, 0]].item()}) for model "
                                    f"{run.model_name}, protocol {run.protocol}, fold {run.fold}, epoch {epoch}, "
                                    f"step {int(bad[0, 0]) + 1}; lower the learning rate (train.optim.lr or "
                                    f"train.overrides.{run.model_name}.lr)")
            if not run.world.main:
                continue   # rank 0 validates and checkpoints; the others go on, and wait for it in the next step
            val = validate(run.runner, run.model, run.bank, run.data.val_ids, val_labels_t, run.data.train_ids, o,
                           tp.eval_batch_size, run.mean, run.std, run.channels_last, len(run.class_names))
            val_loss, val_acc, val_bal = val["val_loss"], val["val_accuracy"], val["val_balanced_accuracy"]
            row = {"epoch": epoch, "train_loss": float(losses.mean()), "val_loss": val_loss, "val_accuracy": val_acc,
                   "val_balanced_accuracy": val_bal, "lr": run.opt.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - t0, 3)}
            run.history.append(row)
            if selection_key(row, tp.select_by) > selection_key(run.best, tp.select_by):
                run.best = {"epoch": epoch, "val_accuracy": val_acc, "val_balanced_accuracy": val_bal,
                            "val_loss": val_loss, "state": checkpoint.cpu_copy(run.model.state_dict())}
                run.best_val_prob = val["prob"] if run.runner is run.model else None
            log(f"{run.model_name} {run.protocol} fold {run.fold} epoch {epoch}/{run.epochs}: train_loss "
                f"{row['train_loss']:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.4f} lr {row['lr']:.2e} "
                f"{row['seconds']:.1f}s")
            saver.save(ckpt_path, _checkpoint(run, epoch, finished=epoch == run.epochs))
            if on_epoch is not None:
                saver.wait()     # the checkpoint is on disk before a pruner may stop the trial
                on_epoch(row)
        saver.wait()
    except torch.OutOfMemoryError:
        raise TrainingError(f"out of memory training {run.model_name} ({run.protocol}, fold {run.fold}) at batch "
                            f"size {o.batch_size} on {run.device.type}; lower train.overrides.{run.model_name}."
                            f"batch_size, train.eval_batch_size or data.image_size") from None
    except RuntimeError as e:
        if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            raise TrainingError(f"out of memory training {run.model_name} ({run.protocol}, fold {run.fold}) at "
                                f"batch size {o.batch_size}; lower train.overrides.{run.model_name}.batch_size, "
                                f"train.eval_batch_size or data.image_size") from None
        raise


def fit_fold(run: FoldRun, tp: TrainParams, ckpt_path: Path, seed: int, log: Callable[[str], None] = print) -> None:
    """A model fitted in closed form (the classical baseline, `fit(x, y, x_val, y_val)`): one fit on the
    training part without augmentation, its regularisation chosen on the validation part."""
    if run.finished:
        return
    t0 = time.perf_counter()
    images = lambda ids: torch.cat(list(eval_batches(run.bank, ids, tp.eval_batch_size, run.mean,  # noqa: E731
                                                     run.std))).cpu()
    # as every network's epoch is chosen; `last` has no meaning for a grid of settings: balanced accuracy
    by = "val_balanced_accuracy" if tp.select_by == "last" else tp.select_by
    key = lambda row: selection_key(row, by)  # noqa: E731
    tried = run.model.fit(images(run.data.train_ids), run.data.train_labels, images(run.data.val_ids),
                          run.data.val_labels, seed=seed, key=key)
    chosen = max(tried, key=key)
    row = {"epoch": 1, **{k: chosen[k] for k in ("train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy")},
           "lr": float("nan"), "seconds": round(time.perf_counter() - t0, 3)}
    run.history = [row]
    run.best = {"epoch": 1, "val_accuracy": row["val_accuracy"], "val_balanced_accuracy": row["val_balanced_accuracy"],
                "val_loss": row["val_loss"], "state": checkpoint.cpu_copy(run.model.state_dict())}
    run.selection = tried
    log(f"{run.model_name} {run.protocol} fold {run.fold}: fitted; chose C={chosen['C']:g} of "
        f"{[r['C'] for r in tried]} on validation (val_acc {row['val_accuracy']:.4f}) {row['seconds']:.1f}s")
    checkpoint.save(ckpt_path, _checkpoint(run, 1, finished=True))


def predict_test_part(run: FoldRun, tp: TrainParams, ckpt_path: Path) -> dict[str, Any]:
    """Predict the test part with the selected epoch's weights; everything the run directory holds."""
    if run.best["state"] is None:
        raise TrainingError(f"{run.name}: no epoch was selected (no history); delete {ckpt_path} and run again")
    run.model.load_state_dict(run.best["state"])
    data = run.data
    prob = predict(run.model, run.bank, data.test["image_id"].to_numpy(), tp.eval_batch_size, run.mean, run.std,
                   run.channels_last)
    prob_np = prob.cpu().numpy().astype(np.float64)
    predictions = data.test.assign(predicted=prob_np.argmax(1))
    for j, col in enumerate(layout.prob_columns(run.class_names)):
        predictions[col] = np.round(prob_np[:, j], 6)
    # the validation part under the same weights: evaluate chooses its operating point there, never on test.
    # The selected epoch's validation predicted it with these weights already (the same module, batches and
    # bits); predicted again only where that was not kept (a resumed run, a compiled validation)
    val_prob = run.best_val_prob
    if val_prob is None:
        val_prob = predict(run.model, run.bank, data.val["image_id"].to_numpy(), tp.eval_batch_size, run.mean,
                           run.std, run.channels_last)
    val_prob = val_prob.cpu().numpy().astype(np.float64)
    validation = data.val.assign(predicted=val_prob.argmax(1))
    for j, col in enumerate(layout.prob_columns(run.class_names)):
        validation[col] = np.round(val_prob[:, j], 6)

    # what train knows about the run (its budget, seconds, threads, provenance): no test metric, those are
    # evaluate's, computed from predictions.csv, so adding a metric reruns evaluate and report, never train
    o = run.optim
    metrics = {
        "model": run.model_name, "protocol": run.protocol, "fold": run.fold, "repeat": run.repeat,
        "scenario": run.scenario,
        "class_names": list(run.class_names), "n_train": int(len(data.train_ids)), "n_val": int(len(data.val_ids)),
        "n_test": int(len(data.test)), "n_train_patients": data.patients["train"],
        "n_val_patients": data.patients["val"], "n_test_patients": data.patients["test"], "epochs": run.epochs,
        "best_epoch": int(run.best["epoch"]),
        # the budget: optimizer steps taken (none for a model fitted in closed form)
        "optimizer_steps": 0 if run.selection else len(run.stream) * len(run.history),
        "seconds": round(sum(h["seconds"] for h in run.history), 3), "device": run.device.type,
        "device_name": device_name(run.device), "threads": torch.get_num_threads(),
        "input_size": list(run.bank.input_size), "batch_size": o.batch_size, "optimizer": o.optimizer, "lr": o.lr,
        "pretrained": run.pretrained, "world_size": run.world.size, "select_by": tp.select_by,
        **({"selection": run.selection} if run.selection else {}), "cpu": cpu.in_effect(),
        "accel": accel.for_device(run.device, tp.compile).describe(),
        "normalization": ("the pretrained weights' per-channel mean and std" if isinstance(run.mean, torch.Tensor)
                          else "the training part's pixel mean and std"),
        # the statistics themselves, as the batches used them (a number, or one per channel): what
        # pipeline.predict and the deploy stage apply to new images
        "input_mean": run.mean.flatten().tolist() if isinstance(run.mean, torch.Tensor) else run.mean,
        "input_std": run.std.flatten().tolist() if isinstance(run.std, torch.Tensor) else run.std,
        "val_balanced_accuracy": float(run.best["val_balanced_accuracy"])}
    return {"weights": run.best["state"], "history": pd.DataFrame(run.history, columns=layout.HISTORY_COLUMNS),
            "predictions": predictions, "validation": validation, "metrics": metrics}


def train_fold(params: Params, scenario: str, model_name: str, protocol: str, fold: int, *,
               images: np.ndarray, splits: pd.DataFrame, ckpt_path: Path, data_digest: str,
               log: Callable[[str], None] = print, world: World = World(), repeat: int = 1) -> dict[str, Any] | None:
    """Train one fold (resuming from `ckpt_path` when it matches) and return everything to write;
    None on a rank other than 0, which writes nothing."""
    run = set_up(params, scenario, model_name, protocol, fold, images=images, splits=splits,
                 data_digest=data_digest, world=world, repeat=repeat)
    log = log if world.main else (lambda line: None)
    tuned = None
    if params.tune.trials and not hasattr(run.model, "fit"):   # a closed-form fit chooses its own setting
        if world.distributed:
            raise DataError(f"tune.trials is {params.tune.trials}: a tuning study runs its trials in one process; "
                            f"train {run.name} without torchrun, or set tune.trials: 0")
        tuned = tune_fold(params, scenario, model_name, protocol, fold, images=images, splits=splits,
                          ckpt_path=ckpt_path, data_digest=data_digest, log=log, repeat=repeat)
        params = tuned.params   # the best trial's recipe; its checkpoint is now the fold's
        run = set_up(params, scenario, model_name, protocol, fold, images=images, splits=splits,
                     data_digest=data_digest, world=world, repeat=repeat)
    # rank 0 reads the checkpoint and every rank resumes from it, even where checkpoints/ is not shared
    resume(run, world.share(checkpoint.load(ckpt_path, run.fingerprint) if world.main else None), log)
    if hasattr(run.model, "fit"):
        if world.main:   # a closed-form fit has nothing to share between ranks
            fit_fold(run, params.train, ckpt_path, run.seed, log)
    else:
        train_epochs(run, params.train, ckpt_path, log)
    if not world.main:
        return None
    result = predict_test_part(run, params.train, ckpt_path)
    if tuned is not None:
        result["trials"] = pd.DataFrame(tuned.trials, columns=tuning.TRIAL_COLUMNS)
        result["metrics"]["tuning"] = tuned.summary
        result["metrics"]["label_smoothing"] = params.train.label_smoothing
    return result


def tune_fold(params: Params, scenario: str, model_name: str, protocol: str, fold: int, *, images: np.ndarray,
              splits: pd.DataFrame, ckpt_path: Path, data_digest: str, log: Callable[[str], None],
              repeat: int = 1) -> "tuning.Tuned":
    """The fold's nested recipe search (pipeline/training/tuning.py): each trial a training on the training part,
    scored on the validation part by tune.objective; the test part is not read."""
    objective = params.tune.objective

    def train_trial(trial_params: Params, trial_ckpt: Path, on_epoch: Callable[[int, float, int], None]) -> dict:
        run = set_up(trial_params, scenario, model_name, protocol, fold, images=images, splits=splits,
                     data_digest=data_digest, repeat=repeat)
        resume(run, checkpoint.load(trial_ckpt, run.fingerprint), lambda line: None)
        report = lambda row: on_epoch(int(row["epoch"]), float(row[objective]),  # noqa: E731
                                      len(run.stream) * int(row["epoch"]))
        for row in run.history:          # a resumed trial's epochs, reported again to its new trial
            report(row)
        train_epochs(run, trial_params.train, trial_ckpt, lambda line: None, on_epoch=report)
        return {"value": float(run.best[objective]), "epochs_run": len(run.history),
                "optimizer_steps": len(run.stream) * len(run.history)}

    return tuning.search(params, scenario, model_name, protocol, fold, repeat=repeat, ckpt_path=ckpt_path,
                         data_digest=data_digest, train_trial=train_trial, log=log)


def _progress(total: int, desc: str, interactive: bool):
    """A tqdm bar on a terminal; None otherwise (the epoch line is then the only output)."""
    if not interactive:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    """Write the run directory atomically: weights.pt, history.csv, predictions.csv, validation.csv, metrics.json."""
    import json

    with atomic_path(out, directory=True) as tmp:
        write_bytes_to(tmp / layout.WEIGHTS, torch_bytes(result["weights"]))
        result["history"].to_csv(tmp / layout.HISTORY, index=False)
        result["predictions"].to_csv(tmp / layout.PREDICTIONS, index=False)
        result["validation"].to_csv(tmp / layout.VALIDATION, index=False)
        if "trials" in result:   # a tuned run's study (tune.trials > 0)
            result["trials"].to_csv(tmp / layout.TRIALS, index=False)
        (tmp / layout.RUN_METRICS).write_text(json.dumps(result["metrics"], indent=2, sort_keys=True) + "\n")


def load_inputs(scenario: str) -> tuple[np.ndarray, pd.DataFrame, dict[str, str]]:
    """The processed images and the scenario's folds, checked to belong together, and the fingerprints
    each run records (the cohort its folds were made from, and the folds file)."""
    manifest = read_table(layout.MANIFEST, "run `dvc repro prepare` first")
    if not layout.IMAGES.is_file():
        raise DataError(f"{layout.IMAGES}: not found; run `dvc repro prepare` first")
    images = np.load(layout.IMAGES, allow_pickle=False)
    if len(images) != len(manifest):
        raise DataError(f"{layout.IMAGES} holds {len(images)} images but {layout.MANIFEST} lists {len(manifest)}; "
                        f"they are written together: run `dvc repro prepare` again")
    path = layout.splits_path(scenario)
    splits = read_table(path, "run `dvc repro split` first", required=["image_id", "patient_id", "label",
                                                                      "scenario", "protocol", "repeat", "fold", "part",
                                                                      "cohort"])
    cohort = fingerprints.cohort(manifest)
    made_from = sorted(set(splits["cohort"]))
    if made_from != [cohort]:
        raise DataError(f"{path}: these folds were made from cohort {', '.join(made_from)}, but {layout.MANIFEST} "
                        f"now holds cohort {cohort} (the data changed after the folds were made); run "
                        f"`dvc repro split` (python -m pipeline.split) again, then train")
    return images, splits, {"cohort": cohort, "splits": fingerprints.file_sha256(path)[:fingerprints.SHORT]}


def train_and_write(job: tuple[int, int], *, params: Params, scenario: str, model_name: str, protocol: str,
                    images: np.ndarray, splits: pd.DataFrame, data_digest: str, provenance: dict[str, Any],
                    world: World) -> float | None:
    """One job of the stage (pipeline/training/foldpool.py): train `job` = (repeat, fold) and write its run
    directory (rank 0)."""
    repeat, fold = job
    ckpt_path = layout.checkpoint_path(scenario, model_name, protocol, fold, repeat=repeat)
    with checkpoint.fold_lock(ckpt_path) if world.main else contextlib.nullcontext():   # one trainer a fold
        result = train_fold(params, scenario, model_name, protocol, fold, images=images, splits=splits,
                            data_digest=data_digest, world=world, repeat=repeat, ckpt_path=ckpt_path)
    if result is None:
        return None   # rank 0 writes the outputs
    result["metrics"].update(provenance)
    write_outputs(layout.run_dir(scenario, model_name, protocol, fold, repeat=repeat), result)
    m = result["metrics"]
    print(f"{scenario} {model_name} {protocol} {layout.fold_label(fold, repeat, params.split.repeats)}: "
          f"validation balanced accuracy {m['val_balanced_accuracy']:.4f} "
          f"(best epoch {m['best_epoch']}/{m['epochs']}, {m['seconds']:.1f}s on {m['device_name']}"
          f"{f', {world.size} processes' if world.distributed else ''})", flush=True)
    return float(m["seconds"])    # the fold's own training seconds, for the stage's timing record


def main(argv: list[str] | None = None) -> int:
    """Run the stage for one scenario, model and protocol: every fold of train.folds, or those asked for;
    under torchrun, as one rank of a data-parallel training."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", help="one of split.scenarios (default: the only one, when there is one)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--fold", type=int, action="append", help="a fold to train (repeatable; default: train.folds)")
    args = ap.parse_args(argv)
    params = load()
    if args.scenario is None:
        if len(params.split.scenarios) != 1:
            raise DataError(f"--scenario is required: split.scenarios lists {list(params.split.scenarios)}; name "
                            f"one of them (e.g. --scenario {params.split.scenarios[0]})")
        args.scenario = params.split.scenarios[0]
    for flag, value, allowed, key in (("--scenario", args.scenario, params.split.scenarios, "split.scenarios"),
                                      ("--model", args.model, params.train.models, "train.models"),
                                      ("--protocol", args.protocol, params.split.protocols, "split.protocols"),
                                      *(("--fold", k, params.train.folds, "train.folds") for k in args.fold or ())):
        if value not in allowed:
            raise DataError(f"{flag} {value!r} is not in {key} {list(allowed)}")
    world = distributed.from_environment()   # torchrun's ranks; a single process otherwise
    # every fold of every repeat (split.repeats): side by side in worker processes (pipeline/training/foldpool.py);
    # under torchrun, one after another
    jobs = grid.folds_of(params, args.fold)
    workers = 1 if world.distributed else min(params.train.parallel_folds, len(jobs))
    if workers > 1:
        torch.set_num_threads(1)   # nothing multi-threaded before the workers fork (see pipeline/training/foldpool.py)
    check_model(params, args.model, args.scenario, build=False)    # before any data is read
    for directory in (layout.stage_dir(args.scenario, args.model, args.protocol), layout.CHECKPOINTS):
        ensure_writable(directory)   # before the training, not after it
    images, splits, provenance = load_inputs(args.scenario)
    data_digest = fingerprints.file_sha256(layout.IMAGES)
    device = world.device(select_device(params.train.device))
    work = functools.partial(train_and_write, params=params, scenario=args.scenario, model_name=args.model,
                             protocol=args.protocol, images=images, splits=splits, data_digest=data_digest,
                             provenance={**provenance, "fold_workers": workers, "data_source": params.data.source}, world=world)
    with distributed.process_group(world, device):
        seconds = foldpool.run(jobs, work, workers, foldpool.start_method(device.type),
                               describe=lambda job: f"{args.scenario}/{args.model}/{args.protocol}/"
                                                    f"{layout.fold_name(job[1], job[0])}")
    # timing/<stage>.json (pipeline/core/stagetime.py): the folds, how many side by side, their own seconds
    stagetime.note(fold_runs=len(jobs), side_by_side=workers,
                   fold_train_s=round(sum(s for s in seconds if s is not None), 3))
    return 0


if __name__ == "__main__":
    run_stage(main)
