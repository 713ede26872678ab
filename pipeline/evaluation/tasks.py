"""Evaluation tasks, each declared once (docs/design.md, "Evaluation tasks"): probes, plots, the
report and the ablation summary loop over `TASKS`. A task names its label, the channels its
features come from, whether it is a regression or a classification, its level and main metric:
  - window: the label belongs to the window, read from the per-window label table
    (`label(window_labels)`: {column: [n]}, the columns of pipeline/data/labels.py plus `hr_bpm`, the ECG
    heart rate the windows stage stored in the shards: `quality.heart_rate_bpm`, 60 / the median
    R-R interval of the window),
  - subject: the label is a property of the patient, read from the case table (`label(rows)`);
    features are averaged over each subject's windows.
A label is NaN where it is undefined; those windows (or subjects) are left out of that task.
The hypotension tasks come in the two protocols of pipeline/data/labels.py (hypotension ahead, and
the literature's onset protocol), and name `current_map` as a reference: the window's own
arterial MAP, a value the arterial line already gives, so a score beside it says whether the
waveforms add anything to the monitor (invasive; a reference, not a competitor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.data.labels import HORIZONS_MIN


def window_column(column: str) -> Callable[[dict], np.ndarray]:
    def label(window_labels: dict) -> np.ndarray:
        return np.asarray(window_labels[column], dtype=np.float64)
    return label


def numeric_column(column: str) -> Callable[[list[dict]], np.ndarray]:
    def label(rows: list[dict]) -> np.ndarray:
        out = []
        for r in rows:
            try:
                out.append(float(r.get(column)))
            except (TypeError, ValueError):
                out.append(np.nan)
        return np.array(out)
    return label


def category_column(column: str, positive: str, negative: str) -> Callable[[list[dict]], np.ndarray]:
    def label(rows: list[dict]) -> np.ndarray:
        values = {positive: 1.0, negative: 0.0}
        return np.array([values.get(r.get(column), np.nan) for r in rows])
    return label


def at_least(column: str, threshold: float) -> Callable[[list[dict]], np.ndarray]:
    numeric = numeric_column(column)

    def label(rows: list[dict]) -> np.ndarray:
        v = numeric(rows)
        return np.where(np.isfinite(v), (v >= threshold).astype(float), np.nan)
    return label


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # "regression" | "classification"
    inputs: tuple[str, ...]  # channels the features may use
    level: str  # "window" | "subject"
    label: Callable
    description: str
    metric: str  # the main metric (report headline, label-efficiency curve, ablation summary)
    references: tuple[str, ...] = ()  # reference feature sets beside the baselines (evaluate.REFERENCE_SETS), e.g. current_map


    @property
    def metrics(self) -> tuple[str, ...]:
        return ("auroc", "auprc", "brier") if self.kind == "classification" else ("mae", "r2")


BOTH = ("PPG", "ECG")
TASKS = (
    *(Task(f"hypotension_{h}min", "classification", BOTH, "window", window_column(f"hypotension_{h}min"),
           f"hypotension ahead: a hypotensive event (MAP < threshold for >= the minimum duration) starts within {h} min after "
           "the window ends; every window with a recorded washout and horizon and no event in its washout", "auroc", ("current_map",))
      for h in HORIZONS_MIN),
    *(Task(f"hypotension_onset_{h}min", "classification", BOTH, "window", window_column(f"hypotension_onset_{h}min"),
           f"onset protocol (Hatib 2018, Lee 2021): the last window ending {h} min before each event's onset against windows "
           "at least labels.negative_margin_s from any event", "auroc", ("current_map",))
      for h in HORIZONS_MIN),
    Task("map_mmHg", "regression", BOTH, "window", window_column("map_mmHg"), "mean arterial pressure over the window (arterial line, mmHg)", "mae"),
    Task("sbp_mmHg", "regression", BOTH, "window", window_column("sbp_mmHg"), "systolic pressure over the window (mmHg)", "mae"),
    Task("dbp_mmHg", "regression", BOTH, "window", window_column("dbp_mmHg"), "diastolic pressure over the window (mmHg)", "mae"),
    Task("heart_rate_ppg", "regression", ("PPG",), "window", window_column("hr_bpm"),
         "heart rate of the window (ECG, as the windows stage measures it) from the PPG alone (a sanity task: the ECG is blanked for the encoders)", "mae"),
    Task("age", "regression", BOTH, "subject", numeric_column("age"), "age (years, case table)", "mae"),
    Task("sex", "classification", BOTH, "subject", category_column("sex", "F", "M"), "sex (F = 1, case table)", "auroc"),
    Task("bmi", "regression", BOTH, "subject", numeric_column("bmi"), "body-mass index (case table)", "mae"),
    Task("asa3", "classification", BOTH, "subject", at_least("asa", 3), "ASA physical status 3 or more (case table)", "auroc"),
)
