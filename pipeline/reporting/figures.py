"""The report's figures (PNG, matplotlib Agg) and the one table of every figure. Each function draws one
figure from plain data, titled with the data source, protocol(s) and input size; the Pareto front is
here, label placement by rendered boxes in pipeline/reporting/placement.py, the figure primitives (size,
title, saving) in pipeline/reporting/figurekit.py, the prepare stage's cohort figure in pipeline/reporting/cohortfigure.py. `FIGURES` at the
end is the one table of figures: file, caption, the stage that draws it and the drawing function.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.atomic import AtomicOutputs
from pipeline.core.layout import fold_label
from pipeline.data.protocols import marker
from pipeline.evaluation import stats
from pipeline.reporting.cohortfigure import COHORT
from pipeline.reporting.figurekit import PAGE_WIDTH, FigureSpec, draw_specs
from pipeline.reporting.figurekit import figure as _figure
from pipeline.reporting.figurekit import freeze as _freeze
from pipeline.reporting.figurekit import save as _save
from pipeline.reporting.figurekit import title as _title
from pipeline.reporting.figurekit import wrap as _wrap
from pipeline.reporting.placement import clear_of, marker_box, place_labels, text_box
from pipeline.reporting.results import Results

PROPOSED_COLOR = "#d62728"
ABLATION_COLOR = "#8c8c8c"
ABLATION_MARKERS = ("v", "^", "<", ">")
FOLD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
NCOL = 4                    # columns of a figure legend set below the panels
INTERVAL_WORDS = ("95% corrected repeated k-fold t interval over folds (Nadeau-Bengio / Bouckaert-Frank: "
                  "mean ± t(J-1) · sqrt((1/J + n_test/n_train) · s²), J = folds × repeats)")


@dataclass(frozen=True)
class Roles:
    """How each model is drawn: the proposed one stands out, its ablations are muted and grouped."""
    models: tuple[str, ...]
    proposed: str | None = None
    ablations: tuple[str, ...] = ()

    def style(self, model: str) -> dict:
        from matplotlib import colormaps

        if model == self.proposed:
            return {"color": PROPOSED_COLOR, "lw": 2.6, "alpha": 1.0, "zorder": 6, "marker": "*", "size": 260}
        if model in self.ablations:
            i = self.ablations.index(model)
            return {"color": ABLATION_COLOR, "lw": 0.9, "alpha": 0.7, "zorder": 3,
                    "marker": ABLATION_MARKERS[i % len(ABLATION_MARKERS)], "size": 60}
        others = [m for m in self.models if m != self.proposed and m not in self.ablations]
        cmap = colormaps["tab10"]
        palette = [cmap(i) for i in range(10) if i not in (3, 7)]     # red is the proposed model's, grey the ablations'
        return {"color": palette[others.index(model) % len(palette)], "lw": 1.4, "alpha": 0.9, "zorder": 4,
                "marker": "o", "size": 90}


def _chance_line(ax, chance: float, words: str) -> Any:
    """The chance level of balanced accuracy, drawn and labelled where it lies (right end, above the line)."""
    from matplotlib.transforms import blended_transform_factory

    ax.axhline(chance, color="black", linestyle="--", linewidth=1, zorder=1)
    return ax.text(0.99, chance, words, transform=blended_transform_factory(ax.transAxes, ax.transData),
                   ha="right", va="bottom", fontsize=7, color="black",
                   bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both fewer MACs and higher balanced accuracy, by MACs."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


# ---- the figures ------------------------------------------------------------------------------

def _fold_stats(x: "ReportInputs", s: str, m: str, p: str) -> tuple[list[dict], float, float]:
    """per_fold.csv's rows of one scenario, model and protocol, and their mean n_test and n_train."""
    rows = [r for r in x.fold_rows if r["scenario"] == s and r["model"] == m and r["protocol"] == p]
    n_test = float(np.mean([r["n_test"] for r in rows])) if rows else 0.0
    n_train = float(np.mean([r["n_train"] for r in rows])) if rows else 0.0
    return rows, n_test, n_train


def _log_x_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    """A scatter panel against a log-scale x axis: labels, bold title, grid (the headline and the
    deployment figure)."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9, fontweight="bold")
    ax.grid(True, which="major", alpha=0.3)


def accuracy_vs_macs(x: "ReportInputs", path: str | Path) -> Any:
    """Balanced accuracy (mean over folds, corrected t interval) against MACs at 3x224x224, log axis:
    one panel per protocol (columns) and scenario (rows). The proposed model is a large red star with
    its name; the ablations are small grey markers sharing one label; the Pareto front is a step line;
    the chance line (= the balanced accuracy of always guessing the majority class) is labelled where
    it lies; labels are placed where they overlap nothing."""
    title = (f"Balanced accuracy vs computation (MACs at 3x224x224), one panel per scenario and "
             f"protocol; bars: 95% corrected t interval over folds\n{x.context}")
    from matplotlib.lines import Line2D

    roles, scenarios, protocols = x.roles, x.meta["scenarios"], x.meta["protocols"]
    fig = _figure(4.3 * len(protocols) + 2.9, 3.9 * len(scenarios) + 0.9)
    axes = _panel_grid(fig, len(scenarios), len(protocols))
    layout = []
    for i, s in enumerate(scenarios):
        chance = 100 / len(x.results.class_names(s))
        for j, p in enumerate(protocols):
            ax = axes[i][j]
            pts, spans = [], [chance]
            for m in x.meta["models"]:
                rows, n_test, n_train = _fold_stats(x, s, m, p)
                macs = x.complexity[m]["paper_setting"].get("macs")
                vals = [r["balanced_accuracy"] for r in rows if r.get("balanced_accuracy") is not None]
                if macs is None or not vals:
                    continue
                half = stats.corrected_half_width(vals, n_test, n_train, x.repeats)
                st = roles.style(m)
                hollow = (s, m, p) in x.results.degenerate
                ax.errorbar(macs, 100 * np.mean(vals), yerr=0 if half is None else 100 * half, fmt="none",
                            ecolor=st["color"], elinewidth=1.0, capsize=2.5, alpha=st["alpha"], zorder=st["zorder"] - 1)
                ax.scatter(macs, 100 * np.mean(vals), s=st["size"], marker=st["marker"],
                           color="white" if hollow else st["color"], edgecolor=st["color"] if hollow else "black",
                           linewidths=1.6 if hollow else 0.6, alpha=st["alpha"], zorder=st["zorder"])
                failed = sum(bool(r.get("failed")) for r in rows)     # per_fold.csv: stats.failed_folds' rule
                pts.append((m, macs, 100 * float(np.mean(vals)), st, hollow, failed, len(rows)))
                spans += [100 * (np.mean(vals) - (half or 0)), 100 * (np.mean(vals) + (half or 0))]
            front = pareto_front([(mx, y) for m, mx, y, _, hollow, _, _ in pts if not hollow])
            if len(front) > 1:
                ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="black", linewidth=0.8,
                        alpha=0.6, zorder=2)
            line_text = _chance_line(ax, chance, f"chance = always the majority class: {chance:.0f}%")
            _log_x_panel(ax, f"{s}, {p} protocol", "MACs at 3x224x224 (log scale)", "balanced accuracy, %")
            lo, hi = min(spans), max(spans)
            ax.set_ylim(max(lo - 0.15 * (hi - lo) - 6, 0), min(hi + 0.3 * (hi - lo) + 6, 100))
            xs = [q[1] for q in pts]
            if xs:
                ax.set_xlim(min(xs) / 6, max(xs) * 6)
            layout.append((ax, pts, line_text))
    handles = [Line2D([], [], marker="*", color=PROPOSED_COLOR, linestyle="", markersize=12,
                      label=_wrap(x.labels.get(roles.proposed, roles.proposed), 30))] if roles.proposed in x.meta["models"] else []
    handles += [Line2D([], [], marker=roles.style(m)["marker"], color=ABLATION_COLOR, linestyle="", markersize=6,
                       label=_wrap(f"ablation: {x.labels.get(m, m)}", 30)) for m in roles.ablations
                if m in x.meta["models"]]
    handles += [Line2D([], [], marker="o", color=roles.style(m)["color"], linestyle="", markersize=7,
                       label=_wrap(f"{m}: {x.labels.get(m, m)}", 30) if x.labels.get(m, m) != m else m)
                for m in x.meta["models"] if m != roles.proposed and m not in roles.ablations]
    handles += [Line2D([], [], color="black", linewidth=0.8, drawstyle="steps-post", label="Pareto front"),
                Line2D([], [], color="black", linestyle="--", linewidth=1, label="chance"),
                Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="", markersize=7,
                       label="hollow: did not learn"),
                Line2D([], [], color="grey", marker="|", linestyle="", markersize=10,
                       label="bars: 95% corrected t interval")]
    fig.legend(handles=handles, loc="outside lower center", ncol=NCOL, fontsize=7, frameon=False)
    _title(fig, title)
    _freeze(fig)
    for ax, pts, line_text in layout:
        renderer = fig.canvas.get_renderer()
        markers = [marker_box(ax, mx, y, st["size"]) for m, mx, y, st, *_ in pts]
        clear_of(line_text, markers, renderer)
        avoid = [text_box(line_text, renderer)] + markers
        anchors = []
        ablations = [q for q in pts if q[0] in roles.ablations]
        for m, mx, y, st, hollow, failed, n in pts:
            if m in roles.ablations:
                continue
            text = "STANet (proposed)" if m == roles.proposed and "STANet" in x.labels.get(m, "") else m
            if hollow:
                text += ", did not learn"
            elif failed:
                text += f", {failed}/{n} folds failed"
            kw = {"marker_radius": math.sqrt(st["size"]) / 2 + 1, "fontsize": 8 if m == roles.proposed else 7, "color": st["color"] if m == roles.proposed else "black",
                  "fontweight": "bold" if m == roles.proposed else "normal", "zorder": 8}
            anchors.append((mx, y, text, kw))
        anchors.sort(key=lambda a: a[3]["fontweight"] != "bold")     # the proposed model's label is placed first
        if ablations:
            mx = float(np.exp(np.mean([math.log(q[1]) for q in ablations])))
            y = min(q[2] for q in ablations)
            anchors.append((mx, y, f"{len(ablations)} ablations", {"marker_radius": 5, "fontsize": 7, "color": "0.35", "zorder": 8,
                                                                    "fontstyle": "italic"}))
        place_labels(ax, anchors, avoid)
    _save(fig, path)
    return fig


def latency_vs_balanced_accuracy(x: "ReportInputs", path: str | Path) -> Any:
    """As deployed (reports/deploy/): ONNX Runtime batch-1 CPU latency (log scale) against test balanced
    accuracy, fp32 filled and int8 hollow joined by a line, one panel per scenario; marker shape: the
    protocol (pipeline/data/protocols.py); colours as in the other figures; labels placed where they overlap
    nothing, legend below the panels."""
    title = f"Deployed: ONNX Runtime batch-1 latency vs balanced accuracy, fp32 and int8\n{x.context}"
    from matplotlib.lines import Line2D

    points = [{"scenario": s, "model": m, "protocol": protocol,
               "fp32_ms": r["latency"]["ort_fp32"]["median_ms"], "int8_ms": r["latency"]["ort_int8"]["median_ms"],
               "fp32_ba": 100 * b["fp32_balanced_accuracy_mean"], "int8_ba": 100 * b["int8_balanced_accuracy_mean"],
               "lossy": bool(b["lossy_folds"])}
              for (s, m), r in x.deploy.items() if r["exported"] for protocol, b in r["by_protocol"].items()]
    scenarios = list(dict.fromkeys(p["scenario"] for p in points)) or list(x.meta["scenarios"])
    fig = _figure(PAGE_WIDTH, 4.0 * len(scenarios) + 1.4)
    axes = _panel_grid(fig, len(scenarios), 1)[:, 0]
    size = 60
    for ax, s in zip(axes, scenarios, strict=True):
        for p in (q for q in points if q["scenario"] == s):
            st, shape = x.roles.style(p["model"]), marker(p["protocol"])
            ax.plot([p["fp32_ms"], p["int8_ms"]], [p["fp32_ba"], p["int8_ba"]], color=st["color"], linewidth=1,
                    alpha=0.7, zorder=2)
            ax.scatter(p["fp32_ms"], p["fp32_ba"], color=st["color"], edgecolor="black", marker=shape, s=size,
                       zorder=3)
            ax.scatter(p["int8_ms"], p["int8_ba"], color="white", edgecolor=st["color"], linewidths=2,
                       marker=shape, s=size, zorder=3)
        _log_x_panel(ax, f"scenario {s}", "ONNX Runtime CPU latency, batch 1 at the training input, ms (median, log)",
                     "test balanced accuracy, % (mean over folds)")
        ax.margins(x=0.25, y=0.25)
        if not any(q["scenario"] == s for q in points):
            ax.text(0.5, 0.5, "no exported model", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    handles = [Line2D([], [], marker="o", color="grey", markeredgecolor="black", linestyle="", label="fp32"),
               Line2D([], [], marker="o", color="white", markeredgecolor="grey", linestyle="", label="int8 (QDQ)")]
    handles += [Line2D([], [], marker=marker(pr), color="grey", linestyle="", label=f"{pr} protocol")
                for pr in dict.fromkeys(p["protocol"] for p in points)]
    handles += [Line2D([], [], marker="o", color=x.roles.style(m)["color"], linestyle="",
                       label=_wrap(f"{m}: {x.labels.get(m, m)}", 34))
                for m in dict.fromkeys(p["model"] for p in points)]
    fig.legend(handles=handles, loc="outside lower center", ncol=NCOL, fontsize=7, frameon=False)
    _title(fig, title)
    _freeze(fig)
    for ax, s in zip(axes, scenarios, strict=True):
        mine = [q for q in points if q["scenario"] == s]
        avoid = [marker_box(ax, q[f"{kind}_ms"], q[f"{kind}_ba"], size) for q in mine for kind in ("fp32", "int8")]
        place_labels(ax, [(q["fp32_ms"], q["fp32_ba"], f"{q['model']} ({q['protocol']})"
                           + (", int8 LOSSY" if q["lossy"] else ""), {"fontsize": 7, "zorder": 8}) for q in mine],
                     avoid)
    _save(fig, path)
    return fig


def _panel_grid(fig, rows: int, cols: int):
    return fig.subplots(rows, cols, squeeze=False)


def confusion_matrices(x: "ReportInputs", path: str | Path, per_row: int = 3) -> Any:
    """Row-normalised confusion matrices (share of the true class, %), summed over folds: one block
    per scenario and protocol, at most `per_row` models a row so the numbers read at page width.
    The counts are in metrics.json (confusion_matrix) and the failure-analysis tables."""
    title = (f"Confusion matrices, image level, summed over {x.folds_words}, "
             f"normalised by true class\n{x.context}")
    keys = x.results.panels
    models = list(x.meta["models"])
    nrow = math.ceil(len(models) / per_row)
    ncls = max(len(x.results.class_names(s)) for s, _ in keys)
    cell = 2.2 + 0.35 * max(ncls - 2, 0)
    fig = _figure(cell * per_row + 1.2, (cell * nrow + 0.5) * len(keys) + 0.9)
    subs = fig.subfigures(len(keys), 1, squeeze=False)[:, 0]
    for sub, (s, p) in zip(subs, keys, strict=True):
        names = x.results.class_names(s)
        k = len(names)
        axes = sub.subplots(nrow, per_row, squeeze=False)
        for idx, ax in enumerate(axes.ravel()):
            if idx >= len(models):
                ax.set_axis_off()
                continue
            m = models[idx]
            cm = np.array([[x.results.summary(s, m, p)["confusion_matrix"][t][q] for q in names] for t in names], dtype=float)
            share = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
            for r in range(k):
                for c in range(k):
                    ax.text(c, r, f"{share[r, c]:.0f}%", ha="center", va="center", fontsize=10 if k <= 2 else 8,
                            color="white" if share[r, c] > 60 else "black")
            ax.set_xticks(range(k), names, fontsize=7, rotation=30 if k > 2 else 0)
            ax.set_yticks(range(k), names, fontsize=7)
            ax.set_title(_wrap(x.labels.get(m, m), 30), fontsize=8,
                         color=PROPOSED_COLOR if m == x.roles.proposed else "black")
            if idx % per_row == 0:
                ax.set_ylabel("true class", fontsize=8)
            if idx >= len(models) - per_row:
                ax.set_xlabel("predicted class", fontsize=8)
        sub.suptitle(f"{s}, {p} protocol (row %: share of each true class)", fontsize=9, fontweight="bold")
    _title(fig, title)
    _save(fig, path)
    return fig


def per_fold(x: "ReportInputs", path: str | Path) -> Any:
    """Per-fold accuracy (left) and balanced accuracy (right) of every model: one marker and colour per
    fold, the same fold's points joined across models (paired), each fold's own majority-class rate as
    a dashed line in its colour (accuracy) and chance (balanced accuracy); a failed fold is ringed red."""
    title = (f"Per-fold test accuracy and balanced accuracy, folds paired across models (one colour and "
             f"marker per fold)\n{x.context}")
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    keys = x.results.panels
    models = list(x.meta["models"])
    folds = x.run_keys                       # (repeat, fold) in the order of metrics.json's majority rates
    cmap = colormaps["Dark2"]
    color = {k: cmap(i % 8) for i, k in enumerate(folds)}
    fig = _figure(PAGE_WIDTH, 3.6 * len(keys) + 1.0)
    axes = _panel_grid(fig, len(keys), 2)
    for i, (s, p) in enumerate(keys):
        n_classes = len(x.results.class_names(s))
        majority = x.results.majority_rates(s, p)
        rows = {(r["model"], r.get("repeat", 1), r["fold"]): r for r in x.fold_rows
                if r["scenario"] == s and r["protocol"] == p}
        for j, metric in enumerate(("accuracy", "balanced_accuracy")):
            ax = axes[i][j]
            for fi, k in enumerate(folds):
                ys, failed = [], []
                for xi, m in enumerate(models):
                    row = rows.get((m, *k))
                    v = None if row is None else row.get(metric)
                    ys.append(np.nan if v is None else 100 * v)
                    if row is not None and row.get("failed"):   # per_fold.csv: stats.failed_folds' rule
                        failed.append((xi, 100 * v if v is not None else np.nan))
                offset = (fi - (len(folds) - 1) / 2) * 0.12
                xs = np.arange(len(models)) + offset
                ax.plot(xs, ys, color=color[k], linewidth=0.7, alpha=0.6, zorder=2)
                ax.scatter(xs, ys, color=color[k], marker=FOLD_MARKERS[fi % len(FOLD_MARKERS)], s=26, zorder=3)
                for xi, v in failed:
                    ax.scatter(xi + offset, v, s=110, facecolor="none", edgecolor="red", linewidths=1.4, zorder=4)
                if metric == "accuracy" and fi < len(majority) and majority[fi] is not None:
                    ax.axhline(100 * majority[fi], color=color[k], linestyle="--", linewidth=1, zorder=1)
            if metric == "balanced_accuracy":
                ax.axhline(100 / n_classes, color="black", linestyle="--", linewidth=1, zorder=1)
            ax.set_xticks(range(len(models)), models, rotation=35, ha="right", fontsize=7)
            for tick, m in zip(ax.get_xticklabels(), models, strict=True):
                if m == x.roles.proposed:
                    tick.set_color(PROPOSED_COLOR)
                    tick.set_fontweight("bold")
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylabel(f"{metric.replace('_', ' ')}, %", fontsize=8)
            ax.set_title(f"{s}, {p} protocol: {metric.replace('_', ' ')} per fold", fontsize=9)
            ax.grid(True, axis="y", alpha=0.3)
            ax.margins(y=0.12)
    handles = []
    for fi, k in enumerate(folds):
        rates = ", ".join(f"{s} {p} {100 * r:.1f}%" for s, p in keys
                          if fi < len(rs := x.results.majority_rates(s, p)) and (r := rs[fi]) is not None)
        handles.append(Line2D([], [], color=color[k], marker=FOLD_MARKERS[fi % len(FOLD_MARKERS)], linewidth=0.7,
                              label=fold_label(k[1], k[0], x.repeats) + (f"\n  majority-class rate (dashed):\n  {_wrap(rates, 34)}"
                                                   if rates else "")))
    handles += [Line2D([], [], color="black", linestyle="--", label="chance (balanced accuracy)"),
                Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="red", linestyle="", markersize=9,
                       label="failed fold: >=95% one class\nor balanced accuracy\n<= chance + 0.02")]
    fig.legend(handles=handles, loc="outside lower center", ncol=NCOL, fontsize=7, frameon=False)
    _title(fig, title)
    _save(fig, path)
    return fig


def _band_legend(fig, x: "ReportInputs") -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=x.roles.style(m)["color"], linewidth=x.roles.style(m)["lw"],
                      marker=x.roles.style(m)["marker"] if m in x.roles.ablations else None, markersize=5,
                      label=_wrap(x.labels.get(m, m), 30)) for m in x.meta["models"]]
    fig.legend(handles=handles, loc="outside lower center", ncol=NCOL, fontsize=7, frameon=False)


def training_curves(x: "ReportInputs", path: str | Path) -> Any:
    """Validation balanced accuracy and training loss by epoch: the mean over folds as a line, the
    range over folds (min to max) as a band; one row per scenario and protocol, legend outside."""
    title = (f"Training curves: mean over {x.folds_words} (line) and their range "
             f"(band)\n{x.context}")
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    keys = x.results.panels
    fig = _figure(PAGE_WIDTH, 3.0 * len(keys) + 0.9)
    axes = _panel_grid(fig, len(keys), 2)
    for i, (s, p) in enumerate(keys):
        for m in x.meta["models"]:
            st = x.roles.style(m)
            h = pd.concat([run["history"] for run in x.fold_runs(s, m, p)])
            acc = "val_balanced_accuracy" if "val_balanced_accuracy" in h and h["val_balanced_accuracy"].notna().any() \
                else "val_accuracy"
            for ax, col, scale in ((axes[i][0], acc, 100), (axes[i][1], "train_loss", 1)):
                g = h.groupby("epoch")[col].agg(["mean", "min", "max"]).sort_index()
                e = g.index.to_numpy()
                ax.plot(e, scale * g["mean"], color=st["color"], linewidth=st["lw"] * 0.8, alpha=st["alpha"],
                        marker="o", markersize=3, zorder=st["zorder"])
                ax.fill_between(e, scale * g["min"], scale * g["max"], color=st["color"], alpha=0.12, linewidth=0)
        axes[i][0].set_title(f"{s}, {p}: validation balanced accuracy, %", fontsize=9)
        axes[i][1].set_title(f"{s}, {p}: training loss", fontsize=9)
        for ax in axes[i]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    _band_legend(fig, x)
    _title(fig, title)
    _save(fig, path)
    return fig


def tuning_progress(x: "ReportInputs", path: str | Path) -> Any:
    """The best validation score so far against the trial, mean over each model's tuned fold runs, one line
    per model, one panel per scenario and protocol; a run that was not tuned gets a one-line figure saying
    so (not shown in reports/README.md)."""
    keys = x.results.panels
    tuning = x.meta.get("tuning")
    if not tuning:
        fig = _figure(6, 1.2)
        fig.text(0.5, 0.5, "Not tuned: tune.trials is 0 (the recipes as given)", ha="center", va="center")
        _save(fig, path)
        return fig
    objective = tuning["objective"]
    maximize = objective != "val_loss"
    fig = _figure(PAGE_WIDTH, 3.0 * len(keys) + 0.9)
    axes = _panel_grid(fig, len(keys), 1)
    for i, (s, p) in enumerate(keys):
        ax = axes[i][0]
        for m in x.meta["models"]:
            curves = []
            for run in x.fold_runs(s, m, p):
                t = run.get("trials")
                if t is None or t.empty:
                    continue
                v = t["value"].where(t["state"] == "complete").to_numpy(dtype=float)
                v = np.where(np.isnan(v), -np.inf if maximize else np.inf, v)
                curves.append(np.maximum.accumulate(v) if maximize else np.minimum.accumulate(v))
            if not curves:
                continue
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            st = x.roles.style(m)
            ax.plot(np.arange(1, n + 1), 100 * mean if maximize else mean, color=st["color"], linewidth=st["lw"] * 0.8,
                    alpha=st["alpha"], marker="o", markersize=3, zorder=st["zorder"])
        ax.set_title(f"{s}, {p}: best {objective} so far" + (", %" if maximize else ""), fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    _band_legend(fig, x)
    _title(fig, f"Tuning: best validation score so far against the trial, mean over {x.folds_words} "
                f"({tuning['trials']} {tuning['sampler']} trials per model per fold)\n{x.context}")
    _save(fig, path)
    return fig


def _pooled(x: "ReportInputs", s: str, m: str, p: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predicted classes and class probabilities of every fold's test images."""
    from pipeline.core.layout import prob_columns

    ds = [run["predictions"] for run in x.fold_runs(s, m, p)]
    cols = prob_columns(x.results.class_names(s))
    return (np.concatenate([d["label"].to_numpy() for d in ds]).astype(int),
            np.concatenate([d["predicted"].to_numpy() for d in ds]).astype(int),
            np.concatenate([d[cols].to_numpy() for d in ds]).astype(float))


def _square_panels(x: "ReportInputs"):
    """A figure of square panels, one per scenario (rows) and protocol (columns), with room below each
    for a legend of every model; yields (figure, axes, scenario, protocol) panel by panel."""
    scenarios, protocols = x.meta["scenarios"], x.meta["protocols"]
    fig = _figure(4.4 * len(protocols) + 0.4, (4.9 + 0.17 * len(x.meta["models"])) * len(scenarios) + 1.0)
    axes = _panel_grid(fig, len(scenarios), len(protocols))
    for s, p in x.results.panels:
        yield fig, axes[scenarios.index(s)][protocols.index(p)], s, p


def _finish_square(ax) -> None:
    """The diagonal, a square panel kept to the top of its cell, and its legend right below it."""
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.tick_params(labelsize=7)
    ax.set_aspect("equal")
    ax.set_anchor("N")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=6.5, frameon=False, ncol=1)


def roc_curves(x: "ReportInputs", path: str | Path) -> Any:
    """ROC of the test predictions pooled over folds, one panel per scenario (rows) and protocol
    (columns), legends below the panels: pooled AUC and the fold-mean AUC of the tables side by side.
    The dot on each curve is the operating point of the reported accuracy (argmax of the probabilities).
    Two classes: the positive (second) class; more: micro-averaged one-vs-rest."""
    title = (f"ROC curves, test predictions pooled over {x.folds_words}; dot: the argmax "
             f"operating point of the reported accuracy\n{x.context}")
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.preprocessing import label_binarize

    fig = None
    for fig, ax, s, p in _square_panels(x):
        names = x.results.class_names(s)
        k = len(names)
        for m in x.meta["models"]:
            y, pred, prob = _pooled(x, s, m, p)
            if k == 2:
                truth, score, hit = (y == 1).astype(int), prob[:, 1], (pred == 1).astype(int)
            else:
                truth = label_binarize(y, classes=list(range(k))).ravel()
                score = prob.ravel()
                hit = label_binarize(pred, classes=list(range(k))).ravel()
            if truth.min() == truth.max():
                continue
            fpr, tpr, _ = roc_curve(truth, score)
            st = x.roles.style(m)
            mean = x.results.stat(s, m, p, "auc")
            ax.plot(fpr, tpr, color=st["color"], linewidth=st["lw"] * 0.8, alpha=st["alpha"], zorder=st["zorder"],
                    label=f"{_wrap(x.labels.get(m, m), 40)}: pooled {roc_auc_score(truth, score):.3f}, fold-mean "
                          + ("n/a" if mean is None else f"{mean:.3f}"))
            op_fpr, op_tpr = hit[truth == 0].mean(), hit[truth == 1].mean()
            ax.scatter(op_fpr, op_tpr, s=40 if m == x.roles.proposed else 22, color=st["color"], edgecolor="black",
                       linewidths=0.6, zorder=st["zorder"] + 1)
        what = f"positive class: {names[1]}" if k == 2 else "micro-average, one-vs-rest"
        ax.set_title(f"{s}, {p} protocol ({what})", fontsize=9)
        ax.set_xlabel("false positive rate (1 - specificity)", fontsize=8)
        ax.set_ylabel("true positive rate (sensitivity)", fontsize=8)
        _finish_square(ax)
    _title(fig, title)
    _save(fig, path)
    return fig


def reliability(x: "ReportInputs", path: str | Path, bins: int = 10) -> Any:
    """Reliability diagram of the pooled test predictions (scikit-learn's calibration_curve, `bins`
    equal-width bins): observed frequency against mean predicted probability, one panel per scenario
    and protocol. Two classes: the positive class's probability; more: every class's probability against
    whether the image is of that class (classwise), the quantity the reported ECE is of."""
    title = (f"Reliability diagram, test predictions pooled over {x.folds_words}, {bins} "
             f"equal-width bins\n{x.context}")
    from sklearn.calibration import calibration_curve

    fig = None
    for fig, ax, s, p in _square_panels(x):
        names = x.results.class_names(s)
        for m in x.meta["models"]:
            y, pred, prob = _pooled(x, s, m, p)
            # the quantity the ECE is of (metrics.calibration): P(positive), or every class's probability
            truth, score = ((y == 1).astype(int), prob[:, 1]) if len(names) == 2 else \
                (np.eye(len(names))[y].ravel().astype(int), prob.ravel())
            if truth.min() == truth.max():
                continue
            frac, mean_pred = calibration_curve(truth, np.clip(score, 0, 1), n_bins=bins, strategy="uniform")
            st = x.roles.style(m)
            ax.plot(mean_pred, frac, color=st["color"], linewidth=st["lw"] * 0.8, alpha=st["alpha"],
                    marker=st["marker"] if m in x.roles.ablations else "o", markersize=3, zorder=st["zorder"],
                    label=_wrap(x.labels.get(m, m), 44))
        what = f"P({names[1]})" if len(names) == 2 else "probability of each class (classwise)"
        ax.set_title(f"{s}, {p} protocol", fontsize=9)
        ax.set_xlabel(f"mean predicted {what}", fontsize=8)
        ax.set_ylabel("observed frequency", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        _finish_square(ax)
    _title(fig, title)
    _save(fig, path)
    return fig


def failures(x: "ReportInputs", path: str | Path) -> Any:
    """Share of test images misclassified (%), pooled over folds, by diagnosis (left) and by muscle
    (right, both sides): one row per scenario and protocol, one heatmap row per model."""
    title = (f"Where the models fail: test images misclassified (%) by diagnosis and by muscle, "
             f"pooled over folds\n{x.context}")
    keys = x.results.panels
    models = list(x.meta["models"])
    fig = _figure(PAGE_WIDTH, (0.32 * len(models) + 1.3) * len(keys) + 1.3)
    axes = _panel_grid(fig, len(keys), 2)
    image = None
    for i, (s, p) in enumerate(keys):
        for j, by in enumerate(("diagnosis", "muscle")):
            ax = axes[i][j]
            r = x.failure_rates.get((s, p, by))
            if r is None or r.empty:
                ax.set_axis_off()
                continue
            values = list(dict.fromkeys(r[by]))
            grid = np.full((len(models), len(values)), np.nan)
            for _, row in r.iterrows():
                grid[models.index(row.model), values.index(row[by])] = row.error_pct
            image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=100, aspect="auto")
            for a in range(len(models)):
                for b in range(len(values)):
                    if not np.isnan(grid[a, b]):
                        ax.text(b, a, f"{grid[a, b]:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if grid[a, b] > 60 else "black")
            ax.set_xticks(range(len(values)), values, fontsize=7)
            names = [m + ("\n(did not learn)" if (s, m, p) in x.results.degenerate else "") for m in models]
            ax.set_yticks(range(len(models)), names if j == 0 else [""] * len(models), fontsize=7)
            ax.set_title(f"{s}, {p}: error % by {by}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="test images misclassified, %")
    _title(fig, title)
    _save(fig, path)
    return fig


# ---- the figures, in one table ---------------------------------------------------------------------

@dataclass(frozen=True)
class ReportInputs:
    """What the report stage's figures are drawn from (every number read from the pipeline's files)."""
    results: Results                    # reports/metrics.json
    per_fold: Any                       # pandas.DataFrame, reports/per_fold.csv
    complexity: dict[str, dict]         # reports/complexity/<model>.json
    runs: dict                          # (scenario, model, protocol, repeat, fold) -> {"meta", "history", "predictions"}
    labels: dict[str, str]              # model -> display name
    context: str                        # data source, scenarios, protocols and input size, for titles
    roles: Roles = Roles(())            # which model is the proposed one and which are its ablations
    # (scenario, protocol, "diagnosis" | "muscle") -> pipeline/reporting/failures.py's error_rates table
    failure_rates: dict = field(default_factory=dict)
    deploy: dict = field(default_factory=dict)   # (scenario, model) -> reports/deploy/<scenario>/<model>.json

    @property
    def meta(self) -> dict:
        return self.results.meta

    @property
    def repeats(self) -> int:
        """split.repeats of the run (metrics.json)."""
        return self.results.repeats

    @property
    def run_keys(self) -> list[tuple[int, int]]:
        """(repeat, fold) of every fold run, repeat by repeat (the order of metrics.json's per-fold lists)."""
        return self.results.fold_keys

    @property
    def folds_words(self) -> str:
        """'folds [1, 2, 3]', or with several repeats 'folds [1, 2, 3] of 2 repeats'."""
        return f"folds {self.meta['folds']}" + (f" of {self.repeats} repeats" if self.repeats > 1 else "")

    def fold_runs(self, scenario: str, model: str, protocol: str) -> list[dict]:
        """The fold runs of every repeat of one scenario, model and protocol."""
        return [self.runs[(scenario, model, protocol, r, k)] for r, k in self.run_keys]

    @functools.cached_property
    def fold_rows(self) -> list[dict]:
        """reports/per_fold.csv as records, missing values as None."""
        import pandas as pd

        return [{k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in r.items()}
                for r in self.per_fold.to_dict("records")]


# The one table of figures, in the order reports/README.md shows them. The report stage draws its
# figures from here and captions them from here; dvc.yaml declares each file under its stage
# (as a DVC plot for the report stage; tests/test_layout.py checks). To add a figure: a drawing
# function above, an entry here, and its file in dvc.yaml.
FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("accuracy_vs_macs.png", "Balanced accuracy (mean over folds) against MACs at 3x224x224 (log scale), "
               "one panel per scenario and protocol. The proposed model is the red star; its ablations are the small "
               "grey markers under one shared label; the step line is the Pareto front (no model has both fewer MACs "
               "and higher balanced accuracy); the dashed line is chance, which is also what always guessing the "
               "majority class scores in balanced accuracy. Error bars: " + INTERVAL_WORDS + ", which accounts for "
               "the overlap of the folds' training parts; with few folds it is wide. Hollow markers: models that did "
               "not learn; a label counts a model's failed folds (>=95% one class, or balanced accuracy <= chance + "
               "0.02).", "report", accuracy_vs_macs),
    FigureSpec("per_fold_accuracy.png", "Each fold's test accuracy (left) and balanced accuracy (right) for every "
               "model: one colour and marker per fold, the same fold joined across models so folds can be compared "
               "pairwise; in the accuracy panels each fold's own majority-class rate is the dashed line in its colour "
               "(values in the legend); red rings mark failed folds (>=95% of the fold's test images predicted as one "
               "class, or balanced accuracy <= chance + 0.02).", "report", per_fold),
    FigureSpec("confusion_matrices.png", "Confusion matrices summed over folds and normalised by the true class (each "
               "row sums to 100%), one block per scenario and protocol, three models a row; the counts are in "
               "metrics.json (confusion_matrix) and the image numbers in the failure analysis.", "report",
               confusion_matrices),
    FigureSpec("roc_curves.png", "ROC curves of the test predictions pooled over folds, one panel per scenario and "
               "protocol; the dot on each curve is the operating point behind the reported accuracy (the class with "
               "the highest probability; with more than two classes it need not lie on the micro-averaged curve). The legend gives two AUCs: the pooled AUC ranks every fold's test images "
               "together, so it also penalises scores that shift between the folds' models; the fold-mean AUC (the "
               "tables') averages each fold's own AUC. They differ when the folds' models are calibrated differently.",
               "report", roc_curves),
    FigureSpec("reliability.png", "Reliability diagram (calibration): observed frequency of the positive class "
               "against the mean predicted probability in 10 equal-width bins (scikit-learn calibration_curve) of the "
               "test predictions pooled over folds; four-class scenarios pool every class's probability against whether "
               "the image is of that class (classwise). The reported ECE is of the same probabilities. On the "
               "diagonal, a predicted 70% comes true 70% of the time.", "report",
               reliability),
    FigureSpec("failures.png", "Share of test images misclassified (%), pooled over folds, by diagnosis (within a "
               "scenario's myositis class, IBM, PM and DM apart) and by muscle; one heatmap row per model. Tables with "
               "sides and the most-missed patients are under Failure analysis.", "report", failures),
    FigureSpec("latency_vs_balanced_accuracy.png", "As deployed: ONNX Runtime CPU latency of one image at the "
               "training input (log scale) against test balanced accuracy, fp32 (filled) and int8 (hollow) joined "
               "by a line, one panel per scenario; marker shape: protocol; handcrafted is not exported.", "report",
               latency_vs_balanced_accuracy),
    FigureSpec("training_curves.png", "Validation balanced accuracy and training loss by epoch: the line is the mean "
               "over folds, the band the range from the lowest to the highest fold; one row per scenario and "
               "protocol.", "report", training_curves),
    FigureSpec("tuning_progress.png", "Tuning: the best validation score found so far against the trial number, "
               "the mean over each model's fold studies (nested: each fold's trials trained on its training part and "
               "scored on its validation part); a line that flattens early found its recipe early.", "report",
               tuning_progress, shown=lambda r: bool(r.meta.get("tuning"))),
    COHORT,   # drawn by the prepare stage (pipeline/reporting/cohortfigure.py)
)


def figures_of(stage: str) -> list[FigureSpec]:
    """The figures `stage` draws, in table order."""
    return [f for f in FIGURES if f.stage == stage]


def draw(stage: str, inputs: Any, directory: str | Path, outputs: AtomicOutputs) -> list[Path]:
    """Draw every figure of `stage` from `inputs` (figurekit.draw)."""
    return draw_specs(figures_of(stage), inputs, directory, outputs)
