"""The SSL model: an encoder (a channel-independent backbone from pipeline.model.backbones, then an
optional block that mixes the channels) plus a mask token and a linear head that maps each patch
token back to its `patch_length` samples. Built once from the validated `model` section; nothing
about its shapes changes after construction (docs/design.md, "Normalization and masking").

The encoder is what the export saves and what embeddings come from: `Encoder.save` writes the
backbone's own `config.json` + `model.safetensors` (loadable by granite-tsfm as before) and, with
`model.channel_mixing: mixer`, the mixer's `channel_mixer.json` + `channel_mixer.safetensors` next
to them; `Encoder.load` reads both back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pipeline.channels import NUM_CHANNELS
from pipeline.model import backbones
from pipeline.model.backbones._base import check_geometry
from pipeline.model.preprocess import normalize

MIXER_CONFIG = "channel_mixer.json"
MIXER_WEIGHTS = "channel_mixer.safetensors"


class ChannelMixer(nn.Module):
    """Mixes the channels at each token position: tokens [B, C, N, D] -> [B, C, N, D].

    The C tokens of one position (for both backbones the same time patch, FFT bin or register of
    every channel) are concatenated and pass a pre-norm residual MLP, h + MLP(LayerNorm([h_1..h_C])).
    The backbone's tokens already carry each channel's context over time, so a PPG token here can
    take the timing of the ECG beats around it (pulse arrival). The MLP's last layer starts at zero:
    at initialisation the mixer is the identity and a pretrained backbone's tokens pass unchanged.
    """

    def __init__(self, channels: int, d_model: int, expansion_factor: int, dropout: float):
        super().__init__()
        self.channels, self.d_model, self.expansion_factor, self.dropout = channels, d_model, expansion_factor, dropout
        width = channels * d_model
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, expansion_factor * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(expansion_factor * width, width), nn.Dropout(dropout))
        nn.init.zeros_(self.mlp[3].weight)
        nn.init.zeros_(self.mlp[3].bias)

    def config(self) -> dict:
        return {"type": "mixer", "channels": self.channels, "d_model": self.d_model, "expansion_factor": self.expansion_factor,
                "dropout": self.dropout}

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, C, N, D = h.shape
        z = h.transpose(1, 2).reshape(B, N, C * D)
        z = z + self.mlp(self.norm(z))
        return z.reshape(B, N, C, D).transpose(1, 2)


def build_mixer(model_cfg: dict, d_model: int) -> ChannelMixer | None:
    """The configured channel mixing (`model.channel_mixing`): None keeps the channels independent."""
    if model_cfg["channel_mixing"] == "none":
        return None
    return ChannelMixer(NUM_CHANNELS, d_model, model_cfg["expansion_factor"], model_cfg["dropout"])


class Encoder(nn.Module):
    """Normalized windows [B, C, L] -> tokens [B, C, N, D]: the backbone, then the channel mixer (if any)."""

    def __init__(self, backbone, mixer: ChannelMixer | None = None):
        super().__init__()
        self.backbone = backbone
        self.mixer = mixer
        for k in ("context_length", "patch_length", "num_patches", "d_model", "num_tokens"):
            setattr(self, k, getattr(backbone, k))

    @property
    def channel_mixing(self) -> str:
        return "none" if self.mixer is None else "mixer"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(x)
        return h if self.mixer is None else self.mixer(h)

    def save(self, directory) -> None:
        """The backbone's config.json + model.safetensors; the mixer's config and weights next to them."""
        from safetensors.torch import save_file

        directory = Path(directory)
        self.backbone.save_pretrained(directory)
        if self.mixer is not None:
            (directory / MIXER_CONFIG).write_text(json.dumps(self.mixer.config(), indent=2) + "\n")
            save_file({k: v.contiguous() for k, v in self.mixer.state_dict().items()}, directory / MIXER_WEIGHTS)

    @classmethod
    def load(cls, directory) -> "Encoder":
        """An encoder saved by `save`: the backbone by `pipeline.model.backbones.load_export`, and the mixer
        when the directory has one (strictly: every weight, with its shape)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        mixer = None
        if (directory / MIXER_CONFIG).is_file():
            cfg = json.loads((directory / MIXER_CONFIG).read_text())
            if cfg.pop("type") != "mixer":
                raise ValueError(f"{directory / MIXER_CONFIG}: unknown channel mixer type")
            mixer = ChannelMixer(**cfg)
            mixer.load_state_dict(load_file(directory / MIXER_WEIGHTS))
        return cls(backbones.load_export(directory), mixer).eval()


class SSLModel(nn.Module):
    def __init__(self, model_cfg: dict, backbone=None, pretrained=None):
        """`backbone` given (tests, a checkpoint being rebuilt), or built from `model_cfg` with weights
        from the local directory `pretrained` (None: random initialisation)."""
        super().__init__()
        b = backbone if backbone is not None else backbones.build(model_cfg, pretrained)
        check_geometry({k: (model_cfg[k], getattr(b, k)) for k in ("context_length", "patch_length", "d_model")}, "backbone")
        self.encoder = Encoder(b, build_mixer(model_cfg, b.d_model))
        self.context_length = b.context_length
        self.patch_length = b.patch_length
        self.num_patches = b.num_patches
        # One learned vector in sample space per channel, put in place of every masked patch.
        self.mask_token = nn.Parameter(torch.zeros(NUM_CHANNELS, b.patch_length))
        self.head = nn.Linear(b.d_model, b.patch_length)

    @property
    def backbone(self):
        return self.encoder.backbone

    def encoder_input(self, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """What the encoder sees in training: raw x [B, C, L] z-scored with the statistics of its
        visible samples, masked patches (patch_mask [B, C, P], True = masked) replaced by the mask token."""
        hidden = patch_mask.repeat_interleave(self.patch_length, dim=-1)
        z = normalize(x, visible=~hidden)
        return torch.where(hidden, self.mask_token.repeat(1, self.num_patches).to(z.dtype), z)

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct raw windows x [B, C, L] from their unmasked patches, in the scale of the loss
        target `normalize(x)` (each window and channel z-scored over all its samples)."""
        hidden = self.encoder(self.encoder_input(x, patch_mask))[:, :, : self.num_patches]  # patch tokens, in time order
        return self.head(hidden).flatten(-2)
