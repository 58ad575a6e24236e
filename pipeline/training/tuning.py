"""The nested recipe search (params.yaml `tune`): every model gets the same number of Optuna trials per
fold and the same epoch cap, each trial trained on the fold's training part and scored on its validation
part; the fold's model is the best trial's checkpoint. The test part is never read here (train predicts
it once, afterwards, with the chosen weights).

- Sampler: TPE, seeded from params' `seed` (the repeat's seed), the fold and the number of trials already
  finished, so the same params give the same study on the same machine, an interrupted study resumed
  gives the same trials as an uninterrupted one, and every model of a fold starts from the same random
  start-up draws (`tune.startup_trials`).
- Pruner: the median rule on each epoch's validation score (`tune.pruner: median`), after the start-up
  trials and the first epoch; `none` runs every trial to the cap.
- Storage: an Optuna journal file beside the fold's checkpoint (checkpoints/.../<fold>/tune.journal),
  with each trial's own epoch checkpoint, so a killed study resumes where it stopped: finished trials are
  kept, the trial that was running is asked again (the same draw) and continues from its last epoch.

A trial's recipe is train.optim (or the model's train.overrides entry) with the sampled keys written over
it: lr, weight_decay, batch_size, optimizer, warmup_epochs, and train.label_smoothing; epochs is the cap.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.core.errors import DataError
from pipeline.core.params import ModelRecipe, Params

TRIAL_COLUMNS = ["trial", "state", "value", "epochs_run", "optimizer_steps", "seconds", "lr", "weight_decay",
                 "batch_size", "optimizer", "warmup_epochs", "label_smoothing"]
SAMPLER = "TPE"


@dataclass
class Tuned:
    """The outcome of one fold's study: the params of the best trial's recipe, its checkpoint, the trials."""
    params: Params
    checkpoint: Path
    trials: list[dict[str, Any]]
    summary: dict[str, Any]


def epoch_cap(params: Params) -> int:
    """Every trial of every model trains at most this many epochs."""
    return params.tune.epochs or params.train.epochs


def with_recipe(params: Params, model: str, recipe: dict[str, Any]) -> Params:
    """`params` with `model`'s recipe written over by `recipe` (the sampled keys), its epochs the cap."""
    tp = params.train
    base = tp.optim_for(model)
    own = dataclasses.asdict(base)
    own.update({k: v for k, v in recipe.items() if k != "label_smoothing"}, epochs=epoch_cap(params))
    pretrained = getattr(tp.overrides.get(model), "pretrained", None)
    override = ModelRecipe(**{**own, "pretrained": pretrained})
    train = dataclasses.replace(tp, overrides={**tp.overrides, model: override},
                                label_smoothing=float(recipe.get("label_smoothing", tp.label_smoothing)))
    return dataclasses.replace(params, train=train)


def study_name(params: Params, scenario: str, model: str, protocol: str, fold: int, repeat: int,
               data_digest: str) -> str:
    """The study's identity: the run, its data and every tune setting but the number of trials (raising
    `tune.trials` continues a study; any other change starts another)."""
    tune = {k: v for k, v in dataclasses.asdict(params.tune).items() if k != "trials"}
    key = json.dumps({"scenario": scenario, "model": model, "protocol": protocol, "fold": fold, "repeat": repeat,
                      "seed": params.repeat_seed(repeat), "data": data_digest, "tune": tune,
                      "train": dataclasses.asdict(params.train.optim_for(model))}, sort_keys=True, default=str)
    return f"{scenario}-{model}-{protocol}-r{repeat}-f{fold}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _sample(trial: Any, params: Params) -> dict[str, Any]:
    t = params.tune
    return {"lr": trial.suggest_float("lr", *t.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *t.weight_decay, log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(t.batch_size)),
            "optimizer": trial.suggest_categorical("optimizer", list(t.optimizer)),
            "warmup_epochs": trial.suggest_int("warmup_epochs", *t.warmup_epochs),
            "label_smoothing": trial.suggest_float("label_smoothing", *t.label_smoothing)}


def _storage(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise DataError(f"{path}: the tuning study cannot be written there ({e.strerror or e}); tune.trials > 0 "
                        f"keeps its study beside the fold's checkpoint under checkpoints/: make that folder "
                        f"writable") from None


def search(params: Params, scenario: str, model: str, protocol: str, fold: int, *, repeat: int, ckpt_path: Path,
           data_digest: str, train_trial: Callable[[Params, Path, Callable[[int, float, int], None]], dict[str, Any]],
           log: Callable[[str], None] = print) -> Tuned:
    """Run (or resume) the fold's study; `train_trial(params, checkpoint, on_epoch)` trains one recipe on the
    training part and returns {"value": objective of the selected epoch, "epochs_run", "optimizer_steps"},
    calling on_epoch(epoch, validation score, optimizer steps so far) after every epoch (which raises optuna.TrialPruned to stop)."""
    import optuna
    from optuna.trial import TrialState

    t = params.tune
    journal = ckpt_path.parent / "tune.journal"
    storage = _storage(journal)
    name = study_name(params, scenario, model, protocol, fold, repeat, data_digest)
    others = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name != name]
    if others:
        raise DataError(f"{journal}: holds the study {others[0]!r}, made for another model, fold or tune settings "
                        f"than {name!r} (this run: {scenario} {model} {protocol} fold {fold}); delete {journal} and the "
                        f"trial-*.pt beside it to start this study afresh")
    maximize = t.objective != "val_loss"
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=1)
              if t.pruner == "median" else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, pruner=pruner,
                                    direction="maximize" if maximize else "minimize")
    except OSError as e:
        raise DataError(f"{journal}: the tuning study cannot be written ({e.strerror or e}); make "
                        f"{journal.parent} writable") from None
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):   # a killed process's trial
        study.tell(stale.number, state=TrialState.FAIL)
    seed = params.repeat_seed(repeat) * 1_000_003 + fold
    done = lambda: [x for x in study.get_trials(deepcopy=False)  # noqa: E731
                    if x.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    while len(done()) < t.trials:
        k = len(done())
        # one sampler per trial, seeded by how many trials are finished: a resumed study draws what an
        # uninterrupted one would have
        study.sampler = optuna.samplers.TPESampler(seed=seed + k, n_startup_trials=t.startup_trials)
        trial = study.ask()
        recipe = _sample(trial, params)
        trial_ckpt = ckpt_path.parent / f"trial-{k}.pt"
        t0 = time.perf_counter()
        epochs_seen, steps_seen = [], [0]

        def on_epoch(epoch: int, score: float, steps: int) -> None:
            epochs_seen.append(epoch)
            steps_seen.append(steps)
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            out = train_trial(with_recipe(params, model, recipe), trial_ckpt, on_epoch)
        except optuna.TrialPruned:
            trial.set_user_attr("epochs_run", len(epochs_seen))
            trial.set_user_attr("optimizer_steps", steps_seen[-1])
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
            study.tell(trial, state=TrialState.PRUNED)
            trial_ckpt.unlink(missing_ok=True)
            log(f"{model} {protocol} fold {fold} trial {k + 1}/{t.trials}: pruned after epoch {epochs_seen[-1]}")
            continue
        trial.set_user_attr("epochs_run", out["epochs_run"])
        trial.set_user_attr("optimizer_steps", out["optimizer_steps"])
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        study.tell(trial, out["value"])
        log(f"{model} {protocol} fold {fold} trial {k + 1}/{t.trials}: {t.objective} {out['value']:.4f} "
            f"({', '.join(f'{key} {v:.3g}' if isinstance(v, float) else f'{key} {v}' for key, v in recipe.items())})")
        best = study.best_trial
        for i, other in enumerate(done()):     # keep the best trial's checkpoint (trial-<i>.pt) and no other
            path = ckpt_path.parent / f"trial-{i}.pt"
            if other.number != best.number and path.exists():
                path.unlink()
    finished = done()
    complete = [x for x in finished if x.state == TrialState.COMPLETE]
    if not complete:
        raise DataError(f"{model} {protocol} fold {fold}: every one of {len(finished)} tuning trials was pruned; "
                        f"raise tune.startup_trials (trials never pruned) or set tune.pruner: none")
    best = study.best_trial
    index = finished.index(next(x for x in finished if x.number == best.number))
    best_ckpt = ckpt_path.parent / f"trial-{index}.pt"
    if not best_ckpt.exists():
        raise DataError(f"{best_ckpt}: the best trial's checkpoint is missing (deleted by hand?); delete "
                        f"{journal} to run the study again")
    tmp = ckpt_path.with_suffix(".tmp")
    shutil.copyfile(best_ckpt, tmp)
    tmp.replace(ckpt_path)     # the fold's checkpoint: train writes its outputs from it
    rows = [{"trial": i + 1, "state": x.state.name.lower(), "value": x.value if x.state == TrialState.COMPLETE
             else (x.intermediate_values[max(x.intermediate_values)] if x.intermediate_values else None),
             "epochs_run": x.user_attrs.get("epochs_run"), "optimizer_steps": x.user_attrs.get("optimizer_steps"),
             "seconds": x.user_attrs.get("seconds"), **{k: x.params.get(k) for k in TRIAL_COLUMNS[6:]}}
            for i, x in enumerate(finished)]
    summary = {"trials": len(finished), "complete": len(complete), "pruned": len(finished) - len(complete),
               "objective": t.objective, "sampler": SAMPLER, "pruner": t.pruner, "seed": seed,
               "startup_trials": t.startup_trials, "epoch_cap": epoch_cap(params), "chosen": dict(best.params),
               "chosen_trial": index + 1, "best_value": best.value,
               "epochs": int(sum(r["epochs_run"] or 0 for r in rows)),
               "optimizer_steps": int(sum(r["optimizer_steps"] or 0 for r in rows)),
               "seconds": round(sum(r["seconds"] or 0 for r in rows), 3)}
    return Tuned(with_recipe(params, model, dict(best.params)), ckpt_path, rows, summary)
