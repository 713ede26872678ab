"""Window shards as a PyTorch IterableDataset that yields whole batches, the same ones in the same
order whatever the number of DataLoader workers (docs/design.md, "Training data").

An epoch's plan depends only on (seed, epoch, rank, world size): the rank's blocks (contiguous,
chunk-aligned reads of `block_windows` windows) are shuffled, their windows laid end to end, and
that stream is cut into groups of exactly G windows, G = the multiple of `batch_size` nearest above
`shuffle_blocks * block_windows` (the last group is shorter). A group is read (contiguous pieces),
shuffled by its own seeded permutation and cut into batches, so no batch spans two groups and every
window is in exactly one batch per epoch. Worker w reads groups w, w + W, ...; `make_loader` puts
the batches back in plan order in the main process. Files are opened lazily inside each worker.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

log = logging.getLogger(__name__)


def shard_shapes(paths: list[str | Path]) -> list[tuple[tuple[int, int, int], int]]:
    """(`signals` shape [N, C, L], chunk length along N) of each shard (one open per file)."""
    out = []
    for p in paths:
        with h5py.File(p, "r") as f:
            d = f["signals"]
            out.append((tuple(int(n) for n in d.shape), int(d.chunks[0]) if d.chunks else 1))
    return out


def shard_rate(paths: list[str | Path]) -> float | None:
    """The sampling rate of the windows (the first shard's `fs` attribute, docs/design.md "Shards");
    None when there is no shard or it has none."""
    for p in paths[:1]:
        with h5py.File(p, "r") as f:
            return float(f.attrs["fs"]) if "fs" in f.attrs else None
    return None


def spread_subset(sizes: list[int], piece: int, max_windows: int, seed: int) -> list[tuple[int, int, int]]:
    """A fixed subset of about `max_windows` windows drawn across all shards and cases: pieces of
    `piece` consecutive windows (one HDF5 chunk) in a seeded random order, then sorted for reading."""
    pieces = [(i, s, min(piece, n - s)) for i, n in enumerate(sizes) for s in range(0, n, piece)]
    order = np.random.default_rng([seed, 11]).permutation(len(pieces))
    kept, total = [], 0
    for k in order:
        if total >= max_windows:
            break
        i, s, n = pieces[k]
        n = min(n, max_windows - total)
        kept.append((i, s, n))
        total += n
    return sorted(kept)


class ShardBatches(IterableDataset):
    def __init__(self, paths, batch_size: int, block_windows: int = 256, shuffle_blocks: int = 16,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, max_windows: int | None = None):
        super().__init__()
        self.paths = [str(p) for p in paths]
        shapes = shard_shapes(self.paths)
        self.sizes = [shape[0] for shape, _ in shapes]
        self.length = shapes[0][0][2] if shapes else 0
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.group_windows = math.ceil(shuffle_blocks * block_windows / batch_size) * batch_size
        if max_windows is not None and max_windows < sum(self.sizes):  # a fixed subset spread over cases (validation)
            self.blocks = spread_subset(self.sizes, max(chunk for _, chunk in shapes), max_windows, seed)
        else:
            self.blocks = [(i, s, min(block_windows, n - s)) for i, n in enumerate(self.sizes) for s in range(0, n, block_windows)]
        self._files: dict[int, h5py.File] = {}

    def __getstate__(self):  # open h5py handles never travel to worker processes
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    @property
    def num_windows(self) -> int:
        return sum(b[2] for b in self.blocks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rank_blocks(self, rank: int) -> list[tuple[int, int, int]]:
        order = list(range(len(self.blocks)))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return [self.blocks[i] for i in order[rank :: self.world_size]]

    def groups(self, rank: int) -> list[list[tuple[int, int, int]]]:
        """The epoch's groups of this rank: lists of (shard, start, n) pieces, G windows each."""
        groups, current, room = [], [], self.group_windows
        for i, start, n in self.rank_blocks(rank):
            while n:
                take = min(n, room)
                current.append((i, start, take))
                start, n, room = start + take, n - take, room - take
                if room == 0:
                    groups.append(current)
                    current, room = [], self.group_windows
        if current:
            groups.append(current)
        return groups

    def steps_per_epoch(self) -> int:
        """Batches per epoch, equal on every rank (DDP needs the same number of steps everywhere)."""
        per_rank = [sum(b[2] for b in self.rank_blocks(r)) for r in range(self.world_size)]
        return max(1, math.ceil(min(per_rank) / self.batch_size)) if min(per_rank) > 0 else 0

    def _read_into(self, piece, out: np.ndarray) -> None:
        i, start, n = piece
        f = self._files.get(i)
        if f is None:
            f = self._files[i] = h5py.File(self.paths[i], "r")
        f["signals"].read_direct(out, source_sel=np.s_[start : start + n])

    def __iter__(self):
        """(batch index in the epoch, batch [B, 2, L] of raw float32 windows); normalization
        happens on the device (`pipeline.model.preprocess.normalize`)."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        groups = self.groups(self.rank)
        per_group = self.group_windows // self.batch_size
        store = np.empty((self.group_windows, 2, self.length), dtype=np.float32)  # one buffer, reused
        tstore = torch.from_numpy(store)  # the same memory; torch's index_select gathers faster than numpy
        for g in range(wid, len(groups), nw):
            off = 0
            for piece in groups[g]:
                self._read_into(piece, store[off : off + piece[2]])
                off += piece[2]
            if self.shuffle:
                order = torch.from_numpy(np.random.default_rng([self.seed, self.epoch, self.rank, g]).permutation(off))
            else:
                order = torch.arange(off)
            for j, s in enumerate(range(0, off, self.batch_size)):
                yield g * per_group + j, tstore.index_select(0, order[s : s + self.batch_size])


class InOrder:
    """Batches of a DataLoader over `ShardBatches`, in plan order whatever the number of workers."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        pending, want = {}, 0
        for index, batch in self.loader:
            pending[int(index)] = batch
            while want in pending:
                yield pending.pop(want)
                want += 1
        if pending:  # a worker died between batches: never skip silently
            raise RuntimeError(f"data loader ended with batches {sorted(pending)[:5]} waiting for batch {want}")


def make_loader(dataset: ShardBatches, num_workers: int, pin_memory: bool | None = None) -> InOrder:
    """The dataset's batches in plan order. `pin_memory` (default: when CUDA is available): every
    batch is copied into page-locked memory, also with num_workers=0 (in the main process; with
    workers, in the loader's pinning thread), so that `x.to(device, non_blocking=True)` is an
    asynchronous copy that does not block the host."""
    # Its own generator: creating an iterator then never draws from the global RNG (which dropout
    # uses), so a resumed run continues the exact random stream of an uninterrupted one.
    return InOrder(torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=num_workers, persistent_workers=False,
        generator=torch.Generator().manual_seed(dataset.seed),
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, prefetch_factor=4 if num_workers else None,
    ))
