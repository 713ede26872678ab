"""Window embeddings: the one function that turns raw windows into vectors, used by the export's
`embed()` and by the evaluation. What the encoder sees here (docs/design.md, "Normalization and
masking"): each window and channel z-scored over all its samples (no sample is masked, so these
are the visible-sample statistics of training), no mask token, the encoder (backbone, then the
channel mixer when the model has one)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.channels import NUM_CHANNELS
from pipeline.preprocess import normalize


@torch.no_grad()
def embed_windows(encoder, windows, batch_size: int = 256) -> np.ndarray:
    """Embeddings [N, C, D] (mean over each channel's tokens) of raw windows [N, C, L]; `encoder` is a
    `pipeline.model.Encoder` (or a bare backbone: normalized [B, C, L] -> tokens [B, C, N, D])."""
    encoder.eval()
    out = []
    for s in range(0, len(windows), batch_size):
        x = normalize(torch.as_tensor(np.asarray(windows[s : s + batch_size], dtype=np.float32)))
        out.append(encoder(x).mean(dim=2).float().numpy())
    return np.concatenate(out) if out else np.empty((0, NUM_CHANNELS, encoder.d_model), np.float32)
