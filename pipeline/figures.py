"""Report figures (PNG, matplotlib Agg). Each function draws one figure from plain data and
writes it atomically, titled with the data source, protocol(s) and input size. `FIGURES` at the
end is the one table of figures: file, caption, the stage that draws it and the drawing function.

Figures are built on `matplotlib.figure.Figure` directly, not pyplot, so no global state or
display backend is involved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.atomic import AtomicOutputs
from pipeline.protocols import colour, marker
from pipeline.results import Results

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _title(fig, title: str) -> None:
    """Suptitle wrapped to the figure's width, so long context lines stay inside the image."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 13))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.splitlines()), fontsize=10)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _save(fig, path: str | Path) -> None:
    # `draw` hands every figure a temporary path and renames them all together at the end
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _model_colors(models: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _panel_grid(fig, rows: int, cols: int):
    return fig.subplots(rows, cols, squeeze=False)


def _log_x_panel(ax, scenario: str, xlabel: str, ylabel: str) -> None:
    """One scenario's panel of a scatter against a log-scale x axis: labels, title, grid, margins."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"scenario {scenario}", fontsize=10, fontweight="bold")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.12)


def accuracy_vs_macs(points: list[dict], path: str | Path, title: str,
                     majority: dict[tuple[str, str], float] | None = None) -> None:
    """Accuracy (mean ± sd over folds) against MACs at 3x224x224 on a log axis; marker area by params.
    One panel per scenario.

    Each point: scenario, model, label, protocol, macs, params, accuracy (%), accuracy_sd (%),
    degenerate (drawn hollow and labelled "did not learn"). majority[(scenario, protocol)]: the
    majority-class rate (%), drawn as a dashed line per protocol.
    """
    scenarios = list(dict.fromkeys(p["scenario"] for p in points))
    fig = _figure(8.0 * len(scenarios) + 4.0, 6.0)
    axes = _panel_grid(fig, 1, len(scenarios))[0]
    models = list(dict.fromkeys(p["model"] for p in points))
    colors = _model_colors(models)
    max_params = max((p["params"] for p in points), default=1) or 1
    for ax, scenario in zip(axes, scenarios, strict=True):
        mine = [p for p in points if p["scenario"] == scenario]
        # a model's highest point is labelled above, its others below: its protocols often sit close
        top: dict[str, float] = {}
        for p in mine:
            if p["accuracy"] is not None and p["accuracy"] > top.get(p["model"], -1.0):
                top[p["model"]] = p["accuracy"]
        for p in mine:
            if p["macs"] is None or p["accuracy"] is None:
                continue
            size = 40 + 400 * math.sqrt(p["params"] / max_params)   # area grows with sqrt(params): all stay visible
            ax.errorbar(p["macs"], p["accuracy"], yerr=p["accuracy_sd"] or 0, fmt="none", ecolor=colors[p["model"]],
                        elinewidth=1.2, capsize=3, alpha=0.8, zorder=2)
            hollow = p.get("degenerate")
            ax.scatter(p["macs"], p["accuracy"], s=size, color="white" if hollow else colors[p["model"]],
                       edgecolor=colors[p["model"]] if hollow else "black", linewidths=2 if hollow else 1,
                       marker=marker(p["protocol"]), alpha=0.85, zorder=3)
            above = p["accuracy"] == top[p["model"]]
            # the short key on the point (long display names collide); the legend maps keys to names
            ax.annotate(f"{p['model']} ({p['protocol']}{', did not learn' if hollow else ''})",
                        (p["macs"], p["accuracy"]), textcoords="offset points",
                        xytext=(math.sqrt(size) / 2 + 3, 4 if above else -12), fontsize=8)
        for (sc, protocol), rate in (majority or {}).items():
            if sc == scenario and rate is not None:
                ax.axhline(rate, color=colour(protocol), linestyle="--", linewidth=1, zorder=1,
                           label=f"majority-class rate, {protocol} folds ({rate:.1f}%)")
        _log_x_panel(ax, scenario, "MACs at 3x224x224 (log scale)", "accuracy, % (mean ± sd over folds)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=marker(pr), color="grey", linestyle="", markersize=8,
                      label=f"{pr} protocol") for pr in dict.fromkeys(p["protocol"] for p in points)]
    handles.append(Line2D([], [], linestyle="", label="marker area ~ sqrt(params); hollow: did not learn"))
    handles += [Line2D([], [], color=colour(pr), linestyle="--",
                       label=f"majority-class rate, {pr} folds") for pr in dict.fromkeys(pr for _, pr in majority or {})]
    handles += [Line2D([], [], marker="o", color=colors[m], linestyle="", markersize=7,
                       label=f"{m}: {next(p['label'] for p in points if p['model'] == m)}") for m in models]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0)
    _title(fig, title)
    _save(fig, path)


def latency_vs_balanced_accuracy(points: list[dict], path: str | Path, title: str) -> None:
    """ONNX Runtime batch-1 latency (log scale) against test balanced accuracy, fp32 (filled) and int8
    (hollow) joined by a line, one panel per scenario; marker shape: protocol. Each point: scenario,
    model, label, protocol, fp32_ms, int8_ms, fp32_ba, int8_ba (%), lossy (int8 loses > the threshold)."""
    scenarios = list(dict.fromkeys(p["scenario"] for p in points)) or ["none"]
    fig = _figure(7.0 * len(scenarios) + 4.0, 5.5)
    axes = _panel_grid(fig, 1, len(scenarios))[0]
    colors = _model_colors(list(dict.fromkeys(p["model"] for p in points)))
    for ax, scenario in zip(axes, scenarios, strict=True):
        for p in (q for q in points if q["scenario"] == scenario):
            c, shape = colors[p["model"]], marker(p["protocol"])
            ax.plot([p["fp32_ms"], p["int8_ms"]], [p["fp32_ba"], p["int8_ba"]], color=c, linewidth=1, alpha=0.7)
            ax.scatter(p["fp32_ms"], p["fp32_ba"], color=c, edgecolor="black", marker=shape, s=60, zorder=3)
            ax.scatter(p["int8_ms"], p["int8_ba"], color="white", edgecolor=c, linewidths=2, marker=shape, s=60,
                       zorder=3)
            ax.annotate(f"{p['model']} ({p['protocol']}){' int8 LOSSY' if p['lossy'] else ''}",
                        (p["fp32_ms"], p["fp32_ba"]), textcoords="offset points", xytext=(6, 4), fontsize=7)
        _log_x_panel(ax, scenario, "ONNX Runtime CPU latency, batch 1 at the training input, ms (median, log scale)",
                     "test balanced accuracy, % (mean over folds)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="", label="fp32"),
               Line2D([], [], marker="o", color="white", markeredgecolor="grey", linestyle="", label="int8 (QDQ)")]
    handles += [Line2D([], [], marker=marker(pr), color="grey", linestyle="",
                       label=f"{pr} protocol") for pr in dict.fromkeys(p["protocol"] for p in points)]
    handles += [Line2D([], [], marker="o", color=colors[m], linestyle="",
                       label=f"{m}: {next(p['label'] for p in points if p['model'] == m)}") for m in colors]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0)
    _title(fig, title)
    _save(fig, path)


def confusion_matrices(matrices: dict[tuple[str, str], dict[str, np.ndarray]], class_names: dict[str, Sequence[str]],
                       labels: dict[str, str], path: str | Path, title: str) -> None:
    """One panel per model (columns) and scenario and protocol (rows): counts summed over folds,
    colour = share of the true class. matrices[(scenario, protocol)][model]; class_names[scenario]."""
    keys = list(matrices)
    models = list(dict.fromkeys(m for k in keys for m in matrices[k]))
    n_max = max(len(class_names[s]) for s, _ in keys)
    cell = 0.55 * max(n_max, 2) + 1.5
    fig = _figure(cell * len(models) + 0.8, cell * len(keys) + 0.9)
    axes = _panel_grid(fig, len(keys), len(models))
    for i, (scenario, protocol) in enumerate(keys):
        names = list(class_names[scenario])
        n_classes = len(names)
        for j, model in enumerate(models):
            ax = axes[i][j]
            cm = matrices[(scenario, protocol)].get(model)
            if cm is None:
                ax.set_axis_off()
                continue
            cm = np.asarray(cm, dtype=float)
            share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for r in range(n_classes):
                for c in range(n_classes):
                    ax.text(c, r, f"{int(cm[r, c])}\n{100 * share[r, c]:.0f}%", ha="center", va="center",
                            fontsize=8 if n_classes <= 2 else 6, color="white" if share[r, c] > 0.6 else "black")
            ax.set_xticks(range(n_classes), names, fontsize=7, rotation=30)
            ax.set_yticks(range(n_classes), names, fontsize=7)
            ax.set_title(f"{_wrap(labels.get(model, model), 24)}\n{scenario}, {protocol} protocol", fontsize=7)
            if j == 0:
                ax.set_ylabel("true class", fontsize=8)
            ax.set_xlabel("predicted class", fontsize=7)
    _title(fig, title)
    _save(fig, path)


def _per_fold_panel(ax, per_fold: list[dict], models: Sequence[str], protocols: Sequence[str],
                    labels: dict[str, str], degenerate: set[tuple[str, str]]) -> None:
    width = 0.7 / max(len(protocols), 1)
    for protocol in protocols:
        rates = [100 * r["majority_rate"] for r in per_fold
                 if r["protocol"] == protocol and r.get("majority_rate") is not None]
        if rates:
            ax.axhline(float(np.mean(rates)), color=colour(protocol), linestyle="--",
                       linewidth=1, zorder=1, label=f"majority-class rate, {protocol} folds ({np.mean(rates):.1f}%)")
    for x, model in enumerate(models):
        means, highest = {}, -math.inf
        for k, protocol in enumerate(protocols):
            ys = [100 * r["accuracy"] for r in per_fold
                  if r["model"] == model and r["protocol"] == protocol and r["accuracy"] is not None]
            if not ys:
                continue
            xpos = x - 0.35 + width * (k + 0.5)
            jitter = np.linspace(-width * 0.2, width * 0.2, len(ys)) if len(ys) > 1 else [0.0]
            ax.scatter(xpos + np.asarray(jitter), ys, color=colour(protocol),
                       marker=marker(protocol), s=28, alpha=0.8, zorder=3,
                       label=f"{protocol} protocol (one point per fold)" if x == 0 else None)
            means[protocol] = (xpos, float(np.mean(ys)))
            highest = max(highest, max(ys))
            ax.hlines(means[protocol][1], xpos - width * 0.35, xpos + width * 0.35,
                      color=colour(protocol), linewidth=2.5, zorder=4)
        if "patient" in means:
            other = next((p for p in ("image", "ucar") if p in means), None)
            if other:
                (x0, y0), (x1, y1) = means["patient"], means[other]
                ax.plot([x0, x1], [y0, y1], color="black", linewidth=1, zorder=2)
                ax.annotate(f"{other} - patient: {y1 - y0:+.1f} pts", ((x0 + x1) / 2, highest),
                            textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8)
    names = [labels.get(m, m) + ("\n(did not learn: " + ", ".join(p for p in protocols if (m, p) in degenerate) + ")"
                                 if any((m, p) in degenerate for p in protocols) else "") for m in models]
    ax.set_xticks(range(len(models)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy, %")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.margins(y=0.15)


def per_fold_accuracy(per_fold: list[dict], scenarios: Sequence[str], models: Sequence[str],
                      protocols: Sequence[str], labels: dict[str, str], path: str | Path, title: str,
                      degenerate: set[tuple[str, str, str]] = frozenset()) -> None:
    """Per-fold accuracy of each model, protocols side by side, one panel per scenario; the line joins
    the protocol means and its label gives the gap (image-level minus patient-grouped), the leakage
    made visible."""
    fig = _figure(max(8.0, 1.6 * len(models) + 2), 5.0 * len(scenarios) + 0.4)
    axes = _panel_grid(fig, len(scenarios), 1)
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        _per_fold_panel(ax, [r for r in per_fold if r["scenario"] == scenario], models, protocols, labels,
                        {(m, p) for s, m, p in degenerate if s == scenario})
        ax.set_title(f"scenario {scenario}", fontsize=10, fontweight="bold")
    _title(fig, title)
    _save(fig, path)


def training_curves(curves: dict[tuple[str, str], dict[str, dict]], labels: dict[str, str], path: str | Path,
                    title: str) -> None:
    """Validation accuracy and training loss by epoch, mean over folds: one row per scenario and protocol.

    curves[(scenario, protocol)][model] = {"epoch": [...], "val_accuracy": [...], "train_loss": [...]}.
    """
    from matplotlib.ticker import MaxNLocator

    keys = list(curves)
    models = list(dict.fromkeys(m for k in keys for m in curves[k]))
    colors = _model_colors(models)
    fig = _figure(11, 3.4 * len(keys) + 0.6)
    axes = _panel_grid(fig, len(keys), 2)
    for i, (scenario, protocol) in enumerate(keys):
        for model, c in curves[(scenario, protocol)].items():
            # markers: a one-epoch run is a single point, which a line alone would not show
            axes[i][0].plot(c["epoch"], [100 * v for v in c["val_accuracy"]], color=colors[model], marker="o",
                            markersize=4, label=labels.get(model, model))
            axes[i][1].plot(c["epoch"], c["train_loss"], color=colors[model], marker="o", markersize=4,
                            label=labels.get(model, model))
        axes[i][0].set_title(f"{scenario}: validation accuracy, {protocol} protocol (mean over folds)", fontsize=9)
        axes[i][1].set_title(f"{scenario}: training loss, {protocol} protocol (mean over folds)", fontsize=9)
        axes[i][0].set_ylabel("%")
        for ax in axes[i]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.grid(True, alpha=0.3)
    axes[0][1].legend(fontsize=8, loc="upper right")
    _title(fig, title)
    _save(fig, path)


def roc_curves(pooled: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]],
               class_names: dict[str, Sequence[str]], labels: dict[str, str], path: str | Path, title: str) -> None:
    """ROC curves of each model's pooled test predictions (all folds): one row of panels per scenario,
    one column per protocol. Two classes: the positive (second) class. More: micro-averaged one-vs-rest.
    """
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.preprocessing import label_binarize

    keys = list(pooled)
    scenarios = list(dict.fromkeys(s for s, _ in keys))
    protocols = list(dict.fromkeys(p for _, p in keys))
    models = list(dict.fromkeys(m for k in keys for m in pooled[k]))
    colors = _model_colors(models)
    fig = _figure(5.0 * len(protocols) + 0.5, 5.0 * len(scenarios) + 0.4)
    axes = _panel_grid(fig, len(scenarios), len(protocols))
    for (scenario, protocol), by_model in pooled.items():
        ax = axes[scenarios.index(scenario)][protocols.index(protocol)]
        names = class_names[scenario]
        n_classes = len(names)
        for model, (y, prob) in by_model.items():
            if n_classes == 2:
                truth, score = (y == 1).astype(int), prob[:, 1]
            else:
                truth = label_binarize(y, classes=list(range(n_classes))).ravel()
                score = prob.ravel()
            if truth.min() == truth.max():
                continue  # one class only: no ROC curve
            fpr, tpr, _ = roc_curve(truth, score)
            auc = roc_auc_score(truth, score)
            ax.plot(fpr, tpr, color=colors[model], label=f"{labels.get(model, model)} (pooled AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        what = f"positive class: {names[1]}" if n_classes == 2 else "micro-average, one-vs-rest"
        ax.set_title(f"{scenario}, {protocol} protocol, pooled test folds\n({what})", fontsize=9)
        ax.set_xlabel("false positive rate (1 - specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="lower right", framealpha=0.85)
    _title(fig, title)
    _save(fig, path)


def cohort_examples(images: np.ndarray, manifest: Any, source_label: str, path: str | Path) -> None:
    """Example images: rows = diagnoses present (N, IBM, PM, DM), columns = muscles, as the models see them."""
    import pandas as pd

    from pipeline.scenarios import DIAGNOSES, MUSCLES

    diagnoses = [d for d in DIAGNOSES if (manifest.diagnosis == d).any()]
    muscles = [m for m in MUSCLES if (manifest.muscle == m).any()]
    columns = muscles or [""] * min(7, int(manifest.diagnosis.value_counts().max()))
    size = images.shape[-1]
    fig = _figure(1.6 * len(columns) + 0.6, 1.6 * len(diagnoses) + 0.8)
    axes = fig.subplots(len(diagnoses), len(columns), squeeze=False)
    for r, diagnosis in enumerate(diagnoses):
        of_diagnosis = manifest[manifest.diagnosis == diagnosis]
        # one patient per row where possible (the first listed), right side first
        first = of_diagnosis.patient_id.iloc[0]
        ordered = pd.concat([of_diagnosis[of_diagnosis.patient_id == first], of_diagnosis])
        ordered = ordered.sort_values("side", key=lambda s: s != "R", kind="stable")
        for c, muscle in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            pick = ordered[ordered.muscle == muscle] if muscle else of_diagnosis.iloc[c:c + 1]
            if pick.empty:
                ax.set_axis_off()
                continue
            row = pick.iloc[0]
            image = images[row.image_id]
            shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            ax.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{row.side}{muscle} · {row.patient_id}" if muscle else str(row.patient_id), fontsize=7)
            if c == 0:
                ax.set_ylabel(diagnosis, fontsize=10)
    _title(fig, f"Cohort examples: {source_label}, {len(manifest)} images of {manifest.patient_id.nunique()} "
                f"patients, shown at {size}x{size} px as the models see them")
    _save(fig, path)


# ---- the figures, in one table ---------------------------------------------------------------------

@dataclass(frozen=True)
class CohortInputs:
    """What the prepare stage's figures are drawn from."""
    images: np.ndarray
    manifest: Any            # pandas.DataFrame, data/processed/manifest.csv
    source_label: str


@dataclass(frozen=True)
class ReportInputs:
    """What the report stage's figures are drawn from (every number read from the pipeline's files)."""
    results: Results                    # reports/metrics.json
    per_fold: Any                       # pandas.DataFrame, reports/per_fold.csv
    complexity: dict[str, dict]         # reports/complexity/<model>.json
    runs: dict                          # (scenario, model, protocol, fold) -> {"meta", "history", "predictions"}
    labels: dict[str, str]              # model -> display name
    context: str                        # data source, scenarios, protocols and input size, for titles
    deploy: dict = field(default_factory=dict)   # (scenario, model) -> reports/deploy/<scenario>/<model>.json

    @property
    def meta(self) -> dict:
        return self.results.meta


def _draw_cohort(x: CohortInputs, path: Path) -> None:
    cohort_examples(x.images, x.manifest, x.source_label, path)


def _draw_accuracy_vs_macs(x: ReportInputs, path: Path) -> None:
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    degenerate = x.results.degenerate
    points = [{"scenario": s, "model": m, "label": x.labels[m], "protocol": p,
               "macs": x.complexity[m]["paper_setting"].get("macs"), "params": x.complexity[m]["params"],
               "accuracy": pct(x.results.stat(s, m, p, "accuracy")),
               "accuracy_sd": pct(x.results.stat(s, m, p, "accuracy", "sd")), "degenerate": (s, m, p) in degenerate}
              for s, p in x.results.panels for m in x.meta["models"]]
    majority = {(s, p): pct(float(np.mean(v))) if (v := [r for r in x.results.majority_rates(s, p) if r is not None])
                else None for s, p in x.results.panels}
    accuracy_vs_macs(points, path, f"Accuracy vs computation (MACs at 3x224x224), one panel per scenario; dashed: "
                                   f"majority-class rate\n{x.context}", majority)


def _draw_confusion_matrices(x: ReportInputs, path: Path) -> None:
    matrices = {}
    for s, p in x.results.panels:
        names = x.results.class_names(s)
        matrices[(s, p)] = {m: np.array([[x.results.summary(s, m, p)["confusion_matrix"][t][q] for q in names]
                                         for t in names]) for m in x.meta["models"]}
    confusion_matrices(matrices, {s: x.results.class_names(s) for s in x.meta["scenarios"]}, x.labels, path,
                       f"Confusion matrices, image level, summed over folds {x.meta['folds']} "
                       f"(rows: scenario and protocol; colour: share of the true class)\n{x.context}")


def _draw_per_fold_accuracy(x: ReportInputs, path: Path) -> None:
    import pandas as pd

    records = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in x.per_fold.to_dict("records")]
    per_fold_accuracy(records, x.meta["scenarios"], x.meta["models"], x.meta["protocols"], x.labels, path,
                      f"Per-fold test accuracy by protocol, one panel per scenario (bar: mean; label: gap between "
                      f"protocols; dashed: majority-class rate)\n{x.context}", x.results.degenerate)


def _draw_training_curves(x: ReportInputs, path: Path) -> None:
    import pandas as pd

    curves: dict[tuple[str, str], dict[str, dict]] = {}
    for s, p in x.results.panels:
        for m in x.meta["models"]:
            h = pd.concat([x.runs[(s, m, p, k)]["history"] for k in x.meta["folds"]])
            mean = h.groupby("epoch")[["val_accuracy", "train_loss"]].mean().sort_index()
            curves.setdefault((s, p), {})[m] = {"epoch": mean.index.tolist(),
                                                "val_accuracy": mean["val_accuracy"].tolist(),
                                                "train_loss": mean["train_loss"].tolist()}
    training_curves(curves, x.labels, path, f"Training curves, mean over folds {x.meta['folds']}\n{x.context}")


def _draw_roc_curves(x: ReportInputs, path: Path) -> None:
    from pipeline.layout import prob_columns

    folds = x.meta["folds"]
    pooled = {}
    for s, p in x.results.panels:
        cols = prob_columns(x.results.class_names(s))
        preds = {m: [x.runs[(s, m, p, k)]["predictions"] for k in folds] for m in x.meta["models"]}
        pooled[(s, p)] = {m: (np.concatenate([d["label"].to_numpy() for d in ds]),
                              np.concatenate([d[cols].to_numpy() for d in ds])) for m, ds in preds.items()}
    roc_curves(pooled, {s: x.results.class_names(s) for s in x.meta["scenarios"]}, x.labels, path,
               f"ROC curves, test predictions pooled over folds {folds}\n{x.context}")


def _draw_latency_vs_balanced_accuracy(x: ReportInputs, path: Path) -> None:
    points = [{"scenario": s, "model": m, "label": x.labels.get(m, m), "protocol": protocol,
               "fp32_ms": r["latency"]["ort_fp32"]["median_ms"], "int8_ms": r["latency"]["ort_int8"]["median_ms"],
               "fp32_ba": 100 * b["fp32_balanced_accuracy_mean"], "int8_ba": 100 * b["int8_balanced_accuracy_mean"],
               "lossy": bool(b["lossy_folds"])}
              for (s, m), r in x.deploy.items() if r["exported"] for protocol, b in r["by_protocol"].items()]
    latency_vs_balanced_accuracy(points, path,
                                 f"Deployed: ONNX Runtime batch-1 latency vs balanced accuracy, fp32 and int8\n{x.context}")


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file under reports/figures/, its caption, the stage that draws it and how."""
    file: str
    caption: str
    stage: str                                  # "prepare" or "report"
    draw: Callable[[Any, Path], None]           # (CohortInputs | ReportInputs, path) -> None


# The one table of figures, in the order reports/README.md shows them. The report stage draws its
# figures from here and captions them from here; dvc.yaml declares each file under its stage
# (as a DVC plot for the report stage; tests/test_layout.py checks). To add a figure: a drawing
# function above, an entry here, and its file in dvc.yaml.
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("accuracy_vs_macs.png", "Accuracy against MACs at 3x224x224 (log scale), one panel per scenario; "
               "error bars: sd over folds; marker area grows with parameter count; marker shape: protocol; hollow "
               "markers: models that did not learn; dashed lines: the majority-class rate of each protocol.",
               "report", _draw_accuracy_vs_macs),
    FigureSpec("per_fold_accuracy.png", "Per-fold test accuracy, protocols side by side, one panel per scenario; "
               "the labelled line is the gap between the image-level and patient-grouped means; dashed lines: the "
               "majority-class rate; models that did not learn are named so under their label.", "report",
               _draw_per_fold_accuracy),
    FigureSpec("confusion_matrices.png", "Confusion matrices summed over folds, one panel per model (columns) and "
               "scenario and protocol (rows), with the scenario's class names.", "report", _draw_confusion_matrices),
    FigureSpec("roc_curves.png", "ROC curves of the test predictions pooled over folds, one panel per scenario "
               "(rows) and protocol (columns).", "report", _draw_roc_curves),
    FigureSpec("training_curves.png", "Validation accuracy and training loss by epoch, mean over folds, one row per "
               "scenario and protocol; a marker per epoch.", "report", _draw_training_curves),
    FigureSpec("latency_vs_balanced_accuracy.png", "As deployed: ONNX Runtime CPU latency of one image at the "
               "training input (log scale) against test balanced accuracy, fp32 (filled) and int8 (hollow) joined "
               "by a line, one panel per scenario; marker shape: protocol; handcrafted is not exported.", "report",
               _draw_latency_vs_balanced_accuracy),
    FigureSpec("cohort_examples.png", "One example image per diagnosis (rows) and muscle (columns), at the input "
               "size the models see.", "prepare", _draw_cohort),
)


def figures_of(stage: str) -> list[FigureSpec]:
    """The figures `stage` draws, in table order."""
    return [f for f in FIGURES if f.stage == stage]


def draw(stage: str, inputs: Any, directory: str | Path, outputs: AtomicOutputs) -> list[Path]:
    """Draw every figure of `stage` from `inputs`, each to a temporary path of `outputs` that will
    replace directory/<file> when the stage commits its outputs; the target paths."""
    targets = []
    for spec in figures_of(stage):
        target = Path(directory) / spec.file
        spec.draw(inputs, outputs.path(target))
        targets.append(target)
    return targets
