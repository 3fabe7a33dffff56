"""Billing tasks: thin, take ids, idempotent."""

from __future__ import annotations

from saasops.celery import app


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
