"""Ablations as a workflow feature (docs/design.md, "Ablations").

The config's `ablations` section names variants, each a set of overrides of `model`, `train` and `evaluate`,
and seeds. Every (variant, seed) is one run, pretrained, exported and evaluated under
`results/<source>/ablations/<variant>/seed<seed>/` from the same shards as the main run, and scored
on the validation split (the test split is the main run's, scored once). A variant that trains
the same model as an earlier one (it changes only `evaluate`) is evaluated on that one's encoder
(`trained_by`), not trained again, and a run that trains the main run's model (a `base` variant at
the main run's seed) is evaluated on the main run's encoder (`trained_runs`). `run_config`
derives a run's config; `check_ablations` validates every variant's merged config when the
workflow loads; `write_summary` gathers the runs into `summary.tsv` and a plot.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from pipeline.config import Checks, validate_config
from pipeline.errors import ConfigError
from pipeline.evaluation.tasks import TASKS
from pipeline.io import read_json, write_text
from pipeline.plots import panel_grid, save_figure

SECTIONS = ("model", "train", "evaluate")  # what a variant may override
RUN_DIR = re.compile(r"(?:^|/)ablations/(?P<variant>[^/]+)/seed(?P<seed>\d+)/?$")


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: nested mappings merge key by key; other values replace."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def variants(config: dict) -> dict:
    """The ablation variants that run: `ablations.variants`, or none when `ablations.enabled` is false."""
    a = config["ablations"]
    return a["variants"] if a.get("enabled", True) else {}


def run_config(config: dict, variant: str, seed: int) -> dict:
    """The full config of one ablation run: the main config with the variant's overrides and
    train.seed = seed; it has no ablations of its own, and its evaluation probes the frozen encoders
    only, without baselines or label-efficiency curves (evaluate.finetune_epochs = 0, label_efficiency =
    false, baselines = false: the summary compares the variants' SSL encoders by their main metrics;
    fine-tuning, the baselines and label efficiency belong to the main evaluation)."""
    active = variants(config)
    if variant not in active:
        raise ConfigError(f"ablations.variants: no variant {variant!r} that runs (have {sorted(active)})")
    cfg = copy.deepcopy(config)
    cfg["ablations"] = {}
    for section in SECTIONS:
        cfg[section] = merge(config[section], active[variant].get(section, {}))
    cfg["train"]["seed"] = int(seed)
    cfg["evaluate"].update(finetune_epochs=0, label_efficiency=False, baselines=False)
    return cfg


def trained_by(config: dict) -> dict[str, str]:
    """{variant: the variant whose pretraining it uses}: a variant whose merged `model` and `train`
    equal an earlier one's (one that changes only `evaluate`, say) is evaluated on that variant's
    encoder instead of training the same model again."""
    seed = config["ablations"]["seeds"][0]
    out, firsts = {}, []
    for name in variants(config):
        cfg = run_config(config, name, seed)
        first = next((v for v, c in firsts if all(c[k] == cfg[k] for k in ("model", "train"))), None)
        if first is None:
            firsts.append((name, cfg))
        out[name] = first or name
    return out


def trained_runs(config: dict) -> dict[tuple[str, int], str | None]:
    """{(variant, seed): the variant whose pretraining at that seed the run evaluates (`trained_by`),
    or None where that pretraining would be the main run's own (same `model` and `train` sections):
    the main run's encoder is evaluated instead of training the same model twice."""
    by = trained_by(config)
    out = {}
    for variant in variants(config):
        for seed in config["ablations"]["seeds"]:
            cfg = run_config(config, by[variant], seed)
            out[variant, int(seed)] = None if all(cfg[k] == config[k] for k in ("model", "train")) else by[variant]
    return out


def check_ablations(config: dict, checks: Checks) -> None:
    """Every variant's merged config passes the schema and `checks` (every stage's cross-key rules:
    `pipeline.evaluation.checks.STAGE_CHECKS`), so a bad override fails when the workflow loads,
    naming the variant."""
    for name in variants(config):
        try:
            validate_config(run_config(config, name, config["ablations"]["seeds"][0]), checks)
        except ConfigError as e:
            raise ConfigError(f"ablations.variants.{name}: {e}") from e


# ----------------------------------------------------------------------------- summary
def main_metrics(metrics: dict) -> dict[str, float]:
    """{"<task>_<metric>": value} of the SSL encoder for every task the evaluation scored
    (the task table's main metric); NaN where the task was skipped. Only from an evaluation scored on
    the validation split: every choice is made there, never on test (docs/design.md, "The locked
    test split")."""
    if metrics.get("split") != "val":
        raise ValueError(f"ablation summary: metrics scored on the {metrics.get('split', 'unknown')!r} split; "
                         "choices read the validation split only (the ablation_evaluate rule scores val)")
    out = {}
    for task in TASKS:
        res = metrics.get("tasks", {}).get(task.name, {}).get("results", {}).get("ssl", {})
        out[f"{task.name}_{task.metric}"] = float(res.get(task.metric, math.nan))
    return out


def run_row(run_dir: str | Path) -> dict:
    """One summary row from a run folder results/<source>/ablations/<variant>/seed<seed>."""
    m = RUN_DIR.search(str(run_dir).replace("\\", "/"))
    if not m:
        raise ValueError(f"{run_dir}: not an ablation run folder (…/ablations/<variant>/seed<seed>)")
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "eval" / "metrics.json")
    summary = read_json(Path(metrics["model"]).parent / "summary.json")  # the pretraining it evaluated (`trained_by`)
    row = {"variant": m["variant"], "seed": int(m["seed"]), "best_val_loss": float(summary["best_val"])}
    for name, rec in metrics["reconstruction"].items():  # evaluate.RECONSTRUCTION_TASKS (metrics.json sorts them)
        if isinstance(rec, dict):
            row[f"recon_{name}_mse"] = float(rec["model"])
    return row | main_metrics(metrics)


def to_tsv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


LOWER_IS_BETTER = ("loss", "mse", "mae")  # column suffixes where a smaller value is better


def _kind(column: str) -> str:
    """What a column measures, for shared scales: its last word (auroc, mae, mse, loss, r2, ...)."""
    return column.rsplit("_", 1)[-1]


def plot_summary(rows: list[dict], path: str | Path) -> dict[str, tuple[float, float]]:
    """One panel per column: every run as a dot, and mean ± sd per variant (a line, not a bar).
    Panels of the same measure share one scale (every AUROC panel, every reconstruction MSE), and
    each title says which direction is better. Returns {column: its panel's x limits}."""
    columns = [k for k in rows[0] if k not in ("variant", "seed") and any(np.isfinite(r[k]) for r in rows)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    limits = {}
    for col in columns:
        vals = np.array([r[col] for r in rows], dtype=float)
        lo, hi = limits.get(_kind(col), (np.inf, -np.inf))
        limits[_kind(col)] = (min(lo, np.nanmin(vals)), max(hi, np.nanmax(vals)))
    fig, axes = panel_grid(len(columns), 3.6, 0.45 * len(variants) + 1.4)
    for ax, col in zip(axes, columns):
        for i, v in enumerate(variants):
            vals = np.array([r[col] for r in rows if r["variant"] == v], dtype=float)
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                continue
            ax.plot(vals, np.full(len(vals), i), "o", color="C7", ms=4, alpha=0.7)
            sd = vals.std(ddof=1) if len(vals) > 1 else 0.0
            ax.errorbar(vals.mean(), i, xerr=sd, fmt="D", color="C0", ms=6, capsize=3)
        lo, hi = limits[_kind(col)]
        pad = 0.08 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_yticks(range(len(variants)), variants, fontsize=8)
        ax.set_ylim(-0.7, len(variants) - 0.3)
        better = "lower" if col.endswith(LOWER_IS_BETTER) else "higher"
        ax.set_title(f"{col.replace('_', ' ')}\n({better} is better; one scale per {_kind(col)})", fontsize=8)
        ax.grid(axis="x", lw=0.3)
    xlims = {col: tuple(float(v) for v in ax.get_xlim()) for ax, col in zip(axes, columns)}
    fig.tight_layout()
    save_figure(fig, path)
    return xlims


def write_summary(run_dirs: list[str | Path], tsv: str | Path, png: str | Path) -> list[dict]:
    rows = sorted((run_row(d) for d in run_dirs), key=lambda r: (r["variant"], r["seed"]))
    if not rows:
        raise ValueError("ablation summary: no runs given")
    write_text(tsv, to_tsv(rows))
    plot_summary(rows, png)
    return rows
