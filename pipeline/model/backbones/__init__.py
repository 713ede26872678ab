"""Backbones: one module per model family, each behind the interface of `base.Backbone`
(docs/design.md, "Backbones"). This file is the registry; it imports no torch, so the workflow
can ask it where pretrained weights live without loading a model.

A backbone module defines:
  MODEL_TYPE                      the `model_type` its export's config.json carries
  check_config(model_cfg)         geometry rules of that family (raise ConfigError naming the key)
  build(model_cfg, pretrained_dir) -> Backbone   from scratch (None) or from a local checkpoint
  from_config(config_dict) -> Backbone           random weights, from a saved granite-tsfm config
  load_export(directory) -> Backbone             an exported encoder, its own config wins
Nothing outside these modules imports a granite-tsfm model class.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import re
import shutil
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.io import atomic_dir

log = logging.getLogger(__name__)
# Every module of this package is a backbone named after it, except shared helpers (`_name`).
BACKBONES = {m.name: f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
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
    """True when model.pretrained names a hub model `owner/name` (fetched by the local `pretrained`
    rule); anything else (an existing folder, or a path such as /x, ./x, ~/x, a/b/c) is a local folder."""
    src = model_cfg["pretrained"]
    return bool(src) and not Path(src).expanduser().exists() and HUB_ID.fullmatch(src) is not None


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


def _module_for(model_type: str):
    for name in BACKBONES:
        mod = module(name)
        if mod.MODEL_TYPE == model_type:
            return mod
    raise ValueError(f"model_type {model_type!r} is not a known backbone ({', '.join(BACKBONES)})")


def from_config(config: dict):
    """A backbone with random weights from a saved granite-tsfm config (dict with `model_type`):
    how a trained checkpoint is rebuilt before its weights are loaded (its own config wins)."""
    return _module_for(config["model_type"]).from_config(config)


def load_export(directory: str | Path):
    """An exported encoder (config.json + model.safetensors), whatever its backbone."""
    directory = Path(directory)
    return _module_for(json.loads((directory / "config.json").read_text()).get("model_type")).load_export(directory)


def how_to_fix(model_cfg: dict) -> str:
    return (
        "To fix: (a) on a machine with internet run "
        f"`huggingface-cli download {model_cfg['pretrained']} --revision {model_cfg['revision']}`, point HF_HOME at "
        "that cache where Snakemake runs, and rerun (the `pretrained` rule copies it into resources/pretrained/); "
        "or (b) set model.pretrained to a local directory holding config.json + model.safetensors; "
        "or (c) set model.pretrained: null to train from scratch (random initialisation)."
    )


def fetch_pretrained(model_cfg: dict, dest: str | Path) -> None:
    """Put model.pretrained @ model.revision into `dest`: from the Hugging Face cache when it is
    there (offline too), else downloaded into the cache; the files are copied into a temporary
    folder, checked to be a checkpoint of model.backbone, and published by renaming the folder.
    Runs where Snakemake runs (the login node on a cluster); the GPU job never touches the network
    and checks the geometry when it loads the folder. model_cfg needs backbone, pretrained, revision."""
    from huggingface_hub import snapshot_download

    with atomic_dir(dest) as tmp:
        try:
            snapshot = Path(snapshot_download(model_cfg["pretrained"], revision=model_cfg["revision"],
                                              allow_patterns=["config.json", "*.safetensors", "*.bin", "*.md"]))
        except Exception as e:  # noqa: BLE001 -- every hub/cache failure gets the same instructions
            raise PretrainedLoadError(
                f"cannot fetch the pretrained model {model_cfg['pretrained']!r} (revision {model_cfg['revision']}): "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n" + how_to_fix(model_cfg)
            ) from e
        for f in snapshot.iterdir():  # the cache's files are links into its blob store: copy the content
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        expected = module(model_cfg["backbone"]).MODEL_TYPE
        found = json.loads((tmp / "config.json").read_text()).get("model_type") if (tmp / "config.json").is_file() else None
        if found != expected:
            raise PretrainedLoadError(f"{model_cfg['pretrained']} @ {model_cfg['revision']}: config.json has model_type "
                                      f"{found!r}, model.backbone {model_cfg['backbone']!r} needs {expected!r}")
    log.info("pretrained %s @ %s -> %s", model_cfg["pretrained"], model_cfg["revision"], dest)
