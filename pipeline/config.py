"""One configuration: loaded, validated against the package's JSON schema (jsonschema, defaults
filled), cross-checked. The Snakefile calls `validate_config` when the workflow loads, so a bad
value fails before any job runs, with a message that names the key. The step commands
(`python -m pipeline <step>`) check the sections they are given with `validate_params`, so a step
run by hand fails the same way.

The cross-key rules the schema cannot express belong to the stages that read those keys: each
stage lists its own in `pipeline/<stage>/checks.py` as (sections, rule) pairs, and the caller hands
them in (`pipeline.evaluation.checks.ALL_CHECKS` holds every stage's). This module imports no stage
(docs/design.md, "File layout").
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from pipeline.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"  # package data (pyproject.toml)
SPLITS = ("train", "val", "test")

# A cross-key rule: the top-level sections it reads, and a function that raises ConfigError naming the key.
Check = tuple[tuple[str, ...], Callable[[dict], None]]
Checks = Sequence[Check]

__all__ = ["ConfigError", "SPLITS", "Check", "Checks", "validate_config", "validate_params", "load_config", "render_docs"]


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


# YAML 1.1 (PyYAML) reads a float without a dot or without a signed exponent as a string (1e-3,
# 5E4): `_coerce` turns such strings into the number they spell, so the file means what it says.
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _scalar(value, sub: dict):
    """`value` as the type `sub` wants, where it is a string that parses exactly (or an integral
    float where only an integer is allowed); otherwise unchanged."""
    types = sub.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)  # jsonschema takes 8.0 as an integer; the code gets an int
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None  # before the string check: --config "model={pretrained: null}" hands 'null'
    if "string" in types:
        return value
    if "integer" in types and _INT.fullmatch(text):
        return int(text)
    if ("number" in types or "integer" in types) and _FLOAT.fullmatch(text):
        number = float(text)
        return int(number) if "number" not in types and number.is_integer() else number
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value


def _coerce(instance, schema: dict) -> None:
    """String scalars where the schema wants a number, an integer, a boolean or null, converted in
    place where they parse exactly, in mappings and lists: Snakemake hands nested `--config` values
    as strings (`--config "train={epochs: 5}"` gives '5'), and YAML 1.1 reads `1e-3` as a string. A
    string that does not parse stays, and the schema rejects it naming the key."""
    if not isinstance(instance, dict):
        return
    for key, value in instance.items():
        sub = schema.get("properties", {}).get(key)
        if sub is None and isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
        if sub is None:
            continue
        if isinstance(value, dict):
            _coerce(value, sub)
        elif isinstance(value, list) and isinstance(sub.get("items"), dict):
            instance[key] = [_scalar(v, sub["items"]) for v in value]
        else:
            instance[key] = _scalar(value, sub)


def _hint(err) -> str:
    """What to do about one schema error, where it can be said."""
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        hints = []
        for extra in sorted(set(err.instance) - set(known)):
            close = difflib.get_close_matches(str(extra), known, n=1)
            hints.append(f"{extra!r}: did you mean {close[0]!r}?" if close else f"{extra!r}: known keys are {', '.join(known)}")
        return " (unknown key; " + "; ".join(hints) + ")"
    return ""


def _schema_errors(config: dict, schema: dict) -> list[str]:
    out = []
    for err in sorted(_validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path)):
        key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        out.append(f"{key}: {err.message}{_hint(err)}")
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
    _coerce(config, schema)  # first: "1e999" becomes inf, which the next check rejects
    errors = _not_finite(config) or _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict, checks: Checks) -> dict:
    """Validate `config` in place (filling defaults), then every rule of `checks`, and return it;
    raise ConfigError naming the key."""
    _check_schema(config, _schema())
    for sections, rule in checks:
        rule(config)
    return config


def validate_params(params: dict, checks: Checks) -> dict:
    """What a step command receives (`--params`: some top-level sections, as its rule passes them):
    the same schema on those sections, defaults filled, and every rule of `checks` whose sections
    are all there, so a step run by hand with a bad value fails naming the key. `tracks` (the source's
    track names in channel order, derived by the workflow) is checked for its shape."""
    schema = _schema()
    tracks = params.pop("tracks", None)
    if tracks is not None and (not isinstance(tracks, list) or len(tracks) != 2 or not all(isinstance(t, str) and t for t in tracks)):
        raise ConfigError(f"tracks: expected the two track names (PPG, ECG), got {tracks!r}")
    sub = dict(schema, properties={k: v for k, v in schema["properties"].items() if k in params})
    _check_schema(params, sub)
    for sections, rule in checks:
        if all(k in params for k in sections):
            rule(params)
    if tracks is not None:
        params["tracks"] = tracks
    return params


def load_config(path: str | Path, checks: Checks) -> dict:
    """Read a YAML config file and validate it (defaults filled) with `checks`."""
    return validate_config(yaml.safe_load(Path(path).read_text()) or {}, checks)


# ----------------------------------------------------------------------------- config/README.md
DOCS_HEADER = """# Configuration keys

Generated from `pipeline/config.schema.yaml` by `python -m pipeline config-docs > config/README.md`.
The workflow reads exactly the files named with `--configfile` (in order, a later file winning key by
key), or `config/config.yaml` when none is named, and validates the result against that schema when
it loads: unknown keys (with "did you mean"), wrong types and out-of-range values fail before any job
runs, naming the key.

- `config/config.yaml`: the default, the offline demo source with a tiny model (minutes on a laptop).
- `config/vitaldb.yaml`: real VitalDB over its API with TTM r1 (context 1024) as the starting encoder,
  one model: `snakemake --configfile config/vitaldb.yaml --profile workflow/profiles/slurm` (or
  `--cores N --resources gpu=1`).
- `config/vitaldb-ablations.yaml`: the ablation set (17 more pretrainings), named after vitaldb.yaml:
  `--configfile config/vitaldb.yaml config/vitaldb-ablations.yaml`.
- `config/mimic3.yaml`: MIMIC-III waveforms (the `wfdb` source) with TTM r1, one model; set `wfdb.root`.
- `config/tspulse-demo.yaml`: the demo with a tiny TSPulse backbone instead of TinyTimeMixer, named
  after the demo: `--configfile config/config.yaml config/tspulse-demo.yaml`.
- Another source: `--config source=wfdb wfdb='{root: /data/mimic3wdb-matched}'` (each source's section
  holds its own track names).

Editing a key reruns exactly the rules that use its section: `train.*`/`model.*` rerun pretraining and
what follows it; `window.*`/`quality.*` rerun windows onward; `signals.*` reruns resampling onward
(`signals.max_case_hours` and `max_native_hz` also rerun the download jobs, which keep fetched files:
they bound what validating a file may cost);
the active source's section reruns the case table and downloads onward (case files already fetched
are kept; a case that lacks newly named tracks fails at resampling, with that reason in the manifest).
"""


def _bounds(spec: dict) -> str:
    parts = []
    for key, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in spec:
            parts.append(f"{sym} {spec[key]}")
    if "enum" in spec:
        parts.append("one of " + ", ".join(map(str, spec["enum"])))
    return "; ".join(parts)


def render_docs() -> str:
    """config/README.md: every key of the schema with its type, default, bounds and description
    (a test keeps the file current)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    out = [DOCS_HEADER]
    for name, spec in schema["properties"].items():
        out.append(f"\n## `{name}`\n\n{spec['description']}\n")
        props = spec.get("properties")
        if not props:
            out.append(f"\n- type {spec['type']}, default `{json.dumps(spec.get('default'))}`; {_bounds(spec)}\n")
            continue
        out.append("\n| key | type | default | bounds | description |\n| --- | --- | --- | --- | --- |\n")
        for key, p in props.items():
            typ = p["type"] if isinstance(p["type"], str) else " or ".join(p["type"])
            out.append(f"| `{name}.{key}` | {typ} | `{json.dumps(p.get('default'))}` | {_bounds(p)} | {p['description']} |\n")
    return "".join(out)

