"""The demo source: synthetic cases with known physiology, written as real `.vital` files.

Every case has a known base heart rate (with slow variability), ECG lead II with P-QRS-T
morphology in mV, a PPG with systolic and dicrotic waves delayed by a pulse transit time,
baseline wander and noise. The first cases carry one deliberate fault each (`FAULTS`), so that
every quality rule and every skip reason of the pipeline is exercised on the same code path as
real data: the files go through `vitaldb.VitalFile.to_vital`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path
from pipeline.sources._vital import VitalFileSource

log = logging.getLogger(__name__)

NATIVE_FS = 500
DT0 = 4102444800.0  # 2100-01-01 UTC, as VitalDB's anonymised files
# caseid -> fault; every other case is clean.
FAULTS = {2: "flat", 3: "clip", 4: "gap", 5: "amplitude", 6: "brady", 7: "missing_ecg", 8: "corrupt"}
FAULT_START_S = 120.0
FAULT_LEN_S = 60.0
GAP_LEN_S = 30.0
PPG_SATURATION = 100.0  # the synthetic ADC's upper limit (PPG units)

# (center in beat phase, amplitude mV, width in beat phase) of P, Q, R, S, T
_ECG_WAVES = [(0.10, 0.15, 0.025), (0.24, -0.10, 0.008), (0.26, 1.20, 0.008), (0.28, -0.25, 0.008), (0.50, 0.30, 0.05)]
_PPG_WAVES = [(0.35, 1.00, 0.08), (0.65, 0.35, 0.06)]


def _rng(seed: int, caseid: int) -> np.random.Generator:
    return np.random.default_rng([seed, caseid])


def demo_case_rows(demo_cfg: dict) -> list[dict]:
    """Case table rows of the demo source (before split/batch assignment). Age and sex are left
    unknown: the demo's physiology does not depend on them, so no probe should pretend to learn them."""
    rows = []
    for caseid in range(1, demo_cfg["n_cases"] + 1):
        rng = _rng(demo_cfg["seed"], caseid)
        hr = float(np.round(rng.uniform(55, 110), 1))
        # cases 2 and n share a subject: the split must keep them together
        subjectid = 1000 + (2 if caseid == demo_cfg["n_cases"] else caseid)
        rows.append(
            {
                "caseid": caseid,
                "subjectid": subjectid,
                "name": f"demo-{caseid}",
                "has_ppg": True,
                "has_ecg": True,  # the track list says so; case 7's file lacks it (a fault to catch)
                "duration_s": float(demo_cfg["duration_s"]),
                "age": "",
                "sex": "",
                "hr_bpm": hr,
            }
        )
    return rows


def _waves(phase: np.ndarray, waves) -> np.ndarray:
    out = np.zeros_like(phase)
    for center, amp, width in waves:
        d = (phase - center + 0.5) % 1.0 - 0.5
        out += amp * np.exp(-0.5 * (d / width) ** 2)
    return out


def synth_signals(hr_bpm: float, duration_s: float, rng: np.random.Generator, fs: int = NATIVE_FS, hr_override=None):
    """PPG (units, baseline ~50) and ECG (mV) at `fs` with heart rate `hr_bpm` (float64 arrays).

    `hr_override` = (start_s, stop_s, bpm) replaces the heart rate over a stretch.
    """
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    hr = hr_bpm * (1 + 0.03 * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi)))
    if hr_override is not None:
        a, b, bpm = hr_override
        hr[int(a * fs) : int(b * fs)] = bpm
    phase = np.cumsum(hr / 60.0 / fs) + rng.uniform()
    ecg = _waves(phase % 1.0, _ECG_WAVES)
    ecg += 0.05 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, 0.02, n)
    ptt_phase = 0.25
    ppg = _waves((phase - ptt_phase) % 1.0, _PPG_WAVES)
    resp = 1 + 0.1 * np.sin(2 * np.pi * 0.25 * t)
    ppg = 50 + 20 * resp * ppg + rng.normal(0, 0.2, n)
    return ppg, ecg


def write_vital(path: str | Path, tracks: dict[str, np.ndarray], fs: float, dtstart: float,
                gaps: list[tuple[float, float]] = (), rec_s: float = 1.0, packed: bool = True) -> None:
    """Write float32 wave tracks as a `.vital` file (atomically), leaving out records inside `gaps`."""
    import vitaldb

    n = max(len(x) for x in tracks.values())
    vf = vitaldb.VitalFile()
    vf.dgmt = 0
    vf.dtstart = dtstart
    vf.dtend = dtstart + n / fs
    step = int(round(rec_s * fs))
    for name, x in tracks.items():
        x = np.asarray(x, dtype=np.float32)
        recs = []
        for i in range(0, len(x), step):
            t = i / fs
            if any(a <= t < b for a, b in gaps):
                continue
            recs.append({"dt": dtstart + t, "val": x[i : i + step]})
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        vf.add_track(name, recs, srate=fs, unit="mV" if "ECG" in name else "", mindisp=lo, maxdisp=hi)
    with atomic_path(path) as tmp:
        if not vf.to_vital(str(tmp), packed=packed):
            raise OSError(f"vitaldb failed to write {path}")


def write_demo_case(caseid: int, path: str | Path, demo_cfg: dict, row: dict, ppg_track: str, ecg_track: str) -> str | None:
    """Write one demo case's `.vital` file; return its fault (or None)."""
    rng = _rng(demo_cfg["seed"], caseid)
    rng.uniform(size=1)  # keep draws after the table's ones distinct
    fault = FAULTS.get(caseid)
    a, b = FAULT_START_S, FAULT_START_S + FAULT_LEN_S
    override = (a, b, 30.0) if fault == "brady" else None
    ppg, ecg = synth_signals(float(row["hr_bpm"]), float(demo_cfg["duration_s"]), rng, hr_override=override)
    fs = NATIVE_FS
    sl = slice(int(a * fs), int(b * fs))
    gaps = []
    if fault == "flat":  # the PPG sensor freezes: its value holds
        ppg[sl] = ppg[sl.start]
    elif fault == "clip":  # PPG gain jumps and the signal saturates at the ADC limit
        ppg[sl] = np.minimum(50 + 4 * (ppg[sl] - 50), PPG_SATURATION)
    elif fault == "gap":
        gaps = [(a, a + GAP_LEN_S)]
    elif fault == "amplitude":  # ECG gain error: implausible millivolts
        ecg[sl] *= 25
    tracks = {ppg_track: ppg} if fault == "missing_ecg" else {ppg_track: ppg, ecg_track: ecg}
    write_vital(path, tracks, fs, DT0 + caseid * 86400.0, gaps=gaps)
    if fault == "corrupt":  # a download cut short: the gzip stream ends early
        data = Path(path).read_bytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data[: len(data) * 6 // 10])
    return fault


class DemoSource(VitalFileSource):
    name = "demo"

    def case_rows(self) -> list[dict]:
        return demo_case_rows(self.section)

    def fetch(self, row: dict, dest: Path, session) -> None:
        write_demo_case(int(row["caseid"]), dest, self.section, row, *self.tracks())


SOURCE = DemoSource
