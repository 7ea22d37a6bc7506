"""Draws ``peers.png`` from ``peers.json``: for each workload, each tool's time per step
as a multiple of Plait's (log scale; 1 = as fast as Plait, right of it = slower).

Runs in the report venv (``.venvs/report``, matplotlib), not in Plait's:
``python chart.py results/peers.json results/peers.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LABELS = {
    "plait": "Plait (SQLite)",
    "plait-pg": "Plait (PostgreSQL)",
    "prefect": "Prefect (local)",
    "prefect-server": "Prefect (server)",
    "dbos": "DBOS (SQLite)",
    "dbos-pg": "DBOS (PostgreSQL)",
    "airflow": "Airflow (standalone)",
    "procrastinate": "procrastinate",
    "celery": "Celery (Redis)",
}


def bars(report: dict[str, Any]) -> list[tuple[str, list[tuple[str, float, str]]]]:
    """(workload title, [(tool, ratio, note)]) for every workload with ratios."""
    out = []
    for block in report["workloads"]:
        rows = []
        for r in block["rows"]:
            if r["tool"] not in LABELS:
                continue
            ratio = r.get("x_plait")
            if ratio is not None:
                rows.append((LABELS[r["tool"]], float(ratio), ""))
            elif r.get("error"):
                rows.append((LABELS[r["tool"]], 0.0, "failed / timed out"))
            elif r.get("na"):
                rows.append((LABELS[r["tool"]], 0.0, "n/a"))
            elif r.get("answer"):
                rows.append((LABELS[r["tool"]], 0.0, "no Plait figure to compare with"))
        if any(v for _, v, _ in rows):
            out.append((f"{block['workload']}. {block['name']}", rows))
    return out


def main(src: str, dst: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(Path(src).read_text())
    panels = bars(report)
    if not panels:
        raise SystemExit("no ratios to draw")
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.1 + 0.32 * 9 * len(panels) / 2))
    if len(panels) == 1:
        axes = [axes]
    top = max(v for _, rows in panels for _, v, _ in rows)
    for ax, (title, rows) in zip(axes, panels, strict=True):
        names = [n for n, _, _ in rows][::-1]
        values = [v for _, v, _ in rows][::-1]
        notes = [note for _, _, note in rows][::-1]
        colors = ["#2b7bba" if n.startswith("Plait") else "#d9822b" for n in names]
        shown = [v if v > 0 else 1e-9 for v in values]
        ax.barh(names, shown, color=colors)
        ax.set_xscale("log")
        ax.set_xlim(0.1, max(10.0, top * 3))
        ax.axvline(1.0, color="#444", linewidth=0.8)
        for y, (v, note) in enumerate(zip(values, notes, strict=True)):
            text = f"{v:,.1f}×" if v > 0 else note
            ax.text(max(v, 0.11) * 1.08, y, text, va="center", fontsize=7)
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    when = report.get("at", "")
    load = report.get("machine", {}).get("load_avg_start")
    fig.suptitle(
        f"Time per step as a multiple of Plait's (log scale; lower is faster) — {when}, "
        f"load {load}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
