"""Project the wall time of the whole paper profile from the stage timings of a partial run, or,
before any run, from training throughputs.

    python benchmarks/project_paper_time.py timings.csv [--scenarios 4 --folds 5 --protocols 2 --repeats 3 --json out.json]
    python benchmarks/project_paper_time.py --throughput stanet=7979,resnet18=7042,... --profile profiles/paper.yaml
    python benchmarks/project_paper_time.py --power reports/metrics.json [--profile profiles/paper.yaml]

timings.csv is written by benchmarks/gpu_check.sh (stage, model, protocol, fold, seconds, status).
Each model's training time per fold is the mean of its measured folds (process start-up, data
loading, every epoch, validation and test prediction included; conservative, since the pipeline
trains a stage's folds in one process); the whole profile trains every model on `scenarios` x
`protocols` x `folds` x `repeats` folds, in `scenarios` x `protocols` train stages per model. A deploy row
covers the protocols and folds named in its protocol and fold columns (space-separated); the whole profile
deploys every model's `scenarios` x `protocols` x `folds` folds of repeat 1, in one stage per scenario and
model, at the measured seconds per fold (its once-per-stage latency timing counted with every fold: an
upper bound). prepare, split, profile, evaluate and report run once, as measured. DVC's own bookkeeping
between stages is added as `--dvc-overhead-s` per stage.

`--power` projects instead what the profile's design (folds x repeats on its patients) would detect with
80% power, from a run's primary comparison under stated assumptions about the fold differences' sd
(pipeline.evaluation.stats.projected_mdd): a bracket, not an answer. The demo's sd rests on 2 degrees of freedom;
it cannot tell whether the paper profile is powered for the paper's 5.9 points.
"""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd


def project(timings: pd.DataFrame, folds: int, protocols: int, dvc_overhead_s: float, scenarios: int = 1,
            repeats: int = 1) -> dict:
    """Per-model fold times and the projected total, in seconds (every fold of every repeat)."""
    ok = timings[timings["status"].astype(str) == "0"].copy()
    ok["seconds"] = ok["seconds"].astype(float)
    train = ok[ok["stage"] == "train"]
    per_model = train.groupby("model")["seconds"].agg(["mean", "count"]).round(2)
    runs = scenarios * protocols * folds * repeats
    deploy = ok[ok["stage"] == "deploy"].copy()
    # a deploy row's seconds spread over the protocols x folds it exported
    covered = deploy["protocol"].astype(str).str.split().str.len() * deploy["fold"].astype(str).str.split().str.len()
    deploy["per_fold"] = deploy["seconds"] / covered
    deploy_per_fold = deploy.groupby("model")["per_fold"].mean().round(2)
    deploy_runs = scenarios * protocols * folds          # repeat 1's folds only
    others = ok[~ok["stage"].isin(["train", "deploy"])]   # run once, as measured
    once = others["seconds"].sum()
    n_stages = scenarios * protocols * len(per_model) + scenarios * len(deploy_per_fold) + len(others)
    total = float(per_model["mean"].sum() * runs + deploy_per_fold.sum() * deploy_runs + once
                  + dvc_overhead_s * n_stages)
    return {"per_model_fold_seconds": per_model["mean"].to_dict(), "folds_measured": per_model["count"].to_dict(),
            "scenarios": scenarios, "runs_per_model": runs,
            "deploy_fold_seconds": deploy_per_fold.to_dict(), "deploy_folds_per_model": deploy_runs,
            "other_stages_seconds": round(float(once), 2),
            "dvc_overhead_s_per_stage": dvc_overhead_s, "stages": int(n_stages),
            "projected_total_seconds": round(total, 1), "projected_total_minutes": round(total / 60, 2)}


def from_throughput(params, images_per_s: dict[str, float], eval_cost: float = 1 / 3) -> dict:
    """Seconds each model's training takes under `params` at the given training throughputs (images/s):
    every scenario's cohort (its patients' images), the training part of every fold of every protocol,
    every epoch; plus validation each epoch and the test part once, a forward pass costing `eval_cost`
    of a training step. A lower bound: start-up, data loading and profiling are not in it."""
    from pipeline.core.scenarios import label_map
    from pipeline.data.synthetic import diagnosis_counts

    syn, sp, tp = params.data.synthetic, params.split, params.train
    per_patient = 14 * syn.images_per_side
    counts = diagnosis_counts(syn.patients)
    images = {s: per_patient * sum(n for d, n in counts.items() if d in label_map(s)) for s in sp.scenarios}
    train_share = (1 - 1 / sp.folds) * (1 - sp.val_fraction)
    out = {}
    for model in tp.models:
        rate = images_per_s.get(model) or images_per_s.get(model.split("_")[0])
        if rate is None:
            continue
        epochs = tp.epochs_for(model)
        per_fold = sum(n * (train_share * epochs + eval_cost * ((1 - 1 / sp.folds) * sp.val_fraction * epochs
                                                                 + 1 / sp.folds)) for n in images.values())
        # every repeat of split.repeats trains every fold again (the ucar protocol allows one repeat only)
        out[model] = per_fold * len(tp.folds) * len(sp.protocols) * sp.repeats / rate
    return {"images_per_scenario": images, "repeats": sp.repeats,
            "seconds_per_model": {m: round(v, 1) for m, v in out.items()},
            "projected_total_seconds": round(sum(out.values()), 1),
            "projected_total_minutes": round(sum(out.values()) / 60, 1)}


def power_table(metrics_path: str, profile_path: str, json_path: str | None = None) -> int:
    """Print the projected MDD of `profile_path`'s design from the primary comparison in `metrics_path`."""
    import numpy as np
    import yaml

    from pipeline.evaluation.stats import projected_mdd

    metrics = json.load(open(metrics_path))
    primary = next((metrics[s]["primary"] for s in metrics["meta"]["scenarios"] if metrics[s].get("primary")), None)
    if primary is None:
        print(f"{metrics_path}: no primary comparison", file=sys.stderr)
        return 2
    profile = yaml.safe_load(open(profile_path)) or {}
    folds, repeats = profile["split"]["folds"], profile["split"]["repeats"]
    patients = profile["data"]["synthetic"]["patients"]
    validation = metrics[primary["scenario"]]["meta"]["validation"][primary["protocol"]]["images"]
    comparison = metrics[primary["scenario"]]["comparisons"][primary["protocol"]][primary["comparator"]]
    n_train = comparison["n_train"]
    val_share = float(np.mean(validation)) / (float(np.mean(validation)) + n_train)
    rows = projected_mdd(primary, folds, repeats, patients, val_share)
    t = primary["design"]["target"]
    print(f"{profile_path}: {folds} folds x {repeats} repeats ({folds * repeats - 1} df), {patients} patients, validation "
          f"share {val_share:.2f} as in {metrics_path}; from its primary comparison ({primary['sign']}, "
          f"{primary['metric']}, {primary['n_patients']} patients, sd on {primary['design']['sd_df']} df)")
    print(f"{'assumption':70s} {'sd':>6s} {'MDD':>6s} {'power at ' + f'{100 * t:.1f}':>14s}")
    for r in rows:
        print(f"{r['assumption']:70s} {100 * r['sd']:6.1f} {100 * r['mdd']:6.1f} {100 * r['power_at_target']:13.0f}%")
    print("A bracket under stated assumptions, not a measurement: this run cannot tell whether the profile's design "
          f"is powered for {100 * t:.1f} points.")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"profile": profile_path, "rows": rows}, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("timings", nargs="?")
    ap.add_argument("--throughput", help="model=images/s,... (training images per second at the profile's input)")
    ap.add_argument("--profile", default="profiles/paper.yaml", help="with --throughput: the profile to project")
    ap.add_argument("--scenarios", type=int, default=4)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--protocols", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the cross-validation (split.repeats)")
    ap.add_argument("--dvc-overhead-s", type=float, default=1.0)
    ap.add_argument("--json")
    ap.add_argument("--note", action="append", default=[], metavar="KEY=TEXT",
                    help="a note kept in the JSON's notes (e.g. how a model was run), repeatable")
    ap.add_argument("--power", metavar="METRICS_JSON", help="project the profile design's detectable difference "
                                                           "from this run's primary comparison")
    args = ap.parse_args(argv)
    notes = dict(item.split("=", 1) for item in args.note)
    if args.power:
        return power_table(args.power, args.profile, args.json)
    if args.throughput:
        import yaml

        from pipeline.core.params import deep_merge, from_dict

        base = yaml.safe_load(open("params.yaml")) or {}
        profile = yaml.safe_load(open(args.profile)) or {}
        params = from_dict(deep_merge(base, profile) | {"train": {**deep_merge(base, profile)["train"],
                                                                  "overrides": profile["train"].get("overrides")}})
        rates = {k: float(v) for k, v in (item.split("=") for item in args.throughput.split(","))}
        result = from_throughput(params, rates)
        for model, s in result["seconds_per_model"].items():
            print(f"{model:24s} {s:8.1f} s")
        print(f"images per scenario {result['images_per_scenario']}; {result['repeats']} repeat(s); projected training of "
              f"{args.profile}: "
              f"{result['projected_total_seconds']} s ({result['projected_total_minutes']} min), a lower bound")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    if not args.timings:
        ap.error("give timings.csv (from benchmarks/gpu_check.sh) or --throughput")
    result = project(pd.read_csv(args.timings), args.folds, args.protocols, args.dvc_overhead_s, args.scenarios,
                     args.repeats)
    if notes:
        result["notes"] = notes
        for key, text in notes.items():
            print(f"note, {key}: {text}")
    for model, s in result["per_model_fold_seconds"].items():
        print(f"{model:24s} {s:8.1f} s per fold  x {result['runs_per_model']} = {s * result['runs_per_model']:8.1f} s")
    for model, s in result["deploy_fold_seconds"].items():
        print(f"{model:24s} {s:8.1f} s per deployed fold  x {result['deploy_folds_per_model']} = "
              f"{s * result['deploy_folds_per_model']:8.1f} s")
    print(f"other stages {result['other_stages_seconds']} s; dvc bookkeeping {args.dvc_overhead_s} s x {result['stages']} stages")
    print(f"projected whole paper profile: {result['projected_total_seconds']} s ({result['projected_total_minutes']} min)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
