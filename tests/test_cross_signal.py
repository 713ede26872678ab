"""Both signals (docs/design.md, "Normalization and masking"): on demo-like windows, where PPG and ECG
share the beat timing (the PPG follows each R peak a quarter beat later) and the heart rate varies
between cases, a model with channel mixing trained on cross masks rebuilds a fully hidden PPG from
the ECG; the channel-independent model trained the same way cannot do better than the window's mean,
and its PPG embedding ignores the ECG exactly."""

import logging

import numpy as np
import pytest

from pipeline.evaluation.evaluate import reconstruction_quality
from pipeline.model.embedding import embed_windows
from pipeline.model.export import load_trained
from pipeline.model.train import pretrain
from tests.helpers import TINY_MODEL, TINY_TRAIN, windows, write_shard

log = logging.getLogger(__name__)
HEART_RATES = (55, 63, 71, 79, 87, 95, 103, 111)  # bpm, one training case each
TEST_RATES = (60, 75, 90, 105)
CROSS = dict(TINY_TRAIN, mask_mix={"random": 0.0, "block": 0.0, "cross": 1.0}, stft_weight=0.0, batch_size=32, block_windows=64,
             shuffle_blocks=2, epochs=40, lr=5e-3, checkpoint_every_steps=1000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{channel_mixing: SSL model} for none and mixer, trained identically (160 steps each)."""
    root = tmp_path_factory.mktemp("cross")
    train = [str(write_shard(root / "train" / f"{i}.h5", windows(16, hr=hr, seed=i), caseid=i + 1)) for i, hr in enumerate(HEART_RATES)]
    val = [str(write_shard(root / "val" / "0.h5", windows(16, hr=83, seed=50), caseid=50))]
    models = {}
    for mixing in ("none", "mixer"):
        pretrain(dict(TINY_MODEL, channel_mixing=mixing, dropout=0.0), CROSS, train, val, root / mixing, "d")
        models[mixing] = load_trained(root / mixing / "model.pt")
    return models


@pytest.fixture(scope="module")
def test_windows():
    return np.concatenate([windows(8, hr=hr, seed=100 + i) for i, hr in enumerate(TEST_RATES)])


def test_channel_mixing_rebuilds_a_hidden_ppg_from_the_ecg(trained, test_windows):
    rec = {m: reconstruction_quality(model, test_windows, CROSS, seed=0) for m, model in trained.items()}
    mixed, alone = rec["mixer"]["ppg_from_ecg"], rec["none"]["ppg_from_ecg"]
    log.warning("PPG from ECG, masked MSE: mixer %.4f, none %.4f, window mean %.4f; ECG from PPG: mixer %.4f, none %.4f",
                mixed["model"], alone["model"], alone["window_mean"], rec["mixer"]["ecg_from_ppg"]["model"],
                rec["none"]["ecg_from_ppg"]["model"])
    assert alone["window_mean"] == pytest.approx(1.0, abs=1e-3)  # the loss scale: the window's mean scores 1
    assert alone["model"] > 0.9  # without the ECG there is nothing to rebuild the PPG from
    assert mixed["model"] < 0.3 and mixed["model"] < 0.3 * alone["model"]
    assert rec["mixer"]["ecg_from_ppg"]["model"] < rec["none"]["ecg_from_ppg"]["model"]


def test_the_ppg_embedding_sees_the_ecg_only_with_channel_mixing(trained, test_windows):
    x = test_windows[:16]
    other = x.copy()
    other[:, 1] = test_windows[-16:, 1]  # the ECG of windows with another heart rate
    for mixing, model in trained.items():
        a, b = embed_windows(model.encoder, x), embed_windows(model.encoder, other)
        change = np.abs(a[:, 0] - b[:, 0]).max()
        if mixing == "none":
            assert change == 0.0  # two single-signal encoders side by side
        else:
            assert change > 0.05 * np.abs(a[:, 0]).max(), change
        assert np.abs(a[:, 1] - b[:, 1]).max() > 0  # the ECG embedding follows its ECG either way
