"""R-peaks at the QRS apex (pipeline/data/beats.py `rpeaks`) on synthetic ECG whose apexes are known:
an inverted lead, inverted ectopic beats among upright ones, a complex cut by the window's edge."""

import numpy as np
import pytest

from pipeline.data.beats import rpeaks

FS, L = 125, 1024
T = np.arange(L) / FS


def bump(centre: float, width_s: float, amplitude: float) -> np.ndarray:
    return amplitude * np.exp(-0.5 * ((T - centre) / width_s) ** 2)


def times_s(ecg: np.ndarray) -> np.ndarray:
    return rpeaks(ecg[None, :], FS)[2] / FS


@pytest.mark.parametrize("lead", [1.0, -1.0])
def test_narrow_and_wide_inverted_beats_are_found_at_their_apex(lead):
    """Bigeminy: narrow upright beats alternating with wide inverted (ventricular) ones, in a lead
    either way up: every beat within 2 ms of its apex (the first apex move put the minority polarity's
    beats 46 ms off, on the baseline beside them)."""
    apex = np.arange(0.4, 8.0, 0.8)
    x = sum(bump(c, 0.010, 1.0) if k % 2 == 0 else bump(c, 0.035, -1.4) for k, c in enumerate(apex))
    x = lead * (x + 0.05 * np.sin(2 * np.pi * 0.25 * T))
    found = times_s(x)
    assert len(found) == len(apex) and np.abs(found - apex).max() < 0.002, np.round((found - apex) * 1000, 1)


def ventricular(apex: np.ndarray) -> np.ndarray:
    """Ventricular-like complexes: a slow rise to the apex, a steep fall (where the 5-20 Hz band-pass peaks)."""
    x = np.zeros(L)
    for c in apex:
        d = T - c
        x += 1.5 * np.where(d < 0, np.exp(-0.5 * (d / 0.06) ** 2), np.exp(-0.5 * (d / 0.02) ** 2))
    return x


def test_wide_beats_with_a_steep_fall_are_found_at_their_apex_not_on_the_fall():
    apex = np.arange(0.5, 8.0, 0.75)
    x = ventricular(apex)
    found = times_s(x)
    peaks = T[[np.argmax(np.where(np.abs(T - c) < 0.05, x, -np.inf)) for c in apex]]  # the sampled apexes
    assert len(found) == len(apex) and np.abs(found - peaks).max() < 0.5 / FS, np.round((found - peaks) * 1000, 1)


def test_a_complex_cut_by_the_window_edge_is_not_placed_on_the_edge():
    """The first complex's apex lies 30 ms before the window, its fall inside: it keeps its detection
    rather than being clamped onto sample 0; every other beat is at its apex."""
    apex = np.arange(-0.03, 8.2, 0.75)
    win, idx, t = rpeaks(ventricular(apex)[None, :], FS)
    assert idx.min() > 0 and idx.max() < L - 1, idx
    inside = apex[(apex > 0.1) & (apex < L / FS - 0.1)]
    assert all(np.abs(t / FS - c).min() < 0.005 for c in inside)
