"""The report's plots as SVG: learning curves from metrics.jsonl, the confusion heatmap.

Drawn with matplotlib's object API (a ``Figure`` of its own, no pyplot state, no GUI backend),
text as paths so that the SVG needs no fonts, and without the date matplotlib would stamp in,
so that the same run gives the same file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from segkit.errors import SegkitError

VALIDATION_KEYS = ("mIoU", "mAcc", "aAcc")
TITLES = {"loss": "training loss", "lr": "learning rate", "validation": "validation"}
MAX_TICK_LABELS = 40  # more classes than this and the heatmap's axes name none of them


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise SegkitError(
            "segkit report draws its plots with matplotlib, which is not installed: "
            "pip install 'segkit[report]'"
        ) from error
    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "segkit-report"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def check_matplotlib() -> None:
    """Fail before the model runs, not after, where matplotlib is missing."""
    _figure(1, 1)


def curves(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The series to draw, by panel: ``loss`` (the total and every loss term), ``lr`` (every
    learning rate) and ``validation`` (mIoU, mAcc, aAcc), each a list of (step, value)."""
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in TITLES}
    for record in records:
        if record.get("split") == "val":
            items = [(key, record.get(key), "validation") for key in VALIDATION_KEYS]
        else:
            items = [(key, value, _train_panel(key)) for key, value in record.items()]
        for key, value, panel in items:
            if panel and isinstance(value, (int, float)) and not isinstance(value, bool):
                panels[panel].setdefault(key, []).append((record["step"], float(value)))
    return {name: series for name, series in panels.items() if series}


def _train_panel(key: str) -> str | None:
    """The panel of a training line's key; throughput and memory are not learning curves."""
    if key.startswith("loss"):
        return "loss"
    return "lr" if key.startswith("lr") else None


def learning_curves(records: Sequence[dict[str, Any]]) -> bytes | None:
    """One panel per kind of series, side by side, sharing the iteration axis; None when the
    run logged nothing to draw."""
    panels = curves(records)
    if not panels:
        return None
    figure = _figure(4.2 * len(panels), 3.2)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, series) in zip(axes, panels.items()):
        for key, points in series.items():
            steps, values = zip(*points)
            marker = "o" if name == "validation" or len(points) < 3 else None
            ax.plot(steps, values, label=key, marker=marker, markersize=3, linewidth=1.4)
        ax.set_title(TITLES[name])
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if name == "loss" and all(v > 0 for pts in series.values() for _, v in pts):
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    return _svg(figure)


def confusion_heatmap(normalised: np.ndarray, classes: Sequence[str]) -> bytes:
    """Rows are ground truth, each row divided by its pixels, so a row reads "where the pixels of
    this class went"; a class without labelled pixels is an empty row."""
    count = len(classes)
    side = min(3.0 + 0.32 * count, 14.0)
    figure = _figure(side + 1.2, side)
    ax = figure.subplots()
    image = ax.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the ground-truth row")
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if count <= MAX_TICK_LABELS:
        ax.set_xticks(range(count), list(classes), rotation=90, fontsize="small")
        ax.set_yticks(range(count), list(classes), fontsize="small")
    if count <= 12:
        for row in range(count):
            for column in range(count):
                share = normalised[row, column]
                if share >= 0.005:
                    colour = "black" if share > 0.6 else "white"
                    ax.text(
                        column,
                        row,
                        f"{100 * share:.0f}",
                        ha="center",
                        va="center",
                        fontsize="small",
                        color=colour,
                    )
    return _svg(figure)
