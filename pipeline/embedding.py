"""Window embeddings: the one function that turns raw windows into vectors, used by the export's
`embed()` and by the evaluation. Normalization happens here, exactly as in training."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.channels import NUM_CHANNELS
from pipeline.preprocess import normalize


@torch.no_grad()
def embed_windows(backbone, windows, batch_size: int = 256) -> np.ndarray:
    """Embeddings [N, C, D] (mean over each channel's tokens) of raw windows [N, C, L]."""
    backbone.eval()
    out = []
    for s in range(0, len(windows), batch_size):
        x = normalize(torch.as_tensor(np.asarray(windows[s : s + batch_size], dtype=np.float32)))
        out.append(backbone(x).mean(dim=2).float().numpy())
    return np.concatenate(out) if out else np.empty((0, NUM_CHANNELS, backbone.d_model), np.float32)
