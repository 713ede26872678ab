"""A full-scale rehearsal of the data stages: N synthetic cases with VitalDB-like durations, served by
a loopback VitalDB API that injects faults, run through Snakemake with retries (issue: data at full
VitalDB scale). Reports cases kept / skipped by reason / lost (must be 0), peak RSS per rule, wall
time per recorded hour per core, and the extrapolation to 6,388 cases.

    python benchmarks/bench_rehearsal.py [--cases 96] [--batch-size 16] [--cores 2] [--seed 0]

Cases: durations log-normal around a median of 3 h (clipped to 0.5-9 h) plus three of 10-12 h,
rounded to 0.5 h so that cases of one duration share one synthetic recording (generation is the
slow part; the pipeline still downloads, validates and processes every case on its own). About 8%
have no ECG: half of them say so in /trks (left out of the case table, as VitalDB's track list
does), half claim it but their file lacks it (a recorded skip). One recording has a stray record
three days after its 61 s of data (over `signals.max_case_hours`).
Faults per case file, drawn with the seed: 5% 404 (gone), 10% one or two 503s then ok, 4% 503s
beyond the retry budget on the first job attempt, then ok (recovered by Snakemake's --retries),
5% a cut body once, 3% a stall past the read timeout once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_data import make_case  # noqa: E402

from tests.httpserver import FaultyServer  # noqa: E402

VITALDB_CASES = 6388
DT0 = 4102444800.0


def durations(n: int, rng: np.random.Generator) -> list[float]:
    d = np.clip(rng.lognormal(np.log(3.0), 0.5, n - 3), 0.5, 9.0).tolist() + rng.uniform(10, 12, 3).tolist()
    return [round(x * 2) / 2 for x in d]


def stray_record_case(path: Path) -> None:
    """61 s of PPG and ECG, then one more record three days later."""
    import vitaldb

    from pipeline.data.sources.demo import synth_signals

    if path.exists():
        return
    ppg, ecg = synth_signals(70.0, 61.0, np.random.default_rng(5))
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, DT0, DT0 + 3 * 86400 + 1
    for name, x in (("SNUADC/PLETH", ppg), ("SNUADC/ECG_II", ecg)):
        x = x.astype(np.float32)
        recs = [{"dt": DT0, "val": x}, {"dt": DT0 + 3 * 86400, "val": x[:500]}]
        vf.add_track(name, recs, srate=500, unit="", mindisp=float(x.min()), maxdisp=float(x.max()))
    vf.to_vital(str(path), packed=True)


def ppg_only_case(path: Path, hours: float) -> None:
    from pipeline.data.sources.demo import synth_signals, write_vital

    if not path.exists():
        ppg, _ = synth_signals(75.0, hours * 3600, np.random.default_rng(2))
        write_vital(path, {"SNUADC/PLETH": ppg}, 500, DT0, packed=True)


def build_cases(n: int, seed: int, pool: Path) -> tuple[dict, dict, str, str, dict]:
    """Files served, fault script, /cases and /trks CSV, and what each case is (for the report)."""
    rng = np.random.default_rng(seed)
    dur = durations(n, rng)
    pool.mkdir(parents=True, exist_ok=True)
    files, script, kind = {}, {}, {}
    clinical = ["caseid,subjectid,casestart,caseend,age,sex"]
    trks = ["caseid,tname,tid"]
    no_ecg = set(rng.choice(np.arange(1, n + 1), max(2, round(0.08 * n)), replace=False).tolist())
    stray = int(rng.choice(sorted(set(range(1, n + 1)) - no_ecg)))
    t0 = time.perf_counter()
    for caseid, hours in zip(range(1, n + 1), dur):
        if caseid == stray:
            path, kind[caseid] = pool / "stray.vital", "over-long recording"
            stray_record_case(path)
        elif caseid in no_ecg:
            path, kind[caseid] = pool / f"ppg-only-{hours}h.vital", "no ECG"
            ppg_only_case(path, hours)
        else:
            path, kind[caseid] = pool / f"case-{hours}h.vital", "normal"
            make_case(path, hours)
        files[f"/1.0.1/{caseid}.vital"] = path.read_bytes()
        clinical.append(f"{caseid},{caseid},0,{hours * 3600:.0f},60,M")
        trks.append(f"{caseid},SNUADC/PLETH,p{caseid}")
        if caseid not in no_ecg or caseid % 2:  # odd no-ECG cases claim an ECG track their file lacks
            trks.append(f"{caseid},SNUADC/ECG_II,e{caseid}")
        u = rng.random()
        key = f"/1.0.1/{caseid}.vital"
        if u < 0.05:
            script[key], kind[caseid] = ["404"] * 100, kind[caseid] + ", HTTP 404"
        elif u < 0.15:
            script[key] = ["500"] * int(rng.integers(1, 3))
        elif u < 0.19:
            script[key], kind[caseid] = ["500"] * 50, kind[caseid] + ", 503 beyond the retry budget at first"
        elif u < 0.24:
            script[key] = ["truncate"]
        elif u < 0.27:
            script[key] = ["stall"]
    print(f"# {n} cases, {sum(dur):.0f} recorded hours, pool of {len(list(pool.iterdir()))} files "
          f"written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return files, script, "\n".join(clinical) + "\n", "\n".join(trks) + "\n", {"kind": kind, "hours": dict(zip(range(1, n + 1), dur))}


def recover_after_first_attempt(server: FaultyServer, script: dict, budget: int) -> None:
    """The '503 beyond the retry budget' cases answer 503 for one job attempt's worth of requests
    (the retry budget), then recover: what a flaky mirror does."""
    for key, steps in script.items():
        if steps == ["500"] * 50:
            server.script[key] = ["500"] * (budget + 1)


def rss_per_rule(workdir: Path) -> dict:
    """Peak RSS (MB) per rule from Snakemake's `benchmark:` files (max over jobs)."""
    out = {}
    for tsv in (workdir / "logs" / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(workdir / "logs" / "benchmarks").parts[0]
        with open(tsv) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                try:
                    out[rule] = max(out.get(rule, 0.0), float(row["max_rss"]))
                except ValueError:
                    pass
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--retries", type=int, default=3, help="Snakemake --retries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(REPO / "benchmarks" / "out" / "rehearsal"))
    a = p.parse_args()
    wd = Path(a.workdir)
    files, script, clinical, trks, truth = build_cases(a.cases, a.seed, wd.parent / "rehearsal-pool")
    files["/cases"], files["/trks"] = clinical.encode(), trks.encode()
    run = wd / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    (run / "config").mkdir(parents=True)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # The injected permanent faults (~5% 404 + ~4% files without ECG) are far above VitalDB's, so a
    # batch of 16 can pass the default max_failed_fraction (0.2) by chance; 0.4 keeps the guard on.
    download = {"timeout_s": 1.0, "retries": 2, "backoff_s": 0.1, "max_failed_fraction": 0.4}
    with FaultyServer(files, script, stall_s=2.5) as server:
        recover_after_first_attempt(server, script, download["retries"])
        cfg.update(source="vitaldb", vitaldb=dict(cfg["vitaldb"], api_url=server.url))
        cfg["cases"]["batch_size"] = a.batch_size
        cfg["download"].update(download)
        (run / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(run), "--cores",
               str(a.cores), "--retries", str(a.retries), "--keep-going", "results/vitaldb/windows/manifest.json"]
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    (run / "snakemake.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.exit(f"snakemake failed (exit {r.returncode}); see {run / 'snakemake.log'}")
    manifest = json.loads((run / "results" / "vitaldb" / "windows" / "manifest.json").read_text())
    table = [int(row["caseid"]) for row in csv.DictReader(open(run / "resources" / "vitaldb" / "cases.tsv"), delimiter="\t")]
    cases = manifest["cases"]
    kept = [c for c in table if cases.get(str(c), {}).get("kept", 0) > 0]
    def reason(c):  # what the cases share: no URL, no parenthesised detail
        return re.sub(r"GET \S+: ", "GET <url>: ", cases[str(c)]["skip_reason"]).split(" (")[0][:80]

    skipped = Counter(reason(c) for c in table if str(c) in cases and c not in kept)
    lost = [c for c in table if str(c) not in cases]
    hours_kept = sum(truth["hours"][c] for c in kept)
    hours_all = sum(truth["hours"][c] for c in table)
    per_hour_core_s = wall * a.cores / hours_all
    mean_hours = float(np.mean(list(truth["hours"].values())))
    attempts = Counter(line.split("Trying to restart job")[0] for line in (r.stdout + r.stderr).splitlines() if "Trying to restart" in line)
    report = {
        "cases": a.cases, "in_case_table": len(table), "not_in_table_no_ecg": a.cases - len(table), "kept": len(kept),
        "skipped_by_reason": dict(skipped), "lost": lost, "recorded_hours_in_table": hours_all, "recorded_hours_kept": hours_kept,
        "windows_kept": manifest["totals"]["kept"], "wall_s": wall, "cores": a.cores,
        "wall_s_per_recorded_hour_per_core": per_hour_core_s, "snakemake_job_restarts": sum(attempts.values()),
        "peak_rss_mb_per_rule": rss_per_rule(run),
        "extrapolation_6388_cases": {"mean_hours_per_case": mean_hours,
                                     "core_hours": per_hour_core_s * mean_hours * VITALDB_CASES / 3600},
        "requests": sum(server.requests.values()), "run": str(run),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
