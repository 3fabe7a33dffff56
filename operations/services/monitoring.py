"""Monitoring thresholds (AlertThresholds, edited in admin): the current values against them,
and the alert job that emails staff when one is crossed (once per crossing, not every run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.models import Invoice, InvoiceStatus
from operations.models import AlertThresholds
from operations.services.alerts import alert_send
from saasops import metrics
from saasops.redis import client as redis_client

# Error rates and p95 over fewer requests than this are not judged (1 failure of 3 is not an
# outage, and the p95 of a handful of requests is the slowest of them).
MIN_REQUESTS_FOR_RATE = 20
ACTIVE_KEY = "saasops:alerts:active"


@dataclass
class ThresholdReport:
    values: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    breaches: dict[str, str] = field(default_factory=dict)  # name -> sentence
    unset: list[str] = field(default_factory=list)


def thresholds_evaluate() -> ThresholdReport:
    """Current error rate, p95 latency, queue backlog and failed payments against the thresholds."""
    limits = AlertThresholds.current()
    window = metrics.http_window(minutes=limits.window_minutes)
    failed = Invoice.objects.filter(status=InvoiceStatus.PAYMENT_FAILED).count()
    backlog = metrics.queue_length()
    report = ThresholdReport(
        values={
            "window_minutes": limits.window_minutes,
            "requests": window["requests"],
            "errors": window["errors"],
            "error_rate": window["error_rate"],
            "latency_p95_ms": window["p95_ms"],
            "queue_backlog": backlog,
            "failed_payments": failed,
        },
        thresholds={
            "error_rate_max": None if limits.error_rate_max is None else float(limits.error_rate_max),
            "latency_p95_max_ms": limits.latency_p95_max_ms,
            "queue_backlog_max": limits.queue_backlog_max,
            "failed_payments_max": limits.failed_payments_max,
        },
    )
    report.unset = [name for name, value in report.thresholds.items() if value is None]
    rate, p95 = window["error_rate"], window["p95_ms"]
    if limits.error_rate_max is not None and rate is not None and window["requests"] >= MIN_REQUESTS_FOR_RATE:  # noqa: SIM102
        if rate > float(limits.error_rate_max):
            report.breaches["error_rate"] = (
                f"error rate {rate:.2%} over the last {limits.window_minutes} min "
                f"({window['errors']} of {window['requests']} requests) > {float(limits.error_rate_max):.2%}"
            )
    enough = window["requests"] >= MIN_REQUESTS_FOR_RATE
    if limits.latency_p95_max_ms is not None and p95 is not None and enough and p95 > limits.latency_p95_max_ms:
        report.breaches["latency_p95"] = (
            f"p95 latency {p95:.0f} ms over the last {limits.window_minutes} min > {limits.latency_p95_max_ms} ms"
        )
    if limits.queue_backlog_max is not None and backlog > limits.queue_backlog_max:
        report.breaches["queue_backlog"] = f"{backlog} Celery messages waiting > {limits.queue_backlog_max}"
    if limits.failed_payments_max is not None and failed > limits.failed_payments_max:
        report.breaches["failed_payments"] = f"{failed} invoices in payment_failed > {limits.failed_payments_max}"
    return report


def monitoring_alerts_check() -> dict[str, Any]:
    """Email staff about thresholds newly crossed since the last check (a crossing that lasts
    is reported once; it is reported again after it has recovered). Idempotent per state."""
    report = thresholds_evaluate()
    redis = redis_client()
    active = {name.decode() if isinstance(name, bytes) else name for name in redis.smembers(ACTIVE_KEY)}
    new = sorted(set(report.breaches) - active)
    recovered = sorted(active - set(report.breaches))
    if recovered:
        redis.srem(ACTIVE_KEY, *recovered)
    emailed: list[str] = []
    if new:
        redis.sadd(ACTIVE_KEY, *new)
        emailed = alert_send(
            subject=f"monitoring: {', '.join(new)} over threshold",
            lines=[report.breaches[name] for name in new],
            link_name="admin:operations_alertthresholds_changelist",
        )
    return {"breaches": report.breaches, "new": new, "recovered": recovered, "emailed": emailed}
