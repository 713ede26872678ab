"""Per-window clinical labels from the numeric tracks of the case files (docs/design.md, "Labels").

The `labels` rule runs this per batch on the files the downloads already fetched; it reads no
signal, only the numerics named by `labels.tracks` (VitalDB: the Solar8000 monitor's arterial-line
pressures, about one value every 2 s) and the windows' `(caseid, start_s)` from the batch's shards.

Definitions (the report repeats them):
- Valid sample: a value inside `labels.valid_mmHg.<kind>`; others (flushes, zeroing, clamps) are
  dropped before anything else.
- Blood pressure of a window [start_s, start_s + window): the median of its valid samples; empty
  when it has none.
- Coverage: MAP data cover a span when valid samples reach both its ends within `labels.max_gap_s`
  and no two consecutive valid samples inside it are more than `labels.max_gap_s` apart.
- Hypotensive event: a run of consecutive valid MAP samples below `labels.hypotension_mmHg` (no gap
  over `max_gap_s` inside it) lasting at least `labels.hypotension_min_s`. The run lasts from its
  first sample to the first sample at or above the threshold after it; a run cut by a gap or by the
  end of the data lasts to its last sample. The event starts at the run's first sample.
- Censored run: a run shorter than `hypotension_min_s` that a gap or the end of the data cuts: it may
  be an event whose rest was not recorded. It is never a positive, but it blocks like an event
  wherever the rules below need "no event" (a negative must be known to be one).
- Washout W = `labels.washout_s`. A window ending at t is labelled only if MAP data cover
  [t - W, t + h] (both classes alike: a window near the end of a case, whose future is not
  recorded, is undefined whatever happens), and only if no event or censored run overlaps
  [t - W, t] (no window during a hypotensive stretch, or less than W after one).

Two protocols, each a set of label columns per horizon h in `HORIZONS_MIN`:
- `hypotension_{h}min` (hypotension ahead, every window): with the rules above, positive if an event
  starts in (t, t + h]; negative if no event or censored run overlaps [t - W, t + h].
- `hypotension_onset_{h}min` (the literature's protocol: Hatib et al. 2018, Lee et al. 2021): per
  event starting at s, one positive, the last window ending at or before s - h (if it ends less than
  one window length before s - h; else the event has no positive at h), provided MAP data cover
  [t - W, s] and no other event or censored run overlaps [t - W, s); negatives are windows whose
  span lies at least `labels.negative_margin_s` from every event and censored run, with MAP data
  covering [t - W, t + h]; every other window is undefined.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import h5py
import numpy as np

from pipeline.data.sources import get_source
from pipeline.errors import TransientError, classify
from pipeline.io import atomic_path, progress

log = logging.getLogger(__name__)

HORIZONS_MIN = (5, 10, 15)
PRESSURES = ("map", "sbp", "dbp")
PROTOCOLS = ("hypotension", "hypotension_onset")  # column prefixes: hypotension ahead, the onset protocol (module docstring)
COLUMNS = ["caseid", "start_s", *(f"{p}_mmHg" for p in PRESSURES),
           *(f"{protocol}_{h}min" for protocol in PROTOCOLS for h in HORIZONS_MIN)]


def valid(times: np.ndarray, values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples with a finite value inside [lo, hi], sorted by time."""
    t, v = np.asarray(times, np.float64), np.asarray(values, np.float64)
    keep = np.isfinite(t) & np.isfinite(v) & (v >= lo) & (v <= hi)
    order = np.argsort(t[keep], kind="stable")
    return t[keep][order], v[keep][order]


def window_medians(t: np.ndarray, v: np.ndarray, starts: np.ndarray, length_s: float) -> np.ndarray:
    """Median of the samples in [start, start + length_s) per window; NaN where there are none."""
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, np.asarray(starts) + length_s, side="left")
    return np.array([np.median(v[a:b]) if b > a else np.nan for a, b in zip(lo, hi)])


def hypotensive_runs(t: np.ndarray, v: np.ndarray, threshold: float, min_s: float, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(events, blockers) of a valid MAP series (module docstring): [k, 2] arrays of (start, end)
    times, sorted and disjoint; events are the runs of at least `min_s`, blockers the events and the
    censored runs (shorter, but cut by a gap or the end of the data)."""
    below = v < threshold
    events, blockers = [], []
    i, n = 0, len(t)
    while i < n:
        if not below[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and below[j + 1] and t[j + 1] - t[j] <= max_gap_s:
            j += 1
        recovered = j + 1 < n and t[j + 1] - t[j] <= max_gap_s  # the next sample is at or above, no gap
        end = t[j + 1] if recovered else t[j]
        if end - t[i] >= min_s:
            events.append((t[i], end))
            blockers.append((t[i], end))
        elif not recovered:
            blockers.append((t[i], end))
        i = j + 1
    return np.asarray(events, np.float64).reshape(-1, 2), np.asarray(blockers, np.float64).reshape(-1, 2)


def covered(t: np.ndarray, lo, hi, max_gap_s: float) -> np.ndarray:
    """Per span [lo, hi]: do the valid sample times t (sorted) cover it (module docstring, "Coverage")?"""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if len(t) == 0:
        return np.zeros(lo.shape, bool)
    gaps = np.concatenate([[0], np.cumsum(np.diff(t) > max_gap_s)])  # gaps[k] = gaps before sample k
    i = np.searchsorted(t, lo, side="left")  # first sample at or after lo
    j = np.searchsorted(t, hi, side="right") - 1  # last sample at or before hi
    ic, jc = np.clip(i, 0, len(t) - 1), np.clip(j, 0, len(t) - 1)
    return (i <= j) & (i < len(t)) & (j >= 0) & (t[ic] - lo <= max_gap_s) & (hi - t[jc] <= max_gap_s) & (gaps[ic] == gaps[jc])


def overlapping(runs: np.ndarray, lo, hi) -> np.ndarray:
    """Per span [lo, hi]: how many of the sorted, disjoint runs [start, end] overlap it."""
    return np.searchsorted(runs[:, 0], hi, side="right") - np.searchsorted(runs[:, 1], lo, side="left")


def hypotension_ahead(t: np.ndarray, v: np.ndarray, ends: np.ndarray, horizon_s: float, cfg: dict) -> np.ndarray:
    """1 / 0 / NaN (undefined) per window end time: the hypotension-ahead protocol (module docstring)."""
    ends = np.asarray(ends, dtype=np.float64)
    events, blockers = hypotensive_runs(t, v, cfg["hypotension_mmHg"], cfg["hypotension_min_s"], cfg["max_gap_s"])
    w = cfg["washout_s"]
    labelled = covered(t, ends - w, ends + horizon_s, cfg["max_gap_s"]) & (overlapping(blockers, ends - w, ends) == 0)
    starts = events[:, 0]
    onset_ahead = np.searchsorted(starts, ends + horizon_s, side="right") > np.searchsorted(starts, ends, side="right")
    out = np.full(len(ends), np.nan)
    out[labelled & (overlapping(blockers, ends - w, ends + horizon_s) == 0)] = 0.0
    out[labelled & onset_ahead] = 1.0
    return out


def hypotension_onset(t: np.ndarray, v: np.ndarray, ends: np.ndarray, window_s: float, horizon_s: float, cfg: dict) -> np.ndarray:
    """1 / 0 / NaN per window end time (sorted): the onset protocol (module docstring), one positive per event."""
    ends = np.asarray(ends, dtype=np.float64)
    events, blockers = hypotensive_runs(t, v, cfg["hypotension_mmHg"], cfg["hypotension_min_s"], cfg["max_gap_s"])
    w, gap, margin = cfg["washout_s"], cfg["max_gap_s"], cfg["negative_margin_s"]
    out = np.full(len(ends), np.nan)
    far = overlapping(blockers, ends - window_s - margin, ends + margin) == 0
    out[far & covered(t, ends - w, ends + horizon_s, gap)] = 0.0
    for s in events[:, 0]:
        k = np.searchsorted(ends, s - horizon_s, side="right") - 1  # the last window ending at or before s - h
        if k < 0 or s - horizon_s - ends[k] >= window_s:
            continue
        e = ends[k]
        others = np.searchsorted(blockers[:, 0], s, side="left") - np.searchsorted(blockers[:, 1], e - w, side="left")
        if others == 0 and covered(t, [e - w], [s], gap)[0]:
            out[k] = 1.0
    return out


def label_case(numerics: dict, starts: np.ndarray, window_s: float, cfg: dict) -> dict[str, np.ndarray]:
    """Label columns for the windows of one case starting at `starts`; `numerics` = {track name:
    (times_s, values)} on the windows' clock (Source.read_numerics)."""
    starts = np.asarray(starts, dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    out = {}
    series = {}
    for p in PRESSURES:
        name = cfg["tracks"][p]
        lo, hi = cfg["valid_mmHg"][p]
        series[p] = valid(*numerics[name], lo, hi) if name in numerics else (np.empty(0), np.empty(0))
        out[f"{p}_mmHg"] = window_medians(*series[p], starts, window_s)
    t, v = series["map"]
    ends = starts[order] + window_s
    for h in HORIZONS_MIN:
        for column, labels in ((f"hypotension_{h}min", hypotension_ahead(t, v, ends, 60.0 * h, cfg)),
                               (f"hypotension_onset_{h}min", hypotension_onset(t, v, ends, window_s, 60.0 * h, cfg))):
            out[column] = np.empty(len(starts))
            out[column][order] = labels
    return out


def shard_windows(paths: list[str | Path]) -> dict[int, np.ndarray]:
    """{caseid: sorted start_s} of every window in the shards."""
    ids, starts = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            ids.append(f["caseid"][:])
            starts.append(f["start_s"][:])
    ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    starts = np.concatenate(starts) if starts else np.empty(0)
    return {int(c): np.sort(starts[ids == c]) for c in np.unique(ids)}


def _cell(x: float) -> str:
    return "" if not np.isfinite(x) else (f"{x:.0f}" if x in (0.0, 1.0) else f"{x:.2f}")


def labels_batch(download_status: dict, shard_paths: list[str | Path], params: dict, out_path: str | Path) -> dict:
    """Label every window of one batch's shards; write `COLUMNS` as TSV (empty cell = undefined).
    A case whose file cannot be read, or that lacks the label tracks, gets empty cells (logged)."""
    source = get_source(params)
    cfg = params["labels"]
    window_s = params["window"]["length"] / params["signals"]["target_fs"]
    names = [cfg["tracks"][p] for p in PRESSURES]
    windows = shard_windows(shard_paths)
    counts = {"cases": len(windows), "windows": 0, "no_label_tracks": 0, "unreadable": 0}
    rows = []
    for caseid, starts in progress(sorted(windows.items()), desc="labels", unit="case", mininterval=5):
        entry = download_status.get(str(caseid), {})
        numerics = {}
        try:
            numerics = source.read_numerics(Path(entry["path"]), names)
        except Exception as e:  # noqa: BLE001 -- errors.classify: transient fails the job, anything else is the case's
            fault = classify(e)
            if fault.transient and not isinstance(e, FileNotFoundError):  # a deleted case file never comes back
                raise TransientError(f"labels: case {caseid}: {fault.reason}; rerun to retry") from e
            counts["unreadable"] += 1
            (log.error if fault.unexpected else log.warning)("case %d: labels left empty, its file cannot be read: %s",
                                                             caseid, fault.reason)
        else:
            counts["no_label_tracks"] += not numerics
        cols = label_case(numerics, starts, window_s, cfg)
        for i, s in enumerate(starts):
            rows.append([str(caseid), f"{s:.3f}", *(_cell(cols[c][i]) for c in COLUMNS[2:])])
        counts["windows"] += len(starts)
    with atomic_path(out_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    log.info("labels: %s -> %s", counts, out_path)
    return counts


def window_key(caseid, start_s) -> tuple[int, int]:
    """The key of a window in the label table: (caseid, start in whole ms)."""
    return int(caseid), int(round(float(start_s) * 1000))


def read_labels(paths: list[str | Path], keys: set | None = None) -> dict[tuple[int, int], dict[str, float]]:
    """{(caseid, start in ms): {column: value or NaN}} from label TSVs; only the rows whose key is in
    `keys` when given (memory then follows the windows asked for, not the dataset)."""
    out = {}
    for p in paths:
        with open(p, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            if reader.fieldnames != COLUMNS:
                raise ValueError(f"{p}: label columns {reader.fieldnames} are not this version's {COLUMNS}; "
                                 "rerun the labels rule (snakemake -R labels)")
            for r in reader:
                key = window_key(r["caseid"], r["start_s"])
                if keys is None or key in keys:
                    out[key] = {c: float(r[c]) if r[c] != "" else np.nan for c in COLUMNS[2:]}
    return out
