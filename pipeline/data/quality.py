"""Window quality rules. Each rule returns a boolean mask over windows (True = rejected) and is
evaluated independently; `first_failing` attributes every rejected window to the first rule it
fails, in `RULES` order, so that per-rule rejection counts add up to the windows rejected.
"""

from __future__ import annotations

import numpy as np

RULES = ("nan", "flat", "clipping", "amplitude", "heart_rate")
MIN_BPM_SEARCH, MAX_BPM_SEARCH = 15.0, 300.0


def heart_rate_bpm(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate of each ECG window [n, L] from the autocorrelation of its QRS energy envelope.

    The envelope (squared first difference, smoothed over 100 ms) suppresses baseline wander and
    is tolerant of beat-to-beat jitter. The beat period is the shortest lag (15-300 bpm, lag <= L/2)
    whose autocorrelation reaches 80% of the maximum in that range (guards against picking two
    beats), refined by a parabola through its neighbours. NaN samples count as zero.
    """
    from scipy import fft
    from scipy.ndimage import uniform_filter1d

    x = np.diff(np.nan_to_num(np.asarray(ecg, dtype=np.float32)), axis=-1) ** 2
    x = uniform_filter1d(x, size=max(1, int(round(0.1 * fs))), axis=-1)
    x = x - x.mean(axis=-1, keepdims=True)
    n = x.shape[-1]
    lo = max(1, int(np.floor(fs * 60.0 / MAX_BPM_SEARCH)))
    hi = min(n // 2, int(np.ceil(fs * 60.0 / MIN_BPM_SEARCH)))
    n_fft = fft.next_fast_len(n + hi + 1, real=True)  # zero padding: lags <= hi do not wrap
    spec = fft.rfft(x, n=n_fft, axis=-1)
    ac = fft.irfft(spec.real**2 + spec.imag**2, n=n_fft, axis=-1)[..., : hi + 2]
    seg = ac[..., lo : hi + 1]
    # local maxima reaching 80% of the best: take the first
    peak = np.zeros_like(seg, dtype=bool)
    peak[..., 1:-1] = (seg[..., 1:-1] >= seg[..., :-2]) & (seg[..., 1:-1] >= seg[..., 2:])
    good = peak & (seg >= 0.8 * seg.max(axis=-1, keepdims=True)) & (seg > 0)
    k = np.where(good.any(axis=-1), np.argmax(good, axis=-1), np.argmax(seg, axis=-1))
    rows = np.arange(seg.shape[0])
    km, kp = np.clip(k - 1, 0, None), np.clip(k + 1, None, seg.shape[-1] - 1)
    y0, y1, y2 = seg[rows, km], seg[rows, k], seg[rows, kp]
    denom = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where((k > 0) & (k < seg.shape[-1] - 1) & (denom < 0), 0.5 * (y0 - y2) / denom, 0.0)
    bpm = 60.0 * fs / (k + lo + shift)
    bpm[~good.any(axis=-1) | (ac[..., 0] <= 0)] = np.nan  # no rhythm found
    return bpm


def rule_masks(win: np.ndarray, saturated: np.ndarray, fs: float, q: dict, hr: np.ndarray | None = None) -> dict:
    """Rejection masks per rule for windows `win` [n, 2, L] (channel 0 PPG, 1 ECG)."""
    nan = np.isnan(win)
    n_all_nan = nan.all(axis=-1)  # [n, 2]
    masks = {"nan": nan.any(axis=(-2, -1))}  # any sample without data: training never sees NaN

    absmax = np.fmax.reduce(np.abs(win), axis=-1, keepdims=True)  # NaN ignored (NaN where all are: no flat run then)
    tol = q["flat_rel_tol"] * absmax + 1e-9
    flat = np.abs(np.diff(win, axis=-1)) <= tol  # NaN compares False
    masks["flat"] = (flat.mean(axis=-1) > q["flat_max_fraction"]).any(axis=-1)

    masks["clipping"] = (saturated.mean(axis=-1) > q["clip_max_fraction"]).any(axis=-1)

    ptp = np.fmax.reduce(win, axis=-1) - np.fmin.reduce(win, axis=-1)  # NaN ignored; all-NaN rows masked below
    lo = np.array([q["ppg_ptp_min"], q["ecg_ptp_min"]])
    hi = np.array([q["ppg_ptp_max"], q["ecg_ptp_max"]])
    masks["amplitude"] = (((ptp < lo) | (ptp > hi)) & ~n_all_nan).any(axis=-1)

    if hr is None:
        hr = heart_rate_bpm(win[:, 1], fs)
    masks["heart_rate"] = ~((hr >= q["hr_min_bpm"]) & (hr <= q["hr_max_bpm"]))  # NaN fails
    return masks


def first_failing(masks: dict) -> tuple[np.ndarray, dict]:
    """(keep mask, {rule: windows attributed to it}) with each rejected window counted once."""
    n = len(next(iter(masks.values())))
    taken = np.zeros(n, dtype=bool)
    counts = {}
    for rule in RULES:
        m = masks[rule] & ~taken
        counts[rule] = int(m.sum())
        taken |= masks[rule]
    return ~taken, counts
