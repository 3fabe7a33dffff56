"""Reads for operations. Finance reads are platform-wide on purpose (one grouped query over
the shared rollups, rows keyed by tenant), never one query per tenant schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet

from metering.models import PriceBookEntry
from operations.models import CheckStatus, ReadinessResult, ReadinessRun, ReconciliationRun, TenantReconciliation


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[first instant of the month, first instant of the next), UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True)
class TrackedUsage:
    tenant_id: int
    model: str
    api_calls: int
    tokens: int
    cost: Decimal


def tracked_usage(*, start: datetime, end: datetime) -> list[TrackedUsage]:
    """Per tenant and model over [start, end), from metering's hourly rollups: query events
    (= the api_calls meter), tokens (input + output) and tracked cost (USD)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id, model, coalesce(sum(events) FILTER (WHERE event_type = 'query'), 0), "
            "sum(input_tokens + output_tokens), sum(cost) FROM metering_usagehourly "
            "WHERE hour >= %s AND hour < %s GROUP BY tenant_id, model ORDER BY tenant_id, model",
            [start, end],
        )
        return [
            TrackedUsage(tenant_id=t, model=m, api_calls=int(calls), tokens=int(tokens), cost=Decimal(cost))
            for t, m, calls, tokens, cost in cursor.fetchall()
        ]


def tracked_cost_by_tenant(*, start: datetime, end: datetime) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = {}
    for row in tracked_usage(start=start, end=end):
        totals[row.tenant_id] = totals.get(row.tenant_id, Decimal(0)) + row.cost
    return totals


def tracked_cost_by_tenant_month(*, start: datetime, end: datetime) -> dict[date, dict[int, Decimal]]:
    """Tracked cost per calendar month (UTC) and tenant over [start, end): one grouped query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('month', hour AT TIME ZONE 'UTC')::date, tenant_id, sum(cost) "
            "FROM metering_usagehourly WHERE hour >= %s AND hour < %s GROUP BY 1, 2",
            [start, end],
        )
        out: dict[date, dict[int, Decimal]] = {}
        for month, tenant_id, cost in cursor.fetchall():
            out.setdefault(month, {})[tenant_id] = Decimal(cost)
        return out


def model_providers() -> dict[str, str]:
    """Model name -> provider of its newest price book entry."""
    rows = PriceBookEntry.objects.order_by("model", "-effective_from").values_list("model", "provider")
    providers: dict[str, str] = {}
    for model, provider in rows:
        providers.setdefault(model, provider)
    return providers


def reconciliation_latest() -> ReconciliationRun | None:
    """The newest run of the newest reconciled month."""
    return ReconciliationRun.objects.order_by("-month", "-created_at", "-id").first()


def reconciliation_export_rows(*, run: ReconciliationRun) -> list[list[str]]:
    """`tenant_id,tracked_cost,actual_cost,variance` rows of one run (one row per tenant)."""
    rows = []
    for line in TenantReconciliation.objects.filter(run=run).order_by("tenant_id"):
        rows.append(
            [
                str(line.tenant_id),
                f"{line.tracked_cost:f}",
                f"{line.actual_cost:f}",
                "" if line.variance is None else f"{line.variance:f}",
            ]
        )
    return rows


def readiness_latest_by_check() -> dict[str, ReadinessResult]:
    """The newest result of each check (across runs: a check run alone still counts)."""
    latest: dict[str, ReadinessResult] = {}
    results = ReadinessResult.objects.select_related("run").order_by("check_code", "-run__started_at", "-id")
    for result in results.distinct("check_code"):
        latest[result.check_code] = result
    return latest


def readiness_runs(*, limit: int = 50) -> QuerySet[ReadinessRun]:
    return ReadinessRun.objects.prefetch_related("results").order_by("-started_at", "-id")[:limit]


def readiness_failing_codes(run: ReadinessRun) -> list[str]:
    return list(run.results.filter(status=CheckStatus.FAIL).values_list("check_code", flat=True))
