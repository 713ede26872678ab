"""Evaluation memory: peak RSS of `pipeline.evaluation.evaluate.evaluate` (and of its data loading alone) on
datasets of growing size with `evaluate.max_windows` fixed, each in a fresh process.

The shards hold realistic two-channel windows (demo physiology, tiled with noise); a tiny encoder
is pretrained for one epoch and exported first, so the measured process runs the real evaluation:
subset loading, labelled training (fine-tuning and the supervised baseline, one epoch each),
embeddings of every feature set, raw features, probes, bootstrap, reconstruction. Every window gets
a synthetic label row (`labels.tsv` per shard), so every window-level task is probed.

    python benchmarks/bench_eval.py [--sizes 100000 200000 400000] [--max-windows 20000]

Every size from 100,000 up has at least `max_windows` windows in both splits, so each evaluation
works on the same number of windows and only the shards grow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, sys, time
mode, spec = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
if mode == "load":
    from pipeline.evaluation.evaluate import load_split
    for paths, seed in ((spec["train"], 0), (spec["test"], 1)):
        load_split(paths, spec["max_windows"], seed)
else:
    from pipeline.config import validate_params
    from pipeline.evaluation.checks import ALL_CHECKS
    from pipeline.evaluation.evaluate import evaluate
    p = validate_params({"evaluate": {"max_windows": spec["max_windows"], "finetune_epochs": 1}, "labels": {}}, ALL_CHECKS)
    evaluate(spec["encoder"], spec["model"], spec["train"], spec["test"], spec["cases"], spec["labels"], spec["model_cfg"],
             spec["train_cfg"], p["evaluate"], p["labels"], 125, spec["out"])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"mode": mode, "wall_s": time.perf_counter() - t0, "peak_rss_mb": int(hwm) / 1024}))
"""


def write_labels(path: Path, shard: Path, rng) -> None:
    """A label row for every window of `shard`: blood pressures and hypotension flags at random."""
    import h5py

    from pipeline.data.labels import COLUMNS

    with h5py.File(shard, "r") as f:
        ids, starts = f["caseid"][:], f["start_s"][:]
    bp = rng.normal(80, 10, len(ids))
    flags = rng.integers(0, 2, (len(ids), 3))
    lines = ["\t".join(COLUMNS)] + [f"{c}\t{s:.3f}\t{m:.2f}\t{m + 40:.2f}\t{m - 20:.2f}\t{a}\t{b}\t{d}"
                                    for c, s, m, (a, b, d) in zip(ids, starts, bp, flags)]
    path.write_text("\n".join(lines) + "\n")


def write_dataset(root: Path, n_windows: int, per_shard: int = 20000) -> tuple[list[str], list[str], list[str]]:
    """n_windows windows in shards of `per_shard`: 80% train, 20% test, one case (and subject) per
    1,000 windows; a label table per shard."""
    import h5py

    from tests.helpers import windows, write_shard

    base = windows(256, hr=72.0, seed=0)  # realistic beats at 125 Hz
    rng = np.random.default_rng(0)
    train, test, labels = [], [], []
    n_test = n_windows // 5
    for i, start in enumerate(range(0, n_windows, per_shard)):
        n = min(per_shard, n_windows - start)
        split = "test" if start >= n_windows - n_test else "train"
        path = root / split / f"shard-{i:04d}.h5"
        if not path.exists():
            sig = base[rng.integers(0, len(base), n)] * rng.uniform(0.5, 2.0, (n, 2, 1)).astype(np.float32)
            sig += rng.normal(0, 0.05, sig.shape).astype(np.float32)
            write_shard(path, sig)
            with h5py.File(path, "r+") as f:  # one case (and subject) per 1,000 windows
                idx = start + np.arange(n)
                f["caseid"][:] = 1 + idx // 1000
                f["subjectid"][:] = 1 + idx // 1000
                f["start_s"][:] = (idx % 1000) * 8.192
        label_path = root / "labels" / f"batch-{i:04d}.tsv"
        if not label_path.exists():
            label_path.parent.mkdir(parents=True, exist_ok=True)
            write_labels(label_path, path, rng)
        (test if split == "test" else train).append(str(path))
        labels.append(str(label_path))
    return train, test, labels


def prepare_encoder(root: Path, train: list[str], test: list[str]) -> dict:
    """A tiny model pretrained for one epoch on the first shard, exported; a case table."""
    from pipeline.data.cases import write_table
    from pipeline.data.windows import build_manifest
    from pipeline.model.export import export_encoder
    from pipeline.model.train import pretrain
    from tests.helpers import TINY_MODEL, TINY_TRAIN

    model_cfg, train_cfg = dict(TINY_MODEL), dict(TINY_TRAIN, epochs=1, batch_size=256, max_val_windows=512)
    pre = root / "pre"
    if not (pre / "model.pt").exists():
        pretrain(model_cfg, train_cfg, train[:1], test[:1], pre, "bench")
    stats = root / "stats.json"
    stats.write_text(json.dumps({"1": {"split": "train", "cut": 1, "kept": 1, "rejected": {}}}))
    build_manifest([stats], root / "manifest.json", {})
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], "signals": {"target_fs": 125}, "window": {"length": 1024}}
    export_encoder(pre / "model.pt", root / "manifest.json", pre / "metrics.csv", pre / "summary.json", params, root / "encoder")
    rows = [{"caseid": c, "subjectid": c, "split": "train", "batch": 0} for c in range(1, 1001)]
    write_table(root / "cases.tsv", rows)
    return {"encoder": str(root / "encoder"), "model": str(pre / "model.pt"), "cases": str(root / "cases.tsv"),
            "model_cfg": model_cfg, "train_cfg": train_cfg}


def child(mode: str, spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TSFM_PYTHON_LOGGING_LEVEL="WARNING")
    out = subprocess.run([sys.executable, "-c", CHILD, mode, json.dumps(spec)], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default=str(REPO / "benchmarks" / "out" / "eval"))
    p.add_argument("--sizes", type=int, nargs="+", default=[100000, 200000, 400000])
    p.add_argument("--max-windows", type=int, default=20000)
    a = p.parse_args()
    results = {}
    for n in a.sizes:
        root = Path(a.workdir) / f"n{n}"
        t0 = time.perf_counter()
        train, test, labels = write_dataset(root, n)
        spec = prepare_encoder(root, train, test) | {"train": train, "test": test, "labels": labels, "max_windows": a.max_windows,
                                                     "out": str(root / "eval")}
        shard_gb = sum(Path(q).stat().st_size for q in train + test) / 1e9
        print(f"# {n} windows, {shard_gb:.2f} GB of shards ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results[str(n)] = {"windows": n, "shards_gb": round(shard_gb, 2), "max_windows": a.max_windows,
                           "load_split": child("load", spec), "evaluate": child("evaluate", spec)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
