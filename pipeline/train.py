"""Stage `train`: one model on one fold of one protocol.

    python -m pipeline.train --model stanet --protocol patient --fold 1

Reads data/processed/images.npy (kept in memory, on the GPU when training there) and
data/splits.csv; trains on the fold's train part, selects the epoch by the validation part
(`train.select_by`, never by test), and writes runs/<model>/<protocol>/fold-<k>/: weights.pt
(state_dict of the selected epoch), history.csv, predictions.csv on the test part and metrics.json.

A checkpoint is written at the end of every epoch outside DVC's outputs (pipeline/checkpoint.py):
a killed run started again continues from the last complete epoch with the same result as an
uninterrupted one (on the CPU), and a finished fold is not trained again.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import models
from pipeline import checkpoint, scenarios
from pipeline.atomic import atomic_path
from pipeline.batches import Augment, BatchStream, ImageBank, eval_batches
from pipeline.cli import run_stage
from pipeline.errors import DataError, TrainingError
from pipeline.params import OptimParams, Params, load, to_dict
from pipeline.sysinfo import cpu_name

IMAGES = Path("data/processed/images.npy")
SPLITS = Path("data/splits.csv")
RUNS = Path("runs")
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"]


def run_dir(model: str, protocol: str, fold: int) -> Path:
    """Where one training run writes its outputs."""
    return RUNS / model / protocol / f"fold-{fold}"


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


def seed_everything(seed: int, device: torch.device) -> None:
    """One seed for python, numpy and torch; deterministic algorithms on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True  # speed over bit-exactness on the GPU (documented)


def make_optimizer(model: torch.nn.Module, o: OptimParams, steps_per_epoch: int, epochs: int,
                   device: torch.device) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Optimizer and a per-step schedule (linear warm-up, then cosine, constant or step decay)."""
    # fused kernels on CUDA; on the CPU the multi-tensor path is ~13% faster than the per-parameter loop
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
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
              criterion: Callable, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One training step on a batch; returns the loss as a device tensor (no host sync)."""
    amp = device.type == "cuda"

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.detach()

    return step


@torch.no_grad()
def predict(model: torch.nn.Module, bank: ImageBank, ids: np.ndarray, batch_size: int, mean: float,
            std: float, channels_last: bool) -> torch.Tensor:
    """Softmax probabilities (n, classes), float32, on the device, for the images `ids`."""
    model.eval()
    amp = bank.device.type == "cuda"
    outs = []
    for x in eval_batches(bank, ids, batch_size, mean, std, channels_last):
        with torch.autocast(bank.device.type, dtype=torch.bfloat16, enabled=amp):
            outs.append(model(x).float().softmax(dim=1))
    model.train()
    return torch.cat(outs) if outs else torch.empty(0, device=bank.device)


def _cpu_copy(obj: Any) -> Any:
    """Deep copy of a state dict (or nested structure) with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


class BackgroundSaver:
    """Writes checkpoints in a thread so the next epoch trains while the file is written.

    The state is copied to the CPU before the thread starts; a second save waits for the first.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, state: dict[str, Any]) -> None:
        """Start writing `state` to `path` atomically."""
        self.wait()

        def work() -> None:
            try:
                checkpoint.save(path, state)
            except BaseException as e:  # surfaced by wait(), in the training thread
                self._error = e

        self._thread = threading.Thread(target=work, daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the last save is on disk; re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err


@dataclass
class FoldData:
    """The image ids and labels of one fold's parts."""
    train_ids: np.ndarray
    train_labels: np.ndarray
    val_ids: np.ndarray
    val_labels: np.ndarray
    test: pd.DataFrame  # image_id, patient_id, label


def fold_data(splits: pd.DataFrame, scenario: str, protocol: str, fold: int) -> FoldData:
    """Select one fold of one protocol from splits.csv, refusing a fold that is not there."""
    rows = splits[(splits["protocol"] == protocol) & (splits["fold"] == fold) & (splits["scenario"] == scenario)]
    if rows.empty:
        have = sorted(set(zip(splits["scenario"], splits["protocol"], splits["fold"])))
        raise DataError(f"{SPLITS}: no rows for scenario {scenario}, protocol {protocol!r}, fold {fold}; "
                        f"present: {have[:12]}; rerun `dvc repro split`")
    parts = {p: rows[rows["part"] == p].sort_values("image_id") for p in ("train", "val", "test")}
    for p, r in parts.items():
        if r.empty:
            raise DataError(f"{SPLITS}: protocol {protocol!r} fold {fold} has an empty {p} part")
    ids = {p: (r["image_id"].to_numpy(dtype=np.int64, copy=True), r["label"].to_numpy(dtype=np.int64, copy=True))
           for p, r in parts.items()}
    return FoldData(*ids["train"], *ids["val"],
                    parts["test"][["image_id", "patient_id", "label"]].reset_index(drop=True))


def code_digest() -> str:
    """Digest of the code that decides what training computes: this stage's modules and models/.

    Part of the checkpoint fingerprint, so that a finished or half-finished fold is never reused
    after the training step, the data path or a network changed.
    """
    here = Path(__file__).resolve().parent
    files = [here / "train.py", here / "batches.py", here / "checkpoint.py",
             *sorted(Path(models.__file__).resolve().parent.glob("*.py"))]
    return checkpoint.fingerprint({f.name: checkpoint.file_sha256(f) for f in files})


def train_fold(params: Params, model_name: str, protocol: str, fold: int, *,
               images: np.ndarray, splits: pd.DataFrame, ckpt_path: Path, data_digest: str,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one fold (resuming from `ckpt_path` when it matches) and return everything to write."""
    tp = params.train
    device = select_device(tp.device)
    if tp.threads:
        torch.set_num_threads(tp.threads)
    seed_everything(params.seed, device)
    scenario = params.split.scenario
    names = scenarios.class_names(scenario)
    data = fold_data(splits, scenario, protocol, fold)
    o, epochs = tp.optim_for(model_name), tp.epochs_for(model_name)
    bank = ImageBank(images, device)
    in_chans = bank.input_size[0]
    channels_last = device.type == "cuda"

    config = {"model": model_name, "protocol": protocol, "fold": fold, "scenario": scenario, "seed": params.seed,
              "optim": to_dict(o), "epochs": epochs, "select_by": tp.select_by,
              "class_weighting": tp.class_weighting, "label_smoothing": tp.label_smoothing,
              "augment": tp.augment, "device": device.type, "data": data_digest, "code": code_digest(),
              "split": checkpoint.fingerprint({"ids": [data.train_ids.tolist(), data.val_ids.tolist(),
                                                       data.test["image_id"].tolist()]})}
    fp = checkpoint.fingerprint(config)
    state = checkpoint.load(ckpt_path, fp)

    model = models.create_model(model_name, num_classes=len(names), in_chans=in_chans).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator(device=device)
    gen.manual_seed(params.seed * 1_000_003 + fold)
    train_ids_t = torch.as_tensor(data.train_ids, device=device)
    mean, std = bank.normalizer(train_ids_t)
    stream = BatchStream(bank, data.train_ids, data.train_labels, o.batch_size, gen, mean, std,
                         Augment() if tp.augment else None, channels_last)
    if len(stream) == 0:
        raise DataError(f"{SPLITS}: protocol {protocol!r} fold {fold} has {len(data.train_ids)} training image(s); "
                        f"at least 2 are needed")
    opt, sched = make_optimizer(model, o, len(stream), epochs, device)
    weight = None
    if tp.class_weighting:
        counts = np.bincount(data.train_labels, minlength=len(names)).astype(np.float64)
        weight = torch.tensor(counts.sum() / (len(names) * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=tp.label_smoothing)
    step = make_step(model, opt, sched, criterion, device)
    runner = torch.compile(model) if tp.compile and device.type == "cuda" else model
    if runner is not model:
        step = make_step(runner, opt, sched, criterion, device)

    history: list[dict[str, float]] = []
    best = {"epoch": 0, "val_accuracy": -1.0, "val_loss": math.inf, "state": None}
    start_epoch, finished = 1, False
    if state is not None:
        model.load_state_dict(state["model"])
        history, best = state["history"], state["best"]
        finished = bool(state.get("finished"))
        if not finished:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng_cpu"])
            if device.type == "cuda" and state.get("rng_cuda") is not None:
                torch.cuda.set_rng_state(state["rng_cuda"])
            gen.set_state(state["rng_gen"])
        start_epoch = state["epoch"] + 1
        log(f"{model_name}/{protocol}/fold-{fold}: " + ("finished earlier; writing outputs from the checkpoint"
                                                       if finished else f"resuming after epoch {state['epoch']}"))

    val_labels_t = torch.as_tensor(data.val_labels, device=device)
    saver = BackgroundSaver()
    interactive = sys.stderr.isatty()
    try:
        for epoch in range(start_epoch, epochs + 1) if not finished else ():
            t0 = time.perf_counter()
            losses = torch.zeros(len(stream), device=device)
            bar = _progress(len(stream), f"{model_name} {protocol} fold {fold} epoch {epoch}/{epochs}", interactive)
            for i, (x, y) in enumerate(stream.epoch_batches()):
                losses[i] = step(x, y)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):  # checked once per epoch, so the loop never waits on the device
                raise TrainingError(f"non-finite training loss ({losses[bad[0, 0]].item()}) for model {model_name}, "
                                    f"protocol {protocol}, fold {fold}, epoch {epoch}, step {int(bad[0, 0]) + 1}; "
                                    f"lower the learning rate (train.optim.lr or train.overrides.{model_name}.lr)")
            prob = predict(runner, bank, data.val_ids, tp.eval_batch_size, mean, std, channels_last)
            val_loss = float(F.nll_loss(prob.clamp_min(1e-12).log(), val_labels_t))
            val_acc = float((prob.argmax(1) == val_labels_t).float().mean())
            row = {"epoch": epoch, "train_loss": float(losses.mean()), "val_loss": val_loss, "val_accuracy": val_acc,
                   "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 3)}
            history.append(row)
            better = (val_acc > best["val_accuracy"] or (val_acc == best["val_accuracy"] and val_loss < best["val_loss"])
                      ) if tp.select_by == "val_accuracy" else val_loss < best["val_loss"]
            if better:
                best = {"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss, "state": _cpu_copy(model.state_dict())}
            log(f"{model_name} {protocol} fold {fold} epoch {epoch}/{epochs}: train_loss {row['train_loss']:.4f} "
                f"val_loss {val_loss:.4f} val_acc {val_acc:.4f} lr {row['lr']:.2e} {row['seconds']:.1f}s")
            last = epoch == epochs
            saver.save(ckpt_path, {
                "fingerprint": fp, "epoch": epoch, "finished": last, "history": [dict(h) for h in history],
                "best": dict(best),
                "model": _cpu_copy(model.state_dict()),
                # a finished run keeps only what writing its outputs needs
                "optimizer": None if last else _cpu_copy(opt.state_dict()),
                "scheduler": None if last else sched.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                "rng_gen": gen.get_state().cpu()})
        saver.wait()
    except torch.OutOfMemoryError:
        raise TrainingError(f"out of memory training {model_name} ({protocol}, fold {fold}) at batch size "
                            f"{o.batch_size} on {device.type}; lower train.overrides.{model_name}.batch_size, "
                            f"train.eval_batch_size or data.image_size") from None
    except RuntimeError as e:
        if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            raise TrainingError(f"out of memory training {model_name} ({protocol}, fold {fold}) at batch size "
                                f"{o.batch_size}; lower train.overrides.{model_name}.batch_size, "
                                f"train.eval_batch_size or data.image_size") from None
        raise

    if best["state"] is None:
        raise TrainingError(f"{model_name} {protocol} fold {fold}: no epoch was selected (no history); "
                            f"delete {ckpt_path} and run again")
    model.load_state_dict(best["state"])
    prob = predict(model, bank, data.test["image_id"].to_numpy(), tp.eval_batch_size, mean, std, channels_last)
    prob_np = prob.cpu().numpy().astype(np.float64)
    predictions = data.test.assign(predicted=prob_np.argmax(1))
    for j, col in enumerate(scenarios.prob_columns(scenario)):
        predictions[col] = np.round(prob_np[:, j], 6)

    from pipeline.metrics import fold_metrics  # sklearn import kept off the training start-up path

    metrics = fold_metrics(predictions["label"].to_numpy(), prob_np, names)
    metrics.update({
        "model": model_name, "protocol": protocol, "fold": fold, "scenario": scenario, "class_names": list(names),
        "n_train": int(len(data.train_ids)), "n_val": int(len(data.val_ids)), "n_test": int(len(data.test)),
        "epochs": epochs, "best_epoch": int(best["epoch"]), "seconds": round(sum(h["seconds"] for h in history), 3),
        "device": device.type, "device_name": device_name(device), "threads": torch.get_num_threads(),
        "input_size": list(bank.input_size), "batch_size": o.batch_size, "optimizer": o.optimizer, "lr": o.lr,
        "pretrained": False})
    return {"weights": best["state"], "history": pd.DataFrame(history, columns=HISTORY_COLUMNS),
            "predictions": predictions, "metrics": metrics}


def _progress(total: int, desc: str, interactive: bool):
    """A tqdm bar on a terminal; None otherwise (the epoch line is then the only output)."""
    if not interactive:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


def write_outputs(out: Path, result: dict[str, Any]) -> None:
    """Write the run directory atomically: weights.pt, history.csv, predictions.csv, metrics.json."""
    import json

    with atomic_path(out, directory=True) as tmp:
        torch.save(result["weights"], tmp / "weights.pt")
        result["history"].to_csv(tmp / "history.csv", index=False)
        result["predictions"].to_csv(tmp / "predictions.csv", index=False)
        (tmp / "metrics.json").write_text(json.dumps(result["metrics"], indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the stage for one model, protocol and fold."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--fold", type=int, required=True)
    args = ap.parse_args(argv)
    params = load()
    if args.model not in params.train.models:
        raise DataError(f"--model {args.model!r} is not in train.models {list(params.train.models)}")
    if args.protocol not in params.split.protocols:
        raise DataError(f"--protocol {args.protocol!r} is not in split.protocols {list(params.split.protocols)}")
    if args.fold not in params.train.folds:
        raise DataError(f"--fold {args.fold} is not in train.folds {list(params.train.folds)}")
    for path in (IMAGES, SPLITS):
        if not path.is_file():
            raise DataError(f"{path}: not found; run `dvc repro split` first")
    images = np.load(IMAGES, allow_pickle=False)
    splits = pd.read_csv(SPLITS, dtype={"patient_id": str})
    result = train_fold(params, args.model, args.protocol, args.fold, images=images, splits=splits,
                        ckpt_path=checkpoint.path_for(args.model, args.protocol, args.fold),
                        data_digest=checkpoint.file_sha256(IMAGES))
    write_outputs(run_dir(args.model, args.protocol, args.fold), result)
    m = result["metrics"]
    print(f"{args.model} {args.protocol} fold {args.fold}: test accuracy {m['accuracy']:.4f} "
          f"(best epoch {m['best_epoch']}/{m['epochs']}, {m['seconds']:.1f}s on {m['device_name']})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_stage(main)
