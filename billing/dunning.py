"""Dunning: what happens after a payment fails, until it is paid or the tenant is suspended.

Schedule (DunningPolicy.retry_days, default 1, 3, 5, 7): retries at those many days after
the FIRST failure of the invoice. With the default: fail on day 0 → retries on days 1, 3,
5 and 7 → if the day-7 retry fails too (the 5th failure) the tenant is suspended. A policy
edited mid-way applies from the invoice's next failure on.

At each failure: the tenant goes past due (if its status allows), the next retry is set,
and the billing contact gets an email with a link to the workspace billing page. After the
last: the tenant is suspended (the gate then answers 403) and told so. When the invoice is
paid later — by a retry, a webhook, reconciliation, or a new card — the tenant is
reactivated if billing was what held it (past due, or suspended by dunning) and no other
invoice is still unpaid. Every step is a row in the tenant's history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from billing.models import DunningPolicy, Invoice, InvoiceStatus
from tenants.models import Tenant, TenantEvent, TenantStatus
from tenants.services import tenant_event_record
from tenants.status import tenant_status_change, transition_allowed

log = logging.getLogger(__name__)

S = TenantStatus
MIN_GAP = timedelta(hours=1)  # after downtime, catch up on the schedule at most this fast
DUNNING_CAUSE = "dunning"


def retry_days(policy: DunningPolicy | None = None) -> list[int]:
    """The policy's days, cleaned: positive whole numbers, ascending, no repeats."""
    policy = policy or DunningPolicy.current()
    days = sorted({int(d) for d in policy.retry_days if isinstance(d, int | float) and int(d) > 0})
    return days


def next_attempt_at(
    *, failures: int, now: datetime, days: list[int], previous_next: datetime | None
) -> datetime | None:
    """When to try again after the `failures`-th failure, or None when retries are used up.

    The schedule counts from the first failure. That time is not stored: after failure k≥2
    it is the retry time that was due for attempt k (`previous_next`) minus its offset."""
    if failures > len(days):
        return None
    first = now if failures == 1 or previous_next is None else previous_next - timedelta(days=days[failures - 2])
    return max(first + timedelta(days=days[failures - 1]), now + MIN_GAP)


def dunning_after_failure(*, invoice: Invoice, failures: int, now: datetime) -> None:
    """Called by payments.payment_outcome_record, in its transaction, invoice locked and
    already marked payment_failed. Schedules the retry or suspends; emails after commit."""
    days = retry_days()
    when = next_attempt_at(failures=failures, now=now, days=days, previous_next=invoice.next_payment_attempt_at)
    Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt_at=when)
    invoice.next_payment_attempt_at = when
    tenant = Tenant.objects.get(pk=invoice.tenant_id)
    details = {"invoice": str(invoice), "failures": failures, "error": invoice.last_payment_error[:200]}
    if when is not None:
        if tenant.status != S.PAST_DUE and transition_allowed(tenant.status, S.PAST_DUE):
            tenant_status_change(
                tenant=tenant,
                to=S.PAST_DUE,
                reason=f"Payment of invoice {invoice} failed.",
                details={"cause": DUNNING_CAUSE, "invoice": str(invoice)},
            )
        tenant_event_record(
            tenant=tenant,
            kind="dunning_retry_scheduled",
            note=f"Retry {failures} of {len(days)} on {when:%Y-%m-%d %H:%M} UTC.",
            details={**details, "next_attempt_at": when.isoformat()},
        )
    else:
        if tenant.status != S.SUSPENDED and transition_allowed(tenant.status, S.SUSPENDED):
            tenant_status_change(
                tenant=tenant,
                to=S.SUSPENDED,
                reason=f"Invoice {invoice} unpaid after {failures} attempts.",
                details={"cause": DUNNING_CAUSE, "invoice": str(invoice)},
            )
        tenant_event_record(
            tenant=tenant,
            kind="dunning_exhausted",
            note=f"No retries left after {failures} failed attempts.",
            details=details,
        )
    from billing.tasks import dunning_email

    invoice_id = invoice.pk
    transaction.on_commit(lambda: dunning_email.delay(invoice_id, failures))


def _suspended_by_dunning(tenant: Tenant) -> bool:
    last = TenantEvent.objects.filter(tenant=tenant, details__to=S.SUSPENDED).order_by("-pk").first()
    return last is not None and (last.details or {}).get("cause") == DUNNING_CAUSE


def dunning_settle(*, invoice: Invoice, had_failed: bool, now: datetime) -> None:
    """Called when an invoice is paid (same transaction, invoice locked): give the tenant its
    service back if billing was what held it and nothing else is unpaid."""
    # The tenant as loaded with the locked invoice (payment_outcome_record), else read now.
    tenant = invoice.tenant if "tenant" in invoice._state.fields_cache else Tenant.objects.get(pk=invoice.tenant_id)
    if had_failed:
        tenant_event_record(
            tenant=tenant, kind="dunning_recovered", details={"invoice": str(invoice), "at": now.isoformat()}
        )
    if Invoice.objects.filter(tenant_id=tenant.pk, status=InvoiceStatus.PAYMENT_FAILED).exclude(pk=invoice.pk).exists():
        return  # still owes another invoice: stays as it is
    held = tenant.status == S.PAST_DUE or (tenant.status == S.SUSPENDED and _suspended_by_dunning(tenant))
    if held:
        tenant_status_change(
            tenant=tenant,
            to=S.ACTIVE,
            reason=f"Invoice {invoice} paid.",
            details={"cause": "payment", "invoice": str(invoice)},
        )


# --- the periodic retry --------------------------------------------------------------------------
@dataclass
class RetryRun:
    due: int = 0
    paid: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def dunning_retry_due(*, now: datetime | None = None, limit: int = 500) -> RetryRun:
    """Retry every failed invoice whose next attempt is due. Safe to run twice at once: each
    invoice is re-checked under its lock, and a doubled attempt reuses the idempotency key."""
    from billing.payments import invoice_collect

    now = now or timezone.now()
    run = RetryRun()
    ids = list(
        Invoice.objects.filter(status=InvoiceStatus.PAYMENT_FAILED, next_payment_attempt_at__lte=now)
        .order_by("next_payment_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    run.due = len(ids)
    for invoice_id in ids:
        try:
            invoice = invoice_collect(invoice_id=invoice_id, now=now, retry=True)
        except Exception as exc:  # one invoice's trouble must not stop the others
            log.exception("dunning retry of invoice %s failed", invoice_id)
            run.errors.append(f"{invoice_id}: {type(exc).__name__}: {exc}")
            continue
        if invoice.status == InvoiceStatus.PAID:
            run.paid += 1
        else:
            run.failed += 1
    return run


# --- emails ----------------------------------------------------------------------------------------
def dunning_email_send(*, invoice_id: int, failures: int) -> str:
    """Tell the billing contact (billing email, else the owner) that a payment failed, what
    happens next, and where to update the card. At most once per invoice and failure (a
    history row marks it sent). Returns the address, or "" when nothing was sent."""
    from billing.documents import billing_recipient
    from billing.payments import billing_page_url
    from tenants.revenue import money_format

    invoice = Invoice.objects.select_related("tenant").get(pk=invoice_id)
    tenant = invoice.tenant
    if TenantEvent.objects.filter(
        tenant=tenant, kind="dunning_email_sent", details__invoice_id=invoice.pk, details__failures=failures
    ).exists():
        return ""
    recipient = billing_recipient(tenant=tenant)
    if not recipient:
        log.warning("tenant %s has no billing email and no owner: dunning email for %s not sent", tenant.pk, invoice)
        return ""
    amount = money_format(minor=invoice.total, currency=invoice.currency)
    url = billing_page_url(tenant=tenant)
    error = invoice.last_payment_error or "the payment was declined"
    if invoice.status == InvoiceStatus.PAID:
        return ""  # paid meanwhile: no reason to alarm anyone
    final = invoice.next_payment_attempt_at is None
    if final:
        subject = f"[{tenant.name}] Workspace suspended: invoice {invoice} is unpaid"
        next_step = (
            "We have tried to collect this payment several times without success, so your workspace "
            "is now suspended. Update your payment method and we will charge it right away; your "
            "workspace is reactivated as soon as the invoice is paid."
        )
    else:
        when = invoice.next_payment_attempt_at
        subject = f"[{tenant.name}] Payment failed for invoice {invoice}"
        next_step = (
            f"We will try again on {when:%Y-%m-%d} (UTC). To avoid an interruption of service, "
            "please update your payment method before then; we will charge the new card at once."
        )
    body = (
        f"Hello,\n\nWe could not collect {amount} for invoice {invoice} of {tenant.name}.\n"
        f"Reason: {error}\n\n{next_step}\n\nUpdate your payment method: {url}\n\n— saasops billing\n"
    )
    send_mail(subject, body, None, [recipient])
    tenant_event_record(
        tenant=tenant,
        kind="dunning_email_sent",
        details={"invoice_id": invoice.pk, "invoice": str(invoice), "failures": failures, "to": recipient,
                 "final": final},
    )  # fmt: skip
    return recipient
