"""Per-window, per-channel normalization: the one place it happens (training, validation,
evaluation and `embed` all call this). Recorded in the export's preprocessing.json."""

from __future__ import annotations

import numpy as np

EPS = 1e-6
DESCRIPTION = {
    "method": "zscore_per_window_per_channel",
    "formula": "(x - mean(x)) / (std(x) + 1e-6), over the 1024 samples of each window and channel",
    "eps": EPS,
}


def normalize(x: np.ndarray) -> np.ndarray:
    """z-score each window and channel of x [..., L] (float32 out)."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / (std + EPS)
