"""Default periodic schedules of billing, as django-celery-beat rows (beat reads them from
the database; staff change them in admin without a deploy).

`schedules_ensure()` is called by `manage.py bootstrap` on every start. It creates what is
missing and leaves existing rows alone, so a schedule staff changed or disabled stays so.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        "billing: close ended periods (daily)",
        "billing.close_periods",
        minute="5",
        hour="0",
        description="Draft an invoice for every subscription period that has ended (00:05 UTC).",
    ),
    DefaultSchedule(
        "billing: dunning retries (hourly)",
        "billing.dunning_retry_due",
        minute="15",
        hour="*",
        description="Retry failed payments whose next attempt is due (DunningPolicy).",
    ),
    DefaultSchedule(
        "billing: payment reconciliation (hourly)",
        "billing.reconcile_payments",
        minute="45",
        hour="*",
        description="Re-read open invoices' PaymentIntents from the processor; resume lost attempts and events.",
    ),
]


@transaction.atomic
def schedules_ensure() -> list[PeriodicTask]:
    """Create billing's default PeriodicTask rows where missing (by name). Idempotent."""
    rows = []
    for spec in DEFAULTS:
        existing = PeriodicTask.objects.filter(name=spec.name).first()
        if existing is not None:
            rows.append(existing)
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=spec.minute, hour=spec.hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        rows.append(
            PeriodicTask.objects.create(
                name=spec.name, task=spec.task, crontab=crontab, description=spec.description, enabled=True
            )
        )
    return rows
