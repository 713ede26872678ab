"""Render config/README.md from the schema, so every key is documented (a test keeps it current).

    python -m pipeline.configdocs > config/README.md
"""

from __future__ import annotations

import json
import sys

import yaml

from pipeline.config import SCHEMA_PATH

HEADER = """# Configuration keys

Generated from `pipeline/config.schema.yaml` by `python -m pipeline.configdocs > config/README.md`.
The workflow validates `config/config.yaml` (or `--configfile`) against that schema when it loads:
unknown keys, wrong types and out-of-range values fail before any job runs, naming the key.

- `config/config.yaml`: the default, the offline demo source with a tiny model (minutes on a laptop).
- `config/vitaldb.yaml`: real VitalDB over its API with TTM r1 (context 1024) as the starting encoder:
  `snakemake --configfile config/vitaldb.yaml --profile workflow/profiles/slurm` (or `--cores N --resources gpu=1`).
- `config/tspulse-demo.yaml`: the demo with a tiny TSPulse backbone instead of TinyTimeMixer.
- Another source: `--config source=wfdb wfdb='{root: /data/mimic3wdb-matched}'` (each source's section
  holds its own track names).

Editing a key reruns exactly the rules that use its section: `train.*`/`model.*` rerun pretraining and
what follows it; `window.*`/`quality.*` rerun windows onward; `signals.*` reruns resampling onward;
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


def render() -> str:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    out = [HEADER]
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


if __name__ == "__main__":
    sys.stdout.write(render())
