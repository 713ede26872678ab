"""Worst-case time and memory per class of hostile `.vital` file (issue 21, tests/hostile.py).

Each class is written at full size (`--scale 1`: 24 h at 500 Hz for the big ones, a 1 GB zero
bomb), then the download stage (fetch + validation) and the resample stage run on it in a fresh
process, as their jobs do. Per class: how it ended (ok, or the recorded reason), seconds of the two
stages, and the process's peak RSS (MB, imports included: the floor is about 120 MB). The targets
are peak RSS <= 1024 MB and <= 10 s for every class.

    python benchmarks/bench_hostile.py [--scale 1.0] [--only NAME ...]

JSON lines on stdout, a Markdown table on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hostile import FILES, MAX_RSS_MB, MAX_SECONDS  # noqa: E402


def run(name: str, scale: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        code = "import json, sys; from tests.hostile import run_case; print(json.dumps(run_case(sys.argv[1], sys.argv[2], float(sys.argv[3]))))"
        r = subprocess.run([sys.executable, "-c", code, name, tmp, str(scale)], capture_output=True, text=True, cwd=REPO)
        if r.returncode:
            return {"name": name, "error": r.stderr[-2000:]}
        return json.loads(r.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only", nargs="+", choices=sorted(FILES))
    a = ap.parse_args()
    rows = []
    for name in a.only or FILES:
        out = run(name, a.scale)
        print(json.dumps(out), flush=True)
        rows.append(out)
    print("| class | ends as | s | peak RSS MB | within bounds |\n| --- | --- | --- | --- | --- |", file=sys.stderr)
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | job raised: {r['error'].splitlines()[-1]} | | | no |", file=sys.stderr)
            continue
        ends = r["resample"] if r["download"]["status"] == "ok" else r["download"]
        how = "ok" if ends["status"] == "ok" else f"{ends['stage']}: {ends['reason'][:80]}"
        ok = r["seconds"] <= MAX_SECONDS and r["peak_rss_mb"] <= MAX_RSS_MB
        print(f"| {r['name']} | {how} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {'yes' if ok else 'NO'} |", file=sys.stderr)


if __name__ == "__main__":
    main()
