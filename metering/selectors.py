"""Reads of usage. Every selector takes its tenant explicitly and reads rollups, not raw
events (except hourly per-user breakdowns, which are limited to a short range): daily
series over whole days from the daily rollup (per model), everything else from the hourly
ones."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from metering import latency
from metering.models import Aggregation, Meter

GRANULARITIES = ("hour", "day", "month")
GROUP_BYS = ("meter", "model", "department", "user")
RAW_USER_HOURLY_MAX = timedelta(days=7)
# A latency histogram summed bucket by bucket over rollup rows (a shorter stored array adds zeros).
HIST_SUMS = ", ".join(f"sum(latency_hist[{i}])" for i in range(1, latency.BUCKETS + 1))


class UsageQueryError(ValueError):
    """A usage query that cannot be answered as asked (bad range or combination)."""


def _bucket(ts: datetime | date, granularity: str) -> str:
    if isinstance(ts, datetime):
        ts = ts.astimezone(UTC)
        if granularity == "hour":
            return ts.strftime("%Y-%m-%dT%H:00:00Z")
        ts = ts.date()
    if granularity == "month":
        return ts.strftime("%Y-%m-01")
    return ts.isoformat()


def meter_total(*, tenant_id: int, meter_code: str, start: datetime, end: datetime) -> Decimal:
    """A meter's value over [start, end) from the rollups (sum/count added, max, latest, unique)."""
    meter = Meter.objects.get(code=meter_code)
    with connection.cursor() as cursor:
        if meter.aggregation == Aggregation.UNIQUE:
            cursor.execute(
                "SELECT count(DISTINCT value) FROM metering_meteruniquedaily "
                "WHERE tenant_id = %s AND meter_id = %s AND day >= %s AND day < %s",
                [tenant_id, meter.pk, start.date(), end.date()],
            )
        elif meter.aggregation == Aggregation.MAX:
            cursor.execute(
                "SELECT max(value) FROM metering_meterhourly WHERE tenant_id = %s AND meter_id = %s "
                "AND hour >= %s AND hour < %s",
                [tenant_id, meter.pk, start, end],
            )
        elif meter.aggregation == Aggregation.LATEST:
            cursor.execute(
                "SELECT value FROM metering_meterhourly WHERE tenant_id = %s AND meter_id = %s "
                "AND hour >= %s AND hour < %s ORDER BY last_at DESC LIMIT 1",
                [tenant_id, meter.pk, start, end],
            )
        else:
            cursor.execute(
                "SELECT sum(value) FROM metering_meterhourly WHERE tenant_id = %s AND meter_id = %s "
                "AND hour >= %s AND hour < %s",
                [tenant_id, meter.pk, start, end],
            )
        row = cursor.fetchone()
    return Decimal(row[0]) if row and row[0] is not None else Decimal(0)


def meter_totals(*, tenant_id: int, start: datetime, end: datetime) -> dict[str, Decimal]:
    return {
        code: meter_total(tenant_id=tenant_id, meter_code=code, start=start, end=end)
        for code in Meter.objects.filter(is_active=True).values_list("code", flat=True)
    }


def _check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise UsageQueryError("`to` must be after `from`.")
    if end - start > timedelta(days=800):
        raise UsageQueryError("A usage query covers at most 800 days.")


def usage_series(
    *, tenant_id: int, start: datetime, end: datetime, granularity: str = "day", group_by: str = "meter"
) -> list[dict[str, Any]]:
    """Usage over [start, end) in buckets, one row per bucket and group:
    {"period": ..., "group": ..., "queries": n, "input_tokens": n, "output_tokens": n, "cost_usd": "…"}
    (group_by=meter: {"period", "meter", "value"} per meter)."""
    if granularity not in GRANULARITIES:
        raise UsageQueryError(f"granularity must be one of {', '.join(GRANULARITIES)}.")
    if group_by not in GROUP_BYS:
        raise UsageQueryError(f"group_by must be one of {', '.join(GROUP_BYS)}.")
    _check_range(start, end)
    if group_by == "meter":
        return _meter_series(tenant_id, start, end, granularity)
    trunc = {"hour": "hour", "day": "day", "month": "month"}[granularity]
    with connection.cursor() as cursor:
        if group_by == "model" and granularity != "hour" and _midnight(start) and _midnight(end):
            # Whole days: the daily rollup holds exactly these sums, a 24th of the rows.
            cursor.execute(
                "SELECT date_trunc(%s, day), model, sum(events), sum(input_tokens), sum(output_tokens), sum(cost) "
                "FROM metering_usagedaily WHERE tenant_id = %s AND day >= %s AND day < %s AND event_type = 'query' "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                [trunc, tenant_id, start.astimezone(UTC).date(), end.astimezone(UTC).date()],
            )
        elif group_by in ("model", "department"):
            cursor.execute(
                f"SELECT date_trunc(%s, hour AT TIME ZONE 'UTC'), {group_by}, sum(events), sum(input_tokens), "
                "sum(output_tokens), sum(cost) FROM metering_usagehourly WHERE tenant_id = %s AND hour >= %s "
                "AND hour < %s AND event_type = 'query' GROUP BY 1, 2 ORDER BY 1, 2",
                [trunc, tenant_id, start, end],
            )
        elif granularity == "hour":
            if end - start > RAW_USER_HOURLY_MAX:
                raise UsageQueryError("Hourly usage by user covers at most 7 days; use day or month for longer ranges.")
            cursor.execute(
                "SELECT date_trunc('hour', timestamp AT TIME ZONE 'UTC'), user_ref, count(*), sum(input_tokens), "
                "sum(output_tokens), sum(cost) FROM metering_usageevent WHERE tenant_id = %s AND timestamp >= %s "
                "AND timestamp < %s AND event_type = 'query' GROUP BY 1, 2 ORDER BY 1, 2",
                [tenant_id, start, end],
            )
        else:
            cursor.execute(
                "SELECT date_trunc(%s, day), user_ref, sum(events), sum(input_tokens), sum(output_tokens), "
                "sum(cost) FROM metering_usageuserdaily WHERE tenant_id = %s AND day >= %s AND day < %s "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                [trunc, tenant_id, start.date(), _day_after(end)],
            )
        rows = cursor.fetchall()
    return [
        {
            "period": _bucket(period.replace(tzinfo=UTC) if isinstance(period, datetime) else period, granularity),
            group_by: group,
            "queries": int(events),
            "input_tokens": int(tin),
            "output_tokens": int(tout),
            "cost_usd": str(Decimal(cost).quantize(Decimal("0.000001"))),
        }
        for period, group, events, tin, tout, cost in rows
    ]


def _midnight(moment: datetime) -> bool:
    return moment.astimezone(UTC).time() == datetime.min.time()


def _day_after(end: datetime) -> date:
    """Days whose start is before `end` (a day rollup counts when the range covers its start)."""
    end = end.astimezone(UTC)
    return end.date() + timedelta(days=1) if end.time() != datetime.min.time() else end.date()


def _meter_series(tenant_id: int, start: datetime, end: datetime, granularity: str) -> list[dict[str, Any]]:
    meters = list(Meter.objects.filter(is_active=True).order_by("code"))
    by_id = {m.pk: m for m in meters}
    values: dict[tuple[str, str], Any] = {}
    latest_at: dict[tuple[str, str], datetime] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hour, meter_id, value, last_at FROM metering_meterhourly WHERE tenant_id = %s "
            "AND hour >= %s AND hour < %s",
            [tenant_id, start, end],
        )
        for hour, meter_id, value, last_at in cursor.fetchall():
            meter = by_id.get(meter_id)
            if meter is None:
                continue
            key = (_bucket(hour, granularity), meter.code)
            if meter.aggregation == Aggregation.MAX:
                values[key] = max(values.get(key, value), value)
            elif meter.aggregation == Aggregation.LATEST:
                if key not in latest_at or last_at >= latest_at[key]:
                    values[key], latest_at[key] = value, last_at
            else:
                values[key] = values.get(key, Decimal(0)) + value
        cursor.execute(
            "SELECT day, meter_id, value FROM metering_meteruniquedaily "
            "WHERE tenant_id = %s AND day >= %s AND day < %s",
            [tenant_id, start.date(), _day_after(end)],
        )
        distinct: dict[tuple[str, str], set[str]] = defaultdict(set)
        for day, meter_id, value in cursor.fetchall():
            meter = by_id.get(meter_id)
            if meter is not None:
                distinct[(_bucket(day, granularity if granularity != "hour" else "day"), meter.code)].add(value)
        for key, seen in distinct.items():
            values[key] = len(seen)
    return [
        {"period": period, "meter": code, "value": str(value) if isinstance(value, Decimal) else value}
        for (period, code), value in sorted(values.items())
    ]


def usage_daily(*, tenant_id: int, start: date, end: date) -> list[dict[str, Any]]:
    """One row per day in [start, end] (zero days included): queries, tokens, cost, p95 latency."""
    if end < start:
        raise UsageQueryError("`to` must not be before `from`.")
    if (end - start).days > 800:
        raise UsageQueryError("A usage query covers at most 800 days.")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day, sum(events), sum(input_tokens + output_tokens), sum(cost), {HIST_SUMS} "  # noqa: S608
            "FROM metering_usagedaily WHERE tenant_id = %s AND day >= %s AND day <= %s AND event_type = 'query' "
            "GROUP BY 1",
            [tenant_id, start, end],
        )
        found = {row[0]: row[1:] for row in cursor.fetchall()}
    rows = []
    day = start
    while day <= end:
        events, tokens, cost, *hist = found.get(day, (0, 0, Decimal(0)))
        p95 = latency.percentile([int(n or 0) for n in hist], 0.95)
        rows.append(
            {
                "date": day.isoformat(),
                "query_count": int(events),
                "tokens": int(tokens),
                "cost_usd": str(Decimal(cost).quantize(Decimal("0.000001"))),
                "latency_p95_ms": p95,
            }
        )
        day += timedelta(days=1)
    return rows


def unpriced_models(*, tenant_id: int | None = None) -> list[dict[str, Any]]:
    """Models seen in events without a price (visible in admin; never priced at zero silently)."""
    sql = (
        "SELECT model, count(*), min(timestamp), max(timestamp) FROM metering_usageevent WHERE unpriced"
        + (" AND tenant_id = %s" if tenant_id is not None else "")
        + " GROUP BY model ORDER BY count(*) DESC"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant_id] if tenant_id is not None else [])
        return [{"model": m, "events": n, "first": a, "last": b} for m, n, a, b in cursor.fetchall()]
