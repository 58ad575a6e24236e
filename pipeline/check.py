"""Regression check: compare reports/metrics.json and reports/complexity/*.json with a baseline.

    python -m pipeline.check                                  # compare; exit 1 on a regression
    python -m pipeline.check --update                          # write the baseline from the current results
    python -m pipeline.check --update --calibration OTHER/metrics.json [...]   # ... and measure its noise
    python -m pipeline.check --baseline PATH --metrics PATH --complexity DIR   # for CI

What decides, for each scenario, model, protocol and summary metric (pipeline/evaluation/metrics.py):

- A model that did not learn (metrics.json `degenerate`) is not compared number by number: the
  noise in a constant predictor's AUC means nothing. It must stay degenerate or start learning;
  a model that learned in the baseline and is degenerate now is a regression ("stopped learning").
- Otherwise a drop fails when it exceeds the tolerance: the larger of a floor (check.max_accuracy_drop
  points for accuracy, check.max_metric_drop for the others) and check.noise_factor times the noise
  measured for that figure, capped at check.max_accuracy_tolerance / max_metric_tolerance so that a
  real drop (5 points in accuracy) fails; but never below the measured noise plus the floor. A
  difference already seen between two runs that must agree is not a regression: a figure that
  noisy cannot be guarded at the cap, and the check names it (measured: the demo's dual_vgg_bn,
  under patient folds, moved 6.5 points between this machine's AVX2 and AVX code paths).
- The noise is measured when the baseline is made: `--calibration` names the metrics.json of the
  same pipeline run again under a perturbation that must not matter (another thread count, another
  CPU), and the baseline records, per figure, the largest difference seen. Differences between
  machines are of this kind: the same code and data, other rounding, another training trajectory.
- Complexity fields in check.exact (params, MACs, FLOPs) must match exactly.
- The CPU settings (pipeline/core/cpu.py) are recorded and a difference is printed, not refused: a CI
  runner without AVX2, say, computes other bits, and that is what the noise allowance is for.

Every flagged figure is printed with the measured noise and the tolerance beside the drop.
A model or protocol in the baseline but not in the current results is a regression; a new one is
reported, not failed. Exit codes: 0 no regression, 1 a regression and nothing else, 2 the check
could not run (no or a malformed baseline, a baseline made with other settings whose numbers would
not be comparable, missing results), even for a bug.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from pipeline.core import layout
from pipeline.core.atomic import atomic_write_json
from pipeline.core.errors import DataError
from pipeline.core.params import PARAMS_FILE, CheckParams, load
from pipeline.core.readers import read_json
from pipeline.evaluation.metrics import SUMMARY_METRICS
from pipeline.reporting.results import read as read_results

METRICS = {m.key: m for m in SUMMARY_METRICS}
SETTINGS = ("data_source", "scenarios", "protocols", "folds", "input_size", "epochs")
BASELINE_VERSION = 3   # 3: per-figure noise and the degenerate flag
REMEDY = "re-create it with `python -m pipeline.check --update` and commit it"
FAILING = {"REGRESSION", "MISSING", "CHANGED", "STOPPED LEARNING", "NOT FINITE"}


# ---- results in baseline form --------------------------------------------------------------------

def complexity_fields(c: dict, exact: tuple[str, ...], where: str) -> dict[str, Any]:
    """The exact-match fields of one complexity record: top-level keys (params), and MACs/FLOPs at
    the paper's 3x224x224 (`macs`) and at the training input (`macs_training`)."""
    out = {}
    for name in exact:
        if name in c and not isinstance(c[name], dict):
            out[name] = c[name]
        elif name in (c.get("paper_setting") or {}):
            out[name] = c["paper_setting"][name]
            if name in (c.get("training_setting") or {}):
                out[f"{name}_training"] = c["training_setting"][name]
        else:
            raise DataError(f"{where}: no field {name!r} (from check.exact); accepted: top-level numbers such as "
                            f"'params', or keys of paper_setting such as 'macs' and 'flops'")
    return out


def results(metrics_path: Path) -> tuple[dict, dict]:
    """The meta and, per scenario, model and protocol, whether it learned and its metric means."""
    r, _ = read_results(metrics_path, None, "make it with `python -m pipeline.evaluate` (or `dvc repro`)")
    if "models" not in r.meta:
        raise DataError(f"{metrics_path}: no meta.models; re-make it with `python -m pipeline.evaluate`")
    out: dict[str, Any] = {}
    for scenario in r.scenarios:
        for model in r.models:
            for protocol in r.protocols:
                if r.summary(scenario, model, protocol):
                    values = {m: r.stat(scenario, model, protocol, m) for m in METRICS}
                    for m, v in values.items():   # NaN passes (it fails the comparison); text is no figure
                        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                            raise DataError(f"{metrics_path}: {scenario}.{model}.{protocol}.{m}.mean is {v!r}; "
                                            f"expected a number; re-make it with `python -m pipeline.evaluate`")
                    out.setdefault(scenario, {}).setdefault(model, {})[protocol] = {
                        "degenerate": not r.learned(scenario, model, protocol), "values": values}
    return r.meta, out


def current_results(metrics_path: Path, complexity_dir: Path, exact: tuple[str, ...]) -> dict:
    """The current results in baseline form: settings, per figure its value, and exact complexity fields."""
    if not complexity_dir.is_dir():
        raise DataError(f"--complexity {complexity_dir}: not a directory; expected the directory of <model>.json "
                        f"complexity files (made by the profile stage, default {layout.COMPLEXITY_DIR})")
    meta, figures = results(metrics_path)
    out: dict[str, Any] = {"version": BASELINE_VERSION, "settings": {k: meta.get(k) for k in SETTINGS},
                           "cpu": meta.get("cpu"), "metrics": figures, "complexity": {}}
    for model in meta["models"]:
        path = layout.complexity_path(model, complexity_dir)
        if path.is_file():
            out["complexity"][model] = complexity_fields(
                read_json(path, f"re-make it with `{layout.profile_command(model)}`"), exact, str(path))
    return out


def calibrate(baseline: dict, calibration: list[tuple[str, dict]]) -> dict:
    """Record in `baseline`, per figure, the noise: the largest difference to a calibration run of the
    same settings (both learned); and how many runs measured it. No calibration run: noise 0."""
    for by_model in baseline["metrics"].values():
        for by_protocol in by_model.values():
            for entry in by_protocol.values():
                entry.setdefault("noise", {m: 0.0 for m in METRICS})
    for where, figures in calibration:
        for scenario, by_model in baseline["metrics"].items():
            for model, by_protocol in by_model.items():
                for protocol, entry in by_protocol.items():
                    other = ((figures.get(scenario) or {}).get(model) or {}).get(protocol)
                    if other is None:
                        raise DataError(f"{where}: no {scenario} {model} {protocol}; a calibration run has the "
                                        f"baseline's scenarios, models and protocols")
                    noise = entry["noise"]
                    if entry["degenerate"] != other["degenerate"]:
                        entry["unstable"] = True     # learns in one run and not in another
                    for m in METRICS:
                        a, b = entry["values"].get(m), other["values"].get(m)
                        if a is not None and b is not None:
                            noise[m] = max(noise[m], abs(a - b))
    baseline["calibration"] = {"runs": [w for w, _ in calibration],
                               "noise": "per figure, the largest absolute difference between the baseline and a "
                                        "calibration run of the same settings"}
    return baseline


# ---- the baseline --------------------------------------------------------------------------------

def load_baseline(path: Path) -> dict:
    """The committed baseline, checked: a mapping of this version with settings, metrics and complexity,
    every number finite. Anything else is a DataError (exit 2: the check cannot run), never a pass."""
    if not path.is_file():
        raise DataError(f"{path}: missing; create it with `python -m pipeline.check --update` and commit it")

    def no_constants(name: str) -> None:
        raise DataError(f"{path}: holds {name}, which is not a number a baseline can hold; {REMEDY}")

    try:
        baseline = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); {REMEDY}") from None
    if not isinstance(baseline, dict):
        raise DataError(f"{path}: a baseline is a JSON object with version, settings, metrics and complexity, "
                        f"not {type(baseline).__name__}; {REMEDY}")
    if baseline.get("version") != BASELINE_VERSION:
        raise DataError(f"{path}: baseline version {baseline.get('version')!r}, this check reads version "
                        f"{BASELINE_VERSION}; {REMEDY}")
    for key in ("settings", "metrics", "complexity"):
        if not isinstance(baseline.get(key), dict):
            raise DataError(f"{path}: {key!r} is {baseline.get(key)!r}, expected a JSON object; {REMEDY}")
    entries = 0
    for scenario, by_model in baseline["metrics"].items():
        if not isinstance(by_model, dict):
            raise DataError(f"{path}: metrics.{scenario} is {by_model!r}; expected an object of models; {REMEDY}")
        for model, by_protocol in by_model.items():
            if not isinstance(by_protocol, dict):
                raise DataError(f"{path}: metrics.{scenario}.{model} is {by_protocol!r}; expected an object of "
                                f"protocols; {REMEDY}")
            for protocol, entry in by_protocol.items():
                where = f"{path}: metrics.{scenario}.{model}.{protocol}"
                if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
                    raise DataError(f"{where} is {entry!r}; expected an object with degenerate, values and "
                                    f"noise; {REMEDY}")
                _check_numbers(entry["values"], f"{where}.values", allow_none=True)
                _check_numbers(entry.get("noise") or {}, f"{where}.noise", allow_none=False)
                if not isinstance(entry.get("degenerate"), bool):
                    raise DataError(f"{where}.degenerate is {entry.get('degenerate')!r}; expected true or false "
                                    f"(whether the model learned); {REMEDY}")
                entries += 1
    if not entries:   # everything would read as "new" and pass: a check that checks nothing
        raise DataError(f"{path}: holds no metrics (no scenario, model and protocol to compare); {REMEDY}")
    _check_numbers(baseline["complexity"], f"{path}: complexity", allow_none=False)
    return baseline


def _check_numbers(tree: Any, where: str, allow_none: bool) -> None:
    """Every leaf of `tree` is a finite number (or None where a metric is undefined)."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            _check_numbers(v, f"{where}.{k}", allow_none)
        return
    ok = (tree is None and allow_none) or (isinstance(tree, (int, float)) and not isinstance(tree, bool)
                                          and math.isfinite(tree))
    if not ok:
        raise DataError(f"{where} is {tree!r}; expected a finite number{' or null' if allow_none else ''}; "
                        f"{REMEDY}")


def settings_differences(baseline: dict, current: dict) -> list[str]:
    """Settings that differ between the baseline and the current results, in words."""
    b, c = baseline.get("settings") or {}, current.get("settings") or {}
    out = []
    for key in SETTINGS:
        bv, cv = b.get(key), c.get(key)
        if key == "epochs" and isinstance(bv, dict) and isinstance(cv, dict):
            # models added or dropped are reported as models; compare the ones both have
            bv = {m: e for m, e in bv.items() if m in cv}
            cv = {m: e for m, e in cv.items() if m in bv}
        if bv != cv:
            out.append(f"{key}: baseline {json.dumps(bv)}, current {json.dumps(cv)}")
    return out


# ---- the comparison ------------------------------------------------------------------------------

def tolerance(metric: str, noise: float | None, check: CheckParams) -> float:
    """The largest drop of `metric` that is not a regression, in its own units (fractions)."""
    floor = (check.max_accuracy_drop / 100) if METRICS[metric].percent else check.max_metric_drop
    noise = noise or 0.0
    return max(min(_cap(metric, check), max(floor, check.noise_factor * noise)), noise + floor)


def _cap(metric: str, check: CheckParams) -> float:
    """The tolerance cap of `metric`, in its own units."""
    return (check.max_accuracy_tolerance / 100) if METRICS[metric].percent else check.max_metric_tolerance


def loosely_guarded(rows: list[dict], check: CheckParams) -> list[dict]:
    """Compared figures whose tolerance is above the cap: their measured noise alone exceeds it."""
    return [r for r in rows if r["metric"] in METRICS and r["tolerance"] is not None
            and r["tolerance"] > _cap(r["metric"], check) + 1e-12]


def compare(baseline: dict, current: dict, check: CheckParams) -> list[dict]:
    """One row per compared figure: scenario, model, protocol, metric, baseline, current, delta, noise,
    tolerance, status."""
    rows = []
    bm, cm = baseline.get("metrics") or {}, current.get("metrics") or {}
    for scenario in sorted(set(bm) | set(cm)):
        for model in sorted(set(bm.get(scenario, {})) | set(cm.get(scenario, {}))):
            b_model, c_model = bm.get(scenario, {}).get(model, {}), cm.get(scenario, {}).get(model, {})
            for protocol in sorted(set(b_model) | set(c_model)):
                rows += _compare_entry((scenario, model, protocol), b_model.get(protocol), c_model.get(protocol),
                                       check)
    return rows + _compare_complexity(baseline.get("complexity") or {}, current.get("complexity") or {})


def _compare_entry(key: tuple[str, str, str], b: dict | None, c: dict | None, check: CheckParams) -> list[dict]:
    if c is None:
        return [_row(key, "(all metrics)", status="MISSING")]
    if b is None:
        return [_row(key, "(all metrics)", status="new")]
    if b["degenerate"] and c["degenerate"]:
        return [_row(key, "(learning)", status="still degenerate (not compared number by number)")]
    if b["degenerate"]:
        return [_row(key, "(learning)", status="learns now (was degenerate)")]
    if c["degenerate"]:
        return [_row(key, "(learning)", status="STOPPED LEARNING")]
    rows = []
    for metric in METRICS:
        bv, cv = b["values"].get(metric), c["values"].get(metric)
        noise = (b.get("noise") or {}).get(metric)
        tol = tolerance(metric, noise, check)
        if bv is None:
            status = "ok" if cv is None else "new" if math.isfinite(cv) else "NOT FINITE"
        elif cv is None:
            status = "MISSING"
        elif not math.isfinite(cv):   # NaN compares false with everything: it would read as "ok"
            status = "NOT FINITE"
        else:
            drop = (bv - cv) if METRICS[metric].higher_is_better else (cv - bv)   # Brier, ECE: lower is better
            status = "REGRESSION" if drop > tol + 1e-9 else ("better" if drop < 0 else "ok")
        rows.append(_row(key, metric, bv, cv, status, noise, tol))
    return rows


def _compare_complexity(bc: dict, cc: dict) -> list[dict]:
    rows = []
    for model in sorted(set(bc) | set(cc)):
        b, c = bc.get(model), cc.get(model)
        if b is None or c is None:
            rows.append(_row(("-", model, "-"), "(complexity)", status="new" if b is None else "MISSING"))
            continue
        for field in sorted(set(b) | set(c)):
            bv, cv = b.get(field), c.get(field)
            status = "ok" if bv == cv else ("new" if bv is None else "MISSING" if cv is None else "CHANGED")
            rows.append(_row(("-", model, "-"), field, bv, cv, status))
    return rows


def _row(key: tuple[str, str, str], metric: str, bv: Any = None, cv: Any = None, status: str = "ok",
         noise: float | None = None, tol: float | None = None) -> dict:
    scenario, model, protocol = key
    delta = cv - bv if isinstance(bv, (int, float)) and isinstance(cv, (int, float)) else None
    return {"scenario": scenario, "model": model, "protocol": protocol, "metric": metric, "baseline": bv,
            "current": cv, "delta": delta, "noise": noise, "tolerance": tol, "status": status}


def _fmt(metric: str, x: Any, delta: bool = False) -> str:
    if x is None:
        return "-"
    if metric in METRICS and METRICS[metric].percent:
        return f"{100 * x:+.2f} pts" if delta else f"{100 * x:.2f}%"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:+,d}" if delta else f"{x:,d}"
    if not isinstance(x, (int, float)):
        return str(x)
    return f"{x:+.4f}" if delta else f"{x:.4f}"


def _fmt_noise(metric: str, x: Any) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f} pts" if metric in METRICS and METRICS[metric].percent else f"{x:.4f}"


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the comparison rows: each drop beside its measured noise and tolerance."""
    header = ["scenario", "model", "protocol", "metric", "baseline", "current", "delta", "noise", "tolerance",
              "status"]
    body = [[r["scenario"], r["model"], r["protocol"], r["metric"], _fmt(r["metric"], r["baseline"]),
             _fmt(r["metric"], r["current"]), _fmt(r["metric"], r["delta"], delta=True),
             _fmt_noise(r["metric"], r["noise"]), _fmt_noise(r["metric"], r["tolerance"]), r["status"]]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


# ---- the command ---------------------------------------------------------------------------------

def update(args: argparse.Namespace, check: CheckParams, baseline_path: Path, current: dict) -> int:
    """Write the baseline from the current results, its noise from calibration runs or another baseline."""
    calibration = []
    for path in args.calibration or ():
        meta, figures = results(Path(path))
        differences = settings_differences(current, {"settings": {k: meta.get(k) for k in SETTINGS}})
        if differences:
            raise DataError(f"{path}: a calibration run must have the baseline's settings; it differs in "
                            + "; ".join(differences))
        calibration.append((str(path), figures))
    current = calibrate(current, calibration)
    if args.noise_from:
        donor = load_baseline(Path(args.noise_from))
        for scenario, by_model in current["metrics"].items():
            for model, by_protocol in by_model.items():
                for protocol, entry in by_protocol.items():
                    theirs = ((donor["metrics"].get(scenario) or {}).get(model) or {}).get(protocol) or {}
                    entry["noise"] = {m: max((entry.get("noise") or {}).get(m, 0.0), (theirs.get("noise") or {})
                                             .get(m, 0.0)) for m in METRICS}
        current["calibration"] = {**current.get("calibration", {}), "noise_from": str(args.noise_from)}
    atomic_write_json(baseline_path, current)
    n = sum(len(p) for by_model in current["metrics"].values() for p in by_model.values())
    print(f"check: wrote {baseline_path} ({len(current['metrics'])} scenarios, {n} model-protocol results, "
          f"noise from {len(calibration)} calibration run(s){' and ' + args.noise_from if args.noise_from else ''}, "
          f"complexity of {len(current['complexity'])} models)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Compare the current results with the baseline (or write it with --update)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.check", description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="write the baseline from the current results")
    ap.add_argument("--calibration", action="append", metavar="METRICS_JSON",
                    help="with --update: metrics.json of the same settings run again under a perturbation "
                         "(another thread count or CPU); the baseline records the noise it shows (repeatable)")
    ap.add_argument("--noise-from", metavar="BASELINE",
                    help="with --update: also take the noise measured for another baseline of the same settings")
    ap.add_argument("--baseline", help="baseline file (default: params check.baseline)")
    ap.add_argument("--metrics", default=str(layout.METRICS), help=f"current metrics (default: {layout.METRICS})")
    ap.add_argument("--complexity", default=str(layout.COMPLEXITY_DIR),
                    help=f"directory of <model>.json complexity files (default: {layout.COMPLEXITY_DIR})")
    ap.add_argument("--all", action="store_true", help="list unchanged values too")
    ap.add_argument("--params", default=str(PARAMS_FILE), help="params file for check.* (default: params.yaml; "
                                                               "built-in defaults when it does not exist)")
    args = ap.parse_args(argv)
    check = load(args.params).check if Path(args.params).is_file() else CheckParams()
    baseline_path = Path(args.baseline or check.baseline)
    current = current_results(Path(args.metrics), Path(args.complexity), check.exact)
    if args.update:
        return update(args, check, baseline_path, current)

    baseline = load_baseline(baseline_path)
    differences = settings_differences(baseline, current)
    if differences:
        raise DataError(f"{baseline_path} was made with different settings, so the results are not comparable: "
                        + "; ".join(differences) + ". Re-run with the baseline's settings, or accept the new "
                        "settings with `python -m pipeline.check --update` and commit the baseline")
    rows = compare(baseline, current, check)
    if (baseline.get("cpu") or {}) != (current.get("cpu") or {}):
        # another machine, or other code paths: the numbers may move within the measured noise
        print(f"note: the baseline ran with CPU settings {json.dumps(baseline.get('cpu'))}, these results with "
              f"{json.dumps(current.get('cpu'))}; moves within the measured noise are expected")
    print(f"check: {args.metrics} and {args.complexity}/ against {baseline_path}: a drop fails when it exceeds "
          f"max(floor, {check.noise_factor:g} x the noise the baseline measured), at most "
          f"{check.max_accuracy_tolerance:g} points of accuracy / {check.max_metric_tolerance:g} (floors: accuracy "
          f"{check.max_accuracy_drop:g} points, balanced accuracy/macro-F1/AUC {check.max_metric_drop:g}) unless "
          f"the noise plus the floor is larger; exact: {', '.join(check.exact)}; a degenerate model is checked "
          f"for learning only")
    shown = rows if args.all else [r for r in rows if r["status"] != "ok" or r["delta"] not in (0, None)]
    print(format_table(shown) if shown else "(every compared value is unchanged)")
    if len(shown) < len(rows):
        print(f"{len(rows) - len(shown)} unchanged value(s) within tolerance not shown (--all shows them).")
    loose = loosely_guarded(rows, check)
    if loose:
        print(f"note: {len(loose)} figure(s) varied between calibration runs that must agree by more than the "
              f"cap allows, so a drop up to their tolerance (measured noise + floor) cannot be told from noise: "
              + "; ".join(f"{r['scenario']} {r['model']} {r['protocol']} {r['metric']} "
                          f"{_fmt_noise(r['metric'], r['tolerance'])}" for r in loose))
    failing = [r for r in rows if r["status"] in FAILING]
    new = [r for r in rows if r["status"] == "new"]
    if new:
        print(f"{len(new)} new result(s) not in the baseline (not a failure; `--update` adds them).")
    if failing:
        print(f"FAILED: {len(failing)} regression(s): "
              + "; ".join(f"{r['scenario']} {r['model']} {r['protocol']} {r['metric']} {r['status']}"
                          for r in failing))
        return 1
    print("OK: no regressions.")
    return 0


if __name__ == "__main__":
    from pipeline.core.cli import run_stage

    # exit 1 means a regression and nothing else: any failure to run, even a bug, exits 2
    run_stage(main, unexpected_exit=2)
