"""Writing usage: one transaction stores a batch's new events (INSERT … ON CONFLICT DO NOTHING
on the idempotency key) and adds them to the rollups, so raw events and rollups always agree.
Real-time quota counters and alerts follow after commit.

This is the hot path; its shape follows from measurements (bench/ingest.py,
docs/BENCHMARKS.md "Metering"):
- Rows travel as one PostgreSQL array literal per column, built here as text and expanded
  with unnest() on the server. psycopg2's per-value adaptation (execute_values/mogrify) cost
  ~60 ms of CPU per 1,000-event batch, mostly on the latency histograms; a literal is one
  quoted string. (And no temporary table: no DDL or ON COMMIT truncation per batch.)
- Daily rows (per tenant, day, type and model) are summed from the batch's hourly groups in
  Python and upserted beside them: a batch adds a handful, and daily series read those.
- One cursor for the whole batch (with django-tenants every new cursor costs a
  `SET search_path` round trip): the tenants and meters, INSERT … RETURNING (which events are
  new), one multi-statement upsert of every rollup, COMMIT.
- The rollups are aggregated in one pass over the new events. Meters that are plain
  functions of the hourly rollup (counts, sums of token counts, distinct users) are derived
  from its groups instead of event by event; every other meter keeps the per-event path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from metering import latency
from metering.ingest import Context, Event, Rejection, validate
from metering.models import Aggregation
from metering.periods import period_bounds
from metering.pricing import price_book

_COLUMNS = (
    "tenant_id, event_id, event_type, timestamp, received_at, model, input_tokens, output_tokens, "
    "latency_ms, department, user_ref, properties, cost, unpriced, late"
)
# Sorted by the unique key: concurrent batches take row locks in the same order (no deadlocks).
_INSERT_EVENTS = (
    f"INSERT INTO metering_usageevent ({_COLUMNS}) "
    "SELECT t, i, y, ts, %s::timestamptz, m, it, ot, l, d, u, p::jsonb, c, un, la "
    "FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::timestamptz[], %s::varchar[], %s::bigint[], "
    "%s::bigint[], %s::integer[], %s::varchar[], %s::varchar[], %s::text[], %s::numeric[], %s::boolean[], "
    "%s::boolean[]) AS r(t, i, y, ts, m, it, ot, l, d, u, p, c, un, la) "
    "ORDER BY t, i ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING tenant_id, event_id"
)
_UPSERT_HOURLY = (
    "INSERT INTO metering_usagehourly AS t (tenant_id, hour, event_type, model, department, events, "
    "input_tokens, output_tokens, cost, unpriced_events, late_events, latency_hist) "
    "SELECT k, h, y, m, d, n, it, ot, c, un, la, hist::bigint[] FROM unnest(%s::bigint[], %s::timestamptz[], "
    "%s::varchar[], %s::varchar[], %s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], "
    "%s::bigint[], %s::bigint[], %s::text[]) AS r(k, h, y, m, d, n, it, ot, c, un, la, hist) ORDER BY k, h, y, m, d "
    "ON CONFLICT (tenant_id, hour, event_type, model, department) DO UPDATE SET "
    "events = t.events + EXCLUDED.events, input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost, "
    "unpriced_events = t.unpriced_events + EXCLUDED.unpriced_events, "
    "late_events = t.late_events + EXCLUDED.late_events, latency_hist = {hist_merge}"
)
# Element-wise sum of the stored histogram and the batch's. Written out bucket by bucket (no
# subquery, no sort: 4 ms less PostgreSQL time per 1,000-event batch than the unnest/array_agg
# form, measured); that general form still handles a stored array longer than today's buckets.
_HIST_MERGE = (
    f"CASE WHEN cardinality(EXCLUDED.latency_hist) = {latency.BUCKETS} "
    f"AND cardinality(t.latency_hist) <= {latency.BUCKETS} THEN ARRAY["
    + ", ".join(
        f"coalesce(t.latency_hist[{i}], 0) + coalesce(EXCLUDED.latency_hist[{i}], 0)"
        for i in range(1, latency.BUCKETS + 1)
    )
    + "]::bigint[] ELSE (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i) "
    "FROM unnest(t.latency_hist, EXCLUDED.latency_hist) WITH ORDINALITY AS u(a, b, i)) END"
)
_HIST_MERGE_SHORT = (
    "(SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i) "
    "FROM unnest(t.latency_hist, EXCLUDED.latency_hist) WITH ORDINALITY AS u(a, b, i))"
)
# The written-out form is long SQL: parsing and planning it costs ~1 ms, which only pays off
# when a batch updates many rows. Both give the same arrays.
_UPSERT_HOURLY_MANY = _UPSERT_HOURLY.replace("{hist_merge}", _HIST_MERGE)
_UPSERT_HOURLY_FEW = _UPSERT_HOURLY.replace("{hist_merge}", _HIST_MERGE_SHORT)
_MANY_ROWS = 50
_UPSERT_DAILY = (
    "INSERT INTO metering_usagedaily AS t (tenant_id, day, event_type, model, events, input_tokens, output_tokens, "
    "cost, unpriced_events, late_events, latency_hist) "
    "SELECT k, dy, y, m, n, it, ot, c, un, la, hist::bigint[] FROM unnest(%s::bigint[], %s::date[], %s::varchar[], "
    "%s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::bigint[], %s::bigint[], %s::text[]) "
    "AS r(k, dy, y, m, n, it, ot, c, un, la, hist) ORDER BY k, dy, y, m "
    "ON CONFLICT (tenant_id, day, event_type, model) DO UPDATE SET "
    "events = t.events + EXCLUDED.events, input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost, "
    "unpriced_events = t.unpriced_events + EXCLUDED.unpriced_events, "
    "late_events = t.late_events + EXCLUDED.late_events, latency_hist = {hist_merge}"
)
_UPSERT_DAILY_MANY = _UPSERT_DAILY.replace("{hist_merge}", _HIST_MERGE)
_UPSERT_DAILY_FEW = _UPSERT_DAILY.replace("{hist_merge}", _HIST_MERGE_SHORT)
_UPSERT_USERS = (
    "INSERT INTO metering_usageuserdaily AS t (tenant_id, day, user_ref, events, input_tokens, output_tokens, cost) "
    "SELECT k, dy, u, n, it, ot, c FROM unnest(%s::bigint[], %s::date[], %s::varchar[], %s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::numeric[]) AS r(k, dy, u, n, it, ot, c) ORDER BY k, dy, u "
    "ON CONFLICT (tenant_id, day, user_ref) DO UPDATE SET "
    "events = t.events + EXCLUDED.events, input_tokens = t.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = t.output_tokens + EXCLUDED.output_tokens, cost = t.cost + EXCLUDED.cost"
)
_UPSERT_METER = (
    "INSERT INTO metering_meterhourly AS t (tenant_id, hour, meter_id, value, last_at) "
    "SELECT k, h, mt, v, la FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[], %s::numeric[], "
    "%s::timestamptz[]) AS r(k, h, mt, v, la) ORDER BY k, h, mt "
    "ON CONFLICT (tenant_id, hour, meter_id) DO UPDATE SET value = {expression}, "
    "last_at = greatest(t.last_at, EXCLUDED.last_at)"
)
_METER_UPDATES = {
    "sum": "t.value + EXCLUDED.value",
    "max": "greatest(t.value, EXCLUDED.value)",
    "latest": "CASE WHEN EXCLUDED.last_at >= t.last_at THEN EXCLUDED.value ELSE t.value END",
}
_INSERT_UNIQUES = (
    "INSERT INTO metering_meteruniquedaily (tenant_id, day, meter_id, value) "
    "SELECT k, dy, mt, v FROM unnest(%s::bigint[], %s::date[], %s::bigint[], %s::varchar[]) AS r(k, dy, mt, v) "
    "ORDER BY k, dy, mt, v ON CONFLICT DO NOTHING"
)
# Properties whose sums the hourly rollup already holds (so their meters derive from it).
_GROUPED_SUMS = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 0}


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


def active_meters(cursor: Any = None) -> list[MeterSpec]:
    with _cursor(cursor) as cur:
        cur.execute(
            "SELECT id, code, event_type, aggregation, property, resource FROM metering_meter "
            "WHERE is_active ORDER BY id"
        )
        return [MeterSpec(*row) for row in cur.fetchall()]


def _cursor(cursor: Any) -> Any:
    """The given cursor (left open), else a new one. With django-tenants every new cursor
    costs a `SET search_path` round trip, so a batch uses one cursor throughout."""
    return nullcontext(cursor) if cursor is not None else connection.cursor()


def _tenants_for(raw_events: list[Any], cursor: Any = None) -> dict[str, TenantInfo]:
    slugs = {e.get("tenant") for e in raw_events if isinstance(e, dict) and isinstance(e.get("tenant"), str)}
    if not slugs:
        return {}
    from tenants.models import Tenant, TenantKind

    with _cursor(cursor) as cur:
        cur.execute(
            f"SELECT t.id, t.slug, t.created_at, c.closed_through FROM {Tenant._meta.db_table} t "
            "LEFT JOIN metering_usagecursor c ON c.tenant_id = t.id WHERE t.kind = %s AND t.slug = ANY(%s)",
            [TenantKind.CUSTOMER, list(slugs)],
        )
        rows = cur.fetchall()
    return {
        slug: TenantInfo(pk, slug, min(created.astimezone(UTC).day, 28), closed) for pk, slug, created, closed in rows
    }


# --- array literals -------------------------------------------------------------------------
def _texts(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of text values (every element quoted, \\ and " escaped).

    Joined on a control character first, so the escaping is a few passes in C over one string
    instead of two calls per value; a value that holds that character itself (only a custom
    property of a unique-count meter could) takes the per-value route."""
    items = values if isinstance(values, list) else list(values)
    if not items:
        return "{}"
    joined = _SEP.join(items)
    if joined.count(_SEP) != len(items) - 1:
        return '{"' + '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in items) + '"}'
    if "\\" in joined or '"' in joined:
        joined = joined.replace("\\", "\\\\").replace('"', '\\"')
    return '{"' + joined.replace(_SEP, '","') + '"}'


_SEP = "\x1f"


def _plain(values: Iterable[Any]) -> str:
    """An array literal of values whose text needs no quoting (numbers, ISO dates)."""
    return "{" + ",".join(map(str, values)) + "}"


def _bools(values: Iterable[bool]) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


def _hour_of(ts: datetime, cache: dict[int, datetime]) -> datetime:
    """The UTC hour `ts` falls in (cached per hour: most events of a batch share a few)."""
    key = int(ts.timestamp()) // 3600
    hour = cache.get(key)
    if hour is None:
        hour = cache[key] = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour


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
    with connection.cursor() as cursor:
        return _record(raw_events, now, cursor)


def _record(raw_events: list[Any], now: datetime, cursor: Any) -> IngestResult:
    tenants = _tenants_for(raw_events, cursor)
    meters = active_meters(cursor)
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
    closed = {t.id: t.closed_through for t in tenants.values() if t.closed_through is not None}
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
        if closed:
            limit = closed.get(checked.tenant_id)
            checked.late = limit is not None and checked.timestamp < limit
        valid.append(checked)

    accepted: set[tuple[int, str]] = set()
    if valid:
        with transaction.atomic():
            accepted = _store(valid, now, cursor)
            stored = valid if len(accepted) == len(valid) else [e for e in valid if (e.tenant_id, e.id) in accepted]
            if stored:
                deltas = _rollup(stored, meters, tenants, cursor)
                slugs = {t.id: t.slug for t in tenants.values()}
                transaction.on_commit(lambda: _after_commit(deltas, slugs))
    for event in valid:
        if (event.tenant_id, event.id) in accepted:
            entry: dict[str, Any] = {"index": event.index, "id": event.id, "status": "accepted"}
            if event.unpriced:
                entry["unpriced"] = True
            if event.late:
                entry["late"] = True
        else:
            entry = {"index": event.index, "id": event.id, "status": "duplicate"}
        results[event.index] = entry
    final = [r for r in results if r is not None]
    return IngestResult(
        accepted=len(accepted),
        duplicates=len(raw_events) - len(accepted) - rejected,
        rejected=rejected,
        results=final,
    )


def _store(events: list[Event], now: datetime, cursor: Any) -> set[tuple[int, str]]:
    params = [
        now.isoformat(),
        _plain(e.tenant_id for e in events),
        _texts(e.id for e in events),
        _texts(e.event_type for e in events),
        _plain(e.timestamp.isoformat() for e in events),
        _texts(e.model for e in events),
        _plain(e.input_tokens for e in events),
        _plain(e.output_tokens for e in events),
        "{" + ",".join("NULL" if e.latency_ms is None else str(e.latency_ms) for e in events) + "}",
        _texts(e.department for e in events),
        _texts(e.user_ref for e in events),
        _texts(e.properties_json for e in events),
        _plain(e.cost for e in events),
        _bools(e.unpriced for e in events),
        _bools(e.late for e in events),
    ]
    cursor.execute(_INSERT_EVENTS, params)
    return set(cursor.fetchall())


def _rollup(
    events: list[Event], meters: list[MeterSpec], tenants: dict[str, TenantInfo], cursor: Any
) -> dict[tuple[int, datetime, str], tuple[str, float]]:
    """Add the events to every rollup (one round trip); return the moves of the real-time
    counters per (tenant, quota period, meter): ("add" | "max" | "set", value)."""
    hours: dict[int, datetime] = {}
    bounds = latency.BOUNDS_MS
    # hourly group -> [events, input, output, cost, unpriced, late, {bucket: count}, last timestamp]
    hourly: dict[tuple[int, datetime, str, str, str], list[Any]] = {}
    users: dict[tuple[int, date, str], list[Any]] = {}
    user_days: set[tuple[str, int, date, str]] = set()  # (event type, tenant, day, user)
    for e in events:
        hour = _hour_of(e.timestamp, hours)
        key = (e.tenant_id, hour, e.event_type, e.model, e.department)
        row = hourly.get(key)
        if row is None:
            row = hourly[key] = [0, 0, 0, Decimal(0), 0, 0, None, e.timestamp]
        row[0] += 1
        row[1] += e.input_tokens
        row[2] += e.output_tokens
        row[3] += e.cost
        if e.unpriced:
            row[4] += 1
        if e.late:
            row[5] += 1
        if e.timestamp > row[7]:
            row[7] = e.timestamp
        if e.latency_ms is not None:
            hist = row[6]
            bucket = bisect_left(bounds, e.latency_ms)
            if hist is None:
                row[6] = {bucket: 1}
            else:
                hist[bucket] = hist.get(bucket, 0) + 1
        if e.user_ref:
            day = hour.date()
            ukey = (e.tenant_id, day, e.user_ref)
            urow = users.get(ukey)
            if urow is None:
                users[ukey] = [1, e.input_tokens, e.output_tokens, e.cost]
            else:
                urow[0] += 1
                urow[1] += e.input_tokens
                urow[2] += e.output_tokens
                urow[3] += e.cost
            user_days.add((e.event_type, e.tenant_id, day, e.user_ref))

    # Meters: derived from the hourly groups where that is exact, else event by event.
    meter_rows: dict[str, dict[tuple[int, datetime, int], list[Any]]] = {"sum": {}, "max": {}, "latest": {}}
    uniques: set[tuple[int, date, int, str]] = set()
    per_event: dict[str, list[MeterSpec]] = defaultdict(list)
    grouped: list[MeterSpec] = []
    for m in meters:
        if m.aggregation == Aggregation.COUNT or (m.aggregation == Aggregation.SUM and m.property in _GROUPED_SUMS):
            grouped.append(m)
        elif m.aggregation == Aggregation.UNIQUE and m.property == "user":
            uniques.update((t, d, m.id, u) for (y, t, d, u) in user_days if y == m.event_type)
        else:
            per_event[m.event_type].append(m)
    sums = meter_rows["sum"]
    for (tenant_id, hour, event_type, _model, _dept), row in hourly.items():
        for m in grouped:
            if m.event_type != event_type:
                continue
            if m.aggregation == Aggregation.COUNT:
                value = row[0]
            else:
                index = _GROUPED_SUMS[m.property]
                value = row[1] + row[2] if index == 0 else row[index]
            mkey = (tenant_id, hour, m.id)
            current = sums.get(mkey)
            if current is None:
                sums[mkey] = [value, row[7]]
            else:
                current[0] += value
                if row[7] > current[1]:
                    current[1] = row[7]
    if per_event:
        for e in events:
            for m in per_event.get(e.event_type, ()):
                _meter_add(e, m, _hour_of(e.timestamp, hours), meter_rows, uniques)

    _rollup_write(hourly, users, meter_rows, uniques, cursor)
    return _counter_deltas(events, hourly, meters, grouped, tenants)


def _meter_add(
    e: Event,
    m: MeterSpec,
    hour: datetime,
    meter_rows: dict[str, dict[tuple[int, datetime, int], list[Any]]],
    uniques: set[tuple[int, date, int, str]],
) -> None:
    if m.aggregation == Aggregation.COUNT:
        value: Any = 1
    else:
        value = _value_of(e, m.property)
        if value is None or value == "":
            return
    mkey = (e.tenant_id, hour, m.id)
    if m.aggregation == Aggregation.UNIQUE:
        uniques.add((e.tenant_id, hour.date(), m.id, str(value)[:200]))
    elif m.aggregation == Aggregation.MAX:
        current = meter_rows["max"].get(mkey)
        if current is None or value > current[0]:
            meter_rows["max"][mkey] = [value, e.timestamp]
    elif m.aggregation == Aggregation.LATEST:
        current = meter_rows["latest"].get(mkey)
        if current is None or e.timestamp >= current[1]:
            meter_rows["latest"][mkey] = [value, e.timestamp]
    else:
        current = meter_rows["sum"].get(mkey)
        if current is None:
            meter_rows["sum"][mkey] = [value, e.timestamp]
        else:
            current[0] += value
            current[1] = max(current[1], e.timestamp)


def _rollup_write(
    hourly: dict[tuple[int, datetime, str, str, str], list[Any]],
    users: dict[tuple[int, date, str], list[Any]],
    meter_rows: dict[str, dict[tuple[int, datetime, int], list[Any]]],
    uniques: set[tuple[int, date, int, str]],
    cursor: Any,
) -> None:
    statements: list[str] = []
    params: list[Any] = []
    hours = sorted(hourly.items())
    days = _daily(hours)
    statements.append(_UPSERT_HOURLY_MANY if len(hours) >= _MANY_ROWS else _UPSERT_HOURLY_FEW)
    params += _usage_params(hours, key_texts=(2, 3, 4))
    statements.append(_UPSERT_DAILY_MANY if len(days) >= _MANY_ROWS else _UPSERT_DAILY_FEW)
    params += _usage_params(days, key_texts=(2, 3))
    if users:
        rows = sorted(users.items())
        statements.append(_UPSERT_USERS)
        params += [
            _plain(k[0] for k, _ in rows),
            _plain(k[1].isoformat() for k, _ in rows),
            _texts(k[2] for k, _ in rows),
            _plain(r[0] for _, r in rows),
            _plain(r[1] for _, r in rows),
            _plain(r[2] for _, r in rows),
            _plain(r[3] for _, r in rows),
        ]
    for kind, expression in _METER_UPDATES.items():
        mrows = sorted(meter_rows[kind].items())
        if mrows:
            statements.append(_UPSERT_METER.replace("{expression}", expression))
            params += [
                _plain(k[0] for k, _ in mrows),
                _plain(k[1].isoformat() for k, _ in mrows),
                _plain(k[2] for k, _ in mrows),
                _plain(_number(v[0]) for _, v in mrows),
                _plain(v[1].isoformat() for _, v in mrows),
            ]
    if uniques:
        urows = sorted(uniques)
        statements.append(_INSERT_UNIQUES)
        params += [
            _plain(u[0] for u in urows),
            _plain(u[1].isoformat() for u in urows),
            _plain(u[2] for u in urows),
            _texts(u[3] for u in urows),
        ]
    cursor.execute(";\n".join(statements), params)


def _usage_params(rows: list[tuple[tuple[Any, ...], list[Any]]], *, key_texts: tuple[int, ...]) -> list[str]:
    """The array literals of an hourly or daily usage upsert: tenant, hour or day, the text
    key parts (`key_texts`: their positions), then events, tokens, cost, unpriced, late counts
    and the latency histogram."""
    return [
        _plain(k[0] for k, _ in rows),
        _plain(k[1].isoformat() for k, _ in rows),
        *(_texts(k[i] for k, _ in rows) for i in key_texts),
        *(_plain(r[i] for _, r in rows) for i in range(6)),
        _texts([_hist_text(r[6]) for _, r in rows]),
    ]


def _daily(
    hours: list[tuple[tuple[int, datetime, str, str, str], list[Any]]],
) -> list[tuple[tuple[int, date, str, str], list[Any]]]:
    """The hourly groups summed per (tenant, UTC day, type, model), sorted by that key."""
    days: dict[tuple[int, date, str, str], list[Any]] = {}
    for (tenant_id, hour, event_type, model, _dept), row in hours:
        key = (tenant_id, hour.date(), event_type, model)
        day = days.get(key)
        if day is None:
            days[key] = [row[0], row[1], row[2], row[3], row[4], row[5], dict(row[6]) if row[6] else None]
            continue
        for i in range(6):
            day[i] += row[i]
        if row[6]:
            hist = day[6]
            if hist is None:
                day[6] = dict(row[6])
            else:
                for bucket, n in row[6].items():
                    hist[bucket] = hist.get(bucket, 0) + n
    return sorted(days.items())


_ZEROS = ["0"] * latency.BUCKETS
_ZERO_HIST = "{" + ",".join(_ZEROS) + "}"


def _hist_text(sparse: dict[int, int] | None) -> str:
    """The array literal of a latency histogram held as {bucket: count}."""
    if not sparse:
        return _ZERO_HIST
    parts = _ZEROS.copy()
    for bucket, count in sparse.items():
        parts[bucket] = str(count)
    return "{" + ",".join(parts) + "}"


def _number(value: Any) -> str:
    """A meter value as numeric text (floats by repr, as psycopg2 would send them)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _counter_deltas(
    events: list[Event],
    hourly: dict[tuple[int, datetime, str, str, str], list[Any]],
    meters: list[MeterSpec],
    grouped: list[MeterSpec],
    tenants: dict[str, TenantInfo],
) -> dict[tuple[int, datetime, str], tuple[str, float]]:
    """Per (tenant, quota period, meter): how the real-time counter moves ("add", "max" or "set")."""
    anchors = {t.id: t.anchor_day for t in tenants.values()}
    quota_meters = [m for m in meters if m.resource and m.aggregation != Aggregation.UNIQUE]
    if not quota_meters:
        return {}
    deltas: dict[tuple[int, datetime, str], tuple[str, float]] = {}
    starts: dict[tuple[int, datetime], datetime] = {}

    def start_of(tenant_id: int, hour: datetime) -> datetime:
        start = starts.get((tenant_id, hour))
        if start is None:
            start = starts[(tenant_id, hour)] = period_bounds(anchor=anchors[tenant_id], at=hour)[0]
        return start

    grouped_quota = [m for m in quota_meters if m in grouped]
    for (tenant_id, hour, event_type, _model, _dept), row in hourly.items():
        for m in grouped_quota:
            if m.event_type != event_type:
                continue
            if m.aggregation == Aggregation.COUNT:
                value = row[0]
            else:
                index = _GROUPED_SUMS[m.property]
                value = row[1] + row[2] if index == 0 else row[index]
            key = (tenant_id, start_of(tenant_id, hour), m.code)
            deltas[key] = ("add", deltas.get(key, ("add", 0.0))[1] + float(value))
    others = [m for m in quota_meters if m not in grouped]
    if not others:
        return deltas
    hours: dict[int, datetime] = {}
    latest_at: dict[tuple[int, datetime, str], datetime] = {}
    for e in events:
        for m in others:
            if m.event_type != e.event_type:
                continue
            value = _value_of(e, m.property)
            if value is None:
                continue
            key = (e.tenant_id, start_of(e.tenant_id, _hour_of(e.timestamp, hours)), m.code)
            if m.aggregation == Aggregation.LATEST:
                if key not in latest_at or e.timestamp >= latest_at[key]:
                    latest_at[key] = e.timestamp
                    deltas[key] = ("set", float(value))
            elif m.aggregation == Aggregation.MAX:
                deltas[key] = ("max", max(float(value), deltas.get(key, ("max", 0.0))[1]))
            else:
                deltas[key] = ("add", deltas.get(key, ("add", 0.0))[1] + float(value))
    return deltas


def _after_commit(deltas: dict[tuple[int, datetime, str], tuple[str, float]], slugs: dict[int, str]) -> None:
    from metering.quota import counters_apply

    counters_apply(deltas, slugs=slugs)
