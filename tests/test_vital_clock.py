"""Tracks on the recording's clock, to the sample (issue 9, point 0), and the span cap before any
dense array (issue 9, point 3).

vitaldb's `get_track_samples` puts a record at `ceil((dt - dtstart) * srate)`: a record whose `dt` is
a hair above the grid (binary rounding of `dtstart + offset`) lands one native sample late. The
files here are written with vitaldb's own writer in one-second records, as Vital Recorder writes
them, at `dtstart + offset + k` seconds."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc

import numpy as np
import pytest
import vitaldb
import wfdb

from pipeline.data.resample import resample_case, resample_track
from pipeline.data.sources import get_source
from pipeline.data.sources.demo import write_vital
from pipeline.errors import CaseError

FS, OUT = 500, 125
PPG, ECG = "SNUADC/PLETH", "SNUADC/ECG_II"
SIGNALS = {"target_fs": OUT, "saturation_min_run": 10, "max_case_hours": 24, "max_native_hz": 500}
PARAMS = {"source": "local", "local": {"tracks": {"ppg": PPG, "ecg": ECG}}, "signals": SIGNALS}
DT0 = 1.6e9 + 12345.678  # a realistic recording start, not exact in binary
# Offsets of a track's first record after dtstart. Each is a whole number of native samples (2 ms),
# none exact in binary; 0.334 stands for 1/3 s, which lies between two samples (no placement on
# the 500 Hz grid comes within a quarter sample of it). At DT0, 0.7 and 0.334 give a `dt` just above
# the grid and 0.1 and 0.3 one just below.
OFFSETS = [0.1, 0.3, 0.7, 0.334]
SECONDS = 20
SIGMA = 0.015  # s: Gaussian pulses, band-limited well inside the 125 Hz output's passband
QUARTER_SAMPLE = 0.25 / FS


def pulse_times(first: float) -> np.ndarray:
    """True times (s after DT0) of the pulses of a channel."""
    return first + 0.77 * np.arange(int((SECONDS - 3) / 0.77))


def pulses(t: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((t[:, None] - times[None, :]) / SIGMA) ** 2).sum(axis=1)


def write_offset_case(path, offsets: dict[str, float], times: dict[str, np.ndarray], packed: bool) -> None:
    """Each track in one-second records at `DT0 + offset + k`, its samples taken at their true times."""
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, DT0, DT0 + SECONDS + 1
    for name, off in offsets.items():
        recs = []
        for k in range(SECONDS):
            t = off + k + np.arange(FS) / FS
            recs.append({"dt": DT0 + off + k, "val": pulses(t, times[name]).astype(np.float32)})
        vf.add_track(name, recs, srate=FS)
    assert vf.to_vital(str(path), packed=packed)


def peak_times(y: np.ndarray, fs: float, times: np.ndarray) -> np.ndarray:
    """Time of each pulse's peak in `y` (sample j at j / fs): the vertex of the parabola through the
    log of the three samples around the maximum (exact for a Gaussian)."""
    est = []
    for t in times:
        c = int(round(t * fs))
        m = c - 3 + int(np.nanargmax(y[c - 3 : c + 4]))
        a, b, d = np.log(y[m - 1 : m + 2])
        est.append((m + 0.5 * (a - d) / (a - 2 * b + d)) / fs)
    return np.array(est)


def case(tmp_path, i: int, packed: bool):
    ppg_off, ecg_off = OFFSETS[i], OFFSETS[(i + 1) % len(OFFSETS)]
    times = {ECG: pulse_times(2.0003), PPG: pulse_times(2.0003 + 0.2417)}
    path = tmp_path / f"offset-{i}-{packed}.vital"
    write_offset_case(path, {PPG: ppg_off, ECG: ecg_off}, times, packed)
    return path, {PPG: ppg_off, ECG: ecg_off}, times


# ---------------------------------------------------------------- 1. to the sample


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
@pytest.mark.parametrize("i", range(len(OFFSETS)), ids=[f"ppg+{o}" for o in OFFSETS])
def test_both_channels_within_a_quarter_sample_of_their_true_times(tmp_path, i, packed):
    path, _, times = case(tmp_path, i, packed)
    signals, _, attrs = resample_case(path, PARAMS)
    assert attrs["start_s"] == 0.0
    for ch, name in enumerate((PPG, ECG)):
        err = peak_times(signals[ch], OUT, times[name]) - times[name]
        assert np.abs(err).max() < QUARTER_SAMPLE, (name, err.max() * 1e3, "ms")


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
def test_records_start_at_the_nearest_sample_where_vitaldb_puts_some_one_late(tmp_path, packed):
    """The bug this fixes, documented: vitaldb's placement is one native sample (2 ms) late for some
    offsets, and the pulses come out of resampling 2 ms late; ours is exact for every offset."""
    source = get_source(PARAMS)
    late = []
    for i in range(len(OFFSETS)):
        path, offsets, times = case(tmp_path, i, packed)
        ours = {t.name: t.values for t in source.read_tracks(path)}
        vf = vitaldb.VitalFile(str(path), [PPG, ECG])
        for name in (PPG, ECG):
            theirs = vf.get_track_samples(name, 1 / FS)
            first = round(offsets[name] * FS)  # the track's first sample on the 500 Hz grid
            assert np.flatnonzero(np.isfinite(ours[name]))[0] == first
            shift = int(np.flatnonzero(np.isfinite(theirs))[0]) - first
            assert shift in (0, 1)
            y, _ = resample_track(theirs, FS, OUT)
            err = np.median(peak_times(y, OUT, times[name]) - times[name])
            assert abs(err - shift / FS) < QUARTER_SAMPLE, (name, offsets[name], shift, err)
            if shift:
                late.append(offsets[name])
    assert sorted(late) == [0.334, 0.334, 0.7, 0.7], late  # as PPG and as ECG


# ---------------------------------------------------------------- 2. span cap


def test_stray_record_days_later_is_refused_before_any_dense_array(tmp_path):
    """A 61 s recording and one record three days later: a recorded reason, not gigabytes."""
    rng = np.random.default_rng(0)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, DT0, DT0 + 61
    for name in (PPG, ECG):
        recs = [{"dt": DT0 + k, "val": rng.normal(size=FS).astype(np.float32)} for k in range(61)]
        recs.append({"dt": DT0 + 3 * 86400 + 17, "val": rng.normal(size=FS).astype(np.float32)})
        vf.add_track(name, recs, srate=FS)
    path = tmp_path / "stray.vital"
    assert vf.to_vital(str(path), packed=False)
    assert path.stat().st_size < 1e6
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(CaseError, match=r"recording spans 72\.0 h, over signals\.max_case_hours \(24 h\)"):
            resample_case(path, PARAMS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak  # the dense arrays would be 0.5 GB per track
    assert time.perf_counter() - t0 < 5


def test_span_cap_counts_the_file_header(tmp_path):
    """The array spans vitaldb's dtstart..dtend (the header's, widened by the records): a header
    dtend far past the records is capped too, since that is what would be allocated."""
    fs = 10  # a low rate keeps the 30 h array that is allowed below small
    x = np.zeros(10 * fs)
    path = tmp_path / "header.vital"
    write_vital(path, {PPG: x, ECG: x}, fs, DT0, packed=False)
    vf = vitaldb.VitalFile(str(path))
    vf.dtend = DT0 + 30 * 3600
    assert vf.to_vital(str(path), packed=False)
    with pytest.raises(CaseError, match=r"recording spans 30\.0 h, over signals\.max_case_hours"):
        resample_case(path, PARAMS)
    ok = dict(PARAMS, signals=dict(SIGNALS, max_case_hours=31))
    tracks = get_source(ok).read_tracks(path, 31 * 3600.0)
    assert [len(t.values) for t in tracks] == [30 * 3600 * fs] * 2
    assert all(np.isnan(t.values[10 * fs :]).all() and not np.isnan(t.values[: 10 * fs]).any() for t in tracks)


@pytest.mark.parametrize("sig_len_in_header", [True, False], ids=["sig_len", "inferred"])
def test_wfdb_record_longer_than_the_cap_is_refused_from_its_header(tmp_path, sig_len_in_header):
    """25 h at 1 Hz (a small file); without a length in the header, the length wfdb infers from the
    data file counts."""
    n = 25 * 3600 + 1
    folder = tmp_path / "p00" / "p000001"
    folder.mkdir(parents=True)
    x = np.stack([np.sin(np.arange(n) / 7.0), np.cos(np.arange(n) / 5.0)], axis=1)
    wfdb.wrsamp("3000001", fs=1, units=["NU", "mV"], sig_name=["PLETH", "II"], p_signal=x, fmt=["16", "16"],
                write_dir=str(folder))
    hea = folder / "3000001.hea"
    lines = hea.read_text().splitlines()
    assert lines[0].split() == ["3000001", "2", "1", str(n)]
    if not sig_len_in_header:
        hea.write_text("\n".join(["3000001 2 1"] + lines[1:]) + "\n")
        assert wfdb.rdheader(str(folder / "3000001")).sig_len is None
    pointer = tmp_path / "1.json"
    pointer.write_text(json.dumps({"record": str(folder / "3000001"), "name": "p00/p000001/3000001"}))
    params = {"source": "wfdb", "wfdb": {"root": str(tmp_path), "tracks": {"ppg": "PLETH", "ecg": "II"}},
              "signals": SIGNALS}
    with pytest.raises(CaseError, match=r"recording spans 25\.0 h, over signals\.max_case_hours \(24 h\)"):
        resample_case(pointer, params)
    tracks = get_source(params).read_tracks(pointer, 26 * 3600.0)
    assert [len(t.values) for t in tracks] == [n, n]


def test_a_track_over_the_sample_budget_is_refused_before_its_array(tmp_path):
    """A file claiming 1 MHz for 60 s of 500-sample records: 60 M samples, over 24 h at 500 Hz
    (signals.max_native_hz), refused from the records' headers in bounded memory; a 1 kHz track is
    read while it fits the budget (a faster track is read when it is shorter)."""
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, DT0, DT0 + 60
    rng = np.random.default_rng(4)
    for name in (PPG, ECG):
        vf.add_track(name, [{"dt": DT0 + k, "val": rng.normal(size=500).astype(np.float32)} for k in range(60)],
                     srate=1e6)
    fast = tmp_path / "1MHz.vital"
    assert vf.to_vital(str(fast), packed=False)
    tracemalloc.start()
    try:
        with pytest.raises(CaseError, match=r"would hold 60,000,000 samples \(1e\+06 Hz over 0\.02 h\), more than "
                                            r"signals\.max_case_hours at signals\.max_native_hz \(43,200,000\)"):
            resample_case(fast, PARAMS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak  # the 240 MB array was never allocated

    khz = tmp_path / "1kHz.vital"
    write_vital(khz, {PPG: rng.normal(size=10_000), ECG: rng.normal(size=10_000)}, 1000, DT0)
    src = get_source(PARAMS)
    assert [len(t.values) for t in src.read_tracks(khz, 3600.0, max_samples=10_000)] == [10_000, 10_000]
    with pytest.raises(CaseError, match="would hold 10,000 samples"):
        src.read_tracks(khz, 3600.0, max_samples=9_999)


def test_a_wfdb_track_over_the_sample_budget_is_refused_from_its_header(tmp_path):
    folder = tmp_path / "p00" / "p000002"
    folder.mkdir(parents=True)
    x = np.stack([np.sin(np.arange(2_000) / 7.0), np.cos(np.arange(2_000) / 5.0)], axis=1)
    wfdb.wrsamp("3000002", fs=125, units=["NU", "mV"], sig_name=["PLETH", "II"], p_signal=x, fmt=["16", "16"],
                write_dir=str(folder))
    pointer = tmp_path / "2.json"
    pointer.write_text(json.dumps({"record": str(folder / "3000002"), "name": "p00/p000002/3000002"}))
    src = get_source({"source": "wfdb", "wfdb": {"root": str(tmp_path), "tracks": {"ppg": "PLETH", "ecg": "II"}}})
    assert [len(t.values) for t in src.read_tracks(pointer, 3600.0, max_samples=2_000)] == [2_000, 2_000]
    with pytest.raises(CaseError, match=r"track PLETH would hold 2,000 samples \(125 Hz over 0\.00 h\)"):
        src.read_tracks(pointer, 3600.0, max_samples=1_999)


# ---------------------------------------------------------------- 3. on the grid, vitaldb's values


def assert_same_as_vitaldb(path):
    ours = get_source(PARAMS).read_tracks(path)
    vf = vitaldb.VitalFile(str(path), [PPG, ECG])
    for t in ours:
        theirs = vf.get_track_samples(t.name, 1 / FS)
        assert t.values.dtype == np.float32 and t.start_s == 0.0 and t.fs == FS
        assert t.values.shape == theirs.shape
        np.testing.assert_array_equal(t.values, theirs)  # NaN where NaN, bit for bit elsewhere
    return ours


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
def test_on_the_grid_equal_to_vitaldb_with_a_gap(tmp_path, packed):
    rng = np.random.default_rng(1)
    ppg, ecg = 50 + rng.normal(size=30 * FS), rng.normal(size=30 * FS)
    path = tmp_path / "grid.vital"
    write_vital(path, {PPG: ppg, ECG: ecg}, FS, 4102444800.0, gaps=[(10.0, 13.0)], packed=packed)
    ours = assert_same_as_vitaldb(path)
    for t in ours:
        assert np.isnan(t.values[10 * FS : 13 * FS]).all() and not np.isnan(t.values[: 10 * FS]).any()


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
def test_on_the_grid_equal_to_vitaldb_integer_samples_with_gain_and_offset(tmp_path, packed):
    """int16 samples (fmt 5): physical = raw * gain + offset, in float32 as vitaldb; with a gap.
    A packed file fills the gap with vitaldb's int16 gap value (-32768), which vitaldb's reader
    scales into samples (-32768 * gain + offset: -362.5 for this PPG); ours reads it as no data."""
    rng = np.random.default_rng(2)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 20
    for name, gain, offset in ((PPG, 0.0123, 40.5), (ECG, 0.000305, -1.25)):
        raw = rng.integers(-3000, 3000, size=20 * FS).astype(np.int16)
        recs = [{"dt": vf.dtstart + k, "val": raw[k * FS : (k + 1) * FS]} for k in range(20) if not 5 <= k < 8]
        trk = vf.add_track(name, recs, srate=FS)
        trk.fmt, trk.gain, trk.offset = 5, gain, offset
    path = tmp_path / "int16.vital"
    assert vf.to_vital(str(path), packed=packed)
    theirs = vitaldb.VitalFile(str(path), [PPG, ECG])
    assert theirs.trks[PPG].recs[0]["val"].dtype == np.int16
    if not packed:
        assert_same_as_vitaldb(path)
        return
    gap = slice(5 * FS, 8 * FS)
    for t in get_source(PARAMS).read_tracks(path):
        expected = theirs.get_track_samples(t.name, 1 / FS)
        assert np.all(expected[gap] == np.float32(-32768) * np.float32(theirs.trks[t.name].gain)
                      + np.float32(theirs.trks[t.name].offset))  # vitaldb: the gap value as a sample
        expected[gap] = np.nan
        np.testing.assert_array_equal(t.values, expected)


@pytest.mark.parametrize("order", ["overlapping", "reversed"])
def test_overlapping_or_unordered_records_as_vitaldb_last_record_wins(tmp_path, order):
    rng = np.random.default_rng(3)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 12
    for name in (PPG, ECG):
        if order == "overlapping":  # 1.5 s records every second, one all-NaN record over valid ones
            recs = [{"dt": vf.dtstart + k, "val": rng.normal(size=FS * 3 // 2).astype(np.float32)} for k in range(10)]
            recs.insert(4, {"dt": vf.dtstart + 2.5, "val": np.full(FS, np.nan, np.float32)})
        else:
            recs = [{"dt": vf.dtstart + k, "val": rng.normal(size=FS).astype(np.float32)} for k in range(10)][::-1]
        vf.add_track(name, recs, srate=FS)
    path = tmp_path / f"{order}.vital"
    assert vf.to_vital(str(path), packed=False)
    ours = assert_same_as_vitaldb(path)
    if order == "overlapping":
        assert np.isnan(ours[0].values[int(2.5 * FS) : int(3 * FS)]).all()


def test_record_with_a_zeroed_timestamp_is_left_out_with_a_warning(tmp_path, caplog):
    x = np.random.default_rng(4).normal(size=10 * FS).astype(np.float32)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 10
    for name in (PPG, ECG):
        recs = [{"dt": vf.dtstart + k, "val": x[k * FS : (k + 1) * FS]} for k in range(10)]
        recs.insert(3, {"dt": 0.0, "val": np.ones(FS, np.float32)})
        vf.add_track(name, recs, srate=FS)
    path = tmp_path / "zeroed.vital"
    assert vf.to_vital(str(path), packed=False)
    with caplog.at_level(logging.WARNING, logger="pipeline.data.sources._vital"):
        ours = assert_same_as_vitaldb(path)
    np.testing.assert_array_equal(ours[0].values, x)
    assert "1 of 11 records lie outside the recording" in caplog.text
