"""Billing tasks: thin, take ids, idempotent."""

from __future__ import annotations

import logging

from billing.gateway import GatewayUnavailable
from saasops.celery import app

log = logging.getLogger(__name__)


@app.task(name="billing.close_periods")
def close_periods() -> dict[str, int]:
    """Daily: draft an invoice for every subscription period that has ended."""
    from billing.invoicing import invoices_close_due

    result = invoices_close_due()
    return {
        "drafted": result.drafted,
        "finalized": result.finalized,
        "skipped": result.skipped,
        "failed": result.failed,
    }


@app.task(name="billing.invoice_after_finalize", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def invoice_after_finalize(invoice_id: int) -> None:
    """Email the finalized invoice, then collect it. Each step is idempotent on its own."""
    from billing.documents import invoice_email_send
    from billing.payments import invoice_collect

    invoice_email_send(invoice_id=invoice_id)
    invoice_collect(invoice_id=invoice_id)


# --- payments (billing/payments.py, dunning.py, reconcile.py, webhooks.py) -----------------------
# Platform-wide tasks: they take ids and run in the public schema, where billing lives.


@app.task(name="billing.invoice_collect", autoretry_for=(GatewayUnavailable,), retry_backoff=True, max_retries=6)
def invoice_collect_task(invoice_id: int, retry: bool = False) -> str:
    """Charge one invoice (billing.payments.invoice_collect: idempotent, same key on retry)."""
    from billing.payments import invoice_collect

    return invoice_collect(invoice_id=invoice_id, retry=retry).status


@app.task(name="billing.dunning_retry_due")
def dunning_retry_due_task() -> dict[str, object]:
    """Hourly: retry the failed invoices whose next attempt is due."""
    from billing.dunning import dunning_retry_due

    run = dunning_retry_due()
    return {"due": run.due, "paid": run.paid, "failed": run.failed, "errors": run.errors[:20]}


@app.task(name="billing.dunning_email", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def dunning_email(invoice_id: int, failures: int) -> str:
    """Tell the billing contact about failure number `failures` (sent once per failure)."""
    from billing.dunning import dunning_email_send

    return dunning_email_send(invoice_id=invoice_id, failures=failures)


@app.task(name="billing.reconcile_payments")
def reconcile_payments_task() -> dict[str, object]:
    """Hourly: re-read open invoices' PaymentIntents, resume lost attempts, retry stuck events."""
    from billing.reconcile import payments_reconcile

    run = payments_reconcile()
    return {
        "checked": run.checked,
        "changed": run.changed,
        "resumed": run.resumed,
        "events_retried": run.events_retried,
        "errors": run.errors[:20],
    }


@app.task(name="billing.stripe_events_drain", ignore_result=True)
def stripe_events_drain_task() -> int:
    """Handle the received webhook events (billing/webhooks.py stripe_events_drain). Each
    StripeEvent row keeps its status and error, so no task result is stored."""
    from billing.webhooks import stripe_events_drain

    return stripe_events_drain()


@app.task(name="billing.stripe_event_process", ignore_result=True)
def stripe_event_process_task(event_pk: int) -> str:
    """Handle one stored webhook event (idempotent: a processed event is left alone). No
    longer queued by the endpoint (it queues drains); kept for messages queued before."""
    from billing.webhooks import stripe_event_process

    return stripe_event_process(event_pk=event_pk).status


@app.task(name="billing.payment_method_detach", autoretry_for=(GatewayUnavailable,), retry_backoff=True, max_retries=5)
def payment_method_detach_task(payment_method_id: str) -> None:
    """Detach a replaced card from its processor customer (a detached card cannot be charged)."""
    from billing.gateway import GatewayRequestError, gateway

    try:
        gateway().payment_method_detach(payment_method_id=payment_method_id)
    except GatewayRequestError as exc:  # already detached or gone: nothing left to do
        log.info("detaching %s: %s", payment_method_id, exc)
