"""TinyTimeMixer (granite-tsfm TTM) as a backbone: channel-independent patch mixer, built with
`scaling=None` (the pipeline normalizes) and no positional encoding; tokens = patches (N = P)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from pipeline.channels import NUM_CHANNELS
from pipeline.errors import ConfigError
from pipeline.model.backbones import GeometryError, PretrainedLoadError, how_to_fix
from pipeline.model.backbones._base import Backbone, check_checkpoint, shared_kwargs

os.environ.setdefault("TSFM_PYTHON_LOGGING_LEVEL", "WARNING")  # tsfm_public sets the root logger to INFO otherwise

log = logging.getLogger(__name__)
MODEL_TYPE = "tinytimemixer"


def check_config(m: dict) -> None:
    levels = m["ttm"]["adaptive_patching_levels"]
    if levels:
        factor = 2 ** (levels - 1)
        if m["d_model"] % factor or m["d_model"] // factor <= 4:
            raise ConfigError(
                f"model.d_model ({m['d_model']}) / 2**(model.ttm.adaptive_patching_levels-1) = {m['d_model'] / factor:g} "
                "must be an integer > 4 (TTM would silently disable a level otherwise)"
            )


def _config(m: dict):
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig

    return TinyTimeMixerConfig(
        **shared_kwargs(m), num_input_channels=NUM_CHANNELS, adaptive_patching_levels=m["ttm"]["adaptive_patching_levels"],
        mode="common_channel", scaling=None, use_positional_encoding=False,
    )


def _check(cfg, m: dict, source: str) -> None:
    levels = {"ttm.adaptive_patching_levels": (m["ttm"]["adaptive_patching_levels"], cfg.adaptive_patching_levels)}
    check_checkpoint(m, cfg, levels, source)


class TTMBackbone(Backbone):
    model_type = MODEL_TYPE

    def __init__(self, model):
        cfg = model.config
        if cfg.scaling not in (None, False):
            raise GeometryError(f"TTM scaling={cfg.scaling!r}: the pipeline normalizes windows itself; build with scaling=None")
        n = cfg.context_length // cfg.patch_length
        super().__init__(model, cfg.context_length, cfg.patch_length, cfg.d_model, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.model(past_values=x.transpose(1, 2)).last_hidden_state


def build(m: dict, pretrained_dir: Path | None) -> TTMBackbone:
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig, TinyTimeMixerForPrediction, TinyTimeMixerModel

    if pretrained_dir is None:
        return TTMBackbone(TinyTimeMixerModel(_config(m)))
    if not pretrained_dir.is_dir():
        raise PretrainedLoadError(f"pretrained weights {str(pretrained_dir)!r}: no such directory. " + how_to_fix(m))
    try:
        ckpt = TinyTimeMixerConfig.from_pretrained(pretrained_dir)
    except (OSError, ValueError) as e:
        raise PretrainedLoadError(f"cannot load the pretrained model in {pretrained_dir}: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0]}\n" + how_to_fix(m)) from e
    _check(ckpt, m, f"pretrained model {m['pretrained']!r}")
    # The one piece of surgery, before any optimizer exists and written into the config: inputs are
    # normalized by the pipeline (scaling=None) and carry two channels (channel-independent).
    full, info = TinyTimeMixerForPrediction.from_pretrained(
        pretrained_dir, scaling=None, num_input_channels=NUM_CHANNELS, dropout=m["dropout"], output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if k.startswith("backbone.")]
    if missing:
        raise PretrainedLoadError(f"pretrained model {m['pretrained']!r} lacks encoder weights {missing[:5]}... " + how_to_fix(m))
    log.info("loaded pretrained TTM encoder from %s", pretrained_dir)
    return TTMBackbone(full.backbone)


def from_config(config: dict) -> TTMBackbone:
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig, TinyTimeMixerModel

    return TTMBackbone(TinyTimeMixerModel(TinyTimeMixerConfig.from_dict(config)))


def load_export(directory: Path) -> TTMBackbone:
    from tsfm_public.models.tinytimemixer import TinyTimeMixerModel

    return TTMBackbone(TinyTimeMixerModel.from_pretrained(directory))
