"""Stage `profile`: what one model costs, counted and measured, not guessed.

    python -m pipeline.profile --model stanet      -> reports/complexity/stanet.json

Figures (the JSON layout is the contract in the project docs):
- params: exact count of the model as trained (data.channels in, the first scenario's classes
  out); params_by_scenario: the same for every scenario of split.scenarios (S4's head has four
  outputs); each setting also records the params of the model it measured (3 input channels at 224).
- macs: thop's multiply-accumulates of convolution and linear layers, plus thop's count for
  average pooling, plus the soft-threshold attention's own arithmetic through a custom rule
  (`SoftThreshold.macs`). Batch norm counts zero: it folds into the preceding convolution at
  inference, and timm's fused BatchNormAct2d, which thop does not know, would otherwise make the
  convention differ between models. Activations count zero. This matches torchvision's published
  GMACs (tests/test_profile.py checks five of them). thop matches module types exactly, so the
  rules here are attached by isinstance (timm's own Linear subclass would otherwise count zero).
- flops: torch.utils.flop_counter.FlopCounterMode, which counts only matmul- and
  convolution-like aten ops (2 FLOPs per multiply-accumulate): no batch norm, activation,
  pooling or elementwise work, so flops is close to 2 x macs but not equal to it.
- both at the paper's 3x224x224 and at the training input data.channels x data.image_size^2.
- latency: CPU wall time of model(x) in inference mode with torch.set_num_threads(profile.threads),
  batch 1 at 3x224x224 and batch profile.batch_size (32; key batch_<n>) at the training input;
  median, quartiles, min and max over profile.latency_runs runs after profile.warmup_runs warm-up
  runs; the CPU model is recorded.
  Run it on an otherwise idle machine: with as many threads as cores, one busy core elsewhere
  makes OpenMP's threads wait on each other and can multiply the times several-fold.
- peak_memory_bytes: the most bytes of CPU tensor memory allocated at once during one batch-1
  3x224x224 inference forward, beyond the weights and the input that already exist; read from
  torch.profiler's allocator events (every allocation and free, in order). Process RSS would
  mix in the allocator's caching and the interpreter; tracemalloc does not see torch's memory.
- weights_bytes: len(torch.save(state_dict)) of the model as trained.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import time
import warnings
from importlib.metadata import version
from typing import Any

os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # 6 silences torch.profiler's start/stop lines on stderr

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # thop 0.1.1 still imports distutils' LooseVersion
    import thop
from thop.vision.basic_hooks import count_adap_avgpool, count_avgpool, count_convNd, count_linear, zero_ops
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import models
from pipeline.core import layout
from pipeline.core import params as params_module
from pipeline.core.atomic import atomic_write_json
from pipeline.core.cli import run_stage
from pipeline.core.scenarios import class_names
from pipeline.core.sysinfo import cpu_name
from pipeline.training.modelcheck import check_model

PAPER_INPUT = (3, 224, 224)
OUT_DIR = layout.COMPLEXITY_DIR

# thop rules by base class, so subclasses (timm.layers.Linear, Conv2dSame, BatchNormAct2d) count too
_RULES_BY_BASE: list[tuple[type[nn.Module], Any]] = [
    (nn.modules.conv._ConvNd, count_convNd),
    (nn.Linear, count_linear),
    (nn.modules.batchnorm._NormBase, zero_ops),
    (nn.AdaptiveAvgPool2d, count_adap_avgpool),
    (nn.AvgPool2d, count_avgpool),
]


def _count_own_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    """thop rule for modules that count themselves (e.g. models.SoftThreshold.macs)."""
    module.total_ops += torch.DoubleTensor([module.macs(inputs[0].shape)])


def thop_rules(model: nn.Module) -> dict[type[nn.Module], Any]:
    """thop custom_ops for every module type in `model`: own `macs()` first, then the base-class rules."""
    rules = {}
    for m in model.modules():
        t = type(m)
        if t in rules:
            continue
        if callable(getattr(m, "macs", None)):
            rules[t] = _count_own_macs
            continue
        for base, rule in _RULES_BY_BASE:
            if isinstance(m, base):
                rules[t] = rule
                break
    return rules


def count_macs_and_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """MACs by thop and FLOPs by FlopCounterMode, from one forward of model(x).

    thop runs on a deep copy: it leaves total_ops/total_params buffers (and, on an error, hooks)
    behind. FlopCounterMode sees the same forward; thop's own bookkeeping adds no matmul/conv ops.
    """
    # wrapped, because thop adds a root module's own rule to its children's counts: a bare
    # SoftThreshold would count its FC layers twice
    clone = nn.Sequential(copy.deepcopy(model)).eval()
    with FlopCounterMode(display=False) as counter:
        macs, _ = thop.profile(clone, inputs=(x,), custom_ops=thop_rules(clone), verbose=False)
    return int(round(macs)), int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Exact number of parameters (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def measure(model: nn.Module, input_size: tuple[int, int, int] = PAPER_INPUT) -> dict:
    """Params, MACs and FLOPs of `model` for one input of `input_size` (C, H, W)."""
    macs, flops = count_macs_and_flops(model, torch.randn(1, *input_size))
    return {"input": list(input_size), "params": count_params(model), "macs": macs, "flops": flops}


def measure_latency(model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 1,
                    runs: int = 30, warmup: int = 3) -> dict:
    """CPU inference latency of one batch, in ms: median, p25, p75, min and max over `runs` runs."""
    training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_size)
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(training)
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return {"input": list(input_size), "median_ms": round(q2, 3), "p25_ms": round(q1, 3), "p75_ms": round(q3, 3),
            "min_ms": round(min(times), 3), "max_ms": round(max(times), 3)}


def peak_forward_memory(model: nn.Module, input_size: tuple[int, int, int] = PAPER_INPUT, batch_size: int = 1,
                        warmup: bool = True) -> int:
    """Most bytes of CPU tensor memory allocated at once during one inference forward (weights excluded).

    The first forward on a shape may allocate one-off caches (oneDNN's), which are not the
    forward's memory: `warmup` runs one before the counted one; pass False for a warm model.
    """
    from torch.profiler import ProfilerActivity, profile

    training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_size)
    try:
        with torch.inference_mode():
            if warmup:
                model(x)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                model(x)
    finally:
        model.train(training)
    # each "[memory]" event is one allocation (+bytes) or free (-bytes); the running sum in time
    # order is what was allocated during the forward and still alive
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def weights_bytes(model: nn.Module) -> int:
    """Size of the saved weights: bytes of torch.save(model.state_dict())."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def profile_model(name: str, params: params_module.Params, train_model: nn.Module | None = None) -> dict:
    """Every figure of reports/complexity/<name>.json for model `name` under `params`; `train_model`, when
    given, is the model as trained (data.channels in), already built (by check_model), not built again."""
    num_classes = len(class_names(params.split.scenarios[0]))
    train_input = (params.data.channels, params.data.image_size, params.data.image_size)
    torch.manual_seed(params.seed)
    torch.set_num_threads(params.profile.threads)
    paper_model = models.create_model(name, num_classes=num_classes, in_chans=PAPER_INPUT[0])
    if train_input[0] == PAPER_INPUT[0]:
        train_model = paper_model
    elif train_model is None:
        train_model = models.create_model(name, num_classes=num_classes, in_chans=train_input[0])
    paper = measure(paper_model, PAPER_INPUT)
    # at the paper's own input the training model is the paper model (above): the same count, not made twice
    training = paper if train_input == PAPER_INPUT else measure(train_model, train_input)
    runs, warmup, batch = params.profile.latency_runs, params.profile.warmup_runs, params.profile.batch_size
    latency = {
        "device": "cpu", "cpu": cpu_name(), "threads": torch.get_num_threads(), "runs": runs, "warmup": warmup,
        "batch_1": measure_latency(paper_model, PAPER_INPUT, 1, runs, warmup),
        f"batch_{batch}": measure_latency(train_model, train_input, batch, runs, warmup),
    }
    return {
        "model": name,
        "display_name": models.display_name(name),
        "num_classes": num_classes,
        "params": training["params"],
        "params_by_scenario": {s: training["params"] if len(class_names(s)) == num_classes else count_params(
            models.create_model(name, num_classes=len(class_names(s)), in_chans=train_input[0]))
            for s in params.split.scenarios},
        "paper_setting": paper,
        "training_setting": training,
        "latency": latency,
        "peak_memory_bytes": peak_forward_memory(paper_model, PAPER_INPUT, warmup=False),  # warm from latency
        "weights_bytes": weights_bytes(train_model),
        "versions": {"torch": torch.__version__, "timm": version("timm"), "thop": version("thop")},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.profile", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a registered model or timm name, e.g. stanet")
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--out-dir", default=str(OUT_DIR), help=f"where <model>.json goes (default: {OUT_DIR})")
    args = ap.parse_args(argv)
    params = params_module.load(args.params)
    start = time.perf_counter()
    torch.manual_seed(params.seed)   # the checked model is profiled: seeded as every other one
    checked = check_model(params, args.model)   # the first scenario's classes, data.channels in
    report = profile_model(args.model, params, train_model=checked)
    target = layout.complexity_path(args.model, args.out_dir)
    atomic_write_json(target, report)
    print(f"{target}: params {report['params']:,}, {report['paper_setting']['macs'] / 1e6:,.1f} MMACs at 3x224x224, "
          f"batch-1 latency {report['latency']['batch_1']['median_ms']:.1f} ms "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    run_stage(main)
