"""Linear probes with subject-grouped model selection, and subject-bootstrap intervals with paired
differences (docs/design.md, "Evaluation"). Plain functions on arrays (scikit-learn), no torch.

- `fit_probe`: median imputation, standardisation, ridge (regression) or L2 logistic regression
  (classification); the regularisation strength is chosen by cross-validation whose folds never
  split a subject (GroupKFold; StratifiedGroupKFold for classification).
- `score`: the task's metrics of test predictions; `within_case_auroc` and `calibration` beside them
  for classifications.
- `bootstrap`: B resamples of the test subjects (with replacement), the same draws for every feature
  set, so `paired` differences SSL - baseline are computed draw by draw.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.stats import rankdata

log = logging.getLogger(__name__)
N_BOOT = 500
ALPHAS = np.logspace(-2, 5, 15)
CS = np.logspace(-3, 1, 5)


def _folds(kind: str, groups: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    k = min(5, len(np.unique(groups)))
    if kind == "classification":  # every training fold needs both classes: fewer folds when a class has few subjects
        k = min(k, *(len(np.unique(groups[y == c])) for c in np.unique(y)))
    if k < 2:
        return None
    if kind == "classification":
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return GroupKFold(n_splits=k)


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, seed: int = 0):
    """A fitted scikit-learn pipeline; its regularisation chosen by subject-grouped CV."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def pipe(model):
        p = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        p.steps.append(("model", model))
        return p

    folds = _folds(kind, groups, y, seed)
    if folds is None:  # fewer than 2 subjects (of a class): no CV possible, the default strength
        log.info("probe fit without CV: too few subjects to fold (%d)", len(np.unique(groups)))
        return pipe(Ridge() if kind == "regression" else LogisticRegression(max_iter=2000)).fit(x, y)
    if kind == "regression":
        return pipe(Ridge(alpha=ridge_alpha(x, y, groups, folds))).fit(x, y)
    search = GridSearchCV(pipe(LogisticRegression(max_iter=2000)), {"model__C": CS}, scoring="neg_log_loss", cv=folds,
                          error_score=np.nan, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fold with one class scores NaN (error_score) and is left out of the mean
        search.fit(x, y, groups=groups)
    return search.best_estimator_


def _standardise(train: np.ndarray, *others: np.ndarray):
    """Median-impute and z-score with the statistics of `train` (as the probe's pipeline does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-NaN column: imputed as 0
        med = np.nan_to_num(np.nanmedian(train, axis=0))
    fill = [np.where(np.isfinite(a), a, med) for a in (train, *others)]
    mu, sd = fill[0].mean(0), fill[0].std(0)
    sd[sd == 0] = 1.0
    return [(a - mu) / sd for a in fill]


def ridge_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds, alphas=ALPHAS) -> float:
    """The ridge strength with the least squared error over the grouped folds (every alpha from one
    SVD per fold; imputation and scaling fitted on each fold's training part)."""
    err = np.zeros(len(alphas))
    for tr, te in folds.split(x, y, groups):
        xtr, xte = _standardise(x[tr], x[te])
        ym = y[tr].mean()
        u, sv, vt = np.linalg.svd(xtr, full_matrices=False)
        uty = u.T @ (y[tr] - ym)
        for i, a in enumerate(alphas):
            coef = vt.T @ (sv / (sv**2 + a) * uty)
            err[i] += ((xte @ coef + ym - y[te]) ** 2).sum()
    return float(alphas[int(np.argmin(err))])


def predict(model, x: np.ndarray, kind: str) -> np.ndarray:
    return model.predict(x) if kind == "regression" else model.predict_proba(x)[:, 1]


def score(y: np.ndarray, p: np.ndarray, kind: str) -> dict[str, float]:
    """mae and r2, or auroc, auprc (NaN with one class) and brier: the definitions of scikit-learn's
    mean_absolute_error, r2_score, roc_auc_score, average_precision_score and brier_score_loss (tests compare them),
    in numpy, because the bootstrap calls this thousands of times."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    if kind == "regression":
        ss = ((y - y.mean()) ** 2).sum()
        r2 = 1.0 - ((y - p) ** 2).sum() / ss if ss > 0 else np.nan
        return {"mae": float(np.abs(y - p).mean()), "r2": float(r2)}
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    brier = float(((p - y) ** 2).mean())
    if n_pos == 0 or n_neg == 0:
        return {"auroc": np.nan, "auprc": np.nan, "brier": brier}
    ranks = rankdata(p)
    auroc = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # the last index of each distinct score
    tps = np.cumsum(ys)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    auprc = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {"auroc": float(auroc), "auprc": auprc, "brier": brier}


def within_case_auroc(y: np.ndarray, p: np.ndarray, cases: np.ndarray) -> tuple[float, int]:
    """(mean AUROC over the cases that have both classes, how many cases that is): does the score
    rank a case's own windows, rather than telling patients apart? NaN with no such case."""
    aurocs = []
    for c in np.unique(cases):
        sel = cases == c
        if len(np.unique(y[sel])) == 2:
            aurocs.append(score(y[sel], p[sel], "classification")["auroc"])
    return (float(np.mean(aurocs)) if aurocs else float("nan")), len(aurocs)


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Reliability curve: per bin of predicted probability (equal-count bins), the mean prediction
    and the observed fraction of positives, and the bin's size."""
    order = np.argsort(p, kind="mergesort")
    if np.ptp(p) == 0:  # a constant prediction (the prevalence) is one point, not a column of bins
        bins = 1
    parts = [part for part in np.array_split(order, min(bins, len(order))) if len(part)]
    return {"predicted": [float(p[i].mean()) for i in parts], "observed": [float(y[i].mean()) for i in parts],
            "n": [int(len(i)) for i in parts]}


def bootstrap_draws(y: np.ndarray, preds: dict[str, np.ndarray], groups: np.ndarray, kind: str, seed: int,
                    n_boot: int = N_BOOT) -> dict[str, list[dict]]:
    """{set: [score of each draw]}: B resamples of the subjects (with replacement), the same draws for
    every set; a draw whose labels are all equal is left out."""
    subjects = np.unique(groups)
    idx_by = [np.flatnonzero(groups == s) for s in subjects]
    rng = np.random.default_rng(seed)
    draws = {name: [] for name in preds}
    for _ in range(n_boot):
        pick = np.concatenate([idx_by[i] for i in rng.integers(0, len(subjects), len(subjects))])
        if len(np.unique(y[pick])) < 2:
            continue
        for name, p in preds.items():
            draws[name].append(score(y[pick], p[pick], kind))
    return draws


def bootstrap(y: np.ndarray, preds: dict[str, np.ndarray], groups: np.ndarray, kind: str, seed: int,
              reference: str = "ssl", n_boot: int = N_BOOT) -> tuple[dict, dict]:
    """(results, paired): results[set] = point metrics + "<metric>_ci95"; paired["<reference>-<set>"] =
    point differences + CIs from the same subject draws. Draws where a metric is undefined (one
    class only, constant labels) are left out, counted in "n_boot"."""
    draws = bootstrap_draws(y, preds, groups, kind, seed, n_boot)
    results, paired = {}, {}
    for name, p in preds.items():
        point = score(y, p, kind)
        for m in list(point):
            vals = np.array([d[m] for d in draws[name]])
            point[f"{m}_ci95"] = _ci(vals)
        results[name] = point | {"n_test": int(len(y)), "n_boot": len(draws[name])}
    if reference in preds:
        for name in preds:
            if name == reference:
                continue
            diff = {}
            for m in score(y, preds[name], kind):
                diff[m] = results[reference][m] - results[name][m]
                d = np.array([a[m] - b[m] for a, b in zip(draws[reference], draws[name])])
                diff[f"{m}_ci95"] = _ci(d)
            paired[f"{reference}-{name}"] = diff
    return results, paired


def _ci(vals: np.ndarray) -> list[float]:
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return [float("nan"), float("nan")]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def subset_subjects(groups: np.ndarray, y: np.ndarray, fraction: float, kind: str, seed: int) -> np.ndarray | None:
    """A boolean mask of the rows of a random `fraction` of the subjects (at least 2; for a
    classification, resampled until both classes are present, else None)."""
    subjects = np.unique(groups)
    k = max(2, int(round(fraction * len(subjects))))
    if k >= len(subjects):
        return np.ones(len(groups), bool)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        mask = np.isin(groups, rng.choice(subjects, k, replace=False))
        if kind == "regression" or len(np.unique(y[mask])) == 2:
            return mask
    return None
