"""The book's figures (matplotlib, an optional extra: ``pip install "imdbfast[plot]"``).

Figures are drawn on matplotlib's object API with the Agg canvas, never through pyplot, so that
plotting changes no global state of the embedding program.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from ._optional import require


def _figure(width: float, height: float):
    agg = require("matplotlib.backends.backend_agg", "plotting", "plot")
    fig = require("matplotlib.figure", "plotting", "plot").Figure(figsize=(width, height))
    agg.FigureCanvasAgg(fig)
    return fig


def plot_history(history: Any, path: str | os.PathLike | None = None):
    """The book's two figures side by side: training vs validation loss, and training vs
    validation accuracy, by epoch (training as dots, validation as a line). ``history`` is a
    History or its ``.history`` dict; the figure is saved to ``path`` when given and returned."""
    h = getattr(history, "history", history)
    if not isinstance(h, dict) or "loss" not in h:
        raise ValueError("history: expected a History (or dict) with at least 'loss'")
    acc_key = next((k for k in ("accuracy", "acc", "binary_accuracy") if k in h), None)
    epochs = range(1, len(h["loss"]) + 1)
    fig = _figure(11, 4.2)
    panels = [("loss", "Training and validation loss", "Loss")]
    if acc_key:
        panels.append((acc_key, "Training and validation accuracy", "Accuracy"))
    for i, (key, title, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.plot(epochs, h[key], "bo", label=f"Training {ylabel.lower()}")
        if "val_" + key in h:
            ax.plot(epochs, h["val_" + key], "b", label=f"Validation {ylabel.lower()}")
        ax.set_title(title)
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
        ax.set_xlabel("Epochs")
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


def plot_experiments(rows: Sequence[dict], path: str | os.PathLike | None = None,
                     title: str = "Things to try"):
    """A ranked bar chart of the experiments' best validation and test accuracies."""
    rows = sorted(rows, key=lambda r: r["best_val_accuracy"])
    fig = _figure(9, max(3.0, 0.22 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    names = [r["name"] for r in rows]
    pos = range(len(rows))
    ax.barh([p + 0.2 for p in pos], [r["best_val_accuracy"] for r in rows], height=0.4,
            label="best validation accuracy")
    ax.barh([p - 0.2 for p in pos], [r["test_accuracy"] for r in rows], height=0.4,
            label="test accuracy (best epoch's weights)")
    ax.set_yticks(list(pos))
    ax.set_yticklabels(names, fontsize=7)
    lo = min(min(r["test_accuracy"], r["best_val_accuracy"]) for r in rows)
    hi = max(max(r["test_accuracy"], r["best_val_accuracy"]) for r in rows)
    ax.set_xlim(max(0.0, lo - 0.02), min(1.0, hi + 0.01))
    ax.set_xlabel("Accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig
