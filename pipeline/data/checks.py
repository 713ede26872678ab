"""The data stage's cross-key rules of the configuration (the schema checks each key alone):
case split, quality thresholds, window length, labels, and the active source's own section
(each source checks its section: `Source.check_config`). `pipeline.config` runs them when the
caller hands them in (docs/design.md, "File layout")."""

from __future__ import annotations

from pipeline.config import SPLITS, Checks
from pipeline.data.sources import source_class
from pipeline.errors import ConfigError


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


def check_source(config: dict) -> None:
    source_class(config["source"]).check_config(config[config["source"]])


def check_labels(config: dict) -> None:
    for kind, (lo, hi) in config["labels"]["valid_mmHg"].items():
        if lo >= hi:
            raise ConfigError(f"labels.valid_mmHg.{kind}: low ({lo}) must be below high ({hi})")


CHECKS: Checks = (
    (("cases",), check_split),
    (("quality",), check_quality),
    (("window", "quality", "signals"), check_window),
    (("source", "download"), check_source),  # steps given the full source section also get `download`
    (("labels",), check_labels),
)
