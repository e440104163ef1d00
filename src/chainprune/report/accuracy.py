"""The experiment figure (the paper's Fig. 2): student accuracy against keep fraction, one line per pruning
method, the zero-shot student as a horizontal line. Takes plain numbers; knows nothing about runs or models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from chainprune.report.plots import _pyplot, save_figure

METHOD_COLORS = {"greedy": "#d62728", "uniform": "#7f7f7f", "surprisal": "#1f77b4", "h2o": "#2ca02c",
                 "tokenskip": "#9467bd", "full": "#000000"}


Point = tuple[float, float | None, float | None]  # accuracy in %, its 95% interval (None: not known)


def accuracy_figure(curves: Mapping[str, Sequence[tuple[float, float] | tuple[float, float, float | None, float | None]]],
                    lines: Mapping[str, Point] | float | None, path: Path, title: str,
                    ylabel: str = "test accuracy (%)") -> list[Path]:
    """`curves`: {method: [(keep fraction, accuracy in %[, low, high]), ...]}, drawn with their intervals;
    `lines`: {label: (accuracy, low, high)} drawn across the plot (the zero-shot and full-chain students; a
    plain number is the zero-shot accuracy). Writes PATH.png and PATH.svg."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for method, points in curves.items():
        points = sorted((tuple(p) + (None, None))[:4] for p in points)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        color = METHOD_COLORS.get(method)
        ax.plot(xs, ys, marker="o", markersize=4, label=method, color=color)
        if all(p[2] is not None for p in points) and points:
            ax.errorbar(xs, ys, yerr=[[y - p[2] for y, p in zip(ys, points)], [p[3] - y for y, p in zip(ys, points)]],
                        fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.8)
    if isinstance(lines, (int, float)):
        lines = {"zero-shot student": (float(lines), None, None)}
    for (label, (accuracy, low, high)), style in zip((lines or {}).items(), ("--", ":", "-.")):
        color = "black" if label.startswith("zero") else "#555555"
        ax.axhline(accuracy, color=color, linestyle=style, linewidth=1, label=label)
        if low is not None and high is not None:
            ax.axhspan(low, high, color=color, alpha=0.07)
    keeps = sorted({p[0] for points in curves.values() for p in points})
    if keeps:
        ax.set_xticks(keeps)
        if len(keeps) == 1:
            ax.set_xlim(keeps[0] - 0.15, keeps[0] + 0.15)
    ax.set_xlabel("keep fraction (student tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
