"""A preview of the Grafana dashboard, drawn in headless Chromium from real Prometheus data.

Grafana cannot be installed on the development machines (its packages are not reachable from
them), so the README's picture of the dashboard is this preview: the dashboard JSON's panels at
their grid positions, each filled with what a real Prometheus returned for that panel's queries.
Colours, axes and fonts are simpler than Grafana's; the layout, titles and data are the real ones.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yobidashi_testing.browser import chromium

WIDTH = 1600
ROW_PX = 34  # one unit of Grafana's grid height
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    values: list[float]  # NaN where Prometheus had no sample at that step

    def legend(self, template: str) -> str:
        if template:
            return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: self.labels.get(m[1], ""), template)
        return ", ".join(f"{k}={v}" for k, v in self.labels.items() if k != "__name__") or "value"

    @property
    def last(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return finite[-1] if finite else math.nan


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "No data"
    if unit == "percentunit":
        return f"{value * 100:.0f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.1f} s"
    if unit == "bool_yes_no":
        return "Yes" if value else "No"
    return f"{value:.3g}"


def _timeseries(panel: dict[str, Any], drawn: list[tuple[str, Series]], height: int) -> str:
    finite = [v for _, s in drawn for v in s.values if math.isfinite(v)]
    top = max(finite, default=1.0) or 1.0
    lines, legend = [], []
    for n, (label, series) in enumerate(drawn):
        colour = PALETTE[n % len(PALETTE)]
        steps = max(len(series.values) - 1, 1)
        points = " ".join(
            f"{i * 400 / steps:.1f},{100 - v * 96 / top:.1f}"
            for i, v in enumerate(series.values)
            if math.isfinite(v)
        )
        lines.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5" '
            'vector-effect="non-scaling-stroke"/>'
        )
        legend.append(f'<span style="color:{colour}">━</span> {html.escape(label)}')
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    return (
        f'<div class="axis">{html.escape(fmt(top, unit))}</div>'
        f'<svg viewBox="0 0 400 100" preserveAspectRatio="none" style="height:{height}px">'
        f'<line x1="0" y1="100" x2="400" y2="100" stroke="#444"/>{"".join(lines)}</svg>'
        f'<div class="legend">{" &nbsp; ".join(legend[:8])}</div>'
    )


def _stat(panel: dict[str, Any], drawn: list[tuple[str, Series]]) -> str:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    cells = [
        f'<div class="stat"><b>{html.escape(fmt(s.last, unit))}</b>'
        f"<small>{html.escape(label) if len(drawn) > 1 else ''}</small></div>"
        for label, s in drawn[:6]
    ]
    return "".join(cells) or '<div class="stat"><b>No data</b></div>'


def _bars(panel: dict[str, Any], drawn: list[tuple[str, Series]]) -> str:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    top = max((s.last for _, s in drawn if math.isfinite(s.last)), default=1.0) or 1.0
    rows = []
    for n, (label, series) in enumerate(drawn[:8]):
        share = series.last / top * 100 if math.isfinite(series.last) else 0
        rows.append(
            f'<div class="bar"><span>{html.escape(label)}</span>'
            f'<i style="width:{share:.0f}%;background:{PALETTE[n % len(PALETTE)]}"></i>'
            f"<em>{html.escape(fmt(series.last, unit))}</em></div>"
        )
    return "".join(rows)


def page(board: dict[str, Any], data: Mapping[tuple[int, str], list[Series]], note: str) -> str:
    """The dashboard as one HTML page: ``data`` maps (panel id, refId) to its series."""
    cells = []
    for panel in panels(board["panels"]):
        pos = panel["gridPos"]
        place = (
            f"grid-column:{pos['x'] + 1}/span {pos['w']};grid-row:{pos['y'] + 1}/span {pos['h']}"
        )
        title = html.escape(panel.get("title", ""))
        if panel["type"] == "row":
            cells.append(f'<div class="row" style="{place}">{title}</div>')
            continue
        drawn = [
            (series.legend(target.get("legendFormat", "")), series)
            for target in panel.get("targets", [])
            for series in data.get((panel["id"], target["refId"]), [])
        ]
        if panel["type"] == "stat":
            body = _stat(panel, drawn)
        elif panel["type"] == "bargauge":
            body = _bars(panel, drawn)
        else:
            body = _timeseries(panel, drawn, pos["h"] * ROW_PX - 62)
        cells.append(f'<div class="panel" style="{place}"><h3>{title}</h3>{body}</div>')
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels(board["panels"]))
    return f"""<!doctype html><meta charset="utf-8"><style>
body{{margin:0;background:#111217;color:#ccccdc;font:12px sans-serif;width:{WIDTH}px}}
header{{padding:10px 14px;font-size:16px}} header small{{color:#8e8e8e;margin-left:12px}}
main{{display:grid;grid-template-columns:repeat(24,1fr);grid-template-rows:repeat({rows},{ROW_PX}px);
gap:6px;padding:0 10px 10px}}
.panel{{background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:6px;overflow:hidden}}
.row{{font-size:14px;font-weight:bold;padding-top:8px}}
h3{{margin:0 0 4px;font-size:12px;font-weight:600}} svg{{width:100%;display:block}}
.axis{{font-size:10px;color:#8e8e8e}} .legend{{font-size:10px;white-space:nowrap;overflow:hidden}}
.stat{{display:inline-block;margin-right:14px}}
.stat b{{font-size:26px;color:#73bf69;display:block}}
.bar{{display:flex;align-items:center;gap:6px;margin:3px 0}} .bar span{{width:34%;overflow:hidden}}
.bar i{{height:12px;display:block}} .bar em{{font-style:normal}}
</style><header>{html.escape(board.get("title", ""))}<small>{html.escape(note)}</small></header>
<main>{"".join(cells)}</main>"""


def screenshot(document: str, out: Path) -> None:
    with chromium() as browser:
        tab = browser.new_page(viewport={"width": WIDTH, "height": 900})
        tab.set_content(document)
        tab.screenshot(path=str(out), full_page=True)
