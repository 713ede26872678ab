"""HTTP for remote sources: timeouts, one bounded retry budget per file (urllib3's Retry), a deadline
per attempt, and the split between permanent and transient faults (docs/design.md, "Faults").

Our own download because the vitaldb package's urllib download has no timeout or retry and
silently returns all-NaN data for a truncated file.

One file = one `urllib3.Retry` object, the same for every stage of every attempt: urllib3 spends it
on connection errors, read errors before the response and 429/5xx (honouring `Retry-After`, capped
at `retry_after_max_s`), and we spend it on a body that breaks off, stalls past `timeout_s` or is
still arriving `deadline_s` after its headers. So a file costs at most `retries + 1` requests (a
redirect counts as one), and one attempt at most about 2 * timeout_s + deadline_s + timeout_s.

- HTTP 404/410: `CaseError` (permanent: recorded, the batch goes on).
- Everything else that stops a file (connection errors, timeouts, 429/5xx or a broken body after
  the retries, any other status): `TransientError` (the job fails after its batch; a rerun retries).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import urllib3

from pipeline.errors import CaseError, TransientError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
PERMANENT_STATUS = (404, 410)


class _Retry(urllib3.Retry):
    """urllib3's Retry with a server's `Retry-After` capped at `retry_after_max_s` (carried by
    `new()`, which urllib3 calls for every retry)."""

    def __init__(self, *args, retry_after_max_s: float = 60.0, **kw):
        super().__init__(*args, **kw)
        self.retry_after_max_s = retry_after_max_s

    def new(self, **kw):
        return super().new(retry_after_max_s=self.retry_after_max_s, **kw)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.retry_after_max_s)


def file_retry(download_cfg: dict) -> urllib3.Retry:
    """The retry budget of one file: `retries` retries in all, whatever fails."""
    return _Retry(
        total=download_cfg["retries"], backoff_factor=download_cfg["backoff_s"], status_forcelist=RETRY_STATUS,
        allowed_methods={"GET"}, raise_on_status=True, respect_retry_after_header=True,
        retry_after_max_s=download_cfg["retry_after_max_s"],
    )


def http_pool(download_cfg: dict) -> urllib3.PoolManager:
    t = download_cfg["timeout_s"]
    return urllib3.PoolManager(retries=file_retry(download_cfg), timeout=urllib3.Timeout(connect=t, read=t))


class DeadlineError(urllib3.exceptions.ReadTimeoutError):
    """A body still arriving `deadline_s` after its headers: a read error to urllib3's Retry."""

    def __init__(self, url: str, deadline_s: float):
        urllib3.exceptions.HTTPError.__init__(self, f"body not complete within deadline_s={deadline_s:g}")
        self.pool, self.url = None, url


def _stream(r, url: str, deadline_s: float, sink) -> None:
    """Pass the body to `sink` as it arrives; a read timeout if it is not complete `deadline_s` after
    the headers (checked as data arrives: a silent server is cut off by the read timeout instead)."""
    end = time.monotonic() + deadline_s
    while chunk := r.read1(CHUNK):
        if time.monotonic() > end:
            raise DeadlineError(url, deadline_s)
        sink(chunk)


def _get(pool: urllib3.PoolManager, url: str, download_cfg: dict, sink) -> None:
    """GET `url`, streaming the body into `sink(chunk)` (`sink(None)` first: a retried body starts
    again). One retry budget for the whole file (module docstring)."""
    n = download_cfg["retries"]
    retry = file_retry(download_cfg)
    while True:
        try:
            r = pool.request("GET", url, preload_content=False, retries=retry)
        except urllib3.exceptions.MaxRetryError as e:
            raise TransientError(f"GET {url}: {e.reason} (after {n} retries)") from e
        done = False
        try:
            if r.status in PERMANENT_STATUS:
                raise CaseError(f"GET {url}: HTTP {r.status}")
            if r.status != 200:
                raise TransientError(f"GET {url}: HTTP {r.status}")
            sink(None)
            _stream(r, url, download_cfg["deadline_s"], sink)
            done = True
            return
        except urllib3.exceptions.HTTPError as e:  # the body broke off, stalled or ran past the deadline
            try:
                retry = (r.retries or retry).increment("GET", url, error=e)
            except urllib3.exceptions.MaxRetryError:
                raise TransientError(f"GET {url}: body failed ({e}) (after {n} retries)") from e
            log.warning("GET %s: body failed (%s); retrying (%d of %d retries left)", url, e, retry.total, n)
            retry.sleep()
        finally:
            if not done:
                r.close()  # never hand a half-read connection back to the pool
            r.release_conn()


def fetch_text(url: str, download_cfg: dict) -> str:
    parts: list[bytes] = []
    _get(http_pool(download_cfg), url, download_cfg, lambda c: parts.clear() if c is None else parts.append(c))
    return b"".join(parts).decode("utf-8-sig")


def fetch_file(pool: urllib3.PoolManager, url: str, dest: Path, download_cfg: dict) -> None:
    """Stream `url` into `dest`. A local OSError (a full disk) is not retried here: it propagates,
    and `download_batch` counts it as transient."""
    with open(dest, "wb") as f:
        def sink(chunk):
            if chunk is None:
                f.seek(0)
                f.truncate()
            else:
                f.write(chunk)
        _get(pool, url, download_cfg, sink)
