"""Raw-signal features, the baseline every encoder is compared with (numpy only)."""

from __future__ import annotations

import numpy as np

from pipeline.tasks import RPEAK_BAND_HZ

BANDS_HZ = [(0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 40.0)]


def highest_frequency_hz() -> float:
    """The highest frequency the evaluation filters or measures: it must stay below Nyquist."""
    return max(max(hi for _, hi in BANDS_HZ), RPEAK_BAND_HZ[1])


def raw_features(x: np.ndarray, fs: float, batch: int = 2048) -> np.ndarray:
    """`window_features` of x [n, C, L] computed `batch` windows at a time (bounded memory)."""
    parts = [window_features(x[s : s + batch], fs) for s in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.empty((0, x.shape[1] * (6 + len(BANDS_HZ))))


def window_features(x: np.ndarray, fs: float) -> np.ndarray:
    """Per channel: mean, std, skewness, kurtosis, peak-to-peak, zero-crossing rate of the
    centred signal, log power in BANDS_HZ. x [n, C, L] -> [n, C * (6 + bands)]."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    mean = x.mean(-1, keepdims=True)
    c = x - mean
    std = c.std(-1, keepdims=True) + 1e-9
    z = c / std
    feats = [mean[..., 0], std[..., 0], (z**3).mean(-1), (z**4).mean(-1), np.ptp(x, axis=-1),
             (np.diff(np.sign(c), axis=-1) != 0).mean(-1)]
    power = np.abs(np.fft.rfft(z, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / fs)
    for lo, hi in BANDS_HZ:
        sel = (freqs >= lo) & (freqs < hi)
        feats.append(np.log(power[..., sel].mean(-1) + 1e-9))
    return np.stack(feats, axis=-1).reshape(len(x), -1)
