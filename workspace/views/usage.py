"""Usage: a chart of one metric per day with its table, and the same numbers as CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from workspace import charts
from workspace.forms import RANGES, UsageFilterForm
from workspace.permissions import member_required
from workspace.selectors.usage import BREAKDOWNS, METRICS, UsageTable, usage_table
from workspace.views.common import page, tenant_of

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Without a breakdown the columns are named as in the usage API's CSV (/api/v1/usage.csv).
CSV_COLUMN = {"queries": "query_count", "tokens": "tokens", "cost": "cost_usd", "latency": "latency_p95_ms"}


def fmt_value(metric: str, value: Any) -> str:
    """A value as the chart's tooltip and the table show it."""
    if value is None:
        return "—"
    if metric == "cost":
        value = Decimal(value)
        return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:,.4f}"
    if metric == "latency":
        return f"{value:,.0f} ms"
    return f"{int(value):,}"


def cell(metric: str, value: Any) -> str:
    """A table cell: exact (cost to the micro-dollar, as the usage API gives it)."""
    if value is None:
        return "—"
    if metric == "cost":
        return f"{Decimal(value):,.6f}"
    if metric == "latency":
        return f"{value:,.1f}"
    return f"{int(value):,}"


def raw(metric: str, value: Any) -> str:
    """A CSV value: the table's number without thousands separators."""
    if value is None:
        return ""
    if metric == "cost":
        return f"{Decimal(value):.6f}"
    if metric == "latency":
        return f"{value:.1f}"
    return str(int(value))


def chart_for(table: UsageTable, height: int = charts.HEIGHT) -> SafeString:
    other_last = bool(table.columns) and table.columns[-1].key is None
    colors = charts.colors_for([c.label for c in table.columns], other_last)
    series = [
        charts.Series(column.label, [row[i] for row in table.rows], colors[i]) for i, column in enumerate(table.columns)
    ]
    metric = METRICS[table.metric]
    label = f"{metric.label} per day, {table.start:%Y-%m-%d} to {table.end:%Y-%m-%d}"
    draw = charts.stacked_bars if metric.stacked else charts.lines

    def fmt(value: Any) -> str:
        return fmt_value(table.metric, value)

    def axis(value: float) -> str:
        return ("$" if table.metric == "cost" else "") + charts.short_number(value)

    return draw(days=table.days, series=series, fmt_value=fmt, label=label, height=height, fmt_axis=axis)


def _filter(request: HttpRequest) -> tuple[UsageFilterForm, dict[str, Any]]:
    today = timezone.now().date()
    form = UsageFilterForm(request.GET or None, today=today)
    if request.GET and form.is_valid():
        return form, form.cleaned_data
    fallback = UsageFilterForm({"metric": request.GET.get("metric", ""), "breakdown": request.GET.get("breakdown", "")},
                               today=today)  # fmt: skip
    if not fallback.is_valid():
        fallback = UsageFilterForm({}, today=today)
        fallback.is_valid()
    return form, fallback.cleaned_data


def _table(request: HttpRequest, choice: dict[str, Any]) -> UsageTable:
    return usage_table(
        tenant_id=tenant_of(request).pk,
        metric=choice["metric"],
        breakdown=choice["breakdown"],
        start=choice["start"],
        end=choice["end"],
    )


def _query(choice: dict[str, Any]) -> dict[str, str]:
    params = {"metric": choice["metric"], "breakdown": choice["breakdown"], "range": choice["range"]}
    if choice["range"] == "custom":
        params.update(start=choice["start"].isoformat(), end=choice["end"].isoformat())
    return params


@member_required
def usage(request: HttpRequest) -> HttpResponse:
    form, choice = _filter(request)
    table = _table(request, choice)
    metric = table.metric
    query = _query(choice)
    other_last = bool(table.columns) and table.columns[-1].key is None
    colors = charts.colors_for([c.label for c in table.columns], other_last)
    legend = []
    for i, column in enumerate(table.columns):
        values = [row[i] for row in table.rows]
        total = sum((v for v in values if v is not None), Decimal(0) if metric == "cost" else 0)
        legend.append({"label": column.label, "color": colors[i], "total": fmt_value(metric, total)})
    return page(
        request,
        "workspace/usage.html",
        {
            "form": form,
            "choice": choice,
            "query": query,
            "ranges": RANGES,
            "metrics": {k: m.label for k, m in METRICS.items()},
            "breakdowns": BREAKDOWNS,
            "table": table,
            "metric": METRICS[metric],
            "chart": None if table.is_empty else chart_for(table),
            "legend": legend if len(table.columns) > 1 and METRICS[metric].stacked else [],
            "series_legend": legend if len(table.columns) > 1 else [],
            "rows": [
                (day, [(cell(metric, v), not v) for v in row], cell(metric, total))
                for day, row, total in zip(table.days, table.rows, table.totals, strict=True)
            ],
            "grand_total": fmt_value(metric, table.grand_total),
        },
    )


@member_required
def usage_export(request: HttpRequest) -> HttpResponse:
    """The table on the page, as CSV: same choice, same numbers (without separators)."""
    _, choice = _filter(request)
    table = _table(request, choice)
    metric = table.metric
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    headers = [_safe(c.label) for c in table.columns] if len(table.columns) > 1 else []
    writer.writerow(["date", *headers, table.total_label.lower() if headers else CSV_COLUMN[metric]])
    for day, row, total in zip(table.days, table.rows, table.totals, strict=True):
        writer.writerow([day.isoformat(), *([raw(metric, v) for v in row] if headers else []), raw(metric, total)])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    slug = tenant_of(request).slug
    name = f"{slug}-{metric}-{table.breakdown}-{table.start}-{table.end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _safe(text: str) -> str:
    """A spreadsheet would run a cell starting with = + - @ as a formula: quote it."""
    return "'" + text if text.startswith(_FORMULA_START) else text
