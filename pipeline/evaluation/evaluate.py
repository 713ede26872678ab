"""Is the encoder worth anything on what VitalDB is used for? (docs/design.md, "Evaluation")

Feature sets, all on the same windows and subjects:
  - `ssl`: the exported SSL-trained encoder (frozen),
  - `ssl_finetuned`: the same encoder fine-tuned with a multi-task head on the window-level labels
    of the train split (pipeline/evaluation/finetune.py; `evaluate.finetune_epochs`),
  - `supervised`: the same architecture from random weights, trained the same way on the labels,
  - `random`: the same architecture with random weights (frozen),
  - `pretrained`: the configured pretrained backbone without our SSL (when model.pretrained is set),
  - `raw`: features a physiologist would use (pipeline/evaluation/features.py: spectral-peak heart rate, pulse
    amplitude, pulse arrival time, moments, band powers).
`evaluate.baselines: false` (ablation runs) probes the SSL encoder and the references only.
With `evaluate.scale_features`, every encoder's embedding carries each window's scale (log std and
mean per channel before normalisation, pipeline.model.embedding.window_scale). References beside
them, for the tasks that name them (`REFERENCE_SETS`): `current_map`, the window's own arterial MAP
(invasive: a value the monitor already shows, not a competitor); and for every classification
`prevalence`, the constant train prevalence (AUROC 0.5; the Brier score to beat).
Every feature set is probed the same way (pipeline/evaluation/probes.py: linear probe, regularisation by
subject-grouped CV) on the train split and scored on one other split (subjects disjoint): `val` for
every choice (ablation runs), `test` once, for the final table; metrics.json names the split in
every block ("n_test" counts the scored split's rows). Per task of `pipeline.evaluation.tasks.TASKS`:
subject-bootstrap 95% intervals and paired differences SSL - each other set on the same draws; for
classifications also AUPRC with the prevalence beside it, Brier score, a calibration curve, AUROC
within cases (mean over scored cases with both classes, and how many), positives counted in
windows, cases and subjects. Window-level tasks also get a label-efficiency curve (the probe trained on
1%, 10% and 100% of the train subjects). Subject-level tasks average each subject's window features.
Embeddings are computed in a stream over the sampled windows (`iter_signals`), so memory follows the
embedding width, not the windows; fine-tuning holds its labelled train windows (at most
`evaluate.finetune_max_windows`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline.channels import CHANNELS
from pipeline.data.cases import read_table
from pipeline.data.labels import COLUMNS, read_labels, window_key
from pipeline.evaluation.features import RAW_FEATURES, raw_features
from pipeline.evaluation.finetune import train_on_labels
from pipeline.evaluation.probes import bootstrap, calibration, fit_probe, predict, subset_subjects, within_case_auroc
from pipeline.evaluation.report import (
    headline_rst,
    plot_calibration,
    plot_effects,
    plot_hypotension,
    plot_label_efficiency,
    plot_roc,
    report_html,
    results_markdown,
)
from pipeline.evaluation.tasks import TASKS, Task
from pipeline.io import write_json, write_text
from pipeline.model import backbones
from pipeline.model.embedding import embed_windows
from pipeline.model.encoder import Encoder, build_mixer
from pipeline.model.export import load_encoder, load_trained
from pipeline.model.losses import masked_mse
from pipeline.model.masking import patch_mask
from pipeline.model.preprocess import normalize

log = logging.getLogger(__name__)
FRACTIONS = (0.01, 0.1, 1.0)
EFFICIENCY_SETS = ("ssl", "random", "raw", "supervised")
CHUNK = 1024
MIN_CLASS_SUBJECTS = 3  # a classification is scored only with this many subjects of each class in train and scored split


# --------------------------------------------------------------------- reconstruction
def linear_interpolation_fill(x: torch.Tensor, mask: torch.Tensor, patch_length: int) -> torch.Tensor:
    """Fill masked patches of x [B, C, L] by linear interpolation between the nearest visible samples."""
    m = mask.repeat_interleave(patch_length, dim=-1).numpy()
    xs = x.numpy().copy()
    t = np.arange(xs.shape[-1])
    for b in range(xs.shape[0]):
        for c in range(xs.shape[1]):
            vis = ~m[b, c]
            xs[b, c, ~vis] = np.interp(t[~vis], t[vis], xs[b, c, vis])
    return torch.from_numpy(xs)


RECONSTRUCTION_TASKS = {  # name: (mask kind, hidden channel or None = the mask's own)
    "random_patches": ("random", None),
    "ppg_from_ecg": ("cross", CHANNELS.index("PPG")),
    "ecg_from_ppg": ("cross", CHANNELS.index("ECG")),
}


@torch.no_grad()
def reconstruction_quality(model, x_raw: np.ndarray, train_cfg: dict, seed: int = 0) -> dict:
    """Masked MSE of the SSL model and of fills that need no training, on the same windows and masks,
    in the loss's scale (each window and channel z-scored over all its samples, so a fill with the
    window's mean, 0, scores about 1 = the channel's variance):
      random_patches  train.mask_ratio of each channel's patches at random; baselines window_mean, linear_interpolation
      ppg_from_ecg    the whole PPG hidden, the ECG visible; baseline window_mean
      ecg_from_ppg    the whole ECG hidden, the PPG visible; baseline window_mean
    """

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = {name: {"model": 0.0, "window_mean": 0.0} | ({"linear_interpolation": 0.0} if kind == "random" else {})
            for name, (kind, _) in RECONSTRUCTION_TASKS.items()}
    n = 0
    for s in range(0, len(x_raw), 256):
        x = torch.from_numpy(np.asarray(x_raw[s : s + 256], dtype=np.float32))
        target = normalize(x)
        for name, (kind, channel) in RECONSTRUCTION_TASKS.items():
            if channel is None:
                mask = patch_mask(len(x), x.shape[1], model.num_patches, train_cfg["mask_ratio"], kind, gen)
            else:
                mask = torch.zeros(len(x), x.shape[1], model.num_patches, dtype=torch.bool)
                mask[:, channel] = True
            fills = {"model": model(x, mask), "window_mean": torch.zeros_like(target)}
            if "linear_interpolation" in sums[name]:
                fills["linear_interpolation"] = linear_interpolation_fill(target, mask, model.patch_length)
            for key, fill in fills.items():
                sums[name][key] += masked_mse(fill, target, mask, model.patch_length).item() * len(x)
        n += len(x)
    out = {name: {k: v / max(n, 1) for k, v in res.items()} for name, res in sums.items()}
    return out | {"windows": n, "mask_ratio": train_cfg["mask_ratio"],
                  "scale": "masked MSE of each window and channel z-scored over all its samples (window_mean scores about 1)"}


# ------------------------------------------------------------------------------ windows
def _read_rows(ds, rows: np.ndarray, out: np.ndarray) -> None:
    """out[i] = ds[rows[i]] for sorted `rows`, reading one HDF5 chunk at a time (never the dataset)."""
    step = ds.chunks[0] if ds.chunks else 1024
    bounds = np.searchsorted(rows, np.arange(0, ds.shape[0] + step, step))
    for c in range(len(bounds) - 1):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        start = c * step
        block = ds[start : min(start + step, ds.shape[0])]
        out[lo:hi] = block[rows[lo:hi] - start]


def load_split(paths: list[str], max_windows: int, seed: int) -> dict:
    """A fixed random subset of at most `max_windows` windows of the shards (the same for every
    feature set): their caseid, subjectid, start_s and hr_bpm, and where they are (`_rows`: per
    shard, the sorted row numbers). `iter_signals` reads their signals."""
    sizes = []
    for p in paths:
        with h5py.File(p, "r") as f:
            sizes.append(f["caseid"].shape[0])
    total = int(sum(sizes))
    if total > max_windows:
        chosen = np.sort(np.random.default_rng(seed).choice(total, max_windows, replace=False))
    else:
        chosen = np.arange(total)
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    meta = {"caseid": [], "subjectid": [], "start_s": [], "hr_bpm": []}
    rows = []
    for i, p in enumerate(paths):
        lo, hi = np.searchsorted(chosen, edges[i]), np.searchsorted(chosen, edges[i + 1])
        if lo == hi:
            continue
        r = chosen[lo:hi] - edges[i]
        rows.append((p, r))
        with h5py.File(p, "r") as f:
            for k in meta:
                out = np.empty(len(r), f[k].dtype)
                _read_rows(f[k], r, out)
                meta[k].append(out)
    split = {k: np.concatenate(v) if v else np.empty(0) for k, v in meta.items()}
    split["_rows"] = rows
    return split


def iter_signals(split: dict, chunk: int = CHUNK, only: np.ndarray | None = None):
    """Signals [k, C, L] of the split's windows in order, `chunk` at a time (never all at once);
    `only`: a boolean mask over the split's windows to read."""
    start = 0
    for path, rows in split["_rows"]:
        keep = np.ones(len(rows), bool) if only is None else only[start : start + len(rows)]
        start += len(rows)
        rows = rows[keep]
        with h5py.File(path, "r") as f:
            ds = f["signals"]
            for s in range(0, len(rows), chunk):
                out = np.empty((len(rows[s : s + chunk]), *ds.shape[1:]), ds.dtype)
                _read_rows(ds, rows[s : s + chunk], out)
                yield out


def window_labels(split: dict, labels: dict) -> dict[str, np.ndarray]:
    """The split's per-window label columns (NaN where the label table has no value) plus hr_bpm."""
    cols = {c: np.full(len(split["caseid"]), np.nan) for c in COLUMNS[2:]}
    for i, (c, s) in enumerate(zip(split["caseid"], split["start_s"])):
        row = labels.get(window_key(c, s))
        if row:
            for k in cols:
                cols[k][i] = row[k]
    cols["hr_bpm"] = np.asarray(split["hr_bpm"], dtype=np.float64)
    return cols


# ----------------------------------------------------------------------------- features
INPUT_SETS = sorted({t.inputs for t in TASKS})
# Reference feature sets: {name: label column}, a value the monitor already gives (tasks name them in `references`)
REFERENCE_SETS = {"current_map": "map_mmHg"}
CONSTANT = "prevalence"  # every classification also gets the constant prediction of the train prevalence (Brier's reference)


def _blank(x: np.ndarray, inputs: tuple[str, ...]) -> np.ndarray:
    """x with the channels outside `inputs` set to zero (an encoder that mixes channels cannot use them)."""
    if len(inputs) == len(CHANNELS):
        return x
    x = x.copy()
    for c, ch in enumerate(CHANNELS):
        if ch not in inputs:
            x[:, c] = 0.0
    return x


def compute_features(encoders: dict, split: dict, fs: float, scale: bool = False, raw: bool = True) -> dict:
    """{(feature set, inputs): [n, F]} in a stream over the split: each encoder's embedding of the
    input channels (`embedding.pool`: mean and spread over their tokens, with `scale` each channel's
    log std and mean before normalisation appended, channels concatenated), and the raw features that use
    only those channels (`raw`: False leaves them out)."""
    parts: dict = {}
    raw_cols = {inputs: [i for i, (_, chs) in enumerate(RAW_FEATURES) if set(chs) <= set(inputs)] for inputs in INPUT_SETS}
    for x in iter_signals(split):
        physiology = raw_features(x, fs) if raw else None
        for inputs in INPUT_SETS:
            if raw:
                parts.setdefault(("raw", inputs), []).append(physiology[:, raw_cols[inputs]])
            xb = _blank(x, inputs)
            chans = [CHANNELS.index(c) for c in inputs]
            for name, enc in encoders.items():
                emb = embed_windows(enc, xb, scale=scale)[:, chans]
                parts.setdefault((name, inputs), []).append(emb.reshape(len(x), -1))
    return {k: np.concatenate(v) for k, v in parts.items()}


def reference_features(wl: dict) -> dict:
    """{(reference set, inputs): [n, F]} of one split (`REFERENCE_SETS`, named by a task's `references`)."""
    return {(name, inputs): np.asarray(wl[column], np.float64)[:, None] for name, column in REFERENCE_SETS.items() for inputs in INPUT_SETS}


def per_subject(x: np.ndarray, subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique subjects, the mean of their rows of x), NaN-aware (NaN where a subject has no value)."""
    uniq, inv = np.unique(subjects, return_inverse=True)
    ok = np.isfinite(x)
    sums, counts = np.zeros((len(uniq), x.shape[1])), np.zeros((len(uniq), x.shape[1]))
    np.add.at(sums, inv, np.where(ok, x, 0.0))
    np.add.at(counts, inv, ok)
    with np.errstate(invalid="ignore"):
        return uniq, sums / counts


# ------------------------------------------------------------------------------- probes
def task_data(task: Task, feats: dict, split: dict, wl: dict, rows: dict, name: str):
    """(x, y, groups, cases) of one task and feature set on one split; rows with an undefined label
    left out (cases = groups for a subject-level task)."""
    x = feats[(name, task.inputs)]
    if task.level == "window":
        y, groups, cases = task.label(wl), np.asarray(split["subjectid"]), np.asarray(split["caseid"])
    else:
        groups, x = per_subject(x, np.asarray(split["subjectid"]))
        first_case = {}
        for c, s in zip(split["caseid"], split["subjectid"]):
            first_case.setdefault(s, int(c))
        y = task.label([rows.get(first_case[s], {}) for s in groups])
        cases = groups
    ok = np.isfinite(y)
    return x[ok], y[ok], groups[ok], cases[ok]


def _usable(task: Task, y_tr, g_tr, y_te, g_te) -> str | None:
    """None, or why the task cannot be probed here."""
    if len(y_tr) < 10 or len(np.unique(g_tr)) < 2:
        return f"too few labelled train rows ({len(y_tr)} from {len(np.unique(g_tr))} subjects)"
    if len(np.unique(g_te)) < 2:
        return f"too few labelled subjects in the scored split ({len(np.unique(g_te))})"
    if task.kind == "classification":
        for part, y, g in (("train", y_tr, g_tr), ("scored", y_te, g_te)):
            counts = [len(np.unique(g[y == c])) for c in (0, 1)]
            if min(counts) < MIN_CLASS_SUBJECTS:
                return (f"too few subjects per class in the {part} split ({counts[1]} with a positive, {counts[0]} with a "
                        f"negative; {MIN_CLASS_SUBJECTS} needed: intervals from resampling subjects say nothing with fewer)")
    return None


def _positives(y: np.ndarray, groups: np.ndarray, cases: np.ndarray) -> dict[str, int]:
    pos = y == 1
    return {"windows": int(pos.sum()), "cases": int(len(np.unique(cases[pos]))), "subjects": int(len(np.unique(groups[pos])))}


def probe_task(task: Task, sets: list[str], feats: dict, train: dict, scored: dict, wl: dict, rows: dict, seed: int,
               split: str = "test", efficiency: bool = True) -> dict:
    """Probe one task with every feature set (and the task's references; the train prevalence for a
    classification), trained on the train split, scored on `scored`, the `split` named in the block."""
    sets = [*sets, *task.references]
    data = {name: (task_data(task, feats["train"], train, wl["train"], rows, name),
                   task_data(task, feats["scored"], scored, wl["scored"], rows, name)) for name in sets}
    (_, y_tr, g_tr, _), (_, y_te, g_te, c_te) = data[sets[0]]  # labels and groups are the same for every set
    out = {"split": split, "level": task.level, "kind": task.kind, "metric": task.metric, "inputs": list(task.inputs),
           "description": task.description, "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
           "n_train_subjects": int(len(np.unique(g_tr))), "n_test_subjects": int(len(np.unique(g_te)))}
    if task.kind == "classification":
        out["positives"] = {"train": _positives(y_tr, g_tr, data[sets[0]][0][3]), split: _positives(y_te, g_te, c_te)}
        out["prevalence"] = {"train": float(y_tr.mean()) if len(y_tr) else float("nan"),
                             split: float(y_te.mean()) if len(y_te) else float("nan")}
    why = _usable(task, y_tr, g_tr, y_te, g_te)
    if why:
        log.warning("task %s skipped: %s", task.name, why)
        return out | {"skipped": why}
    x = {name: (tr[0], te[0]) for name, (tr, te) in data.items()}
    preds = {name: predict(fit_probe(x_tr, y_tr, g_tr, task.kind, seed), x_te, task.kind) for name, (x_tr, x_te) in x.items()}
    if task.kind == "classification":
        preds[CONSTANT] = np.full(len(y_te), y_tr.mean())
    results, paired = bootstrap(y_te, preds, g_te, task.kind, seed)
    out.update(results=results, paired=paired, references=[*task.references, *([CONSTANT] if task.kind == "classification" else [])])
    if task.kind == "classification":
        from sklearn.metrics import roc_curve

        for name, p in preds.items():
            auc, n_cases = within_case_auroc(y_te, p, c_te) if task.level == "window" else (float("nan"), 0)
            results[name].update(auroc_within_case=auc, n_cases_within=n_cases, prevalence=out["prevalence"][split])
        out["calibration"] = {name: calibration(y_te, p) for name, p in preds.items()}
        out["_roc"] = {name: roc_curve(y_te, p)[:2] for name, p in preds.items()}
    if task.level == "window" and efficiency:
        out["label_efficiency"] = label_efficiency(task, {s: x[s] for s in EFFICIENCY_SETS if s in sets},
                                                   y_tr, g_tr, y_te, g_te, seed, results)
    log.info("task %s (%s split): %s", task.name, split, {n: round(r[task.metric], 4) for n, r in results.items()})
    return out


def label_efficiency(task, x: dict, y_tr, g_tr, y_te, g_te, seed, full: dict) -> dict:
    """The main metric with the probe trained on a fraction of the train subjects (same draw for
    every set), with its 95% subject-bootstrap interval on the test split; at 100% it is the main
    probe's (`full`). A fraction that would train on as many subjects as a smaller one is left out
    (with few train subjects, 1% and 10% are both the minimum of 2), so every point is a distinct
    number of subjects. `x`: {set: (train features, test features)}."""
    m = task.metric
    out = {"fractions": [], "n_subjects": [], "results": {name: [] for name in x}, "ci95": {name: [] for name in x}}
    for frac in FRACTIONS:
        mask = subset_subjects(g_tr, y_tr, frac, task.kind, seed)
        n = int(len(np.unique(g_tr[mask]))) if mask is not None else 0
        if mask is None or n in out["n_subjects"]:
            continue
        out["fractions"].append(frac)
        out["n_subjects"].append(n)
        if mask.all():
            scored = full
        else:
            preds = {name: predict(fit_probe(x_tr[mask], y_tr[mask], g_tr[mask], task.kind, seed), x_te, task.kind)
                     for name, (x_tr, x_te) in x.items()}
            scored, _ = bootstrap(y_te, preds, g_te, task.kind, seed)
        for name in x:
            out["results"][name].append(scored[name][m])
            out["ci95"][name].append(scored[name][f"{m}_ci95"])
    return out


# ------------------------------------------------------------------------------ driver
def _architecture(model_cfg: dict, seed: int) -> Encoder:
    """The configured architecture with random weights (the same for the `random` set every run)."""
    torch.manual_seed(seed)
    b = backbones.build(dict(model_cfg, pretrained=None))
    return Encoder(b, build_mixer(model_cfg, b.d_model))


def labelled_training(encoders: dict, encoder_dir, model_cfg: dict, eval_cfg: dict, train: dict, wl: dict, device) -> None:
    """Add `ssl_finetuned` and `supervised` (trained on the window-level labels of the train split)."""
    tasks = [t for t in TASKS if t.level == "window"]
    targets = np.stack([t.label(wl) for t in tasks], axis=1)
    have = np.isfinite(targets).any(axis=1)
    if eval_cfg["finetune_epochs"] == 0 or have.sum() < 10:
        log.warning("fine-tuning and the supervised baseline skipped: %s",
                    "evaluate.finetune_epochs is 0" if eval_cfg["finetune_epochs"] == 0 else f"{int(have.sum())} labelled train windows")
        return
    idx = np.flatnonzero(have)
    if len(idx) > eval_cfg["finetune_max_windows"]:
        idx = np.sort(np.random.default_rng(eval_cfg["seed"]).choice(idx, eval_cfg["finetune_max_windows"], replace=False))
    only = np.zeros(len(have), bool)
    only[idx] = True
    signals = np.concatenate(list(iter_signals(train, only=only)))
    kinds = [t.kind for t in tasks]
    common = dict(epochs=eval_cfg["finetune_epochs"], batch_size=eval_cfg["finetune_batch_size"], seed=eval_cfg["seed"])
    log.info("training on labels: %d windows, tasks %s", len(idx), [t.name for t in tasks])
    encoders["ssl_finetuned"], _ = train_on_labels(load_encoder(encoder_dir).to(device), signals, targets[idx], kinds,
                                                   lr=eval_cfg["finetune_lr"], desc="fine-tuning", **common)
    encoders["supervised"], _ = train_on_labels(_architecture(model_cfg, eval_cfg["seed"] + 1).to(device), signals, targets[idx], kinds,
                                                lr=eval_cfg["supervised_lr"], desc="supervised", **common)


def evaluate(encoder_dir, model_path, train_shards, eval_shards, case_table, label_paths, model_cfg: dict, train_cfg: dict,
             eval_cfg: dict, labels_cfg: dict, fs: float, outdir, pretrained=None, split: str = "test") -> dict:
    """Probe every task of `pipeline.evaluation.tasks.TASKS` with every feature set, trained on the
    train split and scored on `eval_shards`, the `split` named in metrics.json ("val" for every
    choice, "test" once, for the final table: docs/design.md, "The locked test split");
    reconstruction quality; metrics.json, plots and the HTML report. `pretrained`: local directory
    of the configured pretrained weights (adds that feature set)."""

    outdir = Path(outdir)
    seed = eval_cfg["seed"]
    train = load_split(train_shards, eval_cfg["max_windows"], seed)
    scored = load_split(eval_shards, eval_cfg["max_windows"], seed + 1)
    if len(train["caseid"]) == 0 or len(scored["caseid"]) == 0:
        raise ValueError(f"evaluation needs windows in both the train and the {split} split (see results/<source>/windows/manifest.json)")
    log.info("evaluating on %d train and %d %s windows (%d / %d subjects)", len(train["caseid"]), len(scored["caseid"]), split,
             len(np.unique(train["subjectid"])), len(np.unique(scored["subjectid"])))
    wanted = {window_key(c, t) for part in (train, scored) for c, t in zip(part["caseid"], part["start_s"])}
    labels = read_labels(label_paths, wanted)  # the sampled windows' rows only
    wl = {"train": window_labels(train, labels), "scored": window_labels(scored, labels)}
    rows = {r["caseid"]: r for r in read_table(case_table)}

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    log.info("evaluation device: %s", device)
    encoders = {"ssl": load_encoder(encoder_dir).to(device)}
    labelled_training(encoders, encoder_dir, model_cfg, eval_cfg, train, wl["train"], device)
    baselines = eval_cfg["baselines"]
    if baselines:
        encoders["random"] = _architecture(model_cfg, seed).to(device)
    if pretrained is not None:
        encoders["pretrained"] = Encoder(backbones.build(model_cfg, pretrained)).to(device)
    sets = list(encoders) + (["raw"] if baselines else [])
    scale = eval_cfg["scale_features"]
    feats = {part: compute_features(encoders, data, fs, scale, raw=baselines) | reference_features(wl[part])
             for part, data in (("train", train), ("scored", scored))}

    results = {"split": split, "model": str(model_path), "feature_sets": sets, "scale_features": scale, "tasks": {}, "labels": labels_cfg,
               "n_windows": {"train": int(len(train["caseid"])), split: int(len(scored["caseid"]))}}
    for task in TASKS:
        results["tasks"][task.name] = probe_task(task, sets, feats, train, scored, wl, rows, seed, split, eval_cfg["label_efficiency"])
    signals = np.concatenate(list(iter_signals(scored, only=np.arange(len(scored["caseid"])) < eval_cfg["reconstruction_windows"])))
    results["reconstruction"] = reconstruction_quality(load_trained(model_path), signals, train_cfg, seed) | {"split": split}
    rocs = {t: r.pop("_roc") for t, r in results["tasks"].items() if "_roc" in r}
    write_json(outdir / "metrics.json", results)

    plot_effects(results, outdir / "probes.png")
    plot_roc(rocs, results, outdir / "roc.png")
    plot_calibration(results, outdir / "calibration.png")
    plot_hypotension(results, outdir / "hypotension.png")
    plot_label_efficiency(results, outdir / "label_efficiency.png")
    write_text(outdir / "probes.html", report_html(results))
    write_text(outdir / "headline.rst", headline_rst(results))
    # the export's model card with these results: the card to publish beside the weights
    write_text(outdir / "model_card.md", (Path(encoder_dir) / "README.md").read_text() + "\n" + results_markdown(results))
    return results
