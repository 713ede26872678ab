"""One configuration: loaded, validated against the workflow's JSON schema, cross-checked.

The Snakefile and the command line both go through `validate_config`, so a bad value fails at load
time, before any job runs, with a message that names the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def _schema_errors(config: dict, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        if err.validator == "additionalProperties":
            out.append(f"{key}: {err.message} (unknown key)")
        else:
            out.append(f"{key}: {err.message}")
    return out


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate `config` in place (filling defaults) and return it; raise ConfigError naming the key."""
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    validate(config, str(schema_path), set_default=True)  # fills defaults of nested sections
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
    if config["source"] == "local" and not config["local"]["root"]:
        raise ConfigError("local.root: required when source is 'local' (the PhysioNet release folder)")
    check_model(config)


def check_model(config: dict) -> None:
    """Model and loss geometry, derived once from the config; a mismatch is an error here."""
    m, w, t = config["model"], config["window"], config["train"]
    if m["context_length"] != w["length"]:
        raise ConfigError(f"model.context_length ({m['context_length']}) must equal window.length ({w['length']})")
    if m["context_length"] % m["patch_length"] or m["patch_length"] >= m["context_length"]:
        raise ConfigError(
            f"model.patch_length ({m['patch_length']}) must divide model.context_length ({m['context_length']}) into 2 or more patches"
        )
    levels = m["adaptive_patching_levels"]
    if levels:
        factor = 2 ** (levels - 1)
        if m["d_model"] % factor or m["d_model"] // factor <= 4:
            raise ConfigError(
                f"model.d_model ({m['d_model']}) / 2**(model.adaptive_patching_levels-1) = {m['d_model'] / factor:g} "
                "must be an integer > 4 (TTM would silently disable a level otherwise)"
            )
    if m["pretrained"] and not m["revision"] and not Path(m["pretrained"]).is_dir():
        raise ConfigError(
            f"model.revision: required for the hub model {m['pretrained']!r} (TTM r1 with 1024 samples: 1024_96_v1); "
            f"if model.pretrained is meant as a local directory, {m['pretrained']!r} does not exist"
        )
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
