"""Checkpoints: written atomically and durably, read with `weights_only=True` only (a file that
would run code when unpickled is refused, never executed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from pipeline.io import atomic_path


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects other than tensors and plain data; it is never unpickled."""


def load(path: Path) -> dict:
    """A checkpoint written by the pipeline (tensors, numbers, strings, lists and dicts only), read
    with `weights_only=True`: a file that would run code when unpickled is refused, not executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} holds objects other than tensors and plain data, so it is not loaded (torch.load with "
            f"weights_only=True refused it: {str(e).splitlines()[0]}). This pipeline never writes such files; "
            "if you did not put it there, delete it and rerun."
        ) from e
