"""Figures and the HTML report of the evaluation (`results/<source>/eval/`), from its metrics dict.

- probes.png: per task, the paired difference SSL - baseline in the task's main metric with its 95%
  subject-bootstrap interval (each task on its own axis, so no interval dwarfs another task's);
- roc.png: ROC curves of the hypotension tasks per feature set;
- calibration.png: reliability curves (observed fraction of positives per bin of predicted
  probability) of every classification per feature set;
- hypotension.png: AUROC per horizon and feature set, both protocols, with Lee et al. 2021's VitalDB
  figures (`LITERATURE`) as reference lines on the protocol they match;
- label_efficiency.png: the main metric (95% subject-bootstrap interval on the scored split) against
  the fraction of train subjects the probe saw, one point per distinct number of subjects;
- probes.html: one table per task (every metric with CI, paired differences with CI), the
  reconstruction table, the label definitions, and what the numbers do and do not say.
"""

from __future__ import annotations

import html

from pipeline.plots import panel_grid, pyplot, save_figure

LOWER_IS_BETTER = {"mae", "brier"}
COLORS = {"ssl": "C0", "ssl_finetuned": "C9", "supervised": "C3", "random": "C7", "pretrained": "C2", "raw": "C1",
          "current_map": "k", "prevalence": "C5"}
# Published VitalDB AUROCs for hypotension 15 min ahead, drawn as reference lines on the protocol they
# match: Lee S. et al., "Deep learning models for the prediction of intraoperative hypotension", Br J
# Anaesth 2021;126(4):808-817 (VitalDB waveforms; positives sampled before each event's onset, negatives
# far from any event: our onset protocol, not hypotension ahead).
LITERATURE = {"hypotension_onset_15min": (("Lee 2021: non-invasive PPG only", 0.694),
                                          ("Lee 2021: ECG + PPG + capnography", 0.762),
                                          ("Lee 2021: invasive arterial pressure", 0.897))}


def split_name(results: dict) -> str:
    """The split the results were scored on, in words (metrics.json records it)."""
    return {"test": "test split", "val": "validation split"}.get(results.get("split", "test"), results.get("split", "test"))


def _scored(results: dict) -> dict:
    return {t: r for t, r in results["tasks"].items() if "results" in r}


def plot_effects(results: dict, path) -> None:
    plt = pyplot()
    tasks = _scored(results)
    if not tasks:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no task had enough labels", ha="center", va="center")
        ax.axis("off")
        save_figure(fig, path)
        return
    fig, axes = panel_grid(len(tasks), 3.9, 2.6)
    for ax, (name, r) in zip(axes, tasks.items()):
        m = r["metric"]
        pairs = list(r["paired"].items())
        for i, (pair, d) in enumerate(pairs):
            lo, hi = d[f"{m}_ci95"]
            ax.plot([lo, hi], [i, i], color="C0", lw=2)
            ax.plot(d[m], i, "o", color="C0")
        ax.axvline(0, color="k", lw=0.7)
        ax.set_yticks(range(len(pairs)), [p.replace("ssl-", "− ") for p, _ in pairs], fontsize=8)
        ax.set_ylim(-0.6, len(pairs) - 0.4)
        ssl = r["results"]["ssl"]
        better = "lower" if m in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{name}: SSL {m.upper()} {ssl[m]:.3g}\nSSL − baseline ({better} is better for SSL)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", lw=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_roc(rocs: dict, results: dict, path) -> None:
    plt = pyplot()
    names = [t for t in rocs if t.startswith("hypotension")] or list(rocs)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.8 * max(1, len(names)), 3.6), squeeze=False)
    for ax, task in zip(axes[0], names):
        for fs, (fpr, tpr) in rocs[task].items():
            auc = results["tasks"][task]["results"][fs]["auroc"]
            ax.plot(fpr, tpr, color=COLORS.get(fs, None), lw=1.2, label=f"{fs} {auc:.2f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.7)
        ax.set_title(task.replace("_", " "), fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.legend(fontsize=7, loc="lower right", title="AUROC", title_fontsize=7)
    if not names:
        axes[0][0].text(0.5, 0.5, "no classification task had enough labels", ha="center", va="center")
        axes[0][0].axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def plot_calibration(results: dict, path) -> None:
    """Reliability curves per classification task: observed fraction of positives against the mean
    prediction per equal-count bin, one line per feature set; the diagonal is perfect calibration."""
    tasks = {t: r for t, r in _scored(results).items() if "calibration" in r}
    fig, axes = panel_grid(len(tasks), 3.4, 3.2)
    for ax, (name, r) in zip(axes, tasks.items()):
        for fs, c in r["calibration"].items():
            brier = r["results"][fs]["brier"]
            ax.plot(c["predicted"], c["observed"], "o-", ms=2.5, lw=1, color=COLORS.get(fs), label=f"{fs} {brier:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability (bin mean)", fontsize=7)
        ax.set_ylabel(f"observed positives ({results.get('split', 'test')})", fontsize=7)
        ax.set_title(f"{name}\nprevalence {r['prevalence'][results.get('split', 'test')]:.3f}", fontsize=8)
        ax.legend(fontsize=5.5, title="Brier (lower is better)", title_fontsize=6, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def plot_hypotension(results: dict, path) -> None:
    """AUROC against the horizon, one line per feature set, one panel per protocol, 95% intervals;
    the published VitalDB figures (`LITERATURE`) as dashed lines on the panel and horizon they match."""
    plt = pyplot()
    protocols = (("hypotension", "hypotension ahead (every window)"), ("hypotension_onset", "onset protocol (Lee 2021 style)"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, (prefix, title) in zip(axes, protocols):
        names = {int(t[len(prefix) + 1 : -3]): t for t in results["tasks"] if t.startswith(prefix + "_") and t[len(prefix) + 1 : -3].isdigit()}
        sets = [fs for fs in COLORS if any(fs in results["tasks"][t].get("results", {}) for t in names.values())]
        for k, fs in enumerate(sets):
            pts = [(h + 0.25 * (k - len(sets) / 2), results["tasks"][t]["results"][fs]) for h, t in sorted(names.items())
                   if fs in results["tasks"][t].get("results", {})]
            if pts:
                xs, res = zip(*pts)
                ys = [r["auroc"] for r in res]
                err = [[y - r["auroc_ci95"][0] for y, r in zip(ys, res)], [r["auroc_ci95"][1] - y for y, r in zip(ys, res)]]
                ax.errorbar(xs, ys, yerr=err, fmt="o-", ms=3, lw=1, capsize=2, elinewidth=0.7, color=COLORS[fs], label=fs)
        for task, refs in LITERATURE.items():
            if task in names.values():
                h = [k for k, t in names.items() if t == task][0]
                for i, (label, auc) in enumerate(refs):
                    ax.hlines(auc, h - 1.5, h + 1.5, colors="C4", linestyles=["--", "-.", ":"][i % 3], lw=1.2, label=f"{label} {auc:.3f}")
        skipped = [f"{h} min" for h, t in sorted(names.items()) if "results" not in results["tasks"][t]]
        ax.set_title(title + (f"\nnot scored: {', '.join(skipped)}" if skipped else ""), fontsize=8)
        ax.set_xticks(sorted(names), [f"{h} min" for h in sorted(names)])
        ax.set_xlim(-2, 17)
        ax.set_xlabel("horizon before the event", fontsize=8)
        ax.axhline(0.5, color="k", lw=0.5)
        ax.grid(axis="y", lw=0.3)
    axes[0].set_ylabel(f"AUROC on the {split_name(results)} (higher is better)", fontsize=8)
    handles = {lab: h for ax in axes for h, lab in zip(*ax.get_legend_handles_labels())}
    axes[-1].legend(handles.values(), handles.keys(), fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)


def plot_label_efficiency(results: dict, path) -> None:
    tasks = {t: r for t, r in _scored(results).items() if "label_efficiency" in r}
    if not tasks:
        fig, ax = pyplot().subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no label-efficiency curve (evaluate.label_efficiency is false,\nor no window task had enough labels)",
                ha="center", va="center", fontsize=9)
        ax.axis("off")
        save_figure(fig, path)
        return
    fig, axes = panel_grid(len(tasks), 3.6, 2.8)
    for ax, (name, r) in zip(axes, tasks.items()):
        eff = r["label_efficiency"]
        x = [f * 100 for f in eff["fractions"]]
        for k, (fs, vals) in enumerate(eff["results"].items()):
            xs = [v * (1 + 0.04 * (k - 1.5)) for v in x]  # sets side by side, so intervals do not hide each other
            ci = eff.get("ci95", {}).get(fs)
            err = None if ci is None else [[v - lo for v, (lo, hi) in zip(vals, ci)], [hi - v for v, (lo, hi) in zip(vals, ci)]]
            ax.errorbar(xs, vals, yerr=err, fmt="o-", color=COLORS.get(fs), ms=3, lw=1, capsize=2, elinewidth=0.8, label=fs)
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}%\n({n} subj.)" for v, n in zip(x, eff["n_subjects"])], fontsize=7)
        better = "lower" if r["metric"] in LOWER_IS_BETTER else "higher"
        ax.set_ylabel(f"{r['metric'].upper()} on {results.get('split', 'test')} ({better} is better)", fontsize=7)
        ax.set_title(f"{name}", fontsize=9)
        ax.legend(fontsize=6)
    fig.supxlabel("train subjects the probe saw (% and count)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _fmt(v: float, ci, signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{v:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def _task_table(name: str, r: dict) -> str:
    head = f"<h4>{html.escape(name)}</h4><p>{html.escape(r['description'])}. {r['level']}-level {r['kind']}; "
    split = r.get("split", "test")
    head += (f"{r['n_train']} train / {r['n_test']} {split} rows from {r['n_train_subjects']} / {r['n_test_subjects']} subjects")
    if "positives" in r:
        pos = r["positives"]
        head += "; positives " + ", ".join(f"{k}: {v['windows']} windows, {v['cases']} cases, {v['subjects']} subjects" for k, v in pos.items())
        head += f"; prevalence {split} {r['prevalence'][split]:.3f}"
    head += ".</p>"
    if "results" not in r:
        return head + f"<p><b>Skipped:</b> {html.escape(r['skipped'])}</p>"
    metrics = [m for m in r["results"]["ssl"] if f"{m}_ci95" in r["results"]["ssl"]]
    within = "auroc_within_case" in r["results"]["ssl"]
    refs = set(r.get("references", []))

    def row(fs, res):
        extra = f"<td>{res['auroc_within_case']:.3f} ({res['n_cases_within']} cases)</td>" if within else ""
        name = f"{fs} (reference)" if fs in refs else fs
        return f"<tr><td>{name}</td>" + "".join(f"<td>{_fmt(res[m], res[f'{m}_ci95'])}</td>" for m in metrics) + extra + "</tr>"

    rows = "".join(row(fs, res) for fs, res in r["results"].items())
    paired = "".join(
        f"<tr><td>{p}</td>" + "".join(f"<td>{_fmt(d[m], d[f'{m}_ci95'])}</td>" for m in metrics) + ("<td></td>" if within else "") + "</tr>"
        for p, d in r["paired"].items())
    cols = "".join(f"<th>{m.upper()}{' (lower is better)' if m in LOWER_IS_BETTER else ''}</th>" for m in metrics)
    cols += "<th>AUROC within case (cases with both classes)</th>" if within else ""
    return (head + f"<table border=1 cellpadding=3><tr><th>features</th>{cols}</tr>{rows}"
            f"<tr><th>paired difference</th>{cols}</tr>{paired}</table>")


def _verdicts(scored: dict):
    """(task, "ssl-<baseline>", +1 / -1 / 0): whether the paired difference's 95% interval excludes
    zero in SSL's favour, against it, or neither."""
    for name, r in scored.items():
        m = r["metric"]
        sign = -1 if m in LOWER_IS_BETTER else 1
        for pair, d in r["paired"].items():
            lo, hi = (sign * v for v in d[f"{m}_ci95"])
            yield name, pair, 1 if min(lo, hi) > 0 else -1 if max(lo, hi) < 0 else 0


INTRO = """vitalssl turns VitalDB surgical recordings (or the offline demo) into a self-supervised PPG/ECG
encoder: cases are downloaded and validated, PPG and ECG resampled to 125 Hz with an anti-aliasing
filter, cut into quality-checked windows, an encoder (TinyTimeMixer or TSPulse) is pretrained by
masked patch reconstruction, exported, and evaluated with linear probes against baselines."""


HEADLINE_REFERENCES = ("current_map",)  # references shown in the headline (the constant prevalence is in probes.html)


def _headline_table(results: dict) -> tuple[list[str], list[list[str]], dict]:
    """(header, rows, verdicts) of the headline: per scored task, SSL's main metric with its
    interval, then SSL − each baseline with its interval and a verdict. The report's landing page
    and the model card show the same table."""
    scored = _scored(results)
    refs = list(dict.fromkeys(fs for r in scored.values() for fs in r.get("references", []) if fs in HEADLINE_REFERENCES))
    baselines = [fs for fs in results["feature_sets"] if fs != "ssl"] + refs
    verdict = {(t, p): v for t, p, v in _verdicts(scored)}
    word = {1: "SSL better", -1: "SSL worse", 0: "no clear difference"}
    head = ["task (metric, better)", "SSL [95% CI]", *(f"SSL − {b}{' (reference)' if b in refs else ''} [95% CI]" for b in baselines)]
    rows = []
    for name, r in scored.items():
        m, ssl = r["metric"], r["results"]["ssl"]
        cells = [f"{name} ({m.upper()}, {'lower' if m in LOWER_IS_BETTER else 'higher'})", _fmt(ssl[m], ssl[m + "_ci95"])]
        for b in baselines:
            d = r["paired"].get(f"ssl-{b}")
            cells.append("" if d is None else f"{_fmt(d[m], d[m + '_ci95'], signed=True)}: {word[verdict[(name, f'ssl-{b}')]]}")
        rows.append(cells)
    return head, rows, verdict


def _literature_sentence() -> str:
    return "; ".join(f"{label} AUROC {auc:.3f}" for refs in LITERATURE.values() for label, auc in refs)


def headline_rst(results: dict) -> str:
    """The report's landing page: did pretraining help, against what? The headline table and a
    sentence that says plainly where SSL wins and loses (the workflow's `report:` page once the
    evaluation exists)."""
    scored = _scored(results)
    head, rows, verdict = _headline_table(results)

    def sentence(sign):
        hits = {}
        for (task, pair), v in verdict.items():
            if v == sign:
                hits.setdefault(pair.split("-", 1)[1], []).append(task)
        return "; ".join(f"{b} on {', '.join(ts)}" for b, ts in hits.items()) or "no baseline on any task"

    table = [".. list-table::", "   :header-rows: 1", ""]
    for row in [head, *rows]:
        table.append("   * - " + row[0])
        table += [f"     - {c}" for c in row[1:]]
    skipped = [f"{n} ({r['skipped']})" for n, r in results["tasks"].items() if "results" not in r]
    return "\n".join([
        INTRO, "", "Did pretraining help?", "=====================", "",
        f"On the {split_name(results)} ({', '.join(sorted({str(r['n_test_subjects']) for r in scored.values()}))} subjects per task; "
        "intervals from resampling those subjects), the SSL encoder is better than "
        f"{sentence(1)}, and worse than {sentence(-1)}; every other comparison is not distinguishable at this size "
        "(details, label definitions and caveats: the Evaluation section, probes.html). "
        "current_map is the window's own arterial MAP, a reference the monitor already gives, not a competitor; "
        f"published VitalDB figures for the onset protocol at 15 min: {_literature_sentence()} (hypotension.png).", "",
        *table, "",
        *([f"Skipped tasks: {'; '.join(skipped)}.", ""] if skipped else []),
    ]) + "\n"


def report_html(results: dict) -> str:
    tasks = results["tasks"]
    lab = results["labels"]
    scored = _scored(results)
    n_test = sorted({r["n_test_subjects"] for r in tasks.values()})
    rec = results["reconstruction"]
    what = {"random_patches": f"random patches ({rec['mask_ratio']:.0%} of each channel)", "ppg_from_ecg": "the whole PPG from the ECG",
            "ecg_from_ppg": "the whole ECG from the PPG"}
    rec_rows = "".join(f"<tr><td>{what[name]}</td>" + "".join(f"<td>{rec[name][k]:.4f}</td>" if k in rec[name] else "<td></td>"
                                                              for k in ("model", "window_mean", "linear_interpolation")) + "</tr>"
                       for name in what)
    wins = [f"{name} ({pair})" for name, pair, v in _verdicts(scored) if v > 0]
    losses = [f"{name} ({pair})" for name, pair, v in _verdicts(scored) if v < 0]
    text = (
        "<h3>What these numbers say, and what they do not</h3><ul>"
        f"<li>Scored on the {split_name(results)}; subjects per task: {', '.join(map(str, n_test))}. Intervals come from resampling those subjects, "
        "so with few subjects they are wide, and window counts overstate the evidence: windows of one subject are not independent.</li>"
        f"<li>Paired differences whose interval excludes zero in SSL's favour: {html.escape(', '.join(wins)) or 'none'}; "
        f"against SSL: {html.escape(', '.join(losses)) or 'none'}. Everything else is not distinguishable at this size.</li>"
        "<li>The demo source is synthetic: its blood pressure, hypotension and patient traits follow relations written into "
        "pipeline/data/sources/demo.py, so a score there shows that the pipeline can find such a relation, not that it exists in patients.</li>"
        "<li>Linear probes measure what a frozen embedding makes linearly available; fine-tuning and the supervised model "
        "show what the architecture can learn from these labels with this much data.</li></ul>"
    )
    defs = (
        "<h3>Label definitions</h3><ul>"
        f"<li>Blood pressure of a window: the median of the valid arterial-line samples ({html.escape(lab['tracks']['map'])} etc.) inside it; "
        f"valid MAP {lab['valid_mmHg']['map']} mmHg, SBP {lab['valid_mmHg']['sbp']}, DBP {lab['valid_mmHg']['dbp']}.</li>"
        f"<li>Hypotensive event: MAP below {lab['hypotension_mmHg']} mmHg for at least {lab['hypotension_min_s']} s (gaps over "
        f"{lab['max_gap_s']} s end a run). Washout W = {lab['washout_s']} s: a window ending at t is labelled only if MAP data cover "
        "[t − W, t + h] (both classes alike, so the end of a case is never a shortcut) and no event overlaps [t − W, t].</li>"
        "<li>Hypotension ahead (hypotension_{h}min): positive if an event starts in (t, t + h], negative if no event overlaps "
        "[t − W, t + h].</li>"
        "<li>Onset protocol (hypotension_onset_{h}min, as Hatib 2018 and Lee 2021): per event, one positive, the last window ending "
        f"at least h before its onset; negatives at least {lab['negative_margin_s']} s from any event. Lee 2021's VitalDB AUROCs "
        f"at 15 min ({html.escape(_literature_sentence())}) match this protocol, not hypotension ahead.</li>"
        "<li>current_map: the window's median arterial MAP, probed like a feature set: a reference the monitor already gives. "
        "prevalence: the train prevalence as a constant prediction (AUROC 0.5; the Brier score to beat).</li>"
        "<li>Heart rate: the ECG heart rate of the window (60 / the median R-R interval, as the windows stage measures it); the encoders see the PPG only (ECG blanked).</li>"
        "<li>Subject tasks (age, sex, BMI, ASA ≥ 3): the case table; features averaged over each subject's windows.</li></ul>"
    )
    return (
        f"<html><body><h3>Evaluation on the {split_name(results)} (subjects disjoint from training)</h3>"
        f"<p>Feature sets: {', '.join(results['feature_sets'])}. Linear probes, regularisation chosen by subject-grouped "
        "cross-validation; 95% intervals and paired differences (SSL − baseline) from the same bootstrap draws of test subjects.</p>"
        + text + "".join(_task_table(n, r) for n, r in tasks.items()) + defs
        + f"<h3>Reconstruction of masked patches ({rec['windows']} test windows)</h3>"
        "<p>Masked MSE, each window and channel z-scored over all its samples (filling with the window's mean scores about 1).</p>"
        "<table border=1 cellpadding=4><tr><th>hidden</th><th>SSL model</th><th>window mean</th><th>linear interpolation</th></tr>"
        + rec_rows + "</table></body></html>\n"
    )


def results_markdown(results: dict) -> str:
    """The evaluation's results as a model card section (Markdown): the headline table."""
    head, rows, _ = _headline_table(results)
    lines = [f"## Results (evaluation, {split_name(results)}: subjects disjoint from training)", "",
             "Linear probes on frozen embeddings; 95% intervals from resampling the scored subjects (`eval/metrics.json`); "
             "current_map (reference) is the window's own arterial MAP.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]
    skipped = [n for n, r in results["tasks"].items() if "results" not in r]
    if skipped:
        lines += ["", f"Not scored (too few labels): {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"
