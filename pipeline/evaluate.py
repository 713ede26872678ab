"""Does self-supervision help? Linear probes on frozen embeddings, and reconstruction quality.

Probes (scikit-learn ridge / logistic regression, features standardized, fit on the train split,
scored on the test split) compare, on the same windows:
  - `ssl`: the exported SSL-trained encoder,
  - `random`: the same architecture with random weights,
  - `raw`: simple raw-signal features (moments, amplitude, spectral band powers),
  - `pretrained`: the configured pretrained TTM without our SSL (when model.pretrained is set).
Tasks: heart rate of the window (label: ECG R-peaks, independent of the QC's autocorrelation
estimate) from PPG only and from both channels; on real sources also age and sex of the case.
Confidence intervals: 95% percentile intervals from a bootstrap over test subjects.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy.signal import butter, find_peaks, sosfiltfilt

from pipeline.io import atomic_path, write_json, write_text
from pipeline.masking import patch_mask
from pipeline.preprocess import normalize

log = logging.getLogger(__name__)
N_BOOT = 300
BANDS_HZ = [(0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 40.0)]


# ----------------------------------------------------------------------------- labels
def rpeak_heart_rate(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) per ECG window [n, L] from R-peaks: 5-20 Hz band-pass, peaks of the
    rectified signal above 40% of its 99th percentile, at least 250 ms apart; 60 / median RR.
    NaN where fewer than 3 peaks are found."""
    sos = butter(3, [5.0, 20.0], btype="band", fs=fs, output="sos")
    x = np.abs(sosfiltfilt(sos, np.nan_to_num(ecg), axis=-1))
    out = np.full(len(x), np.nan)
    for i, w in enumerate(x):
        peaks, _ = find_peaks(w, height=0.4 * np.percentile(w, 99), distance=int(0.25 * fs))
        if len(peaks) >= 3:
            out[i] = 60.0 * fs / np.median(np.diff(peaks))
    return out


# --------------------------------------------------------------------------- features
def raw_features(x: np.ndarray, fs: float) -> np.ndarray:
    """Per channel: mean, std, skewness, kurtosis, peak-to-peak, zero-crossing rate of the
    centred signal, log power in BANDS_HZ. x [n, C, L] -> [n, C * (6 + bands)]."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    mean = x.mean(-1, keepdims=True)
    c = x - mean
    std = c.std(-1, keepdims=True) + 1e-9
    z = c / std
    feats = [mean[..., 0], std[..., 0], (z**3).mean(-1), (z**4).mean(-1), np.ptp(x, axis=-1),
             (np.diff(np.sign(c), axis=-1) != 0).mean(-1)]
    power = np.abs(np.fft.rfft(z, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / fs)
    for lo, hi in BANDS_HZ:
        sel = (freqs >= lo) & (freqs < hi)
        feats.append(np.log(power[..., sel].mean(-1) + 1e-9))
    return np.stack(feats, axis=-1).reshape(len(x), -1)


@torch.no_grad()
def encoder_embeddings(encoder, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Mean-pooled patch embeddings [n, C, D] of raw windows x [n, C, L] (normalized here)."""
    encoder.eval()
    out = []
    for s in range(0, len(x), batch):
        xb = normalize(torch.from_numpy(np.asarray(x[s : s + batch], dtype=np.float32))).transpose(1, 2)
        out.append(encoder(past_values=xb).last_hidden_state.mean(dim=2).numpy())
    return np.concatenate(out)


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


@torch.no_grad()
def reconstruction_quality(model, x_raw: np.ndarray, train_cfg: dict, seed: int = 0) -> dict:
    """Masked-patch MSE of the SSL model vs linear interpolation, on the same windows and masks."""
    from pipeline.losses import masked_mse

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = {"model": 0.0, "linear_interpolation": 0.0}
    n = 0
    for s in range(0, len(x_raw), 256):
        x = normalize(torch.from_numpy(np.asarray(x_raw[s : s + 256], dtype=np.float32)))
        mask = patch_mask(len(x), x.shape[1], model.num_patches, train_cfg["mask_ratio"], train_cfg["mask_type"], gen)
        sums["model"] += masked_mse(model(x, mask), x, mask, model.patch_length).item() * len(x)
        sums["linear_interpolation"] += masked_mse(linear_interpolation_fill(x, mask, model.patch_length), x, mask, model.patch_length).item() * len(x)
        n += len(x)
    return {k: v / max(n, 1) for k, v in sums.items()} | {"windows": n, "mask_ratio": train_cfg["mask_ratio"], "mask_type": train_cfg["mask_type"]}


# ------------------------------------------------------------------------------ driver
def load_split(paths: list[str], max_windows: int, seed: int) -> dict:
    parts = {k: [] for k in ("signals", "caseid", "subjectid")}
    for p in paths:
        with h5py.File(p, "r") as f:
            for k in parts:
                parts[k].append(f[k][()])
    data = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    n = len(data["caseid"])
    if n > max_windows:  # a fixed random subset, the same for every feature set
        keep = np.sort(np.random.default_rng(seed).choice(n, max_windows, replace=False))
        data = {k: v[keep] for k, v in data.items()}
    return data


def evaluate(encoder_dir, model_path, train_shards, test_shards, case_table, source: str, model_cfg: dict,
             train_cfg: dict, eval_cfg: dict, fs: float, outdir) -> dict:
    from tsfm_public.models.tinytimemixer import TinyTimeMixerModel

    from pipeline.cases import read_table
    from pipeline.export import load_trained
    from pipeline.model import build_encoder

    outdir = Path(outdir)
    seed = eval_cfg["seed"]
    train = load_split(train_shards, eval_cfg["max_windows"], seed)
    test = load_split(test_shards, eval_cfg["max_windows"], seed + 1)
    if len(train["caseid"]) == 0 or len(test["caseid"]) == 0:
        raise ValueError("evaluation needs windows in both the train and the test split (see results/windows/manifest.json)")
    log.info("evaluating on %d train and %d test windows (%d test subjects)", len(train["caseid"]), len(test["caseid"]),
             len(np.unique(test["subjectid"])))

    encoders = {"ssl": TinyTimeMixerModel.from_pretrained(str(encoder_dir))}
    torch.manual_seed(seed)
    encoders["random"] = build_encoder(dict(model_cfg, pretrained=None))
    if model_cfg["pretrained"]:
        encoders["pretrained"] = build_encoder(model_cfg)
    feats = {}
    for split, data in (("train", train), ("test", test)):
        for name, enc in encoders.items():
            emb = encoder_embeddings(enc, data["signals"])
            feats[(name, "ppg", split)] = emb[:, 0]
            feats[(name, "ppg+ecg", split)] = emb.reshape(len(emb), -1)
        raw = raw_features(data["signals"], fs).reshape(len(data["signals"]), 2, -1)
        feats[("raw", "ppg", split)] = raw[:, 0]
        feats[("raw", "ppg+ecg", split)] = raw.reshape(len(raw), -1)
    sets = list(encoders) + ["raw"]

    results = {"probes": {}, "feature_sets": sets}
    hr_tr = rpeak_heart_rate(train["signals"][:, 1], fs)
    hr_te = rpeak_heart_rate(test["signals"][:, 1], fs)
    ok_tr, ok_te = np.isfinite(hr_tr), np.isfinite(hr_te)
    for inputs in ("ppg", "ppg+ecg"):
        task = f"heart_rate_from_{inputs}"
        results["probes"][task] = {
            name: probe(feats[(name, inputs, "train")][ok_tr], hr_tr[ok_tr], feats[(name, inputs, "test")][ok_te], hr_te[ok_te],
                        test["subjectid"][ok_te], "regression", seed)
            for name in sets
        }
    if source != "demo":  # demo ages and sexes are random draws, not physiology
        rows = {r["caseid"]: r for r in read_table(case_table)}
        for task, col, kind in (("age", "age", "regression"), ("sex", "sex", "classification")):
            def label(caseids):
                vals = [rows.get(int(c), {}).get(col, "") for c in caseids]
                if kind == "classification":
                    return np.array([1.0 if v == "F" else 0.0 if v == "M" else np.nan for v in vals])
                return np.array([float(v) if v not in ("", None) else np.nan for v in vals])
            y_tr, y_te = label(train["caseid"]), label(test["caseid"])
            a, b = np.isfinite(y_tr), np.isfinite(y_te)
            if a.sum() < 10 or b.sum() < 10 or (kind == "classification" and len(np.unique(y_te[b])) < 2):
                log.warning("probe %s skipped: too few labelled windows", task)
                continue
            results["probes"][task] = {
                name: probe(feats[(name, "ppg+ecg", "train")][a], y_tr[a], feats[(name, "ppg+ecg", "test")][b], y_te[b],
                            test["subjectid"][b], kind, seed)
                for name in sets
            }
    results["reconstruction"] = reconstruction_quality(load_trained(model_path), test["signals"], train_cfg, seed)
    results["heart_rate_label"] = {"method": "ECG R-peaks (5-20 Hz band-pass, find_peaks, 60/median RR)",
                                   "train_labelled": int(ok_tr.sum()), "test_labelled": int(ok_te.sum())}
    write_json(outdir / "metrics.json", results)
    plot_probes(results, outdir / "probes.png")
    write_text(outdir / "probes.html", probes_html(results))
    return results


def plot_probes(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results["probes"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        res = results["probes"][task]
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def probes_html(results: dict) -> str:
    rows = []
    for task, res in results["probes"].items():
        for name, r in res.items():
            if "auroc" in r:
                score = f"AUROC {r['auroc']:.3f} [{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]"
            else:
                score = (f"R² {r['r2']:.3f} [{r['r2_ci95'][0]:.3f}, {r['r2_ci95'][1]:.3f}]; "
                         f"MAE {r['mae']:.2f} [{r['mae_ci95'][0]:.2f}, {r['mae_ci95'][1]:.2f}]")
            rows.append(f"<tr><td>{task}</td><td>{name}</td><td>{score}</td><td>{r['n_train']}</td><td>{r['n_test']}</td><td>{r['test_subjects']}</td></tr>")
    rec = results["reconstruction"]
    return (
        "<html><body><h3>Linear probes (test split; 95% CI from a subject bootstrap)</h3>"
        "<table border=1 cellpadding=4><tr><th>task</th><th>features</th><th>score</th><th>train windows</th><th>test windows</th><th>test subjects</th></tr>"
        + "".join(rows) + "</table>"
        f"<h3>Reconstruction of masked patches ({rec['windows']} test windows)</h3>"
        f"<p>SSL model MSE {rec['model']:.4f}; linear interpolation MSE {rec['linear_interpolation']:.4f}</p></body></html>\n"
    )
