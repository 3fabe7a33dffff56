"""Operations jobs: thin, platform-wide (public schema), idempotent."""

from __future__ import annotations

from typing import Any

from saasops.celery import app


@app.task(name="operations.readiness_audit")
def readiness_audit(trigger: str = "schedule", user_id: int | None = None) -> dict[str, Any]:
    """Run every readiness check and store the results (a new run each time: runs are history)."""
    from operations.services.readiness import readiness_run
    from tenants.models import User

    user = User.objects.filter(pk=user_id).first() if user_id else None
    run = readiness_run(trigger=trigger, user=user)
    return {"run": run.pk, "status": run.status}


@app.task(name="operations.reconcile_costs")
def reconcile_costs(month: str | None = None, trigger: str = "schedule", user_id: int | None = None) -> list[dict]:
    """Reconcile every month with bills whose inputs changed (or one month, forced: run now)."""
    from datetime import date

    from operations.services.reconciliation import reconciliation_run, reconciliation_run_due
    from tenants.models import User

    user = User.objects.filter(pk=user_id).first() if user_id else None
    if month:
        run = reconciliation_run(month=date.fromisoformat(month), trigger=trigger, user=user, force=True)
        runs = [run] if run is not None else []
    else:
        runs = reconciliation_run_due(trigger=trigger, user=user)
    return [{"run": r.pk, "month": r.month.isoformat(), "status": r.status} for r in runs]


@app.task(name="operations.metrics_snapshot")
def metrics_snapshot(day: str | None = None) -> dict[str, Any]:
    """Yesterday's business-metrics snapshot (idempotent per day)."""
    from datetime import date

    from operations.services.snapshots import metrics_snapshot_take

    snapshot = metrics_snapshot_take(day=date.fromisoformat(day) if day else None)
    return {"day": snapshot.day.isoformat(), "mrr": snapshot.mrr}


@app.task(name="operations.monitoring_alerts")
def monitoring_alerts() -> dict[str, Any]:
    """Email staff when a monitoring threshold is newly crossed."""
    from operations.services.monitoring import monitoring_alerts_check

    return monitoring_alerts_check()
