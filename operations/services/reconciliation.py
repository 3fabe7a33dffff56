"""Cost reconciliation: what metering tracked against what the providers billed, per month.

For a calendar month with imported bill lines:
- every provider with a bill that month is reconciled: per model (OpenAI) or model service
  (AWS Bedrock, compared with the tracked cost of models priced under provider "aws"), and
  per provider in total; `variance = (actual − tracked) / actual`, within ±tolerance (5%,
  boundary included) passes;
- the run passes when the month's total and every provider's total are within tolerance;
  single models or tenants outside it are flagged for reading but do not fail the month;
- each tenant gets its share of the billed model cost (by its share of each model's tracked
  tokens) and of the shared AWS infrastructure (by its share of API calls — query events,
  the `api_calls` meter), so per-tenant rows never mix tenants and add up to the bills.

The arithmetic is exact (Decimal); amounts are kept to 1e-6 USD and allocations use the
largest-remainder rule, so tenants' shares add up to the billed amount exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from django.db import transaction

from operations.importers import _norm
from operations.models import (
    BillLine,
    ReconciliationItem,
    ReconciliationRun,
    ReconciliationStatus,
    TenantReconciliation,
    Trigger,
)
from operations.selectors import model_providers, month_bounds, tracked_usage
from tenants.models import Tenant, User

TOLERANCE = Decimal("0.05")
ALLOCATION_BASIS = "api_calls"
Q6 = Decimal("0.000001")
AWS_MODEL_ITEM = "amazonbedrock"
K = TypeVar("K", bound=Hashable)

_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8})$")


def model_key(name: str) -> str:
    """How a bill's model name and an event's model name are matched: case-insensitive,
    without a dated snapshot suffix or an ", input"/", output" line-item suffix
    ("gpt-4o-2024-08-06, input" and "GPT-4o" are both "gpt-4o")."""
    text = name.strip().lower()
    text = re.sub(r"[,\s]+(input|output|cached input|cached)$", "", text)
    return _SNAPSHOT_SUFFIX.sub("", text.strip())


def variance_of(*, actual: Decimal, tracked: Decimal) -> Decimal | None:
    """(actual − tracked) / actual; None when nothing was billed."""
    if actual == 0:
        return None
    return (actual - tracked) / actual


def is_flagged(*, actual: Decimal, tracked: Decimal, tolerance: Decimal = TOLERANCE) -> bool:
    """Outside ±tolerance (the boundary itself passes); tracked cost with no bill is flagged."""
    variance = variance_of(actual=actual, tracked=tracked)
    if variance is None:
        return tracked != 0
    return abs(variance) > tolerance


def allocate(total: Decimal, weights: Mapping[K, int | Decimal]) -> dict[K, Decimal]:
    """Split `total` in proportion to `weights`, to 1e-6, adding up to `total` exactly
    (largest remainder; ties go to the key that sorts first). No positive weight: {}."""
    positive = {key: Decimal(w) for key, w in weights.items() if w > 0}
    weight_sum = sum(positive.values(), Decimal(0))
    if not positive or weight_sum <= 0:
        return {}
    sign = -1 if total < 0 else 1
    units = int((abs(total) / Q6).to_integral_value(ROUND_HALF_UP))
    exact = {key: Decimal(units) * w / weight_sum for key, w in positive.items()}
    floors = {key: int(value.to_integral_value(ROUND_FLOOR)) for key, value in exact.items()}
    left = units - sum(floors.values())
    order = sorted(positive, key=lambda key: (-(exact[key] - floors[key]), str(key)))
    for key in order[:left]:
        floors[key] += 1
    return {key: sign * Decimal(floors[key]) * Q6 for key in positive}


def _q(value: Decimal) -> Decimal:
    return value.quantize(Q6, rounding=ROUND_HALF_UP)


def _fingerprint(bill_ids: list[int], usage: list[Any], tolerance: Decimal) -> str:
    payload = {
        "bills": sorted(set(bill_ids)),
        "usage": [[u.tenant_id, u.model, u.api_calls, u.tokens, str(u.cost)] for u in usage],
        "tolerance": str(tolerance),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _contributors(rows: list[dict[str, Any]], limit: int = 5) -> list[dict[str, Any]]:
    ranked = sorted(rows, key=lambda r: abs(r["actual"] - (r["tracked"] or 0)), reverse=True)
    return [
        {
            **{k: v for k, v in row.items() if k not in ("actual", "tracked")},
            "tracked_cost": None if row["tracked"] is None else f"{_q(row['tracked']):f}",
            "actual_cost": f"{_q(row['actual']):f}",
            "difference": f"{_q(row['actual'] - (row['tracked'] or 0)):f}",
        }
        for row in ranked[:limit]
        if row["actual"] != (row["tracked"] or 0)
    ]


@transaction.atomic
def reconciliation_run(
    *,
    month: date,
    trigger: str = Trigger.SCHEDULE,
    user: User | None = None,
    force: bool = False,
    tolerance: Decimal = TOLERANCE,
) -> ReconciliationRun | None:
    """Reconcile one calendar month; None when no bill line falls in it. Idempotent: when
    the bills and the tracked usage are what the month's latest run saw, that run is returned
    and nothing is written (unless `force`, which admin's "run now" uses). Atomic."""
    month = month.replace(day=1)
    start, end = month_bounds(month)
    lines = list(
        BillLine.objects.filter(month=month).values_list("bill_id", "provider", "item", "cost", "shared_infrastructure")
    )
    if not lines:
        return None
    usage = tracked_usage(start=start, end=end)
    fingerprint = _fingerprint([line[0] for line in lines], usage, tolerance)
    latest = ReconciliationRun.objects.filter(month=month).order_by("-created_at", "-id").first()
    if latest is not None and latest.inputs_fingerprint == fingerprint and not force:
        return latest

    providers = sorted({line[1] for line in lines})
    # Billed: model items per (provider, key) and shared infrastructure per AWS service.
    actual: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    names: dict[tuple[str, str], str] = {}
    infra: dict[str, Decimal] = defaultdict(Decimal)
    for _, provider, item, cost, shared in lines:
        if shared:
            infra[item] += cost
            continue
        key = (provider, _norm(item) if provider == "aws" else model_key(item))
        actual[key] += cost
        names.setdefault(key, item)
    # Tracked: per (provider, key), and per tenant for the allocation.
    book = model_providers()
    tracked: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    tokens: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    cost_by: dict[tuple[str, str], dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    tenant_tracked: dict[int, Decimal] = defaultdict(Decimal)
    tenant_calls: dict[int, int] = defaultdict(int)
    tenant_tokens: dict[int, int] = defaultdict(int)
    not_reconciled: dict[str, Decimal] = defaultdict(Decimal)
    for row in usage:
        tenant_calls[row.tenant_id] += row.api_calls
        if not row.model and not row.cost and not row.tokens:
            continue
        provider = book.get(row.model) or book.get(model_key(row.model)) or "openai"
        if provider not in providers:
            not_reconciled[provider] += row.cost
            continue
        key = (provider, AWS_MODEL_ITEM if provider == "aws" else model_key(row.model))
        names.setdefault(key, "AmazonBedrock" if provider == "aws" else row.model)
        tracked[key] += row.cost
        tokens[key][row.tenant_id] += row.tokens
        cost_by[key][row.tenant_id] += row.cost
        tenant_tracked[row.tenant_id] += row.cost
        tenant_tokens[row.tenant_id] += row.tokens

    run = ReconciliationRun.objects.create(
        month=month,
        status=ReconciliationStatus.NOT_APPLICABLE,
        tolerance=tolerance,
        tracked_cost=0,
        actual_cost=0,
        allocation_basis=ALLOCATION_BASIS,
        providers=providers,
        inputs_fingerprint=fingerprint,
        trigger=trigger,
        triggered_by=user,
    )
    items: list[ReconciliationItem] = []
    item_rows: list[dict[str, Any]] = []
    tenant_actual: dict[int, Decimal] = defaultdict(Decimal)
    unattributed = Decimal(0)
    per_provider: dict[str, list[Decimal]] = {p: [Decimal(0), Decimal(0)] for p in providers}
    for key in sorted(set(actual) | set(tracked)):
        provider, _ = key
        billed, seen = actual.get(key, Decimal(0)), tracked.get(key, Decimal(0))
        per_provider[provider][0] += seen
        per_provider[provider][1] += billed
        flagged = is_flagged(actual=billed, tracked=seen, tolerance=tolerance)
        variance = variance_of(actual=billed, tracked=seen)
        items.append(
            ReconciliationItem(
                run=run,
                provider=provider,
                kind=ReconciliationItem.Kind.MODEL,
                item=names[key],
                tracked_cost=_q(seen),
                actual_cost=_q(billed),
                variance=None if variance is None else _q(variance),
                flagged=flagged,
            )
        )
        item_rows.append({"provider": provider, "item": names[key], "tracked": seen, "actual": billed})
        shares = allocate(billed, tokens.get(key, {})) or allocate(billed, cost_by.get(key, {}))
        if not shares:
            unattributed += billed
        for tenant_id, amount in shares.items():
            tenant_actual[tenant_id] += amount
    flagged_providers = []
    for provider, (seen, billed) in per_provider.items():
        variance = variance_of(actual=billed, tracked=seen)
        flagged = is_flagged(actual=billed, tracked=seen, tolerance=tolerance)
        if flagged:
            flagged_providers.append(provider)
        items.append(
            ReconciliationItem(
                run=run,
                provider=provider,
                kind=ReconciliationItem.Kind.PROVIDER,
                item="",
                tracked_cost=_q(seen),
                actual_cost=_q(billed),
                variance=None if variance is None else _q(variance),
                flagged=flagged,
            )
        )
    for service, billed in sorted(infra.items()):
        items.append(
            ReconciliationItem(
                run=run,
                provider="aws",
                kind=ReconciliationItem.Kind.INFRASTRUCTURE,
                item=service,
                tracked_cost=None,
                actual_cost=_q(billed),
            )
        )
    ReconciliationItem.objects.bulk_create(items)

    infra_total = sum(infra.values(), Decimal(0))
    infra_shares = allocate(infra_total, tenant_calls)
    if infra_total and not infra_shares:
        unattributed += infra_total
    total_calls = sum(tenant_calls.values())
    tenant_ids = sorted(set(tenant_tracked) | set(tenant_actual) | set(infra_shares))
    slugs = dict(Tenant.objects.filter(pk__in=tenant_ids).values_list("pk", "slug"))
    tenant_rows: list[dict[str, Any]] = []
    TenantReconciliation.objects.bulk_create(
        TenantReconciliation(
            run=run,
            tenant_id=tenant_id,
            tenant_slug=slugs.get(tenant_id, f"#{tenant_id}"),
            api_calls=tenant_calls.get(tenant_id, 0),
            tokens=tenant_tokens.get(tenant_id, 0),
            usage_share=(Decimal(tenant_calls.get(tenant_id, 0)) / total_calls).quantize(Decimal("1e-10"))
            if total_calls
            else Decimal(0),
            tracked_cost=_q(tenant_tracked.get(tenant_id, Decimal(0))),
            actual_cost=_q(tenant_actual.get(tenant_id, Decimal(0))),
            variance=_variance_q(tenant_actual.get(tenant_id, Decimal(0)), tenant_tracked.get(tenant_id, Decimal(0))),
            infrastructure_cost=infra_shares.get(tenant_id, Decimal(0)),
            flagged=is_flagged(
                actual=tenant_actual.get(tenant_id, Decimal(0)),
                tracked=tenant_tracked.get(tenant_id, Decimal(0)),
                tolerance=tolerance,
            ),
        )
        for tenant_id in tenant_ids
    )
    for tenant_id in tenant_ids:
        tenant_rows.append(
            {
                "tenant_id": tenant_id,
                "tenant": slugs.get(tenant_id, f"#{tenant_id}"),
                "tracked": tenant_tracked.get(tenant_id, Decimal(0)),
                "actual": tenant_actual.get(tenant_id, Decimal(0)),
            }
        )

    seen_total = sum((v[0] for v in per_provider.values()), Decimal(0))
    billed_total = sum((v[1] for v in per_provider.values()), Decimal(0))
    variance = variance_of(actual=billed_total, tracked=seen_total)
    if billed_total == 0 and seen_total == 0:
        status = ReconciliationStatus.NOT_APPLICABLE
    elif is_flagged(actual=billed_total, tracked=seen_total, tolerance=tolerance) or flagged_providers:
        status = ReconciliationStatus.FLAGGED
    else:
        status = ReconciliationStatus.PASSED
    run.status = status
    run.tracked_cost = _q(seen_total)
    run.actual_cost = _q(billed_total)
    run.variance = None if variance is None else _q(variance)
    run.infrastructure_cost = _q(infra_total)
    run.unattributed_cost = _q(unattributed)
    run.contributors = {
        "flagged_providers": flagged_providers,
        "items": _contributors(item_rows),
        "tenants": _contributors(tenant_rows),
        "not_reconciled": {p: f"{_q(v):f}" for p, v in sorted(not_reconciled.items())},
    }
    run.save()
    return run


def _variance_q(actual: Decimal, tracked: Decimal) -> Decimal | None:
    variance = variance_of(actual=actual, tracked=tracked)
    return None if variance is None else _q(variance)


def reconciliation_run_due(*, trigger: str = Trigger.SCHEDULE, user: User | None = None) -> list[ReconciliationRun]:
    """Reconcile every month with bill lines whose inputs changed since its latest run (the
    daily job). Months already reconciled on the same inputs are left alone."""
    months = BillLine.objects.order_by("-month").values_list("month", flat=True).distinct()
    runs = []
    for month in months:
        run = reconciliation_run(month=month, trigger=trigger, user=user)
        if run is not None:
            runs.append(run)
    return runs
