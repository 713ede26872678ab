import numpy as np
import torch

from pipeline.evaluate import linear_interpolation_fill, probe, raw_features, rpeak_heart_rate
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
