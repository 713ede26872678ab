"""What the VitalDB runs cost in GPU hours (issue 20, "Ablations by choice"): pretraining runs x epochs
x training windows per epoch (plus each epoch's validation pass), divided by a training speed in
windows per second. JSON on stdout; README ("Sources") and BENCHMARKS.md quote it.

Runs: from the config files as the workflow layers them (the later file wins key by key), with the
ablation runs that train a model of their own (`pipeline.evaluation.ablations.trained_runs`: a
variant that changes only the probes reuses another's encoders, and a run that would train the main
run's model reuses the main run's).

Windows per epoch: `--manifest` (a finished run's `results/<source>/windows/manifest.json`, its
kept train windows), else VitalDB's ceiling: 6,388 cases x 3.2 h mean length (Lee et al. 2022, Sci
Data 9:279) in non-overlapping 8.192 s windows, times the config's train fraction, none rejected.

Speed, in this order:
- `--bench-json`: the training step with the real loader (`step_with_loader`) of
  benchmarks/bench_train.py's JSON at the config's batch size (on a GPU: benchmarks/gpu_check.sh);
- `--windows-per-s`: a speed measured elsewhere;
- otherwise an ESTIMATE, labelled as such: each run's training step's floating-point operations per
  window, counted here (`torch.utils.flop_counter` over forward + backward of its model and objective;
  matrix products only; a channel-independent variant has fewer), against the bf16 dense peak of an H100/H200 SXM (989 TFLOP/s, NVIDIA's datasheet) at
  assumed model-FLOP utilisations of 1%, 3% and 10%: a model this small (d_model 192, 1.2 M
  parameters) keeps a GPU busy with memory traffic and kernel launches far more than with matrix
  products, so the low end is the likelier.
A validation pass (forward only, at most `train.max_val_windows`) is counted at a third of a
training step per window. A measured speed (`--bench-json`, `--windows-per-s`) is the main run's and is
applied to every run.

    python benchmarks/ablation_cost.py [--configs config/vitaldb.yaml config/vitaldb-ablations.yaml]
                                       [--manifest M] [--bench-json J | --windows-per-s N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VITALDB_CASES, VITALDB_MEAN_HOURS = 6388, 3.2
PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM, dense
ASSUMED_UTILISATION = (0.01, 0.03, 0.10)


def layered_config(files: list[Path]) -> dict:
    """The config the workflow would run for `--configfile files...`, validated (schema defaults filled)."""
    from pipeline.config import validate_config
    from pipeline.evaluation.ablations import merge
    from pipeline.evaluation.checks import ALL_CHECKS

    config = {}
    for f in files:
        config = merge(config, yaml.safe_load(Path(f).read_text()))
    return validate_config(config, ALL_CHECKS)


def trainings(config: dict) -> list[dict]:
    """Every pretraining the config plans, with its model and train sections: the main run, then each
    ablation run that trains (variant x seed)."""
    from pipeline.evaluation.ablations import run_config, trained_runs, variants

    runs = [{"run": "main", "config": config}]
    if variants(config):
        runs += [{"run": f"{variant}/seed{seed}", "config": run_config(config, variant, seed)}
                 for (variant, seed), by in trained_runs(config).items() if by == variant]
    return runs


def flops_per_window(config: dict, batch: int = 16) -> tuple[float, int]:
    """Floating-point operations of one training step (forward + backward) per window, matrix products
    counted by torch.utils.flop_counter, for the config's model on the CPU; and its parameter count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.model.encoder import SSLModel
    from pipeline.model.masking import mixed_mask
    from pipeline.model.train import Objective

    model_cfg = dict(config["model"], pretrained=None, revision=None)  # the geometry, not the weights (offline)
    torch.manual_seed(0)
    model = SSLModel(model_cfg)
    objective = Objective(config["train"], model.patch_length)
    x = torch.randn(batch, 2, config["model"]["context_length"])
    mask = mixed_mask(batch, 2, model.num_patches, config["train"]["mask_ratio"], config["train"]["mask_mix"],
                      torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        objective(model, x, mask)[0].backward()
    return counter.get_total_flops() / batch, sum(p.numel() for p in model.parameters())


def measured_speed(path: Path, batch: int) -> float:
    """`step_with_loader` windows/s at `batch` from benchmarks/bench_train.py's JSON."""
    rows = json.loads(Path(path).read_text())["batches"]
    if str(batch) not in rows:
        raise SystemExit(f"{path}: no figures at batch {batch} (train.batch_size); it has batches {sorted(rows, key=int)}")
    return float(rows[str(batch)]["step_with_loader"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", type=Path, default=[REPO / "config/vitaldb.yaml", REPO / "config/vitaldb-ablations.yaml"])
    p.add_argument("--manifest", type=Path)
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--bench-json", type=Path)
    speed.add_argument("--windows-per-s", type=float)
    a = p.parse_args()

    config = layered_config(a.configs)
    split = config["cases"]["split"]
    if a.manifest:
        kept = json.loads(a.manifest.read_text())["totals"]["kept_per_split"]
        train_windows, val_windows, basis = kept["train"], kept["val"], f"kept windows of {a.manifest}"
    else:
        ceiling = VITALDB_CASES * VITALDB_MEAN_HOURS * 3600 / (config["window"]["length"] / config["signals"]["target_fs"])
        train_windows, val_windows = ceiling * split["train"], ceiling * split["val"]
        basis = f"VitalDB ceiling: {VITALDB_CASES} cases x {VITALDB_MEAN_HOURS} h, non-overlapping windows, none rejected"
    if a.windows_per_s is not None and not a.windows_per_s > 0:
        raise SystemExit(f"--windows-per-s must be a positive speed, got {a.windows_per_s}")
    runs = trainings(config)
    flops, params = {}, {}
    for r in runs:  # each distinct model and objective counted once (a variant may change the mixer or the mask)
        key = json.dumps({k: r["config"][k] for k in ("model", "train")}, sort_keys=True, default=str)
        if key not in flops:
            flops[key], params[key] = flops_per_window(r["config"])
        t = r["config"]["train"]
        r.update(epochs=t["epochs"], flops_per_window=flops[key], parameters=params[key],
                 step_equivalents=t["epochs"] * (train_windows + min(val_windows, t["max_val_windows"]) / 3))
    passes = sum(r["step_equivalents"] for r in runs)
    flop_total = sum(r["step_equivalents"] * r["flops_per_window"] for r in runs)
    out = {"configs": [str(c.relative_to(REPO) if c.is_relative_to(REPO) else c) for c in a.configs],
           "pretrainings": len(runs), "epochs": [r["epochs"] for r in runs], "runs": [r["run"] for r in runs],
           "train_windows_per_epoch": round(train_windows), "windows_basis": basis,
           "training_step_equivalents": round(passes), "model_parameters": runs[0]["parameters"],
           "flops_per_training_window": runs[0]["flops_per_window"],
           "flops_per_training_window_by_run": {r["run"]: r["flops_per_window"] for r in runs}}
    if a.bench_json or a.windows_per_s is not None:
        rate = measured_speed(a.bench_json, config["train"]["batch_size"]) if a.bench_json else a.windows_per_s
        out["speed"] = {"windows_per_s": rate, "source": str(a.bench_json or "--windows-per-s"), "measured": True,
                        "note": "the main run's measured speed, applied to every run"}
        out["gpu_hours"] = passes / rate / 3600
    else:
        main = runs[0]["flops_per_window"]
        out["speed"] = {"measured": False, "basis": f"ESTIMATE: each run's GFLOP per window (main run {main / 1e9:.3f}) against "
                        f"{PEAK_BF16_FLOPS / 1e12:.0f} TFLOP/s bf16 peak at assumed utilisations"}
        out["gpu_hours_estimate"] = {f"{u:.0%} of peak ({u * PEAK_BF16_FLOPS / main:,.0f} windows/s for the main run)":
                                     round(flop_total / (u * PEAK_BF16_FLOPS) / 3600, 1) for u in ASSUMED_UTILISATION}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
