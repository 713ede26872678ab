"""Data QC for people: a plot and a table of what the windows stage kept, rejected and skipped.

qc_gallery.png: a few windows of each group, PPG above ECG (`qc_gallery`), so a user sees what each
rule throws away: kept windows, then the windows each rule rejected first (the windows stage's
examples, pipeline/data/windows.py).

qc.png: cases used and skipped (by the stage that skipped them), windows kept and rejected per
first failing rule. qc.html: totals (cases, skips, exclusions, given-up cases, unexpected errors;
windows per rule), then one row per case with a column per rule, sortable by any column (numbers as
numbers) and filtered by a text box (or opened so: `qc.html#sort=kept&filter=train`): readable at
6,388 cases.
"""

from __future__ import annotations

import html
import textwrap

import numpy as np

from pipeline.channels import CHANNELS
from pipeline.data.quality import RULES
from pipeline.data.windows import EXAMPLE_GROUPS, EXAMPLES_PER_GROUP, read_examples
from pipeline.io import read_json, write_text
from pipeline.plots import pyplot, save_figure

# Click a header to sort by it (again: reversed); numbers compare as numbers. Type to keep only the
# rows that contain the text.
_SCRIPT = """
function qcSort(th) {
  const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  const key = r => { const t = r.cells[col].dataset.v ?? r.cells[col].textContent; const n = Number(t);
                     return t !== '' && !isNaN(n) ? n : t.toLowerCase(); };
  const rows = Array.from(body.rows).sort((a, b) => { const x = key(a), y = key(b);
    return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1)) * dir; });
  rows.forEach(r => body.appendChild(r));
}
function qcFilter(box) {
  const q = box.value.toLowerCase();
  for (const r of document.getElementById('cases').tBodies[0].rows)
    r.style.display = r.textContent.toLowerCase().includes(q) ? '' : 'none';
}
// qc.html#sort=kept&filter=train opens sorted and filtered (a link that shows a view; docs/check_report.py)
window.addEventListener('DOMContentLoaded', () => {
  const p = new URLSearchParams(location.hash.slice(1));
  const th = [...document.querySelectorAll('#cases th')].find(t => t.textContent === p.get('sort'));
  if (th) qcSort(th);
  const box = document.getElementById('filter');
  if (p.get('filter')) { box.value = p.get('filter'); qcFilter(box); }
});
"""


def _skip_stage(reason: str) -> str:
    return reason.split(":")[0] if ":" in reason else reason


def qc_report(manifest_path, png_path, html_path) -> None:
    m = read_json(manifest_path)
    t = m["totals"]
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    skipped = {}
    for c in m["cases"].values():
        if c.get("skip_reason"):
            key = _skip_stage(c["skip_reason"])
            skipped[key] = skipped.get(key, 0) + 1
    bars = a.bar(["used"] + [f"skipped at\n{k}" for k in skipped], [t["cases_used"]] + list(skipped.values()),
                 color=["C2"] + ["C3"] * len(skipped))
    a.bar_label(bars, padding=2)
    a.margins(y=0.18)  # room for the bar labels under the title
    a.set_ylabel("cases")
    a.set_title(f"cases ({t['cases']} in the case table)", fontsize=10)
    bars = b.bar(["kept"] + list(RULES), [t["kept"]] + [t["rejected"][r] for r in RULES], color=["C2"] + ["C3"] * len(RULES))
    b.bar_label(bars, padding=2)
    b.set_yscale("symlog", linthresh=1)  # rejections are few; zero counts stay drawable
    b.set_ylim(0, max([t["kept"], *t["rejected"].values(), 1]) * 4)  # room for the labels on the log scale
    b.set_ylabel("windows (log scale)")
    b.set_title(f"windows ({t['cut']} cut): kept, and rejected per first failing rule", fontsize=10)
    b.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=110)
    write_text(html_path, qc_html(m))


def qc_html(m: dict) -> str:
    t = m["totals"]
    summary = [("cases in the case table", t["cases"]), ("cases used (a window kept)", t["cases_used"]),
               ("cases skipped", t.get("skipped", 0)), ("of them excluded (cases.exclude)", t.get("excluded", 0)),
               ("of them given up after transient faults", t.get("gave_up", 0)),
               ("of them unexpected errors", sum(t.get("unexpected_errors", {}).values())),
               ("windows cut", t["cut"]), ("windows kept", t["kept"]),
               *((f"windows rejected by {r} (first failing rule)", t["rejected"][r]) for r in RULES),
               *((f"windows kept in {s}", n) for s, n in t["kept_per_split"].items())]
    head = ["case", "split", "cut", "kept", *RULES, "skip stage", "skip reason"]
    rows = []
    for caseid, c in sorted(m["cases"].items(), key=lambda kv: int(kv[0])):
        reason = c.get("skip_reason", "")
        cells = [caseid, c["split"], c.get("cut", 0), c.get("kept", 0), *(c.get("rejected", {}).get(r, 0) for r in RULES),
                 _skip_stage(reason) if reason else "", reason]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Data QC</title><style>"
            "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} td,th{border:1px solid #bbb;"
            "padding:3px 6px} th{background:#eee;cursor:pointer} td:nth-child(n+3){text-align:right}</style>"
            f"<script>{_SCRIPT}</script></head><body><h3>Totals</h3><table id='totals'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in summary)
            + "</table><h3>Windows per case</h3><p>Click a column to sort by it; type to filter: "
            "<input id='filter' oninput='qcFilter(this)' placeholder='case id, split, reason...'></p>"
            "<table id='cases'><thead><tr>" + "".join(f"<th onclick='qcSort(this)'>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></body></html>\n")


def qc_gallery(manifest_path, example_paths: list, png_path, per_group: int = EXAMPLES_PER_GROUP) -> dict:
    """qc_gallery.png: per group (kept, then each rule that rejected a window first) up to `per_group`
    windows drawn at random (fixed seed) from every batch's examples, PPG above ECG, each cell titled
    with its case, start time and every rule the window fails. Returns {group: examples drawn}."""
    totals = read_json(manifest_path)["totals"]
    examples, fs = read_examples(example_paths)
    rng = np.random.default_rng(0)
    shown = {}
    for g in EXAMPLE_GROUPS:
        pool = [e for e in examples if e["group"] == g]
        if pool:
            shown[g] = [pool[i] for i in sorted(rng.choice(len(pool), min(per_group, len(pool)), replace=False))]
    plt = pyplot()
    rows = max(len(shown), 1)
    height = 2.6 * rows + 1.0
    fig = plt.figure(figsize=(3.4 * per_group, height))
    outer = fig.add_gridspec(rows, per_group, hspace=0.55, wspace=0.12,
                             top=1 - 1.15 / height, bottom=0.55 / height)  # room for the title, whatever the rows
    for r, (g, items) in enumerate(shown.items()):
        count = totals["kept"] if g == "kept" else totals["rejected"][g]
        label = f"kept\n({count} windows)" if g == "kept" else f"rejected first\nby {g}\n({count} windows)"
        last_row = r == rows - 1
        for c, e in enumerate(items):
            t = np.arange(e["signals"].shape[-1]) / fs
            cell = outer[r, c].subgridspec(2, 1, hspace=0.08)
            for k, name in enumerate(CHANNELS):
                ax = fig.add_subplot(cell[k])
                x = e["signals"][k]
                if np.isnan(x).all():
                    ax.text(0.5, 0.5, f"{name}: no data", ha="center", va="center", transform=ax.transAxes, fontsize=8)
                else:  # each trace fills its panel; its peak-to-peak says what the scale hides (amplitude rule)
                    ax.plot(t, x, lw=0.5, color="C0" if k == 0 else "C3")
                    ax.text(0.99, 0.97, f"ptp {np.nanmax(x) - np.nanmin(x):.3g}", ha="right", va="top",
                            transform=ax.transAxes, fontsize=6, color="0.3",
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
                ax.set_xlim(0, t[-1])
                ax.set_yticks([])
                ax.tick_params(labelsize=7, labelbottom=(k == 1 and last_row))
                if k == 0:
                    others = [f for f in e["failed"].split(",") if f and f != g]
                    ax.set_title(f"case {e['caseid']}, from {e['start_s']:.0f} s"
                                 + ("\n" + textwrap.fill(f"also fails {', '.join(others)}", 48) if others else ""), fontsize=7)
                if c == 0:
                    ax.set_ylabel(f"{label}\n{name}" if k == 0 else name, fontsize=7, rotation=0, ha="right", va="center")
                if k == 1 and last_row:
                    ax.set_xlabel("time in the window (s)", fontsize=7)
    silent = [rule for rule in RULES if rule not in shown]
    notes = ([f"no window cut ({totals['cases']} cases, none usable)"] if not totals["cut"] else
             ["no window kept"] if "kept" not in shown else []) + ([f"no window rejected first by: {', '.join(silent)}"] if silent else [])
    fig.suptitle("\n".join(["Windows kept, and rejected by each quality rule (PPG above ECG, each trace scaled to its own range)",
                            *notes]), fontsize=10, y=1 - 0.15 / height, va="top")
    save_figure(fig, png_path, dpi=90)
    return {g: len(items) for g, items in shown.items()}
