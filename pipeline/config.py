"""One configuration: loaded, validated against the package's JSON schema (jsonschema, defaults
filled), cross-checked. The Snakefile calls `validate_config` when the workflow loads, so a bad
value fails before any job runs, with a message that names the key. The step commands
(`python -m pipeline <step>`) check the sections they are given with `validate_params`, so a step
run by hand fails the same way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import yaml

from pipeline.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"  # package data (pyproject.toml)
SPLITS = ("train", "val", "test")

__all__ = ["ConfigError", "SPLITS", "validate_config", "validate_params", "load_config", "digest"]


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


def _not_finite(obj, key: str = "") -> list[str]:
    """Keys whose value is NaN or infinity (JSON Schema's `number` admits both; no user means them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{key}: {obj} is not a finite number"]
    if isinstance(obj, dict):
        return [e for k, v in obj.items() for e in _not_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(obj, list):
        return [e for i, v in enumerate(obj) for e in _not_finite(v, f"{key}[{i}]")]
    return []


def _check_schema(config: dict, schema: dict) -> None:
    errors = _not_finite(config) or _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict) -> dict:
    """Validate `config` in place (filling defaults) and return it; raise ConfigError naming the key."""
    _check_schema(config, _schema())
    for sections, rule in RULES:
        rule(config)
    return config


def validate_params(params: dict) -> dict:
    """What a step command receives (`--params`: some top-level sections, as its rule passes them):
    the same schema on those sections, defaults filled, and every cross-key rule whose sections are
    all there, so a step run by hand with a bad value fails naming the key. `tracks` (the source's
    track names in channel order, derived by the workflow) is checked for its shape."""
    schema = _schema()
    tracks = params.pop("tracks", None)
    if tracks is not None and (not isinstance(tracks, list) or len(tracks) != 2 or not all(isinstance(t, str) and t for t in tracks)):
        raise ConfigError(f"tracks: expected the two track names (PPG, ECG), got {tracks!r}")
    sub = dict(schema, properties={k: v for k, v in schema["properties"].items() if k in params})
    _check_schema(params, sub)
    for sections, rule in RULES:
        if all(k in params for k in sections):
            rule(params)
    if tracks is not None:
        params["tracks"] = tracks
    return params


def check_split(config: dict) -> None:
    split = config["cases"]["split"]
    total = sum(split[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"cases.split: fractions must sum to 1, got {total:g} ({split})")


def check_quality(config: dict) -> None:
    q = config["quality"]
    if q["hr_min_bpm"] >= q["hr_max_bpm"]:
        raise ConfigError(f"quality.hr_min_bpm ({q['hr_min_bpm']}) must be below quality.hr_max_bpm ({q['hr_max_bpm']})")
    for ch in ("ppg", "ecg"):
        if q[f"{ch}_ptp_min"] >= q[f"{ch}_ptp_max"]:
            raise ConfigError(f"quality.{ch}_ptp_min must be below quality.{ch}_ptp_max")


def check_window(config: dict) -> None:
    window, q, fs = config["window"], config["quality"], config["signals"]["target_fs"]
    if 60.0 / q["hr_min_bpm"] * fs * 2 > window["length"]:
        raise ConfigError(
            f"window.length ({window['length']}) must hold two beats at quality.hr_min_bpm "
            f"({q['hr_min_bpm']} bpm at {fs} Hz) for the heart-rate rule"
        )


def check_rates(config: dict) -> None:
    """The evaluation's filters and features (R-peak band-pass, spectral bands) lie below Nyquist."""
    from pipeline.features import highest_frequency_hz

    fs, top = config["signals"]["target_fs"], highest_frequency_hz()
    if fs / 2 <= top:
        raise ConfigError(f"signals.target_fs ({fs} Hz) must be above {2 * top:g} Hz: the evaluation filters and "
                          f"features reach {top:g} Hz, which must stay below Nyquist")


def check_source(config: dict) -> None:
    from pipeline.sources import source_class

    source_class(config["source"]).check_config(config[config["source"]])


def check_model(config: dict) -> None:
    """Model geometry, derived once from the config; a mismatch is an error here."""
    from pipeline import backbones

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


def check_labels(config: dict) -> None:
    for kind, (lo, hi) in config["labels"]["valid_mmHg"].items():
        if lo >= hi:
            raise ConfigError(f"labels.valid_mmHg.{kind}: low ({lo}) must be below high ({hi})")


def check_ablations(config: dict) -> None:
    from pipeline.ablations import check_ablations as check

    check(config)


# Cross-key rules the schema cannot express, each with the sections it reads.
RULES = (
    (("cases",), check_split),
    (("quality",), check_quality),
    (("window", "quality", "signals"), check_window),
    (("signals",), check_rates),
    (("source", "download"), check_source),  # steps given the full source section also get `download`
    (("model", "window"), check_model),
    (("train", "window"), check_loss),
    (("train",), check_masks),
    (("labels",), check_labels),
    (("ablations", "source", "model", "train", "window"), check_ablations),  # last: it reruns all of the above per variant
)


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it (defaults filled)."""
    return validate_config(yaml.safe_load(Path(path).read_text()) or {})


def digest(obj) -> str:
    """Short stable digest of a JSON-able object (recorded in outputs to tie them to their config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
