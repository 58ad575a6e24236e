"""Regression check: compare reports/metrics.json and reports/complexity/*.json with a baseline.

    python -m pipeline.check                 # compare; exit 1 on a regression, 0 otherwise
    python -m pipeline.check --update        # write the baseline from the current results
    python -m pipeline.check --baseline PATH --metrics PATH --complexity DIR   # for CI

Tolerances come from params.check: a mean accuracy may not drop by more than max_accuracy_drop
percentage points, balanced accuracy / macro-F1 / AUC not by more than max_metric_drop, and the
complexity fields in check.exact (params, macs, flops) must match exactly. A model or protocol in
the baseline but not in the current results is a regression; a new one is reported, not failed.
Exit codes: 0 no regression, 1 a regression, 2 the check could not run (no or a malformed
baseline, a baseline made with other settings (scenarios, protocols, folds, input size, epochs,
data source) whose numbers would not be comparable, missing results).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.atomic import atomic_write_json
from pipeline.errors import DataError
from pipeline.metrics import SUMMARY_METRICS
from pipeline.params import PARAMS_FILE, CheckParams, load
from pipeline.readers import read_evaluation, read_json

METRICS = {m.key: m for m in SUMMARY_METRICS}
SETTINGS = ("data_source", "scenarios", "protocols", "folds", "input_size", "epochs")
BASELINE_VERSION = 2   # 2: metrics keyed by scenario


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


def current_results(metrics_path: Path, complexity_dir: Path, exact: tuple[str, ...]) -> dict:
    """The current results in baseline form: settings, metric means and exact complexity fields."""
    metrics, _ = read_evaluation(metrics_path, None, "make it with `python -m pipeline.evaluate` (or `dvc repro`)")
    meta = metrics.get("meta")
    if not isinstance(meta, dict) or "models" not in meta:
        raise DataError(f"{metrics_path}: no meta.models; re-make it with `python -m pipeline.evaluate`")
    out: dict[str, Any] = {"version": BASELINE_VERSION, "settings": {k: meta.get(k) for k in SETTINGS},
                           "metrics": {}, "complexity": {}}
    for scenario in meta.get("scenarios") or []:
        block = metrics.get(scenario) or {}
        for model in meta["models"]:
            for protocol, summary in (block.get(model) or {}).items():
                out["metrics"].setdefault(scenario, {}).setdefault(model, {})[protocol] = {
                    m: (summary.get(m) or {}).get("mean") for m in METRICS}
    for model in meta["models"]:
        path = layout.complexity_path(model, complexity_dir)
        if path.is_file():
            out["complexity"][model] = complexity_fields(
                read_json(path, f"re-make it with `{layout.profile_command(model)}`"), exact, str(path))
    return out


REMEDY = "re-create it with `python -m pipeline.check --update` and commit it"


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
    _check_numbers(baseline["metrics"], f"{path}: metrics", allow_none=True)
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


def compare(baseline: dict, current: dict, check: CheckParams) -> list[dict]:
    """One row per compared value: scenario, model, protocol, metric, baseline, current, delta, status."""
    rows = []
    for scenario in sorted(set(baseline.get("metrics") or {}) | set(current.get("metrics") or {})):
        rows += _compare_scenario(scenario, (baseline.get("metrics") or {}).get(scenario) or {},
                                  (current.get("metrics") or {}).get(scenario) or {}, check)
    rows += _compare_complexity(baseline.get("complexity") or {}, current.get("complexity") or {})
    return rows


def _compare_scenario(scenario: str, bm: dict, cm: dict, check: CheckParams) -> list[dict]:
    rows = []
    _row = functools.partial(_row_of, scenario)
    for model in sorted(set(bm) | set(cm)):
        for protocol in sorted(set(bm.get(model, {})) | set(cm.get(model, {}))):
            b, c = bm.get(model, {}).get(protocol), cm.get(model, {}).get(protocol)
            if c is None:
                rows.append(_row(model, protocol, "(all metrics)", None, None, "MISSING"))
                continue
            if b is None:
                rows.append(_row(model, protocol, "(all metrics)", None, None, "new"))
                continue
            for metric in METRICS:
                bv, cv = b.get(metric), c.get(metric)
                if bv is None:
                    status = "new" if cv is not None else "ok"
                elif cv is None:
                    status = "MISSING"
                else:
                    percent = METRICS[metric].percent
                    drop = (bv - cv) * 100 if percent else bv - cv
                    limit = check.max_accuracy_drop if percent else check.max_metric_drop
                    status = "REGRESSION" if drop > limit + 1e-9 else ("better" if cv > bv else "ok")
                rows.append(_row(model, protocol, metric, bv, cv, status))
    return rows


def _compare_complexity(bc: dict, cc: dict) -> list[dict]:
    rows = []
    _row = functools.partial(_row_of, "-")
    for model in sorted(set(bc) | set(cc)):
        b, c = bc.get(model), cc.get(model)
        if b is None:
            rows.append(_row(model, "-", "(complexity)", None, None, "new"))
            continue
        if c is None:
            rows.append(_row(model, "-", "(complexity)", None, None, "MISSING"))
            continue
        for field in sorted(set(b) | set(c)):
            bv, cv = b.get(field), c.get(field)
            status = "ok" if bv == cv else ("new" if bv is None else "MISSING" if cv is None else "CHANGED")
            rows.append(_row(model, "-", field, bv, cv, status))
    return rows


def _row_of(scenario: str, model: str, protocol: str, metric: str, bv: Any, cv: Any, status: str) -> dict:
    delta = cv - bv if isinstance(bv, (int, float)) and isinstance(cv, (int, float)) else None
    return {"scenario": scenario, "model": model, "protocol": protocol, "metric": metric, "baseline": bv,
            "current": cv, "delta": delta, "status": status}


FAILING = {"REGRESSION", "MISSING", "CHANGED"}


def _fmt(metric: str, x: Any, delta: bool = False) -> str:
    if x is None:
        return "-"
    if metric in METRICS and METRICS[metric].percent:
        return f"{100 * x:+.2f} pts" if delta else f"{100 * x:.2f}%"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:+,d}" if delta else f"{x:,d}"
    return f"{x:+.4f}" if delta else f"{x:.4f}"


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of the comparison rows."""
    header = ["scenario", "model", "protocol", "metric", "baseline", "current", "delta", "status"]
    body = [[r["scenario"], r["model"], r["protocol"], r["metric"], _fmt(r["metric"], r["baseline"]), _fmt(r["metric"], r["current"]),
             _fmt(r["metric"], r["delta"], delta=True), r["status"]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def main(argv: list[str] | None = None) -> int:
    """Compare the current results with the baseline (or write it with --update)."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.check", description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="write the baseline from the current results")
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
        atomic_write_json(baseline_path, current)
        n = sum(len(p) for by_model in current["metrics"].values() for p in by_model.values())
        print(f"check: wrote {baseline_path} ({len(current['metrics'])} scenarios, {n} model-protocol results, "
              f"complexity of {len(current['complexity'])} models; settings {json.dumps(current['settings'])})")
        return 0

    baseline = load_baseline(baseline_path)
    differences = settings_differences(baseline, current)
    if differences:
        raise DataError(f"{baseline_path} was made with different settings, so the results are not comparable: "
                        + "; ".join(differences) + ". Re-run with the baseline's settings, or accept the new "
                        "settings with `python -m pipeline.check --update` and commit the baseline")
    rows = compare(baseline, current, check)
    print(f"check: {args.metrics} and {args.complexity}/ against {baseline_path} "
          f"(tolerances: accuracy -{check.max_accuracy_drop:g} points, balanced accuracy/macro-F1/AUC "
          f"-{check.max_metric_drop:g}, exact: {', '.join(check.exact)})")
    shown = rows if args.all else [r for r in rows if r["status"] != "ok" or r["delta"] not in (0, None)]
    print(format_table(shown) if shown else "(every compared value is unchanged)")
    if len(shown) < len(rows):
        print(f"{len(rows) - len(shown)} unchanged value(s) within tolerance not shown (--all shows them).")
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
    from pipeline.cli import run_stage

    # exit 1 means a regression and nothing else: any failure to run, even a bug, exits 2
    run_stage(main, unexpected_exit=2)
