import numpy as np
import pytest
import vitaldb

from pipeline.data.resample import resample_case, resample_track, saturation_runs
from pipeline.data.sources.demo import write_vital
from pipeline.errors import CaseError

FS, OUT = 500, 125
SIG = {"source": "local", "local": {"tracks": {"ppg": "SNUADC/PLETH", "ecg": "SNUADC/ECG_II"}},
       "signals": {"target_fs": OUT, "saturation_min_run": 10, "max_case_hours": 24, "max_native_hz": 500}}


def tone(freq, seconds=60.0, fs=FS, amp=1.0):
    t = np.arange(int(seconds * fs)) / fs
    return amp * np.sin(2 * np.pi * freq * t)


def rms(y):
    y = y[len(y) // 10 : -len(y) // 10]  # ignore edge transients
    return float(np.sqrt(np.mean(y**2)))


def test_100hz_tone_is_suppressed_while_vitaldb_path_aliases_it(tmp_path):
    """100 Hz at 500 Hz aliases to 25 Hz at 125 Hz unless filtered first."""
    x = tone(100.0)
    path = tmp_path / "tone.vital"
    write_vital(path, {"SNUADC/PLETH": x, "SNUADC/ECG_II": x}, FS, 4102444800.0)

    signals, _, _ = resample_case(path, SIG)
    ours_db = 20 * np.log10(rms(signals[0]) / rms(x))

    vf = vitaldb.VitalFile(str(path), ["SNUADC/PLETH"])
    naive = vf.to_numpy(["SNUADC/PLETH"], 1 / OUT)[:, 0]
    naive_db = 20 * np.log10(rms(naive) / rms(x))

    assert ours_db <= -40.0, ours_db
    assert naive_db > -1.0, naive_db  # the vitaldb path keeps the alias at full power


def test_5hz_tone_keeps_its_amplitude():
    y, _ = resample_track(tone(5.0, amp=2.0), FS, OUT)
    assert len(y) == 60 * OUT
    core = y[OUT:-OUT]
    assert abs(np.max(np.abs(core)) - 2.0) / 2.0 < 0.01
    assert abs(rms(y) - 2.0 / np.sqrt(2)) / (2.0 / np.sqrt(2)) < 0.01


def test_output_sample_j_sits_at_input_time_j_over_fs():
    x = tone(3.0)
    y, _ = resample_track(x, FS, OUT)
    np.testing.assert_allclose(y[OUT:-OUT], x[::4][OUT:-OUT], atol=2e-3)


def _pulses(n, period, width=3):
    x = np.zeros(n)
    for i in range(200, n - 200, period):
        x[i : i + width] = 1.0
    return x


def test_offset_between_channels_is_preserved_to_one_sample(tmp_path):
    """PPG records start 0.08 s (10 output samples) after ECG's on VitalDB's clock."""
    n = 30 * FS
    rng = np.random.default_rng(0)
    base = _pulses(n, period=437) + 0.01 * rng.normal(size=n)
    dt0 = 4102444800.0
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, dt0, dt0 + n / FS
    delay_s = 0.08
    vf.add_track("SNUADC/ECG_II", [{"dt": dt0, "val": base.astype(np.float32)}], srate=FS)
    vf.add_track("SNUADC/PLETH", [{"dt": dt0 + delay_s, "val": base.astype(np.float32)}], srate=FS)
    path = tmp_path / "offset.vital"
    vf.to_vital(str(path))

    signals, _, attrs = resample_case(path, SIG)
    ppg, ecg = signals
    assert np.isnan(ppg[:10]).all() and not np.isnan(ecg[:10]).any()  # no data before PPG starts
    a, b = np.nan_to_num(ecg), np.nan_to_num(ppg)
    lags = np.arange(-30, 31)
    xc = [np.dot(a[100:-100], np.roll(b, -k)[100:-100]) for k in lags]
    assert abs(lags[int(np.argmax(xc))] - 10) <= 1
    assert attrs["source_fs"] == [FS, FS] and attrs["target_fs"] == OUT


def test_gap_becomes_nan_and_is_not_invented():
    x = tone(5.0, seconds=20.0)
    x[4000:5000] = np.nan  # 2 s gap at 8-10 s
    y, _ = resample_track(x, FS, OUT)
    assert np.isnan(y[1000:1250]).all()
    assert not np.isnan(y[:900]).any() and not np.isnan(y[1350:]).any()


def test_all_nan_track_is_a_case_error():
    with pytest.raises(CaseError, match="no data"):
        resample_track(np.full(5000, np.nan), FS, OUT)


def test_saturation_runs_found_at_extremes_only():
    x = tone(1.0, seconds=10.0)
    assert len(saturation_runs(x, 10)[0]) == 0  # a clean sine never holds its max for 10 samples
    clipped = np.minimum(x * 2, 1.0)
    starts, stops = saturation_runs(clipped, 10)
    assert len(starts) == 10 and np.all(stops - starts >= 10)
    _, sat = resample_track(clipped, FS, OUT)
    assert 0.3 < sat.mean() < 0.4  # 2 sin > 1 for a third of the time


@pytest.mark.parametrize("block", [5, 64, 1 << 15])
def test_saturation_runs_searched_by_block_equal_a_search_of_the_whole_track(block):
    """Runs across block boundaries, NaN, a constant track, an empty one: as a mask over it all."""

    def whole(x, min_run):
        if np.isnan(x).all():
            return []
        out = []
        for level in dict.fromkeys((np.nanmax(x), np.nanmin(x))):  # a flat track's runs once
            idx = np.flatnonzero(x == level)
            for run in np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1):
                if len(run) >= min_run:
                    out.append((int(run[0]), int(run[-1]) + 1))
        return out

    rng = np.random.default_rng(block)
    for trial in range(60):
        x = np.clip(np.round(rng.normal(size=int(rng.integers(0, 3000))) * 2), -3, 3).astype(np.float32)
        if trial % 3 == 0 and len(x):
            x[rng.integers(0, len(x), size=20)] = np.nan
        if trial == 7:
            x[:] = 2.0
        for min_run in (1, 2, 4):
            starts, stops = saturation_runs(x, min_run, block=block)
            assert list(zip(starts.tolist(), stops.tolist())) == whole(x, min_run)
