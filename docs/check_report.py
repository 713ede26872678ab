"""Check the report's pages in a real headless browser, and take the screenshots in docs/ (issue 20).

Run after a finished workflow and `snakemake --report results/report.html`, with Debian's chromium
installed (`apt-get install chromium`):

    python docs/check_report.py [--workdir .] [--source demo] [--shots docs]

It opens, in headless Chromium, after their scripts ran:
- results/report.html (the Snakemake report): its landing page must state the headline (the
  evaluation's `headline.rst`: "Did pretraining help?" and the SSL − baseline table);
- results/<source>/windows/qc.html#sort=kept: the QC table sorted by the kept column must have its
  rows in numeric order of that column, with the totals table above; and #filter=<a split> must
  show only that split's rows;
- results/<source>/eval/label_efficiency.png: the plot (with its intervals) as a browser shows it.
It writes report-landing.png, qc-table.png and label-efficiency.png into --shots, and exits non-zero
naming the first check that fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=8000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise SystemExit("no Chromium found: apt-get install chromium")


def browse(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True, text=True,
                           timeout=120)
    if r.returncode:
        raise SystemExit(f"chromium failed on {url}: {r.stderr[-1000:]}")
    return r.stdout


def dom(path: Path, fragment: str = "") -> str:
    return browse(path.resolve().as_uri() + fragment, "--dump-dom")


def shot(path: Path, out: Path, size: str, fragment: str = "") -> None:
    browse(path.resolve().as_uri() + fragment, f"--screenshot={out.resolve()}", f"--window-size={size}")
    if not out.is_file() or out.stat().st_size < 5000:
        raise SystemExit(f"no screenshot of {path}")


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        raise SystemExit(f"check failed: {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--source", default="demo")
    ap.add_argument("--shots", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args()
    a.shots.mkdir(parents=True, exist_ok=True)
    report = a.workdir / "results" / "report.html"
    qc = a.workdir / "results" / a.source / "windows" / "qc.html"
    eff = a.workdir / "results" / a.source / "eval" / "label_efficiency.png"

    page = dom(report)
    check("Did pretraining help?" in page and "SSL − raw [95% CI]" in page, "report landing page states the headline table")
    shot(report, a.shots / "report-landing.png", "1400,1000")

    page = dom(qc, "#sort=kept")
    body = page.split("<tbody>", 1)[1]
    kept = [int(row[3]) for row in re.findall(r"<tr[^>]*><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", body)]
    check(len(kept) > 1 and kept == sorted(kept), f"qc.html#sort=kept: {len(kept)} rows in numeric order of kept")
    check("<table id=\"totals\">" in page and "windows kept" in page, "qc.html has the totals table")
    page = dom(qc, "#filter=test")
    shown = re.findall(r"<tr(?: style=\"\")?><td>[^<]*</td><td>([^<]*)</td>", page.split("<tbody>", 1)[1])
    check(shown and set(shown) == {"test"}, f"qc.html#filter=test: {len(shown)} rows shown, all of split test")
    shot(qc, a.shots / "qc-table.png", "1300,900", "#sort=kept")

    shot(eff, a.shots / "label-efficiency.png", "1300,700")
    check(True, f"screenshots in {a.shots}")


if __name__ == "__main__":
    sys.exit(main())
