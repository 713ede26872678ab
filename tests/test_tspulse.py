"""The TSPulse backbone (pipeline/model/backbones/tspulse.py): token layout, one normalization and one
masking, export round trip, checkpoint loading, config rules, and that it learns."""

import copy
import json

import pytest
import torch

from pipeline.config import ConfigError, load_config, validate_config
from pipeline.evaluation.checks import ALL_CHECKS
from pipeline.model import backbones
from pipeline.model.backbones import GeometryError, PretrainedLoadError, tspulse
from pipeline.model.encoder import SSLModel
from pipeline.model.losses import masked_mse
from pipeline.model.masking import patch_mask
from pipeline.model.preprocess import normalize
from tests.conftest import REPO

DEMO = REPO / "config" / "tspulse-demo.yaml"
TINY = dict(backbone="tspulse", pretrained=None, revision=None, context_length=1024, patch_length=64, d_model=16,
            num_layers=1, expansion_factor=2, dropout=0.1, ttm={"adaptive_patching_levels": 1}, tspulse={"patch_register_tokens": 3},
            channel_mixing="mixer")
P, R = 16, 3


def windows(batch: int, seed: int = 0) -> torch.Tensor:
    """Normalized random two-channel windows: a random sinusoid plus noise per window and channel."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(1024) / 125.0
    f = 0.5 + 4 * torch.rand(batch, 2, 1, generator=g)
    phase = 6.3 * torch.rand(batch, 2, 1, generator=g)
    return normalize(torch.sin(2 * torch.pi * f * t + phase) + 0.1 * torch.randn(batch, 2, 1024, generator=g))


def reconstruction_checkpoint(path, scaling="revin", affine=(1.0, 0.0), **geometry):
    """A checkpoint saved the way the hub TSPulse is (TSPulseForReconstruction, encoder = backbone.*),
    with its own scaling and masking switched on."""
    from tsfm_public.models.tspulse import TSPulseConfig, TSPulseForReconstruction

    g = dict(context_length=1024, patch_length=64, d_model=16, num_layers=1, expansion_factor=2, patch_register_tokens=R)
    g.update(geometry)
    cfg = TSPulseConfig(patch_stride=g["patch_length"], num_input_channels=1, fuse_fft=True, scaling=scaling, mask_ratio=0.3,
                        mask_type="hybrid", mask_block_length=g["patch_length"], fft_mask_ratio=0.2, decoder_d_model=g["d_model"],
                        decoder_num_layers=1, **g)
    torch.manual_seed(5)
    model = TSPulseForReconstruction(cfg)
    if scaling == "revin":
        with torch.no_grad():
            model.backbone.scaler.affine_weight.fill_(affine[0])
            model.backbone.scaler.affine_bias.fill_(affine[1])
    model.save_pretrained(path)
    return model.eval()


def test_tokens_are_time_patches_then_fft_then_registers_and_ssl_reconstructs():
    b = backbones.build(TINY)
    assert b.model_type == "tspulse" and (b.num_patches, b.num_tokens, b.d_model) == (P, 2 * P + R, 16)
    x = windows(3)
    assert b(x).shape == (3, 2, 2 * P + R, 16)
    model = SSLModel(TINY)
    mask = patch_mask(3, 2, P, 0.4, "random", torch.Generator().manual_seed(0))
    assert model(x, mask).shape == (3, 2, 1024)
    with pytest.raises(ValueError, match="context_length"):
        b(torch.randn(3, 2, 1024 + 64))


def test_the_model_neither_rescales_nor_masks_what_the_pipeline_gives_it():
    model = SSLModel(TINY)
    enc = model.backbone.model
    assert type(enc.scaler).__name__ == "TSPulseNOPScaler" and enc.time_masker is None and enc.fft_masker is None
    assert not hasattr(enc, "groundtruth_scaler_for_fft")
    seen = {}
    enc.time_encoding.patcher.register_forward_hook(lambda mod, inputs, out: seen.__setitem__("time", inputs[0].detach()))
    enc.fft_encoding.patcher.register_forward_hook(lambda mod, inputs, out: seen.__setitem__("fft", inputs[0].detach()))
    x = windows(2)
    mask = patch_mask(2, 2, P, 0.4, "random", torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.mask_token.copy_(torch.randn(2, 64))
    model(x, mask)
    given = model.encoder_input(x, mask).detach()  # visible samples z-scored by their own statistics, mask tokens
    patches = seen["time"]  # [B, C, P, patch_length]: exactly what the pipeline gave, untouched
    assert torch.equal(patches, given.view(2, 2, P, 64))
    assert torch.equal(patches[:, 0][mask[:, 0]], model.mask_token.detach()[0].expand(int(mask[:, 0].sum()), 64))
    spectrum = torch.fft.rfft(given, dim=-1)[..., :-1]  # the FFT of the masked window as given
    parts = [p / (p.abs().amax(-1, keepdim=True) + 1e-5) for p in (spectrum.real, spectrum.imag)]
    assert torch.allclose(seen["fft"], torch.cat(parts, -1).view(2, 2, P, 64), atol=1e-5)

    b = model.backbone.eval()
    y = 5 * x + 3  # a z-scoring model would give the same output; this one must see 5x + 3 itself
    out_x, out_y = b(x), b(y)
    assert torch.equal(seen["time"], y.view(2, 2, P, 64))
    assert not torch.allclose(out_x, out_y, atol=1e-3)


@pytest.mark.parametrize("train", [False, True])
def test_forward_is_deterministic(train):
    b = backbones.build(dict(TINY, dropout=0.0 if train else 0.1)).train(train)
    x = windows(4)
    assert torch.equal(b(x), b(x))


def test_export_round_trip(tmp_path):
    from tsfm_public.models.tspulse import TSPulseModel

    b = backbones.build(TINY).eval()
    b.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "tspulse"
    loaded = backbones.load_export(tmp_path).eval()
    assert isinstance(loaded, tspulse.TSPulseBackbone) and loaded.num_tokens == b.num_tokens
    x = windows(3)
    assert torch.equal(loaded(x), b(x))
    plain = TSPulseModel.from_pretrained(tmp_path).eval()  # the granite-tsfm class reads it as well
    assert torch.equal(plain(x.transpose(1, 2)).last_hidden_state, b(x))


def load(path):
    return backbones.build(dict(TINY, pretrained=str(path)), path).eval()


def test_checkpoint_encoder_loads_faithfully_without_its_scaler_and_masker(tmp_path):
    ref = reconstruction_checkpoint(tmp_path / "ckpt", affine=(1.7, 0.0))
    b = load(tmp_path / "ckpt")
    cfg = b.model.config
    assert (cfg.scaling, cfg.mask_ratio, cfg.fft_mask_ratio, cfg.num_input_channels) == (None, None, None, 2)
    assert cfg.dropout == TINY["dropout"]
    got = b.model.state_dict()
    want = {k[len("backbone."):]: v for k, v in ref.state_dict().items() if k.startswith("backbone.")}
    assert set(want) - set(got) == {"scaler.affine_weight", "scaler.affine_bias", "time_masker.mask_token"}
    assert torch.equal(got["encoder_block.mixers.0.patch_mixer.mlp.fc1.weight"], want["encoder_block.mixers.0.patch_mixer.mlp.fc1.weight"])
    x = windows(3)  # already z-scored: the checkpoint's RevIN (a=1.7 folded into the patcher) is then the identity
    want_out = ref.backbone(x.transpose(1, 2), enable_masking=False).last_hidden_state
    assert torch.allclose(b(x), want_out, atol=1e-4)

    # A RevIN bias b is folded exactly into the time tokens (it shifts only the FFT's DC bin otherwise).
    ref, b = reconstruction_checkpoint(tmp_path / "bias", affine=(1.7, 0.3)), load(tmp_path / "bias")
    seen = {}
    b.model.time_encoding.register_forward_hook(lambda mod, inputs, out: seen.__setitem__("got", out))
    ref.backbone.time_encoding.register_forward_hook(lambda mod, inputs, out: seen.__setitem__("want", out))
    b(x), ref.backbone(x.transpose(1, 2), enable_masking=False)
    assert torch.allclose(seen["got"], seen["want"], atol=1e-5)


def test_checkpoint_with_other_geometry_or_none_is_refused(tmp_path):
    reconstruction_checkpoint(tmp_path / "p32", patch_length=32)
    with pytest.raises(GeometryError, match="model.patch_length: config 64 vs checkpoint 32"):
        load(tmp_path / "p32")
    (tmp_path / "empty").mkdir()
    for missing in (tmp_path / "nope", tmp_path / "empty"):
        with pytest.raises(PretrainedLoadError, match="To fix"):
            load(missing)
    (tmp_path / "ttm").mkdir()
    (tmp_path / "ttm" / "config.json").write_text(json.dumps({"model_type": "tinytimemixer"}))
    with pytest.raises(PretrainedLoadError, match="model_type 'tinytimemixer'"):
        load(tmp_path / "ttm")


def test_checkpoint_lacking_an_encoder_weight_is_never_random(tmp_path):
    from safetensors.torch import load_file, save_file

    reconstruction_checkpoint(tmp_path / "ckpt")
    state = load_file(tmp_path / "ckpt" / "model.safetensors")
    del state["backbone.time_encoding.patcher.weight"]
    save_file(state, tmp_path / "ckpt" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PretrainedLoadError, match="time_encoding.patcher.weight"):
        load(tmp_path / "ckpt")


def test_demo_config_validates_and_tspulse_keys_are_checked():
    config = load_config(DEMO, ALL_CHECKS)
    assert config["model"]["backbone"] == "tspulse"
    model = SSLModel(config["model"])
    assert model.backbone.num_patches == config["window"]["length"] // config["model"]["patch_length"]
    bad_keys = [({"mask_ratio": 0.3}, r"model\.tspulse: .*'mask_ratio'"),
                ({"patch_register_tokens": -1}, r"model\.tspulse\.patch_register_tokens")]
    for edit, key in bad_keys:
        bad = copy.deepcopy(config)
        bad["model"]["tspulse"] = edit
        with pytest.raises(ConfigError, match=key):
            validate_config(bad, ALL_CHECKS)
    with pytest.raises(ConfigError, match=r"model\.patch_length"):
        tspulse.check_config(dict(config["model"], context_length=960, patch_length=64))  # 15 patches
    with pytest.raises(ConfigError, match=r"model\.context_length"):
        tspulse.check_config(dict(config["model"], context_length=1023, patch_length=341))


def test_a_few_steps_lower_the_masked_mse():
    torch.manual_seed(0)
    model = SSLModel(dict(TINY, dropout=0.0))
    x = windows(16, seed=3)
    mask = patch_mask(16, 2, P, 0.4, "random", torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # plain SGD moves a ~1.0 masked MSE by 1-2% in 30 steps
    losses = []
    for _ in range(30):
        loss = masked_mse(model(x, mask), x, mask, 64)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses  # 1.02 -> about 0.4-0.6
