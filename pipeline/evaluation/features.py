"""Raw-signal features, the baseline every encoder is compared with: what a physiologist reads off a
window. `RAW_FEATURES` names each column of `raw_features` and the channels it uses.

Per channel (PPG, ECG): mean, std, skewness, kurtosis, peak-to-peak, zero-crossing rate of the
centred signal, log power of the standardized signal in each of `BANDS_HZ`.
PPG: interquartile range, spectral heart rate, pulse amplitude. ECG: R-peak heart rate.
PPG and ECG: pulse arrival time.

A feature is NaN where it is undefined for a window (a flat channel, too few beats); the caller
imputes. NaN samples are read as 0 (`np.nan_to_num`), a flat channel is one whose samples are all
equal.

Beats. ECG R-peaks (`rpeaks`): 5-20 Hz band-pass, rectified, peaks above 40% of the 99th
percentile, >= 250 ms apart. (The heart-rate label is not these: it is the windows stage's
`quality.heart_rate_bpm`, from an autocorrelation.) PPG beats are found on the 10 Hz low-passed PPG (`PPG_LOWPASS_HZ`,
zero phase): each beat is a peak of the first derivative (the steepest point of the systolic
upstroke) above 40% of its 99th percentile, >= 270 ms apart; its trough is the minimum in the
400 ms before it (not before the previous upstroke), its systolic peak the maximum in the 350 ms
after it (not after the next upstroke). Beats whose trough or peak falls on the window's edge are
dropped. The foot used for timing is the intersecting-tangent point: where the tangent at the
steepest point of the upstroke crosses the horizontal line through the trough. It is chosen over
the trough itself because the diastolic minimum is flat, so its position wanders by tens of ms
with noise and baseline drift and is quantized to the 8 ms sample grid; and over the maximum of
the second derivative because that needs a second differentiation of a noisy signal. The tangent
point is a sub-sample time set by the steep, well-defined upstroke (Chiu et al. 1991; the usual
foot for pulse transit and arrival times).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, find_peaks, periodogram, sosfiltfilt

from pipeline.channels import CHANNELS

BANDS_HZ = [(0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 40.0)]
SPECTRAL_HR_HZ = (0.67, 3.0)  # 40-180 bpm: where the spectral heart rate is looked for
PPG_LOWPASS_HZ = 10.0  # PPG beats are found and measured below this frequency (4th-order Butterworth)
PAT_RANGE_MS = (100.0, 600.0)  # R-peak to PPG foot delays outside this range are not pairs
MIN_BEATS = 3  # fewer R-peaks, PPG beats or R-to-foot pairs than this: NaN
SPECTRAL_PADDING = 4  # periodogram length = 4 x window length (zero-padded), before interpolation
UPSTROKE_MIN_SPACING_S = 0.27  # PPG upstrokes at least this far apart (up to 220 bpm)
FOOT_SEARCH_S = 0.4  # trough: minimum this long before the steepest upstroke point
PEAK_SEARCH_S = 0.35  # systolic peak: maximum this long after it
RPEAK_BAND_HZ = (5.0, 20.0)  # ECG band-pass before R-peaks are picked
RPEAK_MIN_SPACING_S = 0.25  # R-peaks at least this far apart (up to 240 bpm)

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
    feats["PPG_pulse_amplitude"] = _group_median(beat_win, amplitude, len(x), MIN_BEATS)
    r_win, r_idx, r_time = rpeaks(ecg, fs)
    same = r_win[1:] == r_win[:-1]
    rr = _group_median(r_win[1:][same], np.diff(r_idx)[same].astype(np.float64), len(x), MIN_BEATS - 1)
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


def rpeaks(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-peaks of ECG windows [n, L] (module docstring, "Beats").
    Returns, one entry per peak in window order: window index, sample index, and time in samples
    refined by a parabola through the rectified band-passed signal."""
    sos = butter(3, list(RPEAK_BAND_HZ), btype="band", fs=fs, output="sos")
    rect = np.abs(sosfiltfilt(sos, ecg, axis=-1))
    height = 0.4 * np.percentile(rect, 99, axis=-1)
    distance = int(RPEAK_MIN_SPACING_S * fs)
    win, idx = _ragged([find_peaks(w, height=h, distance=distance)[0] for w, h in zip(rect, height)])
    return win, idx, idx + _parabolic_offset(rect, win, idx)


def ppg_beats(ppg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PPG beats of windows [n, L] (module docstring, "Beats"). Returns, one entry per beat in
    window order: window index, foot time (intersecting tangent, samples, fractional), amplitude
    (systolic peak minus the preceding trough, PPG units)."""
    n, length = ppg.shape
    sos = butter(4, PPG_LOWPASS_HZ, btype="low", fs=fs, output="sos")
    lp = sosfiltfilt(sos, ppg, axis=-1)
    slope = np.gradient(lp, axis=-1)  # per sample
    height = 0.4 * np.percentile(slope, 99, axis=-1)
    distance = max(1, int(UPSTROKE_MIN_SPACING_S * fs))
    win, up = _ragged([find_peaks(s, height=h, distance=distance)[0] if h > 0 else np.empty(0, np.int64)
                       for s, h in zip(slope, height)])
    first = np.r_[True, win[1:] != win[:-1]]
    last = np.r_[win[1:] != win[:-1], True]
    prev_up = np.where(first, -1, np.r_[-1, up[:-1]])
    next_up = np.where(last, length, np.r_[up[1:], length])

    back = up[:, None] - np.arange(int(FOOT_SEARCH_S * fs) + 1)  # from the upstroke backwards
    trough_vals = np.where(back > prev_up[:, None], lp[win[:, None], np.clip(back, 0, None)], np.inf)
    trough = up - np.argmin(trough_vals, axis=-1)
    ahead = up[:, None] + np.arange(int(PEAK_SEARCH_S * fs) + 1)
    peak_vals = np.where(ahead < next_up[:, None], lp[win[:, None], np.clip(ahead, None, length - 1)], -np.inf)
    peak = up + np.argmax(peak_vals, axis=-1)

    base = lp[win, trough]
    foot = up - (lp[win, up] - base) / slope[win, up]  # <= up: the trough is no higher than lp[up]
    keep = (trough > 0) & (peak < length - 1) & (foot >= back[:, -1])
    return win[keep], foot[keep], (lp[win, peak] - base)[keep]


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
    return _group_median(r_win[ok], delay_ms[ok], n, MIN_BEATS)


def _ragged(indices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-window index arrays -> (window of each, index of each), flat, in window order."""
    counts = np.array([len(i) for i in indices], dtype=np.int64)
    flat = np.concatenate(indices).astype(np.int64) if indices else np.empty(0, np.int64)
    return np.repeat(np.arange(len(indices)), counts), flat


def _parabolic_offset(signal: np.ndarray, win: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Offset (-0.5..0.5 samples) of the vertex of the parabola through signal[win, idx-1..idx+1]."""
    inner = (idx > 0) & (idx < signal.shape[-1] - 1)
    i = np.clip(idx, 1, signal.shape[-1] - 2)
    a, b, c = signal[win, i - 1], signal[win, i], signal[win, i + 1]
    denom = a - 2 * b + c
    offset = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    return np.where(inner, np.clip(offset, -0.5, 0.5), 0.0)


def _group_median(group: np.ndarray, values: np.ndarray, n: int, min_count: int) -> np.ndarray:
    """Median of `values` per group in range(n); NaN for a group with fewer than `min_count`."""
    order = np.lexsort((values, group))
    group, values = group[order], values[order]
    counts = np.bincount(group, minlength=n)
    starts = np.cumsum(counts) - counts
    out = np.full(n, np.nan)
    ok = counts >= max(min_count, 1)
    out[ok] = 0.5 * (values[starts[ok] + (counts[ok] - 1) // 2] + values[starts[ok] + counts[ok] // 2])
    return out
