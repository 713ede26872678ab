"""Heartbeats of windows, shared by the quality rules (heart rate, signal quality indexes) and the
evaluation's raw features: ECG R-peaks and PPG beats, found with scipy.signal (band-pass or low-pass,
`find_peaks` with a refractory distance); results are flat arrays with one entry per beat and the
index of its window, in window order.

Beats. ECG R-peaks (`rpeaks`): 5-20 Hz band-pass, rectified, peaks above 40% of the 99th
percentile, >= 250 ms apart; each detection then moved to the apex of the baseline-free ECG (0.5 Hz
high-pass) within 100 ms, in the window's dominant QRS polarity, or in the other for a beat whose
deflection that way is more than twice as large (an inverted ectopic beat); a complex cut by the
window's edge keeps its detection. The band-passed signal peaks on the
steepest slope, which on a wide ventricular complex lies up to ~90 ms after its apex: without the
move, every premature ventricular beat lengthened the interval before it and shortened the one after
(MIT-BIH 208: rate bias -1.09 bpm against neurokit2, -0.20 with it; BENCHMARKS.md, "Real recordings"). PPG beats are found on the 10 Hz low-passed PPG (`PPG_LOWPASS_HZ`,
zero phase): each beat is a peak of the first derivative (the steepest point of the systolic
upstroke) above 40% of its 99th percentile, >= 270 ms apart and, in a second pass, at least 0.6 of
the first pass's longer beat intervals (75th percentile) apart, so a dicrotic upstroke is no beat; its trough is the minimum in the
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
from scipy.signal import butter, find_peaks, sosfiltfilt

PPG_LOWPASS_HZ = 10.0  # PPG beats are found and measured below this frequency (4th-order Butterworth)
MIN_BEATS = 3  # fewer R-peaks, PPG beats or R-to-foot pairs than this: NaN
UPSTROKE_MIN_SPACING_S = 0.27  # PPG upstrokes at least this far apart (up to 220 bpm)
FOOT_SEARCH_S = 0.4  # trough: minimum this long before the steepest upstroke point
PEAK_SEARCH_S = 0.35  # systolic peak: maximum this long after it
RPEAK_BAND_HZ = (5.0, 20.0)  # ECG band-pass before R-peaks are picked
RPEAK_MIN_SPACING_S = 0.25  # R-peaks at least this far apart (up to 240 bpm)
RPEAK_HIGHPASS_HZ = 0.5  # baseline removed (2nd-order Butterworth) before a detection's apex is located
RPEAK_APEX_SEARCH_S = 0.1  # the apex is searched this far either side of the band-pass detection


def rpeaks(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-peaks of ECG windows [n, L] (module docstring, "Beats").
    Returns, one entry per peak in window order: window index, sample index of the apex, and its time
    in samples refined by a parabola through the rectified baseline-free ECG."""
    sos = butter(3, list(RPEAK_BAND_HZ), btype="band", fs=fs, output="sos")
    rect = np.abs(sosfiltfilt(sos, ecg, axis=-1))
    height = 0.4 * np.percentile(rect, 99, axis=-1)
    distance = int(RPEAK_MIN_SPACING_S * fs)
    win, found = ragged([find_peaks(w, height=h, distance=distance)[0] for w, h in zip(rect, height)])
    hp = sosfiltfilt(butter(2, RPEAK_HIGHPASS_HZ, btype="high", fs=fs, output="sos"), ecg, axis=-1)
    polarity = np.sign(group_median(win, hp[win, found], len(hp), 1))  # the QRS complexes' dominant sign
    hp *= np.where(polarity < 0, -1.0, 1.0)[:, None]
    win, idx = _apex(hp, win, found, int(RPEAK_APEX_SEARCH_S * fs), distance)
    return win, idx, idx + _parabolic_offset(np.abs(hp), win, idx)


def _apex(y: np.ndarray, win: np.ndarray, found: np.ndarray, reach: int, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Detections (`win`, `found`) moved to the maximum of `y` within +-`reach` samples, or to the
    minimum for a beat whose deflection against the window's polarity is more than twice as large
    (an inverted ectopic beat among upright ones); a detection whose extreme lies on the search range's
    edge or the window's (no peak there: a complex cut by the window) stays where it was. Of two in
    one window that end up closer than `distance`, the larger is kept."""
    if len(found) == 0:
        return win, found
    length = y.shape[-1]
    cand = np.clip(found[:, None] + np.arange(-reach, reach + 1), 0, length - 1)
    seg = y[win[:, None], cand]
    seg = np.where((-seg.min(axis=1) > 2 * seg.max(axis=1))[:, None], -seg, seg)
    k = np.argmax(seg, axis=1)
    apex = cand[np.arange(len(found)), k]
    edge = (k == 0) | (k == 2 * reach) | (apex == 0) | (apex == length - 1)
    apex = np.where(edge, found, apex)
    size = np.abs(y[win, apex])
    keep = np.ones(len(apex), dtype=bool)
    for j in np.flatnonzero((win[1:] == win[:-1]) & (np.diff(apex) < distance)):  # rare: two detections, one complex
        i = j
        while not keep[i]:  # the last beat kept before j + 1
            i -= 1
        if win[i] == win[j + 1] and apex[j + 1] - apex[i] < distance:
            keep[i if size[j + 1] > size[i] else j + 1] = False
    return win[keep], apex[keep]


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
    win, up = ragged([_upstrokes(s, h, distance) for s, h in zip(slope, height)])
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


def _upstrokes(slope: np.ndarray, height: float, distance: int) -> np.ndarray:
    """Upstroke peaks of one window's PPG slope, in two passes: the second keeps peaks at least 0.6
    of the longer beat intervals of the first apart (`find_peaks` keeps the steeper of two close
    ones), so a prominent dicrotic wave's upstroke (young subjects) is not taken for a beat."""
    if height <= 0:
        return np.empty(0, np.int64)
    first = find_peaks(slope, height=height, distance=distance)[0]
    if len(first) < MIN_BEATS:
        return first
    return find_peaks(slope, height=height, distance=max(distance, int(0.6 * np.percentile(np.diff(first), 75))))[0]


def ragged(indices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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

def group_median(group: np.ndarray, values: np.ndarray, n: int, min_count: int) -> np.ndarray:
    """Median of `values` per group in range(n); NaN for a group with fewer than `min_count`."""
    order = np.lexsort((values, group))
    group, values = group[order], values[order]
    counts = np.bincount(group, minlength=n)
    starts = np.cumsum(counts) - counts
    out = np.full(n, np.nan)
    ok = counts >= max(min_count, 1)
    out[ok] = 0.5 * (values[starts[ok] + (counts[ok] - 1) // 2] + values[starts[ok] + counts[ok] // 2])
    return out
