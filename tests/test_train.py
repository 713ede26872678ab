import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from pipeline.data.windows import build_manifest
from pipeline.model.dataset import ShardBatches, make_loader
from pipeline.model.embedding import pool
from pipeline.model.encoder import SSLModel
from pipeline.model.export import embed, export_encoder, load_trained
from pipeline.model.masking import mixed_mask, num_masked, patch_mask
from pipeline.model.preprocess import normalize
from pipeline.model.train import Objective, Trainer, pretrain
from tests.helpers import TINY_MODEL, TINY_TRAIN, tiny_shards, windows, write_shard

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def all_windows(ds, workers=0):
    return torch.cat(list(make_loader(ds, workers)))


def test_loader_reads_every_window_once_and_shuffled(tmp_path):
    train, _ = tiny_shards(tmp_path)
    raw = np.concatenate([windows(70, hr=60, seed=0), windows(50, hr=80, seed=1)])
    ds = ShardBatches(train, batch_size=16, block_windows=64, shuffle_blocks=2, seed=3)
    assert [b[2] for b in ds.blocks] == [64, 6, 50]  # chunk-aligned blocks
    got = all_windows(ds)
    assert got.shape == (120, 2, 1024)
    want = torch.from_numpy(raw)
    key = lambda t: sorted(map(tuple, t[:, 0, :4].tolist()))  # noqa: E731
    assert key(got) == key(want)  # each window exactly once, raw (normalized later, on the device)
    assert not torch.equal(got, want)  # shuffled
    ds.set_epoch(1)
    assert not torch.equal(all_windows(ds), got)  # a new order each epoch
    ds.set_epoch(0)
    assert torch.equal(all_windows(ds), got)  # deterministic per epoch
    for workers in (1, 2, 3):  # the same batches in the same order, whatever the number of workers
        batches = list(make_loader(ds, workers))
        assert len(batches) == ds.steps_per_epoch() == 8 and torch.equal(torch.cat(batches), got), workers
    val = ShardBatches(train, batch_size=16, block_windows=64, shuffle=False)
    assert torch.equal(all_windows(val), want)  # unshuffled: shard order


def test_an_epoch_is_the_same_for_0_to_3_workers_and_so_are_the_weights(tmp_path):
    """Each window once per epoch, in one order, for 0-3 workers; training ends with identical weights."""
    train, val = tiny_shards(tmp_path / "data", n_train=(100, 90, 77))
    cfg = dict(TINY_TRAIN, batch_size=16, block_windows=64, shuffle_blocks=1, epochs=1)
    ds = ShardBatches(train, 16, 64, 1, seed=0)
    ref = list(make_loader(ds, 0))
    assert sum(len(b) for b in ref) == 267 and len(ref) == ds.steps_per_epoch() == 17
    assert all(len(b) == 16 for b in ref[:-1])  # no worker flushes a partial batch mid-epoch
    for workers in (1, 2, 3):
        got = list(make_loader(ds, workers))
        assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(got, ref)), workers
    weights = {}
    for workers in (0, 2, 3):
        pretrain(TINY_MODEL, cfg, train, val, tmp_path / f"w{workers}", "d", num_workers=workers)
        weights[workers] = torch.load(tmp_path / f"w{workers}" / "model.pt", weights_only=True)["model"]
    for workers in (2, 3):
        assert all(torch.equal(weights[0][k], weights[workers][k]) for k in weights[0]), workers


def test_validation_subset_is_spread_over_cases(tmp_path):
    """max_val_windows draws chunk-sized pieces across the shards, not the first windows in shard order."""
    shard = tmp_path / "val" / "shard-0000.h5"
    sig = np.concatenate([windows(64, hr=60 + c, seed=c) for c in range(10)])
    write_shard(shard, sig, chunk=16)
    import h5py

    with h5py.File(shard, "a") as f:
        f["caseid"][:] = np.repeat(np.arange(1, 11), 64)
    ds = ShardBatches([shard], 16, 64, 2, shuffle=False, max_windows=128)
    assert ds.num_windows == 128
    cases = set()
    with h5py.File(shard) as f:
        for i, s, n in ds.blocks:
            cases |= set(f["caseid"][s : s + n].tolist())
    assert len(cases) >= 5, cases  # the first 128 windows in shard order would be 2 cases
    assert ds.blocks == ShardBatches([shard], 16, 64, 2, shuffle=False, max_windows=128).blocks  # fixed


def test_normalize_is_per_window_and_channel():
    x = torch.randn(4, 2, 1024) * torch.tensor([3.0, 0.2]).view(1, 2, 1) + 7.0
    z = normalize(x)
    assert torch.allclose(z.mean(-1), torch.zeros(4, 2), atol=1e-5)
    assert torch.allclose(z.std(-1, correction=0), torch.ones(4, 2), atol=1e-4)
    np.testing.assert_allclose(normalize(x.numpy()), z.numpy(), atol=1e-6)


def test_ddp_ranks_split_the_data_with_equal_steps(tmp_path):
    train, _ = tiny_shards(tmp_path, n_train=(128, 128, 64))
    a = ShardBatches(train, 16, 64, 2, rank=0, world_size=2)
    b = ShardBatches(train, 16, 64, 2, rank=1, world_size=2)
    assert set(map(tuple, a.rank_blocks(0))).isdisjoint(map(tuple, b.rank_blocks(1)))
    assert a.steps_per_epoch() == b.steps_per_epoch() == 8


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = SSLModel(dict(TINY_MODEL, d_model=48, ttm={"adaptive_patching_levels": 2}, num_layers=2, dropout=0.0))
    objective = Objective(TINY_TRAIN, 64)
    x = torch.from_numpy(windows(8))  # raw: the objective normalizes (input: visible samples; target: whole window)
    mask = patch_mask(8, 2, 16, 0.4, "random", torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        total, _, _, _ = objective(model, x, mask)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1])


def test_kill_and_resume_gives_identical_weights(tmp_path):
    train, val = tiny_shards(tmp_path / "data")
    full = pretrain(TINY_MODEL, TINY_TRAIN, train, val, tmp_path / "full", "d")
    assert full["total_steps"] == 24 and not full["stopped_early"]
    part = pretrain(TINY_MODEL, TINY_TRAIN, train, val, tmp_path / "resumed", "d", stop_after_steps=11)
    assert part["stopped_early"] and not (tmp_path / "resumed" / "model.pt").exists()
    done = pretrain(TINY_MODEL, TINY_TRAIN, train, val, tmp_path / "resumed", "d")
    assert done["step"] == 24
    a = torch.load(tmp_path / "full" / "state" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "state" / "last.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["val_total"] for r in a["metrics"]] == [r["val_total"] for r in b["metrics"]]
    # the loss sums kept on the device were saved mid-epoch and carried on: the same training losses
    assert [r["train_total"] for r in a["metrics"]] == [r["train_total"] for r in b["metrics"]]
    for name in ("model.pt", "metrics.csv", "loss.png", "reconstruction.png", "summary.json"):
        assert (tmp_path / "resumed" / name).stat().st_size > 0


def test_config_change_invalidates_resuming(tmp_path, caplog):
    train, val = tiny_shards(tmp_path / "data")
    pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d", stop_after_steps=3)
    with caplog.at_level(logging.WARNING):
        s = pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1, lr=1e-3), train, val, tmp_path / "out", "d")
    assert "not resuming" in caplog.text and "train config changed" in caplog.text
    assert s["step"] == 8


def test_batch_larger_than_data_still_trains(tmp_path, caplog):
    train, val = tiny_shards(tmp_path / "data", n_train=(10,), n_val=5)
    with caplog.at_level(logging.INFO):
        s = pretrain(TINY_MODEL, dict(TINY_TRAIN, batch_size=128, epochs=2), train, val, tmp_path / "out", "d")
    assert s["steps_per_epoch"] == 1 and s["step"] == 2
    assert "exceeds the 10 training windows" in caplog.text


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    bad = windows(32)
    bad[3, 0, 100] = np.inf
    train = [str(write_shard(tmp_path / "train.h5", bad))]
    val = [str(write_shard(tmp_path / "val.h5", windows(8)))]
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 0 on rank\(s\) \[0\] of 1 \(this rank: total=nan"):
        pretrain(TINY_MODEL, dict(TINY_TRAIN, batch_size=32, shuffle_blocks=1), train, val, tmp_path / "out", "d")
    assert not (tmp_path / "out" / "state" / "last.pt").exists()  # the epoch-end check came before its save


@pytest.mark.parametrize("log_every, checkpoint_every, bad_step, steps_run, saved_step", [
    (3, 4, 5, 6, 4),  # the log point at step 6 stops the run; the state saved at step 4 predates the bad step
    (100, 3, 4, 6, 3),  # no log point until the save at step 6, which checks first: the state saved at step 3 stays
])
def test_a_non_finite_loss_stops_at_the_next_log_point_and_is_never_saved(tmp_path, monkeypatch, log_every, checkpoint_every,
                                                                          bad_step, steps_run, saved_step):
    """Steps only record a non-finite loss on the device; the next log point (every log_every_steps,
    and before every save) raises naming the step where it first happened, before anything is saved."""
    train, val = tiny_shards(tmp_path / "data")  # 120 windows: 8 steps per epoch
    steps, forward = [], Objective.forward

    def poisoned(self, model, x, mask):
        total, msm, stft, recon = forward(self, model, x, mask)
        if model.training:
            steps.append(len(steps))
            if steps[-1] == bad_step:
                total = total + float("nan")
        return total, msm, stft, recon

    monkeypatch.setattr(Objective, "forward", poisoned)
    cfg = dict(TINY_TRAIN, log_every_steps=log_every, checkpoint_every_steps=checkpoint_every)
    with pytest.raises(FloatingPointError, match=rf"non-finite loss at step {bad_step} on rank\(s\) \[0\] of 1 \(this rank: total=nan"):
        pretrain(TINY_MODEL, cfg, train, val, tmp_path / "out", "d")
    assert len(steps) == steps_run  # the NaN weights trained on for at most log_every_steps steps
    state = torch.load(tmp_path / "out" / "state" / "last.pt", weights_only=True)
    assert state["step"] == saved_step
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_two_process_ddp_on_cpu_writes_one_checkpoint(tmp_path):
    train, val = tiny_shards(tmp_path / "data", n_train=(64, 64))
    params = json.dumps({"model": TINY_MODEL, "train": dict(TINY_TRAIN, epochs=2)})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"config_digest": "x", "totals": {}}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "pipeline", "pretrain", "--params", params, "--manifest", str(manifest),
           "--train-shards", *train, "--val-shards", *val, "--outdir", str(tmp_path / "out"), "--threads", "4"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("cores: 2 threads given") == 2  # the rule's 4 threads, one half per process
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 2 * 4  # 128 windows / (2 ranks x 16)
    assert sorted(p.name for p in (tmp_path / "out" / "state").iterdir()) == ["best.pt", "best_example.pt", "last.pt"]
    assert (tmp_path / "out" / "model.pt").exists()


def test_a_non_finite_loss_on_one_ddp_rank_stops_every_rank_promptly(tmp_path):
    """Rank 1's data holds an infinity: both ranks stop at the first log point (the save at step 2)
    with the same error naming step 0 and rank 1, long before a collective's timeout (minutes). By
    then rank 0's losses are NaN too (the gradient all-reduce spread the NaN); the culprit is the
    rank that went non-finite first."""
    bad = windows(64, seed=1)
    bad[:, 0, 100] = np.inf
    train = [str(write_shard(tmp_path / "data" / "train" / "a.h5", windows(64, seed=0))),
             str(write_shard(tmp_path / "data" / "train" / "b.h5", bad, caseid=2))]
    _, val = tiny_shards(tmp_path / "valdata", n_train=(16,))
    params = json.dumps({"model": TINY_MODEL, "train": dict(TINY_TRAIN, block_windows=64, epochs=1)})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"config_digest": "x", "totals": {}}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
           "-m", "pipeline", "pretrain", "--params", params, "--manifest", str(manifest),
           "--train-shards", *train, "--val-shards", *val, "--outdir", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert r.returncode != 0
    raised = {}  # torchrun prefixes each rank's lines with [rankN]:
    for line in r.stderr.splitlines():
        if "FloatingPointError: non-finite loss at step 0 on rank(s)" in line:
            raised[line.split("]")[0]] = line.split("on rank(s) ")[1].split(" of")[0]
    assert set(raised) == {"[rank0", "[rank1"}, r.stderr[-3000:]  # both ranks raised
    assert set(raised.values()) == {"[1]"}  # and name the same culprit


@pytest.mark.parametrize("mixing", ["mixer", "none"])
def test_export_round_trip_in_a_fresh_process(tmp_path, config, mixing):
    model_cfg = dict(TINY_MODEL, channel_mixing=mixing)
    train, val = tiny_shards(tmp_path / "data")
    pretrain(model_cfg, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "pre", "d")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"1": {"split": "train", "subjectid": 11, "cut": 5, "kept": 4, "rejected": {"nan": 1}}}))
    build_manifest([stats], tmp_path / "manifest.json", {})
    out = tmp_path / "export" / "encoder"
    pre = tmp_path / "pre"
    params = {"tracks": ["SNUADC/PLETH", "SNUADC/ECG_II"], "signals": config["signals"], "window": config["window"], "source": "demo"}
    export_encoder(pre / "model.pt", tmp_path / "manifest.json", pre / "metrics.csv", pre / "summary.json", params, out)
    mixer_files = ["channel_mixer.json", "channel_mixer.safetensors"] if mixing == "mixer" else []
    files = ["README.md", "config.json", "model.safetensors", "preprocessing.json", *mixer_files]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    prep = json.loads((out / "preprocessing.json").read_text())
    assert prep["fs"] == 125 and prep["window"] == 1024 and prep["channels"] == ["PPG", "ECG"] and prep["channel_mixing"] == mixing
    assert json.loads((out / "config.json").read_text())["model_type"] == "tinytimemixer"
    card = (out / "README.md").read_text()
    assert "How to load" in card and "Intended use and limitations" in card
    meta = yaml.safe_load(card.split("---\n")[1])  # front matter as model hubs read it
    assert meta["license"] == "other" and meta["datasets"] == ["demo"] and meta["library_name"] == "granite-tsfm"
    assert "ppg" in meta["tags"] and "tinytimemixer" in meta["tags"] and "base_model" not in meta
    assert f"-> [N, 2, {2 * model_cfg['d_model'] + 2}]" in card  # the shape embed() returns (asserted below)
    assert "log(std" in prep["scale"] and "2 d_model + 2" in prep["scale"]
    assert '"train": 1' in card  # subjects with windows per split, from the manifest

    x = windows(6, seed=4)
    np.save(tmp_path / "x.npy", x)
    model = load_trained(pre / "model.pt")
    with torch.no_grad():
        want = pool(model.encoder(torch.from_numpy(normalize(x)))).numpy()  # backbone, then the mixer
        backbone_tokens = model.backbone(torch.from_numpy(normalize(x)))
        tokens = backbone_tokens.mean(dim=2).numpy()
        unmixed = pool(backbone_tokens).numpy()
    np.testing.assert_allclose(embed(x, out, scale=False), want, rtol=1e-5, atol=1e-6)
    got = embed(x, out)  # the default appends each channel's scale: log std and mean of the raw window
    assert got.shape == (6, 2, 2 * model.encoder.d_model + 2)
    np.testing.assert_allclose(got[..., :-2], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[..., -2], np.log(x.astype(np.float64).std(-1) + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(got[..., -1], x.astype(np.float64).mean(-1), rtol=1e-4, atol=1e-5)
    assert want.shape == (6, 2, 2 * model.encoder.d_model)
    assert (mixing == "mixer") == (np.abs(want - unmixed).max() > 1e-4)  # the trained mixer changes the embeddings
    code = (  # the backbone alone, with granite-tsfm's own class
        "import numpy as np, torch, sys\n"
        "from tsfm_public.models.tinytimemixer import TinyTimeMixerModel\n"
        "from pipeline.model.preprocess import normalize\n"
        f"m = TinyTimeMixerModel.from_pretrained({str(out)!r}).eval()\n"
        f"x = torch.from_numpy(normalize(np.load({str(tmp_path / 'x.npy')!r}))).transpose(1, 2)\n"
        "with torch.no_grad(): h = m(past_values=x).last_hidden_state.mean(dim=2).numpy()\n"
        f"np.save({str(tmp_path / 'h.npy')!r}, h)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"), tokens, rtol=1e-5, atol=1e-6)


def test_sigkill_mid_run_then_rerun_gives_identical_weights(tmp_path):
    """A real kill (SIGKILL of the training process once it has checkpointed), then the same command."""
    import signal
    import time

    train, val = tiny_shards(tmp_path / "data")
    params = json.dumps({"model": TINY_MODEL, "train": dict(TINY_TRAIN, epochs=25, checkpoint_every_steps=5)})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"config_digest": "x", "totals": {}}))

    def cmd(out):
        return [sys.executable, "-m", "pipeline", "pretrain", "--params", params, "--manifest", str(manifest),
                "--train-shards", *train, "--val-shards", *val, "--outdir", str(out)]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state" / "last.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(state, weights_only=False)["step"]
    assert 0 < killed_at < 200, killed_at  # killed mid-run, after a checkpoint
    assert not (tmp_path / "killed" / "model.pt").exists()
    assert subprocess.run(cmd(tmp_path / "killed"), env=env, capture_output=True).returncode == 0
    assert subprocess.run(cmd(tmp_path / "straight"), env=env, capture_output=True).returncode == 0
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)
    assert a["step"] == b["step"] and a["val_loss"] == b["val_loss"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_a_pickle_that_runs_code_is_refused_and_never_executed(tmp_path):
    """Every torch.load is weights_only: a state file crafted to create a file when unpickled fails
    with a clear error, and the file is not created."""
    from pipeline.model.checkpoint import UnsafeCheckpointError

    train, val = tiny_shards(tmp_path / "data")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = tmp_path / "out" / "state" / "last.pt"
    state.parent.mkdir(parents=True)
    torch.save({"step": Payload()}, state)
    with pytest.raises(UnsafeCheckpointError, match="weights_only=True"):
        pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"])
def test_an_empty_or_corrupt_state_is_reported_and_training_starts_afresh(tmp_path, caplog, content):
    train, val = tiny_shards(tmp_path / "data")
    state = tmp_path / "out" / "state" / "last.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        s = pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d")
    assert "empty or corrupt" in caplog.text and s["step"] == s["total_steps"]


def test_resuming_with_another_world_size_starts_afresh_and_says_why(tmp_path, caplog):
    train, val = tiny_shards(tmp_path / "data")
    pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d", stop_after_steps=3)
    state = tmp_path / "out" / "state" / "last.pt"
    saved = torch.load(state, weights_only=True)
    saved["world_size"] = 2  # as if written by a 2-GPU run
    torch.save(saved, state)
    with caplog.at_level(logging.INFO):
        pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d")
    assert "saved by 2 process(es), this run has 1" in caplog.text and "at step" not in caplog.text


def test_resuming_a_state_saved_on_another_device_type_starts_afresh_and_says_why(tmp_path, caplog):
    """The mask generator lives on the training device: a CPU generator's state cannot continue on CUDA."""
    train, val = tiny_shards(tmp_path / "data")
    pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d", stop_after_steps=3)
    state = tmp_path / "out" / "state" / "last.pt"
    saved = torch.load(state, weights_only=True)
    here = saved["rng"][0]["mask_device"]
    assert here == ("cuda" if torch.cuda.is_available() else "cpu")
    other = "cpu" if here == "cuda" else "cuda"
    saved["rng"][0]["mask_device"] = other
    torch.save(saved, state)
    with caplog.at_level(logging.INFO):
        s = pretrain(TINY_MODEL, dict(TINY_TRAIN, epochs=1), train, val, tmp_path / "out", "d")
    assert f"saved by a run on {other}, this run is on {here}" in caplog.text and "at step" not in caplog.text
    assert s["step"] == s["total_steps"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_masks_are_drawn_on_the_generators_device_and_repeat_from_its_state(device):
    g = torch.Generator(device=device).manual_seed(0)
    state = g.get_state()
    mix = {"random": 0.5, "block": 0.2, "cross": 0.3}
    m = mixed_mask(512, 2, 16, 0.4, mix, g)
    assert m.device.type == device and m.dtype == torch.bool and m.shape == (512, 2, 16)
    g.set_state(state)  # what a resumed run does
    assert torch.equal(mixed_mask(512, 2, 16, 0.4, mix, g), m)
    per_channel = m.sum(-1)
    cross = (per_channel == 16).any(-1)  # one channel fully hidden, the other fully visible
    assert torch.equal(per_channel[cross].sort(-1).values, torch.tensor([0, 16], device=device).expand(int(cross.sum()), 2))
    assert (per_channel[~cross] == num_masked(16, 0.4)).all()  # random and block: the same count per channel
    assert 0.2 < cross.float().mean().item() < 0.4


def _inductor_missing() -> str | None:
    """Why torch.compile's default backend cannot run here, or None."""
    import torch._dynamo

    if "inductor" not in torch._dynamo.list_backends():
        return "this torch has no inductor backend"
    if not torch.cuda.is_available():
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as e:  # no C++ compiler: inductor cannot build CPU kernels
            return f"inductor finds no C++ compiler here ({type(e).__name__}: {e})"
    return None


def test_compile_true_trains_and_matches_the_eager_model(tmp_path):
    """train.compile through the step command (a fresh process: a compiler crash cannot take pytest
    down): it trains, saves uncompiled weights that load as usual, and its losses match eager's."""
    reason = _inductor_missing()
    if reason:
        pytest.skip(reason)
    train, val = tiny_shards(tmp_path / "data", n_train=(32,), n_val=8)  # 2 full batches: one graph
    model_cfg = dict(TINY_MODEL, dropout=0.0)  # dropout draws differ between compiled and eager kernels
    cfg = dict(TINY_TRAIN, epochs=1, precision="fp32")
    eager = pretrain(model_cfg, cfg, train, val, tmp_path / "eager", "d")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"config_digest": "x", "totals": {}}))
    params = json.dumps({"model": model_cfg, "train": dict(cfg, compile=True)})
    cmd = [sys.executable, "-m", "pipeline", "pretrain", "--params", params, "--manifest", str(manifest),
           "--train-shards", *train, "--val-shards", *val, "--outdir", str(tmp_path / "compiled")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "compiled" / "summary.json").read_text())
    assert summary["step"] == eager["step"] == 2
    a = torch.load(tmp_path / "eager" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "compiled" / "model.pt", weights_only=True)
    assert sorted(a["model"]) == sorted(b["model"])  # no "_orig_mod." prefixes: the uncompiled model is saved
    assert b["train_cfg"]["compile"] is True
    assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-3, atol=1e-5)
    load_trained(tmp_path / "compiled" / "model.pt")


@needs_cuda
def test_cuda_batches_are_pinned_for_any_number_of_workers(tmp_path):
    train, _ = tiny_shards(tmp_path)
    ds = ShardBatches(train, 16, 64, 2, seed=0)
    for workers in (0, 2):
        batches = list(make_loader(ds, workers, pin_memory=True))
        assert batches and all(b.is_pinned() for b in batches), workers


@needs_cuda
def test_cuda_training_steps_never_wait_for_the_device(tmp_path):
    """Between log points a step queues work and returns: any synchronizing call (.item(), a blocking
    copy, nonzero, ...) in it raises under torch.cuda.set_sync_debug_mode("error")."""
    train, val = tiny_shards(tmp_path / "data")
    trainer = Trainer(TINY_MODEL, dict(TINY_TRAIN, log_every_steps=100), train, val, tmp_path / "out", "d")
    batches = list(make_loader(trainer.train_ds, 0, pin_memory=True))
    trainer.step(batches[0])  # the first step creates the optimizer state and cuBLAS handles
    trainer.log_point()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in batches[1:]:
            trainer.step(x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert trainer.log_point() > 0 and trainer.step_count == len(batches)
