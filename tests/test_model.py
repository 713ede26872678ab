from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, validate_config
from pipeline.evaluation.checks import ALL_CHECKS
from pipeline.model import backbones
from pipeline.model.backbones import GeometryError, PretrainedLoadError
from pipeline.model.encoder import SSLModel
from pipeline.model.losses import MultiResolutionSTFTLoss, masked_mse
from pipeline.model.masking import mixed_mask, num_masked, patch_mask
from pipeline.model.preprocess import normalize
from tests.helpers import TINY_MODEL


@pytest.mark.parametrize("L, p, d, levels", [(1024, 64, 48, 2), (512, 32, 32, 0), (1024, 128, 16, 1), (1024, 16, 24, 3)])
def test_shapes_through_encoder_and_head(L, p, d, levels):
    cfg = dict(TINY_MODEL, context_length=L, patch_length=p, d_model=d, ttm={"adaptive_patching_levels": levels})
    model = SSLModel(cfg)
    x = torch.randn(3, 2, L)
    assert model.backbone(x).shape == (3, 2, L // p, d)
    mask = patch_mask(3, 2, L // p, 0.4, "random", torch.Generator().manual_seed(0))
    assert model(x, mask).shape == (3, 2, L)
    with pytest.raises(ValueError, match="context_length"):
        model.backbone(torch.randn(3, 2, L + p))  # never adapted at run time


@pytest.mark.parametrize(
    "edit, key",
    [
        ({"model": {"patch_length": 100}}, "model.patch_length"),
        ({"model": {"context_length": 512}}, "model.context_length"),
        ({"model": {"d_model": 16, "ttm": {"adaptive_patching_levels": 3}}}, "model.d_model"),
        ({"model": {"backbone": "lstm"}}, "model.backbone"),
        ({"train": {"stft_n_fft": [256, 2048], "stft_hop": [64, 128]}}, "train.stft_n_fft"),
        ({"train": {"stft_hop": [64]}}, "train.stft_hop"),
        ({"model": {"pretrained": "ibm-granite/granite-timeseries-ttm-r1"}}, "model.revision"),
        ({"train": {"mask_mix": {"random": 0.5, "cross": 0.3}}}, "train.mask_mix"),
        ({"train": {"mask_mix": {"random": 0.5, "spans": 0.5}}}, "train.mask_mix"),
        ({"model": {"channel_mixing": "attention"}}, "model.channel_mixing"),
    ],
)
def test_invalid_geometry_fails_at_config_load(config, edit, key):
    for section, values in edit.items():
        config[section] = {**config[section], **values}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(config, ALL_CHECKS)


def test_checkpoint_config_mismatch_names_both_values():
    backbone = backbones.build(dict(TINY_MODEL, patch_length=32))
    with pytest.raises(GeometryError, match=r"model.patch_length: config 64 vs checkpoint 32"):
        SSLModel(TINY_MODEL, backbone=backbone)


def test_masks_have_exact_counts_and_block_spans():
    g = torch.Generator().manual_seed(0)
    m = patch_mask(50, 2, 16, 0.4, "random", g)
    assert (m.sum(-1) == num_masked(16, 0.4)).all() and num_masked(16, 0.4) == 6
    assert not torch.equal(m[0, 0], m[1, 0])  # random per window
    b = patch_mask(50, 2, 16, 0.4, "block", g)
    for row in b.view(-1, 16):
        idx = torch.nonzero(row).flatten()
        assert len(idx) == 6 and (idx[-1] - idx[0]).item() == 5
    c = patch_mask(50, 2, 16, 0.4, "cross", g)
    assert (c.all(-1) ^ (~c).all(-1)).all()  # each channel wholly hidden or wholly visible
    assert (c.all(-1).sum(-1) == 1).all()  # exactly one channel hidden per window
    assert 0 < c[:, 0].all(-1).sum() < 50  # the PPG hidden in some windows, the ECG in the others


def test_mask_mix_draws_each_kind_in_its_proportion_and_reproducibly():
    mix = {"random": 0.6, "block": 0.1, "cross": 0.3}
    m = mixed_mask(4000, 2, 16, 0.4, mix, torch.Generator().manual_seed(0))
    assert torch.equal(m, mixed_mask(4000, 2, 16, 0.4, mix, torch.Generator().manual_seed(0)))  # from the generator only
    cross = m.all(-1).any(-1)
    runs = (m[..., 1:] & ~m[..., :-1]).sum(-1) + m[..., 0]  # runs of masked patches per channel
    one_run = ~cross & (runs == 1).all(-1)
    assert abs(cross.float().mean().item() - 0.3) < 0.03
    assert abs(one_run.float().mean().item() - 0.1) < 0.02  # block masks (a random mask is one run with p ~ 1e-5)
    assert (m[~cross].sum(-1) == 6).all()
    only = mixed_mask(100, 2, 16, 0.4, {"random": 0.0, "block": 0.0, "cross": 1.0}, torch.Generator().manual_seed(0))
    assert only.all(-1).any(-1).all()
    never = mixed_mask(100, 2, 16, 0.4, {"random": 1.0, "block": 0.0, "cross": 0.0}, torch.Generator().manual_seed(0))
    assert (never.sum(-1) == 6).all()


def test_the_encoder_sees_visible_statistics_and_mask_tokens_only():
    """Training input: z-scored over the visible samples, masked patches replaced by the channel's
    mask token; nothing of a masked sample (value, mean or energy) reaches the backbone."""
    model = SSLModel(TINY_MODEL)
    assert type(model.backbone.model.scaler).__name__ == "TinyTimeMixerNOPScaler"  # no in-model rescaling
    with torch.no_grad():
        model.mask_token.copy_(torch.randn(2, 64))
    seen = {}

    def hook(module, inputs, output):
        seen["x"] = inputs[0].detach()

    model.backbone.model.encoder.patcher.register_forward_hook(hook)
    x = torch.randn(2, 2, 1024) * 4 + 3.0
    mask = patch_mask(2, 2, 16, 0.4, "random", torch.Generator().manual_seed(1))
    mask[1, 0] = True  # a fully hidden channel (a cross mask)
    model(x, mask)
    patches = seen["x"]  # [B, C, P, patch_length]
    for b in range(2):
        for c in range(2):
            hidden = patches[b, c][mask[b, c]]
            assert torch.equal(hidden, model.mask_token.detach()[c].expand_as(hidden))
    vis = x.view(2, 2, 16, 64)[0, 0][~mask[0, 0]]
    torch.testing.assert_close(patches[0, 0][~mask[0, 0]], (vis - vis.mean()) / vis.std(correction=0), atol=1e-5, rtol=1e-5)
    before = patches.clone()
    model(torch.where(mask.repeat_interleave(64, dim=-1), x * 100 - 50, x), mask)  # only the masked samples change
    assert torch.equal(seen["x"], before)


def test_visible_statistics_with_nothing_masked_are_the_whole_window():
    x = torch.randn(3, 2, 1024) * 2 + 1
    assert torch.allclose(normalize(x, visible=torch.ones_like(x, dtype=torch.bool)), normalize(x), atol=1e-5)
    hidden = torch.zeros_like(x, dtype=torch.bool)
    hidden[0, 1] = True
    assert torch.equal(normalize(x, visible=~hidden)[0, 1], torch.zeros(1024))  # nothing visible: zeros, never NaN
    assert torch.allclose(normalize(x, visible=~hidden)[1:], normalize(x)[1:], atol=1e-5)


def test_channel_mixer_starts_as_the_identity_and_then_mixes():
    torch.manual_seed(0)
    enc = SSLModel(TINY_MODEL).encoder.eval()
    x = torch.randn(2, 2, 1024)
    torch.testing.assert_close(enc(x), enc.backbone(x))  # a pretrained backbone's tokens pass unchanged at first
    with torch.no_grad():
        for p in enc.mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    y = x.clone()
    y[:, 1] = torch.randn(2, 1024)  # another ECG
    assert not torch.equal(enc(x)[:, 0], enc(y)[:, 0])  # the PPG tokens now depend on the ECG
    none = SSLModel(dict(TINY_MODEL, channel_mixing="none")).encoder.eval()
    assert none.mixer is None and torch.equal(none(x)[:, 0], none(y)[:, 0])


def test_msm_loss_ignores_unmasked_predictions():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 2, 1024, generator=g)
    mask = patch_mask(4, 2, 16, 0.4, "random", g)
    recon = torch.randn(4, 2, 1024, generator=g)
    base = masked_mse(recon, target, mask, 64)
    m = mask.repeat_interleave(64, dim=-1)
    changed = torch.where(m, recon, recon + 100.0)  # only unmasked samples change
    assert torch.equal(masked_mse(changed, target, mask, 64), base)
    assert masked_mse(torch.where(m, recon + 1.0, recon), target, mask, 64) > base
    assert masked_mse(target.clone(), target, mask, 64) == 0


def test_stft_loss_zero_for_identical_and_grows_with_distortion():
    loss = MultiResolutionSTFTLoss([256, 512], [64, 128])
    t = torch.linspace(0, 8, 1024)
    x = torch.stack([torch.sin(2 * np.pi * 1.2 * t), torch.sin(2 * np.pi * 3.0 * t)]).unsqueeze(0)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    values = [loss(x + a * noise, x).item() for a in (0.05, 0.2, 0.5, 1.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values


R1 = dict(TINY_MODEL, context_length=1024, patch_length=64, d_model=192, num_layers=2, ttm={"adaptive_patching_levels": 3}, dropout=0.2)


def make_r1_like_dir(path):
    """A local checkpoint with TTM r1-1024's geometry, saved as the hub model is (ForPrediction)."""
    from tsfm_public.models.tinytimemixer import TinyTimeMixerConfig, TinyTimeMixerForPrediction

    cfg = TinyTimeMixerConfig(context_length=1024, patch_length=64, patch_stride=64, prediction_length=96, d_model=192,
                              num_layers=2, adaptive_patching_levels=3, decoder_num_layers=2, decoder_d_model=128,
                              num_input_channels=1, scaling="std", mode="common_channel", expansion_factor=2)
    torch.manual_seed(5)
    model = TinyTimeMixerForPrediction(cfg)
    model.save_pretrained(path)
    return model


def test_local_pretrained_r1_directory_loads_its_weights(tmp_path):
    ref = make_r1_like_dir(tmp_path / "ttm-r1")
    model = SSLModel(dict(R1, pretrained=str(tmp_path / "ttm-r1")), pretrained=tmp_path / "ttm-r1")
    got = model.backbone.model.state_dict()
    want = {k[len("backbone."):]: v for k, v in ref.state_dict().items() if k.startswith("backbone.")}
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert model.backbone.config.scaling is None and model.backbone.config.num_input_channels == 2
    assert model.backbone(torch.randn(2, 2, 1024)).shape == (2, 2, 16, 192)


def test_local_pretrained_with_other_geometry_is_refused(tmp_path):
    make_r1_like_dir(tmp_path / "ttm-r1")
    with pytest.raises(GeometryError, match="model.d_model: config 48 vs checkpoint 192"):
        SSLModel(dict(R1, d_model=48, ttm={"adaptive_patching_levels": 2}, pretrained=str(tmp_path / "ttm-r1")), pretrained=tmp_path / "ttm-r1")


def test_missing_pretrained_gives_a_helpful_error_and_never_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedLoadError) as e:
        SSLModel(dict(R1, pretrained=str(tmp_path / "nope")), pretrained=tmp_path / "nope")
    assert "HF_HOME" in str(e.value) and "pretrained: null" in str(e.value)


def test_fetching_a_hub_model_offline_without_cache_fails_once_with_the_fix(tmp_path, monkeypatch):
    """The local `pretrained` rule: no network, no cache -> one clear error, nothing published."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    cfg = dict(R1, pretrained="ibm-granite/granite-timeseries-ttm-r1", revision="1024_96_v1")
    dest = backbones.pretrained_dir(cfg, tmp_path / "pretrained")
    assert dest.name == "ibm-granite--granite-timeseries-ttm-r1@1024_96_v1"
    with pytest.raises(PretrainedLoadError, match="1024_96_v1") as e:
        backbones.fetch_pretrained(cfg, dest)
    assert "To fix" in str(e.value) and not dest.exists() and list(dest.parent.iterdir()) == []


def hf_cache(root: Path, repo: str, revision: str, files: Path) -> Path:
    """A Hugging Face hub cache holding `repo` @ `revision` (what `huggingface-cli download` leaves):
    blobs, a snapshot of links to them, and the ref naming the snapshot's commit."""
    store = root / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (store / "refs").mkdir(parents=True)
    (store / "refs" / revision).write_text(commit)
    (store / "snapshots" / commit).mkdir(parents=True)
    (store / "blobs").mkdir()
    for f in files.iterdir():
        blob = store / "blobs" / f"blob-{f.name}"
        blob.write_bytes(f.read_bytes())
        (store / "snapshots" / commit / f.name).symlink_to(blob)
    return root / "hub"


def test_fetching_from_the_hub_cache_publishes_the_checkpoint_offline(tmp_path, monkeypatch):
    """With the model in the Hugging Face cache, the `pretrained` rule copies it offline into
    resources/pretrained/, and the training job loads that folder with its weights."""
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest: no network in tests
    ref = make_r1_like_dir(tmp_path / "src")
    repo = "ibm-granite/granite-timeseries-ttm-r1"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache(tmp_path / "hf", repo, "1024_96_v1", tmp_path / "src")))
    cfg = dict(R1, pretrained=repo, revision="1024_96_v1")
    dest = backbones.pretrained_dir(cfg, tmp_path / "pretrained")
    backbones.fetch_pretrained(cfg, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors"] and not (dest / "config.json").is_symlink()
    model = SSLModel(cfg, pretrained=dest)
    want = {k[len("backbone."):]: v for k, v in ref.state_dict().items() if k.startswith("backbone.")}
    assert all(torch.equal(model.backbone.model.state_dict()[k], v) for k, v in want.items())
    with pytest.raises(PretrainedLoadError, match="model_type 'tinytimemixer'"):  # a checkpoint of another family
        backbones.fetch_pretrained(dict(cfg, backbone="tspulse"), tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with pytest.raises(PretrainedLoadError, match="v9"):  # a revision the cache does not have
        backbones.fetch_pretrained(dict(cfg, revision="v9"), tmp_path / "other")


def test_hub_ids_and_local_paths_are_told_apart(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert backbones.is_hub_id({"pretrained": "ibm-granite/granite-timeseries-ttm-r1"})
    for local in (str(tmp_path / "ckpt"), "/data/ckpt", "./ckpt", "~/ckpt", "models/ttm/r1"):
        assert not backbones.is_hub_id({"pretrained": local}), local
