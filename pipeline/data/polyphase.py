"""scipy's `resample_poly(x, up, down, padtype="line")` computed piece by piece while x arrives.

Why (docs/design.md, "Reading .vital files"): inflating a case's gzip stream and the anti-aliasing
filter each take about as long as vitaldb's whole `to_numpy`. `read_vital` inflates in a thread of
its own and calls its `on_samples` listener (`pipeline.data.resample.Streamer`) as samples land in their
track's array; a `StreamedTrack` filters every stretch of a track whose samples are all known, so
the filter runs while the rest of the file is still being inflated.

Same result as `pipeline.data.resample.resample_track` on the whole array (tests/test_polyphase.py):
- the same filter: scipy's default for `resample_poly` (Kaiser beta 5, half length 10 * max(up,
  down), in the samples' dtype, times `up`), the output sample j at input time j * down / up;
- an output whose support lies inside the track is `upfirdn` over a slice (the same sum); the first
  and last few, whose support runs past an end, use `padtype="line"`'s extension (the line through
  the track's first and last samples, in the samples' dtype as upfirdn), built here around the slice;
- gaps (NaN) are bridged as `bridge` does on the whole track, run by run, as soon as the sample
  after a run is known; the runs are set back to NaN once the track is done (`finish`).
A write below what was already bridged (a record out of order, overlapping filtered samples)
undoes the bridging of the track and stops its streaming: the whole array is filtered at the end.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import firwin, upfirdn

KAISER_BETA = 5.0  # resample_poly's default window ("kaiser", 5.0)
HALF_LEN_FACTOR = 10  # resample_poly's filter: half length 10 * max(up, down) (upsampled samples)
MIN_OUT = 1 << 15  # outputs filtered at a time while streaming (a larger piece amortises upfirdn's set-up)


def nan_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the True runs of a boolean array."""
    d = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def bridge(x: np.ndarray, starts, stops) -> None:
    """Fill the NaN runs [start, stop) of `x` in place by linear interpolation between the samples
    either side (a run at an end takes the one neighbour's value), as `np.interp` over the valid
    samples would, without its index arrays over the whole track (memory: one run at a time)."""
    n = len(x)
    for a, b in zip(np.asarray(starts).tolist(), np.asarray(stops).tolist()):
        left = float(x[a - 1]) if a > 0 else float(x[b])
        right = float(x[b]) if b < n else left
        x[a:b] = np.linspace(left, right, b - a + 2)[1:-1]


class Polyphase:
    """The geometry of `resample_poly(x, up, down)`: its filter, which input samples each output
    sample sums (its support), and output samples computed from a slice of the input."""

    def __init__(self, up: int, down: int, dtype=np.float32):
        g = math.gcd(up, down)
        self.up, self.down = up // g, down // g
        max_rate = max(self.up, self.down)
        half_len = HALF_LEN_FACTOR * max_rate  # as resample_poly (scipy/signal/_signaltools.py)
        h = np.asarray(firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", KAISER_BETA)), dtype=dtype)
        h *= self.up
        pre = self.down - half_len % self.down  # zeros that put output samples at the filter's centre
        self.h = np.concatenate([np.zeros(pre, dtype=h.dtype), h])
        self.shift = (half_len + pre) // self.down  # resample_poly's n_pre_remove

    def n_out(self, n: int) -> int:
        return -(-n * self.up // self.down)

    def lo(self, j: int) -> int:
        """First input sample in the support of output j (negative: before the track)."""
        return -(-((j + self.shift) * self.down - len(self.h) + 1) // self.up)

    def hi(self, j: int) -> int:
        """Last input sample in the support of output j."""
        return (j + self.shift) * self.down // self.up

    def first_inside(self) -> int:
        """The first output whose support starts at or after input sample 0."""
        j = 0
        while self.lo(j) < 0:
            j += 1
        return j

    def end_inside(self, n: int) -> int:
        """One past the last output whose support ends before input sample n."""
        return max(0, -(-(n * self.up - self.shift * self.down) // self.down))

    def outputs(self, seg: np.ndarray, m0: int, j0: int, j1: int) -> np.ndarray:
        """Outputs [j0, j1) from `seg`, input samples m0.. (m0 a multiple of `down`), which must
        hold the support of every output asked for."""
        k0 = j0 + self.shift - m0 * self.up // self.down
        return upfirdn(self.h, seg, self.up, self.down)[k0 : k0 + j1 - j0]

    def start(self, j: int) -> int:
        """The input sample, a multiple of `down`, where a slice for outputs from j starts."""
        return self.lo(j) // self.down * self.down

    def edges(self, x: np.ndarray, y: np.ndarray, j_head: int, j_tail: int) -> None:
        """Fill y[:j_head] and y[j_tail:] (the outputs near the ends) with resample_poly's
        `padtype="line"`: the input extended past each end along the line through x[0] and x[-1].
        For a track longer than the filter (`long_enough`)."""
        n, n_out, t = len(x), len(y), x.dtype.type
        slope = (x[-1] - x[0]) / t(n - 1)  # in x's dtype, as upfirdn's "line" mode computes it
        if j_head > 0:
            m0 = self.start(0)  # <= 0
            ext = x[0] - np.arange(-m0, 0, -1, dtype=x.dtype) * slope
            y[:j_head] = self.outputs(np.concatenate([ext, x[: self.hi(j_head - 1) + 1]]), m0, 0, j_head)
        if j_tail < n_out:
            m0 = self.start(j_tail)
            ext = x[-1] + np.arange(1, max(0, self.hi(n_out - 1) + 2 - n), dtype=x.dtype) * slope
            y[j_tail:] = self.outputs(np.concatenate([x[m0:], ext]), m0, j_tail, n_out)

    def long_enough(self, n: int) -> bool:
        """A track whose head and tail outputs are apart (`edges` needs it)."""
        return n >= 4 * len(self.h) and self.start(self.end_inside(n)) > 0


class StreamedTrack:
    """One track's filter, run while its samples arrive in `x` (a NaN-filled array the reader
    writes into): `placed(a, b)` after samples [a, b) were written, `finish(values)` at the end."""

    def __init__(self, x: np.ndarray, poly: Polyphase, min_out: int | None = None):
        self.x, self.poly, self.min_out = x, poly, min_out or MIN_OUT
        self.y = np.empty(poly.n_out(len(x)), dtype=np.float32)
        self.runs: list[tuple[int, int]] = []  # NaN runs bridged in x
        self.bridged = 0  # x[:bridged] holds no NaN (its runs bridged)
        self.scanned = 0  # x[bridged:scanned] is NaN: a run whose next sample is not known yet
        self.top = 0  # one past the last sample written
        self.tried = 0  # `top` when bridging was last tried
        self.step = self.min_out * poly.down // poly.up  # input samples per piece of `min_out` outputs
        self.j = poly.first_inside()  # the next output to compute
        self.alive = True

    def placed(self, a: int, b: int) -> None:
        if not self.alive:
            return
        if a < self.bridged:  # written over bridged samples: back to the array as written, no streaming
            self._unbridge(a, b)
            self.alive = False
            return
        if a < self.scanned:  # written into the waiting run: look at it again
            self.scanned = self.bridged
        self.top = max(self.top, b)
        if self.top - self.tried >= self.step:  # a piece's worth of new samples: bridge and filter
            self.tried = self.top
            self._bridge_to(self.top)
            self._filter_to(self.bridged, self.min_out)

    def _bridge_to(self, n: int, last: bool = False) -> None:
        """Bridge the NaN runs in x[bridged:n] whose next sample is known (every run, if `last`);
        x[bridged:scanned], a run already seen, is not looked at again."""
        lo = max(self.scanned, self.bridged)
        starts, stops = nan_runs(np.isnan(self.x[lo:n]))
        starts, stops = starts + lo, stops + lo
        if self.bridged < lo:  # the waiting run: it goes on into x[lo:n], or it ended at lo
            if len(starts) and starts[0] == lo:
                starts[0] = self.bridged
            else:
                starts, stops = np.r_[self.bridged, starts], np.r_[lo, stops]
        end = n
        if len(stops) and stops[-1] == n and not last:  # a run up to n: its next sample is not known yet
            end, starts, stops = int(starts[-1]), starts[:-1], stops[:-1]
        bridge(self.x[:n] if last else self.x, starts, stops)
        self.runs.extend(zip(starts.tolist(), stops.tolist()))
        self.bridged, self.scanned = end, n

    def _filter_to(self, n: int, min_out: int) -> None:
        """Outputs from `j` up to the last whose support ends before input sample n."""
        j1 = self.poly.end_inside(n)
        if j1 - self.j < min_out:
            return
        m0 = self.poly.start(self.j)
        self.y[self.j : j1] = self.poly.outputs(self.x[m0:n], m0, self.j, j1)
        self.j = j1

    def _unbridge(self, a: int = 0, b: int = 0) -> None:
        """Set the bridged runs back to NaN, except [a, b) (just written)."""
        for s, e in self.runs:
            self.x[s : min(e, a)] = np.nan
            self.x[max(s, b) : e] = np.nan
        self.runs = []

    def finish(self, values: np.ndarray) -> np.ndarray | None:
        """The resampled track (float32; gaps bridged, NOT yet marked NaN: `resample_track` does
        that), with `values` (the track as read: x or its head) back as written; None when it was
        not streamed (the caller filters the whole array)."""
        if not self.alive:
            return None
        n, poly = len(values), self.poly
        if self.bridged >= n:  # the track was cut shorter than written: a run reaching n ends it now
            cut = [(s, e) for s, e in self.runs if e >= n]
            for s, e in cut:
                self.x[s:e] = np.nan
            self.runs = [(s, e) for s, e in self.runs if e < n]
            self.bridged = min([n] + [s for s, _ in cut])
            self.j = max(poly.first_inside(), min(self.j, poly.end_inside(self.bridged)))
        self.scanned = min(self.scanned, n)
        if not np.shares_memory(values, self.x) or not poly.long_enough(n) or np.isnan(np.fmax.reduce(values)):
            self._unbridge()  # not this array, short, or no sample (fmax: no mask array)
            return None
        self._bridge_to(n, last=True)
        j_tail = poly.end_inside(n)
        self.j = min(self.j, j_tail)
        self._filter_to(n, 1)
        y = self.y[: poly.n_out(n)]
        poly.edges(values, y, poly.first_inside(), j_tail)
        self._unbridge()
        return y
