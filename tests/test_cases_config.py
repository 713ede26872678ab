import copy

import pytest
import yaml

from pipeline.config import ConfigError, validate_config
from pipeline.data.cases import batches, build_case_table, finish_table, read_table, subject_split, write_table
from pipeline.evaluation.checks import ALL_CHECKS
from tests.conftest import REPO

FRACS = {"train": 0.8, "val": 0.1, "test": 0.1}


def raw_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_split_is_deterministic_and_roughly_proportional():
    a = [subject_split(s, FRACS, "x") for s in range(5000)]
    assert a == [subject_split(s, FRACS, "x") for s in range(5000)]
    assert 0.77 < a.count("train") / 5000 < 0.83 and 0.08 < a.count("val") / 5000 < 0.12
    assert a != [subject_split(s, FRACS, "y") for s in range(5000)]  # the salt matters


def rows_for(caseids, subject_of):
    return [{"caseid": c, "subjectid": subject_of(c), "has_ppg": True, "has_ecg": True, "duration_s": 1.0} for c in caseids]


def test_subjects_never_span_splits_and_adding_cases_moves_nothing():
    cfg = {"split": FRACS, "split_salt": "s", "limit": None, "caseids": None, "batch_size": 64}
    small = finish_table(rows_for(range(1, 501), lambda c: c // 3), cfg, "P", "E")
    big = finish_table(rows_for(range(1, 2001), lambda c: c // 3), cfg, "P", "E")
    by_subject = {}
    for r in big:
        by_subject.setdefault(r["subjectid"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_subject.values())
    old = {r["caseid"]: (r["split"], r["batch"]) for r in small}
    assert all(old[r["caseid"]] == (r["split"], r["batch"]) for r in big if r["caseid"] in old)


def test_case_table_keeps_only_two_track_cases_and_roundtrips(tmp_path):
    cfg = {"split": FRACS, "split_salt": "s", "limit": 2, "caseids": None, "batch_size": 2}
    rows = rows_for([5, 1, 2, 3], lambda c: c)
    rows[0]["has_ecg"] = False  # case 5 lacks ECG
    out = finish_table(rows, cfg, "P", "E")
    assert [r["caseid"] for r in out] == [1, 2]
    write_table(tmp_path / "cases.tsv", out)
    back = read_table(tmp_path / "cases.tsv")
    assert [r["caseid"] for r in back] == [1, 2] and [r["batch"] for r in back] == [0, 1]
    assert batches(tmp_path / "cases.tsv") == [0, 1]


def test_demo_case_table(config):
    rows = build_case_table(config)
    assert len(rows) == config["demo"]["n_cases"]
    assert {r["split"] for r in rows} == {"train", "val", "test"}  # the demo populates every split
    shared = [r for r in rows if r["subjectid"] == rows[1]["subjectid"]]
    assert len(shared) == 2 and len({r["split"] for r in shared}) == 1


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"window": {"stride": -1}}, "window.stride"),
        ({"window": {"length": 1024.5}}, "window.length"),
        ({"window": {"length": "1024 samples"}}, "window.length"),  # a string that does not parse stays one
        ({"local": {"root": "/no/such/release"}, "source": "local"}, "local.root"),  # checked when the workflow loads
        ({"window": {"length": 0}}, "window.length"),
        ({"source": "physionet"}, "source"),
        ({"cases": {"split": {"train": 0.8, "val": 0.1, "test": 0.2}}}, "cases.split"),
        ({"quality": {"hr_min": 40}}, "quality"),
        ({"download": {"retries": 100}}, "download.retries"),
        ({"quality": {"hr_min_bpm": 200}}, "quality.hr_min_bpm"),
        ({"source": "local"}, "local.root"),
        ({"source": "wfdb"}, "wfdb.root"),
        ({"cases": {"split": {"train": float("nan"), "val": 0.1, "test": 0.1}}}, "cases.split.train"),
        ({"quality": {"flat_max_fraction": float("nan")}}, "quality.flat_max_fraction"),
        ({"download": {"timeout_s": float("nan")}}, "download.timeout_s"),
        ({"train": {"lr": float("inf")}}, "train.lr"),
        ({"quality": {"ppg_ptp_max": float("inf")}}, "quality.ppg_ptp_max"),
        ({"train": {"stft_n_fft": [256, float("nan")]}}, "train.stft_n_fft[1]"),
        ({"train": {"seed": 2**40}}, "train.seed"),
        ({"evaluate": {"seed": -1}}, "evaluate.seed"),
        ({"demo": {"seed": 2**63}}, "demo.seed"),
        ({"vitaldb": {"api_url": "ftp://mirror.example/vitaldb"}}, "vitaldb.api_url"),
        ({"vitaldb": {"api_url": "api.vitaldb.net"}}, "vitaldb.api_url"),
        ({"signals": {"target_fs": 64}}, "signals.target_fs"),
        ({"quality": {"nan_max_fraction": 0.1}}, "quality"),  # the key is gone: windows with NaN are always rejected
        ({"model": {"backbone": "lstm"}}, "model.backbone"),
        ({"model": {"pretrained": "/no/such/checkpoint"}}, "model.pretrained"),
    ],
)
def test_bad_config_fails_naming_the_key(edit, key):
    cfg = raw_config()
    for section, value in edit.items():
        if isinstance(value, dict):
            cfg[section] = {**cfg.get(section, {}), **value}
        else:
            cfg[section] = value
    with pytest.raises(ConfigError) as e:
        validate_config(copy.deepcopy(cfg), ALL_CHECKS)
    assert key in str(e.value)


def test_defaults_are_filled():
    cfg = validate_config({"source": "demo"}, ALL_CHECKS)
    assert cfg["window"]["length"] == 1024 and cfg["signals"]["target_fs"] == 125
    assert cfg["cases"]["split"] == {"train": 0.8, "val": 0.1, "test": 0.1}


@pytest.mark.parametrize(
    "step, params, key",
    [
        ("manifest", {"signals": {"target_fs": float("nan"), "saturation_min_run": 10}}, "signals.target_fs"),
        ("manifest", {"window": {"length": 1024, "stride": 0, "chunk": 64}}, "window.stride"),
        ("manifest", {"tracks": ["PLETH"], "signals": {"target_fs": 125}}, "tracks"),
        ("manifest", {"window": {"length": 64}, "quality": {}, "signals": {"target_fs": 125}}, "window.length"),  # a data rule
        ("export", {"model": {"patch_length": 100}, "window": {"length": 1024}}, "model.patch_length"),  # a model rule
        ("evaluate", {"signals": {"target_fs": 40}}, "signals.target_fs"),  # the evaluation's rule
    ],
)
def test_step_commands_validate_their_params(tmp_path, step, params, key):
    """Users run `python -m pipeline <step>` by hand: a bad --params fails at once with its stage's
    rules (pipeline/<stage>/checks.py), naming the key."""
    import json
    import subprocess
    import sys

    out = tmp_path / "out"
    paths = {"manifest": ["--out", str(out), str(tmp_path / "none.json")],
             "export": [f"--{a}" for a in ("model", "manifest", "metrics", "summary")],
             "evaluate": [f"--{a}" for a in ("encoder", "model", "cases", "train-shards", "eval-shards", "labels")]}[step]
    if step != "manifest":  # every path option points at a file that does not exist: validation comes first
        paths = [x for a in paths for x in (a, str(tmp_path / "none"))] + ["--out" if step == "export" else "--outdir", str(out)]
    if step == "evaluate":
        paths += ["--split", "val"]
    cmd = [sys.executable, "-m", "pipeline", step, "--params", json.dumps(params), *paths]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and key in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not out.exists()


def test_step_params_from_the_rules_pass_unchanged(config):
    """What the rules pass (complete, validated sections) comes back as it was."""
    from pipeline.config import validate_params
    from pipeline.evaluation.checks import ALL_CHECKS

    for keys in (("signals", "window", "quality"), ("model", "train"), ("model", "train", "evaluate", "signals")):
        params = copy.deepcopy({k: config[k] for k in keys})
        assert validate_params(copy.deepcopy(params), ALL_CHECKS) == params
    params = {"source": "demo", "demo": config["demo"], "cases": config["cases"], "download": config["download"]}
    assert validate_params(copy.deepcopy(params), ALL_CHECKS) == params


def test_errors_say_the_fix_and_strings_from_the_command_line_are_coerced():
    """Issue 20: a typo gets "did you mean"; Snakemake's nested --config values (strings) and YAML 1.1
    floats such as 1e-3 (strings) become the schema's type where they parse exactly."""
    cfg = raw_config()
    cfg["train"] = {**cfg["train"], "lrr": 1.0e-3}
    with pytest.raises(ConfigError, match=r"train: .*'lrr': did you mean 'lr'\?"):
        validate_config(cfg, ALL_CHECKS)
    cfg = raw_config()
    cfg["trian"] = {}
    with pytest.raises(ConfigError, match=r"'trian': did you mean 'train'\?"):
        validate_config(cfg, ALL_CHECKS)
    cfg = raw_config()
    cfg["train"] = {**cfg["train"], "lr": "1e-3", "epochs": "5", "compile": "false"}
    out = validate_config(cfg, ALL_CHECKS)
    assert (out["train"]["lr"], out["train"]["epochs"], out["train"]["compile"]) == (1.0e-3, 5, False)
    cfg = raw_config()  # lists too (--config "ablations={seeds: [0, 1]}" hands ['0', '1']), null for a string key,
    cfg["ablations"] = {**cfg["ablations"], "seeds": ["0", "1"]}  # integral floats for an integer key
    cfg["model"] = {**cfg["model"], "pretrained": "null", "revision": "null"}
    cfg["train"] = {**cfg["train"], "batch_size": "1e2", "log_every_steps": 50.0}
    out = validate_config(cfg, ALL_CHECKS)
    assert out["ablations"]["seeds"] == [0, 1] and out["model"]["pretrained"] is None
    assert type(out["train"]["batch_size"]) is int and type(out["train"]["log_every_steps"]) is int and out["train"]["batch_size"] == 100
    for key, bad, match in (("grad_clip", "1e999", "inf is not a finite number"), ("batch_size", "1.5e0", "1.5 is not of type 'integer'"),
                            ("lr", "abc", "'abc' is not of type 'number'")):
        cfg = raw_config()
        cfg["train"] = {**cfg["train"], key: bad}
        with pytest.raises(ConfigError, match=rf"train.{key}: {match}"):
            validate_config(cfg, ALL_CHECKS)


def test_every_step_that_takes_params_names_its_stages_checks():
    """A step added to the command line without its checks would fail at its first run: caught here."""
    import argparse
    import importlib

    import pipeline.__main__ as cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with_params = {name for name, p in sub.choices.items() if any(o.dest == "params" for o in p._actions)}
    assert with_params == set(cli.CHECKS_OF)
    for module, name in cli.CHECKS_OF.values():
        assert getattr(importlib.import_module(module), name)
