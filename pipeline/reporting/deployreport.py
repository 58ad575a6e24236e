"""The deploy stage's records in the report: comparison.csv columns, a short table and the figure's points.

Reads reports/deploy/<scenario>/<model>.json (pipeline/deploy.py); imports neither torch nor
ONNX Runtime, so the report stays light.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.core import layout
from pipeline.core.errors import DataError
from pipeline.core.readers import read_json

COLUMNS = ["onnx_parity_max_abs_diff", "onnx_fp32_bytes", "onnx_int8_bytes", "ort_threads",
           "ort_fp32_latency_batch1_ms", "ort_fp32_latency_batch1_p90_ms",
           "ort_int8_latency_batch1_ms", "ort_int8_latency_batch1_p90_ms", "torch_latency_batch1_train_input_ms",
           "ort_fp32_balanced_accuracy_mean", "int8_balanced_accuracy_mean", "int8_drop_points_max", "int8_lossy",
           *(f"ort_{q}_latency_3x224x224_{t}t_ms" for t in (1, 2) for q in ("fp32", "int8"))]


def load(scenarios: list[str], models: list[str], directory: Path = layout.DEPLOY_DIR) -> dict[tuple[str, str], dict]:
    """(scenario, model) -> its deploy record; DataError names a missing file and the command that makes it."""
    out = {}
    for scenario in scenarios:
        for model in models:
            path = layout.deploy_path(scenario, model, directory)
            out[(scenario, model)] = read_json(path, f"make it with `{layout.deploy_command(scenario, model)}` "
                                                     f"(or `dvc repro`)")
            if "exported" not in out[(scenario, model)]:
                raise DataError(f"{path}: no 'exported' key; re-make it with "
                                f"`{layout.deploy_command(scenario, model)}`")
    return out


def columns(record: dict | None, protocol: str) -> dict:
    """comparison.csv's deployment columns for one scenario, model and protocol (None where not exported)."""
    out = dict.fromkeys(COLUMNS)
    if not (record or {}).get("exported"):
        return out
    lat = record["latency"]     # one network, timed once: the same for every protocol
    out.update({"ort_threads": lat["threads"], "ort_fp32_latency_batch1_ms": lat["ort_fp32"]["median_ms"],
                "ort_fp32_latency_batch1_p90_ms": lat["ort_fp32"]["p90_ms"],
                "ort_int8_latency_batch1_ms": lat["ort_int8"]["median_ms"],
                "ort_int8_latency_batch1_p90_ms": lat["ort_int8"]["p90_ms"],
                "torch_latency_batch1_train_input_ms": lat["torch_eager"]["median_ms"]})
    for threads, timed in ((lat.get("paper_input") or {}).get("by_threads") or {}).items():
        for q in ("fp32", "int8"):
            out[f"ort_{q}_latency_3x224x224_{threads}t_ms"] = timed[f"ort_{q}"]["median_ms"]
    summary = record["by_protocol"].get(protocol)
    if summary:                 # a protocol outside deploy.protocols has no exported folds
        out.update({"onnx_parity_max_abs_diff": summary["parity_max_abs_diff"],
                    "onnx_fp32_bytes": summary["fp32_bytes"], "onnx_int8_bytes": summary["int8_bytes"],
                    "ort_fp32_balanced_accuracy_mean": summary["fp32_balanced_accuracy_mean"],
                    "int8_balanced_accuracy_mean": summary["int8_balanced_accuracy_mean"],
                    "int8_drop_points_max": summary["int8_drop_points_max"],
                    "int8_lossy": bool(summary["lossy_folds"])})
    return out


def _paper_input(lat: dict, threads: str) -> str:
    timed = ((lat.get("paper_input") or {}).get("by_threads") or {}).get(threads)
    return "not timed" if not timed else f"{timed['ort_fp32']['median_ms']:.2f} / {timed['ort_int8']['median_ms']:.2f}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}" if n < 1e7 else f"{n / 1e6:.0f}"


def markdown(records: dict[tuple[str, str], dict], complexity: dict[str, dict], labels: dict[str, str]) -> str:
    """The deployment table of reports/README.md, and a line for every model that int8 costs accuracy."""
    header = ["Scenario", "Model", "Input", "MACs @input", "PyTorch eager (ms)", "ORT fp32 (ms, median / p90)",
              "ORT int8 (ms, median / p90)", "ORT fp32 / int8 @3x224x224, 1 thread (ms)",
              "ORT fp32 / int8 @3x224x224, 2 threads (ms)", "ONNX fp32 / int8 (MB)", "Parity (max abs diff)",
              "Balanced acc. fp32 → int8 (first deployed protocol, mean over its deployed folds)"]
    rows, lossy = [], []
    for (scenario, model), r in records.items():
        name = f"{labels.get(model, model)} (`{model}`)"
        if not r["exported"]:
            rows.append([scenario, name, "—", "—", "—", "—", "—", "—", "—", "—", "—", r["reason"]])
            continue
        lat = r["latency"]
        first, summary = next(iter(r["by_protocol"].items()))
        macs = ((complexity.get(model) or {}).get("training_setting") or {}).get("macs")
        rows.append([scenario, name, "x".join(map(str, r["input"])), "n/a" if macs is None else f"{macs / 1e6:.2f} M",
                     f"{lat['torch_eager']['median_ms']:.2f}",
                     f"{lat['ort_fp32']['median_ms']:.2f} / {lat['ort_fp32']['p90_ms']:.2f}",
                     f"{lat['ort_int8']['median_ms']:.2f} / {lat['ort_int8']['p90_ms']:.2f}",
                     *(_paper_input(lat, t) for t in ("1", "2")),
                     f"{_mb(summary['fp32_bytes'])} / {_mb(summary['int8_bytes'])}",
                     f"{max(s['parity_max_abs_diff'] for s in r['by_protocol'].values()):.1e}",
                     f"{100 * summary['fp32_balanced_accuracy_mean']:.1f} → "
                     f"{100 * summary['int8_balanced_accuracy_mean']:.1f} % ({first})"])
        for protocol, s in r["by_protocol"].items():
            if s["lossy_folds"]:
                lossy.append(f"- **int8 costs {labels.get(model, model)} accuracy** ({scenario}, {protocol}): up to "
                             f"{s['int8_drop_points_max']:.1f} points of balanced accuracy on folds {s['lossy_folds']} "
                             f"(more than {r['lossy_points']:g}).")
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(row) + " |" for row in rows])
    return table + ("\n\n" + "\n".join(lossy) if lossy else "")


def section(records: dict[tuple[str, str], dict], complexity: dict[str, dict], labels: dict[str, str]) -> list[str]:
    """reports/README.md's deployment section."""
    exported = [r for r in records.values() if r["exported"]]
    if not exported:
        return []
    r = exported[0]
    return ["## Deployment: ONNX Runtime, fp32 and int8", "",
            f"Each fold's network exported to ONNX ({r['exporter']}; ONNX Runtime {r['versions']['onnxruntime']}) "
            f"and checked against PyTorch on the fold's test images (largest probability difference; the export "
            f"fails above {r['parity_tolerance']:g}); int8: ONNX Runtime static quantization (QDQ), calibrated on "
            f"the fold's training part only. Latency: one image (batch 1) at the training input, on "
            f"{r['latency']['cpu']} with {r['latency']['threads']} thread(s), PyTorch eager and ONNX Runtime "
            f"measured side by side in one process on the first deployed fold; MACs at the same input "
            f"(profile stage). At 3x224x224, the paper's input: the same trained weights rebuilt for three channels "
            f"(the first convolution's kernels spread over them), exported and int8-quantized at that input and "
            f"timed at 1 and 2 threads, median of deploy.paper_input_latency_runs runs (latency only: the network "
            f"was trained at its own input). Per-fold figures: reports/deploy/. A model whose int8 version loses more than "
            f"{r['lossy_points']:g} points of balanced accuracy on a fold is named below the table.", "",
            markdown(records, complexity, labels), ""]

