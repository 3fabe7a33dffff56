"""Default periodic schedules of the lifecycle jobs (saasops/schedules.py: created when
missing by the data migration 0004_default_schedules and by `manage.py bootstrap`, never
changed afterwards; staff edit them in admin)."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from saasops.schedules import DefaultSchedule, defaults_ensure

DEFAULTS = [
    DefaultSchedule(
        "lifecycle: trial reminders (hourly)",
        "lifecycle.trial_reminders",
        minute="10",
        hour="*",
        description="Trial reminder emails 3 and 1 days before a trial ends, each once.",
    ),
    DefaultSchedule(
        "lifecycle: trial ends (hourly)",
        "lifecycle.trial_ends",
        minute="20",
        hour="*",
        description="Convert (payment method on file) or suspend (none) tenants whose trial is over.",
    ),
    DefaultSchedule(
        "lifecycle: scheduled cancellations (hourly)",
        "lifecycle.cancellations_due",
        minute="25",
        hour="*",
        description="Cancel tenants whose cancellation at period end has come.",
    ),
    DefaultSchedule(
        "lifecycle: retention purge (daily)",
        "lifecycle.retention_purge",
        minute="30",
        hour="3",
        description="Drop the data of tenants cancelled longer than LIFECYCLE_RETENTION_DAYS ago (03:30 UTC).",
    ),
]


def schedules_ensure() -> list[PeriodicTask]:
    """Create the lifecycle PeriodicTask rows that are missing. Idempotent."""
    return defaults_ensure(DEFAULTS)
