"""Daily business-metrics snapshots."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from operations.finance import CURRENCY, Pricing, day_end, period_metrics, timelines
from operations.models import MetricsSnapshot


def _plain(row: dict) -> dict:
    return {k: (str(v) if not isinstance(v, int | str | type(None)) else v) for k, v in row.items()}


@transaction.atomic
def metrics_snapshot_take(*, day: date | None = None, force: bool = False) -> MetricsSnapshot:
    """The snapshot of `day` (default: yesterday, the last complete day), as of the end of
    that day: MRR, ARR, ARPU, tenants, and the month's movements up to then. Idempotent per
    day: an existing snapshot is returned unchanged unless `force` recomputes it."""
    day = day or (timezone.now().date() - timedelta(days=1))
    existing = MetricsSnapshot.objects.filter(day=day).first()
    if existing is not None and not force:
        return existing
    pricing = Pricing()
    lines = timelines(pricing=pricing)
    end = day_end(day)
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    metrics = period_metrics(start=start, end=end, pricing=pricing, lines=lines)
    values = {
        "currency": CURRENCY,
        "mrr": metrics.mrr,
        "arr": metrics.arr,
        "paying_tenants": metrics.paying,
        "active_tenants": metrics.active,
        "arpu": metrics.arpu,
        "new_mrr": metrics.new,
        "reactivation_mrr": metrics.reactivation,
        "expansion_mrr": metrics.expansion,
        "contraction_mrr": metrics.contraction,
        "churned_mrr": metrics.churned,
        "logo_churn_rate": metrics.logo_churn_rate,
        "revenue_churn_rate": metrics.revenue_churn_rate,
        "net_revenue_churn_rate": metrics.net_revenue_churn_rate,
        "trials_ended": metrics.trials_ended,
        "trials_converted": metrics.trials_converted,
        "trial_conversion_rate": metrics.trial_conversion_rate,
        "by_plan": [_plain(row) for row in metrics.by_plan],
    }
    snapshot, _ = MetricsSnapshot.objects.update_or_create(day=day, defaults=values)
    return snapshot


def metrics_snapshots_backfill(*, days: int, today: date | None = None) -> int:
    """Snapshots for the last `days` complete days that have none (history is in the events)."""
    today = today or timezone.now().date()
    made = 0
    for offset in range(days, 0, -1):
        day = today - timedelta(days=offset)
        if not MetricsSnapshot.objects.filter(day=day).exists():
            metrics_snapshot_take(day=day)
            made += 1
    return made
