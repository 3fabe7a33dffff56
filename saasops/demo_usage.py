"""Usage history for the demo tenants: their accounts are backdated two months, about six
weeks of queries are ingested through the real ingest service (priced, rolled up), and the
ended billing period is closed so finance has drafts to review."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from billing.invoicing import invoices_close_due
from billing.models import Subscription, SubscriptionStatus
from metering.ledger import events_record
from metering.periods import period_bounds
from tenants.models import Tenant, TenantStatus

MODELS = {
    "free": ["gpt-4o-mini"],
    "starter": ["gpt-4o-mini", "gpt-4.1-mini"],
    "growth": ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"],
    "enterprise": ["gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini"],
    "custom": ["gpt-4.1", "claude-3-5-haiku"],
}
DAILY_QUERIES = {"free": 10, "starter": 80, "growth": 400, "enterprise": 600, "custom": 300}
DEPARTMENTS = ["support", "legal", "sales", "engineering", "finance"]
HISTORY_DAYS = 45
CANCELLED_DAYS_AGO = 10


def _backdate(tenant: Tenant, created: datetime) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(created_at=created)
    sub = Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).first()
    if sub is None:
        return
    anchor = min(created.day, 28)
    trial = (tenant.trial_ends_at - tenant.created_at) if tenant.trial_ends_at else timedelta(0)
    billing_starts = created + trial if tenant.status == TenantStatus.TRIALING else created
    first_start, _ = period_bounds(anchor=anchor, at=billing_starts)
    Subscription.objects.filter(pk=sub.pk).update(
        started_at=created, anchor_day=anchor, billing_starts_at=billing_starts, invoiced_through=first_start
    )


def demo_usage_load(*, tenants: list[Tenant], seed: int = 2026) -> int:
    """Backdate the tenants, ingest their history, close ended periods. Returns events stored."""
    rng = random.Random(seed)
    now = timezone.now()
    stored = 0
    for tenant in tenants:
        days_ago = 20 if tenant.status == TenantStatus.TRIALING else 62
        created = (now - timedelta(days=days_ago)).replace(hour=9, minute=0, second=0, microsecond=0)
        _backdate(tenant, created)
        if tenant.status == TenantStatus.CANCELLED:
            # Cancelled CANCELLED_DAYS_AGO (inside the retention window, export still offered):
            # its subscription ended then, so only the periods before are invoiced.
            ended = (now - timedelta(days=CANCELLED_DAYS_AGO)).replace(minute=0, second=0, microsecond=0)
            Tenant.objects.filter(pk=tenant.pk).update(status_changed_at=ended)
            Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).update(
                ended_at=ended, status=SubscriptionStatus.CANCELLED, cancel_reason="demo data: cancelled"
            )
            continue
        plan = tenant.plan.code if tenant.plan else "free"
        models = MODELS.get(plan, MODELS["starter"])
        users = [f"u_{i:02d}" for i in range(rng.randint(4, 25))]
        batch: list[dict] = []
        start_day = max(created, now - timedelta(days=HISTORY_DAYS))
        day = start_day.replace(hour=0, minute=0, second=0, microsecond=0)
        growth = 1.0
        while day < now:
            weekday = day.weekday() < 5
            count = int(DAILY_QUERIES.get(plan, 100) * growth * (1.0 if weekday else 0.35) * rng.uniform(0.8, 1.2))
            growth *= 1.01
            for n in range(count):
                at = day + timedelta(seconds=rng.randint(8 * 3600, 20 * 3600))
                if at >= now or at < created:
                    continue
                model = rng.choice(models)
                batch.append(
                    {
                        "id": f"demo-{tenant.slug}-{at:%Y%m%d}-{n}",
                        "tenant": tenant.slug,
                        "type": "query",
                        "timestamp": at.astimezone(UTC).isoformat(),
                        "properties": {
                            "model": model,
                            "input_tokens": rng.randint(300, 2_400),
                            "output_tokens": 0 if "embedding" in model else rng.randint(50, 600),
                            "latency_ms": int(rng.lognormvariate(6.0, 0.45)),
                            "department": rng.choice(DEPARTMENTS),
                            "user": rng.choice(users),
                        },
                    }
                )
                if len(batch) == 1000:
                    stored += events_record(raw_events=batch, now=now).accepted
                    batch = []
            day += timedelta(days=1)
        storage_day = now - timedelta(hours=2)
        batch.append(
            {
                "id": f"demo-{tenant.slug}-storage",
                "tenant": tenant.slug,
                "type": "storage",
                "timestamp": storage_day.isoformat(),
                "properties": {"storage_gb": round(rng.uniform(0.2, 40.0), 2)},
            }
        )
        stored += events_record(raw_events=batch, now=now).accepted
        print(f"demo data: {tenant.slug}: usage history loaded ({stored:,} events so far)", flush=True)
    result = invoices_close_due(now=now)
    print(f"demo data: {result.drafted} invoices drafted for finance review", flush=True)
    return stored
