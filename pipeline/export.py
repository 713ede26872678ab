"""Export the pretrained encoder so others can load it:

    from tsfm_public.models.tinytimemixer import TinyTimeMixerModel
    encoder = TinyTimeMixerModel.from_pretrained("results/export/encoder")

plus `preprocessing.json` (what a window must look like) and a model card. `embed()` turns raw
windows into embeddings with exactly the training preprocessing.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline import __version__
from pipeline.io import read_json
from pipeline.model import SSLModel
from pipeline.preprocess import DESCRIPTION, normalize


def load_trained(model_path: str | Path) -> SSLModel:
    """The SSL model of a `model.pt` written by pretraining (its own config wins)."""
    ckpt = torch.load(model_path, map_location="cpu", weights_only=False)
    cfg = dict(ckpt["model_cfg"], pretrained=None)  # architecture from the checkpoint; weights below
    model = SSLModel(cfg)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def export_encoder(model_path, manifest_path, metrics_path, summary_path, signals_cfg: dict, window_cfg: dict, out_dir) -> None:
    ckpt = torch.load(model_path, map_location="cpu", weights_only=False)
    model = load_trained(model_path)
    manifest = read_json(manifest_path)
    summary = read_json(summary_path)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.encoder.save_pretrained(tmp, safe_serialization=True)
        pre = {
            "fs": signals_cfg["target_fs"], "window": window_cfg["length"], "channels": ["PPG", "ECG"],
            "channel_order": "input [batch, time, channel]: channel 0 = PPG, channel 1 = ECG",
            "tracks": [signals_cfg["ppg_track"], signals_cfg["ecg_track"]],
            "resampling": "scipy.signal.resample_poly from the native rate (500 Hz) to fs, zero-phase",
            "normalization": DESCRIPTION, "patch_length": ckpt["model_cfg"]["patch_length"],
            "embedding": "last_hidden_state [batch, channel, patch, d_model]; pipeline.export.embed mean-pools patches",
            "pipeline_version": __version__,
        }
        (tmp / "preprocessing.json").write_text(json.dumps(pre, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(ckpt, manifest, summary, pre, Path(metrics_path)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def model_card(ckpt, manifest, summary, pre, metrics_path: Path) -> str:
    m, t = ckpt["model_cfg"], ckpt["train_cfg"]
    totals = manifest["totals"]
    init = f"{m['pretrained']} @ {m['revision']}" if m["pretrained"] else "random initialisation"
    return f"""# vitalssl PPG/ECG encoder (TinyTimeMixer backbone)

Self-supervised encoder for {pre['window']}-sample ({pre['window'] / pre['fs']:.3f} s) windows of PPG and ECG at
{pre['fs']} Hz, trained by masked-patch reconstruction ({t['mask_ratio']:.0%} of patches, {t['mask_type']} masks;
loss = {t['msm_weight']} x masked MSE + {t['stft_weight']} x multi-resolution STFT, n_fft {t['stft_n_fft']}).

## Data
- cases: {totals['cases_used']} used of {totals['cases']} in the case table; windows kept {totals['kept']} of {totals['cut']} cut
  (rejected per quality rule: {json.dumps(totals['rejected'])})
- windows per split: {json.dumps(totals['kept_per_split'])}; split by subject (no subject in two splits)

## Training
- architecture: context {m['context_length']}, patch {m['patch_length']}, d_model {m['d_model']}, {m['num_layers']} layers,
  {m['adaptive_patching_levels']} adaptive patching levels, channel-independent; initialised from {init}
- optimizer AdamW lr {t['lr']}, weight decay {t['weight_decay']}, batch {t['batch_size']}, {t['epochs']} epochs,
  {summary['total_steps']} steps ({summary['world_size']} process(es) on {summary['device']})
- best validation loss {ckpt['val_loss']:.4f} at epoch {ckpt['epoch']} (step {ckpt['step']}); per-epoch losses in
  `{metrics_path.name}` next to the training outputs

## How to load
```python
from tsfm_public.models.tinytimemixer import TinyTimeMixerModel
encoder = TinyTimeMixerModel.from_pretrained("path/to/encoder")
# x: float32 [batch, {pre['window']}, 2] = (PPG, ECG) at {pre['fs']} Hz, each window and channel z-scored:
#    (x - mean) / (std + 1e-6), see preprocessing.json
hidden = encoder(past_values=x).last_hidden_state  # [batch, 2, {m['context_length'] // m['patch_length']}, {m['d_model']}]
```
or `pipeline.export.embed(raw_windows, "path/to/encoder")`, which applies the normalization itself.
"""


@functools.lru_cache(maxsize=4)
def _load_encoder(encoder_dir: str):
    from tsfm_public.models.tinytimemixer import TinyTimeMixerModel

    return TinyTimeMixerModel.from_pretrained(encoder_dir).eval()


@torch.no_grad()
def embed(signals: np.ndarray, encoder_dir: str | Path, batch_size: int = 256) -> np.ndarray:
    """Embeddings [N, 2, d_model] (mean over patches) of raw windows signals [N, 2, L]."""
    encoder = _load_encoder(str(Path(encoder_dir).resolve()))
    signals = np.asarray(signals)
    if signals.ndim != 3 or signals.shape[1] != 2 or signals.shape[2] != encoder.config.context_length:
        raise ValueError(f"signals must be [N, 2, {encoder.config.context_length}], got {list(signals.shape)}")
    out = []
    for s in range(0, len(signals), batch_size):
        x = torch.from_numpy(normalize(signals[s : s + batch_size])).transpose(1, 2)
        out.append(encoder(past_values=x).last_hidden_state.mean(dim=2).numpy())
    return np.concatenate(out) if out else np.empty((0, 2, encoder.config.d_model), np.float32)
