"""Read PPG and ECG at their native rate and resample them to the target rate, anti-aliased.

The vitaldb package resamples by picking samples (no anti-aliasing filter); we read each track at
its own rate through the case's source (pipeline.data.sources: values, rate and start time on the
case's clock) and use `scipy.signal.resample_poly` (zero-phase polyphase FIR: output sample j sits
at input time start + j/target_fs). A track already at the target rate is copied, not filtered.

Gaps (NaN) are bridged by linear interpolation before filtering, then every output sample whose
filter support touches a gap is set back to NaN: NaN means "no data here", never invented data.
Saturation (clipping) is a property of the raw ADC values, so it is found at the native rate:
runs of at least `saturation_min_run` samples equal to the recording's maximum or minimum. It is
carried to the target rate as the `saturated` mask.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import resample_poly

from pipeline.channels import CHANNELS
from pipeline.data.polyphase import HALF_LEN_FACTOR, Polyphase, StreamedTrack, bridge, nan_runs
from pipeline.data.sources import MIN_WAVE_HZ, Track, get_source, sample_budget
from pipeline.errors import CaseError, TransientError, classify
from pipeline.io import atomic_path, progress, write_json

log = logging.getLogger(__name__)

# The largest term of the polyphase ratio target_fs / fs_in (docs/design.md, "Resampled cases"): its
# filter has 2 * 20 * max(up, down) + 1 taps, so 4096 bounds it to 163,841 taps (1.3 MB). Every
# rate a recorder uses passes (500, 1000, 250, 2048, 360, 128, 62.5 Hz to 125 Hz: at most 2048);
# an odd header value such as 12345.679 Hz (a 7.4 GB filter) is refused.
MAX_POLYPHASE = 4096


def _mark_output(starts, stops, n_out: int, ratio: Fraction, radius_in: float) -> np.ndarray:
    """Output-rate mask of input-sample intervals [start, stop) widened by `radius_in` input samples.

    Output sample j sits at input position j / ratio.
    """
    out = np.zeros(n_out, dtype=bool)
    r = float(ratio)
    for a, b in zip(starts, stops):
        j0 = max(0, int(np.ceil((a - radius_in) * r)))
        j1 = min(n_out, int(np.floor((b - 1 + radius_in) * r)) + 1)
        out[j0:j1] = True
    return out


def saturation_runs(x: np.ndarray, min_run: int, block: int = 1 << 15, piece: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Runs of >= `min_run` samples equal to the max or the min of `x` (NaN ignored).

    The extremes are taken per block of `block` samples first, and only the blocks that hold one
    are searched, `piece` samples at a time with a run carried across pieces: no mask or index over
    the whole track (a 24 h track is 43 M samples; a flat one is all extremes), so the scratch is a
    few `piece`s whatever the track holds (docs/design.md, "Resampled cases")."""
    n = len(x)
    full = n // block * block
    parts = [x[:full].reshape(-1, block)] if full else []
    if n > full:
        parts.append(x[full:].reshape(1, -1))
    hi_b = np.concatenate([np.fmax.reduce(p, axis=1) for p in parts]) if parts else np.zeros(0, x.dtype)
    if not len(hi_b) or np.isnan(hi := np.fmax.reduce(hi_b)):
        return np.zeros(0, int), np.zeros(0, int)
    lo_b = np.concatenate([np.fmin.reduce(p, axis=1) for p in parts])
    starts, stops = [np.zeros(0, int)], [np.zeros(0, int)]
    lo = np.fmin.reduce(lo_b)
    for level, ext in ((hi, hi_b),) + (((lo, lo_b),) if lo != hi else ()):  # a flat track: its runs once
        blocks = np.flatnonzero(ext == level)
        cut = np.flatnonzero(np.diff(blocks) != 1) + 1  # consecutive blocks searched as one stretch
        for first, last in zip(blocks[np.r_[0, cut]].tolist(), blocks[np.r_[cut - 1, len(blocks) - 1]].tolist()):
            s, e = _runs_equal(x, level, first * block, min(n, (last + 1) * block), min_run, piece)
            starts.append(s)
            stops.append(e)
    return np.concatenate(starts), np.concatenate(stops)


def _runs_equal(x: np.ndarray, level, a: int, b: int, min_run: int, piece: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) of the runs of >= min_run samples of x[a:b] equal to `level`, `piece` samples at a time."""
    starts, stops, open_start = [], [], None  # open_start: a run reaching the previous piece's end
    zero = np.zeros(1, np.int8)
    for p in range(a, b, piece):
        q = min(b, p + piece)
        d = np.diff(np.concatenate([zero, (x[p:q] == level).view(np.int8), zero]))  # +1 at a run's start, -1 past its end
        s = np.flatnonzero(d == 1) + p
        e = np.flatnonzero(d == -1) + p
        if open_start is not None:
            if len(s) and s[0] == p:
                s[0] = open_start  # the run goes on
            else:  # it ended at the piece's start
                s, e = np.r_[open_start, s], np.r_[p, e]
            open_start = None
        if len(e) and e[-1] == q and q < b:  # reaches this piece's end: carried into the next
            open_start = int(s[-1])
            s, e = s[:-1], e[:-1]
        keep = e - s >= min_run
        starts.append(s[keep])
        stops.append(e[keep])
    return np.concatenate(starts) if starts else np.zeros(0, int), np.concatenate(stops) if stops else np.zeros(0, int)


def _ratio(fs_in: float, fs_out: int) -> Fraction:
    """target / native rate as the polyphase filter's up/down; CaseError for a rate that is not a
    waveform's (not finite, below MIN_WAVE_HZ) or whose ratio needs more than MAX_POLYPHASE."""
    if not (math.isfinite(fs_in) and fs_in >= MIN_WAVE_HZ):
        raise CaseError(f"a sampling rate of {fs_in!r} Hz is not a waveform rate (finite, at least {MIN_WAVE_HZ:g} Hz)")
    ratio = Fraction(fs_out) / Fraction(fs_in).limit_denominator(1000)
    if max(ratio.numerator, ratio.denominator) > MAX_POLYPHASE:
        raise CaseError(f"{fs_in:.10g} Hz to {fs_out} Hz needs a polyphase filter of ratio {ratio.numerator}/{ratio.denominator}; "
                        f"rates whose ratio to signals.target_fs has a term above {MAX_POLYPHASE} are refused")
    return ratio


def resample_track(x: np.ndarray, fs_in: float, fs_out: int, saturation_min_run: int = 10, overwrite: bool = False,
                   filtered: np.ndarray | None = None):
    """Anti-aliased resampling of one native-rate track.

    Returns (y float32 at fs_out with NaN where the input had no data, saturated bool mask).
    `overwrite`: a float32 `x` may be used as scratch (its gaps are bridged in place) instead of
    copied, when the caller no longer needs it. `filtered`: the filter's output, already computed
    while the track was read (`Streamer`); its gaps are marked here.
    """
    ratio = _ratio(fs_in, fs_out)
    up, down = ratio.numerator, ratio.denominator
    x = np.asarray(x, dtype=np.float32)
    n_out = int(np.ceil(len(x) * up / down))
    nan = np.isnan(x)
    if nan.all():
        raise CaseError("track has no data")
    if ratio == 1:  # already at the target rate: a copy, no filter, gaps stay exactly where they are
        starts, stops = saturation_runs(x, saturation_min_run)
        return x.copy(), _mark_output(starts, stops, n_out, ratio, 0.5)
    has_gap = bool(nan.any())
    sat_starts, sat_stops = saturation_runs(x, saturation_min_run)  # on the raw values, gaps still NaN
    if filtered is not None:
        y = filtered
    else:
        if has_gap:
            if not overwrite:
                x = x.copy()
            bridge(x, *nan_runs(nan))
        y = resample_poly(x, up, down, padtype="line").astype(np.float32, copy=False)[:n_out]
    if has_gap:
        radius = HALF_LEN_FACTOR * max(up, down) / up
        y[_mark_output(*nan_runs(nan), n_out, ratio, radius)] = np.nan
    saturated = _mark_output(sat_starts, sat_stops, n_out, ratio, 0.5 / float(ratio))
    return y, saturated


class Streamer:
    """Filters tracks while they are read: a source's `on_samples` listener (pipeline.data.sources.Source.
    read_tracks), one `pipeline.data.polyphase.StreamedTrack` per track whose rate is not the target's.
    It bridges gaps in the source's arrays in place; `take` sets them back to NaN, so call it for
    every track before anything else reads the track's values."""

    def __init__(self, fs_out: int):
        self.fs_out = fs_out
        self.tracks: dict[str, StreamedTrack | None] = {}

    def __call__(self, name: str, x: np.ndarray, fs_in: float, a: int, b: int) -> None:
        """Samples [a, b) of track `name` are in `x` (its whole array, NaN where not yet written)."""
        st = self.tracks.get(name, False)
        if st is False:
            try:
                ratio = _ratio(fs_in, self.fs_out)
            except CaseError as e:
                raise CaseError(f"{name}: {e}") from e
            st = self.tracks[name] = StreamedTrack(x, Polyphase(ratio.numerator, ratio.denominator)) if ratio != 1 else None
        if st is not None:
            st.placed(a, b)

    def reset(self) -> None:
        """The source reads the file again: what was filtered is dropped."""
        self.tracks.clear()

    def take(self, name: str, values: np.ndarray) -> np.ndarray | None:
        """The filtered track, for `resample_track(..., filtered=)`; None where it was not streamed."""
        st = self.tracks.pop(name, None)
        return st.finish(values) if st is not None else None


def resample_case(path: str | Path, params: dict, stream: bool = True):
    """Read one case through its source and resample it: (signals float32 [2, T], saturated bool
    [2, T], attrs). Tracks that start later than the case's first track are padded with NaN, so
    channel samples with the same index share one time (docs/design.md, "Resampled cases").
    `stream`: filter while the file is read, where the source can (the same result, sooner)."""
    source = get_source(params)
    sig = params["signals"]
    fs = sig["target_fs"]
    streamer = Streamer(fs) if stream else None
    tracks = source.read_tracks(Path(path), sig["max_case_hours"] * 3600.0, on_samples=streamer,
                                max_samples=sample_budget(sig))
    t0 = min(t.start_s for t in tracks)
    names, rates, units = ([getattr(t, k) for t in tracks] for k in ("name", "fs", "unit"))

    def one(trk: Track):
        filtered = streamer.take(trk.name, trk.values) if streamer else None
        try:
            y, s = resample_track(trk.values, trk.fs, fs, sig["saturation_min_run"], overwrite=True, filtered=filtered)
        except CaseError as e:
            raise CaseError(f"{trk.name}: {e}") from e
        lead = int(round((trk.start_s - t0) * fs))
        if lead:
            y = np.concatenate([np.full(lead, np.nan, np.float32), y])
            s = np.concatenate([np.zeros(lead, bool), s])
        return y, s

    # each native-rate array is dropped once resampled (peak memory: one track's filter scratch, not all)
    ys, sats = zip(*(one(tracks.pop(0)) for _ in range(len(tracks))))
    n = min(len(y) for y in ys)
    signals = np.stack([y[:n] for y in ys])
    saturated = np.stack([s[:n] for s in sats])
    attrs = {
        "source_fs": rates, "target_fs": fs, "tracks": names,
        "units": units, "start_s": t0, "channels": list(CHANNELS),
        "nan_fraction": [float(np.isnan(y).mean()) for y in signals],
    }
    return signals, saturated, attrs


def write_resampled(path: str | Path, signals: np.ndarray, saturated: np.ndarray, attrs: dict) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("signals", data=signals)
            f.create_dataset("saturated", data=saturated)
            for k, v in attrs.items():
                f.attrs[k] = v


def read_resampled(path: str | Path):
    with h5py.File(path, "r") as f:
        return f["signals"][()], f["saturated"][()].astype(bool), dict(f.attrs)


def resample_batch(download_status: dict, params: dict, out_dir: str | Path, status_path: str | Path) -> dict:
    """Resample every downloaded case of a batch to `out_dir/<caseid>.h5`; record per-case status."""
    out_dir = Path(out_dir)
    status, transient = {}, {}
    for caseid, st in progress(sorted(download_status.items(), key=lambda kv: int(kv[0])), desc="resample", unit="case", mininterval=2):
        if st["status"] != "ok":
            status[caseid] = st
            continue
        dest = out_dir / f"{caseid}.h5"
        try:
            signals, saturated, attrs = resample_case(st["path"], params)
            attrs["caseid"] = int(caseid)
            write_resampled(dest, signals, saturated, attrs)
            status[caseid] = {"status": "ok", "path": str(dest), "samples": int(signals.shape[1])}
        except Exception as e:  # noqa: BLE001 -- every case ends recorded (permanent) or named (transient): errors.classify
            fault = classify(e)
            if fault.transient:  # the machine, not the case (a full disk, an I/O error): retried by a rerun
                log.error("case %s not resampled (transient, the job will fail after the batch): %s", caseid, fault.reason)
                transient[caseid] = fault.reason
                continue
            (log.error if fault.unexpected else log.warning)("case %s skipped at resample: %s", caseid, fault.reason)
            status[caseid] = fault.status("resample")
    if transient:  # no status file: Snakemake sees the job fail, a rerun (or --retries) does the batch again
        raise TransientError("resample: cases " + ", ".join(f"{c} ({r})" for c, r in transient.items())
                             + " failed for a reason outside the data; rerun to retry them")
    write_json(status_path, status)
    return status
