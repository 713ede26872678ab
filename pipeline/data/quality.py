"""Window quality rules. Each rule returns a boolean mask over windows (True = rejected) and is
evaluated independently; `first_rule_masks` attributes every rejected window to the first rule it
fails, in `RULES` order, so that per-rule rejection counts add up to the windows rejected.

Signal quality indexes (SQIs), for what the first rules cannot see (a PPG that is all motion
artefact, no pulse wave, while the ECG beats on and every amplitude is plausible):
- `ppg_skewness`: skewness of the PPG band-passed 0.5-8 Hz (Elgendi 2016, "Optimal signal quality
  index for photoplethysmogram signals", Bioengineering 3:21: the best of eight SQIs). A pulse wave
  rises fast and falls slowly, so it is skewed; noise is not. Rejected below `quality.ppg_skewness_min`
  (-0.3: some subjects' clean pulses are barely skewed, down to -0.22 in the demo).
- `ppg_template`: each PPG beat (pipeline/data/beats.py `ppg_beats`) from 0.1 s before its foot
  for 0.6 of the median beat interval, correlated with the window's median beat; rejected when the
  median correlation is below `quality.ppg_template_min` (Orphanidou et al. 2015, IEEE JBHI 19:832,
  used the mean and 0.86 for PPG; the median tolerates ectopic beats) or the window has fewer than
  `MIN_BEATS` beats.
- `ecg_template`: the same for ECG beats, 0.2 s before to 0.4 s after each R-peak; below
  `quality.ecg_template_min` (Orphanidou: 0.66 for ECG) or fewer than `MIN_BEATS` R-peaks.
- `rate_agreement`: the PPG pulse rate (60 / median foot-to-foot interval) and the ECG heart rate
  differ by more than `quality.rate_agreement_bpm`.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.beats import MIN_BEATS, group_median, ppg_beats, rpeaks

RULES = ("nan", "flat", "clipping", "amplitude", "heart_rate", "ppg_skewness", "ppg_template", "ecg_template", "rate_agreement")
SKEW_BAND_HZ = (0.5, 8.0)
PPG_SEGMENT = (-0.1, 0.6)  # from 0.1 s before the foot, for 0.6 of the median beat interval
ECG_SEGMENT_S = (-0.2, 0.4)  # around the R-peak


def heart_rate_bpm(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate of each ECG window [n, L] from its beats: 60 / the median interval between
    consecutive R-peaks inside the window (pipeline/data/beats.py `rpeaks`: 5-20 Hz band-pass,
    rectified, refractory 250 ms, then the QRS apex within 100 ms; sub-sample peak times). The median keeps an ectopic beat's short
    and long intervals from moving the rate, and a rate that changes within the window gives the
    middle of its beats, not the shortest period (the autocorrelation this replaced read 71.8 bpm
    where the beats gave 67.2). NaN with fewer than `MIN_BEATS` R-peaks; NaN samples count as zero."""
    return heart_rate_from_beats(ecg_beats(ecg, fs), len(ecg), fs)


def ecg_beats(ecg: np.ndarray, fs: float):
    """`rpeaks` of ECG windows [n, L] (NaN samples as zero), found once per batch for the heart rate and `ecg_template`."""
    return rpeaks(np.nan_to_num(np.asarray(ecg, dtype=np.float64)), fs)


def heart_rate_from_beats(beats, n: int, fs: float) -> np.ndarray:
    """60 / the median R-R interval per window of `ecg_beats` output; NaN with fewer than `MIN_BEATS`."""
    win, _, t = beats
    same = win[1:] == win[:-1]
    return 60.0 * fs / group_median(win[1:][same], np.diff(t)[same], n, MIN_BEATS - 1)


def rule_masks(win: np.ndarray, saturated: np.ndarray, fs: float, q: dict, hr: np.ndarray | None = None, beats=None) -> dict:
    """Rejection masks per rule for windows `win` [n, 2, L] (channel 0 PPG, 1 ECG); `hr` and `beats` (`ecg_beats`)
    when the caller has them already."""
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
        beats = ecg_beats(win[:, 1], fs) if beats is None else beats
        hr = heart_rate_from_beats(beats, len(win), fs)
    masks["heart_rate"] = ~((hr >= q["hr_min_bpm"]) & (hr <= q["hr_max_bpm"]))  # NaN fails

    ppg, ecg = np.nan_to_num(win[:, 0].astype(np.float64)), np.nan_to_num(win[:, 1].astype(np.float64))
    masks["ppg_skewness"] = ~(ppg_skewness(ppg, fs) >= q["ppg_skewness_min"])
    p_win, p_foot, _ = ppg_beats(ppg, fs)
    masks["ppg_template"] = ~(ppg_template_sqi(ppg, fs, p_win, p_foot) >= q["ppg_template_min"])
    r_win, _, r_time = ecg_beats(ecg, fs) if beats is None else beats
    masks["ecg_template"] = ~(template_sqi(ecg, r_win, r_time, int(ECG_SEGMENT_S[0] * fs), int(ECG_SEGMENT_S[1] * fs)) >= q["ecg_template_min"])
    masks["rate_agreement"] = ~(np.abs(pulse_rate_bpm(p_win, p_foot, len(win), fs) - hr) <= q["rate_agreement_bpm"])
    return masks


def ppg_skewness(ppg: np.ndarray, fs: float) -> np.ndarray:
    """Skewness of each PPG window [n, L] band-passed `SKEW_BAND_HZ` (zero phase); NaN when flat."""
    from scipy.signal import butter, sosfiltfilt
    from scipy.stats import skew

    x = sosfiltfilt(butter(2, list(SKEW_BAND_HZ), btype="band", fs=fs, output="sos"), ppg, axis=-1)
    sd = x.std(axis=-1)
    varying = sd > 1e-9 * (np.abs(ppg).max(axis=-1) + 1e-12)  # a flat window has no shape (the flat rule's)
    out = np.full(len(x), np.nan)
    if varying.any():
        out[varying] = skew(x[varying], axis=-1)
    return out


def pulse_rate_bpm(beat_win: np.ndarray, foot: np.ndarray, n: int, fs: float) -> np.ndarray:
    """60 / the median foot-to-foot interval of each window's PPG beats; NaN with fewer than `MIN_BEATS`."""
    same = beat_win[1:] == beat_win[:-1]
    return 60.0 * fs / group_median(beat_win[1:][same], np.diff(foot)[same], n, MIN_BEATS - 1)


def template_sqi(x: np.ndarray, beat_win: np.ndarray, at: np.ndarray, before: int, after: int) -> np.ndarray:
    """Per window of x [n, L]: the median over its beats (segments [at + before, at + after)
    samples, inside the window) of each beat's Pearson correlation with the window's median beat;
    NaN with fewer than `MIN_BEATS`. The median, not Orphanidou's mean: ectopic beats (a third of
    the beats of MIT-BIH record 208) are real, not noise, and with the mean a quarter of that clean
    record's windows fell below 0.66 (benchmarks/bench_real_recordings.py)."""
    n, length = x.shape
    start = np.round(at).astype(np.int64) + before
    inside = (start >= 0) & (start + (after - before) <= length)
    w, start = beat_win[inside], start[inside]
    out = np.full(n, np.nan)
    if not len(w) or after <= before:
        return out
    seg = x[w[:, None], start[:, None] + np.arange(after - before)]
    seg = seg - seg.mean(axis=1, keepdims=True)
    for k in np.unique(w):
        beats = seg[w == k]
        if len(beats) < MIN_BEATS:
            continue
        template = np.median(beats, axis=0)
        norm = np.linalg.norm(beats, axis=1) * np.linalg.norm(template)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.median(np.where(norm > 0, beats @ template / norm, 0.0))
    return out


def ppg_template_sqi(ppg: np.ndarray, fs: float, beat_win: np.ndarray, foot: np.ndarray) -> np.ndarray:
    """`template_sqi` of PPG beats: from 0.1 s before each foot for 0.6 of the window's median beat
    interval (one length for the whole batch: the median over its windows)."""
    same = beat_win[1:] == beat_win[:-1]
    intervals = np.diff(foot)[same]
    if not len(intervals):
        return np.full(len(ppg), np.nan)
    span = float(np.median(intervals))
    return template_sqi(ppg, beat_win, foot, int(PPG_SEGMENT[0] * fs), int(PPG_SEGMENT[1] * span))


def first_rule_masks(masks: dict) -> tuple[np.ndarray, dict]:
    """(keep mask, {rule: the windows it rejects first}) in `RULES` order."""
    taken = np.zeros(len(next(iter(masks.values()))), dtype=bool)
    first = {}
    for rule in RULES:
        first[rule] = masks[rule] & ~taken
        taken |= masks[rule]
    return ~taken, first
