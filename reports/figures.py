"""The report's PNG figures: entropy histograms, training curves and the qualitative grid."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fusionbench.files import atomic_write_bytes  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def entropy_histogram(entropies: dict[str, Sequence[float]], path: Path, title: str) -> None:
    """Overlaid histograms of decision-layer entropy, one per method, on shared bins (paper Fig. 13)."""
    values = np.concatenate([np.asarray(v, float) for v in entropies.values()])
    bins = np.linspace(values.min(), values.max() + 1e-9, 31)
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for method, series in entropies.items():
        axis.hist(series, bins=bins, alpha=0.45, label=f"{method} (median {np.median(series):.3f})")
    axis.set_xlabel("entropy of softmax(ResNet50(fused)) [nats]")
    axis.set_ylabel("images")
    axis.set_title(title)
    axis.legend(fontsize=8)
    _save(figure, path)


def curves(series: dict[str, pd.DataFrame], x: str, path: Path, title: str) -> None:
    """One panel per numeric column (except ``x``), one line per run, e.g. losses per epoch."""
    columns = sorted({c for frame in series.values() for c in frame.columns
                      if c != x and pd.api.types.is_numeric_dtype(frame[c])})
    cols = min(3, len(columns))
    rows = -(-len(columns) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for axis, column in zip(axes.flat, columns):
        for name, frame in series.items():
            if column in frame:
                axis.plot(frame[x], frame[column], label=name, marker="." if len(frame) < 30 else None)
        axis.set_title(column, fontsize=9)
        axis.set_xlabel(x, fontsize=8)
    for axis in axes.flat[len(columns):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def qualitative_grid(name: str, tiles: list[tuple[str, np.ndarray | None]], path: Path, columns: int = 6) -> None:
    """One test image: titled tiles (RGB, or None when missing) wrapped into rows of ``columns``."""
    height, width = next(t.shape[:2] for _, t in tiles if t is not None)
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    figure, axes = plt.subplots(rows, cols, squeeze=False,
                                figsize=(2.6 * cols, (2.6 * height / width + 0.35) * rows + 0.3))
    for axis in axes.flat:
        axis.axis("off")
    for axis, (title, tile) in zip(axes.flat, tiles):
        axis.axis("on")
        axis.set_xticks([])
        axis.set_yticks([])
        if tile is None:
            axis.set_xlim(0, width)
            axis.set_ylim(height, 0)
            axis.set_aspect("equal")
            axis.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=11, color="#a33",
                      transform=axis.transAxes)
        else:
            axis.imshow(tile)
        axis.set_title(title, fontsize=9)
    figure.suptitle(name, fontsize=10)
    figure.tight_layout()
    _save(figure, path)


def forest(rows: pd.DataFrame, path: Path, title: str, scale: float = 100.0) -> None:
    """One row per comparison (``method``, ``reference``, ``delta``, ``ci_low``, ``ci_high``, ``significant``):
    the difference with its interval, a line at 0; significant rows filled."""
    labels = [f"{r.method} vs {r.reference}" for r in rows.itertuples()]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    for k, r in enumerate(rows.itertuples()):
        filled = bool(r.significant)
        axis.plot([scale * r.ci_low, scale * r.ci_high], [y[k], y[k]], color="#345", lw=1.5)
        axis.plot(scale * r.delta, y[k], "o", color="#345", markerfacecolor="#345" if filled else "white")
    axis.axvline(0.0, color="#a33", lw=1, ls="--")
    axis.set_yticks(y, labels, fontsize=8)
    axis.set_xlabel("difference (filled: significant after Holm)")
    axis.set_title(title, fontsize=10)
    _save(figure, path)
