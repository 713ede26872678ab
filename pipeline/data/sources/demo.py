"""The demo source: synthetic cases with known physiology, written as real `.vital` files.

Every case has ECG lead II (P-QRS-T morphology, mV) and a PPG at 500 Hz, and, unless it has no
arterial line, the arterial-pressure numerics of a Solar 8000 monitor. The first cases carry one
deliberate fault each (`FAULTS`), so that every quality rule and every skip reason of the pipeline
is exercised on the same code path as real data: the files go through `vitaldb.VitalFile.to_vital`.
The clip fault drives the top `CLIP_FRACTION` of its stretch's samples into saturation, whatever the
case's PPG amplitude, so that it stays a clipping fault and never becomes a flat one.

Patient (one per subject: the two cases of a subject share every trait and every per-subject
constant, drawn from the subject's own generator):
- age uniform in `AGE_RANGE` years, sex M/F with equal odds, BMI ~ N(`BMI_MEAN`, `BMI_SD`) clipped
  to `BMI_RANGE` (one decimal);
- ASA class = round(1 + `ASA_AGE_SLOPE` (age - 20) + `ASA_OBESE` [BMI > 32] + N(0, `ASA_SD`)),
  clipped to 1-4: older patients are more often ASA 3-4;
- per-subject noise on each relation below: baroreflex gain ~ N(`BARO_GAIN`, `BARO_GAIN_SD`),
  PAT offset uniform +-`PAT_OFFSET_MS`, PPG gain uniform in `PPG_GAIN_RANGE`, pulse pressure
  + N(0, `PP_SD`), dicrotic ratio + N(0, `DICROTIC_RATIO_SD`) and delay + N(0, `DICROTIC_DELAY_SD_S`).
- `has_art`: True, except cases with caseid % `NO_ART_EVERY` == 0 (no arterial line: no numerics).

Mean arterial pressure MAP(t), mmHg, on a 1 s grid (`DemoCase.map_grid`):
- baseline uniform in `MAP_BASELINE`, plus a slow drift (three sinusoids with periods in
  `DRIFT_PERIOD_S`, amplitudes in `DRIFT_AMP`: |drift| <= 6 mmHg, so the baseline alone never
  falls below 65);
- hypotensive episodes: Poisson(lambda) of them, at most `MAX_EPISODES`. By default lambda =
  `EPISODE_RATE_FLAT` for every patient: episode risk is independent of age, ASA and so of the pulse
  shape (which age sets), so no trait is a shortcut to the hypotension labels. `demo.risk_from_traits:
  true` restores lambda = `EPISODE_RATE` + `EPISODE_RATE_ASA` (ASA - 1) + `EPISODE_RATE_AGE` (age - 50).
  Each: a decline from the baseline to `HYPOTENSION_MMHG` (quarter sine) over `DECLINE_S` seconds
  (gradual onset) or, for a share `demo.abrupt_fraction` of episodes, over `ABRUPT_DECLINE_S` (abrupt
  onset: little to see 5-15 min ahead, as after induction or a sudden bleed), MAP below 65 for exactly its
  `below_s` (a dip of `depth` mmHg under 65, shape sin(pi s)^0.3), then a recovery to the baseline
  over `RECOVERY_S`. `below_s` is in `EPISODE_BELOW_S` (2-6 min); a fraction `BRIEF_FRACTION` of
  episodes are brief dips, `BRIEF_BELOW_S` (under 60 s, not an event by a 60 s rule) and
  `BRIEF_DEPTH` deep. An episode starts (MAP crosses 65) no earlier than `MIN_EPISODE_START_S`, after
  its whole decline where the case is long enough; the below-65 stretches of two episodes are
  `EPISODE_GAP_S` plus the first one's recovery apart. MAP is the minimum of the baseline and every
  episode's curve, so MAP < 65 exactly inside the episodes (`DemoCase.episodes`).
- near misses: Poisson(`demo.near_miss_rate`) declines per case (placed where they fit, 120 s from
  any episode; about half do in 25-min cases) that look like an episode's start
  (a decline over `DECLINE_S` to a nadir in `NEAR_MISS_NADIR` mmHg) and recover over `RECOVERY_S`
  without an event (`DemoCase.near_misses`): a falling MAP is not yet a hypotensive event.

Relations (MAP0 = the case's baseline, MAP_REF = 85 mmHg):
- baroreflex: HR = HR0 (1 + 0.03 sin(2 pi 0.1 t)) + k (MAP0 - MAP), k = the subject's gain
  (bpm/mmHg), clipped to `HR_LIMITS`; HR0 = the case table's hr_bpm.
- PPG pulse amplitude = `PPG_AMP` gain clip(1 + s (MAP - MAP_REF), 0.3, 1.6), s =
  `demo.ppg_amplitude_slope` per mmHg. Default 0: the finger PPG's amplitude carries no blood
  pressure (under anaesthesia, vasodilatory hypotension often raises it, so neither sign is safe to
  assume); a negative s makes it rise as MAP falls, a positive one (0.02 before) fall.
- pulse arrival time: the PPG beat arrives PAT(t) after its ECG R-peak,
  PAT = `PAT_MS` - `PAT_SLOPE_MS` (MAP - `PAT_MAP_MMHG`) + the subject's offset (ms), plus a
  beat-to-beat jitter N(0, `PAT_JITTER_MS`). It is a delay in time: the PPG at time t shows the pulse
  phase of time t - PAT(t), so beat k arrives at a_k with a_k - PAT(a_k) = r_k (its R-peak).
  The PPG beat is a systolic wave (t/tp)^3 exp(3 (1 - t/tp)), tp = `SYSTOLIC_PEAK_S` after arrival
  (zero before it), plus a reflected (dicrotic) Gaussian wave of width `DICROTIC_WIDTH_S`.
- age and morphology: the dicrotic wave is `DICROTIC_RATIO` - `DICROTIC_RATIO_AGE` (age - 20)
  of the systolic one and comes `DICROTIC_DELAY_S` - `DICROTIC_DELAY_AGE_S` (age - 20) seconds after
  the systolic peak: smaller and earlier with age.
- pressures: PP = `PP_MMHG` + `PP_AGE` (age - 20) (+ the subject's noise); SBP = MAP + 2/3 PP,
  DBP = MAP - 1/3 PP.
- motion artefacts (clean cases only, not the fault cases): Poisson(`demo.artefacts_per_hour` x
  hours) stretches of `ARTEFACT_S` seconds in which the PPG shows no pulse, only low-passed noise of
  the pulse's size and a baseline shift (a probe moved or pressed), while the ECG beats on
  (`DemoCase.artefacts`, from their own generator: the truth the quality rules are scored against).

Numerics (`ART_MBP`, `ART_SBP`, `ART_DBP`, mmHg): one value every `NUMERIC_PERIOD_S` from a random
phase, each with N(0, `NUMERIC_NOISE`) noise; 1-3 artefact bursts per case (2-4 samples of all three
tracks at 0, zeroing, or 250, a flush) that a labeller must drop; in a fraction `NUMERIC_GAP_FRACTION`
of cases a gap of `NUMERIC_GAP_S` without numerics.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.sources._vital import ART_MBP_TRACK, VitalFileSource
from pipeline.io import atomic_path, digest

log = logging.getLogger(__name__)

GENERATOR = 3  # in the settings digest: files of an older generator are not reused
NATIVE_FS = 500
DT0 = 4102444800.0  # 2100-01-01 UTC, as VitalDB's anonymised files
# caseid -> fault; every other case is clean.
FAULTS = {2: "flat", 3: "clip", 4: "gap", 5: "amplitude", 6: "brady", 7: "missing_ecg", 8: "corrupt"}
FAULT_START_S = 120.0
FAULT_LEN_S = 60.0
GAP_LEN_S = 30.0
PPG_SATURATION = 100.0  # the synthetic ADC's upper limit (PPG units)
CLIP_FRACTION = 0.12  # "clip": the share of the stretch's samples that the gain jump drives into saturation

# (center in beat phase, amplitude mV, width in beat phase) of P, Q, R, S, T
_ECG_WAVES = [(0.10, 0.15, 0.025), (0.24, -0.10, 0.008), (0.26, 1.20, 0.008), (0.28, -0.25, 0.008), (0.50, 0.30, 0.05)]
R_PHASE = 0.26  # beat phase of the R peak

# Numeric tracks (Solar 8000 arterial line)
ART_MBP = ART_MBP_TRACK
ART_SBP = "Solar8000/ART_SBP"
ART_DBP = "Solar8000/ART_DBP"
NUMERIC_UNIT = "mmHg"
NUMERIC_PERIOD_S = 2.0
NUMERIC_NOISE = 1.0  # mmHg (sd)
ARTEFACT_VALUES = (0.0, 250.0)  # zeroing, flush
NUMERIC_GAP_FRACTION = 0.25
NUMERIC_GAP_S = (60.0, 120.0)

# Patient traits
AGE_RANGE = (20, 85)
BMI_MEAN, BMI_SD, BMI_RANGE = 25.0, 4.5, (17.0, 38.0)
ASA_AGE_SLOPE, ASA_OBESE, ASA_SD = 2.2 / 65, 0.5, 0.6
NO_ART_EVERY = 7

# Blood pressure
HYPOTENSION_MMHG = 65.0
MAP_REF = 85.0
MAP_BASELINE = (75.0, 100.0)
DRIFT_PERIOD_S = (240.0, 1800.0)
DRIFT_AMP = (0.5, 2.0)
EPISODE_RATE, EPISODE_RATE_ASA, EPISODE_RATE_AGE = 0.3, 0.35, 0.01  # demo.risk_from_traits: true
EPISODE_RATE_FLAT = 0.8  # the default, for every patient (about the traits formula's mean over the demo's patients)
MAX_EPISODES = 3
DECLINE_S = (300.0, 600.0)
ABRUPT_DECLINE_S = (10.0, 40.0)
NEAR_MISS_NADIR = (67.0, 74.0)
MAX_NEAR_MISSES = 3
ARTEFACT_S = (5.0, 30.0)
EPISODE_BELOW_S = (120.0, 360.0)
EPISODE_DEPTH = (5.0, 15.0)  # mmHg under 65 at the nadir
BRIEF_FRACTION = 0.3
BRIEF_BELOW_S = (15.0, 50.0)
BRIEF_DEPTH = (2.0, 5.0)
RECOVERY_S = (60.0, 180.0)
MIN_EPISODE_START_S = 120.0
EPISODE_GAP_S = 120.0

# Relations
BARO_GAIN, BARO_GAIN_SD, BARO_GAIN_LIMITS = 0.6, 0.15, (0.3, 0.9)  # bpm per mmHg
HR_LIMITS = (45.0, 150.0)
PPG_AMP, PPG_GAIN_RANGE = 20.0, (0.8, 1.2)
PAT_MS, PAT_SLOPE_MS, PAT_MAP_MMHG, PAT_OFFSET_MS, PAT_JITTER_MS = 300.0, 1.2, 80.0, 15.0, 3.0
SYSTOLIC_PEAK_S = 0.12
DICROTIC_RATIO, DICROTIC_RATIO_AGE, DICROTIC_RATIO_SD = 0.55, 0.006, 0.04
DICROTIC_DELAY_S, DICROTIC_DELAY_AGE_S, DICROTIC_DELAY_SD_S = 0.26, 0.0015, 0.01
DICROTIC_WIDTH_S = 0.05
PP_MMHG, PP_AGE, PP_SD = 35.0, 0.5, 4.0

_SUBJECT_STREAM, _SIGNAL_STREAM, _ARTEFACT_STREAM = 1, 2, 3  # generators besides a case's own `_rng(seed, caseid)`


def _rng(seed: int, caseid: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, caseid, *stream])


@dataclass(frozen=True)
class DemoSubject:
    """A subject's traits and its constants of the relations (module docstring)."""
    subjectid: int
    age: int
    sex: str
    bmi: float
    asa: int
    baro_gain: float  # bpm per mmHg
    pat_offset_s: float
    ppg_gain: float
    dicrotic_ratio: float
    dicrotic_delay_s: float  # after the systolic peak
    pulse_pressure: float  # mmHg


@dataclass(frozen=True)
class Episode:
    """One hypotensive episode, seconds from the case's start: the decline begins at `decline_s`,
    MAP < 65 over [start_s, end_s), back at the baseline at `recovered_s`."""
    decline_s: float
    start_s: float
    end_s: float
    recovered_s: float
    depth: float  # mmHg under 65 at the nadir


@dataclass(frozen=True)
class NearMiss:
    """A decline that recovers without an event: from `decline_s` down to `nadir_mmHg` (>= 65) at
    `nadir_s`, back at the baseline at `recovered_s`."""
    decline_s: float
    nadir_s: float
    recovered_s: float
    nadir_mmHg: float


@dataclass(frozen=True)
class DemoCase:
    """The hidden truth of one case: its subject, base heart rate and MAP (one value a second)."""
    caseid: int
    subject: DemoSubject
    hr_bpm: float
    has_art: bool
    map_baseline: float
    map_grid: np.ndarray  # MAP at 0, 1, 2, ... s
    episodes: tuple[Episode, ...]
    near_misses: tuple[NearMiss, ...] = ()
    ppg_amplitude_slope: float = 0.0  # per mmHg (demo.ppg_amplitude_slope)
    artefacts: tuple[tuple[float, float], ...] = ()  # PPG motion artefacts (from_s, to_s): the truth the quality rules are scored on

    def map_at(self, t_s) -> np.ndarray:
        return np.interp(t_s, np.arange(len(self.map_grid), dtype=np.float64), self.map_grid)


def subject_of(caseid: int, n_cases: int) -> int:
    """Cases 2 and n share a subject: the split must keep them together."""
    return 1000 + (2 if caseid == n_cases else caseid)


def dicrotic_for_age(age: float) -> tuple[float, float]:
    """(ratio to the systolic wave, delay after the systolic peak in s) of an average subject."""
    return DICROTIC_RATIO - DICROTIC_RATIO_AGE * (age - 20), DICROTIC_DELAY_S - DICROTIC_DELAY_AGE_S * (age - 20)


def demo_subject(seed: int, subjectid: int) -> DemoSubject:
    rng = _rng(seed, subjectid, _SUBJECT_STREAM)
    age = int(rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1))
    sex = "M" if rng.uniform() < 0.5 else "F"
    bmi = round(float(np.clip(rng.normal(BMI_MEAN, BMI_SD), *BMI_RANGE)), 1)
    asa = int(np.clip(np.round(1 + ASA_AGE_SLOPE * (age - 20) + ASA_OBESE * (bmi > 32) + rng.normal(0, ASA_SD)), 1, 4))
    ratio, delay = dicrotic_for_age(age)
    return DemoSubject(
        subjectid, age, sex, bmi, asa,
        baro_gain=float(np.clip(rng.normal(BARO_GAIN, BARO_GAIN_SD), *BARO_GAIN_LIMITS)),
        pat_offset_s=float(rng.uniform(-PAT_OFFSET_MS, PAT_OFFSET_MS)) / 1000,
        ppg_gain=float(rng.uniform(*PPG_GAIN_RANGE)),
        dicrotic_ratio=float(max(0.05, ratio + rng.normal(0, DICROTIC_RATIO_SD))),
        dicrotic_delay_s=float(max(0.1, delay + rng.normal(0, DICROTIC_DELAY_SD_S))),
        pulse_pressure=float(PP_MMHG + PP_AGE * (age - 20) + rng.normal(0, PP_SD)),
    )


# A resting adult for callers that give no case: MAP constant at MAP_REF, average constants.
_RESTING = DemoSubject(0, 50, "", 25.0, 2, BARO_GAIN, 0.0, 1.0, *dicrotic_for_age(50), PP_MMHG + PP_AGE * 30)


def episode_rate(subject: DemoSubject, risk_from_traits: bool) -> float:
    """lambda of the Poisson number of episodes of a case (module docstring)."""
    if not risk_from_traits:
        return EPISODE_RATE_FLAT
    return max(0.05, EPISODE_RATE + EPISODE_RATE_ASA * (subject.asa - 1) + EPISODE_RATE_AGE * (subject.age - 50))


def _apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Two stretches (from, to) at least EPISODE_GAP_S apart."""
    return a[1] + EPISODE_GAP_S <= b[0] or b[1] + EPISODE_GAP_S <= a[0]


def _episodes(rng: np.random.Generator, duration_s: float, subject: DemoSubject, demo_cfg: dict) -> list[Episode]:
    lam = episode_rate(subject, demo_cfg["risk_from_traits"])
    placed: list[Episode] = []
    for _ in range(min(MAX_EPISODES, int(rng.poisson(lam)))):
        brief = rng.uniform() < BRIEF_FRACTION
        below = rng.uniform(*(BRIEF_BELOW_S if brief else EPISODE_BELOW_S))
        depth = rng.uniform(*(BRIEF_DEPTH if brief else EPISODE_DEPTH))
        abrupt = rng.uniform() < demo_cfg["abrupt_fraction"]
        decline, recovery = rng.uniform(*(ABRUPT_DECLINE_S if abrupt else DECLINE_S)), rng.uniform(*RECOVERY_S)
        hi = duration_s - below - recovery
        lo = decline + 60 if decline + 60 <= hi else MIN_EPISODE_START_S
        for _try in range(20):
            if hi <= lo:
                break
            start = float(rng.uniform(lo, hi))
            ep = Episode(start - decline, start, start + below, start + below + recovery, depth)
            if all(ep.recovered_s + EPISODE_GAP_S <= p.start_s or p.recovered_s + EPISODE_GAP_S <= ep.start_s for p in placed):
                placed.append(ep)
                break
    return sorted(placed, key=lambda e: e.start_s)


def _near_misses(rng: np.random.Generator, duration_s: float, episodes: list[Episode], rate: float) -> list[NearMiss]:
    """Declines that recover above 65 mmHg, apart from the episodes and each other (module docstring)."""
    placed: list[NearMiss] = []
    for _ in range(min(MAX_NEAR_MISSES, int(rng.poisson(rate)))):
        decline, recovery, nadir = rng.uniform(*DECLINE_S), rng.uniform(*RECOVERY_S), rng.uniform(*NEAR_MISS_NADIR)
        hi = duration_s - recovery
        if hi <= decline:
            continue
        for _try in range(20):
            at = float(rng.uniform(decline, hi))
            nm = NearMiss(at - decline, at, at + recovery, nadir)
            span = (nm.decline_s, nm.recovered_s)
            if all(_apart(span, (e.decline_s, e.recovered_s)) for e in episodes) and all(
                    _apart(span, (p.decline_s, p.recovered_s)) for p in placed):
                placed.append(nm)
                break
    return sorted(placed, key=lambda m: m.nadir_s)


def _near_miss_map(t: np.ndarray, base: np.ndarray, nm: NearMiss) -> np.ndarray:
    """MAP under one near miss: a quarter-sine decline to the nadir, a quarter-sine recovery."""
    out = base.copy()
    m = (t >= nm.decline_s) & (t < nm.nadir_s)
    w = np.sin(0.5 * np.pi * (t[m] - nm.decline_s) / (nm.nadir_s - nm.decline_s))
    out[m] = (1 - w) * base[m] + w * np.minimum(nm.nadir_mmHg, base[m])
    m = (t >= nm.nadir_s) & (t < nm.recovered_s)
    w = np.sin(0.5 * np.pi * (t[m] - nm.nadir_s) / (nm.recovered_s - nm.nadir_s))
    out[m] = (1 - w) * np.minimum(nm.nadir_mmHg, base[m]) + w * base[m]
    return out


def _episode_map(t: np.ndarray, base: np.ndarray, ep: Episode) -> np.ndarray:
    """MAP under one episode (the baseline outside it): >= 65 outside [start_s, end_s), < 65 inside."""
    out = base.copy()
    s = np.clip((t - ep.decline_s) / (ep.start_s - ep.decline_s), 0, 1)
    m = (t >= ep.decline_s) & (t < ep.start_s)
    w = np.sin(0.5 * np.pi * s[m])  # reaches 65 with a slope, not tangentially
    out[m] = (1 - w) * base[m] + w * HYPOTENSION_MMHG
    m = (t >= ep.start_s) & (t < ep.end_s)
    s = (t[m] - ep.start_s) / (ep.end_s - ep.start_s)
    out[m] = HYPOTENSION_MMHG - ep.depth * np.maximum(np.sin(np.pi * s), 1e-3) ** 0.3
    m = (t >= ep.end_s) & (t < ep.recovered_s)
    s = (t[m] - ep.end_s) / (ep.recovered_s - ep.end_s)
    out[m] = HYPOTENSION_MMHG + (base[m] - HYPOTENSION_MMHG) * np.sin(0.5 * np.pi * s)
    return out


def demo_case(demo_cfg: dict, caseid: int) -> DemoCase:
    """The truth of case `caseid`: the first draw of its generator is the table's hr_bpm."""
    rng = _rng(demo_cfg["seed"], caseid)
    hr = float(np.round(rng.uniform(55, 110), 1))
    subject = demo_subject(demo_cfg["seed"], subject_of(caseid, demo_cfg["n_cases"]))
    duration = float(demo_cfg["duration_s"])
    baseline = float(rng.uniform(*MAP_BASELINE))
    t = np.arange(int(np.ceil(duration)) + 1, dtype=np.float64)
    base = np.full_like(t, baseline)
    for _ in range(3):
        base += rng.uniform(*DRIFT_AMP) * np.sin(2 * np.pi * t / rng.uniform(*DRIFT_PERIOD_S) + rng.uniform(0, 2 * np.pi))
    episodes = _episodes(rng, duration, subject, demo_cfg)
    near = _near_misses(rng, duration, episodes, demo_cfg["near_miss_rate"])
    map_grid = base
    for ep in episodes:
        map_grid = np.minimum(map_grid, _episode_map(t, base, ep))
    for nm in near:
        map_grid = np.minimum(map_grid, _near_miss_map(t, base, nm))
    artefacts = () if caseid in FAULTS else tuple(  # the fault cases keep exactly their one fault
        artefact_stretches(_rng(demo_cfg["seed"], caseid, _ARTEFACT_STREAM), duration, demo_cfg["artefacts_per_hour"]))
    return DemoCase(caseid, subject, hr, caseid % NO_ART_EVERY != 0, baseline, map_grid, tuple(episodes), tuple(near),
                    float(demo_cfg["ppg_amplitude_slope"]), artefacts)


def demo_case_rows(demo_cfg: dict) -> list[dict]:
    """Case table rows of the demo source (before split/batch assignment); traits per subject."""
    rows = []
    for caseid in range(1, demo_cfg["n_cases"] + 1):
        hr = float(np.round(_rng(demo_cfg["seed"], caseid).uniform(55, 110), 1))  # demo_case's first draw
        subject = demo_subject(demo_cfg["seed"], subject_of(caseid, demo_cfg["n_cases"]))
        rows.append(
            {
                "caseid": caseid,
                "subjectid": subject.subjectid,
                "name": f"demo-{caseid}",
                "has_ppg": True,
                "has_ecg": True,  # the track list says so; case 7's file lacks it (a fault to catch)
                "duration_s": float(demo_cfg["duration_s"]),
                "age": subject.age,
                "sex": subject.sex,
                "bmi": subject.bmi,
                "asa": subject.asa,
                "has_art": caseid % NO_ART_EVERY != 0,
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


def pat_s(map_mmhg, subject: DemoSubject) -> np.ndarray:
    """Pulse arrival time (s) at a MAP, without the beat-to-beat jitter."""
    return (PAT_MS - PAT_SLOPE_MS * (np.asarray(map_mmhg) - PAT_MAP_MMHG)) / 1000 + subject.pat_offset_s


def _pulse(tau: np.ndarray, subject: DemoSubject) -> np.ndarray:
    """One PPG beat, `tau` seconds after its arrival (0 before it), systolic peak 1."""
    s = np.maximum(tau, 0) / SYSTOLIC_PEAK_S
    out = s**3 * np.exp(3 * (1 - s))
    d = (tau - SYSTOLIC_PEAK_S - subject.dicrotic_delay_s) / DICROTIC_WIDTH_S
    out += subject.dicrotic_ratio * np.exp(-0.5 * d * d)
    return out


def synth_signals(hr_bpm: float, duration_s: float, rng: np.random.Generator, fs: int = NATIVE_FS, hr_override=None,
                  *, case: DemoCase | None = None):
    """PPG (units, baseline 50) and ECG (mV) at `fs` (float64 arrays).

    Heart rate `hr_bpm` with a 3% sinus variation; with `case`, its MAP drives the heart rate, the PPG
    amplitude and the pulse arrival time (module docstring), with its subject's constants; without,
    MAP stays at MAP_REF (a resting adult of 50). `hr_override` = (start_s, stop_s, bpm) replaces the
    heart rate over a stretch.
    """
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    subject = case.subject if case is not None else _RESTING
    mapt = case.map_at(t) if case is not None else np.full(n, MAP_REF)
    map0 = case.map_baseline if case is not None else MAP_REF
    hr = hr_bpm * (1 + 0.03 * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi)))
    hr = np.clip(hr + subject.baro_gain * (map0 - mapt), *HR_LIMITS) if case is not None else hr
    if hr_override is not None:
        a, b, bpm = hr_override
        hr[int(a * fs) : int(b * fs)] = bpm
    phase = np.cumsum(hr / 60.0 / fs) + rng.uniform()
    ecg = _waves(phase % 1.0, _ECG_WAVES)
    ecg += 0.05 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, 0.02, n)

    # R peaks (two beats before the first sample, extrapolated at the first heart rate), arrivals a_k
    k = np.arange(np.floor(phase[0] - R_PHASE) - 2, np.floor(phase[-1] - R_PHASE) + 1) + R_PHASE
    r = np.interp(k, phase, t)
    early = k < phase[0]
    r[early] = (k[early] - phase[0]) * 60.0 / hr[0]

    def pat_at(x):
        return pat_s(case.map_at(np.clip(x, 0, None)) if case is not None else MAP_REF, subject)

    a = r + pat_at(r)
    for _ in range(2):  # a - PAT(a) = r
        a = r + pat_at(a)
    a += rng.normal(0, PAT_JITTER_MS / 1000, len(a))
    a = np.maximum.accumulate(a)
    idx = np.searchsorted(a, t, side="right") - 1  # >= 1: the first two arrivals precede t = 0
    beats = _pulse(t - a[idx], subject) + _pulse(t - a[idx - 1], subject)
    slope = case.ppg_amplitude_slope if case is not None else 0.0
    amp = PPG_AMP * subject.ppg_gain * np.clip(1 + slope * (mapt - MAP_REF), 0.3, 1.6)
    resp = 1 + 0.1 * np.sin(2 * np.pi * 0.25 * t)
    ppg = 50 + amp * resp * beats + rng.normal(0, 0.2, n)
    return ppg, ecg


def artefact_stretches(rng: np.random.Generator, duration_s: float, per_hour: float) -> list[tuple[float, float]]:
    """(from_s, to_s) of the PPG motion artefacts of a case (module docstring)."""
    out = []
    for _ in range(int(rng.poisson(per_hour * duration_s / 3600.0))):
        length = rng.uniform(*ARTEFACT_S)
        a = float(rng.uniform(0, max(duration_s - length, 1e-9)))
        out.append((a, min(a + length, duration_s)))
    return sorted(out)


def add_artefacts(ppg: np.ndarray, stretches, rng: np.random.Generator, fs: int = NATIVE_FS) -> np.ndarray:
    """`ppg` with each stretch replaced by what a moved probe shows: no pulse, noise below 3 Hz of
    about the pulse's size, and a baseline shift."""
    from scipy.signal import butter, sosfiltfilt

    out = ppg.copy()
    sos = butter(2, 3.0, btype="low", fs=fs, output="sos")
    for a, b in stretches:
        sl = slice(int(a * fs), int(b * fs))
        n = sl.stop - sl.start
        if n < 16:
            continue
        noise = sosfiltfilt(sos, rng.normal(0, 1, n + 2 * fs))[fs : fs + n]
        noise *= PPG_AMP * 0.5 / (noise.std() + 1e-12)
        out[sl] = 50 + rng.uniform(-10, 10) + noise + rng.normal(0, 0.2, n)
    return out


def arterial_numerics(case: DemoCase, duration_s: float, rng: np.random.Generator) -> dict[str, tuple]:
    """{track: (times_s, values, unit)} of the arterial line (module docstring); {} without one."""
    if not case.has_art:
        return {}
    t = np.arange(rng.uniform(0, NUMERIC_PERIOD_S), duration_s, NUMERIC_PERIOD_S)
    mbp = case.map_at(t) + rng.normal(0, NUMERIC_NOISE, len(t))
    pp = case.subject.pulse_pressure
    sbp = mbp + 2 / 3 * pp + rng.normal(0, NUMERIC_NOISE, len(t))
    dbp = mbp - 1 / 3 * pp + rng.normal(0, NUMERIC_NOISE, len(t))
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(0, max(1, len(t) - 4)))
        v = ARTEFACT_VALUES[int(rng.integers(0, 2))]
        sl = slice(i, i + int(rng.integers(2, 5)))
        mbp[sl], sbp[sl], dbp[sl] = v, v, v
    keep = np.ones(len(t), dtype=bool)
    if rng.uniform() < NUMERIC_GAP_FRACTION and duration_s > 240:
        g = rng.uniform(60, duration_s - 180)
        keep = ~((t >= g) & (t < g + rng.uniform(*NUMERIC_GAP_S)))
    return {name: (t[keep], v[keep], NUMERIC_UNIT) for name, v in ((ART_MBP, mbp), (ART_SBP, sbp), (ART_DBP, dbp))}


def write_vital(path: str | Path, tracks: dict[str, np.ndarray], fs: float, dtstart: float,
                gaps: list[tuple[float, float]] = (), rec_s: float = 1.0, packed: bool = True,
                numerics: dict[str, tuple] | None = None) -> None:
    """Write float32 wave tracks as a `.vital` file (atomically), leaving out records inside `gaps`.

    `numerics`: {name: (times_s, values, unit)} numeric tracks, one record per value at
    `dtstart + time` (not affected by `gaps`)."""
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
    for name, (times, values, unit) in (numerics or {}).items():
        recs = [{"dt": dtstart + t, "val": v} for t, v in zip(np.asarray(times, dtype=np.float64).tolist(),
                                                               np.asarray(values, dtype=np.float64).tolist())]
        vf.add_track(name, recs, srate=0, unit=unit, mindisp=0, maxdisp=200)
    with atomic_path(path) as tmp:
        if not vf.to_vital(str(tmp), packed=packed):
            raise OSError(f"vitaldb failed to write {path}")


def write_demo_case(caseid: int, path: str | Path, demo_cfg: dict, row: dict, ppg_track: str, ecg_track: str) -> str | None:
    """Write one demo case's `.vital` file (heart rate: `row["hr_bpm"]`); return its fault (or None)."""
    case = dataclasses.replace(demo_case(demo_cfg, caseid), hr_bpm=float(row["hr_bpm"]))
    rng = _rng(demo_cfg["seed"], caseid, _SIGNAL_STREAM)
    duration = float(demo_cfg["duration_s"])
    fault = FAULTS.get(caseid)
    a, b = FAULT_START_S, FAULT_START_S + FAULT_LEN_S
    override = (a, b, 30.0) if fault == "brady" else None
    ppg, ecg = synth_signals(case.hr_bpm, duration, rng, hr_override=override, case=case)
    numerics = arterial_numerics(case, duration, rng)
    ppg = add_artefacts(ppg, case.artefacts, _rng(demo_cfg["seed"], caseid, _ARTEFACT_STREAM, 1))
    fs = NATIVE_FS
    sl = slice(int(a * fs), int(b * fs))
    gaps = []
    if fault == "flat":  # the PPG sensor freezes: its value holds
        ppg[sl] = ppg[sl.start]
    elif fault == "clip":  # PPG gain jumps and the signal saturates at the ADC limit (whatever its amplitude)
        top = np.quantile(ppg[sl], 1 - CLIP_FRACTION)
        ppg[sl] = np.minimum(50 + (PPG_SATURATION - 50) / (top - 50) * (ppg[sl] - 50), PPG_SATURATION)
    elif fault == "gap":
        gaps = [(a, a + GAP_LEN_S)]
    elif fault == "amplitude":  # ECG gain error: implausible millivolts
        ecg[sl] *= 25
    tracks = {ppg_track: ppg} if fault == "missing_ecg" else {ppg_track: ppg, ecg_track: ecg}
    write_vital(path, tracks, fs, DT0 + caseid * 86400.0, gaps=gaps, numerics=numerics)
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

    def settings_digest(self) -> str:
        """The section's digest (as every source) with the generator's version."""
        return digest({"source": self.name, "generator": GENERATOR, **{k: v for k, v in self.section.items() if k != "tracks"}})


SOURCE = DemoSource
