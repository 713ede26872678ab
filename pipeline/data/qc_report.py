"""Data QC for people: a plot and a table of what the windows stage kept, rejected and skipped."""

from __future__ import annotations

import html

from pipeline.data.quality import RULES
from pipeline.io import read_json, write_text
from pipeline.plots import pyplot, save_figure


def qc_report(manifest_path, png_path, html_path) -> None:
    m = read_json(manifest_path)
    t = m["totals"]
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    skipped = {}
    for c in m["cases"].values():
        if c.get("skip_reason"):
            key = c["skip_reason"].split(":")[0] if ":" in c["skip_reason"] else c["skip_reason"]
            skipped[key] = skipped.get(key, 0) + 1
    bars = a.bar(["used"] + [f"skipped at\n{k}" for k in skipped], [t["cases_used"]] + list(skipped.values()),
                 color=["C2"] + ["C3"] * len(skipped))
    a.bar_label(bars)
    a.set_title(f"cases ({t['cases']} in the case table)")
    bars = b.bar(["kept"] + list(RULES), [t["kept"]] + [t["rejected"][r] for r in RULES], color=["C2"] + ["C3"] * len(RULES))
    b.bar_label(bars)
    b.set_yscale("symlog", linthresh=1)  # rejections are few; zero counts stay drawable
    b.set_title(f"windows ({t['cut']} cut): kept, and rejected per first failing rule", fontsize=10)
    b.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=110)

    rows = []
    for caseid, c in m["cases"].items():
        rej = ", ".join(f"{r} {n}" for r, n in c.get("rejected", {}).items() if n)
        rows.append(f"<tr><td>{caseid}</td><td>{c['split']}</td><td>{c.get('cut', 0)}</td><td>{c.get('kept', 0)}</td>"
                    f"<td>{html.escape(rej)}</td><td>{html.escape(c.get('skip_reason', ''))}</td></tr>")
    write_text(html_path, "<html><body><h3>Windows per case</h3><table border=1 cellpadding=4>"
               "<tr><th>case</th><th>split</th><th>cut</th><th>kept</th><th>rejected (first failing rule)</th><th>skip reason</th></tr>"
               + "".join(rows) + "</table></body></html>\n")
