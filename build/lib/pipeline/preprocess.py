"""Per-window, per-channel normalization: the one place it happens. Training, validation,
evaluation and `embed` all call `normalize` on the batch (on the training device), and the
export's preprocessing.json records it."""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-6
DESCRIPTION = {
    "method": "zscore_per_window_per_channel",
    "formula": "(x - mean(x)) / (std(x) + 1e-6), over the samples of each window and channel (population std)",
    "eps": EPS,
}


def normalize(x):
    """z-score each window and channel of x [..., L]; a torch tensor stays on its device,
    a numpy array comes back as float32 numpy."""
    if isinstance(x, np.ndarray):
        return normalize(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
    x = x.float()
    std, mean = torch.std_mean(x, dim=-1, keepdim=True, correction=0)
    return (x - mean) / (std + EPS)
