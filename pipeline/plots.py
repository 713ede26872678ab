"""The one way figures are made and saved: matplotlib on the Agg backend, written atomically."""

from __future__ import annotations

from pathlib import Path

from pipeline.io import atomic_path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (jobs run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_grid(n: int, panel_w: float, panel_h: float, ncol_max: int = 4):
    """(figure, the first n of its axes): n panels of panel_w x panel_h inches, at most ncol_max
    per row; the grid's spare axes are turned off."""
    import math

    ncol = max(1, min(ncol_max, n))
    nrow = max(1, math.ceil(n / ncol))
    fig, axes = pyplot().subplots(nrow, ncol, figsize=(panel_w * ncol, panel_h * nrow), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Write `fig` as PNG (temp file, rename) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
