"""params.yaml, validated once at load into typed, frozen objects.

Every stage calls `load()` and works from the returned `Params`; nothing below re-reads YAML.
Unknown keys and bad values are refused with a `ParamsError` naming the dotted key, the value
and what would be accepted.

`apply_profile` merges a profile (a partial params file) into params.yaml, validating the result
before it replaces the file; params.yaml keeps its comments and key order (ruamel.yaml's round trip).
The command is `python -m pipeline.params apply profiles/paper.yaml` (pipeline/params.py).
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


from pipeline.core import yamlio
from pipeline.core.atomic import atomic_write_text
from pipeline.core.errors import PipelineError
from pipeline.core.roster import COMPUTE_REFERENCE, DEFAULT_MODELS, PROPOSED_MODEL, STAND_INS

PARAMS_FILE = Path("params.yaml")

PROTOCOLS = ("patient", "image", "ucar")
# the names of pipeline/data/sources.py's SOURCES, kept here so that loading params imports no data code
# (tests/test_params.py keeps the two lists equal)
SOURCE_NAMES = ("synthetic", "folder", "ucar")
MAX_PARALLEL_FOLDS = 64   # train.parallel_folds: worker processes of one train stage
DUPLICATE_POLICIES = ("refuse", "keep-one", "allow")   # pipeline/data/duplicates.py
UCAR_PUBLISHED_FOLDS = 5        # the Uçar release ships FileList folds 1..5
MAX_SEED = 2**31 - 1            # numpy and scikit-learn take seeds below 2**32; folds add small offsets to it


class ParamsError(PipelineError):
    """A params.yaml value that cannot be used; the message names the key and what is accepted."""


@dataclass(frozen=True)
class SyntheticParams:
    patients: int = 80           # cohort size; diagnoses split 33/19/14/14 of 80, scaled
    images_per_side: int = 3     # repeated images per muscle side (seconds apart, small probe shifts)
    render_size: int = 224       # images are rendered at this size, then resized to data.image_size

    def validate(self, key: str) -> None:
        _require(4 <= self.patients <= 100_000, f"{key}.patients", self.patients,
                 "an integer in 4..100000 (one per diagnosis; at most 100000: the rendered cohort is held in memory)")
        _require(1 <= self.images_per_side <= 20, f"{key}.images_per_side", self.images_per_side, "an integer in 1..20")
        _require(32 <= self.render_size <= 1024, f"{key}.render_size", self.render_size, "an integer in 32..1024")


@dataclass(frozen=True)
class DataParams:
    source: str = "synthetic"           # one of SOURCE_NAMES (pipeline.data.sources.SOURCES)
    root: str = "data/raw"              # folder and ucar sources: where the images live
    manifest: str = "manifest.csv"      # folder source: CSV relative to root (path, patient_id, diagnosis[, muscle, side])
    image_size: int = 36                # square side of the processed array, in pixels
    channels: Literal[1, 3] = 1         # 1: grayscale B-mode; 3: replicated/RGB, as ImageNet-style models expect
    max_pixels: int = 100_000_000       # refuse images whose padded square (max side ** 2) exceeds this: memory bound
    duplicates: str = "refuse"          # images of one patient with the same pixels: refuse | keep-one | allow
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)

    def validate(self, key: str) -> None:
        _require(self.source in SOURCE_NAMES, f"{key}.source", self.source, f"one of {list(SOURCE_NAMES)}")
        _require(16 <= self.image_size <= 1024, f"{key}.image_size", self.image_size, "an integer in 16..1024")
        _require(1 <= self.max_pixels <= 10**12, f"{key}.max_pixels", self.max_pixels,
                 "an integer in 1..10**12 (a memory bound; PIL's own bomb guard stops far below 10**12)")
        _require(self.duplicates in DUPLICATE_POLICIES, f"{key}.duplicates", self.duplicates,
                 f"one of {list(DUPLICATE_POLICIES)}")
        self.synthetic.validate(f"{key}.synthetic")


@dataclass(frozen=True)
class SplitParams:
    scenarios: tuple[Literal["S1", "S2", "S3", "S4"], ...] = ("S1",)   # each is its own classification problem
    protocols: tuple[Literal["patient", "image", "ucar"], ...] = ("patient", "image")
    folds: int = 5
    val_fraction: float = 0.2   # share of each fold's training part held out for model selection
    repeats: int = 1            # R: k-fold cross-validation repeated R times, each with folds drawn again

    def validate(self, key: str) -> None:
        _require(len(self.scenarios) > 0, f"{key}.scenarios", list(self.scenarios),
                 "a non-empty list of S1, S2, S3, S4")
        _require(len(set(self.scenarios)) == len(self.scenarios), f"{key}.scenarios", list(self.scenarios),
                 "a list without repeats")
        _require(2 <= self.folds <= 20, f"{key}.folds", self.folds, "an integer in 2..20")
        _require(1 <= self.repeats <= 20, f"{key}.repeats", self.repeats, "an integer in 1..20")
        _require(self.repeats == 1 or "ucar" not in self.protocols, f"{key}.repeats", self.repeats,
                 "1 with the 'ucar' protocol: the release publishes one partition, which cannot be drawn again "
                 "(use the patient or image protocol for repeated cross-validation)")
        _require(0.05 <= self.val_fraction <= 0.5, f"{key}.val_fraction", self.val_fraction, "a number in 0.05..0.5")
        _require(len(self.protocols) > 0, f"{key}.protocols", list(self.protocols), f"a non-empty list of {list(PROTOCOLS)}")
        _require(len(set(self.protocols)) == len(self.protocols), f"{key}.protocols", list(self.protocols), "a list without repeats")


@dataclass(frozen=True)
class OptimParams:
    """Optimiser and schedule; `train.overrides.<model>` may replace any of these per model."""
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9                 # sgd only
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    warmup_epochs: int = 0
    batch_size: int = 32
    epochs: int = 0                       # 0: train.epochs
    precise_bn: bool = False              # re-estimate batch-norm statistics on the training part before validating

    def validate(self, key: str) -> None:
        _require(0 <= self.epochs <= 10_000, f"{key}.epochs", self.epochs, "an integer in 0..10000 (0: train.epochs)")
        _require(0 < self.lr <= 10, f"{key}.lr", self.lr, "a number in (0, 10]")
        _require(0 <= self.weight_decay <= 1, f"{key}.weight_decay", self.weight_decay, "a number in [0, 1]")
        _require(0 <= self.momentum < 1, f"{key}.momentum", self.momentum, "a number in [0, 1)")
        _require(0 <= self.warmup_epochs <= 10_000, f"{key}.warmup_epochs", self.warmup_epochs,
                 "an integer in 0..10000")
        # batch norm needs more than one value per channel in training: a batch of 1 fails in its first step
        _require(2 <= self.batch_size <= 4096, f"{key}.batch_size", self.batch_size,
                 "an integer in 2..4096 (batch norm needs at least 2 images per batch)")


@dataclass(frozen=True)
class ModelRecipe(OptimParams):
    """One model's recipe, `train.overrides.<model>`: train.optim's keys written over, and whether it
    starts from ImageNet weights."""
    pretrained: bool | None = None        # None: train.pretrained


@dataclass(frozen=True)
class TrainParams:
    models: tuple[str, ...] = DEFAULT_MODELS
    folds: tuple[int, ...] = (1, 2, 3, 4, 5)   # which of split.folds to train (1-based)
    epochs: int = 30
    pretrained: bool = False            # ImageNet weights (timm, Hugging Face cache) for models that have them
    optim: OptimParams = field(default_factory=OptimParams)
    overrides: dict[str, ModelRecipe] = field(default_factory=dict)
    # the validation figure that chooses the epoch; balanced accuracy cannot favour an epoch that
    # predicts the majority class for every image, as plain accuracy on a small validation part does
    # last: the final epoch of the schedule, for validation parts too small to choose on (the CPU demo's)
    select_by: Literal["val_balanced_accuracy", "val_accuracy", "val_loss", "last"] = "val_balanced_accuracy"
    class_weighting: bool = False
    label_smoothing: float = 0.0
    augment: bool = True
    eval_batch_size: int = 256
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False               # torch.compile on CUDA
    threads: int = 0                    # CPU threads for torch; 0 = torch's default
    # folds trained side by side in worker processes (pipeline/training/foldpool.py); they share train.threads,
    # each fold getting threads // parallel_folds whatever else runs, so its bits never depend on its siblings
    parallel_folds: int = 1
    # at most this many optimizer steps per epoch (0: every batch of the training part). A smoke run's
    # setting: the test suite and dry runs exercise every code path in the fewest steps (one batch is a
    # path); such a run is no benchmark, and its report says so
    max_steps_per_epoch: int = 0

    def validate(self, key: str) -> None:
        _require(0 <= self.max_steps_per_epoch <= 1_000_000, f"{key}.max_steps_per_epoch", self.max_steps_per_epoch,
                 "an integer in 0..1000000 (0: every batch of the training part)")
        _require(len(self.models) > 0, f"{key}.models", list(self.models), "a non-empty list of model names")
        _require(len(set(self.models)) == len(self.models), f"{key}.models", list(self.models), "a list without repeats")
        _require(len(self.folds) > 0 and all(k >= 1 for k in self.folds), f"{key}.folds", list(self.folds),
                 "a non-empty list of fold numbers starting at 1")
        # DVC would silently drop a repeated matrix item, and a fold counted twice shrinks the spread
        _require(len(set(self.folds)) == len(self.folds), f"{key}.folds", list(self.folds),
                 "a list of distinct fold numbers (each fold is trained and counted once)")
        _require(1 <= self.epochs <= 10_000, f"{key}.epochs", self.epochs, "an integer in 1..10000")
        _require(0 <= self.label_smoothing < 1, f"{key}.label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _require(1 <= self.eval_batch_size <= 65536, f"{key}.eval_batch_size", self.eval_batch_size, "an integer in 1..65536")
        _require(0 <= self.threads <= 1024, f"{key}.threads", self.threads, "an integer in 0..1024")
        _require(1 <= self.parallel_folds <= MAX_PARALLEL_FOLDS, f"{key}.parallel_folds", self.parallel_folds,
                 f"an integer in 1..{MAX_PARALLEL_FOLDS} (each worker holds its own copy of the images)")
        if self.parallel_folds > 1:
            # the workers share the stage's cores; each needs one thread of its own, fixed by params
            _require(self.threads >= self.parallel_folds, f"{key}.parallel_folds", self.parallel_folds,
                     f"at most train.threads ({self.threads}): the folds side by side share the stage's "
                     f"train.threads cores, at least one each (set train.threads to the cores the stage may use, "
                     f"or parallel_folds: 1)")
        self.optim.validate(f"{key}.optim")
        for name, o in self.overrides.items():
            if name not in self.models:
                # a recipe for a model the user took out of train.models (shrinking a profile) is ignored;
                # a name that is no model at all (a typo) is refused
                _require(_is_model_name(name), f"{key}.overrides.{name}", name,
                         f"one of train.models {list(self.models)}, or another registered model (ignored)")
                _note(f"{key}.overrides.{name}: ignored, {name!r} is not in train.models {list(self.models)}")
            o.validate(f"{key}.overrides.{name}")
        for name in self.models:   # the cross-key rule: a warm-up longer than training never reaches the set lr
            o, epochs = self.optim_for(name), self.epochs_for(name)
            if o.warmup_epochs > epochs:
                where = f"{key}.overrides.{name}" if name in self.overrides else f"{key}.optim"
                raise ParamsError(f"{where}.warmup_epochs: {o.warmup_epochs} is longer than {name}'s {epochs} "
                                  f"training epoch(s), so its learning rate would never reach the set value; "
                                  f"expected at most {epochs}")

    @property
    def fold_threads(self) -> int:
        """torch threads of each fold: train.threads shared by the folds side by side (0: torch's default)."""
        return self.threads // self.parallel_folds

    def optim_for(self, model: str) -> OptimParams:
        """The optimiser settings for `model`: its override (which `from_dict` made at load by writing the
        override's keys over train.optim), else train.optim."""
        return self.overrides.get(model, self.optim)

    def epochs_for(self, model: str) -> int:
        """Epochs for `model`: its override's `epochs` if set, else train.epochs."""
        return self.optim_for(model).epochs or self.epochs

    def pretrained_for(self, model: str) -> bool:
        """Whether `model` starts from ImageNet weights: its override's `pretrained`, else train.pretrained."""
        own = getattr(self.overrides.get(model), "pretrained", None)
        return self.pretrained if own is None else own


@dataclass(frozen=True)
class TuneParams:
    """The nested recipe search (pipeline/training/tuning.py): `trials` Optuna trials per model per fold, each trained on
    the fold's training part for at most `epochs` epochs (the same cap for every model) and scored on its
    validation part; the fold's model is the best trial's. 0 trials: the recipes as given (train.optim and
    train.overrides). The search space is over the recipe keys; a fixed key keeps its recipe value."""
    trials: int = 0
    epochs: int = 0                     # the epoch cap of every trial of every model; 0: train.epochs
    objective: Literal["val_balanced_accuracy", "val_loss"] = "val_balanced_accuracy"
    pruner: Literal["median", "none"] = "median"   # median: stop a trial whose epoch score falls below the median
    startup_trials: int = 3             # trials neither pruned nor sampled by TPE (random draws) at the start
    lr: tuple[float, ...] = (1e-4, 1e-2)               # low, high: log-uniform
    weight_decay: tuple[float, ...] = (1e-6, 1e-2)     # low, high: log-uniform
    batch_size: tuple[int, ...] = (16, 32, 64)         # choices
    optimizer: tuple[Literal["adamw", "adam", "sgd"], ...] = ("adamw", "sgd")   # choices
    warmup_epochs: tuple[int, ...] = (0, 2)            # low, high: integers
    label_smoothing: tuple[float, ...] = (0.0, 0.1)    # low, high: uniform

    def validate(self, key: str) -> None:
        _require(0 <= self.trials <= 1000, f"{key}.trials", self.trials,
                 "an integer in 0..1000 (0: the recipes as given, no search)")
        _require(0 <= self.epochs <= 10_000, f"{key}.epochs", self.epochs, "an integer in 0..10000 (0: train.epochs)")
        _require(0 <= self.startup_trials <= 1000, f"{key}.startup_trials", self.startup_trials, "an integer in 0..1000")
        # (name, log-uniform, lowest low, highest high, high must stay below it)
        for name, log, floor, ceiling, below in (("lr", True, 0.0, 10.0, False), ("weight_decay", True, 0.0, 1.0, False),
                                                 ("label_smoothing", False, 0.0, 1.0, True),
                                                 ("warmup_epochs", False, 0, 10_000, False)):
            pair = getattr(self, name)
            ok = len(pair) == 2 and pair[0] <= pair[1]
            ok = ok and (pair[0] > floor if log else pair[0] >= floor)
            ok = ok and (pair[1] < ceiling if below else pair[1] <= ceiling)
            _require(ok, f"{key}.{name}", list(pair),
                     f"[low, high] with {floor} {'<' if log else '<='} low <= high {'<' if below else '<='} {ceiling}"
                     + (" (log-uniform)" if log else ""))
        _require(len(self.batch_size) > 0 and len(set(self.batch_size)) == len(self.batch_size)
                 and all(2 <= b <= 4096 for b in self.batch_size), f"{key}.batch_size", list(self.batch_size),
                 "a non-empty list of distinct batch sizes in 2..4096")
        _require(len(self.optimizer) > 0 and len(set(self.optimizer)) == len(self.optimizer), f"{key}.optimizer",
                 list(self.optimizer), "a non-empty list of distinct optimizers of adamw, adam, sgd")


@dataclass(frozen=True)
class ProfileParams:
    latency_runs: int = 30        # timed runs per measurement, after warm-up
    warmup_runs: int = 3
    threads: int = 2              # torch CPU threads during latency measurement (recorded in the JSON)
    batch_size: int = 32          # the throughput batch, timed at the training input (latency.batch_<n>)

    def validate(self, key: str) -> None:
        # upper bounds: each run is a timed forward pass; beyond these a stage runs for hours for no precision
        # two runs give a figure (a median and quartiles need two; the test suite's smoke runs take that); 30 or
        # more give a median worth reporting
        _require(2 <= self.latency_runs <= 10_000, f"{key}.latency_runs", self.latency_runs,
                 "an integer in 2..10000 (a median and its quartiles need two runs; 30 or more for a figure worth "
                 "reporting)")
        _require(1 <= self.warmup_runs <= 1000, f"{key}.warmup_runs", self.warmup_runs, "an integer in 1..1000")
        _require(1 <= self.threads <= 1024, f"{key}.threads", self.threads, "an integer in 1..1024")
        _require(1 <= self.batch_size <= 4096, f"{key}.batch_size", self.batch_size, "an integer in 1..4096")


@dataclass(frozen=True)
class PrimaryParams:
    """The one declared comparison (not adjusted for multiplicity; the rest are exploratory); the report names
    the commit that last changed it in params.yaml."""
    reference: str = PROPOSED_MODEL
    comparator: str = COMPUTE_REFERENCE
    metric: Literal["balanced_accuracy", "accuracy", "macro_f1"] = "balanced_accuracy"
    protocol: Literal["patient", "image", "ucar"] = "patient"
    scenario: Literal["S1", "S2", "S3", "S4"] = "S1"
    target: float = 0.059       # the difference it should detect: the paper's 5.9-point gain over the dual VGG


@dataclass(frozen=True)
class DeployParams:
    """The deploy stage: which trained folds it exports, checks and quantizes, and the int8 calibration."""
    protocols: tuple[str, ...] = ()   # a subset of split.protocols; empty: all of them
    folds: tuple[int, ...] = ()       # a subset of train.folds; empty: all of them (latency: the first listed)
    calibration_images: int = 64      # at most this many of a fold's training images calibrate int8
    # timed runs of the exported fp32 and int8 networks at the paper's input, 3x224x224, at 1 and 2 threads
    # (0: not timed); fewer than profile.latency_runs: a 224-px dual VGG takes about a second a run
    paper_input_latency_runs: int = 10

    def validate(self, key: str) -> None:
        _require(self.paper_input_latency_runs == 0 or 2 <= self.paper_input_latency_runs <= 10_000,
                 f"{key}.paper_input_latency_runs", self.paper_input_latency_runs,
                 "0 (not timed) or an integer in 2..10000 (a median and its 90th percentile need two runs)")
        _require(len(set(self.protocols)) == len(self.protocols), f"{key}.protocols", list(self.protocols),
                 "a list without repeats")
        _require(len(set(self.folds)) == len(self.folds), f"{key}.folds", list(self.folds), "a list without repeats")
        _require(1 <= self.calibration_images <= 100_000, f"{key}.calibration_images", self.calibration_images,
                 "an integer in 1..100000")


@dataclass(frozen=True)
class EvaluateParams:
    reference_model: str = PROPOSED_MODEL   # the model every other one is compared against
    bootstrap: int = 2000             # resamples for the paired bootstrap
    primary: PrimaryParams | None = None   # None: no primary comparison declared, every comparison exploratory
    # the positive class's prevalence at which PPV and NPV are also given (binary scenarios); None: the cohort's own
    prevalence: float | None = None
    # the validation-chosen operating point: the highest threshold on P(positive) whose validation sensitivity
    # reaches this (binary scenarios); test sensitivity and specificity are reported there
    target_sensitivity: float = 0.9

    def validate(self, key: str) -> None:
        # at most 10^5: the resamples are held in memory (issue 24: 10^9 was still running after 60 s at 3.6 GB)
        _require(100 <= self.bootstrap <= 100_000, f"{key}.bootstrap", self.bootstrap, "an integer in 100..100000")
        _require(self.prevalence is None or (isinstance(self.prevalence, (int, float)) and 0 < self.prevalence < 1),
                 f"{key}.prevalence", self.prevalence, "null (the cohort's own) or a number strictly between 0 and 1")
        _require(isinstance(self.target_sensitivity, (int, float)) and 0 < self.target_sensitivity <= 1,
                 f"{key}.target_sensitivity", self.target_sensitivity, "a number in (0, 1]")


@dataclass(frozen=True)
class CheckParams:
    """The regression check (pipeline/check.py): a drop fails when it exceeds max(floor, noise_factor x
    the noise measured with the baseline), at most the cap, but never below the noise plus the floor."""
    baseline: str = "reports/baseline.json"
    max_accuracy_drop: float = 2.0      # floor, percentage points of accuracy
    max_metric_drop: float = 0.03       # floor, absolute, for balanced accuracy, macro-F1 and AUC
    noise_factor: float = 3.0           # times the noise the baseline's calibration measured
    max_accuracy_tolerance: float = 4.0  # cap, points: a larger drop fails unless the noise alone is larger
    max_metric_tolerance: float = 0.06  # cap for the other metrics
    exact: tuple[str, ...] = ("params", "macs", "flops")   # complexity fields that must match exactly

    def validate(self, key: str) -> None:
        _require(self.max_accuracy_drop >= 0, f"{key}.max_accuracy_drop", self.max_accuracy_drop, "a number >= 0")
        _require(self.max_metric_drop >= 0, f"{key}.max_metric_drop", self.max_metric_drop, "a number >= 0")
        _require(self.noise_factor >= 0, f"{key}.noise_factor", self.noise_factor, "a number >= 0")
        _require(self.max_accuracy_tolerance >= self.max_accuracy_drop, f"{key}.max_accuracy_tolerance",
                 self.max_accuracy_tolerance, f"a number >= check.max_accuracy_drop ({self.max_accuracy_drop})")
        _require(self.max_metric_tolerance >= self.max_metric_drop, f"{key}.max_metric_tolerance",
                 self.max_metric_tolerance, f"a number >= check.max_metric_drop ({self.max_metric_drop})")


@dataclass(frozen=True)
class RuntimeParams:
    """How the numerical libraries run (applied by pipeline/core/cpu.py when the package is imported)."""
    cpu_isa: Literal["native", "avx2"] = "native"   # avx2: the AVX2 paths everywhere (pipeline/core/cpu.py says what that gives)

    def validate(self, key: str) -> None:
        pass


@dataclass(frozen=True)
class Params:
    seed: int = 0
    profile_name: str = "cpu-demo"    # words the report uses for this configuration
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    train: TrainParams = field(default_factory=TrainParams)
    tune: TuneParams = field(default_factory=TuneParams)
    profile: ProfileParams = field(default_factory=ProfileParams)
    deploy: DeployParams = field(default_factory=DeployParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    check: CheckParams = field(default_factory=CheckParams)
    runtime: RuntimeParams = field(default_factory=RuntimeParams)

    def validate(self, key: str = "") -> None:
        _require(0 <= self.seed <= MAX_SEED, "seed", self.seed,
                 f"an integer in 0..{MAX_SEED} (numpy and scikit-learn take seeds below 2**32, and folds add offsets)")
        self.data.validate("data")
        self.split.validate("split")
        self.train.validate("train")
        self.tune.validate("tune")
        if self.tune.trials:
            _require(self.train.select_by != "last", "train.select_by", self.train.select_by,
                     "val_balanced_accuracy, val_accuracy or val_loss when tune.trials > 0 (trials are compared on "
                     "the validation part, and `last` chooses nothing there)")
        self.profile.validate("profile")
        self.deploy.validate("deploy")
        self.evaluate.validate("evaluate")
        self.check.validate("check")
        if "ucar" in self.split.protocols and self.split.folds != UCAR_PUBLISHED_FOLDS:
            raise ParamsError(f"split.folds: {self.split.folds} is not accepted with protocol 'ucar'; expected "
                              f"{UCAR_PUBLISHED_FOLDS}, the number of folds the Uçar release publishes")
        bad = [k for k in self.train.folds if k > self.split.folds]
        if bad:
            raise ParamsError(f"train.folds: {bad} exceed split.folds={self.split.folds}; "
                              f"accepted: fold numbers in 1..{self.split.folds}")
        if self.evaluate.reference_model not in self.train.models:
            raise ParamsError(f"evaluate.reference_model: {self.evaluate.reference_model!r} is not in "
                              f"train.models {list(self.train.models)}")
        primary = self.evaluate.primary
        if primary is not None:
            absent = []   # what the primary names that this run does not have (a shrunk profile)
            for name, value, allowed in (("reference", primary.reference, self.train.models),
                                         ("comparator", primary.comparator, self.train.models),
                                         ("protocol", primary.protocol, self.split.protocols),
                                         ("scenario", primary.scenario, self.split.scenarios)):
                if value not in allowed:
                    # a model is refused unless it is one the benchmark can build (a typo is refused);
                    # protocols and scenarios are already checked against every known name
                    if name in ("reference", "comparator"):
                        _require(_is_model_name(value), f"evaluate.primary.{name}", value,
                                 f"one of {list(allowed)}, or another registered model (then no primary comparison)")
                    absent.append(f"evaluate.primary.{name} {value!r} is not in this run's {list(allowed)}")
            _require(primary.comparator != primary.reference, "evaluate.primary.comparator", primary.comparator,
                     f"a model other than the reference {primary.reference!r}")
            _require(0 < primary.target < 1, "evaluate.primary.target", primary.target,
                     "a difference in 0..1 (a fraction: 0.059 is 5.9 points)")
            if absent:
                _note("; ".join(absent) + ": no primary comparison in this run, every comparison is exploratory "
                      "(set evaluate.primary to one this run has)")
                object.__setattr__(self, "evaluate", dataclasses.replace(self.evaluate, primary=None))

    def deploy_protocols(self) -> list[str]:
        """The protocols the deploy stage exports: those of deploy.protocols that this run has (all of
        split.protocols when it lists none, or none of them was run: a shrunk run still deploys)."""
        return [p for p in self.split.protocols if p in self.deploy.protocols] or list(self.split.protocols)

    def deploy_folds(self) -> list[int]:
        """The folds the deploy stage exports: those of deploy.folds that train.folds trains (all of them
        when it lists none, or none of them is trained)."""
        return [k for k in self.train.folds if k in self.deploy.folds] or list(self.train.folds)

    def repeat_seed(self, repeat: int) -> int:
        """The seed of repeat `repeat` (1-based) of the cross-validation, derived from `seed`: repeat 1
        uses `seed` itself, so a run with one repeat draws what it drew before repeats existed."""
        if repeat == 1:
            return self.seed
        import numpy as np

        return int(np.random.SeedSequence([self.seed, repeat]).generate_state(1)[0])


def _is_model_name(name: str) -> bool:
    """Whether `name` is a model the benchmark can build: the project's roster or a timm model name
    (timm is imported only here, for an override outside train.models; models/ itself is not imported,
    so that every stage's code deps stay what they are)."""
    if name in DEFAULT_MODELS or name in STAND_INS:
        return True
    import timm

    return timm.is_model(name)


def _note(message: str) -> None:
    """A note on stderr: something in params.yaml is accepted but has no effect."""
    print(f"note: {message}", file=sys.stderr)


def _require(ok: bool, key: str, value: Any, accepted: str) -> None:
    if not ok:
        raise ParamsError(f"{key}: {value!r} is not accepted; expected {accepted}")


_FLOAT_TEXT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type `tp`, or raise ParamsError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        return _convert(options[0], value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if not any(type(value) is type(c) and value == c for c in choices):   # 3.0 is not the integer 3
            raise ParamsError(f"{key}: {value!r} is not accepted; expected one of {list(choices)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: {value!r} is not accepted; expected a list")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: {value!r} is not accepted; expected a mapping")
        k_tp, v_tp = typing.get_args(tp)
        return {_convert(k_tp, k, key): _convert(v_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: {value!r} is not accepted; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: {value!r} is not accepted; expected an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads 2e-5, as `dvc exp run -S train.optim.lr=2e-5` writes it, as text
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamsError(f"{key}: {value!r} is not accepted; expected a finite number (e.g. 0.002 or 2e-3)")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(f"{key}: {value!r} is not accepted; expected a non-empty string")
        return value
    raise TypeError(f"unsupported params type {tp} at {key}")  # a bug in this module, not in params.yaml


# keys that were renamed: old dotted key -> what to write instead
RENAMED = {
    "split.scenario": "split.scenario was replaced by split.scenarios, a list of scenarios run side by side; "
                      "write e.g. `scenarios: [S1]` (or [S1, S2, S3, S4] for the whole published table)",
}


def _build(cls: type, raw: Any, key: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{key or 'params.yaml'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    for name in unknown:
        dotted = f"{key}.{name}" if key else name
        if dotted in RENAMED:
            raise ParamsError(RENAMED[dotted])
    if unknown:
        where = f"{key}." if key else ""
        raise ParamsError(f"unknown key {where}{unknown[0]}; accepted keys here: {sorted(fields)}")
    kwargs = {name: _convert(hints[name], raw[name], f"{key}.{name}" if key else name)
              for name in fields if name in raw}
    return cls(**kwargs)


def from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping into `Params`.

    Each `train.overrides.<model>` is merged over `train.optim`, so an override names only what
    differs for that model.
    """
    train = raw.get("train") if isinstance(raw, dict) else None
    if isinstance(train, dict) and isinstance(train.get("overrides"), dict):
        base = train.get("optim") or {}
        if isinstance(base, dict):
            # an override with no keys (`resnet18:` alone) is the model trained on train.optim
            merged = {m: deep_merge(base, {} if o is None else o) if isinstance(o, dict) or o is None else o
                      for m, o in train["overrides"].items()}
            raw = {**raw, "train": {**train, "overrides": merged}}
    params = _build(Params, raw, "")
    params.validate()
    return params


def load(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml (or `path`)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file; run stages from the project root, where params.yaml is")
    raw = read_yaml(path)
    try:
        return from_dict(raw)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


def read_yaml(path: str | Path) -> Any:
    """A params or profile file read by the strict reader (pipeline/core/yamlio.py); its refusals as ParamsError."""
    try:
        return yamlio.load(path)
    except yamlio.YamlError as e:
        raise ParamsError(str(e)) from None


def to_dict(params: Params) -> dict:
    """Plain mapping of `params` (tuples as lists), for reports and fingerprints."""
    def plain(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(params)


def deep_merge(base: dict, overlay: dict) -> dict:
    """`base` with `overlay`'s keys written over it, recursively for mappings."""
    out = dict(base)
    for k, v in overlay.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# mappings a profile replaces whole instead of merging into: per-model recipes of one profile are
# not meant to survive into another (a demo's shortened schedule in the paper profile, say)
REPLACED_WHOLE = {("train", "overrides")}


def _merge_in_place(base: Any, overlay: dict, path: tuple[str, ...] = ()) -> None:
    """Write `overlay`'s keys over the ruamel mapping `base`, recursively; its comments and order stay."""
    for k, v in overlay.items():
        if (v is None or v == {}) and isinstance(base.get(k), dict):
            continue    # a section whose keys are all commented out changes nothing; it never empties one
        if isinstance(v, dict) and isinstance(base.get(k), dict) and (*path, k) not in REPLACED_WHOLE:
            _merge_in_place(base[k], v, (*path, k))
        else:
            base[k] = v


def _plain(x: Any) -> Any:
    """A ruamel.yaml tree as plain dicts, lists and scalars (ruamel's ScalarInt, ScalarFloat and
    quoted strings become int, float and str)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    for kind in (bool, int, float, str):
        if isinstance(x, kind):
            return kind(x)
    return x


def apply_profile(profile: str | Path, params_path: str | Path = PARAMS_FILE) -> Params:
    """Merge the profile file into params.yaml, validate, and replace params.yaml atomically.

    params.yaml is edited as a round-trip document: its comments and key order stay, the
    profile's values replace the ones they name, and keys new to params.yaml go at the end of
    their mapping. `train.overrides` (the per-model recipes) is replaced whole when a profile names it.
    """
    import io

    from ruamel.yaml import YAML

    params_path, profile = Path(params_path), Path(profile)
    rt = YAML()   # round trip: comments, order and quoting survive
    rt.preserve_quotes = True
    rt.width = 4096
    overlay = read_yaml(profile) or {}
    read_yaml(params_path)    # the strict reader first: no aliases, no key written twice, bounded size
    try:
        base = rt.load(params_path.read_text()) or {}
    except (OSError, ValueError) as e:
        raise ParamsError(f"{profile} merged into {params_path}: cannot read ({e})") from None
    if not isinstance(overlay, dict):
        raise ParamsError(f"{profile}: expected a mapping of params keys, got {overlay!r}")
    _merge_in_place(base, overlay)
    try:
        params = from_dict(_plain(base))
    except ParamsError as e:
        raise ParamsError(f"{profile} merged into {params_path}: {e}") from None
    out = io.StringIO()
    rt.dump(base, out)
    # the path is shown as repr when it holds a line break or other control character: a comment is one line
    def shown(text: str) -> str:
        return text if text.isprintable() else repr(text)
    header = f"# Profile {shown(profile.name)} applied by `python -m pipeline.params apply {shown(str(profile))}`.\n"
    atomic_write_text(params_path, header + out.getvalue())
    return params
