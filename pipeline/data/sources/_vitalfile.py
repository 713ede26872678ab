"""A streaming reader of `.vital` files in bounded memory (docs/design.md, "Reading .vital files").

The format, as vitaldb 1.7.2 reads and writes it (`vitaldb/utils.py`: `load_vital` 1879-2200,
`to_vital` 1044-1190): one gzip stream holding

- `VITA`, a version (u32), a header length (u16) and the header: `dtstart` f64 at byte 10, `dtend`
  f64 at 18, the `packed` flag u8 at 26;
- packets: type u8, length u32, body. Little-endian; a string is a u32 length and UTF-8 bytes.
  - 9, a device: did u32, type str, name str[, port str].
  - 0, a track: tid u16, type u8 (1 wave, 2 numeric, 5 string), fmt u8, name str, then optional
    unit str, mindisp f32, maxdisp f32, col u32, srate f32, gain f64, offset f64, montype u8,
    did u32, ... A track on a known device is named `device/name`.
  - 1, a record: infolen u16, dt f64, tid u16, the rest of the info; the data starts `2 + infolen`
    bytes into the body. A wave record is nsamp u32 and nsamp samples; a numeric one is one value.
  - every other type (6 command, 10 raw device data) is skipped.

Why not vitaldb's `VitalFile`: it holds every record of a track before anyone can look at the
recording's span (a packed file stores a track as ONE record from its first to its last sample,
so one stray sample 3 days late is a 1 GB read, even with `header_only`); it ends silently on a
truncated stream; and it returns the gap value that its writer puts in packed integer tracks
(`FMT_NAN`, -32768 for int16) as a sample. Here the span is checked from each record's `dt` and
sample count before its body is read, the stream is read to its gzip trailer (CRC and length
checked by zlib), and at most `AHEAD` + 1 pieces of `OUT_CHUNK` decompressed bytes are held
besides the samples kept.
Track timing follows vitaldb exactly (`dtstart`, `dtend`, tests/test_vital_reader.py compares).
"""

from __future__ import annotations

import math
import queue
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.sources import MIN_WAVE_HZ
from pipeline.errors import CaseError

IN_CHUNK = 1 << 18  # compressed bytes read from the file at a time
OUT_CHUNK = 1 << 20  # most decompressed bytes produced at a time
AHEAD = 4  # pieces inflated ahead of the parser (its thread: `_ahead`)
STEP = 1 << 17  # "place" mode: samples made physical and passed to `on_samples` at a time
WAVE, NUMERIC = 1, 2  # track types
FMT = {1: "<f4", 2: "<f8", 3: "i1", 4: "u1", 5: "<i2", 6: "<u2", 7: "<i4", 8: "<u4"}
# vitaldb's FMT_NAN (utils.py:128): the value its writer fills the gaps of a packed integer track with
PACKED_GAP = {3: -128, 4: 255, 5: -32768, 6: 65535, 7: -(2**31), 8: 2**32 - 1}
UNPACKED_MAX_PACKET = 1_000_000  # vitaldb stops reading at a longer packet in an unpacked file
# Bounds for any input (docs/design.md, "Reading .vital files"; issue 21):
META_MAX_PACKET = 1 << 16  # a device or track packet is read whole: a longer one is corrupt (real ones: < 1 KB)
MAX_EMPTY_PACKETS = 10_000  # packets too short to hold anything (vitaldb's writer writes none): a zero bomb
INFLATED_PER_SAMPLE = 128  # inflated bytes allowed per sample of the budget (max_samples): 32 tracks of 4-byte samples

_u8, _u16, _u32 = struct.Struct("<B").unpack_from, struct.Struct("<H").unpack_from, struct.Struct("<L").unpack_from
_f32, _f64 = struct.Struct("<f").unpack_from, struct.Struct("<d").unpack_from
_PACKET = struct.Struct("<BL").unpack_from
_REC = struct.Struct("<HdH").unpack_from


@dataclass
class VitalTrack:
    """One track as read: its header and, as asked, its records (`dts` float64 and `vals`: one
    array per wave record, one value per numeric record)."""

    name: str
    type: int
    fmt: int
    unit: str = ""
    srate: float = 0.0
    gain: float = 0.0  # vitaldb's defaults for a track packet that ends early (utils.py:1992)
    offset: float = 0.0
    dts: list = field(default_factory=list)
    vals: list = field(default_factory=list)
    samples: int = 0  # samples in the wave records read
    has_data: bool = False  # "check" mode: a valid sample (finite; in a packed integer track, not the gap value)
    dense: np.ndarray | None = None  # "place" mode: the float32 samples on the file's clock (see read_vital)
    outside: int = 0  # records left out by placement, lying wholly before the clock (a dt <= 0)
    top: int = 0  # "place" mode: one past the last sample written in `dense`
    done: int = 0  # "place" mode: dense[:done] is physical (`physical`), dense[done:] as stored

    def __post_init__(self):
        self.dtype = np.dtype(FMT.get(self.fmt, "u1"))  # the sample type (fmt -1: left out, see _track)
        self.itemsize = self.dtype.itemsize


class ReadAgain(Exception):
    """"place" mode met a record off the header's clock (before its dtstart, or past its dtend
    by more than SLACK_S): the file must be read again in "keep" mode."""


SLACK_S = 10.0  # "place" mode: room past the header's dtend for records that end a little after it


@dataclass
class Vital:
    """What `read_vital` returns: vitaldb's `dtstart`/`dtend` (the header's, widened by the records
    of the wave tracks asked for), the packed flag, and the tracks asked for that the file has."""

    dtstart: float
    dtend: float
    packed: bool
    tracks: dict[str, VitalTrack]


def _pieces(f, max_bytes: float = float("inf")):
    """The decompressed bytes of every gzip member in `f`, in pieces of at most OUT_CHUNK bytes.
    CaseError when the data is not gzip or the file ends inside a member (the trailer's CRC and
    length are checked by zlib), or as soon as it inflates past `max_bytes`; zero padding after a
    member is allowed, as Python's gzip does."""
    d, pending, total = zlib.decompressobj(31), b"", 0
    while True:
        data = d.unconsumed_tail or pending or f.read(IN_CHUNK)
        pending = b""
        try:
            out = d.decompress(data, OUT_CHUNK)
        except zlib.error as e:
            raise CaseError(f"corrupt gzip stream: {e}") from e
        if out:
            total += len(out)
            if total > max_bytes:
                raise CaseError(f"the file inflates to more than {max_bytes / 1e9:.2f} GB, more than signals.max_case_hours "
                                f"at signals.max_native_hz allows ({INFLATED_PER_SAMPLE} bytes per sample of that budget)")
            yield out
        if d.eof:
            rest = d.unused_data.lstrip(b"\0")
            while not rest:
                more = f.read(IN_CHUNK)
                if not more:
                    return
                rest = more.lstrip(b"\0")
            d, pending = zlib.decompressobj(31), rest
        elif not data and not out:
            raise CaseError("corrupt or truncated gzip stream: the file ends inside it")


def _ahead(pieces, depth: int = AHEAD):
    """The items of `pieces`, produced by a thread of their own up to `depth` ahead: zlib inflates
    without the GIL, so the parser, placement and `on_samples` (the filter) run meanwhile. Its
    errors are raised here; closing this generator stops the thread (the file stays open until then)."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def run():
        try:
            for p in pieces:
                q.put(p)
                if stop.is_set():
                    return
            q.put(end)
        except BaseException as e:  # handed to the reader's thread, raised there
            q.put(e)

    t = threading.Thread(target=run, name="vital-inflate", daemon=True)
    t.start()
    try:
        while (p := q.get()) is not end:
            if isinstance(p, BaseException):
                raise p
            yield p
    finally:
        stop.set()
        while t.is_alive():  # unblock its put, let it see `stop`
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


class _Stream:
    """Forward reads over `_pieces`: `take(n)` bytes, `chunks(n)` (the next n bytes in pieces)."""

    def __init__(self, f, max_bytes: float = float("inf")):
        self.pieces = _ahead(_pieces(f, max_bytes))
        self.buf, self.pos = b"", 0

    def close(self) -> None:
        self.pieces.close()

    def fill(self, n: int) -> bool:
        """At least n bytes from `pos` in `buf` (False: the stream ends before)."""
        have = len(self.buf) - self.pos
        if have >= n:
            return True
        parts = [self.buf[self.pos :]]
        for p in self.pieces:
            parts.append(p)
            have += len(p)
            if have >= n:
                break
        self.buf, self.pos = b"".join(parts), 0
        return have >= n

    def take(self, n: int) -> bytes:
        if not self.fill(n):
            raise CaseError("truncated .vital file: the stream ends inside a packet")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        if len(self.buf) - self.pos >= n:
            self.pos += n
            return
        for _ in self.chunks(n):
            pass

    def items(self, n: int, dtype: np.dtype):
        """The next n items of `dtype`, as arrays over the stream's pieces (valid until the next read)."""
        size = dtype.itemsize
        if len(self.buf) - self.pos >= n * size:
            yield np.frombuffer(self.buf, dtype, n, self.pos)
            self.pos += n * size
            return
        carry = b""
        for c in self.chunks(n * size):
            if carry or len(c) % size:
                c = carry + bytes(c)
                cut = len(c) - len(c) % size
                c, carry = c[:cut], c[cut:]
            yield np.frombuffer(c, dtype, len(c) // size)

    def into(self, dst: np.ndarray, dtype: np.dtype, each=None) -> None:
        """The next len(dst) items of `dtype`, cast into `dst`; `each(k)` after each piece (dst[:k] written)."""
        at = 0
        for a in self.items(len(dst), dtype):
            dst[at : at + len(a)] = a
            at += len(a)
            if each is not None:
                each(at)

    def chunks(self, n: int):
        """The next n bytes, as memoryviews of at most max(OUT_CHUNK, what is buffered) bytes."""
        while n > 0:
            if self.pos >= len(self.buf):
                self.buf, self.pos = next(self.pieces, b""), 0
                if not self.buf:
                    raise CaseError("truncated .vital file: the stream ends inside a packet")
            k = min(n, len(self.buf) - self.pos)
            yield memoryview(self.buf)[self.pos : self.pos + k]
            self.pos += k
            n -= k


def _str(buf, pos: int) -> tuple[str, int]:
    n = _u32(buf, pos)[0]
    if pos + 4 + n > len(buf):
        raise struct.error(f"a string of {n} bytes past the packet's end")
    return bytes(buf[pos + 4 : pos + 4 + n]).decode("utf-8", "ignore"), pos + 4 + n


def _track(body: bytes, devices: dict) -> tuple[int, VitalTrack]:
    """(tid, track) of a track packet, its optional fields read as far as the packet goes."""
    tid, ttype, fmt = _u16(body, 0)[0], _u8(body, 2)[0], _u8(body, 3)[0]
    name, pos = _str(body, 4)
    t = VitalTrack(name, ttype, fmt)
    end = len(body)
    if end > pos:
        t.unit, pos = _str(body, pos)
    pos += 4 + 4 + 4  # mindisp, maxdisp, col
    if end > pos:
        t.srate = _f32(body, pos)[0]
    pos += 4
    if end > pos:
        t.gain = _f64(body, pos)[0]
    pos += 8
    if end > pos:
        t.offset = _f64(body, pos)[0]
    pos += 8 + 1  # montype
    did = _u32(body, pos)[0] if end >= pos + 4 else 0
    if did and did in devices:  # as vitaldb (utils.py:2052)
        t.name = f"{devices[did]}/{name}"
    if fmt not in FMT and ttype in (WAVE, NUMERIC):
        t.fmt = -1  # vitaldb leaves such a track out (utils.py:1996-1998); so do we, by name below
    return tid, t


def read_vital(path: str | Path, waves=(), numerics=(), mode: str = "keep", max_span_s: float = float("inf"),
               on_samples=None, max_samples: float = float("inf"), max_inflated: float | None = None) -> Vital:
    """Read the tracks named in `waves` and `numerics` (exact names, as `device/track`).

    `mode` says what happens to wave records: "keep" (the sample arrays: the file's type, float32
    for types wider than 4 bytes or 32-bit integers), "check" (read, `has_data` set, not kept),
    "time" (bodies skipped: timing only), or "place": each record is written as it is read into
    the track's float32 array on the header's clock (`dense`, sample i at header dtstart + i/srate,
    a record at its nearest sample, later records over earlier ones: `place_wave`'s rule; values
    made physical as `place_wave` does, `physical`), so the samples are held once, not as records
    and then as an array; `on_samples` (pipeline.data.sources.Source.read_tracks) is told of them in
    pieces of about STEP samples. `ReadAgain` when a record lies off that clock (the clock would
    move); a header without a clock reads as "keep". Numeric records are
    always kept. The clock is vitaldb's: `dtstart`/`dtend` from the header, widened by the records
    of the wave tracks in `waves` (numeric tracks do not move it). CaseError as soon as that clock
    spans more than `max_span_s` (before the record that widens it is read); in "keep" and "place"
    modes, as soon as a wave track's array on that clock would hold more than `max_samples` samples
    (its rate times the span) or its records more than twice that or twice `max_span_s`'s samples;
    or when the file is not a complete `.vital` gzip stream. Bounded for any input (issue 21): the
    stream is refused once it inflates past `max_inflated` bytes (default INFLATED_PER_SAMPLE per
    sample of `max_samples`; validation passes it alone, so a long recording is the resample stage's
    refusal, not the download's);
    a device or track packet longer than META_MAX_PACKET, more than MAX_EMPTY_PACKETS packets too
    short to hold anything, a field past its packet's end, a wave track asked for whose rate is not
    finite or below MIN_WAVE_HZ, and a record of a track asked for at a non-finite time are
    CaseErrors naming what is wrong; packets of other types are skipped without being buffered."""
    if mode not in ("keep", "check", "time", "place"):
        raise ValueError(f"mode {mode!r}")
    waves, numerics = set(waves), set(numerics)
    with open(path, "rb") as f:
        s = _Stream(f, INFLATED_PER_SAMPLE * max_samples if max_inflated is None else max_inflated)
        try:
            return _read(s, waves, numerics, mode, max_span_s, on_samples, max_samples)
        finally:
            s.close()  # stops the inflating thread before the file closes


def _read(s: _Stream, waves: set, numerics: set, mode: str, max_span_s: float, on_samples, max_samples: float) -> Vital:
    """`read_vital` over an open stream."""
    if not s.fill(10) or s.take(4) != b"VITA":
        raise CaseError("not a .vital file (no VITA signature)")
    s.take(4)  # format version
    header = s.take(_u16(s.take(2), 0)[0])
    dtstart = _f64(header, 10)[0] if len(header) >= 26 else 0.0
    dtend = _f64(header, 18)[0] if len(header) >= 26 else 0.0
    packed = len(header) >= 27 and header[26] == 1
    hdr0, hdr1 = dtstart, dtend
    direct = mode == "place" and hdr0 > 0 and hdr1 > hdr0

    def check_span():
        if dtstart and dtend - dtstart > max_span_s:
            raise CaseError(f"recording spans {(dtend - dtstart) / 3600:.1f} h, "
                            f"over signals.max_case_hours ({max_span_s / 3600:g} h)")

    check_span()
    devices: dict[int, str] = {}
    by_tid: dict[int, VitalTrack] = {}  # the tracks asked for, by track id
    tracks: dict[str, VitalTrack] = {}
    empty = 0  # packets too short to hold anything
    while True:
        if len(s.buf) - s.pos < 5 and not s.fill(5):
            if len(s.buf) > s.pos:
                raise CaseError("truncated .vital file: the stream ends inside a packet header")
            break
        ptype, plen = _PACKET(s.buf, s.pos)
        s.pos += 5
        if not packed and plen > UNPACKED_MAX_PACKET:
            raise CaseError(f"corrupt .vital file: a packet of {plen} bytes in an unpacked file")
        if ptype in (0, 9) and plen > META_MAX_PACKET:
            raise CaseError(f"corrupt .vital file: a {'track' if ptype == 0 else 'device'} packet of {plen} bytes "
                            f"(at most {META_MAX_PACKET} expected)")
        if plen < {0: 8, 1: 12, 9: 4}.get(ptype, 1):
            empty += 1
            if empty > MAX_EMPTY_PACKETS:
                raise CaseError(f"corrupt .vital file: more than {MAX_EMPTY_PACKETS} empty packets (a zero-filled stream?)")
        small = plen <= OUT_CHUNK  # small packets are read whole into the buffer, larger ones streamed
        if small and len(s.buf) - s.pos < plen and not s.fill(plen):
            raise CaseError("truncated .vital file: the stream ends inside a packet")
        if ptype == 1 and plen >= 12:  # a record: read its info, then keep, check or skip its body
            if not s.fill(12):
                raise CaseError("truncated .vital file: the stream ends inside a record")
            infolen, dt, tid = _REC(s.buf, s.pos)  # s.pos stays at the record's start until its data
            trk = by_tid.get(tid)
            left = plen - 2 - infolen  # bytes of data after the info
            if trk is None or left < 0:
                s.skip(plen)
                continue
            if not math.isfinite(dt):
                raise CaseError(f"corrupt .vital file: a record of track {trk.name} at dt={dt!r}, not a finite time")
            if trk.type == NUMERIC:
                if left >= trk.itemsize and s.fill(plen - left + trk.itemsize):
                    trk.dts.append(dt)
                    trk.vals.append(float(np.frombuffer(s.buf, trk.dtype, 1, s.pos + plen - left)[0]))
                s.skip(plen)
                continue
            # a wave record: nsamp, then the samples
            if left < 4 or not s.fill(plen - left + 4):
                raise CaseError(f"corrupt .vital file: a record of track {trk.name} without a sample count")
            nsamp = _u32(s.buf, s.pos + plen - left)[0]
            left -= 4
            nbytes = nsamp * trk.itemsize
            if nbytes > left:
                raise CaseError(f"corrupt .vital file: a record of track {trk.name} claims {nsamp} samples, "
                                f"its packet holds {left // trk.itemsize}")
            if dtstart == 0 or 0 < dt < dtstart:  # vitaldb's clock (utils.py:2121-2138)
                dtstart = dt
            dtend = max(dtend, dt, dt + nsamp / trk.srate if trk.srate > 0 else dt)
            check_span()
            if mode == "time":  # (a wave track asked for has a rate >= MIN_WAVE_HZ: checked at its header)
                s.skip(plen)
                continue
            if (dtend - dtstart) * trk.srate > max_samples:  # before any array of that size
                raise CaseError(f"track {trk.name} would hold {math.ceil((dtend - dtstart) * trk.srate):,} samples "
                                f"({trk.srate:g} Hz over {(dtend - dtstart) / 3600:.2f} h), more than "
                                f"signals.max_case_hours at signals.max_native_hz ({max_samples:,.0f})")
            trk.samples += nsamp
            if trk.samples > 2 * min(max_span_s * trk.srate, max_samples) + len(trk.dts) + 1:
                raise CaseError(f"records of track {trk.name} hold {trk.samples} samples, more than twice "
                                f"signals.max_case_hours ({max_span_s / 3600:g} h) at {trk.srate:g} Hz "
                                f"or signals.max_native_hz")
            trk.dts.append(dt)
            s.pos += plen - left  # the first sample
            if direct:
                if 0 < dt < hdr0:
                    raise ReadAgain(f"a record of {trk.name} starts before the header's dtstart")
                a = math.floor((dt - hdr0) * trk.srate + 0.5)
                if trk.dense is None:  # the header's span, SLACK_S more within the sample budget
                    n = min(math.ceil((hdr1 - hdr0) * trk.srate) + math.ceil(SLACK_S * trk.srate), max_samples)
                    trk.dense = np.full(int(n), np.nan, dtype=np.float32)
                if a + nsamp > len(trk.dense):
                    raise ReadAgain(f"a record of {trk.name} ends past the header's dtend")
                if a < 0:  # a dt <= 0 (the clock ignores it): wholly before the recording
                    trk.outside += nsamp > 0
                    s.skip(nbytes)
                else:
                    done = trk.done
                    if a >= done and nsamp > STEP:  # a long record in order: made physical and told as it lands
                        s.into(trk.dense[a : a + nsamp], trk.dtype, lambda k, t=trk, a=a: _advance(t, a + k, packed, on_samples))
                    else:
                        s.into(trk.dense[a : a + nsamp], trk.dtype)
                    b = min(a + nsamp, done)
                    if a < b:  # written again below what was made physical: that part now, told before the rest
                        physical(trk.dense[a:b], trk, packed)
                        if on_samples is not None:
                            on_samples(trk.name, trk.dense, trk.srate, a, b)
                    _advance(trk, a + nsamp, packed, on_samples)
            elif mode in ("keep", "place"):
                wide = trk.fmt in (2, 7, 8)  # float64, 32-bit integers: float32 now,
                vals = np.empty(nsamp, np.float32 if wide else trk.dtype)  # as place_wave casts, in less memory
                s.into(vals, trk.dtype)
                trk.vals.append(vals)
            else:  # check, piece by piece
                for a in s.items(nsamp, trk.dtype):
                    trk.has_data = trk.has_data or _has_valid(a, trk.fmt, packed)
            s.skip(left - nbytes)
            continue
        if ptype not in (0, 9) or plen < {0: 8, 9: 4}[ptype]:  # nothing read from it: streamed past, never buffered
            s.skip(plen)
            continue
        body = s.take(plen)
        try:
            if ptype == 9:  # a device
                did = _u32(body, 0)[0]
                dtype_, pos = _str(body, 4)
                name, pos = _str(body, pos)
                devices[did] = name or dtype_
                continue
            tid, t = _track(body, devices)  # a track
        except struct.error as e:
            raise CaseError(f"corrupt .vital file: a {'track' if ptype == 0 else 'device'} packet of {plen} bytes "
                            f"ends inside a field ({e})") from e
        if t.fmt == -1:
            continue
        if t.name in waves and t.type == WAVE and not (math.isfinite(t.srate) and t.srate >= MIN_WAVE_HZ):
            raise CaseError(f"track {t.name}: a sampling rate of {t.srate!r} Hz is not a waveform rate "
                            f"(finite, at least {MIN_WAVE_HZ:g} Hz)")
        if (t.name in waves and t.type == WAVE) or (t.name in numerics and t.type == NUMERIC):
            kept = tracks.get(t.name)
            if kept is not None and kept.type == t.type and any(v is kept for v in by_tid.values()):
                # a second header for the name (its id the same or not): still one track, its records
                # kept, the last header's settings (vitaldb's; it drops the records before, we do not)
                if direct and kept.dense is not None and (kept.fmt, kept.srate, kept.gain, kept.offset) != (
                        t.fmt, t.srate, t.gain, t.offset):
                    raise ReadAgain(f"track {t.name} has a second header with other sample settings")
                for k in ("fmt", "unit", "srate", "gain", "offset", "dtype", "itemsize"):
                    setattr(kept, k, getattr(t, k))
                by_tid[tid] = kept
            else:
                by_tid[tid] = tracks[t.name] = t
        elif t.name in waves or t.name in numerics:
            tracks[t.name] = t  # of another type: named so the caller can say so; not read
    if direct:
        for t in tracks.values():
            if t.dense is not None:  # the array place_wave would allocate: ceil((dtend - dtstart) * srate)
                n = math.ceil((dtend - dtstart) * t.srate)
                if n > len(t.dense):
                    raise ReadAgain(f"the clock of {t.name} ends past the header's dtend")
                physical(t.dense[t.done : t.top], t, packed)
                t.done = t.top
                t.dense = t.dense[:n]
    return Vital(dtstart, dtend, packed, tracks)


def _advance(t: VitalTrack, top: int, packed: bool, on_samples) -> None:
    """"place" mode: dense[:top] written; make a STEP or more of new samples physical and say so."""
    t.top = max(t.top, top)
    if t.top - t.done >= STEP:
        a, t.done = t.done, t.top
        physical(t.dense[a : t.top], t, packed)
        if on_samples is not None:
            on_samples(t.name, t.dense, t.srate, a, t.top)


def physical(out: np.ndarray, t: VitalTrack, packed: bool) -> None:
    """Samples as stored -> physical values, in place (`place_wave` documents the rules): an integer
    track's gap value in a packed file is NaN, integers are `* gain + offset` (in float32), and
    +-inf or values > 4e9 are NaN."""
    if t.fmt > 2:  # integer samples: physical = raw * gain + offset (1: float, 2: double)
        if packed:
            out[out == np.float32(PACKED_GAP[t.fmt])] = np.nan
        out *= t.gain
        out += t.offset
    out[np.isinf(out) | (out > 4e9)] = np.nan


def _has_valid(vals: np.ndarray, fmt: int, packed: bool) -> bool:
    """A sample that holds a value: a finite float; an integer other than a packed file's gap value."""
    if fmt <= 2:
        return bool(np.isfinite(vals).any())
    return bool((vals != PACKED_GAP[fmt]).any()) if packed else len(vals) > 0
