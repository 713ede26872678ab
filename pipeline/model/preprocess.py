"""Per-window, per-channel normalization: the one place it happens. Training, validation,
evaluation and `embed` all call `normalize` on the batch (on the training device), and the
export's preprocessing.json records it.

At embedding time every sample is visible, so the statistics are those of the whole window and
channel. At training time the encoder's input is z-scored with the statistics of its visible
samples only (`visible`), so nothing of a masked patch (not even its share of the mean or the
energy) reaches the encoder; the loss target is the whole-window z-score (docs/design.md,
"Normalization and masking").
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-6
DESCRIPTION = {
    "method": "zscore_per_window_per_channel",
    "formula": "(x - mean(x)) / (std(x) + 1e-6), over the samples of each window and channel (population std)",
    "eps": EPS,
    "training": "the encoder's input used the mean and std of the visible (unmasked) samples only; "
                "with no mask, as here, those are the whole window's",
}


def normalize(x, visible=None):
    """z-score each window and channel of x [..., L]; a torch tensor stays on its device, a numpy
    array comes back as float32 numpy. `visible` (bool, shaped like x): the mean and std are those
    of the visible samples only; a window and channel with no visible sample comes back as zeros."""
    if isinstance(x, np.ndarray):
        return normalize(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
    x = x.float()
    if visible is None:
        std, mean = torch.std_mean(x, dim=-1, keepdim=True, correction=0)
        return (x - mean) / (std + EPS)
    v = visible.to(x.dtype)
    n = v.sum(dim=-1, keepdim=True)
    xv = torch.where(visible, x, 0.0)  # masked samples never enter a sum (not even as inf or NaN)
    mean = xv.sum(dim=-1, keepdim=True) / n.clamp_min(1.0)
    var = (torch.where(visible, x - mean, 0.0) ** 2).sum(dim=-1, keepdim=True) / n.clamp_min(1.0)
    return torch.where(n > 0, (x - mean) / (var.sqrt() + EPS), 0.0)
