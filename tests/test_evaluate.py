import numpy as np
import pytest
import torch

from pipeline.evaluate import linear_interpolation_fill, probe
from pipeline.features import raw_features
from pipeline.tasks import rpeak_heart_rate
from pipeline.masking import patch_mask
from tests.helpers import windows


def groups(n, k=20):
    return np.arange(n) % k


def test_probe_recovers_a_linear_relation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    xtr, xte = rng.normal(size=(600, 16)), rng.normal(size=(300, 16))
    res = probe(xtr, xtr @ w + 0.1 * rng.normal(size=600), xte, xte @ w + 0.1 * rng.normal(size=300), groups(300), "regression")
    assert res["r2"] > 0.99 and res["r2_ci95"][0] <= res["r2"] <= res["r2_ci95"][1] + 1e-9
    assert res["mae"] < 0.15


def test_probe_scores_noise_at_chance():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(600, 16)), rng.normal(size=(300, 16))
    res = probe(xtr, rng.normal(size=600), xte, rng.normal(size=300), groups(300), "regression")
    assert res["r2"] < 0.05
    ytr, yte = rng.integers(0, 2, 600), rng.integers(0, 2, 300)
    res = probe(xtr, ytr, xte, yte, groups(300), "classification")
    assert 0.35 < res["auroc"] < 0.65
    sep = probe(xtr, (xtr[:, 0] > 0).astype(int), xte, (xte[:, 0] > 0).astype(int), groups(300), "classification")
    assert sep["auroc"] > 0.95


def test_rpeak_heart_rate_matches_the_known_rate():
    for hr in (50.0, 75.0, 120.0):
        est = rpeak_heart_rate(windows(6, hr=hr)[:, 1], 125)
        assert np.all(np.abs(est - hr) < 0.05 * hr + 1), (hr, est)
    assert np.isnan(rpeak_heart_rate(np.zeros((2, 1024)), 125)).all()


def test_raw_features_shape_and_band_power():
    x = windows(4)
    f = raw_features(x, 125)
    assert f.shape == (4, 2 * 14) and np.isfinite(f).all()


def test_linear_interpolation_is_exact_on_lines():
    x = torch.linspace(0, 1, 1024).repeat(3, 2, 1)
    mask = patch_mask(3, 2, 16, 0.4, "random", torch.Generator().manual_seed(0))
    mask[:, :, 0] = False  # interior gaps: interpolation between two visible samples
    mask[:, :, -1] = False
    torch.testing.assert_close(linear_interpolation_fill(x, mask, 64), x)


def test_evaluate_on_a_real_source_adds_age_sex_and_the_pretrained_baseline(tmp_path, config):
    """A case table with age and sex: those probes run; model.pretrained set: a 4th feature set."""
    import json

    from tsfm_public.models.tinytimemixer import TinyTimeMixerForPrediction

    from pipeline.cases import write_table
    from pipeline.evaluate import evaluate
    from pipeline.export import export_encoder
    from pipeline.backbones import build
    from pipeline.train import pretrain
    from pipeline.windows import build_manifest
    from tests.helpers import TINY_MODEL, TINY_TRAIN, write_shard

    # a local "pretrained" TTM with the tiny geometry (saved as the hub model is: ForPrediction)
    torch.manual_seed(3)
    TinyTimeMixerForPrediction(build(TINY_MODEL).config).save_pretrained(tmp_path / "ttm")
    model_cfg = dict(TINY_MODEL, pretrained=str(tmp_path / "ttm"))

    rows, train, test = [], [], []
    for caseid in range(1, 13):
        split = "test" if caseid > 8 else "train"
        path = write_shard(tmp_path / split / f"shard-{caseid:04d}.h5", windows(8, hr=55 + 5 * caseid, seed=caseid), caseid=caseid)
        (test if split == "test" else train).append(str(path))
        rows.append({"caseid": caseid, "subjectid": caseid, "split": split, "batch": 0, "age": 30 + 3 * caseid,
                     "sex": "F" if caseid % 2 else "M"})
    write_table(tmp_path / "cases.tsv", rows)
    pretrain(model_cfg, dict(TINY_TRAIN, epochs=1), train, test, tmp_path / "pre", "d", pretrained=tmp_path / "ttm")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"1": {"split": "train", "cut": 8, "kept": 8, "rejected": {}}}))
    build_manifest([stats], tmp_path / "manifest.json", {})
    pre = tmp_path / "pre"
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], "signals": config["signals"], "window": config["window"]}
    export_encoder(pre / "model.pt", tmp_path / "manifest.json", pre / "metrics.csv", pre / "summary.json", params, tmp_path / "encoder")

    res = evaluate(tmp_path / "encoder", pre / "model.pt", train, test, tmp_path / "cases.tsv", model_cfg,
                   dict(TINY_TRAIN), {"max_windows": 1000, "seed": 0}, 125, tmp_path / "eval", pretrained=tmp_path / "ttm")
    assert res["feature_sets"] == ["ssl", "random", "pretrained", "raw"]
    assert {t for t, r in res["tasks"].items() if "results" in r} == {"heart_rate_from_ppg", "heart_rate_from_ppg+ecg", "age", "sex"}
    assert set(res["tasks"]["sex"]["results"]["ssl"]) >= {"auroc", "auroc_ci95", "n_test", "test_subjects"}
    assert res["tasks"]["age"]["results"]["raw"]["test_subjects"] == 4
    assert (tmp_path / "eval" / "probes.png").stat().st_size > 0 and "AUROC" in (tmp_path / "eval" / "probes.html").read_text()
    rec = res["reconstruction"]
    assert set(rec["random_patches"]) == {"model", "window_mean", "linear_interpolation"}
    for name in ("ppg_from_ecg", "ecg_from_ppg"):
        assert set(rec[name]) == {"model", "window_mean"} and rec[name]["window_mean"] == pytest.approx(1.0, abs=1e-3)
    assert "the whole PPG from the ECG" in (tmp_path / "eval" / "probes.html").read_text()


def test_load_split_reads_only_the_chosen_windows(tmp_path, monkeypatch):
    """The same subset as selecting from everything, but the signals are read chunk by chunk:
    never a whole dataset (peak memory follows max_windows, not the shards)."""
    import h5py

    from pipeline.evaluate import load_split
    from tests.helpers import write_shard

    paths = []
    for i, n in enumerate((150, 0, 97, 130)):
        sig = np.random.default_rng(i).normal(size=(n, 2, 1024)).astype(np.float32)
        paths.append(str(write_shard(tmp_path / f"s{i}.h5", sig, caseid=i + 1, chunk=16)))
    everything = {k: np.concatenate([h5py.File(p)[k][()] for p in paths]) for k in ("signals", "caseid", "subjectid")}
    reads = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/signals" and isinstance(key, slice):
            reads.append(len(range(*key.indices(self.shape[0]))))
        return real(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    got = load_split(paths, 40, seed=5)
    keep = np.sort(np.random.default_rng(5).choice(377, 40, replace=False))
    for k in everything:
        np.testing.assert_array_equal(got[k], everything[k][keep])
    assert reads and max(reads) <= 16  # one chunk at a time
    small = load_split(paths, 1000, seed=5)
    np.testing.assert_array_equal(small["signals"], everything["signals"])  # fewer windows than the cap: all of them
