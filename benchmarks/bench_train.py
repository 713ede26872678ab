"""Pretraining benchmarks (issue: SSL pretraining).

1. Loader: windows/s of ShardBatches (chunk-aligned blocks, shuffled blocks + buffer, per-window
   normalization) from warm shards vs a plain contiguous h5py read of the same data, same run.
2. Training step on CPU: samples/s of `pipeline.train.pretrain` (best of 3 epochs, training time only)
   vs a bare PyTorch loop (same model, objective, batch size; batches already in memory).

    python benchmarks/bench_train.py [--windows 65536] [--batch 128] [--d-model 192]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def make_shards(root: Path, n_windows: int, per_shard: int = 16384) -> list[str]:
    from pipeline.windows import _append, _create_shard

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for i, s in enumerate(range(0, n_windows, per_shard)):
        p = root / f"shard-{i:04d}.h5"
        paths.append(str(p))
        n = min(per_shard, n_windows - s)
        if p.exists():
            continue
        with h5py.File(p, "w") as f:
            _create_shard(f, 1024, 64, {"fs": 125})
            for a in range(0, n, 4096):
                k = min(4096, n - a)
                _append(f, {"signals": rng.normal(size=(k, 2, 1024)).astype(np.float32), "caseid": np.zeros(k, np.int32),
                            "subjectid": np.zeros(k, np.int64), "start_s": np.zeros(k), "hr_bpm": np.zeros(k, np.float32)})
    return paths


def plain_read(paths: list[str], block: int = 256) -> float:
    t0, n = time.perf_counter(), 0
    for p in paths:
        with h5py.File(p, "r") as f:
            d = f["signals"]
            for s in range(0, d.shape[0], block):
                n += len(d[s : s + block])
    return n / (time.perf_counter() - t0)


def loader_rate(paths: list[str], batch: int, workers: int) -> float:
    from pipeline.dataset import ShardBatches, make_loader

    ds = ShardBatches(paths, batch, block_windows=256, shuffle_blocks=16, seed=0)
    t0, n = time.perf_counter(), 0
    for x in make_loader(ds, workers):
        n += len(x)
    return n / (time.perf_counter() - t0)


def bare_loop(model_cfg, train_cfg, batches: list[torch.Tensor]) -> float:
    from pipeline.masking import patch_mask
    from pipeline.model import SSLModel
    from pipeline.train import Objective

    torch.manual_seed(0)
    model = SSLModel(model_cfg)
    obj = Objective(train_cfg, model.patch_length)
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"])
    gen = torch.Generator().manual_seed(0)
    masks = [patch_mask(len(x), 2, model.num_patches, 0.4, "random", gen) for x in batches]
    t0 = time.perf_counter()
    for x, m in zip(batches, masks):
        total, _, _, _ = obj(model, x, m)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return sum(len(x) for x in batches) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default=str(REPO / "benchmarks" / "out" / "train"))
    p.add_argument("--windows", type=int, default=65536)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--train-windows", type=int, default=2048)
    a = p.parse_args()
    wd = Path(a.workdir)
    paths = make_shards(wd / "shards", a.windows)
    plain_read(paths)  # warm the page cache
    res = {"windows": a.windows}
    res["plain_h5py_windows_per_s"] = max(plain_read(paths) for _ in range(3))
    for workers in (0, 1, 2):
        res[f"loader_windows_per_s_workers{workers}"] = max(loader_rate(paths, a.batch, workers) for _ in range(2))
    res["loader_fraction_of_plain"] = res["loader_windows_per_s_workers0"] / res["plain_h5py_windows_per_s"]

    from pipeline.dataset import ShardBatches, make_loader
    from pipeline.train import pretrain

    model_cfg = dict(backbone="ttm", pretrained=None, revision=None, context_length=1024, patch_length=64, d_model=a.d_model,
                     num_layers=2, expansion_factor=2, dropout=0.1, channel_mixing="mixer", ttm={"adaptive_patching_levels": 2},
                     tspulse={})
    train_cfg = dict(mask_ratio=0.4, mask_mix={"random": 1.0}, msm_weight=1.0, stft_weight=0.3, stft_n_fft=[256, 512], stft_hop=[64, 128],
                     lr=1e-4, weight_decay=0.01, warmup_fraction=0.05, grad_clip=1.0, batch_size=a.batch, epochs=3, seed=0,
                     precision="auto", block_windows=256, shuffle_blocks=16, checkpoint_every_steps=10**9, max_val_windows=256)
    sub = make_shards(wd / "sub", a.train_windows, per_shard=a.train_windows)
    out = wd / "pretrain"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    pretrain(model_cfg, train_cfg, sub, sub, out, "bench")
    with open(out / "metrics.csv") as f:  # best epoch (the machine is shared; both sides take their best)
        ours = max(float(r["train_windows_per_s"]) for r in csv.DictReader(f))
    ds = ShardBatches(sub, a.batch, 256, 16, seed=0)
    batches = list(make_loader(ds, 0))
    bare = max(bare_loop(model_cfg, train_cfg, batches) for _ in range(3))
    res.update({"d_model": a.d_model, "batch": a.batch, "threads": torch.get_num_threads(), "train_windows": a.train_windows,
                "ours_samples_per_s": ours, "bare_samples_per_s": bare, "ratio": ours / bare})
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
