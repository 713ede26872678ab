"""Raw-signal features, the baseline every encoder is compared with: what a physiologist reads off a
window. `RAW_FEATURES` names each column of `raw_features` and the channels it uses.

Per channel (PPG, ECG): mean, std, skewness, kurtosis, peak-to-peak, zero-crossing rate of the
centred signal, log power of the standardized signal in each of `BANDS_HZ`.
PPG: interquartile range, spectral heart rate, pulse amplitude. ECG: R-peak heart rate.
PPG and ECG: pulse arrival time.

A feature is NaN where it is undefined for a window (a flat channel, too few beats); the caller
imputes. NaN samples are read as 0 (`np.nan_to_num`), a flat channel is one whose samples are all
equal.

Beats (R-peaks, PPG beats with their feet and amplitudes): pipeline/data/beats.py, shared with the
quality rules.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import periodogram

from pipeline.channels import CHANNELS
from pipeline.data.beats import MIN_BEATS, PPG_LOWPASS_HZ, RPEAK_BAND_HZ, group_median, ppg_beats, rpeaks

BANDS_HZ = [(0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 40.0)]
SPECTRAL_HR_HZ = (0.67, 3.0)  # 40-180 bpm: where the spectral heart rate is looked for
PAT_RANGE_MS = (100.0, 600.0)  # R-peak to PPG foot delays outside this range are not pairs
SPECTRAL_PADDING = 4  # periodogram length = 4 x window length (zero-padded), before interpolation

_MOMENTS = ("mean", "std", "skewness", "kurtosis", "peak_to_peak", "zero_crossing_rate")
_BAND_NAMES = tuple(f"logpow_{lo:g}-{hi:g}Hz" for lo, hi in BANDS_HZ)

RAW_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    *((f"{ch}_{name}", (ch,)) for ch in CHANNELS for name in _MOMENTS + _BAND_NAMES),
    ("PPG_spread", ("PPG",)),  # interquartile range, PPG units
    ("PPG_hr_spectral_bpm", ("PPG",)),
    ("PPG_pulse_amplitude", ("PPG",)),  # median systolic peak minus preceding trough, PPG units
    ("ECG_hr_rpeak_bpm", ("ECG",)),
    ("PAT_ms", ("PPG", "ECG")),  # median R-peak to next PPG foot (intersecting tangent)
)


def highest_frequency_hz() -> float:
    """The highest frequency the evaluation filters or measures: it must stay below Nyquist."""
    return max(max(hi for _, hi in BANDS_HZ), RPEAK_BAND_HZ[1], PPG_LOWPASS_HZ, SPECTRAL_HR_HZ[1])


def raw_features(x: np.ndarray, fs: float, batch: int = 2048) -> np.ndarray:
    """The `RAW_FEATURES` of windows x [n, C, L] (channels as `CHANNELS`): [n, len(RAW_FEATURES)]
    float64, computed `batch` windows at a time (bounded memory); NaN where undefined."""
    if x.ndim != 3 or x.shape[1] != len(CHANNELS):
        raise ValueError(f"windows must be [n, {len(CHANNELS)} channels {CHANNELS}, length], got {x.shape}")
    parts = [_batch_features(x[s : s + batch], fs) for s in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.empty((0, len(RAW_FEATURES)))


def _batch_features(x: np.ndarray, fs: float) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    flat = np.ptp(x, axis=-1) == 0  # [n, C]
    feats = {}
    for i, ch in enumerate(CHANNELS):
        for name, values in zip(_MOMENTS + _BAND_NAMES, _moments_and_bands(x[:, i], fs, flat[:, i])):
            feats[f"{ch}_{name}"] = values
    ppg, ecg = x[:, CHANNELS.index("PPG")], x[:, CHANNELS.index("ECG")]
    ppg_flat, ecg_flat = flat[:, CHANNELS.index("PPG")], flat[:, CHANNELS.index("ECG")]
    q25, q75 = np.percentile(ppg, [25, 75], axis=-1)
    feats["PPG_spread"] = q75 - q25
    feats["PPG_hr_spectral_bpm"] = spectral_heart_rate(ppg, fs)
    beat_win, foot_time, amplitude = ppg_beats(ppg, fs)
    feats["PPG_pulse_amplitude"] = group_median(beat_win, amplitude, len(x), MIN_BEATS)
    r_win, r_idx, r_time = rpeaks(ecg, fs)
    same = r_win[1:] == r_win[:-1]
    rr = group_median(r_win[1:][same], np.diff(r_idx)[same].astype(np.float64), len(x), MIN_BEATS - 1)
    feats["ECG_hr_rpeak_bpm"] = 60.0 * fs / rr
    feats["PAT_ms"] = _pulse_arrival_ms(r_win, r_time, beat_win, foot_time, fs, x.shape[-1], len(x))
    for name in ("PPG_hr_spectral_bpm", "PPG_pulse_amplitude"):
        feats[name][ppg_flat] = np.nan
    feats["ECG_hr_rpeak_bpm"][ecg_flat] = np.nan
    feats["PAT_ms"][ppg_flat | ecg_flat] = np.nan
    return np.stack([feats[name] for name, _ in RAW_FEATURES], axis=-1)


def _moments_and_bands(x: np.ndarray, fs: float, flat: np.ndarray) -> list[np.ndarray]:
    """Mean, std, skewness, kurtosis, peak-to-peak, zero-crossing rate of the centred signal, log
    power of the standardized signal in BANDS_HZ, of x [n, L]. Shape statistics are NaN where flat."""
    mean = x.mean(-1, keepdims=True)
    c = np.where(flat[:, None], 0.0, x - mean)
    std = c.std(-1, keepdims=True)
    z = c / (std + 1e-9)
    z2 = z * z
    out = [mean[:, 0], std[:, 0], (z2 * z).mean(-1), (z2 * z2).mean(-1), np.ptp(x, axis=-1),
           (np.diff(np.sign(c), axis=-1) != 0).mean(-1)]
    spectrum = np.fft.rfft(z, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / fs)
    for lo, hi in BANDS_HZ:
        sel = (freqs >= lo) & (freqs < hi)
        out.append(np.log(power[:, sel].mean(-1) + 1e-9))
    for k in [2, 3, 5] + list(range(6, len(out))):
        out[k][flat] = np.nan
    return out


def spectral_heart_rate(ppg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) of PPG windows [n, L]: the largest local maximum of the periodogram (Hann
    window, linear detrend, zero-padded to 4 L) between 0.67 and 3.0 Hz, refined by a parabola
    through the log power of it and its neighbours. NaN where the band holds no local maximum."""
    freqs, power = periodogram(ppg, fs, window="hann", nfft=SPECTRAL_PADDING * ppg.shape[-1],
                               detrend="linear", axis=-1)
    band = np.flatnonzero((freqs >= SPECTRAL_HR_HZ[0]) & (freqs <= SPECTRAL_HR_HZ[1]))
    centre, left, right = power[:, band], power[:, band - 1], power[:, band + 1]
    is_peak = (centre > left) & (centre >= right) & (centre > 0)
    k = np.argmax(np.where(is_peak, centre, -np.inf), axis=-1)
    rows = np.arange(len(power))
    a, b, c = (np.log(p[rows, k] + 1e-300) for p in (left, centre, right))
    denom = a - 2 * b + c
    delta = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    hr = 60.0 * (freqs[band[k]] + np.clip(delta, -0.5, 0.5) * (freqs[1] - freqs[0]))
    return np.where(is_peak.any(-1), hr, np.nan)


def _pulse_arrival_ms(r_win, r_time, beat_win, foot_time, fs: float, length: int, n: int) -> np.ndarray:
    """Median over R-peaks of the delay to the next PPG foot of the same window, pairs in
    PAT_RANGE_MS only; NaN with fewer than MIN_BEATS pairs."""
    span = 4.0 * length  # feet lie in [-FOOT_SEARCH_S * fs, length): windows never overlap on this axis
    order = np.argsort(beat_win * span + foot_time)
    j = np.searchsorted((beat_win * span + foot_time)[order], r_win * span + r_time, side="right")
    if not len(order):
        return np.full(n, np.nan)
    has_next = j < len(order)
    nxt = order[np.minimum(j, len(order) - 1)]
    has_next &= beat_win[nxt] == r_win
    delay_ms = (foot_time[nxt] - r_time) / fs * 1000.0  # from the times, not the keys: exact per window
    ok = has_next & (delay_ms >= PAT_RANGE_MS[0]) & (delay_ms <= PAT_RANGE_MS[1])
    return group_median(r_win[ok], delay_ms[ok], n, MIN_BEATS)


