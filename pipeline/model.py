"""The encoder (granite-tsfm TinyTimeMixer backbone) and the reconstruction head, built once from
the validated `model` config section. Nothing about their shapes changes after construction.

Normalization happens outside the model (`pipeline.preprocess.normalize`), so the backbone is
built with `scaling=None`: the zeros written into masked patches reach the encoder as zeros.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

os.environ.setdefault("TSFM_PYTHON_LOGGING_LEVEL", "WARNING")  # tsfm_public sets the root logger to INFO otherwise

log = logging.getLogger(__name__)
NUM_CHANNELS = 2
GEOMETRY = ("context_length", "patch_length")
ARCH = ("d_model", "num_layers", "adaptive_patching_levels", "expansion_factor")


class PretrainedLoadError(RuntimeError):
    """The requested pretrained weights cannot be loaded; the message says how to fix it."""


class GeometryError(ValueError):
    """A config and a checkpoint disagree on a shape; the message names both values."""


def ttm_config(model_cfg: dict):
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig

    return TinyTimeMixerConfig(
        context_length=model_cfg["context_length"], patch_length=model_cfg["patch_length"],
        patch_stride=model_cfg["patch_length"], num_input_channels=NUM_CHANNELS,
        d_model=model_cfg["d_model"], num_layers=model_cfg["num_layers"],
        adaptive_patching_levels=model_cfg["adaptive_patching_levels"],
        expansion_factor=model_cfg["expansion_factor"], dropout=model_cfg["dropout"],
        mode="common_channel", scaling=None, use_positional_encoding=False,
    )


def check_checkpoint_geometry(ckpt_config, model_cfg: dict, source: str) -> None:
    """The checkpoint's geometry wins: any disagreement with the config is an error naming both."""
    bad = [
        f"model.{k}: config {model_cfg[k]} vs checkpoint {getattr(ckpt_config, k)}"
        for k in GEOMETRY + ARCH
        if getattr(ckpt_config, k) != model_cfg[k]
    ]
    if getattr(ckpt_config, "patch_stride", ckpt_config.patch_length) != ckpt_config.patch_length:
        bad.append(f"patch_stride {ckpt_config.patch_stride} != patch_length (overlapping patches are not supported)")
    if bad:
        raise GeometryError(f"{source} does not match the config:\n  " + "\n  ".join(bad) + "\nSet these keys to the checkpoint's values.")


def _how_to_fix(model_cfg: dict) -> str:
    return (
        "To fix: (a) put the model in the Hugging Face cache on a machine with internet "
        f"(huggingface-cli download {model_cfg['pretrained']} --revision {model_cfg['revision']}) and point HF_HOME at that cache; "
        "or (b) set model.pretrained to a local directory holding config.json + model.safetensors; "
        "or (c) set model.pretrained: null to train from scratch (random initialisation)."
    )


def load_pretrained_backbone(model_cfg: dict):
    """The backbone of a TinyTimeMixer checkpoint (hub id + revision, or local directory)."""
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig, TinyTimeMixerForPrediction

    src = model_cfg["pretrained"]
    local = Path(src).is_dir()
    if not local and Path(src).expanduser().is_absolute():
        raise PretrainedLoadError(f"model.pretrained={src!r}: no such directory. " + _how_to_fix(model_cfg))
    kwargs = {} if local else {"revision": model_cfg["revision"]}
    try:
        ckpt_config = TinyTimeMixerConfig.from_pretrained(src, **kwargs)
    except (OSError, ValueError) as e:
        raise PretrainedLoadError(
            f"cannot load the pretrained model {src!r}" + (f" (revision {model_cfg['revision']})" if not local else "")
            + f": {e.__class__.__name__}: {str(e).splitlines()[0]}\n" + _how_to_fix(model_cfg)
        ) from e
    check_checkpoint_geometry(ckpt_config, model_cfg, f"pretrained model {src!r}")
    # The one piece of surgery, before any optimizer exists and written into the config: inputs
    # are normalized by the pipeline (scaling=None) and carry two channels (channel-independent).
    model, info = TinyTimeMixerForPrediction.from_pretrained(
        src, **kwargs, scaling=None, num_input_channels=NUM_CHANNELS, dropout=model_cfg["dropout"], output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if k.startswith("backbone.")]
    if missing:
        raise PretrainedLoadError(f"pretrained model {src!r} lacks encoder weights {missing[:5]}... " + _how_to_fix(model_cfg))
    log.info("loaded pretrained encoder %s%s", src, "" if local else f" @ {model_cfg['revision']}")
    return model.backbone


def build_encoder(model_cfg: dict):
    """TinyTimeMixerModel: from scratch, or the backbone of the requested pretrained checkpoint."""
    if model_cfg["pretrained"]:
        return load_pretrained_backbone(model_cfg)
    from tsfm_public.models.tinytimemixer import TinyTimeMixerModel

    return TinyTimeMixerModel(ttm_config(model_cfg))


class SSLModel(nn.Module):
    """Encoder + linear head mapping each patch embedding back to its `patch_length` samples."""

    def __init__(self, model_cfg: dict, encoder=None):
        super().__init__()
        self.encoder = encoder if encoder is not None else build_encoder(model_cfg)
        cfg = self.encoder.config
        check_checkpoint_geometry(cfg, model_cfg, "encoder")
        self.context_length = cfg.context_length
        self.patch_length = cfg.patch_length
        self.num_patches = cfg.context_length // cfg.patch_length
        self.head = nn.Linear(cfg.d_model, cfg.patch_length)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, L] (normalized) -> patch embeddings [B, C, P, D]."""
        if x.shape[-1] != self.context_length:
            raise ValueError(f"input length {x.shape[-1]} != context_length {self.context_length}")
        return self.encoder(past_values=x.transpose(1, 2)).last_hidden_state

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct x [B, C, L] from its unmasked patches; patch_mask [B, C, P] True = masked."""
        keep = (~patch_mask).repeat_interleave(self.patch_length, dim=-1).to(x.dtype)
        hidden = self.embed(x * keep)
        recon = self.head(hidden)  # [B, C, P, patch_length]
        return recon.flatten(-2)
