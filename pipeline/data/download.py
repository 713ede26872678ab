"""Fetch the cases of a batch through their source (pipeline.data.sources): temp file, validation,
atomic rename (docs/design.md, "Faults").

- A permanent fault of a case (`CaseError`: HTTP 404/410, a complete file that fails validation)
  is recorded in the batch status with its reason; the other cases go on.
- A transient fault (`TransientError`: connection errors, timeouts, 429/5xx or a cut body after
  the retries; any local `OSError`, e.g. a full disk) does not record the case: the other cases go
  on, then the job fails naming the cases and reasons, and writes no status file, so Snakemake sees
  the job failed and `--retries` or a plain rerun does the batch again. Validated files are kept,
  and the permanent failures of the unfinished run wait in `<status>.partial` (read back only with
  the same source settings), so the rerun fetches exactly the transient cases.
- Any other exception while fetching or validating a case is that case's permanent failure too,
  recorded as "unexpected error: <type>: ..." (`errors.classify`, the one place that classifies).
- A case that failed transiently in `download.max_failed_runs` consecutive runs is recorded as
  failed ("gave up after N runs: <last reason>") and the batch completes: a fault that never clears
  (a server that cuts one file on every request) cannot block the run for ever. The run counts
  live in `<status>.partial` with the permanent failures.
- A case in `cases.exclude` (marked `excluded` in the case table) is never fetched: its status is
  `excluded`, with that reason.
- More than `download.max_failed_fraction` of a batch failing permanently (and at least
  `MIN_FAILED` cases, so one bad case of a small batch never trips it) stops the job with the
  reason common to them (wrong URL, wrong track names), instead of a nearly empty dataset. The run
  counts start again then: a batch-wide outage is never given up on.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pipeline.config import validate_params
from pipeline.data.checks import CHECKS
from pipeline.data.sources import get_source, sample_budget
from pipeline.errors import FailedFractionError, TransientError, classify
from pipeline.io import atomic_path, progress, read_json, write_json

log = logging.getLogger(__name__)

MIN_FAILED = 3  # permanent failures below this never trip max_failed_fraction (small batches)

# What a common reason most likely means (a substring of the reason -> a hint).
HINTS = (
    ("HTTP 404", "the URL or the dataset version is probably wrong: check the {source} section"),
    ("HTTP 410", "the URL or the dataset version is probably wrong: check the {source} section"),
    ("missing track", "the track names are probably wrong: check {source}.tracks"),
    ("missing file", "the folder is probably wrong: check {source}.root"),
)


def _download_cfg(params: dict) -> dict:
    """params['download'] with the schema's defaults (sources without HTTP may be given None)."""
    return validate_params({"download": dict(params.get("download") or {})}, CHECKS)["download"]


def _pattern(reason: str) -> str:
    """A reason without what differs from case to case: URLs, absolute paths, a trailing '(...)'."""
    reason = re.sub(r"\b[a-z][a-z0-9+.-]*://\S+?(?=[:,;]?(\s|$))", "<url>", reason)
    reason = re.sub(r"(?<![\w/])/\S+?(?=[:,;]?(\s|$))", "<path>", reason)
    return re.sub(r"\s*\([^()]*\)\s*$", "", reason).strip()


def _failed_fraction_message(failed: dict[str, str], n: int, frac: float, source: str, n_transient: int) -> str:
    groups: dict[str, list[str]] = {}
    for caseid, reason in failed.items():
        groups.setdefault(_pattern(reason), []).append(caseid)
    parts = []
    for pattern, cases in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        hint = next((h.format(source=source) for key, h in HINTS if key in pattern), "")
        which = f"{'cases' if len(cases) > 1 else 'case'} {', '.join(cases)}"
        parts.append(f"{len(cases)} with '{pattern}' ({which})" + (f": {hint}" if hint else ""))
    common = "all" if len(groups) == 1 else "most common first"
    msg = (f"download: {len(failed)} of {n} cases failed permanently, more than"
           f" download.max_failed_fraction={frac:g} of the batch; {common}: " + "; ".join(parts)
           + ". Nothing was recorded for the batch: fix the cause and rerun")
    if n_transient:
        msg += f" ({n_transient} more failed transiently)"
    return msg


def _read_partial(path: Path, key: dict) -> tuple[dict, dict]:
    """(permanent failures, {caseid: consecutive runs failed transiently}) recorded by unfinished
    runs with the same settings (else none)."""
    if not path.exists():
        return {}, {}
    try:
        journal = read_json(path)
    except (OSError, ValueError):
        return {}, {}
    return (journal["failed"], journal.get("transient_runs", {})) if journal.get("params") == key else ({}, {})


def download_batch(rows: list[dict], params: dict, out_dir: str | Path, status_path: str | Path) -> dict:
    """Fetch and validate every case of `rows` into `out_dir` (file names from the source); write a
    status JSON. A file is only ever renamed onto its final path after validation, so an existing
    file is a valid one and is kept (reruns and added cases do not fetch again). Raises
    `TransientError` (cases named, no status written) if a case failed for a transient reason, and
    `FailedFractionError` if too many failed permanently (module docstring).
    """
    cfg = _download_cfg(params)
    source = get_source({**params, "download": cfg})
    max_samples = sample_budget(params["signals"]) if "signals" in params else float("inf")
    status_path = Path(status_path)
    partial_path = status_path.with_name(status_path.name + ".partial")
    key = json.loads(json.dumps({k: v for k, v in params.items() if k != "download"}))
    earlier, runs = _read_partial(partial_path, key)
    status, transient = {}, {}
    with source.session() as session:
        for row in progress(rows, desc="download", unit="case", mininterval=2):
            caseid = str(int(row["caseid"]))
            if row.get("excluded"):  # cases.exclude (pipeline.data.cases.read_table)
                status[caseid] = {"status": "excluded", "stage": "download", "reason": "excluded (cases.exclude)"}
                continue
            dest = source.case_file(out_dir, int(caseid))
            if dest.exists() and source.is_current(dest, row):
                status[caseid] = {"status": "ok", "path": str(dest), "cached": True}
                continue
            if caseid in earlier:  # failed permanently in the unfinished run: not asked again
                status[caseid] = earlier[caseid]
                continue
            try:
                with atomic_path(dest) as tmp:
                    source.fetch(row, tmp, session)
                    source.validate(tmp, max_samples)
                status[caseid] = {"status": "ok", "path": str(dest)}
            except Exception as e:  # noqa: BLE001 -- every case ends recorded (permanent) or named (transient)
                fault = classify(e)
                n = runs.get(caseid, 0) + 1
                if fault.transient and n < cfg["max_failed_runs"]:
                    log.error("case %s not downloaded (transient, run %d of at most %d; the job fails after the batch): %s",
                              caseid, n, cfg["max_failed_runs"], fault.reason)
                    transient[caseid] = fault.reason
                elif fault.transient:
                    reason = f"gave up after {n} runs (download.max_failed_runs), each failed for a transient reason; last: {fault.reason}"
                    log.warning("case %s recorded as failed: %s", caseid, reason)
                    status[caseid] = {"status": "failed", "stage": "download", "reason": reason, "gave_up": True}
                else:
                    log.warning("case %s skipped at download: %s", caseid, fault.reason)
                    status[caseid] = fault.status("download")

    failed = {c: s["reason"] for c, s in status.items() if s["status"] == "failed"}
    frac = cfg["max_failed_fraction"]
    if len(failed) >= MIN_FAILED and len(failed) > frac * len(rows):
        partial_path.unlink(missing_ok=True)  # a rerun after the fix asks the server again
        raise FailedFractionError(_failed_fraction_message(failed, len(rows), frac, params["source"], len(transient)))
    if transient:
        write_json(partial_path, {"params": key, "failed": {c: s for c, s in status.items() if s["status"] == "failed"},
                                  "transient_runs": {c: runs.get(c, 0) + 1 for c in transient}})
        raise TransientError(f"download: {len(transient)} of {len(rows)} cases failed for a transient reason and were"
                             " not recorded; rerun to retry them (the others are kept): "
                             + "; ".join(f"case {c}: {r}" for c, r in transient.items()))
    write_json(status_path, status)
    partial_path.unlink(missing_ok=True)
    n_ok = sum(s["status"] == "ok" for s in status.values())
    log.info("download: %d of %d cases ok", n_ok, len(status))
    return status
