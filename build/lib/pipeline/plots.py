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


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Write `fig` as PNG (temp file, rename) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
