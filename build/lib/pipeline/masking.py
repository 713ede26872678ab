"""Patch masks for masked-signal modelling: [B, C, P] booleans, True = masked.

Exactly round(ratio * P) patches are masked per window and channel (at least 1, at most P - 1),
drawn from an explicit torch.Generator so that a resumed run draws the same masks.
"""

from __future__ import annotations

import torch


def num_masked(num_patches: int, ratio: float) -> int:
    return min(num_patches - 1, max(1, round(ratio * num_patches)))


def patch_mask(batch: int, channels: int, num_patches: int, ratio: float, kind: str, generator: torch.Generator) -> torch.Tensor:
    k = num_masked(num_patches, ratio)
    if kind == "random":
        scores = torch.rand(batch, channels, num_patches, generator=generator)
        idx = scores.argsort(dim=-1)[..., :k]
        mask = torch.zeros(batch, channels, num_patches, dtype=torch.bool)
        return mask.scatter_(-1, idx, True)
    if kind == "block":
        start = torch.randint(0, num_patches - k + 1, (batch, channels, 1), generator=generator)
        pos = torch.arange(num_patches).view(1, 1, -1)
        return (pos >= start) & (pos < start + k)
    raise ValueError(f"train.mask_type: unknown mask type {kind!r}")
