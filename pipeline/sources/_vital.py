"""What the sources of `.vital` files share (demo, vitaldb, local): validation, reading tracks at
their native rates on VitalDB's clock, and VitalDB's clinical and track tables."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np

from pipeline.errors import CaseError
from pipeline.sources import Source, Track, require_tracks

CHUNK = 1 << 20


class VitalFileSource(Source):
    suffix = ".vital"

    def validate(self, path: Path) -> None:
        """A complete gzip stream that parses as a `.vital` file with data in every track.

        The whole stream is read first: vitaldb's parser returns silently on a truncated file."""
        try:
            with gzip.open(path, "rb") as g:
                if g.read(4) != b"VITA":
                    raise CaseError("not a .vital file (no VITA signature)")
                while g.read(CHUNK):
                    pass
        except (EOFError, gzip.BadGzipFile, OSError) as e:
            raise CaseError(f"corrupt or truncated gzip stream: {e}") from e
        import vitaldb

        tracks = self.tracks()
        vf = vitaldb.VitalFile(str(path), track_names=tracks)
        require_tracks(vf.trks, tracks)
        for name in tracks:
            recs = vf.trks[name].recs
            if not any(np.isfinite(np.asarray(r["val"], dtype=np.float64)).any() for r in recs if np.size(r["val"])):
                raise CaseError(f"track {name} has no data")

    def read_tracks(self, path: Path, max_span_s: float = float("inf")) -> list[Track]:
        """Each track at its own rate on VitalDB's clock: `get_track_samples(name, 1/srate)` puts
        sample 0 at the file's `dtstart` for every track, so all tracks start at 0 s."""
        import vitaldb

        tracks = self.tracks()
        vf = vitaldb.VitalFile(str(path), track_names=tracks)
        require_tracks(vf.trks, tracks)
        out = []
        for name in tracks:
            trk = vf.trks[name]
            if not trk.srate or trk.srate <= 0:
                raise CaseError(f"track {name} is not a waveform track")
            values = np.asarray(vf.get_track_samples(name, 1.0 / trk.srate), dtype=np.float32)
            out.append(Track(name, values, float(trk.srate), trk.unit, 0.0))
            trk.recs = []  # free the parsed records as soon as the dense array exists
        return out


def parse_clinical_csv(text: str) -> dict[int, dict]:
    """VitalDB's clinical table (`/cases` or clinical_data.csv) -> {caseid: row}."""
    out = {}
    for r in csv.DictReader(io.StringIO(text)):
        caseid = int(float(r["caseid"]))
        try:
            duration = float(r.get("caseend") or "nan") - float(r.get("casestart") or "nan")
        except ValueError:
            duration = float("nan")
        out[caseid] = {"caseid": caseid, "subjectid": r.get("subjectid") or caseid, "name": str(caseid),
                       "duration_s": duration, "age": r.get("age", ""), "sex": r.get("sex", "")}
    return out


def parse_track_csv(text: str) -> dict[int, set[str]]:
    """VitalDB's track list (`/trks` or track_names.csv: caseid, tname[, tid]) -> {caseid: {tname}}."""
    out: dict[int, set[str]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        out.setdefault(int(float(r["caseid"])), set()).add(r["tname"])
    return out


def rows_from_vitaldb_csv(clinical: str, tracks_csv: str, ppg_track: str, ecg_track: str) -> list[dict]:
    cases = parse_clinical_csv(clinical)
    trks = parse_track_csv(tracks_csv)
    rows = []
    for caseid, row in cases.items():
        names = trks.get(caseid, set())
        rows.append({**row, "has_ppg": ppg_track in names, "has_ecg": ecg_track in names, "hr_bpm": ""})
    return rows
