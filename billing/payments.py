"""Payments: a processor customer per tenant, its saved card, and the collection of each
finalized invoice — through the gateway chosen by settings (billing/gateway/).

How a collection stays safe:
- Calls to the processor never happen inside a database transaction. An attempt is begun in
  one short transaction (invoice row locked: status checked, attempt number taken), the
  processor is called with no transaction open, and the outcome is written in another short
  transaction (invoice row locked again) by `payment_outcome_record`.
- The idempotency key is derived from the invoice and the attempt number. An attempt that
  was begun but whose outcome was never recorded (a crash, a timeout) is "in flight": the
  next call reuses its number, hence its key, and the processor answers with the first
  PaymentIntent instead of charging again.
- Every outcome, whether from the API response, a webhook or reconciliation, goes through
  `payment_outcome_record`, which records each attempt once and never moves a paid or void
  invoice. Paid invoices never go back to failed; late news of a failure is only logged.

Lock order: invoice, then tenant (tenant_status_change locks the tenant), then profile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.gateway import ChargeResult, PaymentGateway, PaymentMethodInfo, PaymentMethodRefused, gateway
from billing.models import BillingProfile, Invoice, InvoiceStatus, PaymentAttempt
from tenants.models import Tenant, User
from tenants.services import tenant_event_record, tenant_host

log = logging.getLogger(__name__)

COLLECTIBLE = (InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED)
NO_PAYMENT_METHOD = "no_payment_method"


def _micros(value: datetime | None) -> int:
    return int(value.timestamp() * 1_000_000) if value else 0


def billing_page_url(*, tenant: Tenant) -> str:
    """The workspace page where the customer updates the card (linked from dunning emails)."""
    scheme = "http" if settings.DEBUG else "https"
    port = "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"
    return f"{scheme}://{tenant_host(slug=tenant.slug)}{port}/billing/"


def collection_idempotency_key(*, invoice: Invoice, attempt: int) -> str:
    """Same invoice and attempt -> same key, so a retried call never charges twice. The
    finalization time is part of it because invoice ids restart in a new database (tests,
    a reset dev stack) while a Stripe account remembers keys for 24 hours."""
    return f"saasops-invoice-{invoice.pk}-{_micros(invoice.finalized_at or invoice.created_at)}-attempt-{attempt}"


# --- customer and payment method -------------------------------------------------------------
def billing_profile_ensure(*, tenant: Tenant) -> BillingProfile:
    profile, _ = BillingProfile.objects.get_or_create(tenant=tenant)
    return profile


def customer_ensure(*, tenant: Tenant, gw: PaymentGateway | None = None) -> str:
    """The tenant's processor customer id, created on first use. Not atomic with the
    processor (it cannot be): the creation carries an idempotency key derived from the
    profile, so two racing calls get the same customer, and the id is stored only where none
    is yet. Call it outside transactions."""
    profile = billing_profile_ensure(tenant=tenant)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    gw = gw or gateway()
    email = _billing_email(tenant=tenant, profile=profile)
    customer_id = gw.customer_create(
        name=tenant.name,
        email=email,
        metadata={"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug},
        # updated_at moves when a deleted customer is forgotten, so a new one gets a new key.
        idempotency_key=f"saasops-customer-{profile.pk}-{_micros(profile.created_at)}-{_micros(profile.updated_at)}",
    )
    with transaction.atomic():
        stored = BillingProfile.objects.filter(pk=profile.pk, stripe_customer_id="").update(
            stripe_customer_id=customer_id, updated_at=timezone.now()
        )
        if stored:
            tenant_event_record(
                tenant=tenant, kind="billing_customer_created", details={"customer": customer_id, "gateway": gw.name}
            )
    if not stored:
        return BillingProfile.objects.get(pk=profile.pk).stripe_customer_id
    return customer_id


def _billing_email(*, tenant: Tenant, profile: BillingProfile) -> str:
    if profile.billing_email:
        return profile.billing_email
    from tenants.models import MemberRole, Membership

    owner = (
        Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).select_related("user").order_by("pk").first()
    )
    return owner.user.email if owner is not None else ""


def payment_method_attach(*, tenant: Tenant, payment_method_id: str, actor: User | None = None) -> BillingProfile:
    """Save a card (a processor payment method id, e.g. `pm_card_visa` in test mode) as the
    tenant's payment method, creating the customer first if needed. A declined card raises
    ValidationError and changes nothing. After commit: the previous card is detached and
    invoices whose payment failed are retried at once."""
    gw = gateway()
    customer_id = customer_ensure(tenant=tenant, gw=gw)
    try:
        info = gw.payment_method_attach(customer_id=customer_id, payment_method_id=payment_method_id)
    except PaymentMethodRefused as exc:
        tenant_event_record(
            tenant=tenant, kind="payment_method_refused", actor=actor, note=str(exc), details={"code": exc.code}
        )
        raise ValidationError(f"The card could not be saved: {exc}") from exc
    return payment_method_save(tenant=tenant, info=info, actor=actor, source="attach")


def setup_intent_start(*, tenant: Tenant) -> dict[str, str]:
    """Begin saving a card in the browser: a SetupIntent for off-session use. Returns its id
    and client secret for Stripe.js (`stripe.confirmCardSetup(client_secret, …)`)."""
    gw = gateway()
    customer_id = customer_ensure(tenant=tenant, gw=gw)
    info = gw.setup_intent_create(
        customer_id=customer_id,
        metadata={"tenant_id": str(tenant.pk)},
        idempotency_key=f"saasops-setup-{tenant.pk}-{_micros(timezone.now())}",
    )
    return {"id": info.id, "client_secret": info.client_secret, "status": info.status}


def setup_intent_confirm(
    *, tenant: Tenant, setup_intent_id: str, payment_method_id: str, actor: User | None = None
) -> BillingProfile:
    """Confirm a SetupIntent server-side with a payment method and save the card (API
    clients and tests; the browser flow confirms with Stripe.js, then calls
    `setup_intent_complete`)."""
    gw = gateway()
    customer_id = customer_ensure(tenant=tenant, gw=gw)
    _setup_intent_owned(gw=gw, setup_intent_id=setup_intent_id, customer_id=customer_id)
    try:
        info = gw.setup_intent_confirm(setup_intent_id=setup_intent_id, payment_method_id=payment_method_id)
    except PaymentMethodRefused as exc:
        tenant_event_record(
            tenant=tenant, kind="payment_method_refused", actor=actor, note=str(exc), details={"code": exc.code}
        )
        raise ValidationError(f"The card could not be saved: {exc}") from exc
    return _setup_intent_finish(tenant=tenant, gw=gw, customer_id=customer_id, status=info.status,
                                payment_method_id=info.payment_method_id, actor=actor)  # fmt: skip


def setup_intent_complete(*, tenant: Tenant, setup_intent_id: str, actor: User | None = None) -> BillingProfile:
    """After Stripe.js confirmed the SetupIntent in the browser: read it back and save its card."""
    gw = gateway()
    customer_id = customer_ensure(tenant=tenant, gw=gw)
    _setup_intent_owned(gw=gw, setup_intent_id=setup_intent_id, customer_id=customer_id)
    info = gw.setup_intent_get(setup_intent_id=setup_intent_id)
    return _setup_intent_finish(tenant=tenant, gw=gw, customer_id=customer_id, status=info.status,
                                payment_method_id=info.payment_method_id, actor=actor)  # fmt: skip


def _setup_intent_owned(*, gw: PaymentGateway, setup_intent_id: str, customer_id: str) -> None:
    """Refuse a SetupIntent of another customer (ids come from the browser)."""
    if gw.setup_intent_get(setup_intent_id=setup_intent_id).customer_id != customer_id:
        raise ValidationError("This card set-up belongs to another workspace.")


def _setup_intent_finish(
    *, tenant: Tenant, gw: PaymentGateway, customer_id: str, status: str, payment_method_id: str, actor: User | None
) -> BillingProfile:
    if status != "succeeded" or not payment_method_id:
        raise ValidationError(f"The card set-up is not complete (status {status}).")
    pm = gw.payment_method_get(payment_method_id=payment_method_id)
    if pm.customer_id != customer_id:
        # Stripe attaches on success; a Stripe-compatible server may not. Attaching again is harmless.
        pm = gw.payment_method_attach(customer_id=customer_id, payment_method_id=payment_method_id)
    return payment_method_save(tenant=tenant, info=pm, actor=actor, source="setup_intent")


def payment_method_save(*, tenant: Tenant, info: PaymentMethodInfo, actor: User | None, source: str) -> BillingProfile:
    """Record `info` as the tenant's card. Atomic; idempotent (saving the same card again
    changes nothing and retries nothing). After commit: `billing.signals.payment_method_saved`."""
    with transaction.atomic():
        billing_profile_ensure(tenant=tenant)
        profile = BillingProfile.objects.select_for_update().get(tenant=tenant)
        previous = profile.payment_method_id
        if previous == info.id:
            return profile
        profile.payment_method_id = info.id
        profile.payment_method_label = info.label[:100]
        profile.save(update_fields=["payment_method_id", "payment_method_label", "updated_at"])
        tenant_event_record(
            tenant=tenant,
            kind="payment_method_updated",
            actor=actor,
            details={"payment_method": info.id, "label": info.label, "source": source, "replaced": previous},
        )
        from billing.tasks import invoice_collect_task, payment_method_detach_task

        retry_ids = list(
            Invoice.objects.filter(tenant=tenant, status=InvoiceStatus.PAYMENT_FAILED).values_list("pk", flat=True)
        )
        if previous:
            transaction.on_commit(lambda: payment_method_detach_task.delay(previous))
        for invoice_id in retry_ids:
            transaction.on_commit(lambda i=invoice_id: invoice_collect_task.delay(i, retry=True))  # type: ignore[misc]
        transaction.on_commit(lambda: _payment_method_saved_send(tenant=tenant, actor=actor))
    return profile


def _payment_method_saved_send(*, tenant: Tenant, actor: User | None) -> None:
    """Tell the layers above (billing.signals); the card is saved whatever a receiver does."""
    from billing.signals import payment_method_saved

    for receiver, result in payment_method_saved.send_robust(sender=BillingProfile, tenant=tenant, actor=actor):
        if isinstance(result, Exception):
            log.error("payment_method_saved receiver %r failed for tenant %s", receiver, tenant.pk, exc_info=result)


def payment_method_forget(*, tenant: Tenant, payment_method_id: str | None = None, reason: str) -> bool:
    """Drop the saved card (all of it, or only if it is `payment_method_id`). True if one was
    dropped. Used when the processor says the card or customer is gone."""
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().filter(tenant=tenant).first()
        if profile is None or not profile.payment_method_id:
            return False
        if payment_method_id is not None and profile.payment_method_id != payment_method_id:
            return False
        old = profile.payment_method_id
        profile.payment_method_id = ""
        profile.payment_method_label = ""
        profile.save(update_fields=["payment_method_id", "payment_method_label", "updated_at"])
        tenant_event_record(tenant=tenant, kind="payment_method_removed", note=reason, details={"payment_method": old})
        return True


# --- collection ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttemptPlan:
    invoice_id: int
    attempt: int
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str
    idempotency_key: str
    metadata: dict[str, str]
    # Set when the attempt fails without asking the processor (no card on file).
    result: ChargeResult | None = None


def invoice_collect(*, invoice_id: int, now: datetime | None = None, retry: bool = False) -> Invoice:
    """Charge a finalized invoice to the tenant's saved card.

    Idempotent: a paid, void or draft invoice is left alone; an attempt whose outcome was
    not recorded is repeated with the same idempotency key (never a second charge); a failed
    invoice is charged again only with `retry=True` (dunning's schedule, a new card). With
    no card on file the attempt fails at once with a clear error and dunning starts.
    Raises GatewayUnavailable (retry later, same key) and GatewayNotConfigured. Must be
    called outside a transaction: the processor is called between two short ones."""
    now = now or timezone.now()
    gw = gateway()  # a missing configuration fails here, before anything is written
    plan = _attempt_begin(invoice_id=invoice_id, now=now, retry=retry, gw=gw)
    if plan is None:
        return Invoice.objects.get(pk=invoice_id)
    result = plan.result
    if result is None:
        result = gw.charge(
            customer_id=plan.customer_id,
            payment_method_id=plan.payment_method_id,
            amount=plan.amount,
            currency=plan.currency,
            metadata=plan.metadata,
            idempotency_key=plan.idempotency_key,
        )
    return payment_outcome_record(
        invoice_id=plan.invoice_id, attempt=plan.attempt, result=result, source="collect", now=now, gw_name=gw.name
    )


@transaction.atomic
def _attempt_begin(*, invoice_id: int, now: datetime, retry: bool, gw: PaymentGateway) -> AttemptPlan | None:
    invoice = Invoice.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=invoice_id)
    if invoice.status not in COLLECTIBLE:
        return None
    recorded = PaymentAttempt.objects.filter(invoice=invoice).count()
    if invoice.payment_attempts > recorded:
        attempt = invoice.payment_attempts  # in flight: same number, same key
    else:
        if invoice.status == InvoiceStatus.PAYMENT_FAILED and not retry:
            return None  # dunning owns the schedule of a failed invoice
        if invoice.status == InvoiceStatus.FINALIZED and recorded:
            return None  # an attempt is processing; its webhook or reconciliation finishes it
        if invoice.total <= 0:
            _mark_paid(invoice=invoice, result=None, attempt=None, source="zero_total", now=now, gw_name=gw.name)
            return None
        attempt = invoice.payment_attempts + 1
        Invoice.objects.filter(pk=invoice.pk).update(payment_attempts=attempt)
        invoice.payment_attempts = attempt
    profile = BillingProfile.objects.filter(tenant_id=invoice.tenant_id).first()
    metadata = {
        "invoice_id": str(invoice.pk),
        "invoice_number": invoice.number or "",
        "attempt": str(attempt),
        "tenant_id": str(invoice.tenant_id),
    }
    plan = AttemptPlan(
        invoice_id=invoice.pk,
        attempt=attempt,
        amount=invoice.total,
        currency=invoice.currency,
        customer_id=profile.stripe_customer_id if profile else "",
        payment_method_id=profile.payment_method_id if profile else "",
        idempotency_key=collection_idempotency_key(invoice=invoice, attempt=attempt),
        metadata=metadata,
    )
    if not plan.customer_id or not plan.payment_method_id:
        missing = ChargeResult(
            payment_intent_id="",
            status="requires_payment_method",
            amount=invoice.total,
            currency=invoice.currency,
            error_code=NO_PAYMENT_METHOD,
            error_message=f"No payment method on file. Add a card at {billing_page_url(tenant=invoice.tenant)}",
            metadata=metadata,
        )
        return AttemptPlan(**{**plan.__dict__, "result": missing})
    return plan


def payment_outcome_record(
    *,
    invoice_id: int,
    attempt: int | None,
    result: ChargeResult,
    source: str,
    now: datetime | None = None,
    gw_name: str = "",
) -> Invoice:
    """Apply what the processor said about one attempt (from the API response, a webhook or
    reconciliation). Atomic, invoice row locked. Idempotent and order-independent:
    - each attempt is logged once (a PaymentAttempt row; `attempt` None = unknown number,
      matched by PaymentIntent id);
    - success marks a finalized or failed invoice paid (and settles dunning);
    - failure marks a finalized or failed invoice failed only when it is news for that
      attempt, and hands it to dunning; a paid or void invoice never changes."""
    from billing.dunning import dunning_after_failure

    now = now or timezone.now()
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=invoice_id)
        rows = list(PaymentAttempt.objects.filter(invoice=invoice).order_by("pk"))
        row = _attempt_row(rows, attempt, result.payment_intent_id)
        if attempt is not None and attempt > max(invoice.payment_attempts, len(rows) + 1):
            log.warning("invoice %s: outcome for attempt %s that was never begun; ignored", invoice.pk, attempt)
            return invoice
        news = row is None or (not row.succeeded and row.error_code == "processing" and not result.pending)
        if row is None:
            row = PaymentAttempt.objects.create(
                invoice=invoice,
                payment_intent_id=result.payment_intent_id,
                amount=result.amount or invoice.total,
                succeeded=result.succeeded,
                error_code="processing" if result.pending else result.error_code[:100],
                error_message=result.error_message[:500],
            )
            if attempt is None or attempt > invoice.payment_attempts:
                invoice.payment_attempts = len(rows) + 1
                Invoice.objects.filter(pk=invoice.pk).update(payment_attempts=invoice.payment_attempts)
        elif news:
            row.succeeded = result.succeeded
            row.error_code = result.error_code[:100]
            row.error_message = result.error_message[:500]
            row.payment_intent_id = result.payment_intent_id or row.payment_intent_id
            row.save(update_fields=["succeeded", "error_code", "error_message", "payment_intent_id"])

        if invoice.status not in COLLECTIBLE:
            if result.succeeded and invoice.status == InvoiceStatus.VOID:
                tenant_event_record(
                    tenant=invoice.tenant,
                    kind="payment_on_void_invoice",
                    note="Money was taken for a void invoice: refund it in the processor.",
                    details={"invoice": str(invoice), "payment_intent": result.payment_intent_id, "source": source},
                )
            return invoice  # paid stays paid, void stays void: late or repeated news changes nothing
        if result.succeeded:
            _mark_paid(invoice=invoice, result=result, attempt=attempt, source=source, now=now, gw_name=gw_name)
        elif result.pending:
            if result.payment_intent_id and invoice.payment_intent_id != result.payment_intent_id:
                invoice.payment_intent_id = result.payment_intent_id
                invoice.save(update_fields=["payment_intent_id"])
        elif news:
            invoice.status = InvoiceStatus.PAYMENT_FAILED
            invoice.last_payment_error = f"{result.error_code}: {result.error_message}".strip(": ")[:500]
            if result.payment_intent_id:
                invoice.payment_intent_id = result.payment_intent_id
            invoice.save(update_fields=["status", "last_payment_error", "payment_intent_id"])
            tenant_event_record(
                tenant=invoice.tenant,
                kind="invoice_payment_failed",
                details={
                    "invoice": str(invoice),
                    "amount": invoice.total,
                    "currency": invoice.currency,
                    "attempt": attempt or invoice.payment_attempts,
                    "error_code": result.error_code,
                    "payment_intent": result.payment_intent_id,
                    "source": source,
                    "gateway": gw_name,
                },
            )
            dunning_after_failure(invoice=invoice, failures=_failures(invoice), now=now)
        return invoice


def _failures(invoice: Invoice) -> int:
    return PaymentAttempt.objects.filter(invoice=invoice, succeeded=False).exclude(error_code="processing").count()


def _attempt_row(rows: list[PaymentAttempt], attempt: int | None, payment_intent_id: str) -> PaymentAttempt | None:
    if attempt is not None:
        return rows[attempt - 1] if len(rows) >= attempt else None
    if payment_intent_id:
        return next((r for r in rows if r.payment_intent_id == payment_intent_id), None)
    return None


def _mark_paid(
    *, invoice: Invoice, result: ChargeResult | None, attempt: int | None, source: str, now: datetime, gw_name: str
) -> None:
    from billing.dunning import dunning_settle

    had_failed = invoice.status == InvoiceStatus.PAYMENT_FAILED
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = now
    invoice.next_payment_attempt_at = None
    invoice.last_payment_error = ""
    if result is not None and result.payment_intent_id:
        invoice.payment_intent_id = result.payment_intent_id
    invoice.save(
        update_fields=["status", "paid_at", "next_payment_attempt_at", "last_payment_error", "payment_intent_id"]
    )
    tenant_event_record(
        tenant=invoice.tenant,
        kind="invoice_paid",
        details={
            "invoice": str(invoice),
            "amount": invoice.total,
            "currency": invoice.currency,
            "attempt": attempt,
            "payment_intent": invoice.payment_intent_id,
            "source": source,
            "gateway": gw_name,
        },
    )
    dunning_settle(invoice=invoice, had_failed=had_failed, now=now)
