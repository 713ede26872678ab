import numpy as np
import pytest
import torch

from pipeline.evaluation.evaluate import linear_interpolation_fill
from pipeline.evaluation.probes import bootstrap, calibration, fit_probe, predict, score, subset_subjects, within_case_auroc
from pipeline.model.masking import patch_mask
from tests.helpers import windows


def groups(n, k=20):
    return np.arange(n) % k


def probe(xtr, ytr, xte, yte, kind, gtr=None):
    model = fit_probe(xtr, ytr, groups(len(ytr)) if gtr is None else gtr, kind)
    return score(yte, predict(model, xte, kind), kind)


def test_probe_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    xtr, xte = rng.normal(size=(600, 16)), rng.normal(size=(300, 16))
    res = probe(xtr, xtr @ w + 0.1 * rng.normal(size=600), xte, xte @ w + 0.1 * rng.normal(size=300), "regression")
    assert res["r2"] > 0.99 and res["mae"] < 0.15
    sep = probe(xtr, (xtr[:, 0] > 0).astype(int), xte, (xte[:, 0] > 0).astype(int), "classification")
    assert sep["auroc"] > 0.95 and sep["auprc"] > 0.9


def test_probe_scores_noise_at_chance():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(600, 16)), rng.normal(size=(300, 16))
    assert probe(xtr, rng.normal(size=600), xte, rng.normal(size=300), "regression")["r2"] < 0.05
    res = probe(xtr, rng.integers(0, 2, 600), xte, rng.integers(0, 2, 300), "classification")
    assert 0.35 < res["auroc"] < 0.65


def test_grouped_cv_does_not_reward_memorising_subjects():
    """Each subject has a random label and a random feature fingerprint: only memorising subjects
    fits the train split. Folds grouped by subject see that it does not carry over and regularise hard;
    a new subject scores about chance."""
    rng = np.random.default_rng(2)

    def subjects(n_subj, per, offset):
        g = np.repeat(np.arange(n_subj) + offset, per)
        fingerprint, label = rng.normal(size=(n_subj, 40)), rng.normal(size=n_subj)
        x = fingerprint[g - offset] + 0.3 * rng.normal(size=(len(g), 40))
        return x, label[g - offset] + 0.1 * rng.normal(size=len(g)), g

    xtr, ytr, gtr = subjects(30, 20, 0)
    xte, yte, _ = subjects(10, 20, 100)
    model = fit_probe(xtr, ytr, gtr, "regression")
    assert model.named_steps["model"].alpha >= 100
    assert score(yte, predict(model, xte, "regression"), "regression")["r2"] < 0.1


def test_scores_equal_scikit_learn():
    from sklearn.metrics import average_precision_score, brier_score_loss, mean_absolute_error, r2_score, roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    p = y + rng.normal(size=300)
    s = score(y, p, "regression")
    assert s["mae"] == pytest.approx(mean_absolute_error(y, p)) and s["r2"] == pytest.approx(r2_score(y, p))
    yc = (rng.uniform(size=300) < 0.2).astype(float)
    pc = np.round(yc * 0.5 + rng.uniform(size=300), 1)  # ties in the scores
    s = score(yc, pc, "classification")
    assert s["auroc"] == pytest.approx(roc_auc_score(yc, pc)) and s["auprc"] == pytest.approx(average_precision_score(yc, pc))
    pp = rng.uniform(size=300)
    assert score(yc, pp, "classification")["brier"] == pytest.approx(brier_score_loss(yc, pp))
    assert np.isnan(score(np.ones(5), np.arange(5.0), "classification")["auroc"])


def test_within_case_auroc_ranks_each_cases_own_windows():
    """A score that only tells cases apart (a per-case constant) scores 0.5 within cases whatever its
    pooled AUROC; cases with one class are left out and counted."""
    rng = np.random.default_rng(6)
    cases = np.repeat(np.arange(10), 40)
    y = (rng.uniform(size=400) < np.repeat(np.linspace(0.05, 0.6, 10), 40)).astype(float)
    y[cases == 9] = 0.0  # one case with negatives only
    per_case = np.repeat(np.linspace(0.05, 0.6, 10), 40)  # the case's risk: good across cases, nothing within
    assert score(y, per_case, "classification")["auroc"] > 0.6
    auc, n = within_case_auroc(y, per_case, cases)
    assert auc == pytest.approx(0.5) and n == 9
    auc, _ = within_case_auroc(y, y + rng.normal(0, 0.3, 400), cases)  # a score that sees the label
    assert auc > 0.9


def test_calibration_curve_of_a_calibrated_and_an_overconfident_score():
    rng = np.random.default_rng(7)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=20000) < p).astype(float)
    good = calibration(y, p)
    assert len(good["predicted"]) == 10 and sum(good["n"]) == 20000
    assert np.abs(np.subtract(good["predicted"], good["observed"])).max() < 0.03
    bad = calibration(y, np.clip(0.5 + 2 * (p - 0.5), 0, 1))  # stretched: too sure both ways
    assert bad["observed"][0] > bad["predicted"][0] + 0.05 and bad["observed"][-1] < bad["predicted"][-1] - 0.05


def test_bootstrap_pairs_the_draws():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(15), 30)
    y = rng.normal(size=len(g))
    good, bad = y + 0.1 * rng.normal(size=len(g)), rng.normal(size=len(g))
    res, paired = bootstrap(y, {"ssl": good, "same": good.copy(), "noise": bad}, g, "regression", seed=0)
    assert paired["ssl-same"]["r2"] == 0 and paired["ssl-same"]["r2_ci95"] == [0.0, 0.0]  # same draws, same predictions
    assert paired["ssl-noise"]["r2_ci95"][0] > 0.5 and paired["ssl-noise"]["mae_ci95"][1] < 0
    lo, hi = res["ssl"]["r2_ci95"]
    assert lo <= res["ssl"]["r2"] <= hi and res["ssl"]["n_boot"] > 400
    yc = (y > 0).astype(float)
    res, paired = bootstrap(yc, {"ssl": good, "noise": bad}, g, "classification", seed=0)
    assert res["ssl"]["auroc"] > 0.9 and paired["ssl-noise"]["auroc_ci95"][0] > 0.2


def test_subset_subjects_keeps_whole_subjects_and_both_classes():
    g = np.repeat(np.arange(200), 3)
    y = (g % 10 == 0).astype(float)  # few positive subjects
    m = subset_subjects(g, y, 0.01, "classification", seed=0)
    assert len(np.unique(g[m])) == 2 and set(y[m]) == {0.0, 1.0} and m.sum() == 6
    assert subset_subjects(g, y, 1.0, "classification", 0).all()


def rpeak_heart_rate(x: np.ndarray, fs: float) -> np.ndarray:
    """The R-peak heart-rate column of the raw features of two-channel windows."""
    from pipeline.evaluation.features import RAW_FEATURES, raw_features

    return raw_features(x, fs)[:, [n for n, _ in RAW_FEATURES].index("ECG_hr_rpeak_bpm")]


def test_rpeak_heart_rate_matches_the_known_rate():
    for hr in (50.0, 75.0, 120.0):
        est = rpeak_heart_rate(windows(6, hr=hr), 125)
        assert np.all(np.abs(est - hr) < 0.05 * hr + 1), (hr, est)
    assert np.isnan(rpeak_heart_rate(np.zeros((2, 2, 1024)), 125)).all()


def test_linear_interpolation_is_exact_on_lines():
    x = torch.linspace(0, 1, 1024).repeat(3, 2, 1)
    mask = patch_mask(3, 2, 16, 0.4, "random", torch.Generator().manual_seed(0))
    mask[:, :, 0] = False  # interior gaps: interpolation between two visible samples
    mask[:, :, -1] = False
    torch.testing.assert_close(linear_interpolation_fill(x, mask, 64), x)


def test_evaluate_scores_every_task_with_paired_differences(tmp_path, config):
    """Labels for every task, a case table with traits, model.pretrained set: every task is scored by
    every feature set (fine-tuned and supervised included), with the output contract of metrics.json."""
    import json

    from tsfm_public.models.tinytimemixer import TinyTimeMixerForPrediction

    from pipeline.data.cases import write_table
    from pipeline.data.labels import COLUMNS
    from pipeline.data.windows import build_manifest
    from pipeline.evaluation.evaluate import evaluate
    from pipeline.evaluation.tasks import TASKS
    from pipeline.model.backbones import build
    from pipeline.model.export import export_encoder
    from pipeline.model.train import pretrain
    from tests.helpers import TINY_MODEL, TINY_TRAIN, write_shard

    torch.manual_seed(3)
    TinyTimeMixerForPrediction(build(TINY_MODEL).config).save_pretrained(tmp_path / "ttm")
    model_cfg = dict(TINY_MODEL, pretrained=str(tmp_path / "ttm"))

    rows, train, test, label_rows = [], [], [], []
    for caseid in range(1, 17):
        split = "test" if caseid > 10 else "train"
        hr = 50 + 5 * (caseid % 8)  # both classes of every threshold below in both splits
        path = write_shard(tmp_path / split / f"shard-{caseid:04d}.h5", windows(8, hr=hr, seed=caseid), caseid=caseid)
        (test if split == "test" else train).append(str(path))
        rows.append({"caseid": caseid, "subjectid": caseid, "split": split, "batch": 0, "age": 30 + 3 * caseid,
                     "sex": "F" if caseid % 2 else "M", "bmi": 20 + caseid % 5, "asa": 1 + caseid % 4})
        for k in range(8):
            bp = 60 + 0.5 * hr + k  # tied to the heart rate, so the features can find it
            label_rows.append([caseid, f"{k * 8.192:.3f}", f"{bp:.2f}", f"{bp + 40:.2f}", f"{bp - 20:.2f}",
                               str(int(hr + k > 78)), str(int(hr > 72)), "" if k == 0 else str(int(hr > 70)),  # ahead
                               *[str(int(hr > 72))] * 3])  # onset protocol (3 subjects of each class in each split)
    write_table(tmp_path / "cases.tsv", rows)
    labels = tmp_path / "labels.tsv"
    labels.write_text("\t".join(COLUMNS) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in label_rows))
    pretrain(model_cfg, dict(TINY_TRAIN, epochs=1), train, test, tmp_path / "pre", "d", pretrained=tmp_path / "ttm")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"1": {"split": "train", "cut": 8, "kept": 8, "rejected": {}}}))
    build_manifest([stats], tmp_path / "manifest.json", {})
    pre = tmp_path / "pre"
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], "signals": config["signals"], "window": config["window"]}
    export_encoder(pre / "model.pt", tmp_path / "manifest.json", pre / "metrics.csv", pre / "summary.json", params, tmp_path / "encoder")

    eval_cfg = dict(config["evaluate"], finetune_epochs=1)
    res = evaluate(tmp_path / "encoder", pre / "model.pt", train, test, tmp_path / "cases.tsv", [labels], model_cfg,
                   dict(TINY_TRAIN), eval_cfg, config["labels"], 125, tmp_path / "eval", pretrained=tmp_path / "ttm")
    assert res["feature_sets"] == ["ssl", "ssl_finetuned", "supervised", "random", "pretrained", "raw"]
    assert set(res["tasks"]) == {t.name for t in TASKS} and res["split"] == "test" and res["reconstruction"]["split"] == "test"
    for task in TASKS:
        r = res["tasks"][task.name]
        assert r["split"] == "test", task.name  # every block names the split it was scored on
        assert r["level"] == task.level and r["kind"] == task.kind and r["n_test_subjects"] == 6, task.name
        extra = [*task.references, *(["prevalence"] if task.kind == "classification" else [])]
        assert set(r["results"]) == set(res["feature_sets"]) | set(extra), task.name
        for fs, m in r["results"].items():
            assert set(task.metrics) | {f"{k}_ci95" for k in task.metrics} <= set(m), (task.name, fs)
        assert set(r["paired"]) == {f"ssl-{fs}" for fs in res["feature_sets"][1:] + extra}
        if task.kind == "classification":
            y = r["prevalence"]["test"]
            assert 0 < y < 1 and r["results"]["prevalence"]["auroc"] == 0.5 and r["results"]["ssl"]["prevalence"] == y
            assert r["positives"]["test"]["subjects"] <= r["positives"]["test"]["cases"] <= r["positives"]["test"]["windows"]
            assert set(r["calibration"]) == set(r["results"]) and all(sum(c["n"]) == r["n_test"] for c in r["calibration"].values())
        d = r["paired"]["ssl-raw"]
        assert d[task.metric] == pytest.approx(r["results"]["ssl"][task.metric] - r["results"]["raw"][task.metric])
    assert res["tasks"]["hypotension_15min"]["n_test"] == 6 * 7  # the undefined first window of each case is left out
    h5 = res["tasks"]["hypotension_5min"]["results"]
    assert h5["ssl"]["n_cases_within"] == 1 and np.isfinite(h5["ssl"]["auroc_within_case"])  # only case 13 has both classes
    assert "current_map" in res["tasks"]["hypotension_onset_5min"]["results"] and "current_map" not in res["tasks"]["map_mmHg"]["results"]
    assert h5["current_map"]["auroc"] > 0.9  # MAP rises with k, so does the 5-min label within case 14 and across cases
    assert res["scale_features"] is True
    assert res["tasks"]["map_mmHg"]["results"]["raw"]["r2"] > 0.5  # the raw heart rate carries the planted BP
    eff = res["tasks"]["map_mmHg"]["label_efficiency"]
    # 1% and 10% of 10 train subjects are both the minimum of 2: one point, not two at the same count
    assert eff["fractions"] == [0.01, 1.0] and eff["n_subjects"] == [2, 10] and len(eff["results"]["ssl"]) == 2
    for fs, vals in eff["results"].items():
        for v, (lo, hi) in zip(vals, eff["ci95"][fs]):
            assert lo <= v <= hi, (fs, v, lo, hi)  # each point with its subject-bootstrap interval
    r = res["tasks"]["map_mmHg"]
    assert eff["results"]["ssl"][-1] == r["results"]["ssl"][r["metric"]]  # 100% = the main probe
    for f in ("probes.png", "roc.png", "label_efficiency.png", "calibration.png", "hypotension.png"):
        assert (tmp_path / "eval" / f).stat().st_size > 5000, f
    from docutils.core import publish_parts

    headline = (tmp_path / "eval" / "headline.rst").read_text()  # the report's landing page
    page = publish_parts(headline, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    assert "Did pretraining help?" in page and "<table" in page and "SSL − raw [95% CI]" in page
    assert "SSL − current_map (reference) [95% CI]" in page and "0.897" in page  # the monitor's MAP and Lee 2021
    assert "the SSL encoder is better than" in page and ("SSL better" in page or "no clear difference" in page)
    card = (tmp_path / "eval" / "model_card.md").read_text()  # the export's card, then the results
    assert card.startswith((tmp_path / "encoder" / "README.md").read_text()) and "base_model: " in card
    assert "## Results (evaluation" in card and "| map_mmHg (MAE, lower) |" in card
    html = (tmp_path / "eval" / "probes.html").read_text()
    assert "hypotension_10min" in html and "paired difference" in html and "the whole PPG from the ECG" in html
    rec = res["reconstruction"]
    assert set(rec["random_patches"]) == {"model", "window_mean", "linear_interpolation"}
    for name in ("ppg_from_ecg", "ecg_from_ppg"):
        assert set(rec[name]) == {"model", "window_mean"} and rec[name]["window_mean"] == pytest.approx(1.0, abs=1e-3)


def test_a_classification_needs_three_subjects_of_each_class():
    """One or two positive subjects make an interval that only resamples the negatives: skipped, saying why."""
    from pipeline.evaluation.evaluate import _usable
    from pipeline.evaluation.tasks import TASKS

    task = next(t for t in TASKS if t.kind == "classification")
    g = np.repeat(np.arange(10), 5)
    y = (g < 3).astype(float)  # 3 positive subjects, 7 negative
    assert _usable(task, y, g, y, g) is None
    y2 = (g < 2).astype(float)
    assert "2 with a positive, 8 with a negative" in _usable(task, y, g, y2, g) and "scored split" in _usable(task, y, g, y2, g)
    assert "train split" in _usable(task, y2, g, y, g)


def test_load_split_reads_only_the_chosen_windows(tmp_path, monkeypatch):
    """The same subset as selecting from everything, but the signals are read chunk by chunk:
    never a whole dataset (peak memory follows the chunk, not the shards)."""
    import h5py

    from pipeline.evaluation.evaluate import iter_signals, load_split
    from tests.helpers import write_shard

    paths = []
    for i, n in enumerate((150, 0, 97, 130)):
        sig = np.random.default_rng(i).normal(size=(n, 2, 1024)).astype(np.float32)
        paths.append(str(write_shard(tmp_path / f"s{i}.h5", sig, caseid=i + 1, chunk=16)))
    everything = {k: np.concatenate([h5py.File(p)[k][()] for p in paths]) for k in ("signals", "caseid", "subjectid", "start_s")}
    reads = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/signals" and isinstance(key, slice):
            reads.append(len(range(*key.indices(self.shape[0]))))
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    got = load_split(paths, 40, seed=5)
    keep = np.sort(np.random.default_rng(5).choice(377, 40, replace=False))
    for k in ("caseid", "subjectid", "start_s"):
        np.testing.assert_array_equal(got[k], everything[k][keep])
    assert not reads  # choosing reads no signal
    chunks = list(iter_signals(got, chunk=8))
    np.testing.assert_array_equal(np.concatenate(chunks), everything["signals"][keep])
    assert max(len(c) for c in chunks) <= 8 and reads and max(reads) <= 16  # one HDF5 chunk at a time
    only = np.arange(40) % 3 == 0
    np.testing.assert_array_equal(np.concatenate(list(iter_signals(got, only=only))), everything["signals"][keep][only])
    small = load_split(paths, 1000, seed=5)
    np.testing.assert_array_equal(np.concatenate(list(iter_signals(small))), everything["signals"])
