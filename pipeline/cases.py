"""The case table: one row per case, with its subject, its split and its batch.

The split is a deterministic hash of `subjectid` (salted), compared against cumulative split
fractions: a subject lands in exactly one split, and adding cases never moves existing ones.
The batch of a case is `caseid // batch_size`, equally stable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path

from pipeline.config import SPLITS
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = ["caseid", "subjectid", "split", "batch", "has_ppg", "has_ecg", "duration_s", "age", "sex", "hr_bpm"]


def subject_split(subjectid, fractions: dict, salt: str) -> str:
    """Map a subject to a split by a uniform hash in [0, 1)."""
    h = hashlib.sha256(f"{salt}:{subjectid}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]  # u within float rounding of 1.0


def finish_table(rows: list[dict], cases_cfg: dict, ppg_track: str, ecg_track: str) -> list[dict]:
    """Filter to cases with both tracks, apply caseids/limit, assign split and batch, sort."""
    rows = sorted(rows, key=lambda r: int(r["caseid"]))
    n_all = len(rows)
    rows = [r for r in rows if r["has_ppg"] and r["has_ecg"]]
    log.info("%d of %d cases have both %s and %s", len(rows), n_all, ppg_track, ecg_track)
    if cases_cfg.get("caseids"):
        wanted = set(cases_cfg["caseids"])
        missing = wanted - {int(r["caseid"]) for r in rows}
        if missing:
            log.warning("requested caseids without both tracks or unknown: %s", sorted(missing))
        rows = [r for r in rows if int(r["caseid"]) in wanted]
    if cases_cfg.get("limit"):
        rows = rows[: cases_cfg["limit"]]
    for r in rows:
        r["split"] = subject_split(r["subjectid"], cases_cfg["split"], cases_cfg["split_salt"])
        r["batch"] = int(r["caseid"]) // cases_cfg["batch_size"]
    return rows


def write_table(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", extrasaction="ignore", restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: (int(v) if isinstance(v, bool) else v) for k, v in r.items()})


def read_table(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["caseid"] = int(r["caseid"])
        r["batch"] = int(r["batch"])
    return rows


def batches(path: str | Path) -> list[int]:
    """Batch ids present in a case table (read without parsing every column: fast for 6,388 rows)."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("batch")
        return sorted({int(line.split("\t")[col]) for line in f if line.strip()})


def parse_clinical_csv(text: str) -> dict[int, dict]:
    """VitalDB's clinical table (`/cases` or clinical_data.csv) -> {caseid: row}."""
    out = {}
    for r in csv.DictReader(io.StringIO(text)):
        caseid = int(float(r["caseid"]))
        try:
            duration = float(r.get("caseend") or "nan") - float(r.get("casestart") or "nan")
        except ValueError:
            duration = float("nan")
        out[caseid] = {
            "caseid": caseid,
            "subjectid": r.get("subjectid") or caseid,
            "duration_s": duration,
            "age": r.get("age", ""),
            "sex": r.get("sex", ""),
        }
    return out


def parse_track_csv(text: str) -> dict[int, set[str]]:
    """VitalDB's track list (`/trks` or track_names.csv: caseid, tname[, tid]) -> {caseid: {tname}}."""
    out: dict[int, set[str]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        out.setdefault(int(float(r["caseid"])), set()).add(r["tname"])
    return out


def table_from_vitaldb_csv(clinical: str, tracks: str, ppg_track: str, ecg_track: str) -> list[dict]:
    cases = parse_clinical_csv(clinical)
    trks = parse_track_csv(tracks)
    rows = []
    for caseid, row in cases.items():
        names = trks.get(caseid, set())
        rows.append({**row, "has_ppg": ppg_track in names, "has_ecg": ecg_track in names, "hr_bpm": ""})
    return rows


def build_case_table(config: dict) -> list[dict]:
    """Case table of the configured source (network access for `vitaldb`)."""
    sig = config["signals"]
    source = config["source"]
    if source == "demo":
        from pipeline.demo import demo_case_rows

        rows = demo_case_rows(config["demo"])
    elif source == "vitaldb":
        from pipeline.download import fetch_text

        api = config["vitaldb"]["api_url"].rstrip("/")
        clinical = fetch_text(f"{api}/cases", config["download"])
        tracks = fetch_text(f"{api}/trks", config["download"])
        rows = table_from_vitaldb_csv(clinical, tracks, sig["ppg_track"], sig["ecg_track"])
    elif source == "local":
        root = Path(config["local"]["root"])
        for name in ("clinical_data.csv", "track_names.csv"):
            if not (root / name).is_file():
                raise FileNotFoundError(f"local.root={root}: missing {name} (expected a PhysioNet VitalDB release)")
        rows = table_from_vitaldb_csv(
            (root / "clinical_data.csv").read_text(), (root / "track_names.csv").read_text(), sig["ppg_track"], sig["ecg_track"]
        )
    else:  # the schema forbids this
        raise ValueError(f"source: unknown source {source!r}")
    return finish_table(rows, config["cases"], sig["ppg_track"], sig["ecg_track"])
