"""Window embeddings: the one function that turns raw windows into vectors, used by the export's
`embed()` and by the evaluation. What the encoder sees here (docs/design.md, "Normalization and
masking"): each window and channel z-scored over all its samples (no sample is masked, so these
are the visible-sample statistics of training), no mask token, the encoder (backbone, then the
channel mixer when the model has one), then `pool`: per channel, the mean and the standard deviation
over its tokens, [N, C, 2D]. The mean alone cancels what varies from patch to patch (beat timing,
the PPG's delay behind the ECG); on the demo's blood-pressure and hypotension tasks the spread
roughly halves the MAP error of a linear probe and lifts hypotension AUROC from chance to about
0.77 (BENCHMARKS.md).

Scale. The z-scoring removes each window's amplitude and offset, which blood pressure needs (a
pulse's amplitude, the ECG's voltage). `window_scale` gives them back beside the embedding: per
channel, log(std + EPS) and the mean of the raw window before normalisation (input units: PPG
units, mV). `embed_windows(..., scale=True)` appends them: [N, C, 2D + 2] (`evaluate.scale_features`;
the export's `embed` does by default; preprocessing.json says so)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.channels import NUM_CHANNELS
from pipeline.model.preprocess import EPS, normalize

SCALE_FEATURES = ("log_std", "mean")  # what window_scale appends per channel, in this order


def pool(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens [B, C, N, D] -> [B, C, 2D]: the mean, then the standard deviation, over the N tokens."""
    return torch.cat([tokens.mean(dim=2), tokens.std(dim=2, unbiased=False)], dim=-1)


def window_scale(windows) -> np.ndarray:
    """[N, C, 2] float32: per window and channel, log(std + EPS) and the mean of the raw samples (the
    statistics `normalize` divides out; module docstring, "Scale")."""
    x = np.asarray(windows, dtype=np.float64)
    return np.stack([np.log(x.std(axis=-1) + EPS), x.mean(axis=-1)], axis=-1).astype(np.float32)


@torch.no_grad()
def embed_windows(encoder, windows, batch_size: int = 256, device: torch.device | str | None = None, scale: bool = False) -> np.ndarray:
    """Embeddings [N, C, 2D] (`pool` of each channel's tokens) of raw windows [N, C, L]; with `scale`,
    [N, C, 2D + 2]: `window_scale` appended. `encoder` is a `pipeline.model.encoder.Encoder` (or a bare
    backbone: normalized [B, C, L] -> tokens [B, C, N, D]); the windows go to `device` (default: the encoder's)."""
    encoder.eval()
    if device is None:
        device = next(encoder.parameters()).device
    out = []
    for s in range(0, len(windows), batch_size):
        raw = np.asarray(windows[s : s + batch_size], dtype=np.float32)
        emb = pool(encoder(normalize(torch.as_tensor(raw).to(device)))).float().cpu().numpy()
        out.append(np.concatenate([emb, window_scale(raw)], axis=-1) if scale else emb)
    width = 2 * encoder.d_model + (len(SCALE_FEATURES) if scale else 0)
    return np.concatenate(out) if out else np.empty((0, NUM_CHANNELS, width), np.float32)
