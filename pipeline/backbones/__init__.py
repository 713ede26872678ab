"""Backbones: one module per model family, each behind the interface of `base.Backbone`
(docs/design.md, "Backbones"). This file is the registry; it imports no torch, so the workflow
can ask it where pretrained weights live without loading a model.

A backbone module defines:
  MODEL_TYPE                      the `model_type` its export's config.json carries
  check_config(model_cfg)         geometry rules of that family (raise ConfigError naming the key)
  build(model_cfg, pretrained_dir) -> Backbone   from scratch (None) or from a local checkpoint
  load_export(directory) -> Backbone             an exported encoder, its own config wins
Nothing outside these modules imports a granite-tsfm model class.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.io import atomic_dir

log = logging.getLogger(__name__)
BACKBONES = {"ttm": "pipeline.backbones.ttm", "tspulse": "pipeline.backbones.tspulse"}
PRETRAINED_ROOT = Path("resources/pretrained")


class PretrainedLoadError(RuntimeError):
    """The requested pretrained weights cannot be loaded; the message says how to fix it."""


class GeometryError(ValueError):
    """A config and a checkpoint disagree on a shape; the message names both values."""


def module(name: str):
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone {name!r} (known: {', '.join(BACKBONES)})")
    return importlib.import_module(BACKBONES[name])


def is_hub_id(model_cfg: dict) -> bool:
    """True when model.pretrained names a hub model (fetched by the local `pretrained` rule)."""
    src = model_cfg["pretrained"]
    return bool(src) and not Path(src).expanduser().is_absolute() and not Path(src).is_dir()


def pretrained_dir(model_cfg: dict, root: str | Path = PRETRAINED_ROOT) -> Path | None:
    """Where the training and evaluation jobs load pretrained weights from: the local directory
    named by model.pretrained, or `resources/pretrained/<owner>--<name>@<revision>/` for a hub id
    (written by `fetch_pretrained` on the machine that runs Snakemake); None from scratch."""
    src = model_cfg["pretrained"]
    if not src:
        return None
    if not is_hub_id(model_cfg):
        return Path(src).expanduser()
    return Path(root) / f"{src.replace('/', '--')}@{model_cfg['revision']}"


def build(model_cfg: dict, pretrained: str | Path | None = None):
    """The configured backbone: random weights when `pretrained` is None, else loaded from that
    local directory (never from the network)."""
    return module(model_cfg["backbone"]).build(model_cfg, None if pretrained is None else Path(pretrained))


def load_export(directory: str | Path):
    """An exported encoder (config.json + model.safetensors), whatever its backbone."""
    directory = Path(directory)
    model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    for name in BACKBONES:
        mod = module(name)
        if mod.MODEL_TYPE == model_type:
            return mod.load_export(directory)
    raise ValueError(f"{directory}/config.json: model_type {model_type!r} is not a known backbone ({', '.join(BACKBONES)})")


def how_to_fix(model_cfg: dict) -> str:
    return (
        "To fix: (a) on a machine with internet run "
        f"`huggingface-cli download {model_cfg['pretrained']} --revision {model_cfg['revision']}` and point HF_HOME at "
        "that cache, then rerun (the `pretrained` rule copies it into resources/pretrained/); "
        "or (b) set model.pretrained to a local directory holding config.json + model.safetensors; "
        "or (c) set model.pretrained: null to train from scratch (random initialisation)."
    )


def fetch_pretrained(model_cfg: dict, dest: str | Path) -> None:
    """Download (or take from the Hugging Face cache) model.pretrained @ model.revision into `dest`,
    check that it loads with the configured geometry, then publish it by renaming a complete folder.
    Runs where Snakemake runs (the login node on a cluster); the GPU job never touches the network."""
    from huggingface_hub import snapshot_download

    with atomic_dir(dest) as tmp:
        try:
            snapshot_download(model_cfg["pretrained"], revision=model_cfg["revision"], local_dir=tmp,
                              allow_patterns=["config.json", "*.safetensors", "*.bin", "*.md", "generation_config.json"])
        except Exception as e:  # noqa: BLE001 -- every hub/cache failure gets the same instructions
            raise PretrainedLoadError(
                f"cannot fetch the pretrained model {model_cfg['pretrained']!r} (revision {model_cfg['revision']}): "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n" + how_to_fix(model_cfg)
            ) from e
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        build(model_cfg, tmp)  # geometry checked here, before anything is published
    log.info("pretrained %s @ %s -> %s", model_cfg["pretrained"], model_cfg["revision"], dest)
