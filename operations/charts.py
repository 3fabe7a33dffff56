"""Small server-rendered SVG charts for the admin dashboard: no JavaScript, nothing from a
CDN, readable offline. Every bar and point carries a <title> (the browser's own tooltip).
Labels are escaped here; values are numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 860, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 12, 30
GRID = "#e5e7eb"
TEXT = "#6b7280"


@dataclass
class Series:
    label: str
    values: Sequence[float]
    color: str


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1
    step = next((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), raw)
    start = (low // step) * step
    ticks, value = [], start
    while value <= high + step * 0.001:
        ticks.append(value)
        value += step
    if ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def _frame(
    labels: Sequence[str], ticks: list[float], y: Callable[[float], float], fmt: Callable[[float], str]
) -> list[str]:
    parts = []
    for tick in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11" fill="{TEXT}">'
            f"{escape(fmt(tick))}</text>"
        )
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11" '
            f'fill="{TEXT}">{escape(label)}</text>'
        )
    return parts


def _svg(parts: list[str], title: str, legend: Sequence[Series] = ()) -> SafeString:
    keys = "".join(
        f'<span class="chart-key"><i style="background:{s.color}"></i>{escape(s.label)}</span>' for s in legend
    )
    svg = (
        f'<svg class="ops-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )
    return mark_safe(f'<figure class="ops-figure">{svg}<figcaption>{keys}</figcaption></figure>')  # noqa: S308


def bar_chart(
    labels: Sequence[str], series: Sequence[Series], *, title: str, fmt: Callable[[float], str] = str
) -> SafeString:
    """Grouped bars per label, one per series; negative values hang below zero."""
    values = [v for s in series for v in s.values] or [0]
    low, high = min(0.0, min(values)), max(0.0, max(values))
    ticks = _ticks(low, high)
    lo, hi = ticks[0], ticks[-1]

    def y(value: float) -> float:
        return TOP + (hi - value) / (hi - lo) * (HEIGHT - TOP - BOTTOM) if hi != lo else HEIGHT - BOTTOM

    parts = _frame(labels, ticks, y, fmt)
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    width = slot * 0.8 / max(len(series), 1)
    for j, s in enumerate(series):
        for i, value in enumerate(s.values):
            x = LEFT + slot * i + slot * 0.1 + width * j
            top, bottom = sorted((y(value), y(0)))
            parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{max(bottom - top, 0.5):.1f}" '
                f'fill="{s.color}"><title>{escape(labels[i])} · {escape(s.label)}: {escape(fmt(value))}</title></rect>'
            )
    return _svg(parts, title, series if len(series) > 1 else ())


def line_chart(
    labels: Sequence[str], series: Sequence[Series], *, title: str, fmt: Callable[[float], str] = str
) -> SafeString:
    values = [v for s in series for v in s.values] or [0]
    ticks = _ticks(min(0.0, min(values)), max(values))
    lo, hi = ticks[0], ticks[-1]

    def y(value: float) -> float:
        return TOP + (hi - value) / (hi - lo) * (HEIGHT - TOP - BOTTOM)

    shown = [label if len(labels) <= 14 or i % max(len(labels) // 12, 1) == 0 else "" for i, label in enumerate(labels)]
    parts = _frame(shown, ticks, y, fmt)
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    for s in series:
        points = [(LEFT + slot * (i + 0.5), y(v)) for i, v in enumerate(s.values)]
        path = " ".join(f"{x:.1f},{py:.1f}" for x, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for (x, py), label, value in zip(points, labels, s.values, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{py:.1f}" r="3" fill="{s.color}"><title>{escape(label)} · '
                f"{escape(s.label)}: {escape(fmt(value))}</title></circle>"
            )
    return _svg(parts, title, series if len(series) > 1 else ())
