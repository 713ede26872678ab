"""Data QC for people: a plot and a table of what the windows stage kept, rejected and skipped.

qc.png: cases used and skipped (by the stage that skipped them), windows kept and rejected per
first failing rule. qc.html: totals (cases, skips, exclusions, given-up cases, unexpected errors;
windows per rule), then one row per case with a column per rule, sortable by any column (numbers as
numbers) and filtered by a text box (or opened so: `qc.html#sort=kept&filter=train`): readable at
6,388 cases.
"""

from __future__ import annotations

import html

from pipeline.data.quality import RULES
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
