"""What a stage spends before its first useful work, piece by piece, in CPU seconds of one thread.

CPU seconds (time.process_time) rather than wall time, so that a busy, shared machine still gives
the figures of an idle one: every piece below runs on one thread.

    python benchmarks/startup.py            # at the root of a checkout (reads params.yaml)

A benchmark, not a test: it prints figures and asserts nothing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    clock = time.process_time
    t = clock()
    import pipeline.train as train   # torch, numpy, pandas and the project's modules
    figures = {"import pipeline.train (torch, pandas, the project)": clock() - t}
    import torch

    from pipeline.training.modelcheck import check_model
    from pipeline.core.params import load

    torch.set_num_threads(1)
    t = clock()
    train.code_digest()
    figures["the code digest of the checkpoint fingerprint"] = clock() - t
    model = torch.nn.Linear(3, 2)
    t = clock()
    opt = torch.optim.AdamW(model.parameters(), foreach=True)
    model(torch.zeros(1, 3)).sum().backward()
    opt.step()
    figures["the first optimiser step (imports torch._dynamo)"] = clock() - t
    params = load()
    for name in ("stanet", "dual_vgg_bn"):
        if name in params.train.models:
            t = clock()
            check_model(params, name)
            figures[f"check_model({name}): build it, one forward"] = clock() - t
    t = clock()
    import sklearn.linear_model  # noqa: F401 - the closed-form model's fit
    figures["import sklearn.linear_model (the hand-crafted model's fit)"] = clock() - t
    print("| start-up piece | CPU s |\n|---|---|")
    for what, seconds in figures.items():
        print(f"| {what} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
