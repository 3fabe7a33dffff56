"""The Stripe webhook endpoint on the public host: signatures checked as Stripe signs them
(t=<ts>,v1=<hex HMAC-SHA256 of "t.payload">), events stored once, handlers idempotent in any
order, and never crossing from one tenant to another.

Payment events are localstripe's own (read back from its /v1/events after a real charge),
so their shape is what a Stripe-compatible server sends; localstripe emits no dispute or
payment-method events, so those are written here in Stripe's documented shape."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest

from billing.gateway import gateway
from billing.models import BillingProfile, Invoice, InvoiceStatus, PaymentAttempt, StripeEvent
from billing.payments import _attempt_begin, invoice_collect, payment_outcome_record
from billing.tests.test_payments import NOW, events, make_invoice, stripe_client, with_card

pytestmark = pytest.mark.django_db

URL = "/billing/stripe/webhook/"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed as Stripe does."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@pytest.fixture
def deliver(client_for, stripe_server, django_capture_on_commit_callbacks):
    """deliver(event dict | bytes, signature=None) -> response; processing runs (eager Celery)."""

    def send(event, *, signature: str | None = "sign", secret: str | None = None):
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        headers = {}
        if signature == "sign":
            headers["HTTP_STRIPE_SIGNATURE"] = sign(body, secret or stripe_server["webhook_secret"])
        elif signature is not None:
            headers["HTTP_STRIPE_SIGNATURE"] = signature
        with django_capture_on_commit_callbacks(execute=True):
            return client_for().post(URL, data=body, content_type="application/json", **headers)

    return send


def event_of(obj: dict, type_: str, **extra) -> dict:
    return {
        "id": f"evt_test_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": type_,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj, **extra},
    }


def localstripe_event(type_: str, payment_intent_id: str) -> dict:
    """The event the Stripe-compatible server itself emitted for this PaymentIntent."""
    since = int(time.time()) - 120
    found = stripe_client().v1.events.list(params={"type": type_, "created": {"gte": since}, "limit": 100})
    for event in found.auto_paging_iter():
        if event.data.object.id == payment_intent_id:
            return event.to_dict()
    raise AssertionError(f"no {type_} event for {payment_intent_id}")


def charge_unrecorded(invoice: Invoice):
    """Charge the invoice at the processor but record nothing (a worker died, a response lost)."""
    plan = _attempt_begin(invoice_id=invoice.pk, now=NOW, retry=False, gw=gateway())
    assert plan is not None
    return gateway().charge(
        customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id,
        amount=plan.amount,
        currency=plan.currency,
        metadata=plan.metadata,
        idempotency_key=plan.idempotency_key,
    )


# --- signatures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing header", "wrong secret", "stale timestamp", "tampered body", "garbage"])
def test_a_bad_signature_is_400_and_writes_nothing(deliver, stripe_server, case):
    event = event_of({"id": "pi_x", "object": "payment_intent"}, "payment_intent.succeeded")
    body = json.dumps(event).encode()
    secret = stripe_server["webhook_secret"]
    if case == "missing header":
        response = deliver(body, signature=None)
    elif case == "wrong secret":
        response = deliver(body, secret="whsec_not_the_one")
    elif case == "stale timestamp":
        response = deliver(body, signature=sign(body, secret, int(time.time()) - 301))
    elif case == "tampered body":
        response = deliver(body.replace(b"pi_x", b"pi_y"), signature=sign(body, secret))
    else:
        response = deliver(body, signature="t=abc,v0=nothing")
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0


def test_a_signature_within_tolerance_is_accepted(deliver, stripe_server):
    event = event_of({"id": "pi_x", "object": "payment_intent"}, "some.unknown_type")
    body = json.dumps(event).encode()
    response = deliver(body, signature=sign(body, stripe_server["webhook_secret"], int(time.time()) - 290))
    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == StripeEvent.Status.IGNORED  # unknown types are stored and ignored
    assert stored.attempts == 1


def test_without_a_webhook_secret_the_endpoint_answers_503(client_for, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = client_for().post(URL, data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x")
    assert response.status_code == 503
    assert StripeEvent.objects.count() == 0


def test_only_post(client_for, stripe_server):
    assert client_for().get(URL).status_code == 405


# --- payment events ------------------------------------------------------------------------------
def test_a_succeeded_event_pays_an_invoice_whose_response_was_lost(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = make_invoice(tenant, total=3_300)
    charged = charge_unrecorded(invoice)
    response = deliver(localstripe_event("payment_intent.succeeded", charged.payment_intent_id))
    assert response.status_code == 200 and response.json()["duplicate"] is False
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.payment_intent_id == charged.payment_intent_id
    [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
    assert attempt.succeeded and attempt.amount == 3_300
    stored = StripeEvent.objects.get(event_id=response.json()["received"])
    assert (stored.status, stored.attempts, stored.error) == (StripeEvent.Status.PROCESSED, 1, "")
    # The worker that charged comes back and records its response: nothing happens twice.
    invoice_collect(invoice_id=invoice.pk, now=NOW)
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
    assert len(events(tenant, "invoice_paid")) == 1


def test_a_duplicate_delivery_is_processed_once(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = make_invoice(tenant)
    event = localstripe_event("payment_intent.succeeded", charge_unrecorded(invoice).payment_intent_id)
    first, second = deliver(event), deliver(event)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert StripeEvent.objects.filter(event_id=event["id"]).count() == 1
    assert StripeEvent.objects.get(event_id=event["id"]).attempts == 1
    assert len(events(tenant, "invoice_paid")) == 1


def test_a_late_failure_after_success_keeps_the_invoice_paid(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = make_invoice(tenant)
    charged = charge_unrecorded(invoice)
    succeeded = localstripe_event("payment_intent.succeeded", charged.payment_intent_id)
    failed = json.loads(json.dumps(succeeded))
    failed["id"], failed["type"] = f"evt_late_{uuid.uuid4().hex[:12]}", "payment_intent.payment_failed"
    failed["data"]["object"]["status"] = "requires_payment_method"
    failed["data"]["object"]["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
    assert deliver(succeeded).status_code == 200
    assert deliver(failed).status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.last_payment_error == ""
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
    assert StripeEvent.objects.get(event_id=failed["id"]).status == StripeEvent.Status.PROCESSED
    tenant.refresh_from_db()
    assert tenant.status == "active"


def test_a_failed_event_fails_an_invoice_whose_response_was_lost(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = make_invoice(tenant)
    declined = charge_unrecorded(invoice)
    assert declined.failed
    # localstripe does not return the failed PaymentIntent's id; find it by its metadata.
    pis = stripe_client().v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    pi_id = next(p.id for p in pis if p.metadata.to_dict().get("invoice_id") == str(invoice.pk))
    response = deliver(localstripe_event("payment_intent.payment_failed", pi_id))
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert invoice.last_payment_error == "card_declined: Your card was declined."
    tenant.refresh_from_db()
    assert tenant.status == "past_due"


def test_a_payment_after_failure_by_webhook_reactivates(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = invoice_collect(invoice_id=make_invoice(tenant, total=5_000).pk, now=NOW)
    tenant.refresh_from_db()
    assert (invoice.status, tenant.status) == (InvoiceStatus.PAYMENT_FAILED, "past_due")
    # The customer paid another way (e.g. in Stripe's hosted page): Stripe tells us.
    pi = {
        "id": f"pi_manual_{uuid.uuid4().hex[:10]}",
        "object": "payment_intent",
        "amount": 5_000,
        "currency": "usd",
        "status": "succeeded",
        "customer": BillingProfile.objects.get(tenant=tenant).stripe_customer_id,
        "metadata": {"invoice_id": str(invoice.pk)},
    }
    assert deliver(event_of(pi, "payment_intent.succeeded")).status_code == 200
    invoice.refresh_from_db()
    tenant.refresh_from_db()
    assert (invoice.status, tenant.status) == (InvoiceStatus.PAID, "active")
    assert len(events(tenant, "dunning_recovered")) == 1


def test_an_amount_that_does_not_match_is_ignored(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = make_invoice(tenant, total=5_000)
    pi = {
        "id": "pi_wrong_amount",
        "object": "payment_intent",
        "amount": 4_999,
        "currency": "usd",
        "customer": BillingProfile.objects.get(tenant=tenant).stripe_customer_id,
        "metadata": {"invoice_id": str(invoice.pk)},
    }
    response = deliver(event_of(pi, "payment_intent.succeeded"))
    stored = StripeEvent.objects.get(event_id=response.json()["received"])
    assert stored.status == StripeEvent.Status.IGNORED and "4999" in stored.error
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.FINALIZED


# --- tenant isolation ------------------------------------------------------------------------------
def test_an_event_for_one_tenant_never_touches_another_tenants_invoice(deliver, make_tenant):
    a, b = make_tenant(), make_tenant()
    with_card(a)
    with_card(b, "pm_card_chargeCustomerFail")
    invoice_b = invoice_collect(invoice_id=make_invoice(b, total=6_000).pk, now=NOW)
    assert invoice_b.status == InvoiceStatus.PAYMENT_FAILED
    customer_a = BillingProfile.objects.get(tenant=a).stripe_customer_id
    # A's customer paid, and the metadata (or the PaymentIntent id) names B's invoice.
    by_metadata = {"id": "pi_a_1", "object": "payment_intent", "amount": 6_000, "currency": "usd",
                   "customer": customer_a, "metadata": {"invoice_id": str(invoice_b.pk), "attempt": "1"}}  # fmt: skip
    Invoice.objects.filter(pk=invoice_b.pk).update(payment_intent_id="pi_b_known")
    by_intent = {"id": "pi_b_known", "object": "payment_intent", "amount": 6_000, "currency": "usd",
                 "customer": customer_a, "metadata": {}}  # fmt: skip
    for pi in (by_metadata, by_intent):
        response = deliver(event_of(pi, "payment_intent.succeeded"))
        stored = StripeEvent.objects.get(event_id=response.json()["received"])
        assert stored.status == StripeEvent.Status.IGNORED
    invoice_b.refresh_from_db()
    assert invoice_b.status == InvoiceStatus.PAYMENT_FAILED
    assert events(a, "invoice_paid") == [] and events(b, "invoice_paid") == []


# --- other events -----------------------------------------------------------------------------------
def test_a_dispute_flags_the_invoice(deliver, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = invoice_collect(invoice_id=make_invoice(tenant, total=8_800).pk, now=NOW)
    dispute = {
        "id": "dp_test_1",
        "object": "dispute",
        "amount": 8_800,
        "currency": "usd",
        "charge": "ch_x",
        "payment_intent": invoice.payment_intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    event = event_of(dispute, "charge.dispute.created")
    assert deliver(event).status_code == 200
    assert deliver(event).json()["duplicate"] is True
    invoice.refresh_from_db()
    assert invoice.disputed is True and invoice.status == InvoiceStatus.PAID
    assert invoice.dispute_note == "Dispute dp_test_1 (fraudulent): 8800 USD, status needs_response"
    assert len(events(tenant, "invoice_disputed")) == 1


def test_payment_method_detached_and_attached(deliver, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    pm = stripe_client().v1.payment_methods.detach(profile.payment_method_id).to_dict()
    detached = event_of(pm, "payment_method.detached", previous_attributes={"customer": profile.stripe_customer_id})
    assert deliver(detached).status_code == 200
    profile.refresh_from_db()
    assert (profile.payment_method_id, profile.payment_method_label) == ("", "")
    assert len(events(tenant, "payment_method_removed")) == 1

    new = stripe_client().v1.payment_methods.attach("pm_card_visa", params={"customer": profile.stripe_customer_id})
    deliver(event_of(new.to_dict(), "payment_method.attached"))
    profile.refresh_from_db()
    assert (profile.payment_method_id, profile.payment_method_label) == (new.id, "Visa •••• 4242")


def test_a_card_attached_elsewhere_does_not_replace_the_chosen_one(deliver, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    other = stripe_client().v1.payment_methods.attach("pm_card_visa", params={"customer": profile.stripe_customer_id})
    response = deliver(event_of(other.to_dict(), "payment_method.attached"))
    assert StripeEvent.objects.get(event_id=response.json()["received"]).status == StripeEvent.Status.IGNORED
    assert BillingProfile.objects.get(tenant=tenant).payment_method_id == profile.payment_method_id


def test_customer_deleted_forgets_customer_and_card(deliver, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    deleted = stripe_client().v1.customers.delete(profile.stripe_customer_id).to_dict()
    assert deliver(event_of(deleted, "customer.deleted")).status_code == 200
    profile.refresh_from_db()
    assert (profile.stripe_customer_id, profile.payment_method_id) == ("", "")
    # The next collection fails with a clear error instead of calling a deleted customer.
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=NOW)
    assert invoice.last_payment_error.startswith("no_payment_method:")


def test_a_handler_error_is_recorded_and_retried(deliver, make_tenant, monkeypatch):
    from billing import webhooks
    from billing.reconcile import stripe_events_retry

    tenant = make_tenant()
    profile = with_card(tenant)

    def broken(obj, event):
        raise RuntimeError("database hiccup")

    monkeypatch.setitem(webhooks.HANDLERS, "customer.deleted", broken)
    response = deliver(event_of({"id": profile.stripe_customer_id, "object": "customer"}, "customer.deleted"))
    assert response.status_code == 200  # stored: Stripe need not redeliver; we retry ourselves
    stored = StripeEvent.objects.get(event_id=response.json()["received"])
    assert (stored.status, stored.error) == (StripeEvent.Status.FAILED, "RuntimeError: database hiccup")
    monkeypatch.setitem(webhooks.HANDLERS, "customer.deleted", webhooks.on_customer_deleted)
    from datetime import timedelta

    from django.utils import timezone

    assert stripe_events_retry(now=timezone.now() + timedelta(minutes=10)) == 1
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEvent.Status.PROCESSED, 2)
    assert BillingProfile.objects.get(tenant=tenant).stripe_customer_id == ""


def test_outcome_for_an_attempt_never_begun_is_ignored(make_tenant):
    from billing.gateway import ChargeResult

    tenant = make_tenant()
    invoice = make_invoice(tenant)
    result = ChargeResult(payment_intent_id="pi_future", status="succeeded", amount=invoice.total, currency="USD")
    assert payment_outcome_record(invoice_id=invoice.pk, attempt=7, result=result, source="test").status == (
        InvoiceStatus.FINALIZED
    )


# -- draining --------------------------------------------------------------------------------------


def _stored(n: int, prefix: str) -> list[dict]:
    return [
        {"id": f"evt_{prefix}_{i}", "type": "invoice.upcoming", "created": int(time.time()), "data": {"object": {}}}
        for i in range(n)
    ]


def test_events_stored_together_queue_one_drain(monkeypatch, django_capture_on_commit_callbacks):
    """One drain is queued for a burst (the flag), and the drain clears the flag when it
    starts, so an event stored during or after it queues the next one."""
    from billing import tasks
    from billing.webhooks import stripe_event_store, stripe_events_drain

    queued = []
    monkeypatch.setattr(tasks.stripe_events_drain_task, "delay", lambda: queued.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        for event in _stored(3, "burst"):
            stripe_event_store(event=event)
    assert len(queued) == 1
    assert stripe_events_drain() == 3
    assert set(StripeEvent.objects.filter(event_id__startswith="evt_burst_").values_list("status", flat=True)) == {
        "ignored"
    }
    with django_capture_on_commit_callbacks(execute=True):
        stripe_event_store(event=_stored(1, "after")[0])
    assert len(queued) == 2
    assert stripe_events_drain() == 1 and stripe_events_drain() == 0
    # a backlog of more than a batch: the drain queues one more, to share it
    with django_capture_on_commit_callbacks(execute=True):
        for event in _stored(5, "backlog"):
            stripe_event_store(event=event)
    assert len(queued) == 3
    assert stripe_events_drain(batch=2) == 5
    assert len(queued) == 4


@pytest.mark.django_db(transaction=False)
def test_two_drains_share_the_backlog_and_handle_each_event_once(monkeypatch):
    """Committed events, two drains on their own connections at once (as on two workers):
    every event handled exactly once between them."""
    import threading

    from django.db import connection

    from billing import webhooks
    from billing.webhooks import stripe_events_drain

    monkeypatch.setattr(webhooks, "_drain_soon", lambda: None)  # just these two drains

    def committed(fn):
        out = []

        def run() -> None:
            try:
                out.append(fn())
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return out[0] if out else None

    prefix = f"pair{uuid.uuid4().hex[:6]}"
    now = time.time()
    committed(
        lambda: StripeEvent.objects.bulk_create(
            StripeEvent(
                event_id=f"evt_{prefix}_{i}",
                type="invoice.upcoming",
                created=datetime_from(now),
                payload={"id": f"evt_{prefix}_{i}", "type": "invoice.upcoming", "data": {"object": {}}},
            )
            for i in range(120)
        )
    )
    try:
        results: list[int] = []
        barrier = threading.Barrier(2)

        def drain() -> None:
            barrier.wait()
            try:
                results.append(stripe_events_drain(batch=10))
            finally:
                connection.close()

        threads = [threading.Thread(target=drain) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mine = StripeEvent.objects.filter(event_id__startswith=f"evt_{prefix}_")
        rows = committed(lambda: list(mine.values_list("status", "attempts")))
        assert sum(results) >= 120 and len(rows) == 120
        assert set(rows) == {("ignored", 1)}  # each handled once, by one of the two
    finally:
        committed(lambda: StripeEvent.objects.filter(event_id__startswith=f"evt_{prefix}_").delete())


def datetime_from(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
