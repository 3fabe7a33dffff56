"""Charts as server-rendered SVG: stacked bars per day, or lines per group (for values that
do not add up, like a p95). No JavaScript library, nothing fetched from a CDN: the page
carries the chart, every bar and point has a <title> (the browser's own tooltip), and
static/js/workspace.js upgrades those to instant tooltips when it runs.

Every text that reaches the SVG is escaped here (group names come from usage events, which
the product's backend fills with whatever its users typed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
OTHER_COLOR = "#bab0ac"
SINGLE_COLOR = "#3f51b5"

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34


@dataclass
class Series:
    label: str
    values: Sequence[Any]  # one per day; None = no value (lines only)
    color: str


def colors_for(labels: Sequence[str], other_last: bool) -> list[str]:
    if len(labels) == 1:
        return [SINGLE_COLOR]
    out = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    if other_last:
        out[-1] = OTHER_COLOR
    return out


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 × 10^k) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / (count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks, value = [], 0.0
    while value < top - 1e-9:
        ticks.append(value)
        value += step
    return [*ticks, value]


def short_number(value: float) -> str:
    """Axis labels: 1200 -> 1.2k, 3400000 -> 3.4M, 0.25 -> 0.25."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    if magnitude and magnitude < 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _x_labels(days: Sequence[date]) -> list[int]:
    """Indexes of the days that get a label (at most about 10, evenly spaced)."""
    every = max(1, math.ceil(len(days) / 10))
    return list(range(0, len(days), every))


def _frame(
    days: Sequence[date], ticks: list[float], fmt_axis: Callable[[float], str], label: str, height: int
) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    top = ticks[-1] or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{fmt_axis(tick)}</text>')
    band = plot_w / max(1, len(days))
    for i in _x_labels(days):
        x = LEFT + band * (i + 0.5)
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{days[i]:%b} {days[i].day}</text>'
        )
    return parts


def stacked_bars(
    *,
    days: Sequence[date],
    series: Sequence[Series],
    fmt_value: Callable[[Any], str],
    label: str,
    height: int = HEIGHT,
    fmt_axis: Callable[[float], str] = short_number,
) -> SafeString:
    """One bar per day, one segment per series (bottom to top in the given order)."""
    totals = [sum((s.values[i] or 0 for s in series), 0) for i in range(len(days))]
    ticks = nice_ticks(float(max(totals, default=0)))
    parts = _frame(days, ticks, fmt_axis, label, height)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    band = plot_w / max(1, len(days))
    bar_w = max(1.0, band * 0.72)
    scale = plot_h / (ticks[-1] or 1)
    many = len(series) > 1
    for i, day in enumerate(days):
        x = LEFT + band * i + (band - bar_w) / 2
        y = float(TOP + plot_h)
        parts.append(f'<g class="day" data-day="{day.isoformat()}">')
        for s in series:
            value = s.values[i] or 0
            if not value:
                continue
            h = float(value) * scale
            y -= h
            tip = f"{day:%a %d %b %Y}" + (f" · {s.label}" if many else "") + f": {fmt_value(value)}"
            if many:
                tip += f" (of {fmt_value(totals[i])})"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" fill="{s.color}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        parts.append("</g>")
    parts.append(f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped or a number


def lines(
    *,
    days: Sequence[date],
    series: Sequence[Series],
    fmt_value: Callable[[Any], str],
    label: str,
    height: int = HEIGHT,
    fmt_axis: Callable[[float], str] = short_number,
) -> SafeString:
    """One line per series; a day without a value breaks the line (nothing is invented)."""
    values = [float(v) for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0))
    parts = _frame(days, ticks, fmt_axis, label, height)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    band = plot_w / max(1, len(days))
    scale = plot_h / (ticks[-1] or 1)
    many = len(series) > 1
    for s in series:
        points: list[tuple[float, float, int]] = [
            (LEFT + band * (i + 0.5), TOP + plot_h - float(v) * scale, i)
            for i, v in enumerate(s.values)
            if v is not None
        ]
        runs: list[list[tuple[float, float, int]]] = []
        for point in points:
            if runs and point[2] == runs[-1][-1][2] + 1:
                runs[-1].append(point)
            else:
                runs.append([point])
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in run)
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        radius = 3.5 if len(days) <= 45 else 2.2
        for x, y, i in points:
            tip = f"{days[i]:%a %d %b %Y}" + (f" · {s.label}" if many else "") + f": {fmt_value(s.values[i])}"
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{s.color}"><title>{escape(tip)}</title></circle>'
            )
    parts.append(f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped or a number
