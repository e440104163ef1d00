"""Figures for the analyses (matplotlib, Agg backend, imported lazily): retention curves and rank dynamics.

Takes plain numbers and writes image files; knows nothing about traces or models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

COLORS = {"SymbMath": "#d62728", "MetaDisc": "#9467bd", "CoRef": "#1f77b4", "EntName": "#2ca02c",
          "VerbalMath": "#ff7f0e", "Grammar": "#7f7f7f"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> list[Path]:
    """Save as PNG and SVG beside each other (`path` with either suffix, or none); returns the paths."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".png", ".svg") else path
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        fig.savefig(base.with_suffix(suffix), dpi=150, bbox_inches="tight")
        written.append(base.with_suffix(suffix))
    _pyplot().close(fig)
    return written


def retention_figure(panels: Sequence[tuple[str, dict[str, list[tuple[float, float]]]]], path: Path) -> list[Path]:
    """One panel per (title, {category: [(keep, retention), ...]}), with the uniform diagonal."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False, sharey=True)
    for ax, (title, curves) in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="uniform")
        for category, points in curves.items():
            xs, ys = zip(*sorted(points)) if points else ((), ())
            ax.plot(xs, ys, marker="o", markersize=3, color=COLORS.get(category), label=category)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("keep fraction")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("category retention")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


def dynamics_figure(keeps: Sequence[float], series: dict[str, Sequence[float]], path: Path, title: str) -> list[Path]:
    """Hit@|S| per keep fraction for each ranking (dynamic, frozen, random)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    styles = {"dynamic": "-o", "frozen@1.0": "--s", "random": ":^"}
    for name, values in series.items():
        ax.plot(keeps, values, styles.get(name, "-o"), markersize=4, label=name)
    ax.set_xlabel("keep fraction r (transition r -> next)")
    ax.set_ylabel("Hit@|S|")
    ax.set_ylim(0, 1.02)
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def scatter_figure(predicted: Sequence[float], target: Sequence[float], path: Path, title: str) -> list[Path]:
    """Predicted vs true scores (each chain's scores standardized), for the surrogate."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(target, predicted, s=6, alpha=0.5)
    ax.set_xlabel("true post-deletion objective (z-score per chain)")
    ax.set_ylabel("surrogate prediction (z-score per chain)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
