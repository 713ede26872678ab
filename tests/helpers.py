"""Small shards and configs for the training tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline.data.resample import resample_track
from pipeline.data.sources.demo import synth_signals
from pipeline.data.windows import _append, _create_shard, cut

TINY_MODEL = dict(backbone="ttm", pretrained=None, revision=None, context_length=1024, patch_length=64, d_model=16, num_layers=1,
                  expansion_factor=2, dropout=0.1, ttm={"adaptive_patching_levels": 1}, tspulse={}, channel_mixing="mixer")
TINY_TRAIN = dict(mask_ratio=0.4, mask_mix={"random": 0.6, "block": 0.1, "cross": 0.3}, msm_weight=1.0, stft_weight=0.3, stft_n_fft=[256, 512], stft_hop=[64, 128],
                  lr=3e-3, weight_decay=0.01, warmup_fraction=0.1, grad_clip=1.0, batch_size=16, epochs=3, seed=0,
                  precision="auto", block_windows=64, shuffle_blocks=2, checkpoint_every_steps=2, max_val_windows=1000,
                  log_every_steps=50, compile=False)


def windows(n: int, hr: float = 70.0, seed: int = 0) -> np.ndarray:
    seconds = n * 1024 / 125 + 2
    ppg, ecg = synth_signals(hr, seconds, np.random.default_rng(seed))
    sig = np.stack([resample_track(x, 500, 125)[0] for x in (ppg, ecg)])
    return np.ascontiguousarray(cut(sig, 1024, 1024)[:n], dtype=np.float32)


def write_shard(path: Path, signals: np.ndarray, caseid: int = 1, chunk: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        _create_shard(f, signals.shape[-1], chunk, {"fs": 125})
        _append(f, {"signals": signals, "caseid": np.full(len(signals), caseid, np.int32),
                    "subjectid": np.full(len(signals), caseid, np.int64), "start_s": np.arange(len(signals)) * 8.192,
                    "hr_bpm": np.zeros(len(signals), np.float32)})
    return path


def tiny_shards(root: Path, n_train=(70, 50), n_val=24):
    train = [write_shard(root / "train" / f"shard-{i:04d}.h5", windows(n, hr=60 + 20 * i, seed=i), caseid=i + 1) for i, n in enumerate(n_train)]
    val = [write_shard(root / "val" / "shard-0000.h5", windows(n_val, hr=75, seed=9), caseid=9)]
    return [str(p) for p in train], [str(p) for p in val]
