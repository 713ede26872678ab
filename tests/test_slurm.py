"""Submit the demo workflow through the SLURM profile to a real (single-node) cluster.

CI starts the cluster with tests/slurm/start-local-slurm.sh (slurmctld + slurmd + munge from
Debian's packages, one fake GPU). Elsewhere the test starts it itself when run as root with
VITALSSL_START_SLURM=1, and otherwise skips with the reason; in CI (CI=true) it never skips.
"""

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO
from tests.test_workflow import snakemake, write_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return r.returncode == 0 and any(s in r.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def slurm():
    if not cluster_up() and os.environ.get("VITALSSL_START_SLURM") == "1" and os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "tests/slurm/start-local-slurm.sh")], check=True, timeout=600,
                       env=dict(os.environ, FAKE_GPUS="1", WITH_DBD="0"))
    if not cluster_up():
        reason = "no SLURM cluster (run tests/slurm/start-local-slurm.sh as root, or set VITALSSL_START_SLURM=1)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must provide one")
        pytest.skip(reason)


def test_demo_through_the_slurm_profile(slurm, tmp_path):
    write_config(tmp_path, small=True, train={"epochs": 2})
    partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()[0]
    r = snakemake(
        tmp_path, "--profile", str(REPO / "workflow/profiles/slurm"),
        # this test cluster: one 2-CPU node without accounting (slurmdbd), so squeue answers status
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--default-resources", f"slurm_partition={partition}", "runtime=30", "mem_mb=1000", "cpus_per_task=1",
        "--set-resources", "pretrain:gpu=1", f"pretrain:slurm_partition={partition}", "pretrain:runtime=30",
        "pretrain:mem_mb=2000", "pretrain:cpus_per_task=1",
        "--set-threads", "pretrain=1", "--jobs", "4", "results/demo/export/encoder",
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert (tmp_path / "results/demo/export/encoder/model.safetensors").exists()

    # jobs went through SLURM: the pretraining job saw its SLURM job id and its GPU allocation
    log = (tmp_path / "logs/demo/pretrain.log").read_text()
    m = re.search(r"SLURM job (\d+) on \S+: SLURM_JOB_GPUS=(\S*) CUDA_VISIBLE_DEVICES=(\S*)", log)
    assert m, log[:2000]
    job = subprocess.run(["scontrol", "show", "job", "-o", m.group(1)], capture_output=True, text=True).stdout
    assert "TresPerJob=gres:gpu:1" in job and "Comment=rule_pretrain" in job, job  # sbatch --gpus=1
    assert m.group(3) != ""  # SLURM exported the allocated (fake) device to the job
    # data jobs were grouped (one cluster job per batch), downloads stayed local
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid \d+ \(log: \S+/slurm_logs/(\w+)/", out)
    n_batches = len(list((tmp_path / "results/demo/windows/stats").glob("batch-*.json")))
    assert sorted(submitted) == ["group_data_resample_windows"] * n_batches + ["rule_export", "rule_pretrain"], submitted
