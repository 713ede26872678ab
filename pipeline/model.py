"""The SSL model: a backbone (pipeline.backbones) plus a linear head that maps each patch token
back to its `patch_length` samples. Built once from the validated `model` section; nothing about
its shapes changes after construction (docs/design.md, "What the encoder sees").
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline import backbones
from pipeline.backbones._base import check_geometry


class SSLModel(nn.Module):
    def __init__(self, model_cfg: dict, backbone=None, pretrained=None):
        """`backbone` given (tests), or built from `model_cfg` with weights from the local directory
        `pretrained` (None: random initialisation)."""
        super().__init__()
        self.backbone = backbone if backbone is not None else backbones.build(model_cfg, pretrained)
        b = self.backbone
        check_geometry({k: (model_cfg[k], getattr(b, k)) for k in ("context_length", "patch_length", "d_model")}, "backbone")
        self.context_length = b.context_length
        self.patch_length = b.patch_length
        self.num_patches = b.num_patches
        self.head = nn.Linear(b.d_model, b.patch_length)

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct x [B, C, L] from its unmasked patches; patch_mask [B, C, P] True = masked."""
        keep = (~patch_mask).repeat_interleave(self.patch_length, dim=-1).to(x.dtype)
        hidden = self.backbone(x * keep)[:, :, : self.num_patches]  # the patch tokens, in time order
        return self.head(hidden).flatten(-2)
