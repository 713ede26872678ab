"""Patch masks for masked-signal modelling: [B, C, P] booleans, True = masked (hidden from the encoder).

Three kinds (docs/design.md, "Normalization and masking"):
  random  exactly round(ratio * P) patches per window and channel (at least 1, at most P - 1),
          anywhere;
  block   the same number of patches, as one contiguous span per window and channel;
  cross   one whole channel of the window (PPG or ECG, chosen at random per window), the other one
          fully visible: the model rebuilds PPG from ECG, or ECG from PPG.
`mixed_mask` draws the kind of each window from `train.mask_mix`. Every draw comes from an explicit
torch.Generator, in a fixed order, so a resumed run draws the same masks. The masks are built on the
generator's device (training builds them on the GPU with a CUDA generator: no host work and no
copy per step); on the CPU the draws are the same as they always were.
"""

from __future__ import annotations

import torch

KINDS = ("random", "block", "cross")


def num_masked(num_patches: int, ratio: float) -> int:
    return min(num_patches - 1, max(1, round(ratio * num_patches)))


def patch_mask(batch: int, channels: int, num_patches: int, ratio: float, kind: str, generator: torch.Generator,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Masks of one kind for every window (`ratio` is unused by `cross`), built on `device` (default:
    the generator's, which must match it)."""
    device = generator.device if device is None else torch.device(device)
    if kind == "random":
        k = num_masked(num_patches, ratio)
        scores = torch.rand(batch, channels, num_patches, generator=generator, device=device)
        idx = scores.argsort(dim=-1)[..., :k]
        mask = torch.zeros(batch, channels, num_patches, dtype=torch.bool, device=device)
        return mask.scatter_(-1, idx, True)
    if kind == "block":
        k = num_masked(num_patches, ratio)
        start = torch.randint(0, num_patches - k + 1, (batch, channels, 1), generator=generator, device=device)
        pos = torch.arange(num_patches, device=device).view(1, 1, -1)
        return (pos >= start) & (pos < start + k)
    if kind == "cross":
        hidden = torch.randint(0, channels, (batch, 1, 1), generator=generator, device=device)
        return (torch.arange(channels, device=device).view(1, -1, 1) == hidden).expand(batch, channels, num_patches).clone()
    raise ValueError(f"unknown mask kind {kind!r} (known: {', '.join(KINDS)})")


def mixed_mask(batch: int, channels: int, num_patches: int, ratio: float, mix: dict, generator: torch.Generator,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Masks whose kind is drawn per window with the proportions `mix` ({kind: fraction}, summing to
    1; `train.mask_mix`), built on `device` (default: the generator's). The generator is consumed the
    same way whatever the proportions."""
    device = generator.device if device is None else torch.device(device)
    u = torch.rand(batch, generator=generator, device=device)
    edges, acc = [], 0.0
    for k in KINDS[:-1]:  # float64 cumulative fractions, as host scalars: nothing is copied to the device
        acc += float(mix.get(k, 0.0))
        edges.append(acc)
    kind = sum((u.double() >= e).long() for e in edges)  # index into KINDS; the last kind takes the rest
    masks = torch.stack([patch_mask(batch, channels, num_patches, ratio, k, generator, device) for k in KINDS])  # [K, B, C, P]
    return masks[kind, torch.arange(batch, device=device)]
