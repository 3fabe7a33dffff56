"""Usage for the workspace's charts: one metric per day over a date range, in total or
broken down by model, department or user (the biggest groups, the rest as "Other").

Reads metering's rollups directly (metering_usagedaily for totals and models,
metering_usagehourly for departments, metering_usageuserdaily for users) with the
same sums as metering.selectors, so a chart, its table and the usage API agree to the
digit; the breakdown's top-N and "Other" are folded in SQL so a tenant with thousands of
users or millions of events still answers in one short query. p95 latency is merged from
the rollups' latency histograms (summed bucket by bucket in SQL, cached per day by content —
workspace/selectors/latency.py — and the percentile taken here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from metering import latency
from workspace.selectors.latency import TOP_GROUPS, daily_histograms, source_for

MAX_DAYS = 366
COST_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    sql: str  # aggregate over a rollup row (hourly and user-daily share the column names)
    stacked: bool = True


METRICS: dict[str, Metric] = {
    "queries": Metric("Queries", "queries", "sum(events)"),
    "tokens": Metric("Tokens", "tokens", "sum(input_tokens + output_tokens)"),
    "cost": Metric("Cost", "USD", "sum(cost)"),
    "latency": Metric("p95 latency", "ms", "", stacked=False),
}
BREAKDOWNS: dict[str, str] = {"none": "Total", "model": "Model", "department": "Department", "user": "User"}
NO_GROUP = {"model": "(no model)", "department": "(no department)", "user": "(no user)"}
# The group of events without a user (no user reference holds a control character).
NO_USER = "\x00no-user"


class UsageRangeError(ValueError):
    pass


@dataclass
class Column:
    key: str | None  # the group's value; None for "Other"; "__total__" for the total
    label: str


@dataclass
class UsageTable:
    metric: str
    breakdown: str
    start: date
    end: date  # inclusive
    days: list[date]
    columns: list[Column]  # the groups (chart series), without the total
    rows: list[list[Any]]  # per day: one value per column
    totals: list[Any]  # per day: the sum (stacked metrics) or the p95 over everything (latency)
    note: str = ""
    grand_total: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not any(v for v in self.totals if v)

    @property
    def total_label(self) -> str:
        return "Total" if METRICS[self.metric].stacked else "All"


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    if end < start:
        raise UsageRangeError("The end date must not be before the start date.")
    if (end - start).days + 1 > MAX_DAYS:
        raise UsageRangeError(f"A chart covers at most {MAX_DAYS} days.")
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return begin, datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _value(metric: str, raw: Any) -> Any:
    if metric == "cost":
        return Decimal(raw or 0).quantize(COST_PLACES)
    return int(raw or 0)


def _grouped_sql(source: str, day: str, group: str, where: str, per_row: str, rank_by: str, values: str) -> str:
    """Per day and group, with groups outside the top N folded into one NULL group."""
    return (
        f"WITH per AS (SELECT {day} AS d, {group} AS g, {per_row} FROM {source} WHERE {where} GROUP BY 1, 2), "  # noqa: S608
        f"top AS (SELECT g FROM per GROUP BY g ORDER BY sum({rank_by}) DESC, g LIMIT {TOP_GROUPS}) "
        f"SELECT per.d, top.g, {values} FROM per LEFT JOIN top ON per.g = top.g GROUP BY 1, 2"
    )


def _daily_totals(metric: Metric, tenant_id: int, begin: datetime, finish: datetime) -> dict[date, Any]:
    src = source_for(None)
    sql = f"SELECT {src.day}, {metric.sql} FROM {src.table} WHERE {src.where} GROUP BY 1"  # noqa: S608
    return {d: v for d, v in _fetch(sql, src.params(tenant_id, begin, finish))}


def _stacked(name: str, breakdown: str, tenant_id: int, begin: datetime, finish: datetime) -> dict:
    """{group key (None = Other): {day: value}} and the group order (biggest first)."""
    metric = METRICS[name]
    if breakdown == "none":
        return {"__all__": _daily_totals(metric, tenant_id, begin, finish)}
    if breakdown == "user":
        sql = _grouped_sql(
            "metering_usageuserdaily", "day", "user_ref", "tenant_id = %s AND day >= %s AND day < %s",
            f"{metric.sql} AS v", "v", "sum(v)",
        )  # fmt: skip
        rows = _fetch(sql, [tenant_id, begin.date(), finish.date()])
    else:
        src = source_for(breakdown)
        sql = _grouped_sql(src.table, src.day, breakdown, src.where, f"{metric.sql} AS v", "v", "sum(v)")
        rows = _fetch(sql, src.params(tenant_id, begin, finish))
    series: dict[Any, dict[date, Any]] = {}
    for d, g, v in rows:
        series.setdefault(g, {})[d] = v
    if breakdown == "user":
        # Events without a user are in no user's rollup: show them as their own group so the
        # stack adds up to the same total as the other views.
        totals = _daily_totals(metric, tenant_id, begin, finish)
        rest = {}
        for d, total in totals.items():
            users = sum((s.get(d) or 0 for s in series.values()), Decimal(0) if name == "cost" else 0)
            if total - users > 0:
                rest[d] = total - users
        if rest:
            series[NO_USER] = rest
    return series


def _latency(breakdown: str, tenant_id: int, begin: datetime, finish: datetime) -> dict:
    """{group key: {day: merged histogram}} (content-cached: workspace/selectors/latency.py)."""
    return daily_histograms(tenant_id=tenant_id, breakdown=breakdown, begin=begin, finish=finish)


def _order(series: dict[Any, dict[date, Any]], weight: Any) -> list[Any]:
    """Biggest group first; "(no user)" and "Other" last."""
    keys = [k for k in series if k not in (None, NO_USER)]
    keys.sort(key=lambda k: (-weight(series[k]), str(k)))
    return keys + [k for k in (NO_USER, None) if k in series]


def usage_table(*, tenant_id: int, metric: str, breakdown: str, start: date, end: date) -> UsageTable:
    """The numbers behind one chart: every day of [start, end] (days without usage as 0, or
    no value for latency), one column per group, and the day's total."""
    if metric not in METRICS or breakdown not in BREAKDOWNS:
        raise UsageRangeError("Unknown metric or breakdown.")
    begin, finish = _bounds(start, end)
    days = _days(start, end)
    note = ""
    if metric == "latency" and breakdown == "user":
        note = "Latency is not recorded per user; showing all users together."
        breakdown = "none"

    def label(key: Any) -> str:
        if key == "__all__":
            return METRICS[metric].label
        if key is None:
            return "Other"
        if key == NO_USER:
            return NO_GROUP["user"]
        return str(key) if key != "" else NO_GROUP.get(breakdown, "(none)")

    if METRICS[metric].stacked:
        series = _stacked(metric, breakdown, tenant_id, begin, finish)
        order = _order(series, lambda s: sum(s.values()))
        zero = _value(metric, 0)
        rows = [[_value(metric, series[k].get(d, zero)) for k in order] for d in days]
        totals = [sum(row, zero) for row in rows]
        grand = sum(totals, zero)
    else:
        hists = _latency(breakdown, tenant_id, begin, finish)
        order = _order(hists, lambda s: sum(sum(h) for h in s.values()))
        rows, totals = [], []
        everything: list[int] = []
        for d in days:
            merged: list[int] = []
            row = []
            for k in order:
                hist = hists[k].get(d)
                row.append(latency.percentile(hist, 0.95) if hist else None)
                if hist:
                    latency.add_into(merged, hist)
            rows.append(row)
            totals.append(latency.percentile(merged, 0.95))
            latency.add_into(everything, merged)
        grand = latency.percentile(everything, 0.95)
    columns = [Column(k, label(k)) for k in order]
    return UsageTable(metric, breakdown, start, end, days, columns, rows, totals, note, grand)
