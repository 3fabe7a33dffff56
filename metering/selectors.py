"""Reads of usage. Every selector takes its tenant explicitly and reads rollups, not raw
events (except hourly per-user breakdowns, which are limited to a short range): daily
series over whole days from the daily rollup (per model), everything else from the hourly
ones."""

from __future__ import annotations

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
    values = meter_values(tenant_id=tenant_id, codes=[meter_code], start=start, end=end)
    if meter_code not in values:
        raise Meter.DoesNotExist(f"No meter {meter_code!r}.")
    return values[meter_code]


def meter_values(*, tenant_id: int, codes: list[str], start: datetime, end: datetime) -> dict[str, Decimal]:
    """The values of several meters over [start, end) in one query per kind (billing rates
    every resource of a period with one statement): sums added, max kept, latest by time,
    unique counts from the daily distinct values. Unknown codes are left out."""
    values: dict[str, Decimal] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.code, m.aggregation, CASE m.aggregation WHEN 'max' THEN max(h.value) "
            "WHEN 'latest' THEN (array_agg(h.value ORDER BY h.last_at DESC))[1] ELSE sum(h.value) END "
            "FROM metering_meter m LEFT JOIN metering_meterhourly h ON h.meter_id = m.id AND h.tenant_id = %s "
            "AND h.hour >= %s AND h.hour < %s WHERE m.code = ANY(%s) GROUP BY m.code, m.aggregation",
            [tenant_id, start, end, list(codes)],
        )
        uniques = []
        for code, aggregation, value in cursor.fetchall():
            if aggregation == Aggregation.UNIQUE:
                uniques.append(code)
            else:
                values[code] = Decimal(value) if value is not None else Decimal(0)
        if uniques:
            cursor.execute(
                "SELECT m.code, count(DISTINCT u.value) FROM metering_meter m LEFT JOIN metering_meteruniquedaily u "
                "ON u.meter_id = m.id AND u.tenant_id = %s AND u.day >= %s AND u.day < %s "
                "WHERE m.code = ANY(%s) GROUP BY m.code",
                [tenant_id, start.date(), end.date(), uniques],
            )
            values.update({code: Decimal(n) for code, n in cursor.fetchall()})
    return values


def meter_totals(*, tenant_id: int, start: datetime, end: datetime) -> dict[str, Decimal]:
    codes = list(Meter.objects.filter(is_active=True).values_list("code", flat=True))
    return meter_values(tenant_id=tenant_id, codes=codes, start=start, end=end)


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
        whole_from, whole_to = _whole_days(start, end)
        if group_by == "model" and granularity != "hour" and whole_from < whole_to:
            # The whole days from the daily rollup (a 24th of the rows), the hours before and
            # after them from the hourly one.
            cursor.execute(
                "SELECT date_trunc(%s, d), model, sum(n), sum(i), sum(o), sum(c) FROM ("
                "SELECT hour AT TIME ZONE 'UTC' AS d, model, events AS n, input_tokens AS i, output_tokens AS o, "
                "cost AS c FROM metering_usagehourly WHERE tenant_id = %s AND event_type = 'query' "
                "AND ((hour >= %s AND hour < %s) OR (hour >= %s AND hour < %s)) "
                "UNION ALL SELECT day::timestamp, model, events, input_tokens, output_tokens, cost "
                "FROM metering_usagedaily WHERE tenant_id = %s AND event_type = 'query' AND day >= %s AND day < %s"
                ") AS u GROUP BY 1, 2 ORDER BY 1, 2",
                [trunc, tenant_id, start, whole_from, whole_to, end, tenant_id, whole_from.date(), whole_to.date()],
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


def _whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The UTC midnights that bound the whole days inside [start, end) (first >= last: none)."""
    first = datetime.combine(_day_after(start), datetime.min.time(), tzinfo=UTC)
    last = datetime.combine(end.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    return first, last


def _day_after(end: datetime) -> date:
    """Days whose start is before `end` (a day rollup counts when the range covers its start)."""
    end = end.astimezone(UTC)
    return end.date() + timedelta(days=1) if end.time() != datetime.min.time() else end.date()


def _meter_series(tenant_id: int, start: datetime, end: datetime, granularity: str) -> list[dict[str, Any]]:
    """Each meter's value per bucket, aggregated in SQL: sums added, max kept, latest by time,
    unique counts from the daily distinct values (per day even when hours are asked for)."""
    by_id = {m.pk: m for m in Meter.objects.filter(is_active=True)}
    values: dict[tuple[str, str], Any] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc(%s, hour AT TIME ZONE 'UTC'), meter_id, sum(value), max(value), "
            "(array_agg(value ORDER BY last_at DESC))[1] FROM metering_meterhourly "
            "WHERE tenant_id = %s AND hour >= %s AND hour < %s GROUP BY 1, 2",
            [granularity, tenant_id, start, end],
        )
        for bucket, meter_id, total, highest, latest in cursor.fetchall():
            meter = by_id.get(meter_id)
            if meter is None or meter.aggregation == Aggregation.UNIQUE:
                continue
            picks: dict[str, Any] = {Aggregation.MAX: highest, Aggregation.LATEST: latest}
            value = picks.get(meter.aggregation, total)
            values[(_bucket(bucket.replace(tzinfo=UTC), granularity), meter.code)] = value
        cursor.execute(
            "SELECT date_trunc(%s, day), meter_id, count(DISTINCT value) FROM metering_meteruniquedaily "
            "WHERE tenant_id = %s AND day >= %s AND day < %s GROUP BY 1, 2",
            ["day" if granularity == "hour" else granularity, tenant_id, start.date(), _day_after(end)],
        )
        for bucket, meter_id, distinct in cursor.fetchall():
            meter = by_id.get(meter_id)
            if meter is not None:
                values[(_bucket(bucket.date(), granularity if granularity != "hour" else "day"), meter.code)] = distinct
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
