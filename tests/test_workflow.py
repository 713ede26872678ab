"""The workflow as users run it: the demo end to end, reruns after config edits, lint and format."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import wfdb
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def snakemake(workdir, *args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def write_config(workdir: Path, small: bool = False, **edits) -> dict:
    """The default (demo) config in `workdir`; `small` = fewer, shorter cases and epochs, no ablations."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if small:
        cfg["demo"].update(n_cases=10, duration_s=240)
        cfg["train"].update(epochs=3)
        cfg["evaluate"].update(finetune_epochs=1)
        cfg["ablations"] = {"variants": {}}
    for section, value in edits.items():
        cfg[section] = {**cfg[section], **value} if isinstance(value, dict) else value
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def planned(workdir) -> dict:
    """{rule: jobs} that `snakemake -n` would run."""
    return planned_with(workdir)


def planned_with(workdir, *args) -> dict:
    """{rule: jobs} that `snakemake -n` would run with `args`."""
    r = snakemake(workdir, "-n", "--quiet", "rules", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    out = {}
    for line in (r.stdout + r.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            out[parts[0]] = int(parts[1])
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    write_config(wd)
    r = snakemake(wd, "--cores", "8", "--resources", "gpu=1")  # the README's command: jobs share the cores (model/cores.py)
    assert r.returncode == 0, r.stderr[-4000:]
    return wd


def test_demo_runs_end_to_end_and_records_faults(demo_run):
    wd = demo_run
    m = json.loads((wd / "results/demo/windows/manifest.json").read_text())
    cases = m["cases"]
    assert "missing track SNUADC/ECG_II" in cases["7"]["skip_reason"]
    assert "truncated gzip" in cases["8"]["skip_reason"]
    for caseid, rule in {"2": "flat", "3": "clipping", "4": "nan", "5": "amplitude", "6": "heart_rate"}.items():
        rej = cases[caseid]["rejected"]
        assert rej[rule] > 0 and sum(rej.values()) == rej[rule], (caseid, rej)  # only the deliberate fault
    from pipeline.data.sources.demo import demo_case

    demo = yaml.safe_load((wd / "config/config.yaml").read_text())["demo"]
    truth = {c: demo_case(demo, c).artefacts for c in range(9, demo["n_cases"] + 1)}  # the generator's motion artefacts
    clean = [c for c, a in truth.items() if not a]
    assert len(clean) >= 3
    for c in clean:  # no artefact: every window kept
        assert cases[str(c)]["kept"] == cases[str(c)]["cut"] > 0, (c, cases[str(c)]["rejected"])
    sqi = ("ppg_skewness", "ppg_template", "rate_agreement")
    long = [c for c, a in truth.items() if any(b - s >= 2 * 8.192 for s, b in a)]  # an artefact spanning a whole window
    hit = [c for c in long if sum(cases[str(c)]["failed"][r] for r in sqi) > 0]
    assert long and len(hit) >= 0.75 * len(long), (hit, long)  # the indexes miss some artefacts (BENCHMARKS.md: sensitivity)
    n = 0
    for shard in (wd / "results/demo/windows").glob("*/shard-*.h5"):
        with h5py.File(shard) as f:
            n += f["signals"].shape[0]
    assert n == m["totals"]["kept"] > 0
    encoder = wd / "results/demo/export/encoder"
    assert {"config.json", "model.safetensors", "preprocessing.json", "README.md"} <= {p.name for p in encoder.iterdir()}
    log = (wd / "logs/demo/pretrain.log").read_text()
    assert "no GPU available: training on CPU" in log
    for rule_log in ("logs/demo/case_table.log", "logs/demo/windows/manifest.log", "logs/demo/export.log"):
        assert (wd / rule_log).exists(), rule_log


def test_rerun_only_what_a_config_edit_touches(demo_run):
    wd = demo_run
    assert planned(wd) == {}  # nothing edited: nothing reruns

    write_config(wd, train={"lr": 5e-4})  # the ablation variants inherit train.*
    assert set(planned(wd)) == {"pretrain", "export", "evaluate", "all"} | ABLATION_RULES

    write_config(wd, window={"stride": 512})
    jobs = planned(wd)
    assert {"windows", "manifest", "qc", "pretrain", "export", "evaluate"} <= set(jobs)
    assert not {"download", "resample", "case_table"} & set(jobs)

    write_config(wd)
    assert planned(wd) == {}


ABLATION_RULES = {"ablation_pretrain", "ablation_export", "ablation_evaluate", "ablation_summary"}


def test_ablations_share_the_data_stages_and_summarize(demo_run):
    wd = demo_run
    rows = list(csv.DictReader((wd / "results/demo/ablations/summary.tsv").open(), delimiter="\t"))
    assert [(r["variant"], r["seed"]) for r in rows] == [("cross_signal", "0"), ("no_scale", "0")]
    # no_scale changes only the probes: it is evaluated on cross_signal's encoder, never trained again
    assert rows[0]["best_val_loss"] == rows[1]["best_val_loss"] and not (wd / "results/demo/ablations/no_scale/seed0/pretrain").exists()
    shared = json.loads((wd / "results/demo/ablations/no_scale/seed0/eval/metrics.json").read_text())
    assert shared["model"] == "results/demo/ablations/cross_signal/seed0/pretrain/model.pt" and shared["scale_features"] is False

    cfg = write_config(wd)
    # another seed: that seed's runs and the summary, nothing upstream
    assert planned(wd) == {}
    write_config(wd, ablations=dict(cfg["ablations"], seeds=[0, 1]))
    assert planned(wd) == {"ablation_pretrain": 1, "ablation_export": 1, "ablation_evaluate": 2, "ablation_summary": 1, "all": 1}
    # another variant: its run only
    write_config(wd, ablations=dict(cfg["ablations"], variants={**cfg["ablations"]["variants"], "stft_0": {"train": {"stft_weight": 0.0}}}))
    assert planned(wd) == {"ablation_pretrain": 1, "ablation_export": 1, "ablation_evaluate": 1, "ablation_summary": 1, "all": 1}
    write_config(wd)
    assert planned(wd) == {}


def test_two_seeds_of_a_variant_run_on_one_set_of_shards(tmp_path):
    """Seeds of a variant are separate runs on the main run's shards (two variants with their own
    trainings run in the demo, test_ablations_share_the_data_stages_and_summarize). `base` at seed 0
    is the main config, so it is evaluated on the main run's encoder, not trained a second time (it
    was, to the bit the same run)."""
    ablations = {"seeds": [0, 1], "variants": {"base": {}}}
    write_config(tmp_path, small=True, ablations=ablations, train={"epochs": 1})
    r = snakemake(tmp_path, "results/demo/ablations/summary.tsv", "results/demo/pretrain/summary.json", "--cores", "2", "--resources", "gpu=1")
    assert r.returncode == 0, r.stderr[-4000:]
    logs = tmp_path / "logs" / "demo"
    assert sorted(p.relative_to(logs).as_posix() for p in logs.glob("ablations/*/seed*/evaluate.log")) == [
        "ablations/base/seed0/evaluate.log", "ablations/base/seed1/evaluate.log"]
    for step in ("pretrain", "export"):
        assert [p.relative_to(logs).as_posix() for p in logs.glob(f"ablations/*/seed*/{step}.log")] == [f"ablations/base/seed1/{step}.log"]
    batches = len(list((tmp_path / "results/demo/windows/stats").glob("batch-*.json")))
    assert len(list(logs.glob("windows/batch-*.log"))) == len(list(logs.glob("resample/batch-*.log"))) == batches > 0
    assert len(list(logs.glob("pretrain.log"))) == 1
    rows = sorted(csv.DictReader((tmp_path / "results/demo/ablations/summary.tsv").open(), delimiter="\t"), key=lambda r: r["seed"])
    assert [(r["variant"], r["seed"]) for r in rows] == [("base", "0"), ("base", "1")]
    assert rows[0]["best_val_loss"] != rows[1]["best_val_loss"]  # two different trainings
    main = json.loads((tmp_path / "results/demo/pretrain/summary.json").read_text())
    assert float(rows[0]["best_val_loss"]) == pytest.approx(main["best_val"], rel=1e-5)  # seed 0's row is the main training's
    seed0 = json.loads((tmp_path / "results/demo/ablations/base/seed0/eval/metrics.json").read_text())
    assert seed0["model"] == "results/demo/pretrain/model.pt" and seed0["split"] == "val"  # relative to the workdir
    assert not (tmp_path / "results/demo/ablations/base/seed0/pretrain").exists()
    assert (tmp_path / "results/demo/ablations/base/seed1/export/encoder/model.safetensors").stat().st_size > 0
    assert (tmp_path / "results/demo/ablations/summary.png").exists()


def test_the_demo_evaluation_is_complete_and_the_reconstruction_beats_the_fills(demo_run):
    """What the demo's own evaluation must have; whether SSL helps is the held-out effect test's
    question (below): the demo's 9 test subjects cannot settle it for any seed."""
    m = json.loads((demo_run / "results/demo/eval/metrics.json").read_text())
    tasks = m["tasks"]
    assert m["split"] == "test" and all(r["split"] == "test" for r in tasks.values())
    for task in ("hypotension_5min", "hypotension_10min", "hypotension_15min", "map_mmHg", "heart_rate_ppg", "age"):
        assert "results" in tasks[task], (task, tasks[task].get("skipped"))
    for task in ("hypotension_5min", "hypotension_15min"):
        r = tasks[task]
        assert r["positives"]["test"]["subjects"] >= 3 and "current_map" in r["results"], task
        assert r["results"]["prevalence"]["auroc"] == 0.5 and r["results"]["ssl"]["brier"] < r["results"]["prevalence"]["brier"] + 0.05
    # the onset protocol has one positive per event: the demo's few events give it too few subjects, and it says so
    onset = tasks["hypotension_onset_5min"]
    assert sum(p["windows"] for p in onset["positives"].values()) >= 3 and "too few subjects per class" in onset.get("skipped", "")
    rec = m["reconstruction"]
    assert rec["random_patches"]["model"] < rec["random_patches"]["linear_interpolation"]
    assert rec["ppg_from_ecg"]["model"] < rec["ppg_from_ecg"]["window_mean"]  # the default model mixes the channels
    summary = list(csv.DictReader((demo_run / "results/demo/ablations/summary.tsv").open(), delimiter="\t"))
    assert {r["variant"] for r in summary} == set(yaml.safe_load((REPO / "config/config.yaml").read_text())["ablations"]["variants"])
    for run in summary:  # scored on validation: never on the locked test split
        metrics = json.loads((demo_run / f"results/demo/ablations/{run['variant']}/seed0/eval/metrics.json").read_text())
        assert metrics["split"] == "val"


@pytest.fixture(scope="module")
def heldout_effect(demo_run):
    """The demo's SSL encoder and 3 random initialisations embedded on a held-out set of 240 new
    subjects made by the demo generator: {set: features}, MAP, subjects, train mask (half the subjects)."""
    import torch

    from pipeline.model import backbones
    from pipeline.model.embedding import embed_windows
    from pipeline.model.encoder import Encoder, build_mixer
    from pipeline.model.export import load_encoder
    from tests.helpers import heldout_windows

    x, y, g = heldout_windows(n_subjects=240, per_subject=4)
    cfg = yaml.safe_load((demo_run / "config/config.yaml").read_text())
    encoders = {"ssl": load_encoder(demo_run / "results/demo/export/encoder")}
    for i in range(RANDOM_INITS):
        torch.manual_seed(1000 + i)
        b = backbones.build(dict(cfg["model"], pretrained=None))
        encoders[f"random{i}"] = Encoder(b, build_mixer(cfg["model"], b.d_model))
    feats = {n: embed_windows(e, x, scale=cfg["evaluate"]["scale_features"]).reshape(len(x), -1) for n, e in encoders.items()}
    train = g < np.median(np.unique(g))
    return feats, y, g, train


RANDOM_INITS = 3
EFFECT_MARGIN_MMHG = 1.0  # preset: SSL's MAP error at least this much below the mean of the random initialisations


def _ssl_minus_random(draws, metric):
    """Per bootstrap draw: SSL's metric minus the mean of the random initialisations'."""
    return np.array([d[metric] - np.mean([draws[f"random{i}"][k][metric] for i in range(RANDOM_INITS)])
                     for k, d in enumerate(draws["ssl"])])


def test_ssl_beats_random_weights_on_a_large_held_out_set_for_every_bootstrap_seed(heldout_effect):
    """The effect test: 240 new subjects (120 scored), SSL against the mean of 3 random
    initialisations, MAP from the waveforms; the whole 95% interval below -margin for 5 bootstrap seeds."""
    from pipeline.evaluation.probes import bootstrap_draws, fit_probe, predict

    feats, y, g, train = heldout_effect
    preds = {n: predict(fit_probe(f[train], y[train], g[train], "regression"), f[~train], "regression") for n, f in feats.items()}
    for seed in range(5):
        diff = _ssl_minus_random(bootstrap_draws(y[~train], preds, g[~train], "regression", seed), "mae")
        assert np.percentile(diff, 97.5) < -EFFECT_MARGIN_MMHG, (seed, np.percentile(diff, [2.5, 50, 97.5]))


def test_null_control_labels_unrelated_to_the_signals_show_no_effect(heldout_effect):
    """Labels drawn independently of the signals: the same probes and intervals must not report SSL
    above random weights. A 95% interval excludes 0 by chance 5% of the time, so of 5 label seeds at
    most one may (two or more: p < 0.03 under the null)."""
    from pipeline.evaluation.probes import bootstrap_draws, fit_probe, predict

    feats, _, g, train = heldout_effect
    excluded = []
    for seed in range(5):
        y = (np.random.default_rng(100 + seed).uniform(size=len(g)) < 0.3).astype(float)
        preds = {n: predict(fit_probe(f[train], y[train], g[train], "classification", seed), f[~train], "classification")
                 for n, f in feats.items()}
        diff = _ssl_minus_random(bootstrap_draws(y[~train], preds, g[~train], "classification", seed), "auroc")
        lo, hi = np.percentile(diff, [2.5, 97.5])
        excluded.append(not lo <= 0 <= hi)
        assert abs(np.median(diff)) < 0.1, (seed, lo, hi)
    assert sum(excluded) <= 1, excluded


def test_editing_a_label_setting_reruns_labels_and_evaluations_only(demo_run):
    wd = demo_run
    cfg = write_config(wd, labels={"hypotension_mmHg": 60})
    assert set(planned(wd)) == {"labels", "evaluate", "ablation_evaluate", "ablation_summary", "all"}
    write_config(wd)
    assert planned(wd) == {}
    assert cfg["labels"]["hypotension_mmHg"] == 60


def test_report_has_every_section(demo_run):
    r = snakemake(demo_run, "--report", "results/report.html")
    assert r.returncode == 0, r.stderr[-2000:]
    html = (demo_run / "results/report.html").read_text()
    for needle in ("Data QC", "Pretraining", "Evaluation", "qc.png", "qc.html", "qc_gallery.png", "loss.png", "reconstruction.png",
                   "probes.png", "probes.html", "roc.png", "label_efficiency.png", "summary.png", "Ablations", "first quality rule", "paired difference in the", "had to fill in",
                   "Did pretraining help?", "SSL [95% CI]"):  # the landing page: the evaluation's headline
        assert needle in html, needle


def test_bad_config_fails_before_any_job(tmp_path):
    write_config(tmp_path, window={"stride": -5})
    r = snakemake(tmp_path, "-n")
    assert r.returncode != 0 and "window.stride" in r.stdout + r.stderr
    assert not (tmp_path / "resources").exists()


def test_lint_leaves_only_the_documented_warning():
    r = snakemake(REPO, "--lint")
    titles = [line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip().startswith("* ")]
    assert titles and set(titles) == {"* Specify a conda environment or container for each rule.:"}, titles
    for smk in ("data.smk", "train.smk"):
        assert "Lint left on purpose" in (REPO / "workflow" / "rules" / smk).read_text()


def test_snakefmt_check_passes():
    r = subprocess.run([str(Path(sys.executable).parent / "snakefmt"), "--check", str(REPO / "workflow")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_config_readme_documents_every_key():
    from pipeline.config import render_docs

    assert (REPO / "config" / "README.md").read_text() == render_docs(), "run: python -m pipeline config-docs > config/README.md"


def test_wfdb_source_through_the_workflow(tmp_path):
    """`--config source=wfdb wfdb='{root: ...}'`: shards and a manifest with the skipped record's reason."""
    from tests.test_wfdb import build_root

    build_root(tmp_path / "mimic")
    write_config(tmp_path)
    r = snakemake(tmp_path, "--cores", "2", "results/wfdb/windows/qc.png", "--config", "source=wfdb",
                  f"wfdb={{root: {tmp_path / 'mimic'}}}")
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads((tmp_path / "results/wfdb/windows/manifest.json").read_text())
    reasons = {c: v.get("skip_reason", "") for c, v in m["cases"].items()}
    assert any("missing track PLETH" in s for s in reasons.values()), reasons
    assert m["totals"]["kept"] > 0 and m["totals"]["cases_used"] >= 2
    shard = next((tmp_path / "results/wfdb/windows").glob("*/shard-*.h5"))
    with h5py.File(shard) as f:
        assert list(f.attrs["tracks"]) == ["PLETH", "II"]
    assert (tmp_path / "resources/wfdb/cases").is_dir() and not list((tmp_path / "resources/wfdb/cases").glob("*.vital"))


def test_wfdb_numerics_give_labels_and_a_scored_hypotension_task_through_the_workflow(tmp_path):
    """MIMIC layout with a numerics record `<record>n` beside each waveform record: the workflow labels
    the windows from ABPMean/ABPSys/ABPDias (config/mimic3.yaml's label tracks) and the evaluation
    scores hypotension 5 min ahead and MAP on the test split (not skipped: 14 subjects, 6 train and 5
    test, each with an event at 800-950 s, so both classes in every subject)."""
    from pipeline.data.labels import read_labels
    from tests.test_wfdb import synth, write_numerics

    root = tmp_path / "mimic"
    rng = np.random.default_rng(3)
    seconds, (hypo_at, hypo_s) = 1500, (800, 150)
    records = []
    for subject in range(100, 114):
        rel = f"p00/p{subject:06d}/p{subject:06d}-2150-01-01-10-00"
        folder = root / Path(rel).parent
        folder.mkdir(parents=True)
        wfdb.wrsamp(Path(rel).name, fs=125, units=["NU", "mV"], sig_name=["PLETH", "II"], fmt=["16", "16"],
                    p_signal=synth(["PLETH", "II"], seconds, 125, rng), write_dir=str(folder))
        m = np.full(seconds, 80.0) + rng.normal(0, 1, seconds)
        m[hypo_at : hypo_at + hypo_s] = 55.0
        write_numerics(root, rel, {"ABPMean": m, "ABPSys": m + 35, "ABPDias": m - 15})
        (folder / "RECORDS").write_text(f"{Path(rel).name}\n{Path(rel).name}n\n")
        records.append(f"{Path(rel).parent}/")
    (root / "RECORDS").write_text("\n".join(records) + "\n")
    labels = yaml.safe_load((REPO / "config" / "mimic3.yaml").read_text())["labels"]
    write_config(tmp_path, small=True, labels=labels, train={"epochs": 1},
                 evaluate={"finetune_epochs": 0, "label_efficiency": False, "baselines": False})
    r = snakemake(tmp_path, "--cores", "2", "results/wfdb/eval/metrics.json", "--config", "source=wfdb", f"wfdb={{root: {root}}}")
    assert r.returncode == 0, r.stderr[-4000:]
    lab = read_labels(sorted((tmp_path / "results/wfdb/labels").glob("batch-*.tsv")))
    maps = np.array([v["map_mmHg"] for v in lab.values()])
    assert len(lab) > 14 * 100 and np.isfinite(maps).all() and abs(np.median(maps) - 80) < 1.0
    ahead = np.array([v["hypotension_5min"] for v in lab.values()])
    assert (ahead == 1).sum() > 100 and (ahead == 0).sum() > 100
    m = json.loads((tmp_path / "results/wfdb/eval/metrics.json").read_text())
    for task in ("hypotension_5min", "map_mmHg"):
        block = m["tasks"][task]
        assert "skipped" not in block and block["split"] == "test" and block["n_test_subjects"] == 5, (task, block.get("skipped"))
    assert "ssl" in m["tasks"]["hypotension_5min"]["results"] and "current_map" in m["tasks"]["hypotension_5min"]["results"]


def test_pretrained_weights_are_fetched_by_a_local_rule_and_fail_once_offline(tmp_path):
    """A hub id: the `pretrained` rule (local) fetches it; the GPU job only reads the folder. With no
    network and no cache it fails in that rule, with the message that says how to fix it."""
    write_config(tmp_path, model={"pretrained": "ibm-granite/granite-timeseries-ttm-r1", "revision": "1024_96_v1",
                                  "d_model": 192, "ttm": {"adaptive_patching_levels": 3}},
                 ablations={"seeds": [0], "variants": {"r1": {}, "scratch": {"model": {"pretrained": None, "revision": None}}}})
    jobs = planned(tmp_path)
    # one fetch for main and r1; r1 at seed 0 is the main run's model (evaluated on its encoder), scratch trains
    assert jobs["pretrained"] == 1 and jobs["pretrain"] == 1 and jobs["ablation_pretrain"] == 1
    target = "resources/pretrained/ibm-granite--granite-timeseries-ttm-r1@1024_96_v1"
    env_home = tmp_path / "empty-hf-home"
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path),
                        "--cores", "1", target], capture_output=True, text=True,
                       env=dict(os.environ, HF_HOME=str(env_home), HF_HUB_OFFLINE="1",
                                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert r.returncode != 0
    log = (tmp_path / "logs/pretrained/ibm-granite--granite-timeseries-ttm-r1@1024_96_v1.log").read_text()
    assert "To fix" in log and "huggingface-cli download" in log
    assert not (tmp_path / target).exists()


def test_tspulse_backbone_end_to_end(tmp_path):
    """`--configfile config/tspulse-demo.yaml`: the demo with a tiny TSPulse; the export says so."""
    write_config(tmp_path, small=True)  # fewer cases and epochs; the TSPulse file is layered over it, both named
    (tmp_path / "config" / "tspulse-demo.yaml").write_text((REPO / "config" / "tspulse-demo.yaml").read_text())
    r = snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1", "--configfile", str(tmp_path / "config/config.yaml"),
                  str(tmp_path / "config/tspulse-demo.yaml"))
    assert r.returncode == 0, r.stderr[-4000:]
    exported = json.loads((tmp_path / "results/demo/export/encoder/config.json").read_text())
    assert exported["model_type"] == "tspulse"
    assert json.loads((tmp_path / "results/demo/export/encoder/preprocessing.json").read_text())["backbone"] == "tspulse"
    m = json.loads((tmp_path / "results/demo/eval/metrics.json").read_text())
    assert "results" in m["tasks"]["map_mmHg"]  # the small demo's cases are too short for the hypotension horizons
    assert m["reconstruction"]["random_patches"]["model"] < m["reconstruction"]["random_patches"]["linear_interpolation"]


def test_a_transient_download_fault_fails_the_job_and_a_rerun_completes_the_manifest(tmp_path):
    """A loopback VitalDB answers 503 for one case beyond the retry budget: the run fails naming it;
    the server recovers; the rerun fetches that case only, and the manifest has it."""
    import numpy as np

    from pipeline.data.sources.demo import synth_signals, write_vital
    from tests.httpserver import FaultyServer

    files = {}
    for caseid in (1, 2, 3):
        ppg, ecg = synth_signals(60.0 + 10 * caseid, 90.0, np.random.default_rng(caseid))
        write_vital(tmp_path / "src.vital", {"SNUADC/PLETH": ppg, "SNUADC/ECG_II": ecg}, 500, 4102444800.0)
        files[f"/1.0.1/{caseid}.vital"] = (tmp_path / "src.vital").read_bytes()
    files["/cases"] = b"caseid,subjectid,casestart,caseend\n1,1,0,90\n2,2,0,90\n3,3,0,90\n"
    files["/trks"] = b"caseid,tname\n" + b"".join(f"{c},SNUADC/PLETH\n{c},SNUADC/ECG_II\n".encode() for c in (1, 2, 3))
    with FaultyServer(files, {"/1.0.1/2.vital": ["500"] * 2}) as srv:  # 1 + 1 retry: both 503
        write_config(tmp_path, source="vitaldb", vitaldb={"api_url": srv.url},
                     download={"retries": 1, "backoff_s": 0.01, "timeout_s": 5})
        first = snakemake(tmp_path, "--cores", "1", "--retries", "0", "results/vitaldb/windows/manifest.json")  # the profile retries
        assert first.returncode != 0 and "case 2" in first.stdout + first.stderr
        assert dict(srv.requests)["/1.0.1/1.vital"] == 1 and dict(srv.requests)["/1.0.1/3.vital"] == 1
        second = snakemake(tmp_path, "--cores", "1", "results/vitaldb/windows/manifest.json")
        assert second.returncode == 0, second.stderr[-3000:]
        requests = dict(srv.requests)
    assert requests["/1.0.1/2.vital"] == 3 and requests["/1.0.1/1.vital"] == requests["/1.0.1/3.vital"] == 1
    m = json.loads((tmp_path / "results/vitaldb/windows/manifest.json").read_text())
    assert m["cases"]["2"]["kept"] > 0 and m["totals"]["cases_used"] == 3


# ----------------------------------------------------------------------------- issue 20: the run you asked for
def planned_pretrainings(workdir: Path, *configfiles: str) -> list[int]:
    """train.epochs of every pretraining (main and ablation runs) that `snakemake -n -p` plans with
    exactly these config files (paths relative to `workdir`, where the command runs)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n", "-p", "--configfile", *configfiles]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    assert r.returncode == 0, r.stderr[-3000:]
    epochs = []
    for line in r.stdout.splitlines():
        if "-m pipeline pretrain --params" in line:
            params = line.split("--params ", 1)[1].split(" --manifest", 1)[0]
            epochs.append(json.loads(params.strip("'"))["train"]["epochs"])
    return sorted(epochs)


@pytest.mark.parametrize("files, epochs", [
    (["config/config.yaml"], [2, 6]),  # the demo: one 2-epoch training for its two variants (no_scale shares it), its 6-epoch run
    (["config/vitaldb.yaml"], [100]),  # VitalDB trains one model
    # 6 variants x 3 seeds, named on purpose; base at seed 0 is the main run's model, trained once
    (["config/vitaldb.yaml", "config/vitaldb-ablations.yaml"], [100] * 18),
    (["config/config.yaml", "config/tspulse-demo.yaml"], [6]),  # enabled: false switches the demo's variants off
    (["config/mimic3.yaml"], [100]),  # MIMIC-III trains one model
])
def test_each_shipped_config_plans_exactly_the_runs_it_says(tmp_path, files, epochs):
    """No file leaks into another: the workflow reads only the files named (before, vitaldb.yaml was
    layered over the demo config: 21 ablation runs, one of them at the demo's 4 epochs)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "mimic").mkdir()
    for f in files:  # a root that exists (checked when the workflow loads)
        (tmp_path / f).write_text((tmp_path / f).read_text().replace("root: null ", f"root: {tmp_path / 'mimic'} "))
    assert planned_pretrainings(tmp_path, *files) == epochs


def test_switching_the_source_never_reuses_the_other_sources_results(demo_run, tmp_path):
    """After the demo: `--config source=local local={root: ...}` plans the local case table and
    everything after it (it said "Nothing to be done" when results/ were not keyed by source), runs
    the local data end to end, and leaves the demo's results as they were."""
    import vitaldb

    from pipeline.data.sources.demo import synth_signals

    root = tmp_path / "release"
    (root / "vital_files").mkdir(parents=True)
    clinical, trks = ["caseid,subjectid,casestart,caseend,age,sex"], ["caseid,tname,tid"]
    for caseid in (1, 2, 3):
        ppg, ecg = synth_signals(60.0 + 10 * caseid, 120.0, np.random.default_rng(caseid))
        vf = vitaldb.VitalFile()
        vf.dgmt, vf.dtstart, vf.dtend = 0, 1.6e9, 1.6e9 + 120
        vf.add_track("SNUADC/PLETH", [{"dt": 1.6e9, "val": ppg.astype(np.float32)}], srate=500)
        vf.add_track("SNUADC/ECG_II", [{"dt": 1.6e9, "val": ecg.astype(np.float32)}], srate=500)
        assert vf.to_vital(str(root / "vital_files" / f"{caseid:04d}.vital"))
        clinical.append(f"{caseid},{caseid},0,120,50,F")
        trks += [f"{caseid},SNUADC/PLETH,x", f"{caseid},SNUADC/ECG_II,x"]
    (root / "clinical_data.csv").write_text("\n".join(clinical) + "\n")
    (root / "track_names.csv").write_text("\n".join(trks) + "\n")
    demo_manifest = (demo_run / "results/demo/windows/manifest.json").read_bytes()
    local = ["--config", "source=local", f"local={{root: {root}}}"]
    jobs = planned_with(demo_run, *local)
    assert jobs.get("case_table") == 1 and {"pretrain", "export", "evaluate"} <= set(jobs), jobs
    r = snakemake(demo_run, "--cores", "2", "results/local/windows/manifest.json", *local)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((demo_run / "results/local/windows/manifest.json").read_text())
    assert set(m["cases"]) == {"1", "2", "3"} and m["totals"]["kept"] > 0
    assert (demo_run / "results/demo/windows/manifest.json").read_bytes() == demo_manifest


def test_only_rules_a_retry_can_help_take_the_profiles_retries(tmp_path):
    """The profiles retry failed jobs (transient network and disk faults); the rules whose failure a
    retry cannot change set retries: 0, which Snakemake takes over --retries for that rule (its
    Rule.restart_times returns the rule's own value when set), so a deterministic error is shown once."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    write_config(tmp_path)
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(snakefile=REPO / "workflow" / "Snakefile", workdir=tmp_path, resource_settings=ResourceSettings(cores=1))
        own = {r.name: r._restart_times for r in wf._workflow.rules}
    deterministic = {"manifest", "qc", "export", "evaluate", "ablation_export", "ablation_evaluate", "ablation_summary"}
    assert {name for name, n in own.items() if n == 0} == deterministic
    assert all(own[name] is None for name in ("download", "resample", "windows", "labels", "pretrain"))  # the profile's
