"""Self-supervised pretraining: masked-patch reconstruction of normalized PPG/ECG windows.

One entry point for one process, or several under `torchrun` (DDP; gloo on CPU, NCCL on GPU).
The resumable state (model, optimizer, scheduler, grad scaler, step, RNG states, configs) lives
in `<outdir>/state/`, which Snakemake does not own, so a failed or killed job leaves it behind and
the rerun resumes from it, unless the model, training or data config changed (logged).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import digest
from pipeline.dataset import ShardBatches, make_loader
from pipeline.io import atomic_path, write_json
from pipeline.losses import MultiResolutionSTFTLoss, masked_mse
from pipeline.masking import patch_mask
from pipeline.model import SSLModel
from pipeline.preprocess import normalize

log = logging.getLogger(__name__)
# train_windows_per_s: training steps only (all processes); seconds: the whole epoch with validation
METRICS = ["epoch", "step", "lr", "train_total", "train_msm", "train_stft", "val_total", "val_msm", "val_stft", "train_windows_per_s", "seconds"]


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def amp_dtype(precision: str, device: torch.device):
    if device.type != "cuda" or precision == "fp32":
        if precision in ("bf16", "fp16") and device.type != "cuda":
            log.info("train.precision=%s applies on CUDA only; this run uses fp32 on %s", precision, device)
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


class Objective(torch.nn.Module):
    """Masked-signal modelling loss: msm_weight * masked MSE + stft_weight * MR-STFT.

    The STFT loss compares the target with the target whose masked patches are replaced by the
    reconstruction, so both terms score what the model had to infer (the masked patches), and the
    encoder is not asked to squeeze sample-level noise of visible patches through its bottleneck.
    """

    def __init__(self, train_cfg: dict, patch_length: int):
        super().__init__()
        self.cfg = train_cfg
        self.patch_length = patch_length
        self.stft = MultiResolutionSTFTLoss(train_cfg["stft_n_fft"], train_cfg["stft_hop"])

    def forward(self, model, x, mask):
        recon = model(x, mask)
        msm = masked_mse(recon.float(), x, mask, self.patch_length)
        if self.cfg["stft_weight"] > 0:
            m = mask.repeat_interleave(self.patch_length, dim=-1)
            stft = self.stft(torch.where(m, recon.float(), x), x)
        else:
            stft = recon.new_zeros(())
        total = self.cfg["msm_weight"] * msm + self.cfg["stft_weight"] * stft
        return total, msm, stft, recon


def _masks(x, model: SSLModel, train_cfg, gen):
    return patch_mask(x.shape[0], x.shape[1], model.num_patches, train_cfg["mask_ratio"], train_cfg["mask_type"], gen)


@torch.no_grad()
def evaluate(model: SSLModel, objective, loader, train_cfg, device, autocast_dtype, seed: int):
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1_000_003)  # the same masks at every evaluation
    sums, n = np.zeros(3), 0
    example = None
    for x in loader:
        mask = _masks(x, model, train_cfg, gen).to(device)
        x = normalize(x.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            total, msm, stft, recon = objective(model, x, mask)
        sums += np.array([total.item(), msm.item(), stft.item()]) * len(x)
        n += len(x)
        if example is None:
            example = (x[:4].float().cpu(), recon[:4].float().cpu(), mask[:4].cpu())
    model.train()
    return (sums / max(n, 1)).tolist(), example


def run_digest(model_cfg, train_cfg, data_digest) -> dict:
    return {"model": digest(model_cfg), "train": digest(train_cfg), "data": data_digest}


def _rng_state(gen: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "mask": gen.get_state()}


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["mask"])


def try_resume(state_path: Path, digests: dict):
    if not state_path.exists():
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    changed = [k for k in ("model", "train", "data") if state["digests"].get(k) != digests[k]]
    if changed:
        log.warning("not resuming from %s: the %s config changed since it was saved; training starts afresh", state_path, " and ".join(changed))
        return None
    log.info("resuming from %s at step %d", state_path, state["step"])
    return state


def pretrain(model_cfg: dict, train_cfg: dict, train_shards: list, val_shards: list, outdir: str | Path,
             data_digest: str, num_workers: int = 0, stop_after_steps: int | None = None) -> dict:
    """Train, keep best (by validation loss) and last states, write metrics and plots.

    `stop_after_steps` ends the run early after saving the state, as a kill would (for tests).
    """
    outdir = Path(outdir)
    state_dir = outdir / "state"
    world = int(os.environ.get("WORLD_SIZE", 1))
    ddp = world > 1
    device = pick_device()
    if ddp:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = int(os.environ.get("RANK", 0))
    main = rank == 0
    if main and os.environ.get("SLURM_JOB_ID"):
        log.info("SLURM job %s on %s: SLURM_JOB_GPUS=%s CUDA_VISIBLE_DEVICES=%s", os.environ["SLURM_JOB_ID"],
                 os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("SLURM_JOB_GPUS", ""), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    if device.type == "cpu" and main:
        log.info("no GPU available: training on CPU (%d threads)", torch.get_num_threads())
    elif main:
        log.info("training on %s (%s)", device, torch.cuda.get_device_name(device))
    autocast_dtype = amp_dtype(train_cfg["precision"], device)
    seed = train_cfg["seed"]

    train_ds = ShardBatches(train_shards, train_cfg["batch_size"], train_cfg["block_windows"], train_cfg["shuffle_blocks"],
                            shuffle=True, seed=seed, rank=rank, world_size=world)
    val_ds = ShardBatches(val_shards, train_cfg["batch_size"], train_cfg["block_windows"], train_cfg["shuffle_blocks"],
                          shuffle=False, seed=seed, max_windows=train_cfg["max_val_windows"])
    if train_ds.num_windows == 0:
        raise ValueError("no training windows in the train shards: check results/windows/manifest.json (kept_per_split)")
    if val_ds.num_windows == 0:
        raise ValueError("no validation windows in the val shards: widen cases.split.val or add cases")
    spe = train_ds.steps_per_epoch()
    if train_ds.num_windows < train_cfg["batch_size"] * world and main:
        log.info("note: train.batch_size %d x %d process(es) exceeds the %d training windows: each epoch is one step on all of them",
                 train_cfg["batch_size"], world, train_ds.num_windows)
    total_steps = spe * train_cfg["epochs"]

    torch.manual_seed(seed)
    model = SSLModel(model_cfg).to(device)  # shapes fixed here, before the optimizer exists
    objective = Objective(train_cfg, model.patch_length).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg["lr"], weight_decay=train_cfg["weight_decay"])
    warmup = int(round(train_cfg["warmup_fraction"] * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    gen = torch.Generator().manual_seed(seed + rank)

    digests = run_digest(model_cfg, train_cfg, data_digest)
    step, best_val, metrics, sums = 0, float("inf"), [], [0.0, 0.0, 0.0, 0]
    state = try_resume(state_dir / "last.pt", digests)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, best_val, metrics, sums = state["step"], state["best_val"], state["metrics"], state["epoch_sums"]
        _set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0], gen)
    net = model
    if ddp:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def gather_rng():
        mine = _rng_state(gen)
        if not ddp:
            return [mine]
        out = [None] * world
        torch.distributed.all_gather_object(out, mine)
        return out

    def save_state():
        rngs = gather_rng()
        if main:
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "step": step, "best_val": best_val, "metrics": metrics,
                         "epoch_sums": sums, "rng": rngs, "digests": digests, "model_cfg": model_cfg, "train_cfg": train_cfg},
                        state_dir / "last.pt")

    val_loader = make_loader(val_ds, num_workers) if main else None
    t_epoch = time.perf_counter()
    stopped = False
    while step < total_steps:
        epoch, skip = divmod(step, spe)
        train_ds.set_epoch(epoch)
        it = iter(make_loader(train_ds, num_workers))
        for _ in range(skip):  # resume mid-epoch: the same batches in the same order
            next(it)
        bar = tqdm(total=spe, initial=skip, desc=f"epoch {epoch + 1}/{train_cfg['epochs']}", unit="step", disable=not main, mininterval=2)
        for _ in range(skip, spe):
            try:
                x = next(it)
            except StopIteration:  # this rank ran short (DDP): start its data again
                it = iter(make_loader(train_ds, num_workers))
                x = next(it)
            mask = _masks(x, model, train_cfg, gen).to(device)
            x = normalize(x.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                total, msm, stft, _ = objective(net, x, mask)
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"non-finite loss at step {step} (total={total.item()}, msm={msm.item()}, stft={stft.item()}): "
                    "lower train.lr, or check the windows for extreme values"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            sums = [sums[0] + total.item() * len(x), sums[1] + msm.item() * len(x), sums[2] + stft.item() * len(x), sums[3] + len(x)]
            bar.update(1)
            bar.set_postfix(loss=f"{total.item():.4f}")
            if stop_after_steps is not None and step >= stop_after_steps:
                save_state()
                stopped = True
                break
            if step % train_cfg["checkpoint_every_steps"] == 0 and step % spe:
                save_state()
        bar.close()
        train_seconds = time.perf_counter() - t_epoch
        if stopped:
            break
        # epoch end: validate on rank 0, record, keep the best
        if main:
            (v_total, v_msm, v_stft), example = evaluate(model, objective, val_loader, train_cfg, device, autocast_dtype, seed)
            seconds = time.perf_counter() - t_epoch
            n = max(sums[3], 1)
            row = dict(zip(METRICS, [epoch + 1, step, scheduler.get_last_lr()[0], sums[0] / n, sums[1] / n, sums[2] / n,
                                     v_total, v_msm, v_stft, sums[3] * world / train_seconds, seconds]))
            metrics.append(row)
            log.info("epoch %d: train %.4f (msm %.4f, stft %.4f) | val %.4f (msm %.4f, stft %.4f)", epoch + 1,
                     row["train_total"], row["train_msm"], row["train_stft"], v_total, v_msm, v_stft)
            if v_total < best_val:
                best_val = v_total
                save_atomic({"model": model.state_dict(), "model_cfg": model_cfg, "train_cfg": train_cfg, "step": step,
                             "epoch": epoch + 1, "val_loss": v_total, "digests": digests}, state_dir / "best.pt")
                save_atomic(example, state_dir / "best_example.pt")
            write_metrics(metrics, outdir / "metrics.csv")
        sums = [0.0, 0.0, 0.0, 0]
        save_state()
        t_epoch = time.perf_counter()

    if ddp:
        torch.distributed.barrier()
    summary = {"step": step, "total_steps": total_steps, "steps_per_epoch": spe, "best_val": best_val, "stopped_early": stopped,
               "device": str(device), "world_size": world, "train_windows": train_ds.num_windows, "val_windows": val_ds.num_windows}
    if main and not stopped:
        finish(outdir, state_dir, metrics, summary)
    if ddp:
        torch.distributed.destroy_process_group()
    return summary


def write_metrics(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRICS)
            w.writeheader()
            w.writerows(rows)


def finish(outdir: Path, state_dir: Path, metrics: list[dict], summary: dict) -> None:
    """Publish the best model, metrics and plots (the job's declared outputs)."""
    best = torch.load(state_dir / "best.pt", map_location="cpu", weights_only=False)
    save_atomic(best, outdir / "model.pt")
    write_metrics(metrics, outdir / "metrics.csv")
    plot_losses(metrics, outdir / "loss.png")
    plot_reconstruction(torch.load(state_dir / "best_example.pt", weights_only=False), best["model_cfg"]["patch_length"], outdir / "reconstruction.png")
    write_json(outdir / "summary.json", {**summary, "best_epoch": best["epoch"], "best_step": best["step"]})


def plot_losses(metrics: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("total", "msm", "stft")):
        ax.plot(ep, [m[f"train_{key}"] for m in metrics], label="train")
        ax.plot(ep, [m[f"val_{key}"] for m in metrics], label="validation")
        ax.set_title({"total": "total loss", "msm": "masked-patch MSE", "stft": "multi-resolution STFT"}[key])
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_reconstruction(example, patch_length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, recon, mask = example
    n = min(3, x.shape[0])
    fig, axes = plt.subplots(n, 2, figsize=(13, 2.4 * n), squeeze=False)
    for i in range(n):
        for c, name in enumerate(("PPG", "ECG")):
            ax = axes[i, c]
            shown = recon[i, c].clone()
            shown[~mask[i, c].repeat_interleave(patch_length)] = float("nan")  # the loss scores masked patches only
            ax.plot(x[i, c].numpy(), lw=0.8, label="true")
            ax.plot(shown.numpy(), lw=1.0, label="reconstruction of masked patches")
            for p in torch.nonzero(mask[i, c]).flatten().tolist():
                ax.axvspan(p * patch_length, (p + 1) * patch_length, color="0.85", zorder=0)
            ax.set_title(f"validation window {i}, {name} (grey = masked patches)", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
