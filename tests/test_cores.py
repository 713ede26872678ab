"""How a torch job shares the cores it is given (pipeline/model/cores.py; docs/design.md, "Sharing
the cores")."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.model.cores import CoreShare, plan
from tests.conftest import REPO
from tests.helpers import TINY_MODEL, TINY_TRAIN, tiny_shards


@pytest.mark.parametrize(
    "given, available, on_gpu, expected",
    [
        (4, 2, False, CoreShare(threads=2, workers=0, usable=2)),  # README's --cores 8 on a 2-core laptop
        (4, 2, True, CoreShare(threads=1, workers=1, usable=2)),
        (1, 16, False, CoreShare(threads=1, workers=0, usable=1)),  # two jobs given 1 thread each
        (1, 16, True, CoreShare(threads=1, workers=0, usable=1)),
        (8, 16, False, CoreShare(threads=6, workers=2, usable=8)),
        (8, 16, True, CoreShare(threads=1, workers=7, usable=8)),  # the SLURM profile's GPU job
        (16, 4, False, CoreShare(threads=3, workers=1, usable=4)),
    ],
)
def test_the_share_never_exceeds_the_threads_given_nor_the_cores(given, available, on_gpu, expected):
    share = plan(given, available, on_gpu)
    assert share == expected
    assert share.threads + share.workers == share.usable == min(given, available)


def test_no_threads_is_an_error():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        plan(0, 4, False)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_a_pretraining_on_one_allowed_core_takes_one_thread_whatever_the_rule_gives(tmp_path):
    """`--threads 4` (what `--cores 8` gives the rule) in a process that may only use one core: one
    intra-op thread, no loader worker, passive OpenMP waits; the job trains."""
    train, val = tiny_shards(tmp_path / "data", n_train=(32,), n_val=16)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"config_digest": "x", "totals": {}}))
    params = json.dumps({"model": TINY_MODEL, "train": dict(TINY_TRAIN, epochs=1, log_every_steps=1)})
    core = min(os.sched_getaffinity(0))
    code = (f"import os, sys; os.sched_setaffinity(0, {{{core}}}); sys.argv = ['pipeline'] + sys.argv[1:]\n"
            "from pipeline.__main__ import main; main()")
    cmd = [sys.executable, "-c", code, "pretrain", "--params", params, "--manifest", str(manifest),
           "--train-shards", *train, "--val-shards", *val, "--outdir", str(tmp_path / "out"), "--threads", "4"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ("cores: 4 threads given, 1 usable (affinity 1): 1 intra-op thread(s), 0 loader worker(s); "
            "OMP_WAIT_POLICY=PASSIVE") in r.stderr
    assert "training on CPU (1 threads)" in r.stderr
    assert "\r" not in r.stderr and "epoch 1/1 step" in r.stderr  # a log file gets lines, not a progress bar
    assert (tmp_path / "out" / "model.pt").is_file()
