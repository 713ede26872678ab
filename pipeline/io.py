"""Atomic, durable writes and small file helpers: every output lands complete or not at all
(docs/design.md, "Faults").

A write goes to a temporary file in the target's folder, is fsynced, renamed onto the target, and
the folder is fsynced, so a node crash cannot leave an empty file that later counts as complete.
Outputs get the user's umask (mkstemp alone would make them 0600). Temporary files left by a
killed job are named `.<target>.<random>.tmp` and are removed by the next write of that target.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike) -> None:
    """fsync one file, or one directory's entries (not the files in it); a symlink is skipped."""
    path = Path(path)
    if path.is_symlink():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files and folders a killed writer of `path` left behind."""
    for stale in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder as `path`; on success fsync it, rename it onto
    `path` and fsync the folder. On any exception the temporary file is removed and `path` is left
    untouched. The caller may replace the temporary file by a symlink (kept as a link)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like `atomic_path` for a folder: fill the yielded temporary folder; on success it is fsynced
    and swapped in by renames (the old folder is moved aside first, then removed), so `path` is
    never half written: it is the complete old folder, the complete new one, or briefly absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for p in sorted(tmp.rglob("*"), reverse=True):  # files, then their folders
            fsync_path(p)
        fsync_path(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.", suffix=TMP_SUFFIX))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def digest(obj) -> str:
    """Short stable digest of a JSON-able object (recorded in outputs to tie them to their config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on a terminal only: where stderr is a file (a job's log), tqdm would write
    one ever-longer line of carriage returns, so the bar is off there and the caller logs a line per
    logging interval instead (`bar.disable` says which)."""
    from tqdm import tqdm

    kwargs["disable"] = kwargs.get("disable", False) or not sys.stderr.isatty()
    return tqdm(iterable, **kwargs)
