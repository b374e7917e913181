"""Charts drawn on the server as SVG: no script, a ``<title>`` for screen readers and tooltips,
text labels on every bar and axis. Each chart sits beside a data table with the same numbers
(the accessible fallback), so the picture is never the only way to read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

#: Width of a chart's drawing, in SVG user units (it scales to its card).
WIDTH = 560
BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 150
VALUE_WIDTH = 56


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value as a fraction 0..1 (``None``: nothing to measure) and the
    words a tooltip and a screen reader give for it."""

    label: str
    fraction: float | None
    description: str


def _fmt_pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f}%"


def bar_chart(chart_id: str, title: str, bars: Sequence[Bar]) -> Markup:
    """Horizontal bars of fractions (hit rates), one per row, labelled with the percentage."""
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = max(1, len(bars)) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart bars" viewBox="0 0 {WIDTH} {height}"'
        f' role="img" aria-labelledby="{escape(chart_id)}-title"'
        f' preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    if not bars:
        parts.append(f'<text x="0" y="{BAR_HEIGHT}" class="muted">No tickets in the period</text>')
    for i, bar in enumerate(bars):
        y = BAR_GAP + i * (BAR_HEIGHT + BAR_GAP)
        length = 0.0 if bar.fraction is None else max(0.0, min(1.0, bar.fraction)) * span
        band = (
            "none"
            if bar.fraction is None
            else "good"
            if bar.fraction >= 0.9
            else ("fair" if bar.fraction >= 0.75 else "poor")
        )
        parts.append(
            f'<g class="bar bar-{band}"><title>{escape(bar.description)}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
            f'<rect class="track" x="{LABEL_WIDTH}" y="{y}" width="{span}" height="{BAR_HEIGHT}"'
            ' rx="3"/>'
            f'<rect class="fill" x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}"'
            f' height="{BAR_HEIGHT}" rx="3"/>'
            f'<text x="{LABEL_WIDTH + span + 6}" y="{y + BAR_HEIGHT * 0.7:.1f}"'
            f' class="value">{_fmt_pct(bar.fraction)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:,.1f} h"


def step_chart(
    chart_id: str, title: str, points: Sequence[tuple[datetime, int]], top: int
) -> Markup:
    """A step line of a balance (seconds) over time, from the first point to the last, with
    the zero line, the ``top`` (funded) level, the first and last dates and the last value
    written out."""
    height, left, right, upper, lower = 170, 58, 12, 14, 26
    span_x, span_y = WIDTH - left - right, height - upper - lower
    values = [v for _, v in points]
    high = max([top, *values, 1])
    low = min([0, *values])
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart steps" viewBox="0 0 {WIDTH} {height}"'
        f' role="img" aria-labelledby="{escape(chart_id)}-title"'
        f' preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    if not points:
        parts.append("</svg>")
        return Markup("".join(parts))
    start = points[0][0].timestamp()
    width = max(1.0, points[-1][0].timestamp() - start)

    def x(t: datetime) -> float:
        return left + (t.timestamp() - start) / width * span_x

    def y(v: int) -> float:
        return upper + (high - v) / (high - low) * span_y

    for level, name in ((high, _hours(high)), (0, "0 h")):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + span_x}" y1="{y(level):.1f}"'
            f' y2="{y(level):.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y(level) + 4:.1f}" text-anchor="end">'
            f"{name}</text>"
        )
    path = []
    for i, (t, v) in enumerate(points):
        if i:
            path.append(f"{x(t):.1f},{y(points[i - 1][1]):.1f}")
        path.append(f"{x(t):.1f},{y(v):.1f}")
    parts.append(f'<polyline class="line" points="{" ".join(path)}"/>')
    last_t, last_v = points[-1]
    parts.append(
        f'<circle class="dot" cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="4">'
        f"<title>{escape(last_t.strftime('%Y-%m-%d %H:%M'))} UTC: {_hours(last_v)} left</title>"
        "</circle>"
        f'<text class="axis" x="{left}" y="{height - 8}">{points[0][0]:%Y-%m-%d}</text>'
        f'<text class="axis" x="{left + span_x}" y="{height - 8}" text-anchor="end">'
        f"{last_t:%Y-%m-%d}</text>"
        f'<text class="value" x="{min(x(last_t), left + span_x) - 4:.1f}"'
        f' y="{y(last_v) - 8:.1f}" text-anchor="end">{_hours(last_v)}</text>'
        "</svg>"
    )
    return Markup("".join(parts))
