"""Default periodic schedules of the operations jobs (django-celery-beat rows).

Created when missing (saasops/schedules.py) by the data migration 0002_default_schedules and
by `manage.py bootstrap` on every start; never changed afterwards (staff edit them in admin).
"""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from saasops.schedules import DefaultSchedule, defaults_ensure

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


def schedules_ensure() -> list[PeriodicTask]:
    """Create the operations PeriodicTask rows that are missing. Idempotent."""
    return defaults_ensure(DEFAULTS)
