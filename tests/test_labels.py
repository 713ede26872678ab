"""The labellers (pipeline/data/labels.py) against hand-made MAP series."""

import csv

import numpy as np

from pipeline.data.labels import (
    COLUMNS,
    hypotension_ahead,
    hypotension_onset,
    hypotensive_runs,
    label_case,
    read_labels,
    valid,
    window_medians,
)
from tests.helpers import write_shard

THR, MIN_S, GAP, WASHOUT, MARGIN = 65.0, 60.0, 10.0, 300.0, 1200.0
CFG = {"tracks": {"map": "MBP", "sbp": "SBP", "dbp": "DBP"}, "valid_mmHg": {"map": [20, 200], "sbp": [20, 300], "dbp": [5, 200]},
       "hypotension_mmHg": THR, "hypotension_min_s": MIN_S, "max_gap_s": GAP, "washout_s": WASHOUT, "negative_margin_s": MARGIN}
WINDOW_S = 8.192


def series(dips, end=3600.0, dt=2.0, base=80.0, begin=0.0):
    """MAP every dt seconds at `base`, with (start, duration, value) dips."""
    t = np.arange(begin, end, dt)
    v = np.full(len(t), base)
    for a, d, val in dips:
        v[(t >= a) & (t < a + d)] = val
    return t, v


def ahead(t, v, end, h_min):
    return hypotension_ahead(t, v, np.array([end]), 60.0 * h_min, CFG)[0]


def onset(t, v, h_min, end=3600.0):
    """The onset labels of back-to-back windows from 0 to `end`: (window end times, labels)."""
    ends = np.arange(0.0, end - WINDOW_S, WINDOW_S) + WINDOW_S
    return ends, hypotension_onset(t, v, ends, WINDOW_S, 60.0 * h_min, CFG)


def test_an_event_needs_sixty_seconds_below_the_threshold():
    t, v = series([(1000, 120, 55), (2000, 58, 55), (3000, 60, 60)])  # 120 s, 58 s, 60 s (recovery sample at 3060)
    events, blockers = hypotensive_runs(t, v, THR, MIN_S, GAP)
    assert events.tolist() == [[1000.0, 1120.0], [3000.0, 3060.0]] and blockers.tolist() == events.tolist()
    t1, v1 = series([(2000, 59, 50)], dt=1.0)  # a 59 s dip sampled every second, recovered: neither event nor blocker
    assert hypotensive_runs(t1, v1, THR, MIN_S, GAP)[1].size == 0


def test_hypotension_ahead_inside_and_just_outside_the_horizon():
    t, v = series([(2000, 120, 55)])
    assert ahead(t, v, 2000 - 300, 5) == 1.0          # the event starts exactly at t + 5 min: inside (t, t+h]
    assert ahead(t, v, 2000 - 300 - 2, 5) == 0.0      # 2 s too early for 5 min: just outside, data cover it
    assert ahead(t, v, 2000 - 300 - 2, 10) == 1.0     # but inside 10 min
    assert ahead(t, v, 2000 - 900, 15) == 1.0
    assert np.isnan(ahead(t, v, 2000, 5))              # the event's first sample is at t: already hypotensive
    assert np.isnan(ahead(t, v, 2001, 5))              # during the event: undefined
    assert np.isnan(ahead(t, v, 2050, 15))


def test_no_label_during_the_washout_after_an_event():
    t, v = series([(2000, 120, 55)])                   # the event lasts to its recovery sample at 2120 s
    assert np.isnan(ahead(t, v, 2120 + WASHOUT - 2, 5))  # ended less than the washout before t
    assert ahead(t, v, 2120 + WASHOUT + 2, 5) == 0.0
    assert ahead(t, v, 2120 + WASHOUT + 2, 15) == 0.0


def test_the_end_of_a_case_is_undefined_for_both_classes():
    """Today's shortcut: near the end, a negative needed a future but a positive did not. Now both do."""
    t, v = series([(3300, 200, 55)])                   # an event starting 5 min before the data end (3598 s)
    assert ahead(t, v, 3300 - 200, 5) == 1.0           # its whole horizon is recorded
    assert np.isnan(ahead(t, v, 3300 - 200, 15))       # the event starts inside 15 min, but t + 15 min is not recorded
    t2, v2 = series([])
    assert np.isnan(ahead(t2, v2, 3300 - 200, 15))     # and without an event: the same
    assert ahead(t2, v2, 3598 - 900, 15) == 0.0
    assert np.isnan(ahead(t2, v2, 200, 5))              # the washout before t is not recorded either


def test_a_59_second_dip_ahead_is_a_negative_and_a_gap_is_undefined():
    t, v = series([(2000, 59, 50)], dt=1.0)
    assert ahead(t, v, 1900, 5) == 0.0
    t2, v2 = series([])
    keep = (t2 < 1500) | (t2 > 1530)                  # a 32 s hole in the numerics
    t2, v2 = t2[keep], v2[keep]
    assert np.isnan(ahead(t2, v2, 1400, 5))           # the hole lies in (t, t+5 min]: not covered
    assert np.isnan(ahead(t2, v2, 1600, 5))           # the hole lies in the washout
    assert ahead(t2, v2, 1540 + WASHOUT, 5) == 0.0    # after the hole and a washout: covered again
    assert np.isnan(ahead(t2, v2, 3590, 5))           # the data end before t + 5 min


def test_a_run_cut_by_a_gap_is_no_event_but_blocks_a_negative():
    t, v = series([(1000, 80, 55)])
    keep = (t < 1040) | (t >= 1052)                   # a 12 s hole splits the 80 s dip into two short runs
    t, v = t[keep], v[keep]
    events, blockers = hypotensive_runs(t, v, THR, MIN_S, GAP)
    assert events.size == 0 and blockers.tolist() == [[1000.0, 1038.0]]  # the second run recovered: not censored
    assert np.isnan(ahead(t, v, 720, 5))              # (t, t+5 min] ends before the hole but holds the cut run
    assert ahead(t, v, 690, 5) == 0.0                 # the run starts after t + 5 min


def test_onset_protocol_one_positive_per_event_and_negatives_far_from_it():
    t, v = series([(2000, 120, 55)])
    for h in (5, 10, 15):
        ends, lab = onset(t, v, h)
        pos = np.flatnonzero(lab == 1)
        assert len(pos) == 1 and ends[pos[0]] <= 2000 - 60 * h < ends[pos[0]] + WINDOW_S  # the last window before onset - h
        neg = lab == 0
        assert neg.any() and (ends[neg] <= 2000 - MARGIN).all()  # (after the event, the data end within the margin)
        assert (ends[neg] - WASHOUT >= -GAP).all() and (ends[neg] + 60 * h <= 3598 + GAP).all()  # recorded past and future
        assert np.isnan(lab[~neg & (lab != 1)]).all()


def test_onset_protocol_skips_an_event_too_soon_after_another_and_one_without_its_window():
    t, v = series([(1500, 120, 55), (1800, 120, 55)])  # the second starts 180 s after the first ends
    ends, lab = onset(t, v, 5)
    assert ends[lab == 1].tolist() == [ends[ends <= 1200].max()]  # the first event only: the second's washout holds the first
    ends = np.arange(0.0, 1000.0, WINDOW_S) + WINDOW_S  # windows stop at 1000 s (the rest rejected by the quality rules)
    lab = hypotension_onset(*series([(2000, 120, 55)]), ends, WINDOW_S, 300.0, CFG)
    assert not (lab == 1).any()                         # the last window ends 700 s before onset - 5 min: no positive


def test_artefacts_are_dropped_before_labelling():
    t, v = series([])
    v[100:103] = 0.0     # zeroing
    v[200:202] = 250.0   # flush
    tv, vv = valid(t, v, 20, 200)
    assert len(tv) == len(t) - 5 and vv.min() == vv.max() == 80.0


def test_window_blood_pressure_is_aligned_to_the_window_within_one_numeric_sample():
    t = 0.7 + np.arange(0.0, 3600.0, 2.0)         # numerics every 2 s, not on the window grid
    v = 60.0 + t / 10.0                             # MAP rising 0.1 mmHg per second: the value tells the time
    starts = np.random.default_rng(0).uniform(0, 3500, 500)
    centre_time = (window_medians(t, v, starts, 8.192) - 60.0) * 10.0
    assert np.abs(centre_time - (starts + 4.096)).max() <= 1.0  # within half a numeric sample of the centre
    late = (window_medians(t + 2.0, v, starts, 8.192) - 60.0) * 10.0  # numerics stamped one sample late
    assert np.allclose(centre_time - late, 2.0, atol=1e-9)  # shift the labels by exactly that sample
    assert np.isnan(window_medians(t, v, np.array([3700.0]), 8.192)[0])


def test_label_case_without_tracks_is_all_empty_and_with_tracks_complete():
    starts = np.arange(0, 1800, 8.192)
    empty = label_case({}, starts, 8.192, CFG)
    assert set(empty) == set(COLUMNS[2:]) and all(np.isnan(c).all() for c in empty.values())
    t, v = series([(1200, 180, 55)], end=2400)
    cols = label_case({"MBP": (t, v), "SBP": (t, v + 40), "DBP": (t, v - 20)}, starts, 8.192, CFG)
    assert np.nanmax(cols["sbp_mmHg"]) == 120.0 and np.nanmin(cols["dbp_mmHg"]) == 35.0
    pos = cols["hypotension_15min"] == 1
    assert pos.any() and np.all(starts[pos] + 8.192 >= 1200 - 900) and np.all(starts[pos] + 8.192 < 1200)


def test_labels_batch_writes_every_window_of_the_batch(tmp_path, monkeypatch):
    from pipeline.data.labels import labels_batch
    from pipeline.data.sources import Source

    class Numerics(Source):
        name = "fake"

        def read_numerics(self, path, names):
            t, v = series([(400, 120, 50)], begin=-600.0, end=1500)
            return {"MBP": (t, v), "SBP": (t, v + 30), "DBP": (t, v - 15)} if path.name == "1.x" else {}

    sig = np.zeros((30, 2, 1024), np.float32)
    paths = [write_shard(tmp_path / "a.h5", sig, caseid=1), write_shard(tmp_path / "b.h5", sig[:5], caseid=2)]
    monkeypatch.setattr("pipeline.data.labels.get_source", lambda params: Numerics({}))
    counts = labels_batch({"1": {"status": "ok", "path": str(tmp_path / "1.x")}, "2": {"status": "ok", "path": str(tmp_path / "2.x")}},
                          paths, {"labels": CFG, "window": {"length": 1024}, "signals": {"target_fs": 125}}, tmp_path / "l.tsv")
    assert counts["windows"] == 35 and counts["no_label_tracks"] == 1
    rows = list(csv.DictReader((tmp_path / "l.tsv").open(), delimiter="\t"))
    assert len(rows) == 35 and list(rows[0]) == COLUMNS
    assert set(read_labels([tmp_path / "l.tsv"], {(1, 0), (2, 0), (9, 0)})) == {(1, 0), (2, 0)}  # only the rows asked for
    lab = read_labels([tmp_path / "l.tsv"])
    assert lab[(1, 0)]["map_mmHg"] == 80.0 and np.isnan(lab[(2, 0)]["map_mmHg"])
    ms = [round(k * 8.192 * 1000) for k in range(30)]
    assert lab[(1, ms[5])]["hypotension_5min"] == 0.0  # ends at 49 s: the event (400 s) is beyond 5 min
    assert lab[(1, ms[20])]["hypotension_5min"] == 1.0  # ends at 172 s: the event starts within 5 min
    assert [k for k in range(30) if lab[(1, ms[k])]["hypotension_onset_5min"] == 1.0] == [11]  # the last end <= 100 s
    assert all(np.isnan(lab[(1, ms[k])]["hypotension_onset_5min"]) for k in range(30) if k != 11)  # all within the margin
    assert np.isnan(lab[(2, ms[3])]["hypotension_5min"])
