"""Window embeddings: the one function that turns raw windows into vectors, used by the export's
`embed()` and by the evaluation. What the encoder sees here (docs/design.md, "Normalization and
masking"): each window and channel z-scored over all its samples (no sample is masked, so these
are the visible-sample statistics of training), no mask token, the encoder (backbone, then the
channel mixer when the model has one), then `pool`: per channel, the mean and the standard deviation
over its tokens, [N, C, 2D]. The mean alone cancels what varies from patch to patch (beat timing,
the PPG's delay behind the ECG); on the demo's blood-pressure and hypotension tasks the spread
roughly halves the MAP error of a linear probe and lifts hypotension AUROC from chance to about
0.77 (BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.channels import NUM_CHANNELS
from pipeline.model.preprocess import normalize


def pool(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens [B, C, N, D] -> [B, C, 2D]: the mean, then the standard deviation, over the N tokens."""
    return torch.cat([tokens.mean(dim=2), tokens.std(dim=2, unbiased=False)], dim=-1)


@torch.no_grad()
def embed_windows(encoder, windows, batch_size: int = 256, device: torch.device | str | None = None) -> np.ndarray:
    """Embeddings [N, C, 2D] (`pool` of each channel's tokens) of raw windows [N, C, L]; `encoder` is a
    `pipeline.model.encoder.Encoder` (or a bare backbone: normalized [B, C, L] -> tokens [B, C, N, D]); the
    windows go to `device` (default: the encoder's)."""
    encoder.eval()
    if device is None:
        device = next(encoder.parameters()).device
    out = []
    for s in range(0, len(windows), batch_size):
        x = normalize(torch.as_tensor(np.asarray(windows[s : s + batch_size], dtype=np.float32)).to(device))
        out.append(pool(encoder(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, NUM_CHANNELS, 2 * encoder.d_model), np.float32)
