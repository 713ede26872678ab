"""Fetch the cases of a batch through their source (pipeline.sources): temp file, validation,
atomic rename. A case that fails is recorded with its reason; the other cases go on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import CaseError
from pipeline.io import atomic_path, write_json
from pipeline.sources import get_source

log = logging.getLogger(__name__)


def download_batch(rows: list[dict], params: dict, out_dir: str | Path, status_path: str | Path) -> dict:
    """Fetch and validate every case of `rows` into `out_dir` (file names from the source); write a
    status JSON. A file is only ever renamed onto its final path after validation, so an existing
    file is a valid one and is kept (reruns and added cases do not fetch again).
    """
    source = get_source(params)
    status = {}
    with source.session() as session:
        for row in tqdm(rows, desc="download", unit="case", mininterval=2):
            caseid = int(row["caseid"])
            dest = source.case_file(out_dir, caseid)
            if dest.exists() and source.is_current(dest, row):
                status[str(caseid)] = {"status": "ok", "path": str(dest), "cached": True}
                continue
            try:
                with atomic_path(dest) as tmp:
                    source.fetch(row, tmp, session)
                    source.validate(tmp)
                status[str(caseid)] = {"status": "ok", "path": str(dest)}
            except Exception as e:  # noqa: BLE001 -- one bad case is recorded, never stops the batch
                reason = str(e) if isinstance(e, CaseError) else f"{type(e).__name__}: {e}"
                log.warning("case %d skipped at download: %s", caseid, reason)
                status[str(caseid)] = {"status": "failed", "stage": "download", "reason": reason}
    write_json(status_path, status)
    n_ok = sum(s["status"] == "ok" for s in status.values())
    log.info("download: %d of %d cases ok", n_ok, len(status))
    return status
