"""Figures every lab ends with, in one consistent style."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


def _save(fig, path) -> None:
    """Save ``fig`` as PNG at ``path`` (its folder created), when a path is given."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)


def line_chart(x, series: dict, xlabel: str, ylabel: str, title: str, logx: bool = False, path=None):
    """One line per entry of ``series`` (label -> y values) against ``x``; returns the figure.

    With ``path`` the figure is also saved there as PNG, for a portfolio or write-up.
    """
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for label, y in series.items():
        ax.plot(list(x), list(y), marker="o", label=label)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(x), [str(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return fig


def heatmap(matrix, row_labels, col_labels, title: str, path=None):
    """A labelled matrix, such as pairwise similarities."""
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(col_labels), 1 + 0.45 * len(row_labels)), dpi=110)
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i in range(len(row_labels)):
        for j in range(len(col_labels)):
            ax.text(j, i, f"{matrix[i][j]:.2f}", ha="center", va="center", color="white", fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
    return fig


def side_by_side(x, left: dict, right: dict, xlabel: str, left_ylabel: str, right_ylabel: str,
                 title: str, logx: bool = False, right_logy: bool = False, path=None):
    """Two line charts that share an x axis, e.g. recall on the left and latency on the right."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, series, ylabel in ((axes[0], left, left_ylabel), (axes[1], right, right_ylabel)):
        for label, y in series.items():
            ax.plot(list(x), list(y), marker="o", label=label)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if right_logy:
        axes[1].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return fig


def grouped_bars(groups, series: dict, ylabel: str, title: str, ylim=None, path=None):
    """Bars for each group (e.g. a retrieval configuration), one colour per series (e.g. a metric)."""
    import numpy as np

    groups = list(groups)
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 2), 3.8), dpi=110)
    for i, (label, values) in enumerate(series.items()):
        positions = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        bars = ax.bar(positions, list(values), width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return fig
