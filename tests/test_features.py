"""Raw features on synthetic windows with a known heart rate, pulse amplitude and ECG-to-PPG delay."""

import numpy as np
import pytest

from pipeline.channels import CHANNELS
from pipeline.evaluation.features import (
    BANDS_HZ,
    PPG_LOWPASS_HZ,
    RAW_FEATURES,
    RPEAK_BAND_HZ,
    SPECTRAL_HR_HZ,
    highest_frequency_hz,
    raw_features,
)

FS = 125.0
LENGTH = 1024
RISE_S, FALL_S = 0.12, 0.33  # PPG pulse: sin^2 rise to the systolic peak, cos^2 fall back to the baseline
# The foot is the intersecting tangent: the tangent at the steepest point of a sin^2 rise (half-way up,
# slope A pi / (2 rise)) meets the baseline (1/2 - 1/pi) x rise after the pulse's onset.
TANGENT_AFTER_ONSET_S = (0.5 - 1 / np.pi) * RISE_S
COL = {name: i for i, (name, _) in enumerate(RAW_FEATURES)}


def window(rng, hr_bpm, delay_ms, amplitude, ppg_hr_bpm=None, noise=0.01):
    """One [2, LENGTH] window: ECG = Gaussian QRS spikes (and T waves) at the beats, PPG = pulses whose
    tangent foot lies delay_ms after each R-peak, amplitude `amplitude`, on an offset with respiratory
    drift; white noise on both. `ppg_hr_bpm` gives the PPG its own rate (then the delay is meaningless)."""
    t = np.arange(LENGTH) / FS
    rr = 60.0 / hr_bpm
    beats = rng.uniform(-rr, 0) + rr * np.arange(-2, int(t[-1] / rr) + 3)
    ecg = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) + 0.25 * np.exp(-0.5 * ((t - b - 0.25) / 0.04) ** 2)
              for b in beats)
    ppg_rr = 60.0 / (ppg_hr_bpm or hr_bpm)
    onsets = beats[0] + ppg_rr * np.arange(len(beats) + 4) + delay_ms / 1000 - TANGENT_AFTER_ONSET_S
    ppg = np.zeros(LENGTH)
    for onset in onsets:
        s = t - onset
        rise = (s >= 0) & (s < RISE_S)
        fall = (s >= RISE_S) & (s < RISE_S + FALL_S)
        ppg[rise] += amplitude * np.sin(0.5 * np.pi * s[rise] / RISE_S) ** 2
        ppg[fall] += amplitude * np.cos(0.5 * np.pi * (s[fall] - RISE_S) / FALL_S) ** 2
    ppg += 50.0 + 0.05 * amplitude * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    ppg += noise * amplitude * rng.standard_normal(LENGTH)
    ecg += 0.1 * np.sin(2 * np.pi * 0.3 * t) + noise * rng.standard_normal(LENGTH)
    out = np.empty((len(CHANNELS), LENGTH))
    out[CHANNELS.index("PPG")], out[CHANNELS.index("ECG")] = ppg, ecg
    return out


def windows(seed, n, **kw):
    rng = np.random.default_rng(seed)
    return np.stack([window(rng, **kw) for _ in range(n)])


def test_feature_table_names_channels_and_columns():
    names = [name for name, _ in RAW_FEATURES]
    assert len(set(names)) == len(names)
    for name, channels in RAW_FEATURES:
        assert channels and set(channels) <= set(CHANNELS), name
        if len(channels) == 1:
            assert name.startswith(channels[0] + "_"), name
    tags = dict(RAW_FEATURES)
    for ch in CHANNELS:
        for stat in ("mean", "std", "skewness", "kurtosis", "peak_to_peak", "zero_crossing_rate"):
            assert tags[f"{ch}_{stat}"] == (ch,)
        for lo, hi in BANDS_HZ:
            assert tags[f"{ch}_logpow_{lo:g}-{hi:g}Hz"] == (ch,)
    assert tags["ECG_logpow_5-10Hz"] == ("ECG",)
    assert tags["PPG_hr_spectral_bpm"] == tags["PPG_pulse_amplitude"] == tags["PPG_spread"] == ("PPG",)
    assert tags["ECG_hr_rpeak_bpm"] == ("ECG",)
    assert set(tags["PAT_ms"]) == {"PPG", "ECG"}
    out = raw_features(windows(0, 3, hr_bpm=70, delay_ms=250, amplitude=1.0), FS)
    assert out.shape == (3, len(RAW_FEATURES)) and out.dtype == np.float64
    assert raw_features(np.zeros((0, len(CHANNELS), LENGTH)), FS).shape == (0, len(RAW_FEATURES))


@pytest.mark.parametrize("hr_bpm", [48.0, 72.0, 95.0, 118.0])
@pytest.mark.parametrize("delay_ms", [150.0, 250.0, 350.0])
def test_known_heart_rate_amplitude_and_arrival_time(hr_bpm, delay_ms):
    amplitude = 2.5
    x = windows(int(hr_bpm * 1000 + delay_ms), 4, hr_bpm=hr_bpm, delay_ms=delay_ms, amplitude=amplitude)
    out = raw_features(x, FS)
    np.testing.assert_allclose(out[:, COL["PPG_hr_spectral_bpm"]], hr_bpm, atol=2.0)
    np.testing.assert_allclose(out[:, COL["ECG_hr_rpeak_bpm"]], hr_bpm, atol=2.0)
    np.testing.assert_allclose(out[:, COL["PPG_pulse_amplitude"]], amplitude, rtol=0.10)
    np.testing.assert_allclose(out[:, COL["PAT_ms"]], delay_ms, atol=10.0)
    np.testing.assert_allclose(out[:, COL["PPG_mean"]], 50.0 + amplitude * hr_bpm / 60 * (RISE_S + FALL_S) / 2,
                               rtol=0.02)
    q25, q75 = np.percentile(x[:, CHANNELS.index("PPG")], [25, 75], axis=-1)
    np.testing.assert_allclose(out[:, COL["PPG_spread"]], q75 - q25)


def test_pulse_amplitude_scales_with_the_pulse():
    small, big = (raw_features(windows(5, 3, hr_bpm=80, delay_ms=200, amplitude=a), FS)[:, COL["PPG_pulse_amplitude"]]
                  for a in (0.3, 30.0))
    np.testing.assert_allclose(small, 0.3, rtol=0.10)
    np.testing.assert_allclose(big, 30.0, rtol=0.10)


def test_each_heart_rate_comes_from_its_own_channel():
    out = raw_features(windows(6, 3, hr_bpm=60, delay_ms=250, amplitude=1.0, ppg_hr_bpm=100), FS)
    np.testing.assert_allclose(out[:, COL["PPG_hr_spectral_bpm"]], 100.0, atol=2.0)
    np.testing.assert_allclose(out[:, COL["ECG_hr_rpeak_bpm"]], 60.0, atol=2.0)


def test_rpeak_heart_rate_holds_with_noise():
    """With noise, over 55-130 bpm. (It used to be compared with a second copy of the same R-peak
    code in pipeline.evaluation.tasks, described as the heart-rate label, which it is not: the label is the
    windows stage's autocorrelation rate.)"""
    rates = np.repeat([55.0, 85.0, 130.0], 3)
    x = np.concatenate([windows(7, 3, hr_bpm=hr, delay_ms=200, amplitude=1.0, noise=0.05) for hr in (55, 85, 130)])
    out = raw_features(x, FS)
    np.testing.assert_allclose(out[:, COL["ECG_hr_rpeak_bpm"]], rates, atol=2.0)


def test_flat_windows_give_nan_where_undefined():
    good = windows(8, 1, hr_bpm=75, delay_ms=200, amplitude=1.0)[0]
    ppg, ecg = CHANNELS.index("PPG"), CHANNELS.index("ECG")
    zeros = np.zeros_like(good)
    constant = np.full_like(good, 3.7)
    missing = np.full_like(good, np.nan)
    flat_ppg = good.copy()
    flat_ppg[ppg] = 12.0
    flat_ecg = good.copy()
    flat_ecg[ecg] = -0.4
    out = raw_features(np.stack([zeros, constant, missing, flat_ppg, flat_ecg]), FS)
    physiological = ["PPG_hr_spectral_bpm", "PPG_pulse_amplitude", "ECG_hr_rpeak_bpm", "PAT_ms"]
    for row in out[:3]:
        assert np.isnan(row[[COL[name] for name in physiological]]).all()
        for ch in CHANNELS:
            assert np.isnan(row[[COL[f"{ch}_skewness"], COL[f"{ch}_kurtosis"], COL[f"{ch}_logpow_1-1.5Hz"]]]).all()
            assert row[COL[f"{ch}_std"]] == 0 and row[COL[f"{ch}_peak_to_peak"]] == 0
    assert out[1, COL["PPG_mean"]] == pytest.approx(3.7) and out[1, COL["PPG_spread"]] == 0
    nan_cols = lambda row: {name for name, _ in RAW_FEATURES if np.isnan(row[COL[name]])}  # noqa: E731
    assert nan_cols(out[3]) == {"PPG_skewness", "PPG_kurtosis", "PPG_zero_crossing_rate", "PPG_hr_spectral_bpm",
                                "PPG_pulse_amplitude", "PAT_ms"} | {f"PPG_logpow_{lo:g}-{hi:g}Hz" for lo, hi in BANDS_HZ}
    assert out[3, COL["ECG_hr_rpeak_bpm"]] == pytest.approx(75, abs=2)
    assert nan_cols(out[4]) == {"ECG_skewness", "ECG_kurtosis", "ECG_zero_crossing_rate", "ECG_hr_rpeak_bpm",
                                "PAT_ms"} | {f"ECG_logpow_{lo:g}-{hi:g}Hz" for lo, hi in BANDS_HZ}
    assert out[4, COL["PPG_hr_spectral_bpm"]] == pytest.approx(75, abs=2)


def test_nan_samples_read_as_zero():
    x = windows(9, 2, hr_bpm=70, delay_ms=250, amplitude=1.0)
    x[0, :, 300:310] = np.nan
    x[1, CHANNELS.index("ECG"), :5] = np.nan
    out = raw_features(x, FS)
    np.testing.assert_array_equal(out, raw_features(np.nan_to_num(x), FS))
    assert np.isfinite(out[:, [COL["ECG_hr_rpeak_bpm"], COL["PPG_hr_spectral_bpm"]]]).all()


def test_batches_give_the_unbatched_result():
    x = np.concatenate([windows(10, 3, hr_bpm=hr, delay_ms=d, amplitude=1.0) for hr, d in ((50, 300), (90, 180))])
    x[2] = 0.0
    whole = raw_features(x, FS)
    assert np.isnan(whole[2, COL["PAT_ms"]]) and np.isfinite(whole[[0, 1, 3, 4, 5], COL["PAT_ms"]]).all()
    # equal up to the last bits of a float: the FFT takes a different path for one row and for many
    for batch in (1, 4, 5):
        np.testing.assert_allclose(raw_features(x, FS, batch=batch), whole, rtol=1e-12, atol=0)


def test_refuses_other_channel_layouts():
    with pytest.raises(ValueError, match="channels"):
        raw_features(np.zeros((2, 3, LENGTH)), FS)
    with pytest.raises(ValueError, match="channels"):
        raw_features(np.zeros((2, LENGTH)), FS)


def test_highest_frequency_covers_every_filter_and_band():
    top = highest_frequency_hz()
    assert top == max([hi for _, hi in BANDS_HZ] + [RPEAK_BAND_HZ[1], PPG_LOWPASS_HZ, SPECTRAL_HR_HZ[1]])
    assert top < FS / 2
