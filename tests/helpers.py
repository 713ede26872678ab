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


def demo_section(**keys) -> dict:
    """The demo source's config section: the schema's defaults (the only place they live), then `keys`."""
    from pipeline.config import validate_params

    return validate_params({"demo": keys}, [])["demo"]


def heldout_windows(n_subjects: int = 240, per_subject: int = 4, seed: int = 7, **demo_keys):
    """A held-out set made directly by the demo's generator, from subjects no demo run has (ids from
    50000; seed `seed`): per subject `per_subject` windows [2, 1024] at 125 Hz, each at its own
    constant MAP (uniform 55-105 mmHg) with the subject's baseline, so the generator's relations
    (baroreflex heart rate, pulse arrival time, PPG amplitude as demo.ppg_amplitude_slope says) tie
    the waveforms to MAP. Returns (windows [N, 2, 1024] float32, MAP [N], subject [N])."""
    from pipeline.data.sources.demo import MAP_BASELINE, DemoCase, demo_subject

    slope = demo_section(**demo_keys)["ppg_amplitude_slope"]
    x, maps, subjects = [], [], []
    for k in range(n_subjects):
        subject = demo_subject(seed, 50000 + k)
        rng = np.random.default_rng([seed, k])
        hr0, base = rng.uniform(55, 110), rng.uniform(*MAP_BASELINE)
        for _ in range(per_subject):
            m = rng.uniform(55, 105)
            case = DemoCase(50000 + k, subject, hr0, True, base, np.full(12, m), (), (), slope)
            ppg, ecg = synth_signals(hr0, 1024 / 125 + 1, rng, case=case)
            x.append(np.stack([resample_track(c, 500, 125)[0][:1024] for c in (ppg, ecg)]))
            maps.append(m)
            subjects.append(50000 + k)
    return np.asarray(x, np.float32), np.asarray(maps), np.asarray(subjects)
