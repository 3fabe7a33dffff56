"""Daily latency histograms for the usage page, cached by content.

Summing latency histograms (85 buckets) is the heaviest read of the usage page. In total and
by model they come from the daily rollup (a few rows per day); by department only the hourly
rollup has them — for a tenant with millions of events a month tens of thousands of rows ×
85 buckets.
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
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection

from metering.selectors import HIST_SUMS

CACHE_TTL = 3 * 86400
TOP_GROUPS = 8
HOURLY_WHERE = "tenant_id = %s AND hour >= %s AND hour < %s AND event_type = 'query'"
DAY = "(hour AT TIME ZONE 'UTC')::date"
DAILY_WHERE = "tenant_id = %s AND day >= %s AND day < %s AND event_type = 'query'"
_FINGERPRINT = "sum(events) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o"


@dataclass(frozen=True)
class Source:
    """A rollup table read per UTC day: the daily one where it has the breakdown (total,
    model), else the hourly one (department)."""

    table: str
    day: str
    where: str
    daily: bool

    def params(self, tenant_id: int, begin: datetime, finish: datetime) -> list[Any]:
        if self.daily:
            return [tenant_id, begin.date(), finish.date()]
        return [tenant_id, begin, finish]


DAILY = Source("metering_usagedaily", "day", DAILY_WHERE, daily=True)
HOURLY = Source("metering_usagehourly", DAY, HOURLY_WHERE, daily=False)


def source_for(column: str | None) -> Source:
    return DAILY if column in (None, "model") else HOURLY


def _fetch(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fingerprints(tenant_id: int, column: str | None, begin: datetime, finish: datetime) -> list[tuple[Any, ...]]:
    """(day, group or None for "Other", events, input tokens, output tokens) per day and group."""
    src = source_for(column)
    if column is None:
        sql = f"SELECT {src.day}, NULL, {_FINGERPRINT} FROM {src.table} WHERE {src.where} GROUP BY 1"  # noqa: S608
    else:
        sql = (
            f"WITH per AS (SELECT {src.day} AS d, {column} AS g, {_FINGERPRINT} FROM {src.table} "  # noqa: S608
            f"WHERE {src.where} GROUP BY 1, 2), "
            f"top AS (SELECT g FROM per GROUP BY g ORDER BY sum(n) DESC, g LIMIT {TOP_GROUPS}) "
            "SELECT per.d, top.g, sum(n), sum(i), sum(o) FROM per LEFT JOIN top ON per.g = top.g GROUP BY 1, 2"
        )
    return _fetch(sql, src.params(tenant_id, begin, finish))


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
        src = source_for(column)
        only = "" if run == missing else f" AND {src.day} = ANY(%s::date[])"
        sql = (
            f"SELECT {src.day}, {group}, {HIST_SUMS} FROM {src.table} "  # noqa: S608
            f"WHERE {src.where}{only} GROUP BY 1, 2"
        )
        params = ([] if column is None else [top]) + src.params(tenant_id, low, high) + ([missing] if only else [])
        for d, g, *hist in _fetch(sql, params):
            fresh[(d, g)] = [int(n or 0) for n in hist]
        cache.set_many({keys[k]: v for k, v in fresh.items() if k in keys}, CACHE_TTL)
    out: dict[Any, dict] = {}
    for (d, g), key in keys.items():
        merged = cached[key] if key in cached else fresh.get((d, g))
        if merged is not None:
            out.setdefault("__all__" if column is None else g, {})[d] = merged
    return out
