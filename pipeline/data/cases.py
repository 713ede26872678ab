"""The case table: one row per case, with its subject, its split and its batch.

The split is a deterministic hash of `subjectid` (salted), compared against cumulative split
fractions: a subject lands in exactly one split, and adding cases never moves existing ones.
The batch of a case is `caseid // batch_size`, equally stable.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

from pipeline.config import SPLITS
from pipeline.data.sources import get_source
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = ["caseid", "subjectid", "name", "split", "batch", "has_ppg", "has_ecg", "duration_s", "age", "sex", "bmi", "asa",
           "has_art", "hr_bpm", "excluded"]


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
    """Drop cases known to lack a track (has_* False; None = not known until the case is fetched,
    kept), apply caseids/limit, assign split and batch, sort. A case of `exclude` stays in the table
    with `excluded` True: the download stage records it as excluded and never fetches it."""
    rows = sorted(rows, key=lambda r: int(r["caseid"]))
    n_all = len(rows)
    rows = [r for r in rows if r["has_ppg"] is not False and r["has_ecg"] is not False]
    log.info("%d of %d cases have (or may have) both %s and %s", len(rows), n_all, ppg_track, ecg_track)
    if cases_cfg.get("caseids"):
        wanted = set(cases_cfg["caseids"])
        missing = wanted - {int(r["caseid"]) for r in rows}
        if missing:
            log.warning("requested caseids without both tracks or unknown: %s", sorted(missing))
        rows = [r for r in rows if int(r["caseid"]) in wanted]
    if cases_cfg.get("limit"):
        rows = rows[: cases_cfg["limit"]]
    exclude = set(cases_cfg.get("exclude") or ())
    if exclude:
        unknown = exclude - {int(r["caseid"]) for r in rows}
        log.info("cases.exclude: %d case(s) left out on purpose%s", len(exclude - unknown),
                 f"; not in the table anyway: {sorted(unknown)}" if unknown else "")
    for r in rows:
        r["excluded"] = int(r["caseid"]) in exclude
        r["split"] = subject_split(r["subjectid"], cases_cfg["split"], cases_cfg["split_salt"])
        r["batch"] = int(r["caseid"]) // cases_cfg["batch_size"]
    return rows


def write_table(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", extrasaction="ignore", restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None else int(v) if isinstance(v, bool) else v) for k, v in r.items()})


def read_table(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r["caseid"] = int(r["caseid"])
        r["batch"] = int(r["batch"])
        r["excluded"] = r.get("excluded") == "1"  # tables written before cases.exclude have no column
    return rows


def batches(path: str | Path) -> list[int]:
    """Batch ids present in a case table (read without parsing every column: fast for 6,388 rows)."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("batch")
        return sorted({int(line.split("\t")[col]) for line in f if line.strip()})


def build_case_table(params: dict) -> list[dict]:
    """Case table of the configured source (params: source, its section, cases, download)."""
    source = get_source(params)
    return finish_table(source.case_rows(), params["cases"], *source.tracks())
