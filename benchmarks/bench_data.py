"""Data-stage benchmark (issue: data stage). Writes figures to stdout as JSON lines and Markdown.

1. One 4-hour two-track 500 Hz case (written with 1 s records, like VitalDB's files):
   our read + resample + window + QC vs the vitaldb `to_numpy(interval=1/125)` path,
   seconds per case, multiple of real time per core, peak RSS (each in a fresh process that imports
   what a job imports, given the validated config sections as a job gets them); and
   vitaldb's parse alone (`parse`) and our reader with record placement alone (`read`).
2. Peak RSS of ours on a 12-hour case.
   Peak RSS of ours on 24-hour cases (signals.max_case_hours), and on a packed file whose stray
   record 72 h later makes each track one 0.5 GB record: refused at resample, validated at download
   (and vitaldb's parse of it, for scale).
3. `snakemake -n` wall time over a synthetic 6,388-case table, and the number of jobs.

    python benchmarks/bench_data.py [--workdir benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
mode, path, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])  # validated config sections, as a job gets them
tracks = [cfg["local"]["tracks"]["ppg"], cfg["local"]["tracks"]["ecg"]]
params = {"source": "local", "local": {"tracks": cfg["local"]["tracks"]}, "signals": cfg["signals"]}
from pipeline.errors import CaseError
from pipeline.data.resample import resample_case
from pipeline.data.sources import get_source
from pipeline.data.windows import window_case
import scipy.fft, scipy.ndimage  # imported inside pipeline.data.quality at first use: imports are not timed
if mode in ("vitaldb", "parse"):
    import vitaldb  # only on its own paths: it imports pandas, which a pipeline job does not
t0 = time.perf_counter()
c0 = time.process_time()
try:
    if mode == "ours":
        signals, sat, attrs = resample_case(path, params)
        win, starts, hr, stats = window_case(signals, sat, 125, cfg["window"], cfg["quality"])
        extra = {"windows_cut": stats["cut"], "windows_kept": stats["kept"]}
    elif mode == "read":  # our reader and record placement alone (pipeline/data/sources/_vitalfile.py)
        extra = {"samples": [len(t.values) for t in get_source(params).read_tracks(path, 24 * 3600.0)]}
    elif mode == "validate":  # the download stage's check of a file
        get_source(params).validate(path)
        extra = {}
    elif mode == "vitaldb":
        vf = vitaldb.VitalFile(path, tracks)
        x = vf.to_numpy(tracks, 1 / 125)
        extra = {"samples": int(x.shape[0])}
    else:  # "parse": vitaldb's parse alone
        vf = vitaldb.VitalFile(path, tracks)
        extra = {"records": sum(len(vf.trks[t].recs) for t in tracks)}
except CaseError as e:
    extra = {"refused": str(e)}
wall = time.perf_counter() - t0
cpu = time.process_time() - c0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the parent
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"mode": mode, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": int(hwm) / 1024, **extra}))
"""


# Resolution of the synthetic ADC (16 bits over +-5 mV for ECG, over 0-200 for PPG). Real ADC
# values repeat and compress; full-precision float noise does not (a 4 h case is then 51 MB, while
# VitalDB averages ~15 MB per 3.2 h case with all its tracks). --no-quantize measures that worst case.
ADC_STEP = {"SNUADC/PLETH": 200 / 2**16, "SNUADC/ECG_II": 10 / 2**16}


def make_case(path: Path, hours: float, quantize: bool = True, packed: bool = True) -> None:
    import numpy as np

    from pipeline.data.sources.demo import synth_signals, write_vital

    if path.exists():
        return
    ppg, ecg = synth_signals(75.0, hours * 3600, np.random.default_rng(1))
    if quantize:
        ppg = np.round(ppg / ADC_STEP["SNUADC/PLETH"]) * ADC_STEP["SNUADC/PLETH"]
        ecg = np.round(ecg / ADC_STEP["SNUADC/ECG_II"]) * ADC_STEP["SNUADC/ECG_II"]
    write_vital(path, {"SNUADC/PLETH": ppg, "SNUADC/ECG_II": ecg}, 500, 4102444800.0, packed=packed)


def make_stray_case(path: Path) -> None:
    """61 s at 500 Hz and one more second 72 h later, packed: each track one NaN-filled record of
    130 M samples (the API's format), 0.5 GB per track once inflated."""
    import numpy as np
    import vitaldb

    from pipeline.io import atomic_path

    if path.exists():
        return
    rng = np.random.default_rng(2)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 61
    for name in ADC_STEP:
        recs = [{"dt": vf.dtstart + k, "val": rng.normal(size=500).astype(np.float32)} for k in range(61)]
        recs.append({"dt": vf.dtstart + 72 * 3600 - 1, "val": rng.normal(size=500).astype(np.float32)})
        vf.add_track(name, recs, srate=500)
    with atomic_path(path) as tmp:
        assert vf.to_vital(str(tmp), compresslevel=1, packed=True)


def sections() -> str:
    """The config sections a resample/windows job gets as params, validated once here: a job never
    loads the config itself (validation imports torch for the model checks: ~300 MB of RSS)."""
    from pipeline.config import load_config
    from pipeline.evaluation.checks import ALL_CHECKS

    cfg = load_config(REPO / "config" / "config.yaml", ALL_CHECKS)
    return json.dumps({k: cfg[k] for k in ("local", "signals", "window", "quality")})


def child(mode: str, path: Path, threads: int = 1) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), sections()], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def local_rules() -> set[str]:
    """Rules with `localrule: True` in workflow/rules/*.smk, plus `all`: they run where Snakemake runs."""
    import re

    names = {"all"}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=(?:rule|checkpoint) )", smk.read_text(), flags=re.M):
            m = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if m and re.search(r"^\s+localrule: True", block, re.M):
                names.add(m.group(1))
    return names


def dry_run(workdir: Path, n_cases: int = 6388, batch_size: int = 64) -> dict:
    import yaml

    wd = workdir / "dryrun"
    (wd / "config").mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["source"] = "vitaldb"
    cfg["cases"]["batch_size"] = batch_size
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    table = wd / "resources" / "vitaldb" / "cases.tsv"
    table.parent.mkdir(parents=True, exist_ok=True)
    lines = ["caseid\tsubjectid\tname\tsplit\tbatch\thas_ppg\thas_ecg\tduration_s\tage\tsex\thr_bpm"]
    for c in range(1, n_cases + 1):
        lines.append(f"{c}\t{c}\t{c}\ttrain\t{c // batch_size}\t1\t1\t11000\t60\tM\t")
    table.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(wd), "-n", "--quiet", "rules"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    jobs = {}
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    # the same DAG through the SLURM profile: what would be submitted to the cluster
    t0 = time.perf_counter()
    prof = subprocess.run(cmd[:-3] + ["-n", "--profile", str(REPO / "workflow" / "profiles" / "slurm")],
                          capture_output=True, text=True, env=env, check=True)
    wall_profile = time.perf_counter() - t0
    lines = (prof.stdout + prof.stderr).splitlines()
    groups = sum("Group job" in line for line in lines)
    ungrouped = [line.split()[1].rstrip(":") for line in lines if line.startswith("rule ")]
    single = sorted(r for r in ungrouped if r not in local_rules())
    return {"cases": n_cases, "batch_size": batch_size, "dry_run_s": wall, "jobs": jobs, "slurm_profile_dry_run_s": wall_profile,
            "cluster_jobs": groups + len(single), "cluster_group_jobs": groups, "cluster_single_jobs": single,
            "local_jobs": len(ungrouped) - len(single)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default=str(REPO / "benchmarks" / "out"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-quantize", action="store_true", help="full-precision float noise (worst-case compression)")
    p.add_argument("--only-dry-run", action="store_true")
    a = p.parse_args()
    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    results = {}
    if a.only_dry_run:
        print(json.dumps(dry_run(wd), indent=2))
        return
    # packed = one record per track, as the API serves /1.0.1/<caseid>.vital;
    # unpacked = 1 s records, as in the PhysioNet release's original files.
    suffix = "-float" if a.no_quantize else ""
    cases = {"4h_packed": (4, True), "4h_unpacked": (4, False), "12h_packed": (12, True), "24h_packed": (24, True),
             "24h_unpacked": (24, False)}
    paths = {}
    for name, (hours, packed) in cases.items():
        paths[name] = wd / f"case-{name}{suffix}.vital"
        t0 = time.perf_counter()
        make_case(paths[name], hours, quantize=not a.no_quantize, packed=packed)
        print(f"# {paths[name].name}: {paths[name].stat().st_size / 1e6:.0f} MB ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        results[f"file_mb_{name}"] = round(paths[name].stat().st_size / 1e6, 1)
    for name in ("4h_packed", "4h_unpacked"):
        for mode in ("ours", "vitaldb", "parse", "read"):
            runs = [child(mode, paths[name]) for _ in range(a.repeat)]
            best = min(runs, key=lambda r: r["wall_s"])
            best["realtime_x_per_core"] = 4 * 3600 / best["cpu_s"]
            results[f"{name}_{mode}"] = best
        # the target: ours at least as fast as vitaldb's to_numpy (>= 1.0)
        results[f"{name}_speed_ours_vs_vitaldb"] = round(results[f"{name}_vitaldb"]["wall_s"] / results[f"{name}_ours"]["wall_s"], 2)
    for name in ("12h_packed", "24h_packed", "24h_unpacked"):
        results[f"{name}_ours"] = child("ours", paths[name])
    # peak RSS bound (<= 1 GB for any input): the stray-record case, at resample (refused) and at download
    stray = wd / "case-stray-72h-packed.vital"
    make_stray_case(stray)
    results["file_mb_stray_72h_packed"] = round(stray.stat().st_size / 1e6, 1)
    for mode in ("ours", "validate", "parse"):
        results[f"stray_72h_packed_{mode}"] = child(mode, stray)
    results["dry_run"] = dry_run(wd)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
