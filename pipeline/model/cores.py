"""How a torch job uses the cores it is given (docs/design.md, "Sharing the cores").

Snakemake gives each rule `threads` (at most `--cores`, which may exceed the machine: the README's
`--cores 8` gives the pretraining rule 4 threads on a 2-core laptop). A job that also let torch
take every core of the machine, as torch does by default, and started loader workers on top,
would run more busy threads than cores beside every other job. So a torch job plans once, at
start-up, from the threads it was given capped by the cores this process may run on
(`os.sched_getaffinity`, which a SLURM allocation or `taskset` narrows):
- on the CPU the model's arithmetic is the work, so the intra-op threads take the share and the
  loader runs in the training process until there are 4 or more cores to give (then a quarter of
  them read shards in worker processes);
- on a GPU the arithmetic is on the device, so one thread drives it and the rest are loader workers.
Inter-op parallelism is one thread (the models have no parallel branches to run).

OpenMP's idle threads wait passively (`OMP_WAIT_POLICY=PASSIVE`, set by the command line before
torch loads unless the user set it): a spinning thread keeps a core busy while it waits at every
barrier, which beside another job takes that job's core for nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

OMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class CoreShare:
    threads: int  # intra-op threads of the job's own process
    workers: int  # loader worker processes (0 = load in the job's own process)
    usable: int  # the threads given, capped by the cores the process may use


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def plan(given: int, available: int, on_gpu: bool) -> CoreShare:
    """Intra-op threads and loader workers for a job given `given` threads on `available` cores."""
    if given < 1:
        raise ValueError(f"threads must be >= 1, got {given}")
    usable = max(1, min(given, available))
    workers = usable - 1 if on_gpu else usable // 4
    return CoreShare(threads=max(1, usable - workers), workers=workers, usable=usable)


def apply(given: int, on_gpu: bool) -> CoreShare:
    """Plan from the cores this process may use and set torch's thread counts; logged once."""
    import torch

    share = plan(given, available_cores(), on_gpu)
    torch.set_num_threads(share.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started in this process: keep it
        pass
    log.info("cores: %d threads given, %d usable (affinity %d): %d intra-op thread(s), %d loader worker(s); "
             "OMP_WAIT_POLICY=%s", given, share.usable, available_cores(), share.threads, share.workers,
             os.environ.get("OMP_WAIT_POLICY", "unset"))
    return share
