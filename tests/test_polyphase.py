"""The filter run while a case is read (pipeline/data/polyphase.py, `resample.Streamer`, the reader's
inflating thread) gives what filtering the whole array gives (issue 9, point 0's speed target)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import vitaldb
from scipy.signal import resample_poly

from pipeline.data import polyphase
from pipeline.data.polyphase import Polyphase, StreamedTrack, bridge, nan_runs
from pipeline.data.resample import Streamer, resample_case
from pipeline.data.sources import _vitalfile, get_source
from pipeline.data.sources._vital import place_wave
from pipeline.data.sources.demo import write_vital
from pipeline.errors import CaseError

FS, OUT = 500, 125
PPG, ECG = "SNUADC/PLETH", "SNUADC/ECG_II"
SIG = {"source": "local", "local": {"tracks": {"ppg": PPG, "ecg": ECG}},
       "signals": {"target_fs": OUT, "saturation_min_run": 10, "max_case_hours": 24, "max_native_hz": 500}}


def test_gaps_are_bridged_as_np_interp_would():
    x = np.random.default_rng(5).normal(size=20_000).astype(np.float32)
    for a, b in ((0, 7), (1000, 2000), (5000, 5001), (19_997, 20_000)):
        x[a:b] = np.nan
    nan = np.isnan(x)
    expected = x.copy()
    good = np.flatnonzero(~nan)
    expected[nan] = np.interp(np.flatnonzero(nan), good, x[good])
    bridge(x, *nan_runs(nan))
    np.testing.assert_array_equal(x, expected)


def whole(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """The reference: gaps bridged, then scipy's resample_poly on the whole array."""
    x = x.copy()
    bridge(x, *nan_runs(np.isnan(x)))
    return resample_poly(x, up, down, padtype="line").astype(np.float32)


def stream(x: np.ndarray, up: int, down: int, rng, room: int = 0, min_out: int = 300):
    """Write x into a NaN-filled array in random pieces, in order, telling a StreamedTrack."""
    dense = np.full(len(x) + room, np.nan, np.float32)
    st = StreamedTrack(dense, Polyphase(up, down), min_out=min_out)
    pos = 0
    while pos < len(x):
        b = min(len(x), pos + int(rng.integers(1, 4000)))
        dense[pos:b] = x[pos:b]
        st.placed(pos, b)
        pos = b
    return st, dense


@pytest.mark.parametrize("up,down", [(1, 4), (1, 2), (5, 12), (125, 128), (2, 3)])
@pytest.mark.parametrize("gaps", ["none", "inside", "leading", "trailing"])
def test_streamed_equals_resample_poly_on_the_whole_array(up, down, gaps):
    rng = np.random.default_rng(up * 100 + down + len(gaps))
    n = int(rng.integers(30_000, 90_000))
    x = np.cumsum(rng.normal(size=n)).astype(np.float32)
    if gaps == "inside":  # runs across piece boundaries, one sample, one long
        for a, k in ((5_000, 1), (9_000, 3_500), (20_000, 700)):
            x[a : a + k] = np.nan
    elif gaps == "leading":
        x[:1_234] = np.nan
    elif gaps == "trailing":
        x[-2_345:] = np.nan
    st, dense = stream(x, up, down, rng, room=777)
    before = st.j
    assert before > st.poly.first_inside() + 1_000  # most of the filter ran while the track arrived
    values = dense[:n]
    y = st.finish(values)
    ref = whole(x, up, down)
    assert y is not None and y.shape == ref.shape and y.dtype == np.float32
    j0, j1 = st.poly.first_inside(), st.poly.end_inside(n)
    np.testing.assert_array_equal(y[j0:j1], ref[j0:j1])  # inside: the same sums, bit for bit
    np.testing.assert_array_equal(y, ref)  # the ends too: the line pad in float32, as upfirdn
    np.testing.assert_array_equal(values, x)  # the track as written: gaps NaN again


def test_a_write_below_the_filtered_part_stops_streaming_and_restores_the_array():
    rng = np.random.default_rng(7)
    x = np.cumsum(rng.normal(size=40_000)).astype(np.float32)
    x[10_000:10_500] = np.nan  # a gap, bridged while streaming, that a late record fills in part
    st, dense = stream(x, 1, 4, rng)
    assert st.bridged > 11_000 and st.j > st.poly.first_inside()
    late = rng.normal(size=200).astype(np.float32)
    dense[10_100:10_300] = late  # a record out of order, over the bridged gap
    st.placed(10_100, 10_300)
    assert st.finish(dense) is None  # the caller filters the whole array
    expected = x.copy()
    expected[10_100:10_300] = late
    np.testing.assert_array_equal(dense, expected)  # the rest of the gap is NaN again


def test_a_track_cut_shorter_than_written_is_filtered_as_cut():
    """read_vital trims a track to the clock's length after placing it; a run reaching the new end
    then takes only its left neighbour, as on the cut array."""
    rng = np.random.default_rng(8)
    x = np.cumsum(rng.normal(size=50_000)).astype(np.float32)
    x[44_000:46_000] = np.nan
    st, dense = stream(x, 1, 4, rng)
    n = 45_000
    y = st.finish(dense[:n])
    np.testing.assert_array_equal(y, whole(x[:n], 1, 4))
    np.testing.assert_array_equal(dense[:n], x[:n])


def test_a_write_into_a_run_still_waiting_for_its_next_sample_is_seen():
    """A NaN run at the end of what has arrived waits for its next sample (and is not scanned
    again); a record out of order that fills part of it, above what is bridged (streaming goes
    on), splits it in two."""
    rng = np.random.default_rng(10)
    x = np.cumsum(rng.normal(size=60_000)).astype(np.float32)
    dense = np.full(len(x), np.nan, np.float32)
    st = StreamedTrack(dense, Polyphase(1, 4), min_out=300)

    def write(a, b, nan_from=None):
        dense[a:b] = x[a:b]
        if nan_from is not None:
            dense[nan_from:b] = np.nan
        st.placed(a, b)

    for a in range(0, 20_000, 1_000):
        write(a, a + 1_000)
    write(30_000, 31_000)  # the gap 20,000-30,000 is bridged
    write(40_000, 41_000, nan_from=40_500)  # 31,000-40,000 bridged; 40,500-41,000 waits
    assert (st.bridged, st.scanned) == (40_500, 41_000) and st.alive
    write(40_700, 40_800)  # into the waiting run
    for a in range(41_000, 60_000, 1_000):
        write(a, a + 1_000)
    assert st.alive and st.bridged > 41_000
    as_written = dense.copy()
    for s0, e0 in st.runs:  # (bridged in place until finish)
        as_written[s0:e0] = np.nan
    assert (40_500, 40_700) in st.runs and (40_800, 41_000) in st.runs
    y = st.finish(dense)
    np.testing.assert_array_equal(dense, as_written)
    np.testing.assert_array_equal(y, whole(as_written, 1, 4))


def test_a_cut_inside_a_leading_run_leaves_no_sample_and_no_error():
    x = np.full(10_000, np.nan, np.float32)
    x[1_000:5_000] = np.arange(4_000, dtype=np.float32)
    st, dense = stream(x, 1, 4, np.random.default_rng(11))
    assert st.bridged >= 1_000  # the leading run was bridged from sample 1,000
    assert st.finish(dense[:900]) is None  # the caller says "no data"
    assert np.isnan(dense[:1_000]).all()


def test_a_track_shorter_than_the_filter_is_left_to_the_caller():
    x = np.arange(100, dtype=np.float32)
    st, dense = stream(x, 1, 4, np.random.default_rng(9))
    assert st.finish(dense) is None


@pytest.fixture
def small_steps(monkeypatch):
    """Stream in small pieces, so that cases of seconds stream as hours do."""
    monkeypatch.setattr(_vitalfile, "STEP", 700)
    monkeypatch.setattr(polyphase, "MIN_OUT", 150)
    streamed = []
    take = Streamer.take

    def spy(self, name, values):
        y = take(self, name, values)
        streamed.append(y is not None)
        return y

    monkeypatch.setattr(Streamer, "take", spy)
    return streamed


def int16_case(path, packed: bool, order: str) -> None:
    """int16 tracks with gain and offset (physical values made piece by piece), a 3 s gap; records
    in order, reversed, or one record written again over earlier ones."""
    rng = np.random.default_rng(11)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 60
    for name, gain, offset in ((PPG, 0.0123, 40.5), (ECG, 0.000305, -1.25)):
        raw = (2000 * np.sin(np.arange(60 * FS) / 40) + rng.integers(-50, 50, 60 * FS)).astype(np.int16)
        recs = [{"dt": vf.dtstart + k, "val": raw[k * FS : (k + 1) * FS]} for k in range(60) if not 20 <= k < 23]
        if order == "reversed":
            recs = recs[::-1]
        elif order == "again":
            recs.append({"dt": vf.dtstart + 5.5, "val": raw[:FS]})
        trk = vf.add_track(name, recs, srate=FS)
        trk.fmt, trk.gain, trk.offset = 5, gain, offset
    assert vf.to_vital(str(path), packed=packed)


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
@pytest.mark.parametrize("order", ["in-order", "reversed", "again"])
def test_resample_case_streamed_equals_whole_track(tmp_path, small_steps, packed, order):
    path = tmp_path / "case.vital"
    int16_case(path, packed, order)
    a = resample_case(path, SIG, stream=True)
    b = resample_case(path, SIG, stream=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    # streamed where records came in order (a packed file is one record per track: always in order)
    assert small_steps == [True, True] if packed or order == "in-order" else small_steps == [False, False]
    if not packed:  # the samples as placed, piece by piece, equal vitaldb's (its grid, the gap NaN)
        vf = vitaldb.VitalFile(str(path), [PPG, ECG])
        for t in get_source(SIG).read_tracks(path):
            np.testing.assert_array_equal(t.values, vf.get_track_samples(t.name, 1 / FS))


@pytest.mark.parametrize("packed", [False, True], ids=["records", "packed"])
def test_float_case_with_gaps_streamed_equals_whole_track(tmp_path, small_steps, packed):
    rng = np.random.default_rng(12)
    t = np.arange(90 * FS) / FS
    ppg, ecg = 60 + 10 * np.sin(2 * np.pi * 1.2 * t), np.sin(2 * np.pi * 7 * t) + 0.1 * rng.normal(size=len(t))
    path = tmp_path / "float.vital"
    write_vital(path, {PPG: ppg, ECG: ecg}, FS, 4102444800.0, gaps=[(0, 2), (30, 41.5), (88, 90)], packed=packed)
    a = resample_case(path, SIG, stream=True)
    b = resample_case(path, SIG, stream=False)
    assert small_steps == [True, True]
    for u, v in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(u, v)


def test_a_long_record_out_of_order_over_nan_samples(tmp_path, small_steps):
    """A record longer than the reader's step that starts below what was already made physical,
    over NaN samples of an earlier record still waiting to be bridged: nothing of it is bridged or
    filtered before it is reported, the NaN it writes stays NaN, and streaming goes on."""
    rng = np.random.default_rng(1)
    sig = (np.sin(np.arange(12 * FS) / 30) + 0.01 * rng.normal(size=12 * FS)).astype(np.float32)
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, 4102444800.0, 4102444800.0 + 12
    second, third = sig[2000:2600].copy(), sig[2400:3400].copy()
    second[300:] = np.nan  # ends with NaN samples
    third[:100] = np.nan  # starts below the second's end, with NaN samples; 1000 > STEP samples
    recs = [(0, sig[0:1500]), (2000, second), (2400, third), (3400, sig[3400:])]
    for name in (PPG, ECG):
        vf.add_track(name, [{"dt": vf.dtstart + a / FS, "val": v} for a, v in recs], srate=FS)
    path = tmp_path / "late.vital"
    assert vf.to_vital(str(path), packed=False)
    a = resample_case(path, SIG, stream=True)
    b = resample_case(path, SIG, stream=False)
    np.testing.assert_array_equal(a[0], b[0])
    assert small_steps == [True, True]  # written above what was bridged
    kept = _vitalfile.read_vital(path, [PPG, ECG], mode="keep")  # records kept, then placed: the reference
    for t in get_source(SIG).read_tracks(path):
        np.testing.assert_array_equal(t.values, place_wave(kept.tracks[t.name], kept.dtstart, kept.dtend, kept.packed))
        assert np.isnan(t.values[2400:2500]).all()


def inflating() -> list:
    return [t for t in threading.enumerate() if t.name == "vital-inflate"]


def test_the_inflating_thread_ends_with_the_read_whatever_stops_it(tmp_path, monkeypatch):
    """In small pieces, so the queue is full (the thread blocked) when the reader stops."""
    monkeypatch.setattr(_vitalfile, "IN_CHUNK", 512)
    monkeypatch.setattr(_vitalfile, "OUT_CHUNK", 2048)
    path = tmp_path / "ok.vital"
    x = np.sin(np.arange(200 * FS) / 50)
    write_vital(path, {PPG: x, ECG: x}, FS, 4102444800.0, packed=True)
    raw = path.read_bytes()
    cut = tmp_path / "cut.vital"
    cut.write_bytes(raw[: len(raw) // 2])
    bad = tmp_path / "bad.vital"
    bad.write_bytes(raw[:5000] + bytes(b ^ 0x5A for b in raw[5000:9000]) + raw[9000:])
    src = get_source(SIG)
    for p in (cut, bad):
        with pytest.raises(CaseError):
            src.read_tracks(p)
        assert not inflating()
    with pytest.raises(CaseError, match="spans"):  # the reader stops early: the thread still ends
        src.read_tracks(path, max_span_s=60.0)
    assert not inflating()
    assert len(src.read_tracks(path)[0].values) == 200 * FS and not inflating()
