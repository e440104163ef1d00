"""The experiment figure (the paper's Fig. 2): student accuracy against keep fraction, one line per pruning
method, the zero-shot student as a horizontal line. Takes plain numbers; knows nothing about runs or models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from chainprune.report.plots import _pyplot, save_figure

METHOD_COLORS = {"greedy": "#d62728", "uniform": "#7f7f7f", "surprisal": "#1f77b4", "h2o": "#2ca02c",
                 "tokenskip": "#9467bd", "full": "#000000"}


def accuracy_figure(curves: Mapping[str, Sequence[tuple[float, float]]], zero_shot: float | None, path: Path,
                    title: str, ylabel: str = "test accuracy (%)") -> list[Path]:
    """`curves`: {method: [(keep fraction, accuracy in %), ...]}; writes PATH.png and PATH.svg."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for method, points in curves.items():
        xs, ys = zip(*sorted(points)) if points else ((), ())
        ax.plot(xs, ys, marker="o", markersize=4, label=method, color=METHOD_COLORS.get(method))
    if zero_shot is not None:
        ax.axhline(zero_shot, color="black", linestyle="--", linewidth=1, label="zero-shot student")
    keeps = sorted({k for points in curves.values() for k, _ in points})
    if keeps:
        ax.set_xticks(keeps)
    ax.set_xlabel("keep fraction (student tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
