"""Default periodic schedules of the operations jobs (django-celery-beat rows).

`schedules_ensure()` creates the rows that are missing (by name) and never touches existing
ones, so a schedule staff changed or disabled in admin stays so. The data migration
0002_default_schedules calls the same specs once; bootstrap may call this on every deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    minute: str
    hour: str
    description: str


DEFAULTS = [
    DefaultSchedule(
        "operations: readiness audit (daily)",
        "operations.readiness_audit",
        minute="40",
        hour="6",
        description="Run the four readiness checks, store the results, email staff when one fails (06:40 UTC).",
    ),
    DefaultSchedule(
        "operations: cost reconciliation (daily)",
        "operations.reconcile_costs",
        minute="20",
        hour="6",
        description="Compare tracked cost with imported provider bills for every month whose inputs changed.",
    ),
    DefaultSchedule(
        "operations: business metrics snapshot (daily)",
        "operations.metrics_snapshot",
        minute="10",
        hour="0",
        description="Snapshot MRR, churn, ARPU, conversion and margins as of the end of yesterday (00:10 UTC).",
    ),
    DefaultSchedule(
        "operations: monitoring thresholds (every 5 minutes)",
        "operations.monitoring_alerts",
        minute="*/5",
        hour="*",
        description="Email staff when error rate, p95 latency, queue backlog or failed payments cross a threshold.",
    ),
]


def ensure(crontab_model: Any, task_model: Any) -> list[Any]:
    rows = []
    for spec in DEFAULTS:
        existing = task_model.objects.filter(name=spec.name).first()
        if existing is not None:
            rows.append(existing)
            continue
        crontab, _ = crontab_model.objects.get_or_create(
            minute=spec.minute, hour=spec.hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        rows.append(
            task_model.objects.create(
                name=spec.name, task=spec.task, crontab=crontab, description=spec.description, enabled=True
            )
        )
    return rows


@transaction.atomic
def schedules_ensure() -> list[PeriodicTask]:
    """Create the operations PeriodicTask rows that are missing. Idempotent."""
    return ensure(CrontabSchedule, PeriodicTask)
