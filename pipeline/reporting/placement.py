"""Label placement by rendered boxes: where a figure's labels go so that none covers another label, a
marker or a line's words, all in display space (the figure's layout frozen first). The figures of
pipeline/reporting/figures.py use it; tests/test_figures.py checks the result with `text_box`.
"""
from __future__ import annotations

import math


def text_box(text, renderer):
    """The rendered box of a text's letters alone (an annotation's own extent includes its leader line)."""
    from matplotlib.text import Annotation, Text

    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def place_labels(ax, anchors: list[tuple[float, float, str, dict]], avoid: list) -> list:
    """Annotate each (x, y, text, text kwargs) near its point, trying offsets in widening rings until
    the text's rendered box overlaps no other label and nothing in `avoid` (display-space boxes) and
    lies inside the axes; a leader line joins a label set apart from its point. The figure's layout
    must be frozen first (pipeline.reporting.figurekit.freeze). Returns the annotations."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = list(avoid)
    placed = []
    for x, y, text, kw in anchors:
        shrink = kw.pop("marker_radius", 4)      # points: the leader line stops at the marker's edge
        chosen = None
        for radius in (shrink + r for r in (3, 10, 20, 32, 46, 62, 80, 100)):
            for angle in (20, -20, 160, -160, 60, -60, 120, -120, 90, -90, 0, 180):
                dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
                ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                                  ha="left" if dx > 1 else "right" if dx < -1 else "center",
                                  va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                                  arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.4", "shrinkA": 1,
                                              "shrinkB": shrink}, **kw)
                box = text_box(ann, renderer).expanded(1.04, 1.1)
                fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1)
                if fits and not any(overlaps(box, t) for t in taken):
                    chosen = (ann, box)
                    break
                ann.remove()
            if chosen:
                break
        if chosen is None:   # nowhere free: the last resort is the widest ring, and the test will say so
            ann = ax.annotate(text, (x, y), xytext=(0, 106), textcoords="offset points", ha="center", **kw)
            chosen = (ann, text_box(ann, renderer))
        taken.append(chosen[1])
        placed.append(chosen[0])
    return placed


def marker_box(ax, x: float, y: float, size_pt2: float):
    """The display-space box of a scatter marker of area `size_pt2` (points^2) at data (x, y)."""
    from matplotlib.transforms import Bbox

    px, py = ax.transData.transform((x, y))
    half = math.sqrt(size_pt2) / 2 * ax.figure.dpi / 72
    return Bbox([[px - half, py - half], [px + half, py + half]])


def clear_of(line_text, boxes: list, renderer) -> None:
    """Move a line's label (drawn in axes x, data y) to the first end of its line, above or below it,
    where it covers none of `boxes` (the markers)."""
    for x, ha, va in ((0.99, "right", "bottom"), (0.01, "left", "bottom"), (0.99, "right", "top"),
                      (0.01, "left", "top")):
        line_text.set_x(x)
        line_text.set_ha(ha)
        line_text.set_va(va)
        if not any(overlaps(text_box(line_text, renderer), b) for b in boxes):
            return
