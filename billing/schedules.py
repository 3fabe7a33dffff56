"""Default periodic schedules of billing (saasops/schedules.py: created when missing by
`manage.py bootstrap`, never changed afterwards; staff edit them in admin)."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from saasops.schedules import DefaultSchedule, defaults_ensure

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


def schedules_ensure() -> list[PeriodicTask]:
    """Create billing's default PeriodicTask rows where missing (by name). Idempotent."""
    return defaults_ensure(DEFAULTS)
