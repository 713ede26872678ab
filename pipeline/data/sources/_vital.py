"""What the sources of `.vital` files share (demo, vitaldb, local): validation, reading tracks at
their native rates and numeric tracks on VitalDB's clock, and VitalDB's clinical and track tables."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from pipeline.data.sources import Source, Track, require_tracks
from pipeline.data.sources._vitalfile import INFLATED_PER_SAMPLE, NUMERIC, WAVE, ReadAgain, VitalTrack, physical, read_vital
from pipeline.errors import CaseError

log = logging.getLogger(__name__)

ART_MBP_TRACK = "Solar8000/ART_MBP"  # the arterial line's mean pressure: a case's `has_art`


class VitalFileSource(Source):
    """Reads through `pipeline.data.sources._vitalfile` (streaming, bounded memory), not vitaldb's parser."""

    suffix = ".vital"

    def validate(self, path: Path, max_samples: float = float("inf")) -> None:
        """A complete gzip stream that parses as a `.vital` file with a valid sample in every track.
        Reads the whole stream, holding no record (vitaldb's parser returns silently on a cut file)."""
        tracks = self.tracks()
        vf = read_vital(path, waves=tracks, mode="check", max_inflated=INFLATED_PER_SAMPLE * max_samples)
        require_tracks(vf.tracks, tracks)
        for name in tracks:
            trk = vf.tracks[name]
            if trk.type == WAVE and not trk.has_data:
                raise CaseError(f"track {name} has no data")

    def read_tracks(self, path: Path, max_span_s: float = float("inf"), on_samples=None,
                    max_samples: float = float("inf")) -> list[Track]:
        """Each track at its own rate on the file's clock: sample 0 at the file's `dtstart` for
        every track (so all tracks start at 0 s), each record at its nearest native sample
        (`place_wave`). CaseError if the recording spans more than `max_span_s`, or a track's array
        would hold more than `max_samples`, found from the records' timestamps and sample counts
        before their samples are read (`read_vital`)."""
        tracks = self.tracks()
        try:  # samples written into their arrays as they are read: held once
            vf = read_vital(path, waves=tracks, mode="place", max_span_s=max_span_s, on_samples=on_samples,
                            max_samples=max_samples)
        except ReadAgain as e:  # a record off the header's clock: keep the records, then place them
            log.info("%s: %s; reading it again", Path(path).name, e)
            if on_samples is not None:
                on_samples.reset()
            vf = read_vital(path, waves=tracks, mode="keep", max_span_s=max_span_s, max_samples=max_samples)
        require_tracks(vf.tracks, tracks)
        for name in tracks:
            trk = vf.tracks[name]
            if trk.type != WAVE:
                raise CaseError(f"track {name} is not a waveform track")
        # vitaldb's dtstart/dtend: the header's, widened by every record of the tracks read
        span = vf.dtend - vf.dtstart
        if not span > 0:
            raise CaseError(f"recording has no extent (dtstart {vf.dtstart!r}, dtend {vf.dtend!r})")
        out = []
        for name in tracks:
            trk = vf.tracks[name]
            values = place_wave(trk, vf.dtstart, vf.dtend, vf.packed)  # takes (and frees) the records
            out.append(Track(name, values, float(trk.srate), trk.unit, 0.0))
        return out

    def read_numerics(self, path: Path, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (times_s, values)} float64, for each of `names` the file has as a numeric track
        (names it lacks are absent; CaseError for a name that is not a numeric track). Records whose
        value is not finite are dropped; sorted by time (stable: records at one time keep file order).

        `times_s` is on the clock of `read_tracks`: seconds from the `dtstart` of the wave tracks of
        `tracks()` (the header's, widened by their records; numeric records never move it), read in
        the same pass with the wave samples skipped. Values as stored (no gain or offset: vitaldb
        applies those to waves only)."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        vf = read_vital(path, waves=self.tracks(), numerics=names, mode="time")
        out = {}
        for name in names:
            trk = vf.tracks.get(name)
            if trk is None:
                continue
            if trk.type != NUMERIC:
                raise CaseError(f"track {name} is not a numeric track")
            dts = np.asarray(trk.dts, dtype=np.float64)
            vals = np.asarray(trk.vals, dtype=np.float64)
            keep = np.isfinite(vals) & np.isfinite(dts)
            times, vals = dts[keep] - vf.dtstart, vals[keep]
            order = np.argsort(times, kind="stable")
            out[name] = (times[order], vals[order])
        return out


def place_wave(trk: VitalTrack, dtstart: float, dtend: float, packed: bool = False) -> np.ndarray:
    """The dense float32 array of a wave track read by `read_vital`, sample 0 at `dtstart`.

    vitaldb's `VitalFile.get_track_samples(name, 1 / srate)` (vitaldb 1.7.2, utils.py:799-828), with
    two differences: a record starts at the NEAREST native sample, `floor((dt - dtstart) * srate + 0.5)`,
    where vitaldb takes the ceiling (utils.py:804), which puts a record whose `dt` carries binary
    rounding error just above the grid one sample late; and in a packed file, an integer track's gap
    value (`_vitalfile.PACKED_GAP`, what vitaldb's writer fills gaps with) is NaN, where vitaldb
    scales it into a sample (-32768 * gain + offset for int16). Kept from vitaldb: length
    `ceil((dtend - dtstart) * srate)` (utils.py:801), NaN where no record is, a record cut to
    [0, length) (utils.py:808-813), a later record overwriting an earlier one where they overlap
    (file order, utils.py:803-814), values cast to float32 then `* gain + offset` for integer formats
    (fmt > 2, in float32, utils.py:817-819), and +-inf or values > 4e9 set to NaN (utils.py:826).
    A record lying wholly outside [dtstart, dtend) (possible only with a `dt` <= 0, which the parser
    leaves out of dtstart, utils.py:2126) is left out with a warning; vitaldb drops it silently.

    Usually the records were already written into `trk.dense` as they were read (`read_vital`'s
    "place" mode, same rule); otherwise they are placed here in runs: consecutive records that abut
    (the next starts where the previous ends, as Vital Recorder's one-second records do) are
    concatenated straight into their slice.
    """
    srate = float(trk.srate)
    n = int(np.ceil((dtend - dtstart) * srate))
    if trk.dense is not None:  # placed while read (read_vital's "place" mode), by the same rule, physical
        out, trk.dense = trk.dense, None
    else:
        out = _placed(trk, dtstart, n)
        physical(out, trk, packed)
    if trk.outside:
        log.warning("track %s: %d of %d records lie outside the recording [%r, %r) and are left out",
                    trk.name, trk.outside, len(trk.dts), dtstart, dtend)
    return out


def _placed(trk: VitalTrack, dtstart: float, n: int) -> np.ndarray:
    """The records of `trk` placed into a NaN-filled float32 array of n samples (`place_wave`).
    Takes the records from `trk`: they are freed when this returns."""
    srate = float(trk.srate)
    out = np.full(n, np.nan, dtype=np.float32)
    vals, trk.vals = trk.vals, []
    if vals:
        lens = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
        dts = np.asarray(trk.dts, dtype=np.float64)
        starts = np.floor((dts - dtstart) * srate + 0.5).astype(np.int64)
        ends = starts + lens
        lo, hi = np.clip(starts, 0, n), np.clip(ends, 0, n)
        keep = hi > lo
        if not keep.all():
            trk.outside = int((lens[~keep] > 0).sum())  # logged by place_wave
            idx = np.flatnonzero(keep)
            vals = [vals[i] for i in idx]
            starts, ends, lo, hi = starts[idx], ends[idx], lo[idx], hi[idx]
        for i in np.flatnonzero((lo != starts) | (hi != ends)):  # the part of a record inside [0, n)
            vals[i] = np.asarray(vals[i])[lo[i] - starts[i] : hi[i] - starts[i]]
        if len(lo) > 1 and (lo[1:] < np.maximum.accumulate(hi)[:-1]).any():
            # records overlap: in file order, each overwrites what it covers, as vitaldb's slice
            # assignments (no index array over all samples: memory stays that of the records)
            for v, a, b in zip(vals, lo.tolist(), hi.tolist()):
                out[a:b] = v
        elif len(lo):
            breaks = np.flatnonzero(lo[1:] != hi[:-1]) + 1  # a run ends where the next record does not abut
            for a, b in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(lo)].tolist()):
                np.concatenate(vals[a:b], out=out[lo[a] : hi[b - 1]], casting="unsafe")
    return out


def _number(text, kind=float, lo=-np.inf, hi=np.inf):
    """`text` as `kind` when it is a finite number within [lo, hi], else ''."""
    try:
        x = float(text)
    except (TypeError, ValueError):
        return ""
    if not (np.isfinite(x) and lo <= x <= hi) or (kind is int and x != int(x)):
        return ""
    return kind(x)


def parse_clinical_csv(text: str) -> dict[int, dict]:
    """VitalDB's clinical table (`/cases` or clinical_data.csv) -> {caseid: row}; `bmi` (kg/m2) and
    `asa` (ASA class 1-6) are numbers or '' (empty, missing or out of range)."""
    out = {}
    for r in csv.DictReader(io.StringIO(text)):
        caseid = int(float(r["caseid"]))
        try:
            duration = float(r.get("caseend") or "nan") - float(r.get("casestart") or "nan")
        except ValueError:
            duration = float("nan")
        out[caseid] = {"caseid": caseid, "subjectid": r.get("subjectid") or caseid, "name": str(caseid),
                       "duration_s": duration, "age": r.get("age", ""), "sex": r.get("sex", ""),
                       "bmi": _number(r.get("bmi"), float, 5, 200), "asa": _number(r.get("asa"), int, 1, 6)}
    return out


def parse_track_csv(text: str) -> dict[int, set[str]]:
    """VitalDB's track list (`/trks` or track_names.csv: caseid, tname[, tid]) -> {caseid: {tname}}."""
    out: dict[int, set[str]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        out.setdefault(int(float(r["caseid"])), set()).add(r["tname"])
    return out


def rows_from_vitaldb_csv(clinical: str, tracks_csv: str, ppg_track: str, ecg_track: str) -> list[dict]:
    """Case rows from the clinical table and the track list; `has_art`: the case has `ART_MBP_TRACK`."""
    cases = parse_clinical_csv(clinical)
    trks = parse_track_csv(tracks_csv)
    rows = []
    for caseid, row in cases.items():
        names = trks.get(caseid, set())
        rows.append({**row, "has_ppg": ppg_track in names, "has_ecg": ecg_track in names,
                     "has_art": ART_MBP_TRACK in names, "hr_bpm": ""})
    return rows
