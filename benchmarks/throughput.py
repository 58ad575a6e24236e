"""Training throughput: the project's data path and training step against the device's ceiling.

For each model, in one process and at the same batch size, it measures training images per second
(a) on random tensors already on the device (the ceiling: nothing but forward, backward and the
optimizer step), and
(b) through the project's own data path (pipeline.training.batches: uint8 cohort on the device, index
slicing, batch augmentation, normalisation) and the same training step (pipeline.training.recipe.make_step).
Rounds of (a) and (b) alternate, and the median round of each is reported, because this machine's
speed drifts. The ratio b/a says how much of the hardware's training speed the pipeline keeps.

    python benchmarks/throughput.py --device cpu --models stanet,resnet18
    python benchmarks/throughput.py --device cuda --input 3,224,224 --batch-size 64 --json out.json

A benchmark, not a test: it prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pipeline  # noqa: E402,F401  (first: pins the CPU code paths as params.yaml's runtime.cpu_isa says, as every stage)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402
from pipeline.core.params import OptimParams, load  # noqa: E402
from pipeline.training.accel import for_device  # noqa: E402
from pipeline.training.batches import Augment, BatchStream, ImageBank  # noqa: E402
from pipeline.training.recipe import make_optimizer, make_step, seed_everything  # noqa: E402


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, batch: int, device: torch.device) -> float:
    """Images per second of `steps` calls of fn()."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def bench_model(name: str, device: torch.device, input_size: tuple[int, int, int], batch: int, classes: int,
                optim: OptimParams, steps: int, warmup: int, rounds: int, bank_images: int, compile_: bool) -> dict:
    """Ceiling and pipeline throughput of one model; returns the figures."""
    seed_everything(0, device)
    acc = for_device(device, compile_)   # the train stage's CUDA-path settings (pipeline/training/accel.py)
    channels_last = acc.channels_last
    model = models.create_model(name, num_classes=classes, in_chans=input_size[0]).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if compile_ else model
    opt, sched = make_optimizer(model, optim, steps_per_epoch=10_000, epochs=1, device=device)
    step = make_step(runner, opt, sched, torch.nn.CrossEntropyLoss(), device)

    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    x = torch.randn(batch, *input_size, device=device, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    y = torch.randint(0, classes, (batch,), device=device, generator=gen)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(bank_images, *input_size), dtype=np.uint8)
    bank = ImageBank(images, device)
    ids = np.arange(bank_images)
    stream = BatchStream(bank, ids, rng.integers(0, classes, bank_images), batch, gen, 0.5, 0.25, Augment(),
                         channels_last)
    batches = iter(())

    def pipeline_step() -> None:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = stream.epoch_batches()
            xb, yb = next(batches)
        step(xb, yb)

    def ceiling_step() -> None:
        step(x, y)

    timed(ceiling_step, warmup, batch, device)
    timed(pipeline_step, warmup, batch, device)
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(ceiling_step, steps, batch, device))
        b.append(timed(pipeline_step, steps, batch, device))
    ceiling, pipe = statistics.median(a), statistics.median(b)
    return {"model": name, "device": device.type, "batch_size": batch, "input": list(input_size),
            "compiled": compile_, "accel": acc.describe(), "ceiling_img_s": round(ceiling, 1), "pipeline_img_s": round(pipe, 1),
            "ratio": round(pipe / ceiling, 3), "rounds": rounds, "steps_per_round": steps,
            "ceiling_rounds": [round(v, 1) for v in a], "pipeline_rounds": [round(v, 1) for v in b]}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", help="comma-separated; default: train.models from params.yaml")
    ap.add_argument("--batch-size", type=int, default=None, help="default: train.optim.batch_size")
    ap.add_argument("--input", default=None, help="C,H,W; default: data.channels,data.image_size,data.image_size")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="steps per timed round (default 10 cpu, 50 cuda)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 cpu, 20 cuda)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (both paths)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    params = load() if Path("params.yaml").exists() else None
    names = args.models.split(",") if args.models else list(params.train.models)
    batch = args.batch_size or (params.train.optim.batch_size if params else 32)
    if args.input:
        input_size = tuple(int(v) for v in args.input.split(","))
    else:
        input_size = (params.data.channels, params.data.image_size, params.data.image_size) if params else (1, 32, 32)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    steps = args.steps or (50 if cuda else 10)
    warmup = args.warmup or (20 if cuda else 3)
    optim = params.train.optim if params else OptimParams()
    hw = torch.cuda.get_device_name(device) if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"# training throughput on {hw}; input {input_size}, batch {batch}, {args.rounds} rounds x {steps} steps, "
          f"torch {torch.__version__}")
    results = []
    for name in names:
        r = bench_model(name, device, input_size, batch, args.classes, optim, steps, warmup, args.rounds,
                        bank_images=max(4 * batch, 512), compile_=args.compile)
        results.append(r)
        print(f"{name:24s} ceiling {r['ceiling_img_s']:10.1f} img/s  pipeline {r['pipeline_img_s']:10.1f} img/s  "
              f"ratio {r['ratio']:.3f}", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"hardware": hw, "torch": torch.__version__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
