"""The wfdb source on records written with the wfdb package in the MIMIC-III Waveform Database
Matched Subset layout: case table, download (pointer files), resampling, windows and manifest, and
the numeric tracks of the numerics records (`<record>n`) through to the labels."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pytest
import wfdb
import yaml

from pipeline.config import validate_params
from pipeline.data.cases import build_case_table
from pipeline.data.download import download_batch
from pipeline.data.labels import COLUMNS, labels_batch, read_labels
from pipeline.data.resample import read_resampled, resample_batch
from pipeline.data.sources import get_source
from pipeline.data.sources.demo import synth_signals
from pipeline.data.windows import build_manifest, windows_batch
from pipeline.errors import CaseError
from tests.helpers import write_shard

REPO = Path(__file__).resolve().parents[1]
TRACKS = {"ppg": "PLETH", "ecg": "II"}
CASES = {"split": {"train": 0.5, "val": 0.25, "test": 0.25}, "split_salt": "s", "limit": None, "caseids": None, "batch_size": 64}
SIGNALS = {"target_fs": 125, "saturation_min_run": 10, "max_case_hours": 24, "max_native_hz": 500}
WINDOW = {"length": 1024, "stride": 1024, "chunk": 64}
UNITS = {"PLETH": "NU", "II": "mV", "V": "mV", "ABP": "mmHg"}

# record (a): variable layout at 125 Hz: seg 1 (PLETH, II, V), a `~` gap, seg 2 (II, PLETH, with a
# 2 s PLETH dropout), seg 3 (II, V: no PLETH)
A = "p00/p000020/p000020-2183-04-28-17-47"
A_SEGS = [("3544749_0001", 90.0, ["PLETH", "II", "V"]), ("~", 10.0, []), ("3544749_0002", 80.0, ["II", "PLETH"]),
          ("3544749_0003", 30.0, ["II", "V"])]
A_DROPOUT = (20.0, 22.0)  # seconds into segment 2, PLETH only
# record: fixed layout at 125 Hz with a `~` gap (wfdb cannot join these itself)
F = "p00/p000020/p000020-2183-04-29-10-00"
F_SEGS = [("3544750_0001", 40.0, ["PLETH", "II"]), ("~", 5.0, []), ("3544750_0002", 40.0, ["PLETH", "II"])]
# record (b): no PLETH in any segment
B = "p00/p000033/p000033-2116-12-24-12-35"
B_SEGS = [("3544800_0001", 30.0, ["II", "V", "ABP"]), ("3544800_0002", 30.0, ["II", "ABP"])]
# record (c): single segment at 500 Hz, listed directly in the top-level RECORDS
C = "p01/p000107/3000107"
C_FS, C_SECONDS = 500, 70.0
NUMERICS = A + "n"


def quality_defaults() -> dict:
    schema = yaml.safe_load((REPO / "pipeline" / "config.schema.yaml").read_text())
    return {k: v["default"] for k, v in schema["properties"]["quality"]["properties"].items()}


def synth(names: list[str], seconds: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    ppg, ecg = synth_signals(float(rng.uniform(60, 90)), seconds, rng, fs=fs)
    sig = {"PLETH": ppg, "II": ecg, "V": 0.8 * ecg, "ABP": 60 + 1.5 * (ppg - 30)}
    return np.stack([sig[n] for n in names], axis=1)


def write_layout(folder: Path, name: str, fs: int, names: list[str]) -> None:
    """A layout header as MIMIC's: every signal of the record, file `~`, no samples (wfdb refuses
    to write `~` file names, so it is written as text)."""
    lines = [f"{name} {len(names)} {fs} 0"] + [f"~ 0 1(0)/{UNITS[n]} 0 0 0 0 0 {n}" for n in names]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def write_multi(root: Path, rel: str, fs: int, segs, layout: bool, rng) -> dict:
    """Segments with wfdb.wrsamp, the master header with MultiRecord.wrheader; returns the
    physical signals of each segment as wfdb reads them back (None for `~`)."""
    folder = root / Path(rel).parent
    folder.mkdir(parents=True, exist_ok=True)
    seg_names, seg_lens, data = [], [], []
    if layout:
        lname = segs[0][0].rsplit("_", 1)[0] + "_layout"
        names = sorted({n for _, _, ns in segs for n in ns}, key=["II", "V", "PLETH", "ABP"].index)
        write_layout(folder, lname, fs, names)
        seg_names.append(lname)
        seg_lens.append(0)
    for i, (seg, seconds, names) in enumerate(segs):
        n = int(seconds * fs)
        seg_names.append(seg)
        seg_lens.append(n)
        if seg == "~":
            data.append(None)
            continue
        x = synth(names, seconds, fs, rng)
        if i == 2 and "PLETH" in names and rel == A:
            a, b = (int(t * fs) for t in A_DROPOUT)
            x[a:b, names.index("PLETH")] = np.nan
        wfdb.wrsamp(seg, fs=fs, units=[UNITS[n] for n in names], sig_name=names, p_signal=x, fmt=["16"] * len(names),
                    write_dir=str(folder))
        rec = wfdb.rdrecord(str(folder / seg))
        data.append({name: rec.p_signal[:, k] for k, name in enumerate(rec.sig_name)} | {"_truth": x, "_names": names})
    master = wfdb.MultiRecord(record_name=Path(rel).name, n_sig=max(len(ns) for _, _, ns in segs), fs=fs,
                              sig_len=sum(seg_lens), seg_name=seg_names, seg_len=seg_lens)
    master.n_seg = len(seg_names)
    master.wrheader(write_dir=str(folder))
    return {"segments": data, "lens": seg_lens[1:] if layout else seg_lens}


def build_root(root: Path) -> dict:
    rng = np.random.default_rng(7)
    truth = {A: write_multi(root, A, 125, A_SEGS, True, rng), F: write_multi(root, F, 125, F_SEGS, False, rng),
             B: write_multi(root, B, 125, B_SEGS, True, rng)}
    # the numerics record: real header and data, one value per second
    folder = root / "p00" / "p000020"
    hr = np.stack([np.full(600, 72.0) + rng.normal(0, 1, 600), np.full(600, 97.0)], axis=1)
    wfdb.wrsamp(Path(NUMERICS).name, fs=1, units=["bpm", "%"], sig_name=["HR", "SpO2"], p_signal=hr, fmt=["16", "16"],
                write_dir=str(folder))
    # record (c)
    cfolder = root / Path(C).parent
    cfolder.mkdir(parents=True)
    x = synth(["PLETH", "II"], C_SECONDS, C_FS, rng)
    wfdb.wrsamp(Path(C).name, fs=C_FS, units=["NU", "mV"], sig_name=["PLETH", "II"], p_signal=x, fmt=["16", "16"],
                write_dir=str(cfolder))
    truth[C] = {"truth": x}
    # RECORDS files, deliberately unsorted
    (root / "RECORDS").write_text(f"{C}\np00/p000033/\np00/p000020/\n")
    (root / "p00" / "p000020" / "RECORDS").write_text(f"{Path(F).name}\n{Path(A).name}\n{Path(NUMERICS).name}\n")
    (root / "p00" / "p000033" / "RECORDS").write_text(f"{Path(B).name}\n")
    return truth


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The data set and one pass of download -> resample -> windows -> manifest over it."""
    base = tmp_path_factory.mktemp("wfdb")
    root = base / "mimic3wdb-matched"
    truth = build_root(root)
    section = {"root": str(root), "tracks": dict(TRACKS)}
    table_params = {"source": "wfdb", "wfdb": section, "cases": CASES}
    rows = build_case_table(table_params)
    dl = download_batch(rows, {"source": "wfdb", "wfdb": section, "download": None}, base / "cases", base / "download.json")
    rs_params = {"source": "wfdb", "wfdb": section, "signals": SIGNALS}
    rs = resample_batch(dl, rs_params, base / "resampled", base / "resample.json")
    win_params = {"tracks": ["PLETH", "II"], "signals": SIGNALS, "window": WINDOW, "quality": quality_defaults()}
    shards = {s: base / "shards" / s / "shard-0000.h5" for s in ("train", "val", "test")}
    stats = windows_batch(rows, rs, win_params, shards, base / "stats.json", 0)
    manifest = build_manifest([base / "stats.json"], base / "manifest.json", win_params)
    return dict(root=root, section=section, truth=truth, rows=rows, dl=dl, rs=rs, stats=stats, shards=shards,
                manifest=manifest, base=base)


def caseid_of(run, name: str) -> str:
    return str(next(r["caseid"] for r in run["rows"] if r["name"] == name))


# ---------------------------------------------------------------- case table


def test_case_table_one_row_per_waveform_record_sorted(run):
    rows = run["rows"]
    assert [r["name"] for r in rows] == [A, F, B, C]  # sorted by path; numerics record left out
    assert [r["caseid"] for r in rows] == [1, 2, 3, 4]
    assert [r["subjectid"] for r in rows] == [20, 20, 33, 107]
    assert all(r["has_ppg"] is None and r["has_ecg"] is None for r in rows)
    assert all(r["duration_s"] == "" and r["age"] == "" and r["sex"] == "" for r in rows)
    assert rows[0]["split"] == rows[1]["split"]  # one subject, one split
    assert {r["batch"] for r in rows} == {0}
    assert not any(r["name"].endswith("n") for r in rows)


def test_case_table_missing_root_or_records(tmp_path):
    section = {"root": str(tmp_path / "nope"), "tracks": dict(TRACKS)}
    with pytest.raises(FileNotFoundError, match="nope"):
        get_source({"source": "wfdb", "wfdb": section}).case_rows()
    section["root"] = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "RECORDS")):
        get_source({"source": "wfdb", "wfdb": section}).case_rows()
    (tmp_path / "RECORDS").write_text("p00/p000020/\n")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "p00" / "p000020" / "RECORDS")):
        get_source({"source": "wfdb", "wfdb": section}).case_rows()


def test_record_outside_a_subject_folder_is_refused(tmp_path):
    (tmp_path / "RECORDS").write_text("30/3000003/3000003\n")
    with pytest.raises(ValueError, match="pXXXXXX"):
        get_source({"source": "wfdb", "wfdb": {"root": str(tmp_path), "tracks": dict(TRACKS)}}).case_rows()


# ---------------------------------------------------------------- download


def test_download_writes_pointers_and_skips_record_without_pleth(run):
    dl = run["dl"]
    for name in (A, F, C):
        st = dl[caseid_of(run, name)]
        assert st["status"] == "ok", st
        pointer = json.loads(Path(st["path"]).read_text())
        assert pointer == {"record": str((run["root"] / name).resolve()), "name": name}
        assert Path(st["path"]).stat().st_size < 1000  # no signal data copied
    st = dl[caseid_of(run, B)]
    assert st["status"] == "failed" and st["stage"] == "download"
    assert st["reason"] == "missing track PLETH (the case has: ABP, II, V)"


def test_cached_pointers_follow_a_new_root_and_new_case_numbers(run, tmp_path):
    """Caseids are positions in RECORDS: a pointer left by an older table or root is refetched, never reused."""
    import shutil

    root = tmp_path / "moved"
    shutil.copytree(run["root"], root)
    (root / "RECORDS").write_text("p00/p000033/\np00/p000020/\n")  # record (c) dropped: later caseids shift
    section = {"root": str(root), "tracks": dict(TRACKS)}
    rows = build_case_table({"source": "wfdb", "wfdb": section, "cases": CASES})
    out = tmp_path / "cases"
    shutil.copytree(run["base"] / "cases", out)  # the old pointers, as a rerun finds them
    dl = download_batch(rows, {"source": "wfdb", "wfdb": section, "download": None}, out, tmp_path / "dl.json")
    for row in rows:
        st = dl[str(row["caseid"])]
        if st["status"] == "ok":
            assert json.loads(Path(st["path"]).read_text())["record"] == str((root / row["name"]).resolve())
            assert not st.get("cached")
    again = download_batch(rows, {"source": "wfdb", "wfdb": section, "download": None}, out, tmp_path / "dl2.json")
    assert all(st.get("cached") for st in again.values() if st["status"] == "ok")  # unchanged settings: kept


def test_download_faults_are_case_errors(run, tmp_path):
    """A missing header, a missing segment header, a truncated data file: permanent skips with reasons."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(run["root"], root)
    folder = root / "p00" / "p000020"
    (folder / "3544749_0002.hea").unlink()
    dat = folder / "3544750_0002.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    section = {"root": str(root), "tracks": dict(TRACKS)}
    rows = [{"caseid": 1, "name": A}, {"caseid": 2, "name": F}, {"caseid": 9, "name": "p00/p000099/p000099-2100-01-01-00-00"}]
    params = {"source": "wfdb", "wfdb": section, "download": {"max_failed_fraction": 1.0}}  # all 3 fail on purpose
    dl = download_batch(rows, params, tmp_path / "cases", tmp_path / "dl.json")
    assert dl["1"]["status"] == "failed" and "3544749_0002.hea" in dl["1"]["reason"], dl["1"]
    assert dl["2"]["status"] == "failed" and dl["2"]["reason"].startswith(f"truncated data file {dat}"), dl["2"]
    assert dl["9"]["status"] == "failed" and dl["9"]["reason"].startswith("missing header"), dl["9"]
    assert not [p for p in (tmp_path / "cases").rglob("*") if p.is_file()]  # nothing left behind


def test_track_without_any_sample_is_a_case_error(tmp_path):
    """PLETH present in the header but NaN throughout: validate passes (no samples read), reading fails."""
    folder = tmp_path / "p00" / "p000042"
    folder.mkdir(parents=True)
    d = np.zeros((2000, 2), dtype=np.int16)
    d[:, 0] = -32768  # fmt 16's "no sample" value
    d[:, 1] = np.arange(2000) % 200
    wfdb.wrsamp("3000042", fs=125, units=["NU", "mV"], sig_name=["PLETH", "II"], d_signal=d, fmt=["16", "16"],
                adc_gain=[100.0, 200.0], baseline=[0, 0], write_dir=str(folder))
    (tmp_path / "RECORDS").write_text("p00/p000042/3000042\n")
    source = get_source({"source": "wfdb", "wfdb": {"root": str(tmp_path), "tracks": dict(TRACKS)}})
    row = source.case_rows()[0]
    dest = tmp_path / "1.json"
    source.fetch(row, dest, None)
    source.validate(dest)
    with pytest.raises(CaseError, match="track PLETH has no data"):
        source.read_tracks(dest)


# ---------------------------------------------------------------- resample


def expected_125(truth: dict, track: str) -> np.ndarray:
    """The record's physical signal as wfdb reads each segment, NaN over `~` and where a segment lacks the track."""
    parts = []
    for seg, n in zip(truth["segments"], truth["lens"]):
        parts.append(np.full(n, np.nan) if seg is None or track not in seg else seg[track])
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("name,segs", [(A, A_SEGS), (F, F_SEGS)])
def test_resample_at_125hz_is_an_exact_copy_with_nan_exactly_over_gaps(run, name, segs):
    st = run["rs"][caseid_of(run, name)]
    assert st["status"] == "ok", st
    signals, saturated, attrs = read_resampled(st["path"])
    truth = run["truth"][name]
    n_total = sum(truth["lens"])
    assert signals.shape == (2, n_total)
    assert list(attrs["source_fs"]) == [125.0, 125.0]
    assert list(attrs["units"]) == ["NU", "mV"]
    for ch, track in enumerate(["PLETH", "II"]):
        np.testing.assert_array_equal(signals[ch], expected_125(truth, track))  # NaN == NaN here
    # the gap: NaN over exactly its samples in both channels, data on both sides
    gap_at = [i for i, (seg, _, _) in enumerate(segs) if seg == "~"][0]
    g0 = sum(truth["lens"][:gap_at])
    g1 = g0 + truth["lens"][gap_at]
    for ch in range(2):
        assert np.isnan(signals[ch, g0:g1]).all()
        assert np.isfinite(signals[ch, g0 - 1]) and np.isfinite(signals[ch, g1])
    ii_nan = np.flatnonzero(np.isnan(signals[1]))
    np.testing.assert_array_equal(ii_nan, np.arange(g0, g1))  # II: no NaN anywhere else
    # the values are the written signal up to the 16-bit quantisation
    seg0 = truth["segments"][0]
    x = seg0["_truth"][:, seg0["_names"].index("PLETH")]
    np.testing.assert_allclose(signals[0, : len(x)], x, atol=1e-3 * np.ptp(x))
    assert not saturated.any()


def test_resample_keeps_dropout_and_missing_segment_as_nan(run):
    signals, _, _ = read_resampled(run["rs"][caseid_of(run, A)]["path"])
    lens = run["truth"][A]["lens"]
    s2 = lens[0] + lens[1]
    a, b = (s2 + int(t * 125) for t in A_DROPOUT)
    s3 = s2 + lens[2]
    expected = np.zeros(sum(lens), bool)
    expected[lens[0] : s2] = True  # the gap
    expected[a:b] = True  # the dropout inside segment 2
    expected[s3:] = True  # segment 3 has no PLETH
    np.testing.assert_array_equal(np.isnan(signals[0]), expected)


def test_resample_500hz_record_comes_out_at_125hz(run):
    st = run["rs"][caseid_of(run, C)]
    assert st["status"] == "ok", st
    signals, _, attrs = read_resampled(st["path"])
    assert list(attrs["source_fs"]) == [500.0, 500.0]
    assert signals.shape == (2, int(C_SECONDS * 125))
    assert np.isfinite(signals).all()
    x = run["truth"][C]["truth"]
    core = slice(125, -125)
    assert np.corrcoef(signals[0, core], x[::4, 0][core])[0, 1] > 0.99
    assert np.corrcoef(signals[1, core], x[::4, 1][core])[0, 1] > 0.95
    assert st["samples"] == int(C_SECONDS * 125)


def test_read_tracks_native_rates(run):
    source = get_source({"source": "wfdb", "wfdb": run["section"]})
    tracks = source.read_tracks(Path(run["dl"][caseid_of(run, C)]["path"]))
    assert [(t.name, t.fs, t.unit, t.start_s, t.values.dtype, len(t.values)) for t in tracks] == [
        ("PLETH", 500.0, "NU", 0.0, np.float32, int(C_SECONDS * C_FS)),
        ("II", 500.0, "mV", 0.0, np.float32, int(C_SECONDS * C_FS))]


# ---------------------------------------------------------------- windows and manifest


def test_windows_and_manifest(run):
    import h5py

    caseids = {}
    windows = []
    for split, path in run["shards"].items():
        with h5py.File(path, "r") as f:
            for cid, start, sig in zip(f["caseid"][()], f["start_s"][()], f["signals"][()]):
                windows.append((int(cid), float(start), sig))
            caseids[split] = set(f["caseid"][()].tolist())
    all_ids = set().union(*caseids.values())
    assert all_ids == {int(caseid_of(run, n)) for n in (A, F, C)}
    assert not any(np.isnan(w).any() for _, _, w in windows)
    rows = {r["caseid"]: r for r in run["rows"]}
    for split, ids in caseids.items():
        assert all(rows[i]["split"] == split for i in ids)
    # every window is the resampled signal at its start, and none touches a gap
    for name in (A, F):
        cid = int(caseid_of(run, name))
        signals, _, _ = read_resampled(run["rs"][str(cid)]["path"])
        finite = np.isfinite(signals).all(axis=0)
        mine = [(s, w) for c, s, w in windows if c == cid]
        for start_s, w in mine:
            i = int(round(start_s * 125))
            assert finite[i : i + 1024].all()
            np.testing.assert_array_equal(w, signals[:, i : i + 1024])
        # every window without NaN is kept (clean synthetic signals); every other one is rejected for NaN
        starts = range(0, signals.shape[1] - 1024 + 1, 1024)
        clean = [i for i in starts if finite[i : i + 1024].all()]
        assert sorted(int(round(s * 125)) for s, _ in mine) == clean
        st = run["stats"][str(cid)]
        assert st["kept"] == len(clean) and st["rejected"]["nan"] == len(starts) - len(clean) > 0
    man = run["manifest"]
    b = man["cases"][caseid_of(run, B)]
    assert b["kept"] == 0
    assert b["skip_reason"] == "download: missing track PLETH (the case has: ABP, II, V)"
    assert man["totals"]["cases"] == 4 and man["totals"]["cases_used"] == 3
    assert man["totals"]["kept"] == len(windows)


# ---------------------------------------------------------------- numerics: the record <record>n beside each waveform record

ABP = ["ABPMean", "ABPSys", "ABPDias"]
# (h) waveform and numerics start together (base date and time in both headers); MAP 80 mmHg at 1 Hz
# with a hypotensive stretch at 55 mmHg over [HYPO_AT, HYPO_AT + HYPO_S) s
H = "p00/p000050/p000050-2150-01-01-10-00"
H_SECONDS, HYPO_AT, HYPO_S = 1800, 900, 200
H_START = datetime(2150, 1, 1, 10, 0, 0)
# (l) numerics starting 150.2 s after the waveform by the headers' base dates and times, across midnight;
# a PLETH spike and the numeric value L_MARK_VALUE at L_MARK_S on the waveform's clock
L = "p00/p000051/p000051-2183-04-28-23-58"
L_WAVE_START, L_NUM_START = datetime(2183, 4, 28, 23, 58, 0), datetime(2183, 4, 29, 0, 0, 30, 200000)
L_OFFSET_S, L_MARK_S, L_MARK_VALUE = 150.2, 200.2, 42.0
# (n) no numerics record
N = "p00/p000052/p000052-2150-01-02-08-00"
# (g) a multi-segment numerics record at one value per minute (variable layout: seg 1 ABPMean, ABPSys,
# HR; a `~` gap; seg 2 ABPMean, HR), ABPMean NaN over minutes G_NAN of seg 1; the waveform header has
# no base time, so the two records are taken to start together
G = "p00/p000053/p000053-2150-01-03-09-00"
G_SEGS = [("g_0001", 200, ["ABPMean", "ABPSys", "HR"]), ("~", 60, []), ("g_0002", 200, ["ABPMean", "HR"])]
G_NAN = (100, 130)


def write_wave(root: Path, rel: str, seconds: float, start: datetime | None = None, mark_s: float | None = None) -> None:
    """A waveform record of PLETH and II at 125 Hz (sine waves; a spike of 10 in PLETH at `mark_s`)."""
    folder = root / Path(rel).parent
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 125)) / 125
    x = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.sin(2 * np.pi * 1.2 * t + 1.0)], axis=1)
    if mark_s is not None:
        x[round(mark_s * 125), 0] = 10.0
    when = {} if start is None else {"base_time": start.time(), "base_date": start.date()}
    wfdb.wrsamp(Path(rel).name, fs=125, units=["NU", "mV"], sig_name=["PLETH", "II"], p_signal=x, fmt=["16", "16"],
                write_dir=str(folder), **when)


def write_numerics(root: Path, rel: str, signals: dict[str, np.ndarray], fs: float = 1, start: datetime | None = None) -> None:
    """The numerics record `<rel>n`, single segment, one column per signal (NaN = no sample)."""
    names = list(signals)
    when = {} if start is None else {"base_time": start.time(), "base_date": start.date()}
    wfdb.wrsamp(Path(rel).name + "n", fs=fs, units=["bpm" if n == "HR" else "mmHg" for n in names], sig_name=names,
                p_signal=np.stack([signals[n] for n in names], axis=1), fmt=["16"] * len(names),
                write_dir=str(root / Path(rel).parent), **when)


def h_map() -> np.ndarray:
    v = np.full(H_SECONDS, 80.0)
    v[HYPO_AT : HYPO_AT + HYPO_S] = 55.0
    return v


def g_truth() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (minute numbers, values)} of record (g)'s numerics, as written."""
    rng = np.random.default_rng(3)
    out: dict[str, list] = {}
    start = 0
    for seg, n, names in G_SEGS:
        for name in names:
            v = rng.uniform(60, 100, n).round(1)
            if name == "ABPMean" and seg == "g_0001":
                v[G_NAN[0] : G_NAN[1]] = np.nan
            out.setdefault(name, []).append((start + np.arange(n), v))
        start += n
    return {k: (np.concatenate([p[0] for p in v]), np.concatenate([p[1] for p in v])) for k, v in out.items()}


def write_g_numerics(root: Path) -> None:
    folder = root / Path(G).parent
    truth = g_truth()
    fs = 1 / 60
    name = Path(G).name + "n"
    layout = ["ABPMean", "ABPSys", "HR"]
    lines = [f"g_layout {len(layout)} {fs} 0"] + [f"~ 0 1(0)/{'bpm' if n == 'HR' else 'mmHg'} 0 0 0 0 0 {n}" for n in layout]
    (folder / "g_layout.hea").write_text("\n".join(lines) + "\n")
    start = 0
    for seg, n, names in G_SEGS:
        if seg != "~":
            x = np.stack([truth[k][1][(truth[k][0] >= start) & (truth[k][0] < start + n)] for k in names], axis=1)
            wfdb.wrsamp(seg, fs=fs, units=["bpm" if k == "HR" else "mmHg" for k in names], sig_name=names, p_signal=x,
                        fmt=["16"] * len(names), write_dir=str(folder))
        start += n
    master = wfdb.MultiRecord(record_name=name, n_sig=len(layout), fs=fs, sig_len=start,
                              seg_name=["g_layout"] + [s for s, _, _ in G_SEGS], seg_len=[0] + [n for _, n, _ in G_SEGS],
                              base_time=time(9, 0, 0))
    master.n_seg = len(G_SEGS) + 1
    master.wrheader(write_dir=str(folder))


def build_numerics_root(root: Path) -> None:
    rng = np.random.default_rng(11)
    write_wave(root, H, H_SECONDS, start=H_START)
    m = h_map()
    write_numerics(root, H, {"ABPMean": m, "ABPSys": m + 35, "ABPDias": m - 15, "HR": 70 + rng.normal(0, 1, H_SECONDS)},
                   start=H_START)
    write_wave(root, L, 400, start=L_WAVE_START, mark_s=L_MARK_S)
    v = np.full(180, 70.0)
    v[round(L_MARK_S - L_OFFSET_S)] = L_MARK_VALUE
    write_numerics(root, L, {"ABPMean": v}, start=L_NUM_START)
    write_wave(root, N, 120, start=H_START)
    write_wave(root, G, 120)  # shorter than its numerics: their times do not depend on it
    write_g_numerics(root)
    (root / "RECORDS").write_text("".join(f"{Path(r).parent}/\n" for r in (H, L, N, G)))
    for r in (H, L, N, G):  # numerics records listed beside their waveform records, as MIMIC does (except (g)'s)
        listed = [Path(r).name] + ([Path(r).name + "n"] if r in (H, L) else [])
        (root / Path(r).parent / "RECORDS").write_text("".join(f"{x}\n" for x in listed))


@pytest.fixture(scope="module")
def numerics(tmp_path_factory):
    """Records (h), (l), (n), (g), their case table and a validated pointer file per case."""
    base = tmp_path_factory.mktemp("wfdb-numerics")
    root = base / "root"
    build_numerics_root(root)
    section = {"root": str(root), "tracks": dict(TRACKS)}
    source = get_source({"source": "wfdb", "wfdb": section})
    rows = source.case_rows()
    paths = {}
    for row in rows:
        dest = base / "cases" / f"{row['caseid']}.json"
        dest.parent.mkdir(exist_ok=True)
        source.fetch(row, dest, None)
        source.validate(dest)
        paths[row["name"]] = dest
    return dict(root=root, base=base, section=section, source=source, rows=rows, paths=paths)


def test_numerics_values_and_times(numerics):
    assert [r["name"] for r in numerics["rows"]] == [H, L, N, G]  # numerics records are not cases
    got = numerics["source"].read_numerics(numerics["paths"][H], [*ABP, "NBPMean", "ABPMean"])
    assert list(got) == ABP  # NBPMean: not in the record, absent; HR: not asked for
    m = h_map()
    for name, expected in zip(ABP, (m, m + 35, m - 15)):
        t, v = got[name]
        assert t.dtype == v.dtype == np.float64
        np.testing.assert_array_equal(t, np.arange(H_SECONDS, dtype=np.float64))  # same start: 1 Hz from 0
        np.testing.assert_allclose(v, expected, atol=0.01)
    assert numerics["source"].read_numerics(numerics["paths"][H], []) == {}
    assert numerics["source"].read_numerics(numerics["paths"][H], ["NBPMean"]) == {}  # a record with none of the names


def test_numerics_starting_later_land_on_the_waveform_clock(numerics):
    """Numerics 150.2 s after the waveform by base date and time (across midnight): a numeric sample
    written at a known waveform time is returned at that time, within one waveform sample."""
    path = numerics["paths"][L]
    pleth = numerics["source"].read_tracks(path)[0]
    spike_s = pleth.start_s + int(np.argmax(pleth.values)) / pleth.fs
    assert spike_s == pytest.approx(L_MARK_S, abs=0.5 / 125)
    t, v = numerics["source"].read_numerics(path, ["ABPMean"])["ABPMean"]
    assert t[0] == pytest.approx(L_OFFSET_S, abs=1e-6) and np.allclose(np.diff(t), 1.0)
    mark = t[np.argmin(np.abs(v - L_MARK_VALUE))]
    assert abs(mark - spike_s) < 1 / 125


def test_multisegment_numerics_with_gaps_per_minute(numerics, caplog, monkeypatch):
    """A `~` segment and NaN samples are gaps in the times; a segment without a signal adds none of
    it; times are minutes x 60 from the start; the waveform header has no base time: said once."""
    import pipeline.data.sources.wfdb as wfdb_source

    monkeypatch.setattr(wfdb_source, "_said", set())
    with caplog.at_level(logging.DEBUG, logger="pipeline.data.sources.wfdb"):
        got = numerics["source"].read_numerics(numerics["paths"][G], ["ABPMean", "ABPSys", "ABPDias", "HR"])
        numerics["source"].read_numerics(numerics["paths"][G], ["HR"])
    assert set(got) == {"ABPMean", "ABPSys", "HR"}
    for name, (minutes, values) in g_truth().items():
        keep = np.isfinite(values)
        t, v = got[name]
        np.testing.assert_allclose(t, minutes[keep] * 60.0, atol=1e-6)
        np.testing.assert_allclose(v, values[keep], atol=0.01)
    minutes = got["ABPMean"][0] / 60
    assert not ((minutes >= G_NAN[0]) & (minutes < G_NAN[1])).any() and not ((minutes >= 200) & (minutes < 260)).any()
    assert got["ABPSys"][0].max() == pytest.approx(199 * 60)  # segment 2 has no ABPSys
    said = [r for r in caplog.records if "assumed to start together" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG]
    assert "waveform record's header has no base time" in said[0].getMessage()


def test_start_offset_from_the_base_times():
    from pipeline.data.sources.wfdb import _start_offset_s

    def rec(t=None, d=None):
        return wfdb.Record(record_name="r", base_time=t, base_date=d)

    assert _start_offset_s(rec(time(23, 58), date(2183, 4, 28)), rec(time(0, 0, 30, 200000), date(2183, 4, 29)), "r") == \
        pytest.approx(150.2)
    assert _start_offset_s(rec(time(10, 0)), rec(time(9, 59, 30)), "r") == pytest.approx(-30.0)  # numerics first
    assert _start_offset_s(rec(time(23, 59)), rec(time(0, 1)), "r") == pytest.approx(120.0)  # no dates: across midnight
    assert _start_offset_s(rec(time(23, 59), date(2100, 1, 1)), rec(time(0, 1)), "r") == pytest.approx(120.0)
    assert _start_offset_s(rec(None), rec(time(0, 1), date(2100, 1, 1)), "r") == 0.0
    assert _start_offset_s(rec(time(0, 1)), rec(None), "r") == 0.0


def test_a_case_without_numerics_record_has_none(numerics):
    assert numerics["source"].read_numerics(numerics["paths"][N], ABP) == {}


def test_corrupt_numerics_record_is_a_case_error(numerics, tmp_path):
    """A truncated data file, an unreadable header, a missing segment header: CaseError naming the
    fault; the labels stage counts such a case as unreadable and leaves its labels empty."""
    root = tmp_path / "root"
    shutil.copytree(numerics["root"], root)
    section = {"root": str(root), "tracks": dict(TRACKS)}
    source = get_source({"source": "wfdb", "wfdb": section})
    ptr = {}
    for row in source.case_rows():
        ptr[row["name"]] = tmp_path / f"{row['caseid']}.json"
        source.fetch(row, ptr[row["name"]], None)
    dat = root / (H + "n.dat")
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(CaseError, match=f"truncated data file {dat}"):
        source.read_numerics(ptr[H], ABP)
    (root / (L + "n.hea")).write_text("this is not a header\n")
    with pytest.raises(CaseError, match="header"):
        source.read_numerics(ptr[L], ABP)
    (root / Path(G).parent / "g_0002.hea").unlink()
    with pytest.raises(CaseError, match="g_0002"):
        source.read_numerics(ptr[G], ABP)
    shards = [write_shard(tmp_path / "s.h5", np.zeros((3, 2, 1024), np.float32), caseid=1)]
    counts = labels_batch({"1": {"status": "ok", "path": str(ptr[H])}}, shards, label_params(section), tmp_path / "l.tsv")
    assert counts["unreadable"] == 1
    assert all(np.isnan(r["map_mmHg"]) for r in read_labels([tmp_path / "l.tsv"]).values())


def label_params(section: dict) -> dict:
    """What the labels rule passes for config/mimic3.yaml: its labels section (schema defaults filled)."""
    labels = yaml.safe_load((REPO / "config" / "mimic3.yaml").read_text())["labels"]
    return {"source": "wfdb", "wfdb": section, "labels": validate_params({"labels": labels}, [])["labels"],
            "window": {"length": 1024}, "signals": {"target_fs": 125}}


def test_labels_of_a_wfdb_case(numerics, tmp_path):
    """labels_batch with config/mimic3.yaml's label tracks: MAP per window from ABPMean, hypotension
    labels of both classes around the stretch, empty cells for the case without a numerics record."""
    ids = {r["name"]: r["caseid"] for r in numerics["rows"]}
    n_h = int((H_SECONDS - 8.192) // 8.192) + 1  # back-to-back windows at k * 8.192 s (write_shard)
    shards = [write_shard(tmp_path / "h.h5", np.zeros((n_h, 2, 1024), np.float32), caseid=ids[H]),
              write_shard(tmp_path / "n.h5", np.zeros((10, 2, 1024), np.float32), caseid=ids[N])]
    status = {str(ids[r]): {"status": "ok", "path": str(numerics["paths"][r])} for r in (H, N)}
    counts = labels_batch(status, shards, label_params(numerics["section"]), tmp_path / "labels.tsv")
    assert counts == {"cases": 2, "windows": n_h + 10, "no_label_tracks": 1, "unreadable": 0}
    with open(tmp_path / "labels.tsv", newline="") as f:
        assert next(csv.reader(f, delimiter="\t")) == COLUMNS
    lab = read_labels([tmp_path / "labels.tsv"])
    h = sorted((k[1] / 1000, v) for k, v in lab.items() if k[0] == ids[H])
    starts = np.array([s for s, _ in h])
    maps = np.array([v["map_mmHg"] for _, v in h])
    assert np.isfinite(maps).all()  # every window holds 1 Hz samples
    inside = (starts >= HYPO_AT) & (starts + 8.192 <= HYPO_AT + HYPO_S)
    outside = (starts + 8.192 <= HYPO_AT) | (starts >= HYPO_AT + HYPO_S)
    np.testing.assert_allclose(maps[inside], 55.0, atol=0.01)
    np.testing.assert_allclose(maps[outside], 80.0, atol=0.01)
    assert np.allclose([v["sbp_mmHg"] - v["map_mmHg"] for _, v in h], 35.0, atol=0.02)
    ahead = np.array([v["hypotension_5min"] for _, v in h])
    ends = starts + 8.192
    assert set(ahead[np.isfinite(ahead)]) == {0.0, 1.0}
    assert np.all((ends[ahead == 1] > HYPO_AT - 300) & (ends[ahead == 1] < HYPO_AT))  # the event starts within 5 min
    assert (ahead == 1).sum() > 20 and (ahead == 0).sum() > 20
    assert all(np.isnan(v[c]) for k, v in lab.items() if k[0] == ids[N] for c in COLUMNS[2:])
