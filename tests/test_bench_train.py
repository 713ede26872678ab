"""benchmarks/bench_train.py runs end to end (its CPU path; the CUDA path is the same code with
device="cuda") and reports what the issue asks for, as JSON on stdout."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_train_quick_on_cpu_reports_step_loader_and_comparison(tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--quick", "--device", "cpu", "--workdir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)  # stdout is the JSON alone (progress goes to stderr)
    assert res["device"] == "cpu" and res["quick"] and res["precision"] == "fp32"
    assert res["model"] == {"d_model": 192, "num_layers": 2, "patch_length": 64, "context_length": 1024,
                            "adaptive_patching_levels": 3, "channel_mixing": "mixer"}  # r1 geometry
    assert res["plain_h5py_windows_per_s"] > 0
    assert sorted(res["batches"], key=int) == ["16", "32"]
    for row in res["batches"].values():
        assert row["step"] > 0 and row["step_with_loader"] > 0 and row["step_with_loader_workers"] == 1
        assert sorted(row["loader"], key=int) == ["0", "1"] and all(v > 0 for v in row["loader"].values())
        assert isinstance(row["loader_keeps_up"], bool)
    c = res["comparison"]
    assert c["ours_windows_per_s"] > 0 and c["bare_windows_per_s"] > 0
    assert c["ratio"] == c["ours_windows_per_s"] / c["bare_windows_per_s"] and c["ratio_per_round"] == [c["ratio"]]


def test_ablation_cost_counts_the_planned_pretrainings_and_converts_a_speed_to_gpu_hours(tmp_path):
    """benchmarks/ablation_cost.py on the shipped VitalDB configs: the main run plus 6 training variants
    x 3 seeds less base at seed 0 (the main run's model; no_scale reuses base's encoders), 100 epochs each, FLOPs counted per model (the
    channel-independent variant's are fewer); with a measured speed (a bench_train JSON) the hours are
    the training-step equivalents over that speed."""
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"batches": {"128": {"step_with_loader": 50000.0}}}))
    cmd = [sys.executable, str(REPO / "benchmarks" / "ablation_cost.py"), "--bench-json", str(bench)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["pretrainings"] == 18 and set(res["epochs"]) == {100}
    assert "no_scale/seed1" not in res["runs"] and "base/seed0" not in res["runs"] and "base/seed1" in res["runs"]
    assert res["speed"]["windows_per_s"] == 50000.0 and res["speed"]["source"] == str(bench) and res["speed"]["measured"]
    assert abs(res["gpu_hours"] - res["training_step_equivalents"] / 50000 / 3600) < 0.01
    assert res["training_step_equivalents"] > 18 * 100 * res["train_windows_per_epoch"]  # plus the validation passes
    by_run = res["flops_per_training_window_by_run"]
    assert by_run["channel_independent/seed0"] < by_run["base/seed1"] == by_run["main"]
    r = subprocess.run(cmd[:2] + ["--configs", str(REPO / "config" / "vitaldb.yaml")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["pretrainings"] == 1 and not res["speed"]["measured"] and len(res["gpu_hours_estimate"]) == 3
    assert 1e8 < res["flops_per_training_window"] < 1e9  # r1 geometry: about 0.23 GFLOP forward + backward
    r = subprocess.run(cmd[:2] + ["--windows-per-s", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "must be a positive speed" in r.stderr  # never a silent fall back to the estimate
