"""HTTP for remote sources: timeout, bounded retries with backoff (urllib3), and a retried body.

Our own download because the vitaldb package's urllib download has no timeout or retry and
silently returns all-NaN data for a truncated file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import urllib3

from pipeline.errors import CaseError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_STATUS = (429, 500, 502, 503, 504)


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
