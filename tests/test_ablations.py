"""Ablation configs (pipeline/evaluation/ablations.py): merging, validation at load time, the summary."""

import csv
import json

import numpy as np
import pytest
import yaml

from pipeline.config import ConfigError, validate_config
from pipeline.evaluation.ablations import merge, run_config, trained_by, trained_runs, write_summary
from pipeline.evaluation.checks import ALL_CHECKS
from pipeline.evaluation.tasks import TASKS
from tests.conftest import REPO


def demo_config(**ablations) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ablations"] = ablations
    return validate_config(cfg, ALL_CHECKS)


def test_merge_overrides_nested_keys_and_replaces_the_rest():
    base = {"a": 1, "mix": {"x": 0.5, "y": 0.5}, "lst": [1, 2]}
    out = merge(base, {"mix": {"x": 0.2}, "lst": [3]})
    assert out == {"a": 1, "mix": {"x": 0.2, "y": 0.5}, "lst": [3]}
    assert base["mix"] == {"x": 0.5, "y": 0.5}  # the base is not modified


def test_run_config_applies_the_variant_and_the_seed_only():
    cfg = demo_config(seeds=[3, 4], variants={"small_mask": {"train": {"mask_ratio": 0.2}}, "same": {}})
    run = run_config(cfg, "small_mask", 4)
    assert run["train"]["mask_ratio"] == 0.2 and run["train"]["seed"] == 4
    assert run["model"] == cfg["model"] and run["window"] == cfg["window"]
    assert run["ablations"] == {} and cfg["train"]["mask_ratio"] == 0.4
    same = run_config(cfg, "same", cfg["train"]["seed"])
    frozen = dict(finetune_epochs=0, label_efficiency=False, baselines=False)  # the SSL encoder's frozen probes only
    assert same == dict(cfg, ablations={}, evaluate=dict(cfg["evaluate"], **frozen))
    with pytest.raises(ConfigError, match="no variant 'nope'"):
        run_config(cfg, "nope", 0)
    cfg = demo_config(variants={"no_scale": {"evaluate": {"scale_features": False}}})  # an evaluation-only variant
    run = run_config(cfg, "no_scale", 0)
    assert run["evaluate"] == dict(cfg["evaluate"], scale_features=False, finetune_epochs=0, label_efficiency=False, baselines=False)
    assert cfg["evaluate"]["scale_features"]


@pytest.mark.parametrize("override, needle", [
    ({"model": {"patch_length": 100}}, "model.patch_length"),         # a cross-key (geometry) rule
    ({"train": {"mask_ratio": 2.0}}, "train.mask_ratio"),             # a schema bound
    ({"train": {"mask_mix": {"cross": 0.5}}}, "train.mask_mix"),      # merged fractions no longer sum to 1
    ({"train": {"lerning_rate": 1e-3}}, "lerning_rate"),              # an unknown key
])
def test_a_bad_variant_fails_at_load_time_naming_it(override, needle):
    with pytest.raises(ConfigError) as e:
        demo_config(seeds=[0], variants={"ok": {}, "broken": override})
    assert "ablations.variants.broken" in str(e.value) and needle in str(e.value)


def test_variant_names_and_sections_are_checked():
    with pytest.raises(ConfigError, match="ablations.variants"):
        demo_config(variants={"../escape": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        demo_config(variants={"v": {"window": {"length": 512}}})  # only model, train and evaluate may vary


def _fake_run(root, variant, seed, best_val, hr_mae, split="val"):
    d = root / "ablations" / variant / f"seed{seed}"
    (d / "pretrain").mkdir(parents=True)
    (d / "eval").mkdir(parents=True)
    (d / "pretrain" / "summary.json").write_text(json.dumps({"best_val": best_val}))
    rec = {k: {"model": best_val / 2, "window_mean": 1.0} for k in ("random_patches", "ppg_from_ecg", "ecg_from_ppg")}
    tasks = {"heart_rate_ppg": {"results": {"ssl": {"r2": 0.5, "mae": hr_mae}, "random": {"mae": 9.0}}},
             "age": {"level": "subject"}}  # skipped: no results
    (d / "eval" / "metrics.json").write_text(json.dumps({"split": split, "model": str(d / "pretrain" / "model.pt"), "tasks": tasks,
                                                         "reconstruction": rec}))
    return d


def test_summary_has_one_row_per_run_and_nan_for_skipped_tasks(tmp_path):
    runs = [_fake_run(tmp_path, "b", 1, 0.9, 0.5), _fake_run(tmp_path, "a", 0, 0.7, 0.8),
            _fake_run(tmp_path, "b", 0, 1.1, 0.7)]
    write_summary(runs, tmp_path / "summary.tsv", tmp_path / "summary.png")
    rows = list(csv.DictReader((tmp_path / "summary.tsv").open(), delimiter="\t"))
    assert [(r["variant"], r["seed"]) for r in rows] == [("a", "0"), ("b", "0"), ("b", "1")]
    assert float(rows[1]["best_val_loss"]) == 1.1 and float(rows[2]["recon_ppg_from_ecg_mse"]) == 0.45
    assert float(rows[0]["heart_rate_ppg_mae"]) == 0.8
    assert np.isnan(float(rows[0]["age_mae"]))
    assert {f"{t.name}_{t.metric}" for t in TASKS} <= set(rows[0])
    assert (tmp_path / "summary.png").stat().st_size > 10_000


def test_a_variant_that_changes_only_the_evaluation_reuses_an_earlier_training(tmp_path):
    cfg = demo_config(seeds=[0, 1], variants={"base": {}, "no_scale": {"evaluate": {"scale_features": False}},
                                              "small": {"train": {"mask_ratio": 0.2}}, "small_again": {"train": {"mask_ratio": 0.2}}})
    assert trained_by(cfg) == {"base": "base", "no_scale": "base", "small": "small", "small_again": "small"}
    assert cfg["train"]["seed"] == 0  # so base at seed 0 would train the main run's model again: it uses the main run's
    assert trained_runs(cfg) == {("base", 0): None, ("base", 1): "base", ("no_scale", 0): None, ("no_scale", 1): "base",
                                 ("small", 0): "small", ("small", 1): "small", ("small_again", 0): "small", ("small_again", 1): "small"}
    base = _fake_run(tmp_path, "base", 0, 0.9, 0.5)
    shared = _fake_run(tmp_path, "no_scale", 0, 5.0, 0.7)  # its metrics name base's model: base's pretraining is read
    metrics = json.loads((shared / "eval" / "metrics.json").read_text())
    (shared / "eval" / "metrics.json").write_text(json.dumps(dict(metrics, model=str(base / "pretrain" / "model.pt"))))
    rows = write_summary([base, shared], tmp_path / "s.tsv", tmp_path / "s.png")
    assert [r["best_val_loss"] for r in rows] == [0.9, 0.9] and [r["heart_rate_ppg_mae"] for r in rows] == [0.5, 0.7]


def test_summary_never_reads_test_metrics(tmp_path):
    """Choices are made on the validation split: a run scored on test is refused, not summarised."""
    runs = [_fake_run(tmp_path, "a", 0, 0.7, 0.8), _fake_run(tmp_path, "b", 0, 0.9, 0.5, split="test")]
    with pytest.raises(ValueError, match="'test' split; choices read the validation split only"):
        write_summary(runs, tmp_path / "summary.tsv", tmp_path / "summary.png")
    assert not (tmp_path / "summary.tsv").exists()


def test_summary_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not an ablation run folder"):
        write_summary([tmp_path], tmp_path / "s.tsv", tmp_path / "s.png")


def test_the_summary_plot_shares_a_scale_per_measure_and_says_which_way_is_better(tmp_path):
    """Two AUROC panels on one scale (each was scaled to its own two points), the MSE panel on its own."""
    from pipeline.evaluation.ablations import plot_summary

    rows = [{"variant": v, "seed": 0, "best_val_loss": loss, "hypo_5min_auroc": a5, "hypo_15min_auroc": a15, "recon_x_mse": mse}
            for v, loss, a5, a15, mse in (("base", 1.0, 0.80, 0.60, 0.30), ("other", 1.2, 0.82, 0.66, 0.25))]
    xlims = plot_summary(rows, tmp_path / "s.png")
    assert xlims["hypo_5min_auroc"] == xlims["hypo_15min_auroc"]
    lo, hi = xlims["hypo_5min_auroc"]
    assert lo < 0.60 and hi > 0.82  # both panels' values inside the one scale
    assert xlims["recon_x_mse"] != xlims["hypo_5min_auroc"] and (tmp_path / "s.png").stat().st_size > 5000
