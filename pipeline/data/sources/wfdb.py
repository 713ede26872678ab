"""A folder of PhysioNet WFDB records in the layout of the MIMIC-III Waveform Database Matched
Subset, read with the `wfdb` package (never parsed by hand).

Layout under `wfdb.root`: a top-level `RECORDS` file whose lines are either folders ending in `/`
(e.g. `p00/p000020/`), each with its own `RECORDS` file listing that folder's records, or record
paths relative to root (e.g. `p00/p000020/3544749`). A record is a single-segment record or a
multi-segment master record (MIMIC's `p000020-2183-04-28-17-47`: a layout header `*_layout`,
segments `*_0001`, ..., and `~` for a gap between segments).

Numerics records, whose name ends in `n` (e.g. `p000020-2183-04-28-17-47n`), hold no waveforms
(heart rate, SpO2, ... at one value per second or minute): they are left out of the case table,
and read as the numeric tracks of the waveform record they sit beside (`read_numerics`, below).

Case table: one row per waveform record, in sorted order of the record path relative to root.
`caseid` is the 1-based position in that order, so it is stable as long as the RECORDS lists do
not change (a record added or removed shifts the caseids after it); the row's `name` column keeps
the record path relative to root, so a caseid can always be mapped back to its record. The subject
is the `pXXXXXX` folder of the record (p000020 -> subjectid 20); a record outside such a folder is
an error, since the split must keep a subject's records together. Headers are not read when the
table is built (a MIMIC release has tens of thousands), so has_ppg / has_ecg are None (known at
fetch time) and duration_s, age, sex, bmi, asa, has_art and hr_bpm are ''.

Fetching a case copies no signal data: the case file `<caseid>.json` is a pointer
`{"record": <absolute record path without extension>, "name": <path relative to root>}`.
Validation reads the headers (every segment's header for a multi-segment record) and checks that
each track of `tracks()` is in at least one segment and that the data files it needs are complete.

Reading a case: `wfdb.rdrecord(..., channel_names=tracks, smooth_frames=False)` in physical units.
A multi-segment record is joined by wfdb (`m2s=True`): samples of a `~` gap segment, and of a
segment that lacks a signal, are NaN, never invented values. Each track keeps the header's rate
(frame rate x samples per frame); every signal of a record starts at sample 0 of the record, so
`start_s` is 0 for every track.

Numeric tracks (`read_numerics`, what the labels rule reads): the numerics record of waveform
record `<record>` is `<record>n` in the same folder (MIMIC's layout, `NUMERICS_SUFFIX`; it need not
be listed in RECORDS). Its signals (`ABPMean`, `ABPSys`, `ABPDias`, `NBPMean`, `HR`, ...) are the
numeric tracks; each sample's time is its frame number over the record's frame rate (1 Hz or
1/60 Hz in MIMIC), plus k / samples-per-frame within a frame. The times are moved onto the clock of
`read_tracks` (0 = sample 0 of the waveform record) by the difference of the two headers' base
times: date and time when both headers have a base date; the time of day alone when one lacks a
date (the difference taken in [-12 h, 12 h), so a start across midnight is a few seconds, not a
day); and 0 when either header lacks a base time: both records are then assumed to start
together (logged once). A multi-segment numerics record is read
segment by segment, each segment's samples at its frame offset in the master record, so a `~`
segment, or a segment without a signal, is a gap in that signal's times, never invented values.
Non-finite samples (WFDB's invalid-sample value, which wfdb reads as NaN) are dropped. A case without a
numerics record has no numeric tracks ({}, logged once); a numerics record whose header, segment
headers or data files cannot be read, or whose data files are shorter than its headers say, is a
CaseError.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.data.sources import Source, Track, require_tracks
from pipeline.errors import CaseError

log = logging.getLogger(__name__)

SUBJECT_RE = re.compile(r"p(\d+)")
NUMERICS_SUFFIX = "n"  # the numerics record of waveform record <record> is <record>n (MIMIC-III layout)
_said: set[str] = set()  # what `_say_once` has said in this process


def _say_once(key: str, msg: str, *args) -> None:
    """Log `msg` at INFO the first time `key` comes up in this process, at DEBUG after that
    (one line for a whole batch of cases that share a condition, every case still at debug level)."""
    log.log(logging.DEBUG if key in _said else logging.INFO, msg, *args)
    _said.add(key)


def _read_records_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"wfdb.root: missing RECORDS file {path}")
    return [s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")]


def list_records(root: Path) -> list[str]:
    """Record paths relative to `root` (POSIX, no extension) from the RECORDS files, sorted and
    without duplicates; numerics records (name ending in `n`) included."""
    records: set[str] = set()
    seen_folders: set[str] = set()

    def walk(folder: PurePosixPath) -> None:
        if str(folder) in seen_folders:
            return
        seen_folders.add(str(folder))
        for line in _read_records_file(root / folder / "RECORDS"):
            rel = folder / line.rstrip("/")
            if ".." in rel.parts or rel.is_absolute():
                raise ValueError(f"{root / folder / 'RECORDS'}: entry {line!r} points outside wfdb.root")
            if line.endswith("/"):
                walk(rel)
            else:
                records.add(str(rel))

    if not root.is_dir():
        raise FileNotFoundError(f"wfdb.root={root}: no such folder (expected a MIMIC-III waveform layout with a RECORDS file)")
    walk(PurePosixPath("."))
    return sorted(records)


def subject_of(name: str) -> int:
    """The integer of the record's nearest `pXXXXXX` folder."""
    for part in reversed(PurePosixPath(name).parts[:-1]):
        m = SUBJECT_RE.fullmatch(part)
        if m:
            return int(m.group(1))
    raise ValueError(f"wfdb record {name}: not inside a pXXXXXX subject folder (MIMIC-III layout expected)")


def _read_pointer(path: Path) -> dict:
    try:
        pointer = json.loads(Path(path).read_text())
        pointer["record"], pointer["name"]
    except (ValueError, KeyError, TypeError) as e:
        raise CaseError(f"not a wfdb pointer file: {e}") from e
    return pointer


def _header(record: str, rd_segments: bool = True):
    """`wfdb.rdheader` with every segment's header (unless `rd_segments` is False); a missing
    header is a CaseError."""
    import wfdb

    try:
        return wfdb.rdheader(record, rd_segments=rd_segments)
    except FileNotFoundError as e:
        raise CaseError(f"missing header {e.filename or e}") from e
    except (ValueError, IndexError, KeyError) as e:  # malformed header lines
        raise CaseError(f"unreadable header of {record}: {type(e).__name__}: {e}") from e


def _data_segments(header) -> list[tuple[int, object]]:
    """(segment number, segment header) of the segments holding samples (not the layout header
    of a variable-layout record, not `~` gaps); a single-segment record is its own segment."""
    import wfdb

    if isinstance(header, wfdb.Record):
        return [(0, header)]
    first = 1 if header.layout == "variable" else 0
    return [(i, seg) for i, seg in enumerate(header.segments) if i >= first and seg is not None]


def _signals_found(header) -> dict[str, list]:
    """Signal name -> the segment headers holding it. For a variable-layout record only names of
    the layout header count: wfdb resolves `channel_names` against it."""
    import wfdb

    layout = None
    if isinstance(header, wfdb.MultiRecord) and header.layout == "variable":
        layout = set(header.segments[0].sig_name or [])
    found: dict[str, list] = {}
    for _, seg in _data_segments(header):
        for name in seg.sig_name or []:
            if layout is None or name in layout:
                found.setdefault(name, []).append(seg)
    return found


def _check_data_files(record_dir: Path, segments, wanted: list[str]) -> None:
    """Every data file holding a wanted signal exists and is long enough for the header's length
    (the check `wfdb` itself uses to infer a length: bytes = samples x bytes per sample)."""
    from wfdb.io._signal import BYTES_PER_SAMPLE

    for seg in segments:
        if not seg.sig_len:
            continue
        files = {seg.file_name[i] for i, name in enumerate(seg.sig_name) if name in wanted}
        for fname in sorted(files):
            path = record_dir / fname
            if not path.is_file():
                raise CaseError(f"missing data file {path}")
            chans = [i for i, f in enumerate(seg.file_name) if f == fname]
            fmt = seg.fmt[chans[0]]
            if fmt not in BYTES_PER_SAMPLE:  # compressed formats: no size rule
                continue
            frame = sum((seg.samps_per_frame[i] or 1) if seg.samps_per_frame else 1 for i in chans)
            offset = seg.byte_offset[chans[0]] if seg.byte_offset else None
            need = (offset or 0) + math.ceil(seg.sig_len * frame * BYTES_PER_SAMPLE[fmt])
            size = path.stat().st_size
            if size < need:
                raise CaseError(f"truncated data file {path} ({size} bytes, the header needs {need})")


class WFDBSource(Source):
    name = "wfdb"
    suffix = ".json"

    def _root(self) -> Path:
        return Path(self.section["root"])

    def case_rows(self) -> list[dict]:
        root = self._root()
        names = list_records(root)
        waveforms = [n for n in names if not PurePosixPath(n).name.endswith("n")]
        log.info("wfdb: %d records under %s, %d numerics records left out", len(names), root, len(names) - len(waveforms))
        return [
            {"caseid": i, "subjectid": subject_of(name), "name": name, "has_ppg": None, "has_ecg": None,
             "duration_s": "", "age": "", "sex": "", "bmi": "", "asa": "", "has_art": "", "hr_bpm": ""}
            for i, name in enumerate(waveforms, start=1)
        ]

    def fetch(self, row: dict, dest: Path, session) -> None:
        record = os.path.abspath(self._root() / row["name"])
        if not os.path.isfile(record + ".hea"):
            raise CaseError(f"missing header {record}.hea")
        Path(dest).write_text(json.dumps({"record": record, "name": row["name"]}) + "\n")

    def is_current(self, path: Path, row: dict) -> bool:
        """A cached pointer belongs to `row` only if it names the same record under the current root
        (caseids are positions: a changed RECORDS list or root moves them)."""
        try:
            pointer = _read_pointer(path)
        except CaseError:
            return False
        return pointer["name"] == row["name"] and pointer["record"] == os.path.abspath(self._root() / row["name"])

    def validate(self, path: Path, max_samples: float = float("inf")) -> None:
        """Headers readable (every segment's), every track in at least one segment, and the data
        files of those segments present and complete. No samples are read (`max_samples` bounds
        `read_tracks`, where samples are)."""
        record = _read_pointer(path)["record"]
        header = _header(record)
        tracks = self.tracks()
        found = _signals_found(header)
        require_tracks(found, tracks)
        for name in tracks:  # sig_len None: not in the header, wfdb infers it from the data file
            if not any(seg.sig_len is None or seg.sig_len > 0 for seg in found[name]):
                raise CaseError(f"track {name} has no data")
        _check_data_files(Path(record).parent, [seg for _, seg in _data_segments(header)], tracks)

    def read_numerics(self, path: Path, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (times_s, values)} (float64, sorted by time, non-finite values dropped) for each of
        `names` that the case's numerics record `<record>n` has, on the clock of `read_tracks` (module
        docstring, "Numeric tracks"). {} when the case has no numerics record; CaseError when it has
        one that cannot be read."""
        import wfdb

        names = list(dict.fromkeys(names))
        if not names:
            return {}
        record = _read_pointer(path)["record"]
        numerics = record + NUMERICS_SUFFIX
        if not os.path.isfile(numerics + ".hea"):
            _say_once("no numerics record", "wfdb: no numerics record %s.hea: no numeric tracks for this case (%s left out; "
                      "further cases without one are logged at debug level)", numerics, ", ".join(names))
            return {}
        header = _header(numerics)
        fs = float(header.fs or 0)
        if not (math.isfinite(fs) and fs > 0):
            raise CaseError(f"numerics record {numerics}: frame rate {header.fs!r} is not a positive number")
        offset = _start_offset_s(_header(record, rd_segments=False), header, numerics)
        segments = _segment_offsets(numerics, header)
        found = {n for _, seg, _ in segments for n in seg.sig_name or [] if n in names}
        if not found:
            has = sorted({n for _, seg, _ in segments for n in seg.sig_name or []})
            _say_once("none of the names", "wfdb: numerics record %s has none of %s (it has: %s); further such cases "
                      "at debug level", numerics, ", ".join(names), ", ".join(has) or "none")
            return {}
        _check_data_files(Path(numerics).parent, [seg for _, seg, _ in segments if found & set(seg.sig_name or [])],
                          sorted(found))
        pieces: dict[str, list] = {n: [] for n in found}
        for start, seg, seg_record in segments:
            here = [n for n in seg.sig_name or [] if n in found]
            if not here or seg.sig_len == 0:
                continue
            if not math.isclose(float(seg.fs or 0), fs, rel_tol=1e-4):  # headers round 1/60 Hz differently
                raise CaseError(f"numerics record {numerics}: segment {Path(seg_record).name} at {float(seg.fs or 0):g} Hz, "
                                f"the record at {fs:g} Hz")
            try:
                rec = wfdb.rdrecord(seg_record, channel_names=here, smooth_frames=False, physical=True)
            except (OSError, ValueError) as e:  # a data file that does not match its header
                raise CaseError(f"unreadable numerics record {numerics}: {type(e).__name__}: {e}") from e
            for name, x, spf in zip(rec.sig_name, rec.e_p_signal, rec.samps_per_frame):
                x = np.asarray(x, dtype=np.float64)
                t = offset + (start + np.arange(len(x), dtype=np.float64) / int(spf or 1)) / fs
                keep = np.isfinite(x)
                pieces[name].append((t[keep], x[keep]))
        out = {}
        for name in names:
            if name in pieces:
                t = np.concatenate([p[0] for p in pieces[name]]) if pieces[name] else np.empty(0)
                v = np.concatenate([p[1] for p in pieces[name]]) if pieces[name] else np.empty(0)
                order = np.argsort(t, kind="stable")
                out[name] = (t[order], v[order])
        return out

    def read_tracks(self, path: Path, max_span_s: float = float("inf"), on_samples=None,
                    max_samples: float = float("inf")) -> list[Track]:
        import wfdb

        record = _read_pointer(path)["record"]
        header = _header(record)
        tracks = self.tracks()
        found = _signals_found(header)
        require_tracks(found, tracks)
        span = _span_s(record, header)
        if span > max_span_s:
            raise CaseError(f"recording spans {span / 3600:.1f} h, over signals.max_case_hours ({max_span_s / 3600:g} h)")
        for name in tracks:
            seg = found[name][0]
            rate = float(header.fs) * int(seg.samps_per_frame[seg.sig_name.index(name)])
            if span * rate > max_samples:
                raise CaseError(f"track {name} would hold {math.ceil(span * rate):,} samples ({rate:g} Hz over "
                                f"{span / 3600:.2f} h), more than signals.max_case_hours at signals.max_native_hz "
                                f"({max_samples:,.0f})")
        try:
            if isinstance(header, wfdb.MultiRecord) and header.layout == "fixed" and "~" in header.seg_name:
                values, spf = _read_fixed_with_gaps(record, header, tracks)
            else:
                rec = wfdb.rdrecord(record, channel_names=tracks, smooth_frames=False, physical=True)
                values = dict(zip(rec.sig_name, rec.e_p_signal))
                spf = dict(zip(rec.sig_name, rec.samps_per_frame))
        except (OSError, ValueError) as e:  # a data file that does not match its header
            raise CaseError(f"unreadable record {record}: {type(e).__name__}: {e}") from e
        require_tracks(values, tracks)
        out = []
        for name in tracks:
            x = np.asarray(values[name], dtype=np.float32)
            if not np.isfinite(x).any():
                raise CaseError(f"track {name} has no data")
            out.append(Track(name, x, float(header.fs) * int(spf[name]), _unit(found[name], name), 0.0))
        return out


def _span_s(record: str, header) -> float:
    """Seconds the record spans, from its header (frames / frame rate), as `rdrecord` will size it:
    a single-segment header without a length gets the length wfdb infers from its first data file."""
    import wfdb
    from wfdb.io._signal import BYTES_PER_SAMPLE, _infer_sig_len

    sig_len = header.sig_len
    if sig_len is None and isinstance(header, wfdb.MultiRecord):
        sig_len = sum(header.seg_len)
    elif sig_len is None and header.n_sig:
        if header.fmt[0] not in BYTES_PER_SAMPLE:
            raise CaseError(f"header of {record} gives no length and its format {header.fmt[0]} is compressed: span unknown")
        tsamps = sum(spf for f, spf in zip(header.file_name, header.samps_per_frame) if f == header.file_name[0])
        try:
            sig_len = _infer_sig_len(header.file_name[0], header.fmt[0], tsamps, header.byte_offset[0], str(Path(record).parent))
        except OSError as e:
            raise CaseError(f"missing data file {e.filename or e}") from e
    return (sig_len or 0) / float(header.fs)


def _start_offset_s(wave, numerics, record: str) -> float:
    """Seconds from the start of the waveform record (header `wave`) to that of its numerics record
    (header `numerics`, path `record`): module docstring, "Numeric tracks"."""
    if wave.base_time is None or numerics.base_time is None:
        _say_once("no base time", "wfdb: numerics record %s: %s header has no base time; numerics and waveforms "
                  "are assumed to start together (further such cases at debug level)", record,
                  "its" if numerics.base_time is None else "the waveform record's")
        return 0.0
    if wave.base_date is not None and numerics.base_date is not None:
        return (numerics.base_datetime - wave.base_datetime).total_seconds()
    d = _seconds_of_day(numerics.base_time) - _seconds_of_day(wave.base_time)
    return (d + 43200.0) % 86400.0 - 43200.0  # no common date: the nearest difference, across midnight


def _seconds_of_day(t) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


def _segment_offsets(record: str, header) -> list[tuple[int, object, str]]:
    """(first frame in the record, segment header, segment record path) of each segment holding
    samples (`_data_segments`); a single-segment record is its own segment at frame 0."""
    import wfdb

    if isinstance(header, wfdb.Record):
        return [(0, header, record)]
    starts = np.concatenate([[0], np.cumsum([int(n or 0) for n in header.seg_len])])
    folder = Path(record).parent
    return [(int(starts[i]), seg, str(folder / header.seg_name[i])) for i, seg in _data_segments(header)]


def _unit(segments, name: str) -> str:
    units = {seg.units[seg.sig_name.index(name)] for seg in segments}
    unit = segments[0].units[segments[0].sig_name.index(name)]
    if len(units) > 1:
        log.warning("signal %s has different units in different segments (%s); using %s", name, sorted(units), unit)
    return unit


def _read_fixed_with_gaps(record: str, header, tracks: list[str]):
    """A fixed-layout multi-segment record with `~` segments: wfdb 4.3's `multi_to_single` cannot
    join it (it reads a None segment), and `channel_names` reads the header of segment 0, which
    may be `~`. Read the segments with `m2s=False` and channel indices, and join them here: NaN
    over `~` segments."""
    import wfdb

    names = header.get_sig_name()
    channels = [names.index(t) for t in tracks]
    multi = wfdb.rdrecord(record, channels=channels, m2s=False, smooth_frames=False, physical=True)
    ref = next(seg for seg in multi.segments if seg is not None)
    spf = dict(zip(ref.sig_name, ref.samps_per_frame))
    values = {t: np.full(int(multi.sig_len) * spf[t], np.nan) for t in tracks}
    start = 0
    for seg, n in zip(multi.segments, multi.seg_len):
        if seg is not None:
            for t in tracks:
                k = spf[t]
                values[t][start * k : (start + n) * k] = seg.e_p_signal[seg.sig_name.index(t)]
        start += n
    return values, spf


SOURCE = WFDBSource
