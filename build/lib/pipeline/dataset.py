"""Window shards as a PyTorch IterableDataset that yields whole batches.

Reads are chunk-aligned contiguous blocks (`block_windows` windows, a multiple of the shard's
chunk), the block order is shuffled per epoch, and `shuffle_blocks` blocks are mixed in a buffer
before batches are cut. Files are opened lazily inside each worker. The order depends only on
(seed, epoch, rank, world size), so a resumed run sees the same batches.
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


def shard_shapes(paths: list[str | Path]) -> list[tuple[int, int, int]]:
    """`signals` shape [N, C, L] of each shard (one open per file)."""
    shapes = []
    for p in paths:
        with h5py.File(p, "r") as f:
            shapes.append(tuple(int(d) for d in f["signals"].shape))
    return shapes


class ShardBatches(IterableDataset):
    def __init__(self, paths, batch_size: int, block_windows: int = 256, shuffle_blocks: int = 16,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, max_windows: int | None = None):
        super().__init__()
        self.paths = [str(p) for p in paths]
        shapes = shard_shapes(self.paths)
        self.sizes = [n for n, _, _ in shapes]
        self.length = shapes[0][2] if shapes else 0
        self.batch_size = batch_size
        self.block_windows = block_windows
        self.shuffle_blocks = shuffle_blocks
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.max_windows = max_windows
        self.epoch = 0
        self.blocks = [(i, s, min(block_windows, n - s)) for i, n in enumerate(self.sizes) for s in range(0, n, block_windows)]
        if max_windows is not None:  # a fixed, deterministic subset (validation)
            kept, total = [], 0
            for b in self.blocks:
                if total >= max_windows:
                    break
                kept.append((b[0], b[1], min(b[2], max_windows - total)))
                total += kept[-1][2]
            self.blocks = kept
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

    def steps_per_epoch(self) -> int:
        """Batches per epoch, equal on every rank (DDP needs the same number of steps everywhere)."""
        per_rank = [sum(b[2] for b in self.rank_blocks(r)) for r in range(self.world_size)]
        return max(1, math.ceil(min(per_rank) / self.batch_size)) if min(per_rank) > 0 else 0

    def _read_into(self, block, out: np.ndarray) -> None:
        i, start, n = block
        f = self._files.get(i)
        if f is None:
            f = self._files[i] = h5py.File(self.paths[i], "r")
        f["signals"].read_direct(out, source_sel=np.s_[start : start + n])

    def __iter__(self):
        """Batches [B, 2, L] of raw float32 windows (normalization happens on the device, in
        `pipeline.preprocess.normalize`, the one place for it)."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        blocks = self.rank_blocks(self.rank)
        # each worker reads whole groups of `shuffle_blocks` blocks; DataLoader interleaves workers in order
        groups = [blocks[i : i + self.shuffle_blocks] for i in range(0, len(blocks), self.shuffle_blocks)]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, 7])
        perms = [rng.permutation(sum(b[2] for b in g)) if self.shuffle else None for g in groups]
        carry = None
        mine = range(wid, len(groups), nw)
        # one buffer for the whole epoch (batches are gathered copies): no page faults per group
        cap = max((sum(b[2] for b in groups[gi]) for gi in mine), default=0) + self.batch_size
        store = np.empty((cap, 2, self.length), dtype=np.float32)
        tstore = torch.from_numpy(store)  # the same memory; torch's index_select gathers faster than numpy
        for gi in mine:
            n_carry = 0 if carry is None else len(carry)
            n = sum(b[2] for b in groups[gi])
            buf = store[: n_carry + n]  # one read, straight into place
            if n_carry:
                buf[:n_carry] = carry
            off = n_carry
            for b in groups[gi]:
                self._read_into(b, buf[off : off + b[2]])
                off += b[2]
            order = perms[gi] + n_carry if perms[gi] is not None else np.arange(n_carry, n_carry + n)
            if n_carry:
                order = np.concatenate([np.arange(n_carry), order])
            order = torch.from_numpy(order)
            n_full = len(order) // self.batch_size * self.batch_size
            for s in range(0, n_full, self.batch_size):
                yield tstore.index_select(0, order[s : s + self.batch_size])
            rest = order[n_full:]
            carry = tstore.index_select(0, rest).numpy() if len(rest) else None
            if nw > 1 and carry is not None:  # workers do not share a carry: flush it
                yield torch.from_numpy(carry)
                carry = None
        if carry is not None:
            yield torch.from_numpy(carry)


def make_loader(dataset: ShardBatches, num_workers: int) -> torch.utils.data.DataLoader:
    # Its own generator: creating an iterator then never draws from the global RNG (which dropout
    # uses), so a resumed run continues the exact random stream of an uninterrupted one.
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=num_workers, persistent_workers=False,
        generator=torch.Generator().manual_seed(dataset.seed),
        pin_memory=torch.cuda.is_available(), prefetch_factor=4 if num_workers else None,
    )
