"""Daily latency histograms for the usage page, cached by content.

Summing the hourly latency histograms (78 buckets) is the heaviest read of the usage page:
for a tenant with millions of events a month it is tens of thousands of rows × 78 buckets.
A past day's histogram only changes when events are added to it, and every added event also
raises that day's event and token sums. So the merged histogram of a (day, group) is cached
under a key that holds those sums — its fingerprint: when an event arrives for the day, late
or not, the fingerprint changes and the day is summed again; otherwise the cached histogram
is exactly what the database would give. Usage rollups are append-only (metering's ledger),
which is what makes the fingerprint sound. Today, whose fingerprint moves with every ingest,
is summed each time — one day's rows.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection

from metering import latency

CACHE_TTL = 3 * 86400
TOP_GROUPS = 8
HOURLY_WHERE = "tenant_id = %s AND hour >= %s AND hour < %s AND event_type = 'query'"
DAY = "(hour AT TIME ZONE 'UTC')::date"
HIST_SUMS = ", ".join(f"sum(latency_hist[{i}])" for i in range(1, latency.BUCKETS + 1))
_FINGERPRINT = "sum(events) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o"


def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fingerprints(tenant_id: int, column: str | None, begin: datetime, finish: datetime) -> list[tuple[Any, ...]]:
    """(day, group or None for "Other", events, input tokens, output tokens) per day and group."""
    if column is None:
        sql = f"SELECT {DAY}, NULL, {_FINGERPRINT} FROM metering_usagehourly WHERE {HOURLY_WHERE} GROUP BY 1"  # noqa: S608
    else:
        sql = (
            f"WITH per AS (SELECT {DAY} AS d, {column} AS g, {_FINGERPRINT} FROM metering_usagehourly "  # noqa: S608
            f"WHERE {HOURLY_WHERE} GROUP BY 1, 2), "
            f"top AS (SELECT g FROM per GROUP BY g ORDER BY sum(n) DESC, g LIMIT {TOP_GROUPS}) "
            "SELECT per.d, top.g, sum(n), sum(i), sum(o) FROM per LEFT JOIN top ON per.g = top.g GROUP BY 1, 2"
        )
    return _fetch(sql, [tenant_id, begin, finish])


def _key(tenant_id: int, breakdown: str, group: Any, top_signature: str, day: date, sums: tuple[Any, ...]) -> str:
    # The "Other" group's content depends on which groups are on top; a named group's does not.
    name = "all" if breakdown == "none" else ("other:" + top_signature if group is None else f"g:{group}")
    digest = hashlib.sha256(name.encode()).hexdigest()[:20]
    return f"ws-latency:{tenant_id}:{breakdown}:{digest}:{day.isoformat()}:{':'.join(str(int(s)) for s in sums)}"


def daily_histograms(*, tenant_id: int, breakdown: str, begin: datetime, finish: datetime) -> dict[Any, dict]:
    """{group (None = Other, "__all__" without breakdown): {day: merged histogram}} over
    [begin, finish), the biggest TOP_GROUPS groups by events and the rest as None."""
    column = None if breakdown == "none" else breakdown
    prints = _fingerprints(tenant_id, column, begin, finish)
    top = sorted({g for _, g, *_ in prints if g is not None})
    signature = hashlib.sha256(json.dumps(top).encode()).hexdigest()[:20]
    keys = {(d, g): _key(tenant_id, breakdown, g, signature, d, tuple(sums)) for d, g, *sums in prints}
    cached = cache.get_many(list(keys.values())) if keys else {}
    missing = sorted({d for (d, _g), key in keys.items() if key not in cached})
    fresh: dict[tuple[date, Any], list[int]] = {}
    if missing:
        low = max(begin, datetime(missing[0].year, missing[0].month, missing[0].day, tzinfo=UTC))
        high = min(finish, datetime(missing[-1].year, missing[-1].month, missing[-1].day, tzinfo=UTC) + timedelta(1))
        group = "NULL" if column is None else f"CASE WHEN {column} = ANY(%s) THEN {column} END"
        # Usually the missing days are one run (all of them on a first visit, or just today):
        # the time range alone selects them. Otherwise name the days.
        days_with_data = sorted({d for d, *_ in prints})
        run = days_with_data[days_with_data.index(missing[0]) : days_with_data.index(missing[-1]) + 1]
        only = "" if run == missing else f" AND {DAY} = ANY(%s::date[])"
        sql = (
            f"SELECT {DAY}, {group}, {HIST_SUMS} FROM metering_usagehourly "  # noqa: S608
            f"WHERE {HOURLY_WHERE}{only} GROUP BY 1, 2"
        )
        params = ([] if column is None else [top]) + [tenant_id, low, high] + ([missing] if only else [])
        for d, g, *hist in _fetch(sql, params):
            fresh[(d, g)] = [int(n or 0) for n in hist]
        cache.set_many({keys[k]: v for k, v in fresh.items() if k in keys}, CACHE_TTL)
    out: dict[Any, dict] = {}
    for (d, g), key in keys.items():
        merged = cached[key] if key in cached else fresh.get((d, g))
        if merged is not None:
            out.setdefault("__all__" if column is None else g, {})[d] = merged
    return out
