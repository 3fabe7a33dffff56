"""Reconciliation: our invoices against what the processor says, so a lost webhook, a crash
between charging and recording, or a task lost with Redis cannot leave an invoice wrong.

Hourly (billing.reconcile_payments):
1. Open invoices (finalized or payment_failed) with a PaymentIntent id: read the
   PaymentIntent back and record its outcome through payments.payment_outcome_record —
   the same writer the API response and webhooks use, so whichever comes first wins and the
   others change nothing.
2. Attempts begun but never recorded (in flight for longer than STALE): collect again. The
   attempt number, hence the idempotency key, is reused, so the processor returns the
   PaymentIntent of the first call rather than charging again (keys live 24 hours at Stripe;
   this runs hourly).
3. Webhook events stored but not processed (their task lost, or failed): processed again.

Processor calls happen outside transactions; each invoice is recorded in its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.utils import timezone

from billing.gateway import GatewayError, gateway
from billing.models import Invoice, InvoiceStatus, StripeEvent

log = logging.getLogger(__name__)

STALE = timedelta(minutes=15)
EVENT_MAX_ATTEMPTS = 5


@dataclass
class ReconcileRun:
    checked: int = 0
    changed: int = 0
    resumed: int = 0
    events_retried: int = 0
    errors: list[str] = field(default_factory=list)


def payments_reconcile(*, now: datetime | None = None, limit: int = 1000) -> ReconcileRun:
    """Bring open invoices in line with the processor. Idempotent; safe to run concurrently
    with collection, dunning and webhooks (all write through the same locked recorder)."""
    from billing.payments import invoice_collect, payment_outcome_record

    now = now or timezone.now()
    run = ReconcileRun()
    gw = gateway()
    open_invoices = list(
        Invoice.objects.filter(status__in=(InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED))
        .exclude(payment_intent_id="")
        .order_by("pk")
        .values_list("pk", "payment_intent_id", "status")[:limit]
    )
    for invoice_id, pi_id, status in open_invoices:
        run.checked += 1
        try:
            result = gw.payment_intent_get(payment_intent_id=pi_id)
        except GatewayError as exc:
            run.errors.append(f"invoice {invoice_id}: {exc}")
            continue
        if result.pending:
            continue
        if result.failed and status == InvoiceStatus.PAYMENT_FAILED:
            continue  # already known
        attempt = _attempt_of(result.metadata, invoice_id)
        invoice = payment_outcome_record(
            invoice_id=invoice_id, attempt=attempt, result=result, source="reconcile", now=now, gw_name=gw.name
        )
        if invoice.status != status:
            run.changed += 1
            log.warning("reconciliation: invoice %s was %s, the processor says %s", invoice, status, result.status)

    # Attempts begun but never recorded, older than STALE.
    stale = list(
        Invoice.objects.filter(status__in=(InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED))
        .annotate(recorded=Count("payment_attempt_log"))
        .filter(payment_attempts__gt=F("recorded"), finalized_at__lt=now - STALE)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for invoice_id in stale:
        try:
            invoice_collect(invoice_id=invoice_id, now=now)
            run.resumed += 1
        except GatewayError as exc:
            run.errors.append(f"invoice {invoice_id}: {exc}")

    run.events_retried = stripe_events_retry(now=now)
    return run


def _attempt_of(metadata: dict[str, str], invoice_id: int) -> int | None:
    if metadata.get("invoice_id") != str(invoice_id):
        return None
    try:
        return int(metadata.get("attempt", ""))
    except ValueError:
        return None


def stripe_events_retry(*, now: datetime, older_than: timedelta = timedelta(minutes=5)) -> int:
    """Process again webhook events left `received` (task lost) or `failed` (a handler
    error), a bounded number of times each."""
    from billing.webhooks import stripe_event_process

    ids = list(
        StripeEvent.objects.filter(
            status__in=(StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED),
            attempts__lt=EVENT_MAX_ATTEMPTS,
            received_at__lt=now - older_than,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
    for event_pk in ids:
        stripe_event_process(event_pk=event_pk)
    return len(ids)
