"""Self-supervised pretraining: masked-patch reconstruction of PPG/ECG windows (docs/design.md,
"Normalization and masking": what the encoder sees, and the loss target).

One entry point for one process, or several under `torchrun` (DDP; gloo on CPU, NCCL on GPU).
A step never waits for the device: masks are drawn on it, batches arrive pinned and are copied
without blocking, and the losses are summed on it. The host reads them (and checks that they are
finite) at log points only: every `train.log_every_steps` steps, before every save, at epoch end.
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

from pipeline.channels import CHANNELS
from pipeline.io import atomic_path, digest, progress, write_json
from pipeline.model.checkpoint import UnsafeCheckpointError, load, save_atomic
from pipeline.model.dataset import ShardBatches, make_loader, shard_rate
from pipeline.model.encoder import SSLModel
from pipeline.model.losses import MultiResolutionSTFTLoss, masked_mse
from pipeline.model.masking import mixed_mask
from pipeline.model.preprocess import normalize
from pipeline.plots import pyplot, save_figure

log = logging.getLogger(__name__)
# train_windows_per_s: training steps only (all processes); seconds: the whole epoch with validation
METRICS = ["epoch", "step", "lr", "train_total", "train_msm", "train_stft", "val_total", "val_msm", "val_stft", "train_windows_per_s", "seconds"]


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
        """x: raw windows [B, C, L]; mask [B, C, P]. The model normalizes its input with the visible
        samples' statistics; the target is `normalize(x)`, the whole window's z-score (known to the
        loss, not to the encoder). Returns (total, msm, stft, reconstruction)."""
        target = normalize(x)
        recon = model(x, mask)
        msm = masked_mse(recon.float(), target, mask, self.patch_length)
        if self.cfg["stft_weight"] > 0:
            m = mask.repeat_interleave(self.patch_length, dim=-1)
            stft = self.stft(torch.where(m, recon.float(), target), target)
        else:
            stft = recon.new_zeros(())
        total = self.cfg["msm_weight"] * msm + self.cfg["stft_weight"] * stft
        return total, msm, stft, recon


def _masks(x, model: SSLModel, train_cfg, gen):
    """The batch's masks, drawn on the generator's device (the training device)."""
    return mixed_mask(x.shape[0], x.shape[1], model.num_patches, train_cfg["mask_ratio"], train_cfg["mask_mix"], gen)


def _losses(total, msm, stft) -> torch.Tensor:
    return torch.stack([total.detach().float(), msm.detach().float(), stft.detach().float()])


@torch.no_grad()
def evaluate(model: SSLModel, objective, loader, train_cfg, device, autocast_dtype, seed: int):
    """Mean (total, msm, stft) over the loader and an example (4 windows, on the CPU). The masks come
    from a generator seeded the same way at every evaluation; the sums stay on the device until the end."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed + 1_000_003)  # the same masks at every evaluation
    sums, n = torch.zeros(3, dtype=torch.float64, device=device), 0
    example = None
    for x in loader:
        x = x.to(device, non_blocking=True)
        mask = _masks(x, model, train_cfg, gen)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            total, msm, stft, recon = objective(model, x, mask)
        sums += _losses(total, msm, stft).double() * len(x)
        n += len(x)
        if example is None:
            example = (normalize(x[:4]), recon[:4].float(), mask[:4])
    model.train()
    return (sums / max(n, 1)).tolist(), tuple(t.cpu() for t in example)


def run_digest(model_cfg, train_cfg, data_digest) -> dict:
    return {"model": digest(model_cfg), "train": digest(train_cfg), "data": data_digest}


def _rng_state(gen: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "mask": gen.get_state(), "mask_device": gen.device.type}


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["mask"])


class Trainer:
    """One training run, read top to bottom: setup (`__init__`), resume (`resume`), step (`step`),
    epoch end (`end_epoch`), finish (`finish`). The resumable state is built in `state_dict` only."""

    def __init__(self, model_cfg: dict, train_cfg: dict, train_shards: list, val_shards: list, outdir: str | Path,
                 data_digest: str, num_workers: int = 0, pretrained: str | Path | None = None):
        self.model_cfg, self.cfg = model_cfg, train_cfg  # validated sections (the workflow, or validate_params)
        self.outdir = Path(outdir)
        self.state_dir = self.outdir / "state"
        self.num_workers = num_workers
        self._setup_processes()
        self._setup_data(train_shards, val_shards)
        self._setup_model(pretrained)
        self.digests = run_digest(model_cfg, self.cfg, data_digest)
        self.step_count, self.best_val, self.metrics = 0, float("inf"), []
        self._set_sums([0.0, 0.0, 0.0, 0])
        # The first non-finite loss of this rank, recorded on the device (step -1: none yet) and read at log points.
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.first_bad_losses = torch.zeros(3, device=self.device)

    # ------------------------------------------------------------------------------ setup
    def _setup_processes(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.ddp = self.world > 1
        self.device = pick_device()
        if self.ddp:
            import torch.distributed as dist

            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        self.rank = int(os.environ.get("RANK", 0))
        self.main = self.rank == 0
        if self.main and os.environ.get("SLURM_JOB_ID"):
            log.info("SLURM job %s on %s: SLURM_JOB_GPUS=%s CUDA_VISIBLE_DEVICES=%s", os.environ["SLURM_JOB_ID"],
                     os.environ.get("SLURMD_NODENAME", "?"), os.environ.get("SLURM_JOB_GPUS", ""), os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        if self.device.type == "cpu" and self.main:
            log.info("no GPU available: training on CPU (%d threads)", torch.get_num_threads())
        elif self.main:
            log.info("training on %s (%s)", self.device, torch.cuda.get_device_name(self.device))
        self.autocast_dtype = amp_dtype(self.cfg["precision"], self.device)

    def _setup_data(self, train_shards, val_shards) -> None:
        c, seed = self.cfg, self.cfg["seed"]
        self.train_ds = ShardBatches(train_shards, c["batch_size"], c["block_windows"], c["shuffle_blocks"], shuffle=True,
                                     seed=seed, rank=self.rank, world_size=self.world)
        self.val_ds = ShardBatches(val_shards, c["batch_size"], c["block_windows"], c["shuffle_blocks"], shuffle=False,
                                   seed=seed, max_windows=c["max_val_windows"])
        if self.train_ds.num_windows == 0:
            raise ValueError("no training windows in the train shards: check results/<source>/windows/manifest.json (kept_per_split)")
        if self.val_ds.num_windows == 0:
            raise ValueError("no validation windows in the val shards: widen cases.split.val or add cases")
        self.spe = self.train_ds.steps_per_epoch()
        if self.train_ds.num_windows < c["batch_size"] * self.world and self.main:
            log.info("note: train.batch_size %d x %d process(es) exceeds the %d training windows: each epoch is one step on all of them",
                     c["batch_size"], self.world, self.train_ds.num_windows)
        self.total_steps = self.spe * c["epochs"]

    def _setup_model(self, pretrained) -> None:
        c = self.cfg
        torch.manual_seed(c["seed"])
        self.model = SSLModel(self.model_cfg, pretrained=pretrained).to(self.device)  # shapes fixed here, before the optimizer
        self.objective = Objective(c, self.model.patch_length).to(self.device)
        # fused on CUDA: one kernel for the update, and the fp16 grad scaler needs no host sync
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"],
                                           fused=True if self.device.type == "cuda" else None)
        warmup = int(round(c["warmup_fraction"] * self.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.total_steps, warmup))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.gen = torch.Generator(device=self.device).manual_seed(c["seed"] + self.rank)  # masks, drawn on the device
        self.net = self.model
        if self.ddp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if c["compile"]:  # once, before training; `self.model` (uncompiled, the same parameters) is saved and validated
            # CPU: scalar C++ kernels. Inductor's vectorized ones for this model's backward (TTM's patching,
            # the backward of x.transpose(1, 2).unfold(-2, 64, 64)) corrupt the heap with torch 2.13 on
            # AVX-512; it looks like pytorch/pytorch#196681 (a tail block stored at full vector width).
            options = {"cpp.simdlen": 1} if self.device.type == "cpu" else None
            self.net = torch.compile(self.net, dynamic=False, options=options)
            if self.main:
                log.info("train.compile: the model is compiled with torch.compile (inductor) at its first steps")

    # ----------------------------------------------------------------------------- state
    def _gather_rng(self) -> list:
        mine = _rng_state(self.gen)
        if not self.ddp:
            return [mine]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, mine)
        return out

    def state_dict(self) -> dict:
        """The resumable state (collective under DDP: every rank calls it)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step_count, "best_val": self.best_val, "metrics": self.metrics,
                "epoch_sums": self.sums.tolist() + [self.sum_n], "rng": self._gather_rng(), "digests": self.digests,
                "model_cfg": self.model_cfg, "train_cfg": self.cfg, "world_size": self.world}

    def save_state(self) -> None:
        """Save `state/last.pt`. Only after a log point (`log_point`): a non-finite loss since the last
        one stops the run there, before anything it touched is saved."""
        state = self.state_dict()
        if self.main:
            save_atomic(state, self.state_dir / "last.pt")

    def resume(self) -> None:
        """Continue from `state/last.pt` unless the model, training or data config changed (logged)."""
        path = self.state_dir / "last.pt"
        if not path.exists():
            return
        try:
            state = load(path)
        except (EOFError, RuntimeError, OSError) as e:
            if isinstance(e, UnsafeCheckpointError):
                raise
            log.warning("not resuming: %s is empty or corrupt (%s: %s); training starts afresh", path, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "")
            return
        changed = [k for k in ("model", "train", "data") if state["digests"].get(k) != self.digests[k]]
        if changed:
            log.warning("not resuming from %s: the %s config changed since it was saved; training starts afresh", path, " and ".join(changed))
            return
        if state.get("world_size") != self.world:
            log.warning("not resuming from %s: it was saved by %s process(es), this run has %d (the data split across ranks, "
                        "the schedule and the mask streams depend on it); training starts afresh", path,
                        state.get("world_size"), self.world)
            return
        saved_on = state["rng"][self.rank].get("mask_device", "cpu")
        if saved_on != self.device.type:
            log.warning("not resuming from %s: it was saved by a run on %s, this run is on %s (the mask generator and "
                        "dropout draw on the training device, so its random streams cannot continue); training starts afresh",
                        path, saved_on, self.device.type)
            return
        log.info("resuming from %s at step %d", path, state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step_count, self.best_val, self.metrics = state["step"], state["best_val"], state["metrics"]
        self._set_sums(state["epoch_sums"])
        _set_rng_state(state["rng"][self.rank], self.gen)

    # ------------------------------------------------------------------------------ step
    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the batch x (raw windows [B, C, L]; pinned on CUDA). Nothing here waits
        for the device: the loss is returned as a device tensor and summed on the device, and a
        non-finite loss is only recorded (the next log point stops the run)."""
        c = self.cfg
        x = x.to(self.device, non_blocking=True)
        mask = _masks(x, self.model, c, self.gen)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            total, msm, stft, _ = self.objective(self.net, x, mask)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._record(_losses(total, msm, stft), len(x))
        self.step_count += 1
        return total.detach()

    def _set_sums(self, sums: list) -> None:
        """The epoch's running sums of (total, msm, stft) x windows on the device, and its window count."""
        self.sums = torch.tensor(sums[:3], dtype=torch.float64, device=self.device)
        self.sum_n = int(sums[3])

    def _record(self, losses: torch.Tensor, n: int) -> None:
        """Add a step's losses to the sums, and note (on the device) the first step whose total is not finite."""
        first = ~torch.isfinite(losses[0]) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, self.step_count, self.first_bad_step)
        self.first_bad_losses = torch.where(first, losses, self.first_bad_losses)
        self.sums += losses.double() * n
        self.sum_n += n

    def log_point(self) -> float:
        """Where the host waits for the device: stop on a non-finite loss (`_check_finite`), then read
        this rank's sums. Returns the epoch's mean training loss so far. Collective under DDP."""
        self._check_finite()
        return self.sums[0].item() / max(self.sum_n, 1)

    def _check_finite(self) -> None:
        """Stop when a loss since the start was not finite, on every rank at once and with the same
        message: under DDP the ranks first agree on which of them saw it (a rank that raised alone
        would leave the others waiting in the next collective until its timeout). The message names
        the first such step and the rank(s) where it happened (after it, NaN weights spread to all)."""
        first = torch.zeros(self.world, dtype=torch.long, device=self.device)
        first[self.rank] = self.first_bad_step + 1  # 0: every loss on that rank was finite
        if self.ddp:
            torch.distributed.all_reduce(first)
        first = first.tolist()
        if any(first):
            step = min(f for f in first if f) - 1
            ranks = [r for r, f in enumerate(first) if f == step + 1]
            total, msm, stft = self.first_bad_losses.tolist()
            mine = f" (this rank: total={total}, msm={msm}, stft={stft})" if self.rank in ranks else ""
            raise FloatingPointError(
                f"non-finite loss at step {step} on rank(s) {ranks} of {self.world}{mine}: "
                "lower train.lr, or check the windows for extreme values"
            )

    # ------------------------------------------------------------------------- epoch end
    def end_epoch(self, epoch: int, t_epoch: float) -> None:
        """A log point (which stops a run whose loss went non-finite); validate on rank 0, record the
        metrics row, keep the best model; save the state."""
        self.log_point()  # waits for the epoch's last step, so the training time below is the device's too
        train_seconds = time.perf_counter() - t_epoch
        if self.main:
            (v_total, v_msm, v_stft), example = evaluate(self.model, self.objective, self.val_loader, self.cfg, self.device,
                                                         self.autocast_dtype, self.cfg["seed"])
            s, n = self.sums.tolist(), max(self.sum_n, 1)
            row = dict(zip(METRICS, [epoch + 1, self.step_count, self.scheduler.get_last_lr()[0], s[0] / n, s[1] / n, s[2] / n,
                                     v_total, v_msm, v_stft, self.sum_n * self.world / train_seconds, time.perf_counter() - t_epoch]))
            self.metrics.append(row)
            log.info("epoch %d: train %.4f (msm %.4f, stft %.4f) | val %.4f (msm %.4f, stft %.4f)", epoch + 1,
                     row["train_total"], row["train_msm"], row["train_stft"], v_total, v_msm, v_stft)
            if v_total < self.best_val:
                self.best_val = v_total
                save_atomic({"model": self.model.state_dict(), "backbone_config": self.model.backbone.config.to_dict(),
                             "model_cfg": self.model_cfg, "train_cfg": self.cfg,
                             "step": self.step_count, "epoch": epoch + 1, "val_loss": v_total, "digests": self.digests},
                            self.state_dir / "best.pt")
                save_atomic(example, self.state_dir / "best_example.pt")
            write_metrics(self.metrics, self.outdir / "metrics.csv")
        self._set_sums([0.0, 0.0, 0.0, 0])
        self.save_state()

    # ------------------------------------------------------------------------------- run
    def run(self, stop_after_steps: int | None = None) -> dict:
        self.resume()
        pin = self.device.type == "cuda"  # pinned batches: the copy to the device does not block the host
        self.val_loader = make_loader(self.val_ds, self.num_workers, pin) if self.main else None
        c, spe, t_epoch, stopped = self.cfg, self.spe, time.perf_counter(), False
        while self.step_count < self.total_steps and not stopped:
            epoch, skip = divmod(self.step_count, spe)
            self.train_ds.set_epoch(epoch)
            it = iter(make_loader(self.train_ds, self.num_workers, pin))
            for _ in range(skip):  # resume mid-epoch: the same batches in the same order
                next(it)
            bar = progress(total=spe, initial=skip, desc=f"epoch {epoch + 1}/{self.cfg['epochs']}", unit="step",
                       disable=not self.main, mininterval=2)
            for _ in range(skip, spe):
                try:
                    x = next(it)
                except StopIteration:  # this rank ran short (DDP): start its data again
                    it = iter(make_loader(self.train_ds, self.num_workers, pin))
                    x = next(it)
                self.step(x)
                bar.update(1)
                stopped = stop_after_steps is not None and self.step_count >= stop_after_steps
                save = stopped or (self.step_count % c["checkpoint_every_steps"] == 0 and self.step_count % spe)
                if save or self.step_count % c["log_every_steps"] == 0:  # a log point: the check comes before the save
                    loss = self.log_point()
                    bar.set_postfix(loss=f"{loss:.4f}")
                    if bar.disable and self.main:  # a log file: one line per logging interval, not a bar
                        log.info("epoch %d/%d step %d/%d: train loss %.4f", epoch + 1, c["epochs"], self.step_count - epoch * spe,
                                 spe, loss)
                if save:
                    self.save_state()
                if stopped:
                    break
            bar.close()
            if not stopped:
                self.end_epoch(epoch, t_epoch)
                t_epoch = time.perf_counter()
        if self.ddp:
            torch.distributed.barrier()
        summary = {"step": self.step_count, "total_steps": self.total_steps, "steps_per_epoch": spe, "best_val": self.best_val,
                   "stopped_early": stopped, "device": str(self.device), "world_size": self.world,
                   "train_windows": self.train_ds.num_windows, "val_windows": self.val_ds.num_windows}
        if self.main and not stopped:
            finish(self.outdir, self.state_dir, self.metrics, summary, shard_rate(self.val_ds.paths))
        if self.ddp:
            torch.distributed.destroy_process_group()
        return summary


def pretrain(model_cfg: dict, train_cfg: dict, train_shards: list, val_shards: list, outdir: str | Path, data_digest: str,
             num_workers: int = 0, stop_after_steps: int | None = None, pretrained: str | Path | None = None) -> dict:
    """Train, keep best (by validation loss) and last states, write metrics and plots.

    `pretrained`: local directory of the initial weights (None: random). `stop_after_steps` ends
    the run early after saving the state, as a kill would (for tests).
    """
    return Trainer(model_cfg, train_cfg, train_shards, val_shards, outdir, data_digest, num_workers, pretrained).run(stop_after_steps)


def write_metrics(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRICS)
            w.writeheader()
            w.writerows(rows)


def finish(outdir: Path, state_dir: Path, metrics: list[dict], summary: dict, fs: float | None = None) -> None:
    """Publish the best model, metrics and plots (the job's declared outputs)."""
    best = load(state_dir / "best.pt")
    save_atomic(best, outdir / "model.pt")
    write_metrics(metrics, outdir / "metrics.csv")
    plot_losses(metrics, outdir / "loss.png")
    plot_reconstruction(load(state_dir / "best_example.pt"), best["model_cfg"]["patch_length"], outdir / "reconstruction.png", fs)
    write_json(outdir / "summary.json", {**summary, "best_epoch": best["epoch"], "best_step": best["step"]})


def plot_losses(metrics: list[dict], path: Path) -> None:
    plt = pyplot()

    ep = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("total", "msm", "stft")):
        ax.plot(ep, [m[f"train_{key}"] for m in metrics], label="train")
        ax.plot(ep, [m[f"val_{key}"] for m in metrics], label="validation")
        ax.set_title({"total": "total loss", "msm": "masked-patch MSE", "stft": "multi-resolution STFT"}[key])
        ax.set_xlabel("epoch")
        ax.set_ylabel({"total": "msm_weight x MSE + stft_weight x STFT", "msm": "MSE of masked patches (z-score units²)",
                       "stft": "STFT loss (log magnitudes)"}[key], fontsize=8)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_reconstruction(example, patch_length: int, path: Path, fs: float | None = None) -> None:
    """Three validation windows per channel: the input, the reconstruction of its masked patches,
    the masked patches shaded; time in seconds at the windows' rate `fs` (in samples without one)."""
    plt = pyplot()
    unit = 1.0 / fs if fs else 1.0

    x, recon, mask = example
    n = min(3, x.shape[0])
    fig, axes = plt.subplots(n, 2, figsize=(13, 2.4 * n), squeeze=False)
    for i in range(n):
        for c, name in enumerate(CHANNELS):
            ax = axes[i, c]
            shown = recon[i, c].clone()
            shown[~mask[i, c].repeat_interleave(patch_length)] = float("nan")  # the loss scores masked patches only
            t = np.arange(x.shape[-1]) * unit
            ax.plot(t, x[i, c].numpy(), lw=0.8, label="true")
            ax.plot(t, shown.numpy(), lw=1.0, label="reconstruction of masked patches")
            for p in torch.nonzero(mask[i, c]).flatten().tolist():
                ax.axvspan(p * patch_length * unit, (p + 1) * patch_length * unit, color="0.85", zorder=0)
            ax.set_title(f"validation window {i}, {name} (grey = masked patches)", fontsize=9)
            ax.set_ylabel("z-scored amplitude", fontsize=8)
            ax.set_xlabel("time (s)" if fs else "sample", fontsize=8)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
