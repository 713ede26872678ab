"""Does self-supervision help? Linear probes on frozen embeddings, and reconstruction quality.

Probes (scikit-learn ridge / logistic regression, features standardized, fit on the train split,
scored on the test split) compare, on the same windows:
  - `ssl`: the exported SSL-trained encoder,
  - `random`: the same architecture with random weights,
  - `raw`: simple raw-signal features (moments, amplitude, spectral band powers),
  - `pretrained`: the configured pretrained backbone without our SSL (when model.pretrained is set).
Tasks are the rows of `pipeline.tasks.TASKS`; a task without enough labelled windows is skipped
(logged), e.g. age and sex on the demo, whose case table has none.
Confidence intervals: 95% percentile intervals from a bootstrap over test subjects.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline import backbones
from pipeline.channels import CHANNELS
from pipeline.embedding import embed_windows
from pipeline.features import raw_features
from pipeline.io import write_json, write_text
from pipeline.masking import patch_mask
from pipeline.model import Encoder, build_mixer
from pipeline.plots import pyplot, save_figure
from pipeline.preprocess import normalize
from pipeline.tasks import TASKS, Task

log = logging.getLogger(__name__)
N_BOOT = 300


# ----------------------------------------------------------------------------- probes
def _bootstrap(metric, y, p, groups, rng) -> tuple[float, float]:
    subjects = np.unique(groups)
    idx_by = {s: np.flatnonzero(groups == s) for s in subjects}
    vals = []
    for _ in range(N_BOOT):
        pick = np.concatenate([idx_by[s] for s in rng.choice(subjects, len(subjects), replace=True)])
        if len(np.unique(y[pick])) < 2:  # one class (or one label value) only: the metric is undefined
            continue
        vals.append(metric(y[pick], p[pick]))
    if not vals:
        return float("nan"), float("nan")
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def probe(train_x, train_y, test_x, test_y, test_groups, kind: str, seed: int = 0) -> dict:
    """Fit a linear probe on train, score on test, with a subject-bootstrap 95% CI."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    if kind == "regression":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
        model.fit(train_x, train_y)
        pred = model.predict(test_x)
        res = {"r2": float(r2_score(test_y, pred)), "mae": float(mean_absolute_error(test_y, pred))}
        res["r2_ci95"] = list(_bootstrap(r2_score, test_y, pred, test_groups, rng))
        res["mae_ci95"] = list(_bootstrap(mean_absolute_error, test_y, pred, test_groups, rng))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, max_iter=2000, scoring="neg_log_loss"))
        model.fit(train_x, train_y)
        pred = model.predict_proba(test_x)[:, 1]
        res = {"auroc": float(roc_auc_score(test_y, pred))}
        res["auroc_ci95"] = list(_bootstrap(roc_auc_score, test_y, pred, test_groups, rng))
    res.update(n_train=int(len(train_y)), n_test=int(len(test_y)), test_subjects=int(len(np.unique(test_groups))))
    return res


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
    from pipeline.losses import masked_mse

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


# ------------------------------------------------------------------------------ driver
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
    """A fixed random subset of at most `max_windows` windows of the shards, the same for every
    feature set. Only the chosen windows are read: memory grows with `max_windows`, not with the
    number of windows in the shards."""
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
    data = None
    for i, p in enumerate(paths):
        lo, hi = np.searchsorted(chosen, edges[i]), np.searchsorted(chosen, edges[i + 1])
        if lo == hi:
            continue
        rows = chosen[lo:hi] - edges[i]
        with h5py.File(p, "r") as f:
            if data is None:
                data = {k: np.empty((len(chosen), *f[k].shape[1:]), f[k].dtype) for k in ("signals", "caseid", "subjectid")}
            for k in data:
                _read_rows(f[k], rows, data[k][lo:hi])
    return data or {"signals": np.empty((0, 2, 0), np.float32), "caseid": np.empty(0, np.int32), "subjectid": np.empty(0, np.int64)}


def _features(encoders: dict, data: dict, fs: float) -> dict:
    """{(feature set, channel): [n, F]} for every encoder and the raw features."""
    out = {}
    for name, enc in encoders.items():
        emb = embed_windows(enc, data["signals"])
        for c, ch in enumerate(CHANNELS):
            out[(name, ch)] = emb[:, c]
    raw = raw_features(data["signals"], fs).reshape(len(data["signals"]), len(CHANNELS), -1)
    for c, ch in enumerate(CHANNELS):
        out[("raw", ch)] = raw[:, c]
    return out


def _labels(task: Task, data: dict, rows: dict, fs: float) -> np.ndarray:
    if task.level == "window":
        return task.label(data["signals"], fs)
    return task.label([rows.get(int(c), {}) for c in data["caseid"]])


def evaluate(encoder_dir, model_path, train_shards, test_shards, case_table, model_cfg: dict, train_cfg: dict,
             eval_cfg: dict, fs: float, outdir, pretrained=None) -> dict:
    """Probe every task of `pipeline.tasks.TASKS` with every feature set; reconstruction quality.
    `pretrained`: local directory of the configured pretrained weights (adds that feature set)."""
    from pipeline.cases import read_table
    from pipeline.export import load_encoder, load_trained

    outdir = Path(outdir)
    seed = eval_cfg["seed"]
    train = load_split(train_shards, eval_cfg["max_windows"], seed)
    test = load_split(test_shards, eval_cfg["max_windows"], seed + 1)
    if len(train["caseid"]) == 0 or len(test["caseid"]) == 0:
        raise ValueError("evaluation needs windows in both the train and the test split (see results/windows/manifest.json)")
    log.info("evaluating on %d train and %d test windows (%d test subjects)", len(train["caseid"]), len(test["caseid"]),
             len(np.unique(test["subjectid"])))

    # ssl: the exported encoder (backbone + channel mixer, if any); random: the same architecture with
    # random weights; pretrained: the configured backbone as published (no mixer: it has none).
    encoders = {"ssl": load_encoder(encoder_dir)}
    torch.manual_seed(seed)
    rnd = backbones.build(dict(model_cfg, pretrained=None))
    encoders["random"] = Encoder(rnd, build_mixer(model_cfg, rnd.d_model))
    if pretrained is not None:
        encoders["pretrained"] = Encoder(backbones.build(model_cfg, pretrained))
    feats = {"train": _features(encoders, train, fs), "test": _features(encoders, test, fs)}
    sets = list(encoders) + ["raw"]
    rows = {r["caseid"]: r for r in read_table(case_table)}

    results = {"feature_sets": sets, "tasks": {}}
    for task in TASKS:
        y_tr, y_te = _labels(task, train, rows, fs), _labels(task, test, rows, fs)
        a, b = np.isfinite(y_tr), np.isfinite(y_te)
        results["tasks"][task.name] = {"kind": task.kind, "level": task.level, "inputs": list(task.inputs),
                                       "description": task.description, "train_labelled": int(a.sum()), "test_labelled": int(b.sum())}
        if a.sum() < 10 or b.sum() < 10 or (task.kind == "classification" and (len(np.unique(y_te[b])) < 2 or len(np.unique(y_tr[a])) < 2)):
            log.warning("probe %s skipped: too few labelled windows (train %d, test %d)", task.name, a.sum(), b.sum())
            continue

        def x(split, name):
            return np.concatenate([feats[split][(name, ch)] for ch in task.inputs], axis=1)

        results["tasks"][task.name]["results"] = {
            name: probe(x("train", name)[a], y_tr[a], x("test", name)[b], y_te[b], test["subjectid"][b], task.kind, seed)
            for name in sets
        }
    results["reconstruction"] = reconstruction_quality(load_trained(model_path), test["signals"], train_cfg, seed)
    write_json(outdir / "metrics.json", results)
    plot_probes(results, outdir / "probes.png")
    write_text(outdir / "probes.html", probes_html(results))
    return results


def plot_probes(results: dict, path: Path) -> None:
    plt = pyplot()

    tasks = [t for t, r in results["tasks"].items() if "results" in r]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        res = results["tasks"][task]["results"]
        key = "auroc" if "auroc" in next(iter(res.values())) else "r2"
        names = list(res)
        vals = [res[n][key] for n in names]
        lo = [res[n][key] - res[n][f"{key}_ci95"][0] for n in names]
        hi = [res[n][f"{key}_ci95"][1] - res[n][key] for n in names]
        ax.bar(names, vals, yerr=np.nan_to_num([lo, hi]), capsize=4, color=["C0", "C7", "C2", "C1"][: len(names)])
        ax.set_title(task.replace("_", " "), fontsize=10)
        ax.set_ylabel(key.upper() if key == "auroc" else "R² (test)")
        ax.axhline(0.5 if key == "auroc" else 0.0, color="k", lw=0.6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def probes_html(results: dict) -> str:
    rows = []
    for task, res in ((t, r["results"]) for t, r in results["tasks"].items() if "results" in r):
        for name, r in res.items():
            if "auroc" in r:
                score = f"AUROC {r['auroc']:.3f} [{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]"
            else:
                score = (f"R² {r['r2']:.3f} [{r['r2_ci95'][0]:.3f}, {r['r2_ci95'][1]:.3f}]; "
                         f"MAE {r['mae']:.2f} [{r['mae_ci95'][0]:.2f}, {r['mae_ci95'][1]:.2f}]")
            rows.append(f"<tr><td>{task}</td><td>{name}</td><td>{score}</td><td>{r['n_train']}</td><td>{r['n_test']}</td><td>{r['test_subjects']}</td></tr>")
    rec = results["reconstruction"]
    what = {"random_patches": f"random patches ({rec['mask_ratio']:.0%} of each channel)", "ppg_from_ecg": "the whole PPG from the ECG",
            "ecg_from_ppg": "the whole ECG from the PPG"}
    rec_rows = "".join(f"<tr><td>{what[name]}</td>" + "".join(f"<td>{rec[name][k]:.4f}</td>" if k in rec[name] else "<td></td>"
                                                              for k in ("model", "window_mean", "linear_interpolation")) + "</tr>"
                       for name in RECONSTRUCTION_TASKS)
    return (
        "<html><body><h3>Linear probes (test split; 95% CI from a subject bootstrap)</h3>"
        "<table border=1 cellpadding=4><tr><th>task</th><th>features</th><th>score</th><th>train windows</th><th>test windows</th><th>test subjects</th></tr>"
        + "".join(rows) + "</table>"
        f"<h3>Reconstruction of masked patches ({rec['windows']} test windows)</h3>"
        "<p>Masked MSE, each window and channel z-scored over all its samples (filling with the window's mean scores about 1).</p>"
        "<table border=1 cellpadding=4><tr><th>hidden</th><th>SSL model</th><th>window mean</th><th>linear interpolation</th></tr>"
        + rec_rows + "</table></body></html>\n"
    )
