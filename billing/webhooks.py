"""Stripe webhooks: verify, store once, process through a table of small handlers.

    POST /billing/stripe/webhook/   (public host)

1. Verify the `Stripe-Signature` header with stripe.Webhook.construct_event (HMAC-SHA256 of
   "t.payload" with STRIPE_WEBHOOK_SECRET, timestamp within 300 s). Missing, malformed,
   wrong or stale → 400 and nothing is written.
2. Store the event once by Stripe's id (StripeEvent.event_id is unique). A duplicate
   delivery answers 200 and does nothing else.
3. After commit, a Celery task drains the received events (stripe_events_drain): a batch at
   a time, claimed with SKIP LOCKED so two workers drain side by side, one commit a batch;
   one drain is queued at a time (a Redis flag the drain clears when it starts, so an event
   stored during a drain queues the next one). `HANDLERS[type]` gets the event's object.
   Unknown types are marked ignored; a handler error marks the event failed (reconciliation
   retries it, and any event left received). Each event's status, attempts and error are kept.
   One task per batch instead of one per event: Celery's per-task cost (~2.6 ms of worker
   CPU and a broker round trip) was more than half of handling an event (docs/BENCHMARKS.md).

Handlers are idempotent and order-independent: payment outcomes go through
payments.payment_outcome_record (paid never goes back), and every handler resolves the
tenant from the event's customer, never touching another tenant's invoices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.gateway import ChargeResult, PaymentMethodInfo
from billing.models import BillingProfile, Invoice, StripeEvent
from tenants.services import tenant_event_record

log = logging.getLogger(__name__)

TOLERANCE_S = 300


class EventIgnored(Exception):
    """The event is valid but concerns nothing of ours (the reason is recorded)."""


# --- the endpoint -------------------------------------------------------------------------------
@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        log.error("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set; answered 503")
        return JsonResponse({"error": "webhooks are not configured"}, status=503)
    payload = request.body
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature"), secret, tolerance=TOLERANCE_S)
        event = json.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
    except stripe.SignatureVerificationError as exc:
        return JsonResponse({"error": f"bad signature: {exc.user_message or exc}"}, status=400)
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "not a Stripe event"}, status=400)
    _, created = stripe_event_store(event=event, raw=payload)
    return JsonResponse({"received": event_id, "type": event_type, "duplicate": not created})


# One round trip: the unique index on event_id decides, also between concurrent deliveries.
_INSERT_ONCE = """
    INSERT INTO billing_stripeevent (event_id, type, created, payload, status, error, attempts, received_at)
    VALUES (%s, %s, %s, %s::jsonb, 'received', '', 0, now())
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id
"""


def stripe_event_store(*, event: dict[str, Any], raw: bytes | None = None) -> tuple[int | None, bool]:
    """Store a verified event once by its id and schedule its processing after commit.
    Returns (row id, created); a duplicate returns (None, False) and does nothing else.
    `raw` is the verified body, stored as it came (no second serialisation)."""
    created_at = datetime.fromtimestamp(int(event.get("created") or timezone.now().timestamp()), tz=UTC)
    payload = raw.decode("utf-8") if raw is not None else json.dumps(event)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_ONCE, [str(event["id"])[:100], str(event["type"])[:100], created_at, payload])
        row = cursor.fetchone()
    if row is None:
        return None, False
    pk = int(row[0])
    transaction.on_commit(_drain_soon)
    return pk, True


# --- draining ---------------------------------------------------------------------------------
DRAIN_FLAG = "saasops:stripe-events:drain-queued"
DRAIN_FLAG_TTL = 60  # a drain lost with its broker message: the next event queues another after this
DRAIN_BATCH = 20  # events a transaction: few locks held at once, still one commit for many
DRAIN_RETRIES = 5


def _drain_soon() -> None:
    """Queue a drain, unless one is queued and has not started yet."""
    from billing.tasks import stripe_events_drain_task
    from saasops.redis import client as redis_client

    try:
        queue = bool(redis_client().set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL))
    except Exception:  # Redis is the broker too: sending says whether it is really down
        queue = True
    if queue:
        stripe_events_drain_task.delay()


def stripe_events_drain(*, batch: int = DRAIN_BATCH) -> int:
    """Handle every received event, oldest first, `batch` to a transaction. The rows are
    claimed with SKIP LOCKED: drains on two workers share the backlog and never take the same
    event (a drain whose first batch is full queues one more, so a backlog spreads over the
    worker's processes). A batch that hits a deadlock with another (two events of one invoice in two
    batches) is rolled back whole and taken again. Returns how many events were handled."""
    from django.db import OperationalError

    from saasops.redis import client as redis_client

    redis_client().delete(DRAIN_FLAG)  # from now on a stored event queues the next drain
    handled = retries = 0
    while True:
        try:
            with transaction.atomic():
                ids = list(
                    StripeEvent.objects.select_for_update(skip_locked=True)
                    .filter(status=StripeEvent.Status.RECEIVED)
                    .order_by("pk")
                    .values_list("pk", flat=True)[:batch]
                )
                for pk in ids:
                    stripe_event_process(event_pk=pk)
        except OperationalError:
            retries += 1
            if retries > DRAIN_RETRIES:
                raise
            log.warning("draining Stripe events: batch rolled back (%s of %s), taken again", retries, DRAIN_RETRIES)
            continue
        if not ids:
            return handled
        if handled == 0 and len(ids) == batch:
            _drain_soon()  # a backlog: one more drain, for another worker process to share it
        handled += len(ids)


# --- processing -----------------------------------------------------------------------------------
def stripe_event_process(*, event_pk: int) -> StripeEvent:
    """Run the event's handler once. Atomic with the handler's writes; a processed or
    ignored event is left alone (idempotent); a failure is recorded, not raised."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if event.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
            return event
        event.attempts += 1
        handler = HANDLERS.get(event.type)
        obj = ((event.payload or {}).get("data") or {}).get("object") or {}
        try:
            if handler is None:
                event.status, event.error = StripeEvent.Status.IGNORED, ""
            else:
                with transaction.atomic():
                    handler(obj, event)
                event.status, event.error = StripeEvent.Status.PROCESSED, ""
        except EventIgnored as reason:
            event.status, event.error = StripeEvent.Status.IGNORED, str(reason)[:2000]
        except Exception as exc:
            log.exception("Stripe event %s (%s) failed", event.event_id, event.type)
            event.status, event.error = StripeEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "attempts", "processed_at"])
        return event


# --- resolving our objects ------------------------------------------------------------------------
def _profile_of_customer(customer: Any) -> BillingProfile:
    customer_id = customer if isinstance(customer, str) else (customer or {}).get("id", "")
    if not customer_id:
        raise EventIgnored("the event names no customer")
    profile = BillingProfile.objects.select_related("tenant").filter(stripe_customer_id=customer_id).first()
    if profile is None:
        raise EventIgnored(f"customer {customer_id} is not one of ours")
    return profile


def _invoice_of_payment_intent(pi: dict[str, Any]) -> tuple[Invoice, int | None]:
    """The invoice a PaymentIntent paid, and the attempt number, both only within the tenant
    that owns the PaymentIntent's customer (an id in metadata cannot reach another tenant)."""
    profile = _profile_of_customer(pi.get("customer"))
    metadata = pi.get("metadata") or {}
    invoices = Invoice.objects.filter(tenant_id=profile.tenant_id)
    invoice = None
    if str(metadata.get("invoice_id", "")).isdigit():
        invoice = invoices.filter(pk=int(metadata["invoice_id"])).first()
        if invoice is None:
            raise EventIgnored(
                f"invoice {metadata['invoice_id']} is not an invoice of customer {profile.stripe_customer_id}"
            )
    elif pi.get("id"):
        invoice = invoices.filter(payment_intent_id=str(pi["id"])).first()
    if invoice is None:
        raise EventIgnored(f"PaymentIntent {pi.get('id')} pays no invoice of ours")
    amount, currency = pi.get("amount"), str(pi.get("currency") or "")
    if amount is not None and (int(amount) != invoice.total or currency.upper() != invoice.currency.upper()):
        raise EventIgnored(
            f"PaymentIntent {pi.get('id')} is for {amount} {currency}, "
            f"invoice {invoice} is {invoice.total} {invoice.currency}"
        )
    attempt = str(metadata.get("attempt", ""))
    return invoice, int(attempt) if attempt.isdigit() else None


def _result_of(pi: dict[str, Any], *, status: str) -> ChargeResult:
    error = pi.get("last_payment_error") or {}
    return ChargeResult(
        payment_intent_id=str(pi.get("id") or ""),
        status=status,
        amount=int(pi.get("amount") or 0),
        currency=str(pi.get("currency") or "").upper(),
        error_code=str(error.get("code") or error.get("decline_code") or ("" if status == "succeeded" else "failed")),
        error_message=str(error.get("message") or ""),
        metadata={str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
    )


def _card_label(pm: dict[str, Any]) -> str:
    card = pm.get("card") or {}
    if not card:
        return str(pm.get("type") or "payment method").replace("_", " ").title()
    return f"{str(card.get('brand') or 'card').title()} •••• {card.get('last4') or '????'}"


# --- handlers: (object, event) -> None ------------------------------------------------------------
def on_payment_intent_succeeded(pi: dict[str, Any], event: StripeEvent) -> None:
    from billing.payments import payment_outcome_record

    invoice, attempt = _invoice_of_payment_intent(pi)
    payment_outcome_record(
        invoice_id=invoice.pk,
        attempt=attempt,
        result=_result_of(pi, status="succeeded"),
        source=f"webhook {event.event_id}",
    )


def on_payment_intent_payment_failed(pi: dict[str, Any], event: StripeEvent) -> None:
    from billing.payments import payment_outcome_record

    invoice, attempt = _invoice_of_payment_intent(pi)
    # "requires_payment_method" whatever the payload says: this event means the attempt failed.
    payment_outcome_record(
        invoice_id=invoice.pk,
        attempt=attempt,
        result=_result_of(pi, status="requires_payment_method"),
        source=f"webhook {event.event_id}",
    )


def on_payment_method_attached(pm: dict[str, Any], event: StripeEvent) -> None:
    """A card saved outside our own flow (Stripe dashboard, Checkout): adopt it when the
    tenant has none; a tenant with a card keeps the one it chose."""
    from billing.payments import payment_method_save

    profile = _profile_of_customer(pm.get("customer"))
    if profile.payment_method_id:
        if profile.payment_method_id != pm.get("id"):
            raise EventIgnored("the tenant already has a payment method")
        return
    info = PaymentMethodInfo(id=str(pm["id"]), customer_id=profile.stripe_customer_id, label=_card_label(pm))
    payment_method_save(tenant=profile.tenant, info=info, actor=None, source=f"webhook {event.event_id}")


def on_payment_method_detached(pm: dict[str, Any], event: StripeEvent) -> None:
    """The card is no longer usable: forget it if it was the tenant's (the next collection
    then fails with "no payment method" and dunning asks for a new one)."""
    from billing.payments import payment_method_forget

    pm_id = str(pm.get("id") or "")
    previous = ((event.payload.get("data") or {}).get("previous_attributes") or {}).get("customer")
    profiles = BillingProfile.objects.select_related("tenant").filter(payment_method_id=pm_id)
    if previous:
        profiles = profiles.filter(stripe_customer_id=previous)
    profile = profiles.first() if pm_id else None
    if profile is None:
        raise EventIgnored(f"payment method {pm_id} is no tenant's current card")
    payment_method_forget(
        tenant=profile.tenant, payment_method_id=pm_id, reason=f"detached (Stripe event {event.event_id})"
    )


def on_customer_deleted(customer: dict[str, Any], event: StripeEvent) -> None:
    """The processor customer is gone: forget it and its card. A new customer is created the
    next time a card is saved."""
    profile = _profile_of_customer(customer.get("id"))
    with transaction.atomic():
        locked = BillingProfile.objects.select_for_update().get(pk=profile.pk)
        old = (locked.stripe_customer_id, locked.payment_method_id)
        locked.stripe_customer_id = ""
        locked.payment_method_id = ""
        locked.payment_method_label = ""
        locked.save(update_fields=["stripe_customer_id", "payment_method_id", "payment_method_label", "updated_at"])
        tenant_event_record(
            tenant=profile.tenant,
            kind="billing_customer_deleted",
            note=f"Stripe event {event.event_id}",
            details={"customer": old[0], "payment_method": old[1]},
        )


def on_charge_dispute_created(dispute: dict[str, Any], event: StripeEvent) -> None:
    """Flag the disputed invoice for finance (the money is on hold at the processor)."""
    pi_id = str(dispute.get("payment_intent") or "")
    invoice = Invoice.objects.select_related("tenant").filter(payment_intent_id=pi_id).first() if pi_id else None
    if invoice is None:
        raise EventIgnored(f"dispute {dispute.get('id')} is about no invoice of ours")
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.disputed:
            return
        note = (
            f"Dispute {dispute.get('id')} ({dispute.get('reason') or 'no reason given'}): "
            f"{dispute.get('amount')} {str(dispute.get('currency') or '').upper()}, status {dispute.get('status')}"
        )
        Invoice.objects.filter(pk=locked.pk).update(disputed=True, dispute_note=note[:500])
        tenant_event_record(
            tenant=invoice.tenant,
            kind="invoice_disputed",
            note=note,
            details={"invoice": str(invoice), "dispute": dispute.get("id"), "payment_intent": pi_id},
        )


Handler = Callable[[dict[str, Any], StripeEvent], None]

HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": on_payment_intent_succeeded,
    "payment_intent.payment_failed": on_payment_intent_payment_failed,
    "payment_method.attached": on_payment_method_attached,
    "payment_method.detached": on_payment_method_detached,
    "customer.deleted": on_customer_deleted,
    "charge.dispute.created": on_charge_dispute_created,
}
