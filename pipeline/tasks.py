"""Evaluation tasks, each declared once (docs/design.md, "Evaluation tasks"): probes, plots and the
report loop over `TASKS`. A task names its label, the channels its features come from, whether it
is a regression or a classification, and its level:
  - window: the label is computed from the window itself (`label(windows, fs)`),
  - subject: the label is a property of the case, read from the case table (`label(rows)`).
A label is NaN where it is undefined; those windows are left out of that task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

from pipeline.channels import CHANNELS


RPEAK_BAND_HZ = (5.0, 20.0)


def rpeak_heart_rate(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) per ECG window [n, L] from R-peaks: 5-20 Hz band-pass, peaks of the
    rectified signal above 40% of its 99th percentile, at least 250 ms apart; 60 / median RR.
    NaN where fewer than 3 peaks are found."""
    sos = butter(3, list(RPEAK_BAND_HZ), btype="band", fs=fs, output="sos")
    x = np.abs(sosfiltfilt(sos, np.nan_to_num(ecg), axis=-1))
    out = np.full(len(x), np.nan)
    for i, w in enumerate(x):
        peaks, _ = find_peaks(w, height=0.4 * np.percentile(w, 99), distance=int(0.25 * fs))
        if len(peaks) >= 3:
            out[i] = 60.0 * fs / np.median(np.diff(peaks))
    return out


def heart_rate_label(windows: np.ndarray, fs: float) -> np.ndarray:
    return rpeak_heart_rate(windows[:, CHANNELS.index("ECG")], fs)


def numeric_column(column: str) -> Callable[[list[dict]], np.ndarray]:
    def label(rows: list[dict]) -> np.ndarray:
        return np.array([float(r[column]) if r.get(column) not in ("", None) else np.nan for r in rows])
    return label


def category_column(column: str, positive: str, negative: str) -> Callable[[list[dict]], np.ndarray]:
    def label(rows: list[dict]) -> np.ndarray:
        values = {positive: 1.0, negative: 0.0}
        return np.array([values.get(r.get(column), np.nan) for r in rows])
    return label


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "regression" | "classification"
    inputs: tuple[str, ...]  # channels whose features the probe sees
    level: str  # "window" | "subject"
    label: Callable
    description: str
    metric: str  # the main metric (ablation summary, report headline)


TASKS = (
    Task("heart_rate_from_ppg", "regression", ("PPG",), "window", heart_rate_label,
         "heart rate of the window (ECG R-peaks) from PPG features", "r2"),
    Task("heart_rate_from_ppg+ecg", "regression", ("PPG", "ECG"), "window", heart_rate_label,
         "heart rate of the window (ECG R-peaks) from PPG and ECG features", "r2"),
    Task("age", "regression", ("PPG", "ECG"), "subject", numeric_column("age"), "age of the case (case table)", "mae"),
    Task("sex", "classification", ("PPG", "ECG"), "subject", category_column("sex", "F", "M"), "sex of the case (F = 1)", "auroc"),
)
