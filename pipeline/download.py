"""Fetch case files: our own HTTP download (timeout, bounded retries with backoff, temp file +
atomic rename, validation), because the vitaldb package's urllib download has no timeout or retry
and silently returns all-NaN data for a truncated file.

A case that fails after its retries is recorded with its reason; the other cases go on.
"""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path

import numpy as np
import urllib3
from tqdm import tqdm

from pipeline.io import atomic_path, write_json

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_STATUS = (429, 500, 502, 503, 504)


class CaseError(Exception):
    """A case cannot be used; the message is the recorded reason."""


def http_pool(download_cfg: dict) -> urllib3.PoolManager:
    n = download_cfg["retries"]
    retry = urllib3.Retry(
        total=n, connect=n, read=n, status=n, backoff_factor=download_cfg["backoff_s"],
        status_forcelist=RETRY_STATUS, allowed_methods={"GET"}, raise_on_status=True,
    )
    t = download_cfg["timeout_s"]
    return urllib3.PoolManager(retries=retry, timeout=urllib3.Timeout(connect=t, read=t))


def _get(pool: urllib3.PoolManager, url: str, download_cfg: dict, sink) -> None:
    """GET `url`, streaming the body into `sink(chunk)`; retries cover the body too.

    urllib3's Retry covers connection errors and 5xx before the body; a body that breaks off or
    stalls mid-stream is retried here, with the same bound and backoff.
    """
    attempts = download_cfg["retries"] + 1
    for attempt in range(1, attempts + 1):
        try:
            r = pool.request("GET", url, preload_content=False)
        except urllib3.exceptions.MaxRetryError as e:
            raise CaseError(f"GET {url} failed after {download_cfg['retries']} retries: {e.reason}") from e
        try:
            if r.status != 200:
                raise CaseError(f"GET {url}: HTTP {r.status}")
            sink(None)  # reset: a retried body starts again
            for chunk in r.stream(CHUNK):
                sink(chunk)
            return
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError,
                urllib3.exceptions.DecodeError) as e:
            if attempt == attempts:
                raise CaseError(f"GET {url}: body failed after {attempt} attempts: {e}") from e
            wait = download_cfg["backoff_s"] * 2 ** (attempt - 1)
            log.warning("GET %s: body failed (%s); retry %d/%d in %.1f s", url, e, attempt, attempts - 1, wait)
            time.sleep(wait)
        finally:
            r.release_conn()


def fetch_text(url: str, download_cfg: dict) -> str:
    parts: list[bytes] = []
    _get(http_pool(download_cfg), url, download_cfg, lambda c: parts.clear() if c is None else parts.append(c))
    return b"".join(parts).decode("utf-8-sig")


def fetch_file(pool: urllib3.PoolManager, url: str, dest: Path, download_cfg: dict) -> None:
    with open(dest, "wb") as f:
        def sink(chunk):
            if chunk is None:
                f.seek(0)
                f.truncate()
            else:
                f.write(chunk)
        _get(pool, url, download_cfg, sink)


def validate_vital(path: str | Path, tracks: list[str]) -> None:
    """Raise CaseError unless `path` is a complete gzip stream that parses as a `.vital` file with
    data in every track of `tracks`."""
    try:
        with gzip.open(path, "rb") as g:
            if g.read(4) != b"VITA":
                raise CaseError("not a .vital file (no VITA signature)")
            while g.read(CHUNK):
                pass
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        raise CaseError(f"corrupt or truncated gzip stream: {e}") from e
    import vitaldb

    vf = vitaldb.VitalFile(str(path), track_names=list(tracks))
    for name in tracks:
        trk = vf.trks.get(name)
        if trk is None:
            raise CaseError(f"missing track {name}")
        if not any(np.isfinite(np.asarray(r["val"], dtype=np.float64)).any() for r in trk.recs if np.size(r["val"])):
            raise CaseError(f"track {name} has no data")


def fetch_case(row: dict, params: dict, dest: Path, pool) -> None:
    """Put case `row`'s file at `dest` (a temporary path) according to the source."""
    caseid = int(row["caseid"])
    source = params["source"]
    if source == "vitaldb":
        api = params["vitaldb"]["api_url"].rstrip("/")
        fetch_file(pool, f"{api}/{params['vitaldb']['dataset_version']}/{caseid}.vital", dest, params["download"])
    elif source == "local":
        src = Path(params["local"]["root"]) / "vital_files" / f"{caseid:04d}.vital"
        if not src.is_file():
            raise CaseError(f"missing file {src}")
        dest.unlink()
        os.symlink(src.resolve(), dest)
    elif source == "demo":
        from pipeline.demo import write_demo_case

        write_demo_case(caseid, dest, params["demo"], row, params["signals"]["ppg_track"], params["signals"]["ecg_track"])
    else:
        raise ValueError(f"source: unknown source {source!r}")


def download_batch(rows: list[dict], params: dict, out_dir: str | Path, status_path: str | Path) -> dict:
    """Fetch and validate every case of `rows` into `out_dir/<caseid>.vital`; write a status JSON.

    A file is only ever renamed onto its final path after validation, so an existing file is a
    valid one and is kept (reruns and added cases do not download again).
    """
    out_dir = Path(out_dir)
    tracks = [params["signals"]["ppg_track"], params["signals"]["ecg_track"]]
    pool = http_pool(params["download"]) if params["source"] == "vitaldb" else None
    status = {}
    for row in tqdm(rows, desc="download", unit="case", mininterval=2):
        caseid = int(row["caseid"])
        dest = out_dir / f"{caseid}.vital"
        if dest.exists():
            status[str(caseid)] = {"status": "ok", "path": str(dest), "cached": True}
            continue
        try:
            with atomic_path(dest) as tmp:
                fetch_case(row, params, tmp, pool)
                validate_vital(tmp, tracks)
            status[str(caseid)] = {"status": "ok", "path": str(dest)}
        except Exception as e:  # noqa: BLE001 -- one bad case is recorded, never stops the batch
            reason = str(e) if isinstance(e, CaseError) else f"{type(e).__name__}: {e}"
            log.warning("case %d skipped at download: %s", caseid, reason)
            status[str(caseid)] = {"status": "failed", "stage": "download", "reason": reason}
    write_json(status_path, status)
    n_ok = sum(s["status"] == "ok" for s in status.values())
    log.info("download: %d of %d cases ok", n_ok, len(status))
    return status
