"""The demo workflow through `windows`, run by Snakemake in a temporary directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def snakemake(workdir, *args, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def demo_dir(tmp_path, **edits):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["demo"].update(n_cases=10, duration_s=240)
    for section, value in edits.items():
        cfg[section] = {**cfg[section], **value} if isinstance(value, dict) else value
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def test_demo_runs_through_windows_and_records_faults(tmp_path):
    wd = demo_dir(tmp_path)
    r = snakemake(wd, "--cores", "2", "results/windows/manifest.json")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((wd / "results/windows/manifest.json").read_text())
    cases = m["cases"]
    assert "missing track SNUADC/ECG_II" in cases["7"]["skip_reason"]
    assert "truncated gzip" in cases["8"]["skip_reason"]
    for caseid, rule in {"2": "flat", "3": "clipping", "4": "nan", "5": "amplitude", "6": "heart_rate"}.items():
        rej = cases[caseid]["rejected"]
        assert rej[rule] > 0, (caseid, rej)
        assert sum(rej.values()) == rej[rule], (caseid, rej)  # only the deliberate fault
    for caseid in ("1", "9", "10"):
        assert cases[caseid]["kept"] == cases[caseid]["cut"] > 0
    totals = m["totals"]
    n = 0
    for split in ("train", "val", "test"):
        for shard in (wd / "results/windows" / split).glob("shard-*.h5"):
            with h5py.File(shard) as f:
                n += f["signals"].shape[0]
    assert n == totals["kept"] > 0
    assert (wd / "logs/windows").is_dir() and (wd / "resources/demo/vital/1.vital").is_file()

    # a second run has nothing to do
    r = snakemake(wd, "-n", "results/windows/manifest.json")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    wd = demo_dir(tmp_path, window={"stride": -5})
    r = snakemake(wd, "-n")
    assert r.returncode != 0
    assert "window.stride" in r.stdout + r.stderr
    assert not (wd / "resources").exists()
