"""TSPulse (granite-tsfm `tsfm_public.models.tspulse`) as a backbone: a dual-space TSMixer that
encodes each channel's time patches and the patches of its FFT, plus learnable register tokens.
The encoder is `TSPulseModel` (no reconstruction decoder, no heads); channel-independent
(`mode="common_channel"`) when built from scratch.

One normalization, one masking. The pipeline z-scores each window and channel
(`pipeline.model.preprocess.normalize`) and puts its mask token in the masked patches
(`pipeline.model.encoder.SSLModel`), so TSPulse is built (and a pretrained checkpoint is re-configured at
load time) with:

  scaling=None                    TSPulseModel picks its scaler by `scaling`: "mean"/"std"/True/"revin"
                                  build a real scaler, anything else `TSPulseNOPScaler`
                                  (modeling_tspulse.py:1537-1544), which returns the data unchanged
                                  with loc=0, scale=1 (:1234-1258). RevIN (the TSPulse default,
                                  configuration_tspulse.py:240) would z-score the window a second
                                  time, and over the observed points only.
  fft_applied_on="raw_ts"         with "scaled_ts" (the default) the model also builds a
                                  `TSPulseStdScaler` (modeling_tspulse.py:1549-1550) and runs it on
                                  every forward (:1611-1615). Its output only feeds the FFT *loss
                                  target* (:1687-1690); the encoder's FFT input is the scaler's output (:1656),
                                  i.e. the NOP-scaled = unchanged input either way. "raw_ts" takes
                                  the input itself (:1658) and drops the unused std scaler.
  mask_ratio=None, mask_type="block"   no `TSPulseMasking` is built (it is built when mask_ratio > 0
                                  or mask_type == "user", :1534-1535), so there is no random time
                                  masking and no learnable mask token, at train or at eval time.
  fft_mask_ratio=None             no `TSPulseFFTMasker` (built only when > 0, :1529-1530): the
                                  frequency tokens are never masked by the model.
  use_learnable_mask_token=False  (a mask token exists only inside TSPulseMasking; stated for the
                                  record in the exported config.json)
  channel_virtual_expand_scale=1  no virtual channel duplication (:1641-1642), so channels stay 2.
  num_input_channels=2, patch_stride=patch_length (non-overlapping patches, as TSPulse requires).

`forward` also passes `enable_masking=False` (:1623, :1679), and `TSPulseBackbone` refuses a model
that has a scaler other than TSPulseNOPScaler or any masker. The frequency tokens are the FFT of the
window exactly as the pipeline gave it, mask tokens included (fft_time_consistent_masking=True,
the default), so they carry no information from the masked samples.

What remains is TSPulse's architecture, not a rescaling of the input: `get_fft` divides the real and
the imaginary parts of each window's spectrum by their own max |.| (modeling_tspulse.py:2369-2373),
so the FFT tokens do not change when a window is multiplied by a positive factor, and an added
constant changes only the DC bin (and, through the max, the scale of the real part); `base_norm` is
a LayerNorm over all tokens x features of a channel before the mixer (:1720-1722); each mixer block
has its own LayerNorm. The time tokens see the pipeline's values unchanged: `TSPulseEncoding.patcher`
(a Linear) receives the [B, C, P, patch_length] patches of the input itself.

Tokens. TSPulseModel concatenates the time-patch embeddings and the FFT-patch embeddings along the
token axis (:1713), appends the register tokens (:1715, TSPulseAddLearnableRegisterTokens), and runs
the mixer over all of them; `last_hidden_state` is [B, C, N, D] with D = d_model (tokens are
concatenated, not features, so the width is not doubled) and, with P = context_length/patch_length
and R = model.tspulse.patch_register_tokens,

  N = 2P + R:  [0, P)          time patches, in time order (what the SSL head reconstructs)
               [P, 3P/2)       FFT real parts: rfft bins 0 .. L/2-1 (the Nyquist bin is dropped,
                               fft_remove_component="last"), patch_length bins per token
               [3P/2, 2P)      FFT imaginary parts, the same bins
               [2P, 2P+R)      register tokens (learned; input-independent before mixing)

(P even is a config rule here, so no token straddles the real and the imaginary half.) The time
tokens are already the first P tokens: no reordering is needed.

Pretrained checkpoints (ibm-granite/granite-timeseries-tspulse-r1 is loaded elsewhere as
`TSPulseForReconstruction` / `TSPulseForClassification`, whose encoder weights are `backbone.*`; an
export of this module has the same weights without the prefix; both are read): the config is read
with `TSPulseConfig.from_pretrained`, its geometry is checked against the model section, the
settings above (and num_input_channels=2, model.dropout) are written into the config, and the
encoder's weights are loaded strictly: a missing or mis-shaped encoder weight is a
PretrainedLoadError, never random weights. Weights of the parts
switched off are dropped: the time masker's mask token, and the RevIN scaler's affine pair (a, b),
which is folded into the time patcher (W -> a W, c -> c + b W 1), exact for the time tokens, with the
sign of `a` folded into the FFT patcher; the FFT of a z + b differs from that of z only in the DC bin
(by b L), which the fold cannot reproduce. The published r1 revisions are, by their names
(tspulse-hybrid-dualhead-512-p8-r1, tspulse-block-dualhead-512-p16-r1, ...), 512-sample models, so
with 1024-sample windows they fail the geometry check (model.context_length: config 1024 vs
checkpoint 512) instead of loading.

The export (`save_pretrained`) is the `TSPulseModel` with that config: its config.json says
model_type "tspulse", and its `num_patches` counts the register tokens (2P + R), as the config that
TSPulseForReconstruction hands to its backbone does; `TSPulseModel.from_pretrained` loads it as is.
"""

from __future__ import annotations

import copy
import json
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
MODEL_TYPE = "tspulse"

# Written into every TSPulse config this module builds or loads (module docstring).
NO_SCALING_NO_MASKING = {
    "scaling": None,
    "fft_applied_on": "raw_ts",
    "mask_ratio": None,
    "mask_type": "block",
    "fft_mask_ratio": None,
    "use_learnable_mask_token": False,
    "channel_virtual_expand_scale": 1,
    "num_input_channels": NUM_CHANNELS,
}
# Checkpoint weights of the parts that NO_SCALING_NO_MASKING switches off (dropped at load).
DROPPED_PREFIXES = ("time_masker.", "fft_masker.", "scaler.")
# Derived config attributes that TSPulseConfig.check_and_init_preprocessing recomputes.
DERIVED = ("num_patches",)


def check_config(m: dict) -> None:
    """TSPulse rules on the model section (raise ConfigError naming the key)."""
    L, p = m["context_length"], m["patch_length"]
    if L % 2:
        raise ConfigError(f"model.context_length ({L}) must be even for TSPulse (its FFT branch needs L/2 real + L/2 imaginary values)")
    if L % p == 0 and (L // p) % 2:
        raise ConfigError(
            f"model.patch_length ({p}): context_length/patch_length = {L // p} patches must be even for TSPulse, "
            "so its frequency tokens split into P/2 real-part and P/2 imaginary-part patches"
        )


def _config(m: dict):
    """A fresh TSPulse config from the model section."""
    from tsfm_public.models.tspulse import TSPulseConfig

    return TSPulseConfig(
        **shared_kwargs(m), mode="common_channel", fuse_fft=True, patch_register_tokens=m["tspulse"]["patch_register_tokens"],
        **NO_SCALING_NO_MASKING,
    )


def _encoder(cfg):
    """TSPulseModel for `cfg`, built exactly as TSPulseForReconstruction builds its backbone: the
    derived sizes recomputed, then the register tokens counted in `num_patches`."""
    from tsfm_public.models.tspulse import TSPulseModel
    from tsfm_public.models.tspulse.modeling_tspulse import register_token_config_update

    cfg = copy.deepcopy(cfg)
    for key in DERIVED:  # a saved config carries them (with or without the register tokens)
        if hasattr(cfg, key):
            delattr(cfg, key)
    cfg.check_and_init_preprocessing()
    return TSPulseModel(register_token_config_update(cfg))


def _is_one(scales) -> bool:
    return scales is None or all(s == 1 for s in scales)


def _check(cfg, m: dict, source: str) -> None:
    """The checkpoint's geometry must be the config's (GeometryError naming both values)."""
    if not cfg.fuse_fft:
        raise GeometryError(f"{source}: fuse_fft=False (a time-only TSPulse); this backbone is the dual-space (time + FFT) model")
    if cfg.channel_register_tokens is not None:
        raise GeometryError(f"{source}: channel_register_tokens={cfg.channel_register_tokens} (TSPulse allows none)")
    if not _is_one(cfg.num_patches_layerwise_scale) or not _is_one(cfg.d_model_layerwise_scale):
        raise GeometryError(
            f"{source}: num_patches_layerwise_scale={cfg.num_patches_layerwise_scale}, d_model_layerwise_scale="
            f"{cfg.d_model_layerwise_scale}: layers that merge tokens or change the width are not supported (one token per patch)"
        )
    registers = {"tspulse.patch_register_tokens": (m["tspulse"]["patch_register_tokens"], cfg.patch_register_tokens)}
    check_checkpoint(m, cfg, registers, source)


class TSPulseBackbone(Backbone):
    model_type = MODEL_TYPE

    def __init__(self, model):
        cfg = model.config
        if type(model.scaler).__name__ != "TSPulseNOPScaler" or model.time_masker is not None or model.fft_masker is not None:
            raise GeometryError(
                f"TSPulse scaling={cfg.scaling!r}, mask_ratio={cfg.mask_ratio!r}, fft_mask_ratio={cfg.fft_mask_ratio!r}: "
                "the pipeline normalizes and masks windows itself; build with scaling=None and no masking"
            )
        super().__init__(model, cfg.context_length, cfg.patch_length, cfg.d_model, cfg.num_patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 2, L] normalized -> [B, 2, 2P + R, d_model]: time patches, FFT real, FFT imaginary, registers."""
        self.check_input(x)
        return self.model(past_values=x.transpose(1, 2), enable_masking=False).last_hidden_state


def _load_failed(directory: Path, m: dict | None, what: str) -> PretrainedLoadError:
    return PretrainedLoadError(f"cannot load the TSPulse model in {directory}: {what}" + (f"\n{how_to_fix(m)}" if m else ""))


def _read_config(directory: Path, m: dict | None):
    """The directory's TSPulseConfig; PretrainedLoadError when it has none or another model type."""
    from tsfm_public.models.tspulse import TSPulseConfig

    try:
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        if model_type != MODEL_TYPE:
            raise ValueError(f"config.json has model_type {model_type!r}, not {MODEL_TYPE!r} (model.backbone must match the checkpoint)")
        return TSPulseConfig.from_pretrained(directory)
    except (OSError, ValueError) as e:
        raise _load_failed(directory, m, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _read_state(directory: Path, m: dict | None) -> dict[str, torch.Tensor]:
    """The encoder's tensors: `backbone.*` of a TSPulseFor* checkpoint, or all of a TSPulseModel's."""
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(directory / "model.safetensors")
    elif (directory / "pytorch_model.bin").is_file():
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise _load_failed(directory, m, "no model.safetensors (or pytorch_model.bin)")
    if any(k.startswith("backbone.") for k in state):
        return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _fold_revin_affine(state: dict[str, torch.Tensor]) -> None:
    """Fold a RevIN affine pair (normalized * a + b, modeling_tspulse.py:994) into the patchers, in
    place: time patcher W -> a W, c -> c + b W 1 (exact); FFT patcher W -> sign(a) W (the max-abs
    normalization of get_fft removes |a|; the b L added to the DC bin is not reproduced)."""
    if "scaler.affine_weight" not in state or "time_encoding.patcher.weight" not in state:
        return  # nothing to fold (a missing patcher is reported by _load_weights)
    a, b = state.pop("scaler.affine_weight").reshape(()), state.pop("scaler.affine_bias").reshape(())
    w = state["time_encoding.patcher.weight"]
    state["time_encoding.patcher.bias"] = state["time_encoding.patcher.bias"] + b * w.sum(dim=1)
    state["time_encoding.patcher.weight"] = a * w
    if "fft_encoding.patcher.weight" in state:
        state["fft_encoding.patcher.weight"] = torch.sign(a) * state["fft_encoding.patcher.weight"]
    log.info("folded the checkpoint's RevIN affine (a=%.4g, b=%.4g) into the patchers", a.item(), b.item())


def _load_weights(encoder, state: dict[str, torch.Tensor], directory: Path, m: dict | None) -> None:
    """Load the encoder strictly: every encoder weight from the checkpoint, with its shape; only the
    weights of the switched-off scaler/maskers may be left over."""
    _fold_revin_affine(state)
    try:
        missing, unexpected = encoder.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise _load_failed(directory, m, " ".join(str(e).split())[:500]) from e
    extra = [k for k in unexpected if not k.startswith(DROPPED_PREFIXES)]
    if missing or extra:
        raise _load_failed(directory, m, f"encoder weights missing {missing[:5]}, unknown {extra[:5]}")
    if unexpected:
        log.info("dropped the weights of the switched-off parts: %s", ", ".join(unexpected))


def build(m: dict, pretrained_dir: Path | None) -> TSPulseBackbone:
    """From scratch (random weights) when pretrained_dir is None, else the checkpoint's encoder."""
    if pretrained_dir is None:
        return TSPulseBackbone(_encoder(_config(m)))
    if not pretrained_dir.is_dir():
        raise PretrainedLoadError(f"pretrained weights {str(pretrained_dir)!r}: no such directory. " + how_to_fix(m))
    ckpt = _read_config(pretrained_dir, m)
    _check(ckpt, m, f"pretrained model {m['pretrained']!r}")
    # The one piece of surgery, before any optimizer exists and written into the config: two channels,
    # no in-model scaling or masking (module docstring), the configured dropout.
    ckpt.update(dict(NO_SCALING_NO_MASKING, dropout=m["dropout"]))
    encoder = _encoder(ckpt)
    _load_weights(encoder, _read_state(pretrained_dir, m), pretrained_dir, m)
    log.info("loaded pretrained TSPulse encoder from %s", pretrained_dir)
    return TSPulseBackbone(encoder)


def from_config(config: dict) -> TSPulseBackbone:
    """Random weights from a saved TSPulseModel config (a trained checkpoint's own config)."""
    from tsfm_public.models.tspulse import TSPulseConfig

    return TSPulseBackbone(_encoder(TSPulseConfig.from_dict(config)))


def load_export(directory: Path) -> TSPulseBackbone:
    """An exported encoder (config.json + model.safetensors of a TSPulseModel); its config wins."""
    directory = Path(directory)
    encoder = _encoder(_read_config(directory, None))
    _load_weights(encoder, _read_state(directory, None), directory, None)
    return TSPulseBackbone(encoder)
