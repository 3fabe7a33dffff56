"""Bits the operations admin pages share."""

from __future__ import annotations

from decimal import Decimal

from django.utils.html import format_html
from django.utils.safestring import SafeString

COLORS = {"pass": "#15803d", "passed": "#15803d", "fail": "#b91c1c", "flagged": "#b91c1c"}
GREY = "#6b7280"


def badge(status: str, label: str | None = None) -> SafeString:
    return format_html(
        '<span class="status-badge" style="background:{}">{}</span>', COLORS.get(status, GREY), label or status
    )


def percent(value: Decimal | float | None, places: int = 2) -> str:
    if value is None:
        return "–"
    return f"{Decimal(value) * 100:+.{places}f}%"


def usd(value: Decimal | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}"
