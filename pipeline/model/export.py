"""Export the pretrained encoder so others can load it: the backbone's `config.json` +
`model.safetensors` (loadable by its granite-tsfm class, named in the model card, or by
`pipeline.model.backbones.load_export`), with `model.channel_mixing: mixer` the channel mixer's
`channel_mixer.json` + `channel_mixer.safetensors`, `preprocessing.json` (what a window must look
like) and a model card. The encoder = backbone + mixer (`load_encoder`) is what the embeddings come
from; the backbone alone gives channel-independent tokens. `embed()` turns raw windows into
embeddings with exactly the embedding-time preprocessing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import yaml

from pipeline import __version__
from pipeline.channels import CHANNELS
from pipeline.io import atomic_dir, read_json
from pipeline.model import backbones
from pipeline.model.checkpoint import load
from pipeline.model.embedding import embed_windows
from pipeline.model.encoder import MIXER_CONFIG, MIXER_WEIGHTS, Encoder, SSLModel
from pipeline.model.masking import KINDS
from pipeline.model.preprocess import DESCRIPTION, EPS


def load_trained(model_path: str | Path, ckpt: dict | None = None) -> SSLModel:
    """The SSL model of a `model.pt` written by pretraining: the backbone rebuilt from the config it
    was saved with (a pretrained checkpoint's settings included), then its weights."""
    ckpt = ckpt or load(model_path)
    model = SSLModel(ckpt["model_cfg"], backbone=backbones.from_config(ckpt["backbone_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def export_encoder(model_path, manifest_path, metrics_path, summary_path, params: dict, out_dir) -> None:
    """params: `tracks` (channel order), `signals`, `window`, and `source` (the name of the data
    source the encoder was trained on, for the model card; "unknown" when not given)."""
    ckpt = load(model_path)
    model = load_trained(model_path, ckpt)
    manifest = read_json(manifest_path)
    summary = read_json(summary_path)
    with atomic_dir(out_dir) as tmp:
        model.encoder.save(tmp)
        b = model.encoder
        pre = {
            "fs": params["signals"]["target_fs"], "window": params["window"]["length"], "channels": list(CHANNELS),
            "channel_order": "input [batch, channel, time] to the backbone wrapper; channel 0 = PPG, channel 1 = ECG",
            "tracks": list(params["tracks"]),
            "resampling": "scipy.signal.resample_poly from the native rate to fs, zero-phase; a copy when already at fs",
            "normalization": DESCRIPTION, "patch_length": b.patch_length, "backbone": ckpt["model_cfg"]["backbone"],
            "model_type": b.backbone.model_type, "channel_mixing": b.channel_mixing,
            "embedding": f"tokens [batch, channel, {b.num_tokens}, {b.d_model}] (first {b.num_patches} = time patches) of "
                         + ("the backbone, then the channel mixer (" + MIXER_CONFIG + ", " + MIXER_WEIGHTS + "; "
                            "pipeline.model.export.load_encoder loads both)" if b.mixer is not None else "the backbone")
                         + "; pipeline.model.export.embed pools them per channel: mean, then standard deviation over the tokens -> [batch, channel, 2 d_model]",
            "scale": "pipeline.model.export.embed(..., scale=True), the default, appends per channel the window's scale before "
                     f"normalization: log(std + {EPS:g}) and mean of the raw samples (input units) -> [batch, channel, 2 d_model + 2]; "
                     "the z-scoring removes amplitude, which blood pressure needs (pipeline.model.embedding, \"Scale\")",
            "pipeline_version": __version__,
        }
        (tmp / "preprocessing.json").write_text(json.dumps(pre, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(ckpt, manifest, summary, pre, Path(metrics_path), params.get("source", "unknown")))


def _subjects(manifest: dict) -> dict[str, int]:
    """Distinct subjects with kept windows, per split."""
    out: dict[str, set] = {}
    for case in manifest.get("cases", {}).values():
        if case.get("kept", 0) > 0:
            out.setdefault(case["split"], set()).add(case.get("subjectid"))
    return {k: len(v) for k, v in sorted(out.items())}


def front_matter(ckpt: dict, pre: dict, source: str) -> str:
    """The card's YAML front matter, as model hubs read it (license, tags, datasets, base model,
    metrics). The code is MIT (LICENSE); the weights carry the terms of use of the data they were
    trained on, so their license is `other`, named after the source."""
    m = ckpt["model_cfg"]
    meta = {
        "license": "other",
        "license_name": f"terms of use of the {source} data",
        "library_name": "granite-tsfm",
        "pipeline_tag": "feature-extraction",
        "tags": ["time-series", "biosignals", "ppg", "ecg", "self-supervised", "masked-reconstruction", pre["model_type"], "vitalssl"],
        "datasets": [source],
        "metrics": ["masked_mse"],
    }
    if m["pretrained"]:
        meta["base_model"] = m["pretrained"]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n"


def model_card(ckpt, manifest, summary, pre, metrics_path: Path, source: str = "unknown") -> str:
    m, t = ckpt["model_cfg"], ckpt["train_cfg"]
    totals = manifest["totals"]
    init = f"{m['pretrained']} @ {m['revision']}" if m["pretrained"] else "random initialisation"
    mix = ", ".join(f"{t['mask_mix'][k]:.0%} {k}" for k in KINDS if t["mask_mix"].get(k, 0) > 0)
    mixing = ("then a channel-mixing block (`channel_mixer.*`) that lets each channel's tokens use the other channel's"
              if m["channel_mixing"] == "mixer" else "channel-independent (no channel mixing: a PPG embedding ignores the ECG)")
    mixer_note = " (without the channel mixer, whose weights are in `channel_mixer.safetensors`)" if m["channel_mixing"] == "mixer" else ""
    return front_matter(ckpt, pre, source) + f"""# vitalssl PPG/ECG encoder ({m['backbone']} backbone, model_type `{pre['model_type']}`)

Self-supervised encoder for {pre['window']}-sample ({pre['window'] / pre['fs']:.3f} s) windows of PPG and ECG at
{pre['fs']} Hz, trained by masked-patch reconstruction (masks per window: {mix}; random and block masks hide
{t['mask_ratio']:.0%} of each channel's patches, a cross mask one whole channel; loss = {t['msm_weight']} x masked MSE +
{t['stft_weight']} x multi-resolution STFT, n_fft {t['stft_n_fft']}).

## Data
- source: `{source}`; the weights carry the terms of use of that data (the code is MIT, LICENSE)
- cases: {totals['cases_used']} used of {totals['cases']} in the case table; windows kept {totals['kept']} of {totals['cut']} cut
  (rejected per quality rule: {json.dumps(totals['rejected'])})
- windows per split: {json.dumps(totals['kept_per_split'])}; subjects with windows per split:
  {json.dumps(_subjects(manifest))}; split by subject (no subject in two splits)

## Training
- architecture: {m['backbone']}, context {m['context_length']}, patch {m['patch_length']}, d_model {m['d_model']},
  {m['num_layers']} layers; initialised from {init}; {mixing}
- optimizer AdamW lr {t['lr']}, weight decay {t['weight_decay']}, batch {t['batch_size']}, {t['epochs']} epochs,
  {summary['total_steps']} steps ({summary['world_size']} process(es) on {summary['device']})
- best validation loss {ckpt['val_loss']:.4f} at epoch {ckpt['epoch']} (step {ckpt['step']}); per-epoch losses in
  `{metrics_path.name}` next to the training outputs

## How to load
```python
from pipeline.model.export import embed, load_encoder
encoder = load_encoder("path/to/encoder")  # x: float32 [batch, 2, {pre['window']}] = (PPG, ECG) at {pre['fs']} Hz,
hidden = encoder(x)                        # each window and channel z-scored (preprocessing.json)
# hidden: {pre['embedding']}
vectors = embed(raw_windows, "path/to/encoder")  # normalizes itself -> [N, 2, {2 * m['d_model'] + 2}]:
# per channel {2 * m['d_model']} token statistics (mean, std over tokens), then log(std) and mean of the raw window
# (preprocessing.json "scale"; scale=False leaves them out -> [N, 2, {2 * m['d_model']}])
```
`config.json` + `model.safetensors` are the backbone alone: they also load with `pipeline.model.backbones.load_export`
or granite-tsfm's own class for model_type `{pre['model_type']}`{mixer_note}.

## Results
Pretraining: best validation loss above. What the encoder is worth on downstream tasks (probes
against baselines, with intervals) is measured by the evaluation after this export: `eval/model_card.md`
(beside this folder's `export/`) is this card with those results, the one to publish with the weights.

## Intended use and limitations
- Intended use: research on PPG/ECG representations (probing, fine-tuning, retrieval) from
  {pre['window'] / pre['fs']:.3f} s windows resampled to {pre['fs']} Hz exactly as `preprocessing.json` says.
- Not a medical device and not validated for clinical decisions: no claim of diagnostic accuracy.
- The training population is the source's (above); other devices, sites, rates or populations may
  shift the embeddings. Each window is z-scored per channel, so absolute amplitude is not in the
  encoder's input; `embed` appends it as the window's scale (`preprocessing.json`), whose units
  depend on the recording device (PPG units are not standardised across monitors).
"""


def load_encoder(encoder_dir: str | Path) -> Encoder:
    """The exported encoder: the backbone, then the channel mixer when the export has one."""
    return Encoder.load(encoder_dir)


@functools.lru_cache(maxsize=4)
def _load_encoder(encoder_dir: str) -> Encoder:
    return load_encoder(encoder_dir)


def embed(signals: np.ndarray, encoder_dir: str | Path, batch_size: int = 256, scale: bool = True) -> np.ndarray:
    """Embeddings [N, 2, 2 d_model + 2] of raw windows signals [N, 2, L]: per channel the mean and
    standard deviation over its tokens (pipeline.model.embedding.pool), then the window's scale
    (log std and mean before normalization, pipeline.model.embedding.window_scale); scale=False:
    [N, 2, 2 d_model], the token statistics only."""
    encoder = _load_encoder(str(Path(encoder_dir).resolve()))
    signals = np.asarray(signals)
    if signals.ndim != 3 or signals.shape[1] != len(CHANNELS) or signals.shape[2] != encoder.context_length:
        raise ValueError(f"signals must be [N, {len(CHANNELS)}, {encoder.context_length}], got {list(signals.shape)}")
    return embed_windows(encoder, signals, batch_size, scale=scale)
