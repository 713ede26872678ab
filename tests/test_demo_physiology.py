"""The demo's physiology (pipeline/data/sources/demo.py), measured on what it writes, and numeric tracks
read back on the waveforms' clock (`Source.read_numerics`)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import vitaldb
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from pipeline.data.sources import get_source
from pipeline.data.sources._vital import ART_MBP_TRACK, rows_from_vitaldb_csv
from pipeline.data.sources.demo import (
    AGE_RANGE,
    ART_DBP,
    ART_MBP,
    ART_SBP,
    ARTEFACT_VALUES,
    BMI_RANGE,
    HYPOTENSION_MMHG,
    NATIVE_FS,
    NO_ART_EVERY,
    SYSTOLIC_PEAK_S,
    DemoCase,
    add_artefacts,
    arterial_numerics,
    demo_case,
    demo_case_rows,
    demo_subject,
    episode_rate,
    pat_s,
    synth_signals,
    write_demo_case,
)
from pipeline.errors import CaseError
from tests.helpers import demo_section

PPG, ECG = "SNUADC/PLETH", "SNUADC/ECG_II"
TRACKS = {"ppg": PPG, "ecg": ECG}
CFG = demo_section(n_cases=48, duration_s=1500, seed=0, tracks=TRACKS)
CLEAN = dict(CFG, artefacts_per_hour=0.0)  # for the relations measured beat by beat: no motion artefact in the way
NUMERICS = [ART_MBP, ART_SBP, ART_DBP]
FS = NATIVE_FS


def source(cfg=CFG):
    return get_source({"source": "demo", "demo": cfg})


def write_case(tmp_path, caseid, cfg=CFG):
    path = tmp_path / f"{caseid}.vital"
    row = next(r for r in demo_case_rows(cfg) if r["caseid"] == caseid)
    write_demo_case(caseid, path, cfg, row, PPG, ECG)
    return path


def single_episode_case(cfg=CLEAN) -> DemoCase:
    """The first clean case with an arterial line and one sustained, gradual episode after a baseline."""
    for caseid in range(9, cfg["n_cases"]):
        case = demo_case(cfg, caseid)
        if case.has_art and len(case.episodes) == 1:
            ep = case.episodes[0]
            if ep.end_s - ep.start_s >= 60 and ep.decline_s >= 150 and ep.start_s - ep.decline_s >= 300:
                return case
    raise AssertionError("no case with one sustained episode after a baseline")


def beats(ppg: np.ndarray, ecg: np.ndarray, fs: float = FS):
    """Per ECG beat: R-peak time (s), R-to-PPG-upstroke delay (s, steepest rise of the PPG 0.15-0.5 s
    after the R peak), PPG pulse amplitude (peak after the upstroke minus the minimum before it)."""
    r, _ = find_peaks(ecg, height=0.6, distance=int(0.25 * fs))
    slope = uniform_filter1d(np.gradient(uniform_filter1d(ppg, 9)), 9)
    delay, amp = np.full(len(r), np.nan), np.full(len(r), np.nan)
    for k, i in enumerate(r):
        a, b = i + int(0.15 * fs), i + int(0.5 * fs)
        if b + int(0.3 * fs) >= len(ppg) or not np.isfinite(slope[a:b]).all():
            continue
        j = a + int(np.argmax(slope[a:b]))
        delay[k] = (j - i) / fs
        amp[k] = ppg[j : j + int(0.25 * fs)].max() - ppg[j - int(0.1 * fs) : j].min()
    return r / fs, delay, amp


# --- traits -----------------------------------------------------------------------------------------

def test_traits_are_per_subject_in_range_and_asa_rises_with_age():
    cfg = dict(CFG, n_cases=300)
    rows = demo_case_rows(cfg)
    by_id = {r["caseid"]: r for r in rows}
    traits = ("age", "sex", "bmi", "asa")
    assert by_id[300]["subjectid"] == by_id[2]["subjectid"]
    assert [by_id[300][k] for k in traits] == [by_id[2][k] for k in traits]  # one subject, one set of traits
    assert by_id[300]["hr_bpm"] != by_id[2]["hr_bpm"]  # two cases nonetheless
    for r in rows:
        assert isinstance(r["age"], int) and AGE_RANGE[0] <= r["age"] <= AGE_RANGE[1]
        assert r["sex"] in ("M", "F")
        assert BMI_RANGE[0] <= r["bmi"] <= BMI_RANGE[1] and r["bmi"] == round(r["bmi"], 1)
        assert isinstance(r["asa"], int) and 1 <= r["asa"] <= 4
        assert r["has_art"] is (r["caseid"] % NO_ART_EVERY != 0)
    assert {r["sex"] for r in rows} == {"M", "F"} and {r["asa"] for r in rows} == {1, 2, 3, 4}
    age, asa = np.array([r["age"] for r in rows]), np.array([r["asa"] for r in rows])
    assert asa[age >= 65].mean() > asa[age < 40].mean() + 1.0
    # the same traits wherever they are drawn: the rows, the case's truth, the subject
    case = demo_case(cfg, 300)
    assert case.subject == demo_subject(0, by_id[2]["subjectid"]) == demo_case(cfg, 2).subject
    assert [getattr(case.subject, k) for k in traits] == [by_id[300][k] for k in traits]


def test_vitaldb_rows_carry_bmi_asa_and_the_arterial_line():
    clinical = "caseid,subjectid,casestart,caseend,age,sex,bmi,asa\n1,11,0,30,60,M,22.5,2\n2,12,0,30,45,F,,\n3,13,0,30,50,F,31.2,3.0\n"
    trks = "caseid,tname,tid\n" + "".join(f"{c},{t},x\n" for c in (1, 2, 3) for t in (PPG, ECG)) + f"1,{ART_MBP_TRACK},y\n3,Solar8000/ART_SBP,z\n"
    rows = {r["caseid"]: r for r in rows_from_vitaldb_csv(clinical, trks, PPG, ECG)}
    assert (rows[1]["bmi"], rows[1]["asa"], rows[1]["has_art"]) == (22.5, 2, True)
    assert (rows[2]["bmi"], rows[2]["asa"], rows[2]["has_art"]) == ("", "", False)
    assert (rows[3]["bmi"], rows[3]["asa"], rows[3]["has_art"]) == (31.2, 3, False)  # SBP alone is not the MAP track


# --- blood pressure ---------------------------------------------------------------------------------

def test_episodes_are_where_map_is_below_65_some_sustained_and_late_some_brief():
    sustained_late, brief, counts = 0, 0, []
    for caseid in range(1, CFG["n_cases"] + 1):
        case = demo_case(CFG, caseid)
        t = np.arange(len(case.map_grid), dtype=np.float64)
        inside = np.zeros(len(t), dtype=bool)
        for ep in case.episodes:
            inside |= (t > ep.start_s) & (t < ep.end_s)
            below = ep.end_s - ep.start_s
            decline = ep.start_s - ep.decline_s
            assert 15 <= below <= 360 and (300 <= decline <= 600 or 10 <= decline <= 40)  # gradual or abrupt onset
            sustained_late += below >= 60 and ep.start_s >= 480
            brief += below < 60
        on_edge = np.zeros(len(t), dtype=bool)
        for ep in case.episodes:
            on_edge |= (np.abs(t - ep.start_s) < 1) | (np.abs(t - ep.end_s) < 1)
        below = case.map_grid < HYPOTENSION_MMHG
        assert (below == inside)[~on_edge].all(), caseid  # MAP < 65 exactly inside the episodes
        assert 75 - 6 <= np.median(case.map_grid[~inside]) <= 100 + 6
        counts.append(len(case.episodes))
    assert sustained_late >= 3 and brief >= 1
    assert max(counts) <= 3 and sum(counts) >= 10


def test_episode_risk_follows_the_traits_only_when_asked():
    """By default every patient has the same risk (no trait, and no pulse shape, is a shortcut to the
    labels); risk_from_traits: true makes older and sicker patients have more episodes."""
    def counts(cfg):
        cases = [demo_case(cfg, c) for c in range(1, 400)]
        return np.array([len(c.episodes) for c in cases]), np.array([c.subject.asa for c in cases]), np.array([c.subject.age for c in cases])

    n, asa, age = counts(dict(CFG, n_cases=400, risk_from_traits=True))
    assert n[asa >= 3].mean() > n[asa == 1].mean() + 0.3
    n, asa, age = counts(dict(CFG, n_cases=400))
    assert len({episode_rate(demo_subject(0, 1000 + c), False) for c in range(1, 100)}) == 1
    assert abs(n[asa >= 3].mean() - n[asa == 1].mean()) < 0.25 and abs(np.corrcoef(n, age)[0, 1]) < 0.1


def test_some_onsets_are_abrupt_and_some_declines_recover_without_an_event():
    cfg = dict(CFG, n_cases=400)
    declines, near = [], []
    for c in range(1, 400):
        case = demo_case(cfg, c)
        declines += [ep.start_s - ep.decline_s for ep in case.episodes]
        for nm in case.near_misses:
            t = np.arange(int(nm.decline_s), int(nm.recovered_s))
            assert case.map_at(t).min() >= HYPOTENSION_MMHG  # a near miss never crosses 65
            assert case.map_at(nm.nadir_s) <= nm.nadir_mmHg + 0.5  # (on the 1 s grid, where the recovery turns sharply)
            near.append(case.map_baseline - nm.nadir_mmHg)
    abrupt = np.mean(np.array(declines) <= 40)
    assert 0.2 < abrupt < 0.4  # demo.abrupt_fraction 0.3
    assert len(near) > 50 and np.median(near) > 10  # 0.5 drawn per case (those that fit beside the episodes), well below the baseline
    assert all(ep.start_s - ep.decline_s >= 300 for c in range(1, 60) for ep in demo_case(dict(cfg, abrupt_fraction=0.0), c).episodes)
    assert not any(demo_case(dict(cfg, near_miss_rate=0.0), c).near_misses for c in range(1, 60))


def test_written_map_numerics_match_the_generator(tmp_path):
    case = single_episode_case()
    path = write_case(tmp_path, case.caseid)
    num = source().read_numerics(path, [*NUMERICS, "Solar8000/HR"])
    assert set(num) == set(NUMERICS)  # a track the file lacks is absent
    t, mbp = num[ART_MBP]
    assert t.dtype == mbp.dtype == np.float64 and (np.diff(t) > 0).all()
    assert 0 <= t[0] < 2 and t[-1] < CFG["duration_s"]
    artefact = np.isin(mbp, ARTEFACT_VALUES)
    assert 2 <= artefact.sum() <= 12  # a few flush / zeroing samples
    err = mbp[~artefact] - case.map_at(t[~artefact])
    assert np.abs(err).max() < 5 and np.median(np.abs(err)) < 1.5
    # SBP and DBP around MAP by the subject's pulse pressure
    pp = case.subject.pulse_pressure
    for name, share in ((ART_SBP, 2 / 3), (ART_DBP, -1 / 3)):
        tt, v = num[name]
        assert np.array_equal(tt, t)
        assert np.mean(v[~artefact] - mbp[~artefact]) == pytest.approx(share * pp, abs=0.5)


def test_a_few_cases_have_a_gap_in_their_numerics():
    gaps = []
    for caseid in range(9, 30):
        case = demo_case(CFG, caseid)
        num = arterial_numerics(case, CFG["duration_s"], np.random.default_rng(caseid))
        if num:
            gaps.append(np.diff(num[ART_MBP][0]).max())
    gaps = np.array(gaps)
    assert 1 <= (gaps >= 60).sum() < len(gaps) / 2 and (gaps[gaps < 60] < 2.01).all()
    assert (gaps <= 120 + 2).all()


def test_a_case_without_an_arterial_line_has_no_numeric_tracks(tmp_path):
    cfg = dict(CFG, duration_s=240)
    no_art = write_case(tmp_path, 2 * NO_ART_EVERY, cfg)
    art = write_case(tmp_path, 2 * NO_ART_EVERY + 1, cfg)
    assert source(cfg).read_numerics(no_art, NUMERICS) == {}
    assert not {n for n in vitaldb.VitalFile(str(no_art)).get_track_names() if n.startswith("Solar8000/")}
    vf = vitaldb.VitalFile(str(art))
    assert {n for n in vf.get_track_names() if n.startswith("Solar8000/")} == set(NUMERICS)
    assert {vf.trks[n].unit for n in NUMERICS} == {"mmHg"}
    source(cfg).validate(no_art)  # the waves are there as usual


@pytest.mark.parametrize("seed", [0, 1])
def test_each_fault_case_fails_its_own_quality_rule_only(tmp_path, config, seed):
    """The faults of cases 2-8 whatever the physiology: the clip fault saturates a fixed share of its
    stretch, so a large PPG does not turn it into a flat fault; clean cases keep every window."""
    from pipeline.data.download import download_batch
    from pipeline.data.resample import resample_batch
    from pipeline.data.windows import windows_batch

    demo = dict(CLEAN, n_cases=10, duration_s=240, seed=seed)  # no motion artefact: the clean cases are clean
    rows = demo_case_rows(demo)
    status = download_batch(rows, {"source": "demo", "demo": demo, "download": None}, tmp_path / "cases", tmp_path / "d.json")
    assert {c for c, s in status.items() if s["status"] == "failed"} == {"7", "8"}
    done = resample_batch(status, {"source": "demo", "demo": {"tracks": TRACKS}, "signals": config["signals"]},
                          tmp_path / "rs", tmp_path / "r.json")
    params = {"tracks": [PPG, ECG], **{k: config[k] for k in ("signals", "window", "quality")}}
    shards = {s: tmp_path / "w" / s / "shard-0000.h5" for s in ("train", "val", "test")}
    stats = windows_batch([{**r, "split": "train"} for r in rows], done, params, shards, tmp_path / "stats.json", 0)
    for caseid, rule in {"2": "flat", "3": "clipping", "4": "nan", "5": "amplitude", "6": "heart_rate"}.items():
        rejected = stats[caseid]["rejected"]
        assert rejected[rule] > 0 and sum(rejected.values()) == rejected[rule], (caseid, rejected)
    for caseid in ("1", "9", "10"):
        assert stats[caseid]["kept"] == stats[caseid]["cut"] > 0, (caseid, {k: v for k, v in stats[caseid]["rejected"].items() if v})


# --- relations, measured on the written waveforms ---------------------------------------------------

@pytest.fixture(scope="module")
def episode_case(tmp_path_factory):
    """(truth, PPG, ECG, numerics) of a written case with one sustained episode."""
    case = single_episode_case()
    path = write_case(tmp_path_factory.mktemp("demo"), case.caseid)
    src = source()
    ppg, ecg = (tr.values.astype(np.float64) for tr in src.read_tracks(path))
    return case, ppg, ecg, src.read_numerics(path, NUMERICS)


def test_pulse_arrival_time_falls_as_map_rises(episode_case):
    case, ppg, ecg, num = episode_case
    rt, delay, _ = beats(ppg, ecg)
    t, mbp = num[ART_MBP]
    ok = (mbp > 20) & (mbp < 200)
    t, mbp = t[ok], mbp[ok]
    pat, map_w = [], []
    for start in np.arange(0, CFG["duration_s"] - 30, 30.0):
        b = (rt >= start) & (rt < start + 30) & np.isfinite(delay)
        m = (t >= start) & (t < start + 30)
        if b.sum() >= 10 and m.sum() >= 5:
            pat.append(np.median(delay[b]))
            map_w.append(np.median(mbp[m]))
    pat, map_w = np.array(pat), np.array(map_w)
    assert np.ptp(map_w) > 15  # the episode spans a range of pressures
    assert np.corrcoef(pat, map_w)[0, 1] < -0.7
    slope = np.polyfit(map_w, pat, 1)[0] * 1000
    assert -1.6 < slope < -0.8  # ms per mmHg: PAT_SLOPE_MS, measured
    # the upstroke's steepest point comes a fixed time after the arrival of the model
    b = np.isfinite(delay)
    assert np.median(delay[b] - pat_s(case.map_at(rt[b]), case.subject)) == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize("slope", [0.0, 0.02, -0.01])
def test_heart_rate_rises_before_an_episode_and_the_ppg_amplitude_follows_the_configured_slope(tmp_path, slope):
    """The baroreflex always; the PPG amplitude's coupling to MAP only as `demo.ppg_amplitude_slope` says
    (none by default, falling with MAP at +0.02 as the demo had it, rising at -0.01)."""
    cfg = dict(CLEAN, ppg_amplitude_slope=slope)
    case = single_episode_case(cfg)
    src = source(cfg)
    ppg, ecg = (tr.values.astype(np.float64) for tr in src.read_tracks(write_case(tmp_path, case.caseid, cfg)))
    ep = case.episodes[0]
    rt, _, amp = beats(ppg, ecg)
    hr = np.r_[np.nan, 60 / np.diff(rt)]
    baseline = (rt >= ep.decline_s - 120) & (rt < ep.decline_s)
    before = (rt >= ep.start_s - 300) & (rt < ep.start_s)
    assert baseline.sum() > 50 and before.sum() > 200
    assert np.nanmean(hr[before]) > np.nanmean(hr[baseline]) + 3
    ratio = np.nanmedian(amp[before]) / np.nanmedian(amp[baseline])
    drop = case.map_at(ep.decline_s) - np.median(case.map_at(np.arange(ep.start_s - 300, ep.start_s)))  # mmHg
    expected = 1 - slope * drop  # the amplitude's relative change over that fall
    assert ratio == pytest.approx(expected, abs=0.04), (ratio, expected)


def test_motion_artefacts_replace_the_pulse_and_leave_the_ecg(tmp_path):
    ppg, ecg = synth_signals(72.0, 120.0, np.random.default_rng(5))
    out = add_artefacts(ppg, [(30.0, 60.0)], np.random.default_rng(6))
    inside = slice(30 * FS, 60 * FS)
    assert np.array_equal(out[: 30 * FS], ppg[: 30 * FS]) and np.array_equal(out[60 * FS :], ppg[60 * FS :])
    lag = int(round(60 / 72 * FS))  # one beat

    def beat_to_beat(x):
        return np.corrcoef(x[:-lag], x[lag:])[0, 1]

    assert beat_to_beat(ppg[inside]) > 0.8 and beat_to_beat(out[inside]) < 0.5  # no pulse left inside
    assert 0.3 * np.ptp(ppg[inside]) < np.ptp(out[inside]) < 5 * np.ptp(ppg[inside])  # of the pulse's size: no amplitude rule catches it
    # in written cases: the clean ones get them at demo.artefacts_per_hour, the ECG is untouched
    cfg = dict(CFG, duration_s=600, artefacts_per_hour=30.0)
    none, some = (source(c).read_tracks(write_case(tmp_path / str(i), 9, c)) for i, c in enumerate((dict(cfg, artefacts_per_hour=0.0), cfg)))
    assert np.array_equal(none[1].values, some[1].values) and not np.array_equal(none[0].values, some[0].values)


def mean_beat(subject, seconds=90.0):
    """The PPG beat of `subject` at a constant MAP of 85 and 60 bpm, from its arrival for 0.7 s,
    baseline removed, systolic peak 1, averaged over the beats of `seconds`."""
    case = DemoCase(0, subject, 60.0, True, 85.0, np.full(int(seconds) + 1, 85.0), ())
    ppg, ecg = synth_signals(60.0, seconds, np.random.default_rng(0), case=case)
    rt, _, _ = beats(ppg, ecg)
    arrival = np.round((rt + pat_s(85.0, subject)) * FS).astype(int)
    segs = [ppg[i : i + int(0.7 * FS)] for i in arrival[1:-2]]
    beat = np.mean(segs, axis=0) - 50
    return beat / beat.max()


def test_the_dicrotic_wave_is_smaller_and_earlier_with_age():
    subjects = [demo_subject(0, 1000 + c) for c in range(1, 60)]
    young = min(subjects, key=lambda s: s.age)
    old = max(subjects, key=lambda s: s.age)
    assert young.age <= 30 and old.age >= 75
    tau = np.arange(int(0.7 * FS)) / FS
    s = tau / SYSTOLIC_PEAK_S
    systolic = s**3 * np.exp(3 * (1 - s))
    measured = {}
    for name, subject in (("young", young), ("old", old)):
        reflected = mean_beat(subject) - systolic  # what the beat has beyond its systolic wave
        i = int(np.argmax(reflected[tau > SYSTOLIC_PEAK_S + 0.05])) + int(np.sum(tau <= SYSTOLIC_PEAK_S + 0.05))
        measured[name] = (reflected[i], tau[i] - SYSTOLIC_PEAK_S)
        assert measured[name][0] == pytest.approx(subject.dicrotic_ratio, abs=0.05), name
        assert measured[name][1] == pytest.approx(subject.dicrotic_delay_s, abs=0.012), name
    assert measured["young"][0] > measured["old"][0] + 0.15  # smaller
    assert measured["young"][1] > measured["old"][1] + 0.03  # earlier


def test_synth_signals_without_a_case_keeps_its_heart_rate():
    ppg, ecg = synth_signals(72.0, 60.0, np.random.default_rng(3))
    rt, _, amp = beats(ppg, ecg)
    assert 60 / np.median(np.diff(rt)) == pytest.approx(72.0, rel=0.03)
    assert 40 < ppg.mean() < 60 and 10 < np.nanmedian(amp) < 30


# --- numeric tracks on the waveforms' clock ---------------------------------------------------------

def test_numerics_are_read_on_the_clock_of_the_waveforms(tmp_path):
    """The header's dtstart lies after the first wave record and numerics start before both: the
    origin is the one `read_tracks` uses, not one widened by the numerics' records."""
    dt0 = 1.6e9 + 12345.678
    wave_first, mark = 0.3, 7.346  # s after dt0; the mark is on the 500 Hz grid of the wave
    vf = vitaldb.VitalFile()
    vf.dgmt, vf.dtstart, vf.dtend = 0, dt0 + 1.0, dt0 + 12
    for name in (PPG, ECG):
        recs = []
        for k in range(11):
            t = wave_first + k + np.arange(FS) / FS
            recs.append({"dt": dt0 + wave_first + k, "val": (np.abs(t - mark) < 0.5 / FS).astype(np.float32)})
        vf.add_track(name, recs, srate=FS)
    times = [mark, -2.0, 4.0, 3.0, 5.0]  # out of order; -2: before every wave record
    values = [70.0, 71.0, float("nan"), 73.0, float("inf")]
    vf.add_track(ART_MBP, [{"dt": dt0 + t, "val": v} for t, v in zip(times, values)], srate=0, unit="mmHg")
    vf.add_track("Solar8000/HR", [{"dt": dt0 + 1.0, "val": 60.0}], srate=0)
    path = tmp_path / "clock.vital"
    assert vf.to_vital(str(path), packed=False)  # file order kept

    src = get_source({"source": "local", "local": {"tracks": TRACKS}})
    ppg = src.read_tracks(path)[0]
    wave_mark = ppg.start_s + int(np.nanargmax(ppg.values)) / ppg.fs
    t, v = src.read_numerics(path, [ART_MBP])[ART_MBP]
    assert t[v == 70.0][0] == pytest.approx(wave_mark, abs=1e-3)
    assert np.allclose(t, np.array([-2.0, 3.0, mark]) - wave_first, atol=1e-6)  # sorted, non-finite dropped
    assert v.tolist() == [71.0, 73.0, 70.0]
    assert set(src.read_numerics(path, ["Solar8000/HR", "Solar8000/ART_SBP"])) == {"Solar8000/HR"}
    assert src.read_numerics(path, []) == {}
    with pytest.raises(CaseError, match="not a numeric track"):
        src.read_numerics(path, [PPG])


def test_wfdb_case_without_numerics_record_has_none_and_says_so_once(tmp_path, caplog, monkeypatch):
    """A waveform record with no numerics record beside it (`<record>n`) has no numeric tracks: {},
    said once at INFO for the first such case, at DEBUG for the others; a case with one says nothing."""
    import wfdb

    import pipeline.data.sources.wfdb as wfdb_source

    monkeypatch.setattr(wfdb_source, "_said", set())
    folder = tmp_path / "p00" / "p000001"
    folder.mkdir(parents=True)
    x = np.stack([np.sin(np.arange(1250) / 10), np.cos(np.arange(1250) / 10)], axis=1)
    for name in ("r1", "r2", "r3"):
        wfdb.wrsamp(name, fs=125, units=["NU", "mV"], sig_name=["PLETH", "II"], p_signal=x, fmt=["16", "16"], write_dir=str(folder))
    wfdb.wrsamp("r3n", fs=1, units=["mmHg"], sig_name=["ABPMean"], p_signal=np.full((10, 1), 80.0), fmt=["16"], write_dir=str(folder))
    (tmp_path / "RECORDS").write_text("p00/p000001/\n")
    (folder / "RECORDS").write_text("r1\nr2\nr3\nr3n\n")
    src = get_source({"source": "wfdb", "wfdb": {"root": str(tmp_path), "tracks": {"ppg": "PLETH", "ecg": "II"}}})
    paths = []
    for row in src.case_rows():
        paths.append(tmp_path / f"{row['caseid']}.json")
        src.fetch(row, paths[-1], None)
    assert len(paths) == 3
    with caplog.at_level(logging.DEBUG, logger="pipeline.data.sources.wfdb"):
        assert src.read_numerics(paths[0], NUMERICS) == {}
        assert src.read_numerics(paths[1], NUMERICS) == {}
        assert set(src.read_numerics(paths[2], ["ABPMean", *NUMERICS])) == {"ABPMean"}
    said = [r for r in caplog.records if "no numerics record" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG]
    assert "r1n.hea" in said[0].getMessage() and "r2n.hea" in said[1].getMessage()
