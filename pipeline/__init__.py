"""vitalssl: VitalDB (and WFDB) PPG/ECG windows and self-supervised pretraining of granite-tsfm encoders.

Laid out by stage (docs/design.md, "File layout"): `data/` (sources to windows and labels),
`model/` (backbones, training, export), `evaluation/` (tasks, probes, report, ablations). At the
top only what every stage shares: `config` (schema validation; each stage hands in its own rules),
`io` (atomic writes, digests), `errors`, `channels`, `plots`, and the command line (`__main__`).
"""

__version__ = "0.1.0"
