"""Figures every lab ends with, in one consistent style."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


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
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
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
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
