"""One configuration: loaded, validated against the package's JSON schema (jsonschema, defaults
filled), cross-checked. The Snakefile calls `validate_config` when the workflow loads, so a bad
value fails before any job runs, with a message that names the key. The step commands
(`python -m pipeline <step>`) take the sections the rule passes them, already validated.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from pipeline.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"  # package data (pyproject.toml)
SPLITS = ("train", "val", "test")

__all__ = ["ConfigError", "SPLITS", "validate_config", "load_config", "digest"]


def _validator(schema: dict):
    """A Draft 2020-12 validator that fills `default`s of missing properties as it validates
    (nested sections too: a section's default {} is filled, then its own properties)."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def _schema_errors(config: dict, schema: dict) -> list[str]:
    out = []
    for err in sorted(_validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        suffix = " (unknown key)" if err.validator == "additionalProperties" else ""
        out.append(f"{key}: {err.message}{suffix}")
    return out


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate `config` in place (filling defaults) and return it; raise ConfigError naming the key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    check_config(config)
    return config


def check_config(config: dict) -> None:
    """Cross-key rules the schema cannot express."""
    split = config["cases"]["split"]
    total = sum(split[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"cases.split: fractions must sum to 1, got {total:g} ({split})")
    window = config["window"]
    q = config["quality"]
    if q["hr_min_bpm"] >= q["hr_max_bpm"]:
        raise ConfigError(f"quality.hr_min_bpm ({q['hr_min_bpm']}) must be below quality.hr_max_bpm ({q['hr_max_bpm']})")
    for ch in ("ppg", "ecg"):
        if q[f"{ch}_ptp_min"] >= q[f"{ch}_ptp_max"]:
            raise ConfigError(f"quality.{ch}_ptp_min must be below quality.{ch}_ptp_max")
    fs = config["signals"]["target_fs"]
    if 60.0 / q["hr_min_bpm"] * fs * 2 > window["length"]:
        raise ConfigError(
            f"window.length ({window['length']}) must hold two beats at quality.hr_min_bpm "
            f"({q['hr_min_bpm']} bpm at {fs} Hz) for the heart-rate rule"
        )
    from pipeline.sources import source_class

    source_class(config["source"]).check_config(config[config["source"]])
    check_model(config)


def check_model(config: dict) -> None:
    """Model and loss geometry, derived once from the config; a mismatch is an error here."""
    from pipeline import backbones

    m, w, t = config["model"], config["window"], config["train"]
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
    if len(t["stft_n_fft"]) != len(t["stft_hop"]):
        raise ConfigError(f"train.stft_hop ({t['stft_hop']}) needs one hop per train.stft_n_fft ({t['stft_n_fft']})")
    for n_fft, hop in zip(t["stft_n_fft"], t["stft_hop"]):
        if n_fft > w["length"]:
            raise ConfigError(f"train.stft_n_fft ({n_fft}) must be <= window.length ({w['length']})")
        if hop > n_fft:
            raise ConfigError(f"train.stft_hop ({hop}) must be <= its n_fft ({n_fft})")
    if t["block_windows"] % w["chunk"]:
        raise ConfigError(f"train.block_windows ({t['block_windows']}) must be a multiple of window.chunk ({w['chunk']})")


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it (defaults filled)."""
    return validate_config(yaml.safe_load(Path(path).read_text()) or {})


def digest(obj) -> str:
    """Short stable digest of a JSON-able object (recorded in outputs to tie them to their config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
