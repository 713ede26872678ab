"""The model stage's cross-key rules of the configuration: model geometry against the window
(derived once from the config; a mismatch is an error at start-up, never adapted at run time), the
backbone's own rules (`check_config` of its module), the loss's STFT sizes and the mask mix.
Imports no torch: the workflow runs them when it loads (docs/design.md, "File layout")."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Checks
from pipeline.errors import ConfigError
from pipeline.model import backbones


def check_model(config: dict) -> None:
    """Model geometry, derived once from the config; a mismatch is an error here."""
    m, w = config["model"], config["window"]
    if m["context_length"] != w["length"]:
        raise ConfigError(f"model.context_length ({m['context_length']}) must equal window.length ({w['length']})")
    if m["context_length"] % m["patch_length"] or m["patch_length"] >= m["context_length"]:
        raise ConfigError(
            f"model.patch_length ({m['patch_length']}) must divide model.context_length ({m['context_length']}) into 2 or more patches"
        )
    if m["pretrained"] and backbones.is_hub_id(m) and not m["revision"]:
        raise ConfigError(
            f"model.revision: required for the hub model {m['pretrained']!r} (TTM r1 with 1024 samples: 1024_96_v1); "
            f"if model.pretrained is meant as a local directory, {m['pretrained']!r} does not exist"
        )
    if m["pretrained"] and not backbones.is_hub_id(m) and not Path(m["pretrained"]).expanduser().is_dir():
        raise ConfigError(f"model.pretrained: {m['pretrained']!r} is neither a directory nor a hub id owner/name")
    backbones.module(m["backbone"]).check_config(m)


def check_loss(config: dict) -> None:
    """Loss geometry: STFT sizes fit the window; reads respect the shard chunks."""
    t, w = config["train"], config["window"]
    if len(t["stft_n_fft"]) != len(t["stft_hop"]):
        raise ConfigError(f"train.stft_hop ({t['stft_hop']}) needs one hop per train.stft_n_fft ({t['stft_n_fft']})")
    for n_fft, hop in zip(t["stft_n_fft"], t["stft_hop"]):
        if n_fft > w["length"]:
            raise ConfigError(f"train.stft_n_fft ({n_fft}) must be <= window.length ({w['length']})")
        if hop > n_fft:
            raise ConfigError(f"train.stft_hop ({hop}) must be <= its n_fft ({n_fft})")
    if t["block_windows"] % w["chunk"]:
        raise ConfigError(f"train.block_windows ({t['block_windows']}) must be a multiple of window.chunk ({w['chunk']})")


def check_masks(config: dict) -> None:
    mix = config["train"]["mask_mix"]
    if abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ConfigError(f"train.mask_mix: fractions must sum to 1, got {sum(mix.values()):g} ({mix})")


CHECKS: Checks = (
    (("model", "window"), check_model),
    (("train", "window"), check_loss),
    (("train",), check_masks),
)
