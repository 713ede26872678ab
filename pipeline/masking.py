"""Patch masks for masked-signal modelling: [B, C, P] booleans, True = masked (hidden from the encoder).

Three kinds (docs/design.md, "Normalization and masking"):
  random  exactly round(ratio * P) patches per window and channel (at least 1, at most P - 1),
          anywhere;
  block   the same number of patches, as one contiguous span per window and channel;
  cross   one whole channel of the window (PPG or ECG, chosen at random per window), the other one
          fully visible: the model rebuilds PPG from ECG, or ECG from PPG.
`mixed_mask` draws the kind of each window from `train.mask_mix`. Every draw comes from an explicit
torch.Generator, in a fixed order, so a resumed run draws the same masks.
"""

from __future__ import annotations

import torch

KINDS = ("random", "block", "cross")


def num_masked(num_patches: int, ratio: float) -> int:
    return min(num_patches - 1, max(1, round(ratio * num_patches)))


def patch_mask(batch: int, channels: int, num_patches: int, ratio: float, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Masks of one kind for every window (`ratio` is unused by `cross`)."""
    if kind == "random":
        k = num_masked(num_patches, ratio)
        scores = torch.rand(batch, channels, num_patches, generator=generator)
        idx = scores.argsort(dim=-1)[..., :k]
        mask = torch.zeros(batch, channels, num_patches, dtype=torch.bool)
        return mask.scatter_(-1, idx, True)
    if kind == "block":
        k = num_masked(num_patches, ratio)
        start = torch.randint(0, num_patches - k + 1, (batch, channels, 1), generator=generator)
        pos = torch.arange(num_patches).view(1, 1, -1)
        return (pos >= start) & (pos < start + k)
    if kind == "cross":
        hidden = torch.randint(0, channels, (batch, 1, 1), generator=generator)
        return (torch.arange(channels).view(1, -1, 1) == hidden).expand(batch, channels, num_patches).clone()
    raise ValueError(f"unknown mask kind {kind!r} (known: {', '.join(KINDS)})")


def mixed_mask(batch: int, channels: int, num_patches: int, ratio: float, mix: dict, generator: torch.Generator) -> torch.Tensor:
    """Masks whose kind is drawn per window with the proportions `mix` ({kind: fraction}, summing to
    1; `train.mask_mix`). The generator is consumed the same way whatever the proportions."""
    u = torch.rand(batch, generator=generator)
    edges = torch.tensor([mix.get(k, 0.0) for k in KINDS], dtype=torch.float64).cumsum(0)[:-1]
    kind = (u.unsqueeze(1).double() >= edges.unsqueeze(0)).sum(dim=1)  # index into KINDS; the last kind takes the rest
    masks = torch.stack([patch_mask(batch, channels, num_patches, ratio, k, generator) for k in KINDS])  # [K, B, C, P]
    return masks[kind, torch.arange(batch)]
