"""The backbone interface (docs/design.md, "Backbones").

A `Backbone` wraps one granite-tsfm model. It takes windows that the pipeline has already
normalized (`pipeline.model.preprocess.normalize`) and masked (masked patches hold the SSL model's mask
token, `pipeline.model.encoder.SSLModel.encoder_input`), and returns token embeddings [B, C, N, D]. The
first `num_patches` tokens of each channel stand for the `num_patches` time patches, in order: the
SSL head reconstructs each patch from its token.
The model inside never rescales and never masks by itself: one normalization, one masking.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.channels import NUM_CHANNELS
from pipeline.model.backbones import GeometryError


class Backbone(nn.Module):
    model_type: str = ""

    def __init__(self, model: nn.Module, context_length: int, patch_length: int, d_model: int, num_tokens: int):
        super().__init__()
        self.model = model
        self.context_length = context_length
        self.patch_length = patch_length
        self.num_patches = context_length // patch_length
        self.d_model = d_model
        self.num_tokens = num_tokens

    @property
    def config(self):
        return self.model.config

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != NUM_CHANNELS or x.shape[-1] != self.context_length:
            raise ValueError(f"input must be [batch, {NUM_CHANNELS}, {self.context_length}] (context_length), got {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, L] normalized -> token embeddings [B, C, N, D]."""
        raise NotImplementedError

    def save_pretrained(self, directory) -> None:
        """config.json + model.safetensors, loadable by the granite-tsfm class (and `load_export`)."""
        self.model.save_pretrained(directory, safe_serialization=True)


def check_geometry(pairs: dict[str, tuple], source: str) -> None:
    """pairs: {config key: (config value, checkpoint value)}. The checkpoint's geometry must equal
    the config; a difference is an error naming both values."""
    bad = [f"model.{k}: config {c} vs checkpoint {k_}" for k, (c, k_) in pairs.items() if c != k_]
    if bad:
        raise GeometryError(f"{source} does not match the config:\n  " + "\n  ".join(bad) + "\nSet these keys to the checkpoint's values.")


SHARED_GEOMETRY = ("context_length", "patch_length", "d_model", "num_layers", "expansion_factor")


def check_checkpoint(model_cfg: dict, ckpt_config, own: dict[str, tuple], source: str) -> None:
    """A checkpoint's config against the model section: non-overlapping patches, the keys every
    backbone shares, and the family's `own` pairs ({key: (config value, checkpoint value)})."""
    stride = getattr(ckpt_config, "patch_stride", ckpt_config.patch_length)
    if stride != ckpt_config.patch_length:
        raise GeometryError(f"{source}: patch_stride {stride} != patch_length (overlapping patches are not supported)")
    shared = {k: (model_cfg[k], getattr(ckpt_config, k)) for k in SHARED_GEOMETRY}
    check_geometry({**shared, **own}, source)


def shared_kwargs(model_cfg: dict) -> dict:
    """Config arguments every granite-tsfm backbone takes from the model section (non-overlapping patches)."""
    return {k: model_cfg[k] for k in (*SHARED_GEOMETRY, "dropout")} | {"patch_stride": model_cfg["patch_length"]}
