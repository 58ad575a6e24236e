"""Figure primitives shared by the report's figures (pipeline/reporting/figures.py) and the prepare stage's cohort
figure (pipeline/reporting/cohortfigure.py): the page-width figure, its wrapped title, saving without a timestamp,
a frozen layout, and a table entry (`FigureSpec`) with the atomic drawing of a list of them.

Figures are built on `matplotlib.figure.Figure` directly, not pyplot, so no global state or
display backend is involved. This module imports no statistics or results, so prepare's deps stay
what prepare reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.core.atomic import AtomicOutputs

DPI = 110
PAGE_WIDTH = 10.0           # inches: every figure is at most this wide, so it reads at page width


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, PAGE_WIDTH), height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def title(fig, title: str) -> None:
    """Suptitle wrapped to the figure's width, so long context lines stay inside the image."""
    import textwrap

    width = max(40, int(fig.get_figwidth() * 14))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.splitlines()), fontsize=10)


def wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def save(fig, path: str | Path) -> None:
    # `draw` hands every figure a temporary path and renames them all together at the end
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def freeze(fig) -> None:
    """Lay the figure out once and keep that layout, so what is placed afterwards in pixels stays put."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file under reports/figures/, its caption, the stage that draws it and how."""
    file: str
    caption: str
    stage: str                                  # "prepare" or "report"
    draw: Callable[[Any, Path], None]           # (CohortInputs | ReportInputs, path) -> None
    # whether reports/README.md shows it for these results (None: always); the file is drawn either way,
    # since dvc.yaml declares it
    shown: Callable[[Any], bool] | None = None


def draw_specs(specs: Sequence[FigureSpec], inputs: Any, directory: str | Path, outputs: AtomicOutputs) -> list[Path]:
    """Draw every figure of `specs` from `inputs`, each to a temporary path of `outputs` that will
    replace directory/<file> when the stage commits its outputs; the target paths."""
    targets = []
    for spec in specs:
        target = Path(directory) / spec.file
        spec.draw(inputs, outputs.path(target))
        targets.append(target)
    return targets
