import h5py
import numpy as np
import pytest

from pipeline.data.quality import RULES, first_rule_masks, heart_rate_bpm, rule_masks
from pipeline.data.resample import resample_track, write_resampled
from pipeline.data.sources.demo import add_artefacts, synth_signals
from pipeline.data.windows import build_manifest, cut, window_case, windows_batch

FS = 125


def case_signals(hr=72.0, seconds=100.0, seed=0):
    """A clean synthetic case resampled to 125 Hz: (signals [2, T], saturated [2, T])."""
    ppg, ecg = synth_signals(hr, seconds, np.random.default_rng(seed))
    out = [resample_track(x, 500, FS) for x in (ppg, ecg)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def masks_of(signals, saturated, q):
    win, sat = cut(signals, 1024, 1024), cut(saturated, 1024, 1024)
    return rule_masks(win, sat, FS, q)


def test_cut_counts_boundaries_and_stride():
    x = np.arange(2 * 5000, dtype=np.float32).reshape(2, 5000)
    w = cut(x, 1024, 1024)
    assert w.shape == (4, 2, 1024)  # (5000 - 1024) // 1024 + 1
    assert w[1, 0, 0] == 1024 and w[1, 0, -1] == 2047 and w[1, 1, 0] == 5000 + 1024
    w = cut(x, 1024, 512)
    assert w.shape == (8, 2, 1024) and w[3, 0, 0] == 3 * 512
    assert w[-1, 0, -1] <= 4999
    assert cut(x[:, :1000], 1024, 1024).shape == (0, 2, 1024)


@pytest.mark.parametrize("hr", [42.0, 60.0, 95.0, 140.0, 175.0])
def test_heart_rate_estimate_within_3_bpm(hr):
    signals, _ = case_signals(hr=hr, seconds=60)
    est = heart_rate_bpm(cut(signals, 1024, 1024)[:, 1], FS)
    assert np.all(np.abs(est - hr) < 0.05 * hr + 1), (hr, est)


def test_clean_signal_passes_every_rule(config):
    signals, sat = case_signals()
    masks = masks_of(signals, sat, config["quality"])
    for rule in RULES:
        assert not masks[rule].any(), rule


def fault(signals, sat, kind):
    s, m = signals.copy(), sat.copy()
    a, b = 20 * FS, 40 * FS  # windows 2..4 are fully inside [20 s, 40 s)
    if kind == "nan":
        s[1, a:b] = np.nan
    elif kind == "flat":
        s[0, a:b] = s[0, a]
    elif kind == "clipping":
        m[0, a:b] = True
    elif kind == "amplitude":
        s[1, a:b] *= 30
    elif kind == "heart_rate":
        slow, _ = case_signals(hr=28.0, seconds=100)
        s[1, a:b] = slow[1, a:b]
    elif kind == "ppg_skewness":  # a PPG upside down: every beat there, the wave's shape mirrored
        s[0, a:b] = 2 * s[0, a:b].mean() - s[0, a:b]
    elif kind == "ppg_template":  # motion artefact: no pulse, noise of the pulse's size (the demo's)
        s[0, a:b] = resample_track(add_artefacts(np.zeros(100 * 500), [(20.0, 40.0)], np.random.default_rng(1)), 500, FS)[0][a:b]
    elif kind == "ecg_template":  # the ECG electrode off: band-limited noise of an ECG's size
        noise = np.convolve(np.random.default_rng(2).normal(0, 1, b - a), np.ones(5) / 5, mode="same")
        s[1, a:b] = 0.4 * noise / noise.std()
    elif kind == "rate_agreement":  # both clean, but the PPG's heart beats at 100 and the ECG's at 72
        fast, _ = case_signals(hr=100.0, seconds=100)
        s[0, a:b] = fast[0, a:b]
    return s, m


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_catches_its_fault(config, rule):
    signals, sat = case_signals()
    masks = masks_of(*fault(signals, sat, rule), config["quality"])
    assert masks[rule][3], rule  # window 3 = [24.6 s, 32.8 s) lies inside the fault
    assert not masks[rule][0] and not masks[rule][-1], rule  # clean windows still pass
    keep, first = first_rule_masks(masks)
    assert not keep[3] and keep[0]
    assert sum(int(m.sum()) for m in first.values()) == int((~keep).sum())  # each rejected window counted once
    assert np.all(np.sum(list(first.values()), axis=0) == ~keep)


def test_thresholds_are_configurable(config):
    signals, sat = case_signals(hr=100.0)
    q = dict(config["quality"], hr_max_bpm=90.0)
    assert masks_of(signals, sat, q)["heart_rate"].all()
    q = dict(config["quality"], ecg_ptp_min=5.0)
    assert masks_of(signals, sat, q)["amplitude"].all()


def test_window_case_keeps_start_times(config):
    signals, sat = case_signals()
    s, m = fault(signals, sat, "nan")
    win, starts, hr, stats = window_case(s, m, FS, config["window"], config["quality"])
    assert stats["cut"] == 12 and stats["kept"] == len(win) == len(starts) == len(hr)
    assert stats["rejected"]["nan"] == stats["cut"] - stats["kept"] > 0
    np.testing.assert_array_equal(win[0], signals[:, :1024])
    idx = (starts * FS / 1024).astype(int)
    for w, i in zip(win, idx):
        np.testing.assert_array_equal(w, signals[:, i * 1024 : (i + 1) * 1024])


def test_windows_batch_writes_shards_with_contract(tmp_path, config):
    rows = []
    status = {}
    for caseid, split, hr in [(1, "train", 70.0), (2, "val", 90.0), (3, "train", 60.0), (4, "test", 80.0)]:
        signals, sat = case_signals(hr=hr, seed=caseid)
        p = tmp_path / f"{caseid}.h5"
        write_resampled(p, signals, sat, {"caseid": caseid})
        status[str(caseid)] = {"status": "ok", "path": str(p)}
        rows.append({"caseid": caseid, "subjectid": 100 + caseid, "split": split, "batch": 0})
    rows.append({"caseid": 5, "subjectid": 105, "split": "train", "batch": 0})
    status["5"] = {"status": "failed", "stage": "download", "reason": "HTTP 404"}
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], **{k: config[k] for k in ("signals", "window", "quality")}}
    shards = {s: tmp_path / s / "shard-0000.h5" for s in ("train", "val", "test")}
    stats = windows_batch(rows, status, params, shards, tmp_path / "stats.json", 0)

    with h5py.File(shards["train"]) as f:
        assert f["signals"].dtype == np.float32 and f["signals"].shape == (24, 2, 1024)
        assert f["signals"].chunks == (64, 2, 1024)
        assert sorted(set(f["caseid"][()])) == [1, 3] and f["subjectid"].dtype == np.int64
        assert f["start_s"].dtype == np.float64 and f["start_s"][1] == pytest.approx(1024 / FS)
        assert abs(float(np.median(f["hr_bpm"][:12])) - 70) < 3
        for key in ("fs", "window", "channels", "tracks", "pipeline_version", "config_digest"):
            assert key in f.attrs
        assert f.attrs["fs"] == 125 and f.attrs["window"] == 1024 and list(f.attrs["channels"]) == ["PPG", "ECG"]
    with h5py.File(shards["val"]) as f:
        assert f["signals"].shape[0] == 12 and set(f["caseid"][()]) == {2}
    assert stats["5"]["skip_reason"] == "download: HTTP 404" and stats["5"]["kept"] == 0

    manifest = build_manifest([tmp_path / "stats.json"], tmp_path / "manifest.json", params)
    assert manifest["totals"]["kept"] == 48 and manifest["totals"]["cases_used"] == 4
    assert manifest["totals"]["kept_per_split"] == {"train": 24, "val": 12, "test": 12}


def test_empty_split_shard_is_valid(tmp_path, config):
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], **{k: config[k] for k in ("signals", "window", "quality")}}
    shards = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    windows_batch([], {}, params, shards, tmp_path / "stats.json", 3)
    with h5py.File(shards["test"]) as f:
        assert f["signals"].shape == (0, 2, 1024) and f.attrs["batch"] == 3


def test_the_qc_table_is_ordered_by_number_with_totals_a_filter_and_a_column_per_rule(tmp_path):
    """qc.html at thousands of cases: case ids in numeric order (was text order: 1, 10, 19, 2, ...),
    the totals, a sortable column per rule and a filter box; qc.png is written beside it."""
    import re

    from pipeline.data.qc_report import qc_report

    cases = {str(c): {"split": "train", "cut": 10, "kept": 10 - c % 3, "rejected": {r: int(r == "flat") * (c % 3) for r in RULES}}
             for c in (1, 2, 10, 19, 100)}
    cases["7"] = {"split": "test", "cut": 0, "kept": 0, "skip_reason": "download: excluded (cases.exclude)", "excluded": True}
    totals = {"cases": 6, "cases_used": 5, "cut": 50, "kept": 45, "rejected": {r: 5 * (r == "flat") for r in RULES},
              "kept_per_split": {"train": 45, "val": 0, "test": 0}, "skipped": 1, "excluded": 1, "gave_up": 0,
              "unexpected_errors": {}}
    (tmp_path / "m.json").write_text(__import__("json").dumps({"totals": totals, "cases": cases}))
    qc_report(tmp_path / "m.json", tmp_path / "qc.png", tmp_path / "qc.html")
    page = (tmp_path / "qc.html").read_text()
    body = page.split("<tbody>")[1]
    assert re.findall(r"<tr><td>(\d+)</td>", body) == ["1", "2", "7", "10", "19", "100"]
    assert "<th>of them excluded (cases.exclude)</th><td>1</td>" in page
    assert "<th>windows rejected by flat (first failing rule)</th><td>5</td>" in page
    header = re.findall(r"<th onclick='qcSort\(this\)'>([^<]+)</th>", page)
    assert header[:4] == ["case", "split", "cut", "kept"] and set(RULES) <= set(header)
    assert "function qcSort" in page and "oninput='qcFilter(this)'" in page
    assert (tmp_path / "qc.png").stat().st_size > 10_000


def test_the_qc_gallery_shows_windows_each_rule_rejected_first_and_kept_ones(tmp_path, config):
    """The windows stage keeps a few examples per group (kept, each rule's first rejections), at most
    one per case and group, the same on a rerun; qc_gallery draws them per group, PPG above ECG."""
    from pipeline.data.qc_report import qc_gallery
    from pipeline.data.windows import EXAMPLES_PER_GROUP, read_examples

    rows, status, faults = [], {}, {1: "nan", 2: "flat", 3: "amplitude", 4: None, 5: "flat", 6: "flat", 7: "flat", 8: "flat"}
    for caseid, kind in faults.items():
        signals, sat = case_signals(hr=60.0 + 3 * caseid, seed=caseid)
        if kind:
            signals, sat = fault(signals, sat, kind)
        write_resampled(tmp_path / f"{caseid}.h5", signals, sat, {"caseid": caseid})
        status[str(caseid)] = {"status": "ok", "path": str(tmp_path / f"{caseid}.h5")}
        rows.append({"caseid": caseid, "subjectid": caseid, "split": "train"})
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], **{k: config[k] for k in ("signals", "window", "quality")}}
    shards = {s: tmp_path / s / "shard-0000.h5" for s in ("train", "val", "test")}
    stats = windows_batch(rows, status, params, shards, tmp_path / "stats.json", 7, tmp_path / "ex.h5")
    examples, fs = read_examples([tmp_path / "ex.h5"])
    assert fs == 125
    groups = [e["group"] for e in examples]
    assert groups.count("kept") == EXAMPLES_PER_GROUP and groups.count("flat") == EXAMPLES_PER_GROUP  # 5 cases: capped
    assert groups.count("nan") == groups.count("amplitude") == 1  # one case each: one example (its middle window)
    assert set(groups) == {"kept", "nan", "flat", "amplitude"}  # only rules that rejected a window first
    assert len({(e["group"], e["caseid"]) for e in examples}) == len(examples)  # at most one per case and group
    for e in examples:  # the stored window is the case's window at start_s, and fails its group's rule
        with h5py.File(tmp_path / f"{e['caseid']}.h5") as f:
            i = round(e["start_s"] * FS)
            np.testing.assert_array_equal(e["signals"], f["signals"][:, i : i + 1024].astype(np.float32))
        assert (e["group"] == "kept") == (e["failed"] == "") and (e["group"] == "kept" or e["group"] in e["failed"].split(","))
        case = stats[str(e["caseid"])]
        assert (case["kept"] if e["group"] == "kept" else case["rejected"][e["group"]]) > 0
    windows_batch(rows, status, params, shards, tmp_path / "stats.json", 7, tmp_path / "again.h5")
    assert [(e["group"], e["caseid"]) for e in read_examples([tmp_path / "again.h5"])[0]] == [(e["group"], e["caseid"]) for e in examples]

    signals, sat = case_signals()
    signals, picked = signals.astype(np.float32), []  # float32 as read_resampled returns it
    window_case(signals, sat, FS, config["window"], config["quality"], picked)
    assert picked and not any(np.shares_memory(w, signals) for _, w, _, _ in picked)  # copies: the case can be freed

    build_manifest([tmp_path / "stats.json"], tmp_path / "manifest.json", params)
    shown = qc_gallery(tmp_path / "manifest.json", [tmp_path / "ex.h5"], tmp_path / "gallery.png", per_group=3)
    assert shown == {"kept": 3, "nan": 1, "flat": 3, "amplitude": 1}
    assert (tmp_path / "gallery.png").stat().st_size > 20_000
