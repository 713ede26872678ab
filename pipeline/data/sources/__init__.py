"""Sources of cases: one module per source, each a `Source` subclass (docs/design.md, "Sources").

The stages call only this interface; nothing outside `pipeline/data/sources/` branches on a source name.
Every module here is a source, registered by its file name (`_name` modules are shared helpers).
A source is built from the step's params: `{"source": <name>, <name>: <its config section>, ...}`
(the section holds at least `tracks: {ppg: ..., ecg: ...}`, the source's own track names).
"""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.channels import CHANNELS
from pipeline.errors import CaseError, ConfigError
from pipeline.io import digest

# The lowest rate a waveform track may have (issue 21): a "waveform" below 1 Hz is a header fault, refused.
MIN_WAVE_HZ = 1.0



def sample_budget(signals: dict) -> float:
    """Samples one track may hold at its native rate: signals.max_case_hours at signals.max_native_hz
    (the `max_samples` of `read_tracks` and `validate`)."""
    return signals["max_case_hours"] * 3600.0 * signals["max_native_hz"]


# Every module of this package is a source named after it, except shared helpers (`_name`).
SOURCES = {m.name: f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


@dataclass(frozen=True)
class Track:
    """One track of a case at its native rate. `start_s`: time of values[0] in seconds from the
    case's origin (the same origin for every track of a case); NaN in `values` = no data."""
    name: str
    values: np.ndarray
    fs: float
    unit: str
    start_s: float = 0.0


class Source:
    """Base class. Subclasses set `name` and `suffix` and implement the four methods below."""

    name = ""
    suffix = ""  # file name of a fetched case: <caseid><suffix>

    def __init__(self, section: dict, download: dict | None = None):
        self.section = section
        self.download = download

    @classmethod
    def check_config(cls, section: dict) -> None:
        """Rules on the source's section beyond the schema: a `root` folder is required where the
        section has one, and must exist (checked when the workflow loads, not in a job's traceback)."""
        if "root" in section and not section["root"]:
            raise ConfigError(f"{cls.name}.root: required when source is {cls.name!r} (the folder of its files)")
        if "root" in section and not Path(section["root"]).expanduser().is_dir():
            raise ConfigError(f"{cls.name}.root: {section['root']!r} is not a folder on this machine "
                              f"(give the folder of the {cls.name} files: --config {cls.name}='{{root: /path}}')")

    def tracks(self) -> list[str]:
        """The source's track names, in channel order (pipeline.channels.CHANNELS)."""
        return [self.section["tracks"][c.lower()] for c in CHANNELS]

    def case_rows(self) -> list[dict]:
        """Rows of the case table (before split/batch): caseid (int), subjectid, name (the source's
        own id of the case), has_ppg / has_ecg (True, False, or None = not known before fetching),
        duration_s, age, sex, bmi, asa (ASA class), has_art (the case has the arterial-pressure
        numeric track: True or False), hr_bpm ('' where unknown)."""
        raise NotImplementedError

    def session(self):
        """Context manager whose value is passed to `fetch` for every case of a batch (e.g. an HTTP pool)."""
        return nullcontext(None)

    def fetch(self, row: dict, dest: Path, session) -> None:
        """Put case `row` at `dest` (a temporary path that `download_batch` renames after `validate`).
        Raise CaseError for a permanent fault (the reason is recorded, the batch goes on)."""
        raise NotImplementedError

    def validate(self, path: Path, max_samples: float = float("inf")) -> None:
        """Raise CaseError unless `path` is a complete case with data in every track of `tracks()`.
        `max_samples` (signals.max_case_hours at signals.max_native_hz) bounds the work a file may
        ask for, as in `read_tracks`: validation of any input ends in bounded time and memory."""
        raise NotImplementedError

    def read_tracks(self, path: Path, max_span_s: float = float("inf"), on_samples=None,
                    max_samples: float = float("inf")) -> list[Track]:
        """The tracks of `tracks()` at their native rates with their start times; CaseError if one is
        missing, if the recording spans more than `max_span_s` seconds, or if a track would hold
        more than `max_samples` samples at its native rate (both checked before any dense array is
        allocated: they bound a resample job's memory whatever the file says its rate is).

        `on_samples` (optional; a source that reads in pieces calls it, others ignore it):
        `on_samples(name, values, fs, a, b)` once samples [a, b) of track `name` hold their final
        values in `values`, the array that becomes the track's (NaN where nothing is written yet;
        a call with `a` below an earlier call's `b` means earlier samples were written again), and
        `on_samples.reset()` before the file is read again. `pipeline.data.resample.Streamer` filters
        with it while the rest of the file is read (docs/design.md, "Reading .vital files")."""
        raise NotImplementedError

    def read_numerics(self, path: Path, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{name: (times_s, values)} (float64, sorted by time, non-finite values dropped) for each of
        `names` that the case has as a numeric track; a name it lacks is absent. `times_s` is on the
        clock of `read_tracks` (0 = sample 0 of the wave tracks). By default the source has no
        numeric tracks: {}."""
        return {}

    def settings_digest(self) -> str:
        """Digest of the settings that decide a fetched file's content: the source and its section
        without `tracks` (which tracks are read does not change the file)."""
        return digest({"source": self.name, **{k: v for k, v in self.section.items() if k != "tracks"}})

    def case_file(self, out_dir: str | Path, caseid: int) -> Path:
        """`<out_dir>/<settings digest>/<caseid><suffix>`: a file belongs to the settings that made it,
        so changed settings fetch again and unchanged ones (or a change back) never do."""
        return Path(out_dir) / self.settings_digest() / f"{caseid}{self.suffix}"

    def is_current(self, path: Path, row: dict) -> bool:
        """Whether an existing (validated) case file still belongs to `row`; False refetches it.
        A file is only ever published after validation, so by default an existing file is kept."""
        return True


def source_class(name: str) -> type[Source]:
    if name not in SOURCES:
        raise ConfigError(f"source: unknown source {name!r} (known: {', '.join(SOURCES)})")
    return importlib.import_module(SOURCES[name]).SOURCE


def get_source(params: dict) -> Source:
    """The source named by params['source'], built from its section (and params['download'])."""
    return source_class(params["source"])(params[params["source"]], params.get("download"))


def require_tracks(found: dict, wanted: list[str]) -> None:
    """CaseError naming the first wanted track that `found` (name -> anything) lacks."""
    for name in wanted:
        if name not in found:
            raise CaseError(f"missing track {name} (the case has: {', '.join(sorted(found)) or 'none'})")
