"""Writing usage: one transaction stores a batch's new events (COPY into a temp table, then
INSERT … ON CONFLICT DO NOTHING on the idempotency key) and adds them to the rollups, so raw
events and rollups always agree. Real-time quota counters and alerts follow after commit.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from psycopg2.extras import execute_values

from metering import latency
from metering.ingest import Context, Event, Rejection, validate
from metering.models import Aggregation, Meter, UsageCursor
from metering.periods import period_bounds
from metering.pricing import price_book
from tenants.models import Tenant

_COLUMNS = (
    "tenant_id, event_id, event_type, timestamp, received_at, model, input_tokens, output_tokens, "
    "latency_ms, department, user_ref, properties, cost, unpriced, late"
)
_BUFFER_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_buf (
    tenant_id bigint, event_id varchar(200), event_type varchar(40), timestamp timestamptz,
    received_at timestamptz, model varchar(100), input_tokens bigint, output_tokens bigint,
    latency_ms integer, department varchar(100), user_ref varchar(100), properties jsonb,
    cost numeric(20,10), unpriced boolean, late boolean
) ON COMMIT DELETE ROWS
"""


@dataclass(frozen=True)
class MeterSpec:
    id: int
    code: str
    event_type: str
    aggregation: str
    property: str
    resource: str


@dataclass
class TenantInfo:
    id: int
    slug: str
    anchor_day: int
    closed_through: datetime | None


@dataclass
class IngestResult:
    accepted: int
    duplicates: int
    rejected: int
    results: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "results": self.results,
        }


def active_meters() -> list[MeterSpec]:
    return [
        MeterSpec(m.pk, m.code, m.event_type, m.aggregation, m.property, m.resource)
        for m in Meter.objects.filter(is_active=True).order_by("pk")
    ]


def _tenants_for(raw_events: list[Any]) -> dict[str, TenantInfo]:
    slugs = {e.get("tenant") for e in raw_events if isinstance(e, dict) and isinstance(e.get("tenant"), str)}
    if not slugs:
        return {}
    rows = Tenant.objects.customers().filter(slug__in=slugs).values_list("pk", "slug", "created_at")
    tenants = {slug: TenantInfo(pk, slug, min(created.astimezone(UTC).day, 28), None) for pk, slug, created in rows}
    by_id = {t.id: t for t in tenants.values()}
    for tenant_id, closed in UsageCursor.objects.filter(tenant_id__in=by_id).values_list("tenant_id", "closed_through"):
        by_id[tenant_id].closed_through = closed
    return tenants


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _value_of(event: Event, prop: str) -> Any:
    if prop == "input_tokens":
        return event.input_tokens
    if prop == "output_tokens":
        return event.output_tokens
    if prop == "total_tokens":
        return event.input_tokens + event.output_tokens
    if prop == "latency_ms":
        return event.latency_ms
    if prop == "user":
        return event.user_ref or None
    if prop in event.extra:
        return event.extra[prop]
    return event.properties.get(prop)


def events_record(*, raw_events: list[Any], now: datetime | None = None) -> IngestResult:
    """Validate, price and store a batch. Idempotent per (tenant, id): a repeated id — in the
    batch, in an earlier batch, or in a concurrent request — is reported as a duplicate and
    counted once. Atomic: the batch's events and rollups commit together or not at all."""
    now = now or timezone.now()
    tenants = _tenants_for(raw_events)
    meters = active_meters()
    numeric: dict[str, set[str]] = defaultdict(set)
    for m in meters:
        if m.aggregation in (Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST):
            numeric[m.event_type].add(m.property)
    ctx = Context(
        now=now,
        tenants={slug: t.id for slug, t in tenants.items()},
        event_types=frozenset(m.event_type for m in meters),
        numeric_properties={k: frozenset(v) for k, v in numeric.items()},
    )
    results: list[dict[str, Any] | None] = [None] * len(raw_events)
    valid: list[Event] = []
    seen: set[tuple[int, str]] = set()
    rejected = 0
    book = price_book()
    closed = {t.id: t.closed_through for t in tenants.values()}
    for index, raw in enumerate(raw_events):
        checked = validate(index, raw, ctx)
        if isinstance(checked, Rejection):
            results[index] = checked.as_dict()
            rejected += 1
            continue
        key = (checked.tenant_id, checked.id)
        if key in seen:
            results[index] = {"index": index, "id": checked.id, "status": "duplicate"}
            continue
        seen.add(key)
        cost = book.cost(checked.model, checked.timestamp, checked.input_tokens, checked.output_tokens)
        if cost is None:
            checked.unpriced = checked.event_type == "query" or bool(checked.model)
        else:
            checked.cost = cost
        limit = closed.get(checked.tenant_id)
        checked.late = limit is not None and checked.timestamp < limit
        valid.append(checked)

    accepted: set[tuple[int, str]] = set()
    if valid:
        with transaction.atomic():
            accepted = _store(valid, now)
            stored = [e for e in valid if (e.tenant_id, e.id) in accepted]
            if stored:
                _rollup(stored, meters)
                deltas = _counter_deltas(stored, meters, tenants)
                transaction.on_commit(lambda: _after_commit(deltas))
    for event in valid:
        status = "accepted" if (event.tenant_id, event.id) in accepted else "duplicate"
        entry: dict[str, Any] = {"index": event.index, "id": event.id, "status": status}
        if status == "accepted" and event.unpriced:
            entry["unpriced"] = True
        if status == "accepted" and event.late:
            entry["late"] = True
        results[event.index] = entry
    final = [r for r in results if r is not None]
    return IngestResult(
        accepted=len(accepted),
        duplicates=len(raw_events) - len(accepted) - rejected,
        rejected=rejected,
        results=final,
    )


def _store(events: list[Event], now: datetime) -> set[tuple[int, str]]:
    received = now.isoformat()
    lines = []
    for e in events:
        lines.append(
            "\t".join(
                (
                    str(e.tenant_id),
                    _copy_text(e.id),
                    e.event_type,
                    e.timestamp.isoformat(),
                    received,
                    _copy_text(e.model),
                    str(e.input_tokens),
                    str(e.output_tokens),
                    "\\N" if e.latency_ms is None else str(e.latency_ms),
                    _copy_text(e.department),
                    _copy_text(e.user_ref),
                    _copy_text(e.properties_json),
                    str(e.cost),
                    "t" if e.unpriced else "f",
                    "t" if e.late else "f",
                )
            )
        )
    buffer = io.StringIO("\n".join(lines) + "\n")
    with connection.cursor() as cursor:
        cursor.execute(_BUFFER_DDL)
        cursor.cursor.copy_expert(f"COPY ingest_buf ({_COLUMNS}) FROM STDIN", buffer)
        cursor.execute(
            f"INSERT INTO metering_usageevent ({_COLUMNS}) SELECT {_COLUMNS} FROM ingest_buf "
            "ORDER BY tenant_id, event_id ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING tenant_id, event_id"
        )
        return {(int(t), str(i)) for t, i in cursor.fetchall()}


def _hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _rollup(events: list[Event], meters: list[MeterSpec]) -> None:
    hourly: dict[tuple, list[Any]] = {}
    users: dict[tuple, list[Any]] = {}
    meter_sum: dict[tuple, list[Any]] = {}
    meter_max: dict[tuple, list[Any]] = {}
    meter_latest: dict[tuple, list[Any]] = {}
    uniques: set[tuple] = set()
    by_type: dict[str, list[MeterSpec]] = defaultdict(list)
    for m in meters:
        by_type[m.event_type].append(m)
    for e in events:
        hour = _hour(e.timestamp)
        key = (e.tenant_id, hour, e.event_type, e.model, e.department)
        row = hourly.get(key)
        if row is None:
            row = hourly[key] = [0, 0, 0, Decimal(0), 0, 0, [0] * latency.BUCKETS]
        row[0] += 1
        row[1] += e.input_tokens
        row[2] += e.output_tokens
        row[3] += e.cost
        row[4] += e.unpriced
        row[5] += e.late
        if e.latency_ms is not None:
            row[6][latency.bucket_of(e.latency_ms)] += 1
        if e.user_ref:
            ukey = (e.tenant_id, hour.date(), e.user_ref)
            urow = users.get(ukey)
            if urow is None:
                urow = users[ukey] = [0, 0, 0, Decimal(0)]
            urow[0] += 1
            urow[1] += e.input_tokens
            urow[2] += e.output_tokens
            urow[3] += e.cost
        for m in by_type.get(e.event_type, ()):
            if m.aggregation == Aggregation.COUNT:
                value: Any = 1
            else:
                value = _value_of(e, m.property)
                if value is None or value == "":
                    continue
            mkey = (e.tenant_id, hour, m.id)
            if m.aggregation == Aggregation.UNIQUE:
                uniques.add((e.tenant_id, hour.date(), m.id, str(value)[:200]))
            elif m.aggregation == Aggregation.MAX:
                current = meter_max.get(mkey)
                if current is None or value > current[0]:
                    meter_max[mkey] = [value, e.timestamp]
            elif m.aggregation == Aggregation.LATEST:
                current = meter_latest.get(mkey)
                if current is None or e.timestamp >= current[1]:
                    meter_latest[mkey] = [value, e.timestamp]
            else:
                current = meter_sum.get(mkey)
                if current is None:
                    meter_sum[mkey] = [value, e.timestamp]
                else:
                    current[0] += value
                    current[1] = max(current[1], e.timestamp)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        # Sorted keys: concurrent batches lock rollup rows in the same order (no deadlocks).
        execute_values(
            raw,
            "INSERT INTO metering_usagehourly AS t (tenant_id, hour, event_type, model, department, events, "
            "input_tokens, output_tokens, cost, unpriced_events, late_events, latency_hist) VALUES %s "
            "ON CONFLICT (tenant_id, hour, event_type, model, department) DO UPDATE SET "
            "events = t.events + EXCLUDED.events, input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
            "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost, "
            "unpriced_events = t.unpriced_events + EXCLUDED.unpriced_events, "
            "late_events = t.late_events + EXCLUDED.late_events, "
            "latency_hist = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i) "
            "FROM unnest(t.latency_hist, EXCLUDED.latency_hist) WITH ORDINALITY AS u(a, b, i))",
            [(*k, *v) for k, v in sorted(hourly.items())],
            page_size=1000,
        )
        if users:
            execute_values(
                raw,
                "INSERT INTO metering_usageuserdaily AS t (tenant_id, day, user_ref, events, input_tokens, "
                "output_tokens, cost) VALUES %s ON CONFLICT (tenant_id, day, user_ref) DO UPDATE SET "
                "events = t.events + EXCLUDED.events, input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
                "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost",
                [(*k, *v) for k, v in sorted(users.items())],
                page_size=1000,
            )
        updates = {
            "sum": ("t.value + EXCLUDED.value", meter_sum),
            "max": ("greatest(t.value, EXCLUDED.value)", meter_max),
            "latest": ("CASE WHEN EXCLUDED.last_at >= t.last_at THEN EXCLUDED.value ELSE t.value END", meter_latest),
        }
        for expression, rows in updates.values():
            if rows:
                execute_values(
                    raw,
                    "INSERT INTO metering_meterhourly AS t (tenant_id, hour, meter_id, value, last_at) VALUES %s "
                    f"ON CONFLICT (tenant_id, hour, meter_id) DO UPDATE SET value = {expression}, "
                    "last_at = greatest(t.last_at, EXCLUDED.last_at)",
                    [(*k, *v) for k, v in sorted(rows.items())],
                    page_size=1000,
                )
        if uniques:
            execute_values(
                raw,
                "INSERT INTO metering_meteruniquedaily (tenant_id, day, meter_id, value) VALUES %s "
                "ON CONFLICT DO NOTHING",
                sorted(uniques),
                page_size=1000,
            )


def _counter_deltas(
    events: list[Event], meters: list[MeterSpec], tenants: dict[str, TenantInfo]
) -> dict[tuple[int, datetime, str], tuple[str, float]]:
    """Per (tenant, quota period, meter): how the real-time counter moves ("add" or "set")."""
    anchors = {t.id: t.anchor_day for t in tenants.values()}
    quota_meters = [m for m in meters if m.resource]
    deltas: dict[tuple[int, datetime, str], tuple[str, float]] = {}
    latest_at: dict[tuple[int, datetime, str], datetime] = {}
    for e in events:
        start, _ = period_bounds(anchor=anchors[e.tenant_id], at=e.timestamp)
        for m in quota_meters:
            if m.event_type != e.event_type or m.aggregation == Aggregation.UNIQUE:
                continue
            value = 1 if m.aggregation == Aggregation.COUNT else _value_of(e, m.property)
            if value is None:
                continue
            key = (e.tenant_id, start, m.code)
            if m.aggregation == Aggregation.LATEST:
                if key not in latest_at or e.timestamp >= latest_at[key]:
                    latest_at[key] = e.timestamp
                    deltas[key] = ("set", float(value))
            elif m.aggregation == Aggregation.MAX:
                deltas[key] = ("max", max(float(value), deltas.get(key, ("max", 0.0))[1]))
            else:
                deltas[key] = ("add", deltas.get(key, ("add", 0.0))[1] + float(value))
    return deltas


def _after_commit(deltas: dict[tuple[int, datetime, str], tuple[str, float]]) -> None:
    from metering.quota import counters_apply

    counters_apply(deltas)
