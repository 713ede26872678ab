"""Pretraining speed (issue 12, "GPU speed"): the training step, the loader, and whether the loader
keeps up, on CUDA (bf16) or the CPU (fp32). JSON on stdout.

On `--device` (default: cuda when available), r1 geometry (TTM, d_model 192, 3 adaptive levels, 2
layers, patch 64, context 1024, channel mixer), for each batch size (default 128, 512, 1024), the
real training step (`pipeline.model.train.Trainer.step`, log points every `train.log_every_steps` as in
training; the clock stops once the device has finished):
  step              windows/s, batches already on the device (the step alone);
  step_with_loader  windows/s, batches from the real loader (`ShardBatches` + `make_loader`,
                    `--workers` worker processes, pinned on CUDA);
  loader            windows/s of that loader alone (pinned on CUDA), per number of workers
                    (default 0, 1, 2, 4, 8; 0 = in the training process);
  loader_keeps_up   whether the loader with `--workers` delivers at least `step` windows/s.
`plain_h5py_windows_per_s`: a plain contiguous h5py read of the same shards (warm page cache), the
ceiling of any loader.

`comparison` (kept from the first version): `pipeline.model.train.pretrain` (best epoch, training time
only) against a bare PyTorch loop (same model, objective, optimizer and batch; batches and masks
already on the device; best epoch), in rounds run back to back; the round with the median ratio is
reported. On the CPU with the small model of the first version (d_model 64, 2 levels, batch 128,
4,096 windows, 3 rounds; the issue's target ratio >= 0.95), on CUDA with the r1 geometry and batch
512 (65,536 windows, 1 round).

    python benchmarks/bench_train.py [--device cuda|cpu] [--quick] [--batches 128 512 1024]
                                     [--workers-list 0 1 2 4 8] [--workers N] [--compile]

`--quick` (a few windows, small batches, one step) runs end to end in well under a minute on CPU,
so the test suite checks the script (tests/test_bench_train.py).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

R1 = dict(backbone="ttm", pretrained=None, revision=None, context_length=1024, patch_length=64, d_model=192, num_layers=2,
          expansion_factor=2, dropout=0.2, channel_mixing="mixer", ttm={"adaptive_patching_levels": 3}, tspulse={})
SMALL = dict(R1, d_model=64, dropout=0.1, ttm={"adaptive_patching_levels": 2})  # the first version's CPU comparison


def make_shards(root: Path, n_windows: int, per_shard: int = 16384) -> list[str]:
    from pipeline.data.windows import _append, _create_shard

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for i, s in enumerate(range(0, n_windows, per_shard)):
        n = min(per_shard, n_windows - s)
        p = root / f"shard-{i:04d}-{n}.h5"
        paths.append(str(p))
        if p.exists():
            continue
        tmp = p.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            _create_shard(f, 1024, 64, {"fs": 125})
            for a in range(0, n, 4096):
                k = min(4096, n - a)
                _append(f, {"signals": rng.standard_normal((k, 2, 1024), dtype=np.float32), "caseid": np.zeros(k, np.int32),
                            "subjectid": np.zeros(k, np.int64), "start_s": np.zeros(k), "hr_bpm": np.zeros(k, np.float32)})
        tmp.rename(p)
    return paths


def plain_read(paths: list[str], block: int = 256) -> float:
    t0, n = time.perf_counter(), 0
    for p in paths:
        with h5py.File(p, "r") as f:
            d = f["signals"]
            for s in range(0, d.shape[0], block):
                n += len(d[s : s + block])
    return n / (time.perf_counter() - t0)


def loader_rate(paths: list[str], batch: int, workers: int, pin: bool) -> float:
    """Windows/s of one epoch of the real loader, from its first batch (worker start-up excluded)."""
    from pipeline.model.dataset import ShardBatches, make_loader

    ds = ShardBatches(paths, batch, block_windows=256, shuffle_blocks=16, seed=0)
    n, t0 = 0, None
    for x in make_loader(ds, workers, pin):
        if t0 is None:
            t0 = time.perf_counter()
        else:
            n += len(x)
    return n / (time.perf_counter() - t0) if n else float("nan")


def train_cfg(batch: int, device: str, compile_model: bool, **over) -> dict:
    from pipeline.config import validate_params
    from pipeline.evaluation.checks import ALL_CHECKS

    cfg = dict(dict(batch_size=batch, epochs=1, seed=0, lr=1e-4, precision="bf16" if device == "cuda" else "fp32",
                    checkpoint_every_steps=10**9, max_val_windows=256, compile=compile_model), **over)
    return validate_params({"train": cfg}, ALL_CHECKS)["train"]  # every other key: the schema's default


def forever(ds, workers: int, pin: bool):
    """The loader's batches, epoch after epoch (a new loader per epoch, as in training)."""
    from pipeline.model.dataset import make_loader

    for epoch in itertools.count():
        ds.set_epoch(epoch)
        yield from make_loader(ds, workers, pin)


def timed_steps(trainer, batches, steps: int, warmup: int) -> float:
    """Windows/s of `steps` training steps after `warmup` ones, with the training loop's log points."""
    for _ in range(warmup):
        trainer.step(next(batches))
    trainer.log_point()  # the device is idle from here
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        x = next(batches)
        trainer.step(x)
        n += len(x)
        if trainer.step_count % trainer.cfg["log_every_steps"] == 0:
            trainer.log_point()
    trainer.log_point()  # waits for the last step
    return n / (time.perf_counter() - t0)


def step_rates(paths, val, wd: Path, batch: int, device: str, a) -> dict:
    """`step` (batches on the device) and `step_with_loader` (the real loader) with one Trainer."""
    import torch

    from pipeline.model.dataset import ShardBatches, make_loader
    from pipeline.model.train import Trainer

    trainer = Trainer(R1, train_cfg(batch, device, a.compile), paths, val, wd / "trainer", "bench", num_workers=a.workers)
    pin = trainer.device.type == "cuda"
    ds = ShardBatches(paths, batch, block_windows=256, shuffle_blocks=16, seed=0)
    on_device = [x.to(trainer.device) for x in itertools.islice(make_loader(ds, 0, pin), min(a.steps + a.warmup, 16))]
    out = {"step": timed_steps(trainer, itertools.cycle(on_device), a.steps, a.warmup)}
    del on_device
    out["step_with_loader"] = timed_steps(trainer, forever(ds, a.workers, pin), a.steps, a.warmup)
    out["step_with_loader_workers"] = a.workers
    if device == "cuda":
        out["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return out


def bare_loop(model_cfg, cfg, batches: list, device: str, epochs: int) -> float:
    """The same model, objective and optimizer in a plain loop: batches and masks already on the device,
    no scheduler, no loss bookkeeping, one sync per epoch. One untimed step first (allocator and
    thread pools warm up); windows/s of the best of `epochs` passes over the batches, as `pretrain`'s."""
    import torch

    from pipeline.model.encoder import SSLModel
    from pipeline.model.masking import mixed_mask
    from pipeline.model.train import Objective

    torch.manual_seed(0)
    model = SSLModel(model_cfg).to(device)
    obj = Objective(cfg, model.patch_length).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True if device == "cuda" else None)
    gen = torch.Generator(device=device).manual_seed(0)
    xs = [x.to(device) for x in batches]
    masks = [mixed_mask(len(x), 2, model.num_patches, cfg["mask_ratio"], cfg["mask_mix"], gen) for x in xs]
    dtype = torch.bfloat16 if device == "cuda" else None

    def step(x, m):
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            total, _, _, _ = obj(model, x, m)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()

    step(xs[0], masks[0])
    best = 0.0
    for _ in range(epochs):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, m in zip(xs, masks):
            step(x, m)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, sum(len(x) for x in xs) / (time.perf_counter() - t0))
    return best


def comparison(wd: Path, device: str, a) -> dict:
    """`pretrain()` (best epoch of `--compare-epochs`, training time only) vs `bare_loop` (best of as
    many epochs), in `--compare-rounds` rounds run back to back. A round's ratio compares two runs
    minutes apart at most, so a shared machine's drift hits both sides; the reported round is the
    one with the median ratio."""
    from pipeline.model.dataset import ShardBatches, make_loader
    from pipeline.model.train import pretrain

    model_cfg = R1 if device == "cuda" else dict(SMALL, d_model=a.d_model)
    batch = a.compare_batch
    cfg = train_cfg(batch, device, a.compile, epochs=a.compare_epochs, mask_mix={"random": 1.0})
    sub = make_shards(wd / "sub", a.train_windows, per_shard=a.train_windows)
    batches = list(make_loader(ShardBatches(sub, batch, 256, 16, seed=0), 0, False))
    out = wd / "pretrain"
    workers = a.workers if device == "cuda" else 0  # as the first version on the CPU (2 cores)
    rounds = []
    for _ in range(a.compare_rounds):
        shutil.rmtree(out, ignore_errors=True)
        pretrain(model_cfg, cfg, sub, sub, out, "bench", num_workers=workers)
        with open(out / "metrics.csv") as f:
            ours = max(float(r["train_windows_per_s"]) for r in csv.DictReader(f))
        bare = bare_loop(model_cfg, cfg, batches, device, a.compare_epochs)
        rounds.append({"ours_windows_per_s": ours, "bare_windows_per_s": bare, "ratio": ours / bare})
    median = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
    return {"d_model": model_cfg["d_model"], "adaptive_patching_levels": model_cfg["ttm"]["adaptive_patching_levels"],
            "batch": batch, "train_windows": a.train_windows, "epochs": a.compare_epochs, "loader_workers": workers, **median,
            "ratio_per_round": [r["ratio"] for r in rounds]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    p.add_argument("--quick", action="store_true", help="a few windows, small batches, one timed step: checks the script runs")
    p.add_argument("--workdir", default=str(REPO / "benchmarks" / "out" / "train"))
    p.add_argument("--windows", type=int, default=None, help="windows in the shards (default 131072 on CUDA, 65536 on CPU)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 128 512 1024")
    p.add_argument("--workers-list", type=int, nargs="+", default=None, help="loader workers measured alone (default 0 1 2 4 8)")
    p.add_argument("--workers", type=int, default=None, help="loader workers of step_with_loader (default min(8, CPUs - 1))")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 50 on CUDA, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on CUDA, 1 on CPU)")
    p.add_argument("--compile", action="store_true", help="train.compile: true (torch.compile) for the steps and the comparison")
    p.add_argument("--no-comparison", action="store_true", help="skip pretrain() vs the bare loop")
    p.add_argument("--d-model", type=int, default=64, help="d_model of the CPU comparison (the first version's 64)")
    p.add_argument("--train-windows", type=int, default=None, help="windows of the comparison (default 65536 on CUDA, 4096 on CPU)")
    p.add_argument("--compare-batch", type=int, default=None, help="batch of the comparison (default 512 on CUDA, 128 on CPU)")
    p.add_argument("--compare-epochs", type=int, default=3)
    p.add_argument("--compare-rounds", type=int, default=None, help="rounds of the comparison (default 3 on CPU, 1 on CUDA)")
    a = p.parse_args()
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA initialises: `pretrain` picks its own device

    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    cuda = device == "cuda"
    defaults = dict(windows=131072 if cuda else 65536, batches=[128, 512, 1024], workers_list=[0, 1, 2, 4, 8],
                    workers=max(0, min(8, (os.cpu_count() or 1) - 1)), steps=50 if cuda else 3, warmup=10 if cuda else 1,
                    train_windows=65536 if cuda else 4096, compare_batch=512 if cuda else 128,
                    compare_rounds=1 if cuda else 3)
    if a.quick:
        defaults.update(windows=1024, batches=[16, 32], workers_list=[0, 1], workers=min(defaults["workers"], 1), steps=1, warmup=1,
                        train_windows=64, compare_batch=16, compare_rounds=1)
        a.compare_epochs = min(a.compare_epochs, 2)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    wd = Path(a.workdir)
    paths = make_shards(wd / "shards", a.windows)
    val = make_shards(wd / "val", 256, per_shard=256)

    res = {"device": device, "gpu": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "quick": a.quick, "compile": a.compile,
           "precision": "bf16" if cuda else "fp32", "model": {k: R1[k] for k in ("d_model", "num_layers", "patch_length", "context_length")}
           | {"adaptive_patching_levels": R1["ttm"]["adaptive_patching_levels"], "channel_mixing": R1["channel_mixing"]},
           "windows": a.windows, "steps": a.steps, "warmup": a.warmup}
    plain_read(paths)  # warm the page cache
    res["plain_h5py_windows_per_s"] = max(plain_read(paths) for _ in range(2))
    res["batches"] = {}
    for batch in a.batches:
        row = step_rates(paths, val, wd, batch, device, a)
        row["loader"] = {str(w): loader_rate(paths, batch, w, cuda) for w in a.workers_list}
        alone = row["loader"].get(str(a.workers))
        row["loader_keeps_up"] = None if alone is None else alone >= row["step"]
        res["batches"][str(batch)] = row
        print(f"batch {batch}: {json.dumps(row)}", file=sys.stderr, flush=True)
    if not a.no_comparison:
        res["comparison"] = comparison(wd, device, a)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
