"""Payments against a real Stripe-compatible server (localstripe, started by the `stripe_server`
fixture or by `make test`): customers, saved cards, SetupIntents, collection of finalized
invoices, declines, idempotency, and the offline gateway.

Amounts are integer minor units; every expected number is written out."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from billing.gateway import GatewayNotConfigured, gateway
from billing.models import BillingProfile, Invoice, InvoiceStatus, PaymentAttempt
from billing.payments import (
    _attempt_begin,
    billing_page_url,
    collection_idempotency_key,
    customer_ensure,
    invoice_collect,
    payment_method_attach,
    setup_intent_confirm,
    setup_intent_start,
)
from tenants.models import TenantEvent

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_periods = itertools.count()


def make_invoice(tenant, *, total: int = 12_300, currency: str = "USD", status: str = InvoiceStatus.FINALIZED):
    """A finalized invoice of `total` minor units, in a period no other test invoice uses."""
    k = next(_periods)
    start = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=40 * k)
    return Invoice.objects.create(
        tenant=tenant,
        number=f"TEST-{tenant.pk}-{k}-{start:%Y%m%d}",
        status=status,
        period_start=start,
        period_end=start + timedelta(days=30),
        currency=currency,
        subtotal=total,
        total=total,
        finalized_at=NOW - timedelta(days=1) if status != InvoiceStatus.DRAFT else None,
        due_at=NOW + timedelta(days=13),
    )


def with_card(tenant, card: str = "pm_card_visa"):
    payment_method_attach(tenant=tenant, payment_method_id=card)
    return BillingProfile.objects.get(tenant=tenant)


def events(tenant, kind: str):
    return list(TenantEvent.objects.filter(tenant=tenant, kind=kind).order_by("pk"))


def stripe_client():
    return gateway().client  # type: ignore[attr-defined]


# --- customer and card ------------------------------------------------------------------------
def test_customer_is_created_once_lazily(stripe_server, make_tenant):
    tenant = make_tenant()
    assert not BillingProfile.objects.filter(tenant=tenant).exclude(stripe_customer_id="").exists()
    first = customer_ensure(tenant=tenant)
    again = customer_ensure(tenant=tenant)
    assert first == again and first.startswith("cus_")
    assert BillingProfile.objects.get(tenant=tenant).stripe_customer_id == first
    customer = stripe_client().v1.customers.retrieve(first)
    assert customer.metadata["tenant_slug"] == tenant.slug
    assert customer.email == f"owner@{tenant.slug}.test"  # no billing email: the owner's
    assert len(events(tenant, "billing_customer_created")) == 1


def test_attach_card_saves_it_with_a_label(stripe_server, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    assert profile.payment_method_id.startswith("pm_")
    assert profile.payment_method_label == "Visa •••• 4242"
    pm = stripe_client().v1.payment_methods.retrieve(profile.payment_method_id)
    assert pm.customer == profile.stripe_customer_id
    [event] = events(tenant, "payment_method_updated")
    assert event.details["label"] == "Visa •••• 4242"


def test_a_card_declined_at_attach_is_refused_and_nothing_changes(stripe_server, make_tenant):
    tenant = make_tenant()
    with pytest.raises(ValidationError, match="declined"):
        payment_method_attach(tenant=tenant, payment_method_id="pm_card_visa_chargeDeclined")
    assert BillingProfile.objects.get(tenant=tenant).payment_method_id == ""
    assert len(events(tenant, "payment_method_refused")) == 1


def test_setup_intent_saves_the_card(stripe_server, make_tenant):
    tenant = make_tenant()
    started = setup_intent_start(tenant=tenant)
    assert started["id"].startswith("seti_") and started["client_secret"].startswith(started["id"] + "_secret_")
    assert started["status"] == "requires_payment_method"
    profile = setup_intent_confirm(tenant=tenant, setup_intent_id=started["id"], payment_method_id="pm_card_visa")
    assert profile.payment_method_label == "Visa •••• 4242"
    pm = stripe_client().v1.payment_methods.retrieve(profile.payment_method_id)
    assert pm.customer == profile.stripe_customer_id


def test_setup_intent_of_another_tenant_is_refused(stripe_server, make_tenant):
    a, b = make_tenant(), make_tenant()
    started = setup_intent_start(tenant=a)
    with pytest.raises(ValidationError, match="another workspace"):
        setup_intent_confirm(tenant=b, setup_intent_id=started["id"], payment_method_id="pm_card_visa")
    assert BillingProfile.objects.get(tenant=b).payment_method_id == ""


def test_the_billing_page_is_on_the_tenant_host(make_tenant, settings):
    tenant = make_tenant()
    settings.DEBUG, settings.PORT = True, 8000
    assert billing_page_url(tenant=tenant) == f"http://{tenant.slug}.{settings.BASE_DOMAIN}:8000/billing/"
    settings.DEBUG = False
    assert billing_page_url(tenant=tenant) == f"https://{tenant.slug}.{settings.BASE_DOMAIN}/billing/"


# --- collection ----------------------------------------------------------------------------------
def test_successful_collection_marks_the_invoice_paid(stripe_server, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    invoice = make_invoice(tenant, total=12_300)  # $123.00
    invoice = invoice_collect(invoice_id=invoice.pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.paid_at == NOW
    assert invoice.payment_attempts == 1
    [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
    assert (attempt.succeeded, attempt.amount, attempt.payment_intent_id) == (True, 12_300, invoice.payment_intent_id)
    pi = stripe_client().v1.payment_intents.retrieve(invoice.payment_intent_id)
    assert (pi.amount, pi.currency, pi.status, pi.customer) == (12_300, "usd", "succeeded", profile.stripe_customer_id)
    assert pi.metadata["invoice_id"] == str(invoice.pk) and pi.metadata["attempt"] == "1"
    [paid] = events(tenant, "invoice_paid")
    assert paid.details["amount"] == 12_300 and paid.details["source"] == "collect"


def test_a_declined_card_fails_the_invoice_and_starts_dunning(
    stripe_server, make_tenant, django_capture_on_commit_callbacks, mailoutbox
):
    tenant = make_tenant()
    tenant.refresh_from_db()
    assert tenant.status == "active"
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = make_invoice(tenant, total=4_900)
    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_collect(invoice_id=invoice.pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert invoice.last_payment_error == "card_declined: Your card was declined."
    assert invoice.next_payment_attempt_at == NOW + timedelta(days=1)  # first retry: day 1
    [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
    assert (attempt.succeeded, attempt.error_code, attempt.amount) == (False, "card_declined", 4_900)
    tenant.refresh_from_db()
    assert tenant.status == "past_due"
    assert len(events(tenant, "payment_past_due")) == 1
    assert len(events(tenant, "dunning_retry_scheduled")) == 1
    [mail] = mailoutbox
    assert mail.to == [f"owner@{tenant.slug}.test"]
    assert f"Update your payment method: {billing_page_url(tenant=tenant)}" in mail.body
    assert "$49.00" in mail.body and "2026-11-21" in mail.body


def test_no_payment_method_is_a_failed_attempt_with_a_clear_error(stripe_server, make_tenant):
    tenant = make_tenant()
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert invoice.last_payment_error == (
        f"no_payment_method: No payment method on file. Add a card at {billing_page_url(tenant=tenant)}"
    )
    assert invoice.next_payment_attempt_at == NOW + timedelta(days=1)
    assert PaymentAttempt.objects.get(invoice=invoice).error_code == "no_payment_method"
    assert BillingProfile.objects.get(tenant=tenant).stripe_customer_id == ""  # nothing was asked of Stripe


def test_collecting_twice_charges_once(stripe_server, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    invoice = make_invoice(tenant, total=2_500)
    invoice_collect(invoice_id=invoice.pk, now=NOW)
    again = invoice_collect(invoice_id=invoice.pk, now=NOW)
    assert again.status == InvoiceStatus.PAID and again.payment_attempts == 1
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
    charges = stripe_client().v1.charges.list(params={"customer": profile.stripe_customer_id}).data
    assert [c.amount for c in charges] == [2_500]


def test_an_attempt_whose_response_was_lost_is_repeated_with_the_same_key(stripe_server, make_tenant):
    """A worker charged the card and died before recording it. The next run reuses the
    attempt number, hence the idempotency key: Stripe replays the first PaymentIntent."""
    tenant = make_tenant()
    profile = with_card(tenant)
    invoice = make_invoice(tenant, total=7_700)
    plan = _attempt_begin(invoice_id=invoice.pk, now=NOW, retry=False, gw=gateway())
    assert plan is not None and plan.attempt == 1
    lost = gateway().charge(
        customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id,
        amount=plan.amount,
        currency=plan.currency,
        metadata=plan.metadata,
        idempotency_key=plan.idempotency_key,
    )
    assert lost.succeeded  # charged, but the worker "crashed" before recording it
    invoice = invoice_collect(invoice_id=invoice.pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payment_intent_id == lost.payment_intent_id
    assert invoice.payment_attempts == 1
    charges = stripe_client().v1.charges.list(params={"customer": profile.stripe_customer_id}).data
    assert [c.amount for c in charges] == [7_700]


def test_the_idempotency_key_is_the_invoice_and_the_attempt(make_tenant):
    tenant = make_tenant()
    invoice = make_invoice(tenant)
    one = collection_idempotency_key(invoice=invoice, attempt=1)
    assert one == collection_idempotency_key(invoice=Invoice.objects.get(pk=invoice.pk), attempt=1)
    assert one.startswith(f"saasops-invoice-{invoice.pk}-") and one.endswith("-attempt-1")
    assert collection_idempotency_key(invoice=invoice, attempt=2) != one


def test_a_failed_invoice_is_charged_again_only_as_a_retry(stripe_server, make_tenant):
    tenant = make_tenant()
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert invoice_collect(invoice_id=invoice.pk, now=NOW).payment_attempts == 1  # not due: dunning decides
    assert invoice_collect(invoice_id=invoice.pk, now=NOW, retry=True).payment_attempts == 2


@pytest.mark.parametrize("status", [InvoiceStatus.DRAFT, InvoiceStatus.VOID, InvoiceStatus.PAID])
def test_drafts_void_and_paid_invoices_are_not_collected(stripe_server, make_tenant, status):
    tenant = make_tenant()
    with_card(tenant)
    invoice = invoice_collect(invoice_id=make_invoice(tenant, status=status).pk, now=NOW)
    assert invoice.status == status and invoice.payment_attempts == 0
    assert not PaymentAttempt.objects.filter(invoice=invoice).exists()


def test_a_zero_invoice_is_paid_without_a_charge(stripe_server, make_tenant):
    tenant = make_tenant()
    invoice = invoice_collect(invoice_id=make_invoice(tenant, total=0).pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAID and invoice.payment_attempts == 0
    assert events(tenant, "invoice_paid")[0].details["source"] == "zero_total"


def test_without_a_stripe_key_collection_fails_loudly_and_changes_nothing(stripe_server, make_tenant, settings):
    tenant = make_tenant()
    invoice = make_invoice(tenant)
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(GatewayNotConfigured, match="STRIPE_SECRET_KEY"):
        invoice_collect(invoice_id=invoice.pk, now=NOW)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == (InvoiceStatus.FINALIZED, 0)


def test_a_new_card_retries_failed_invoices_at_once(stripe_server, make_tenant, django_capture_on_commit_callbacks):
    tenant = make_tenant()
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = invoice_collect(invoice_id=make_invoice(tenant, total=9_900).pk, now=NOW)
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    with django_capture_on_commit_callbacks(execute=True):
        with_card(tenant, "pm_card_visa")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.payment_attempts == 2
    tenant.refresh_from_db()
    assert tenant.status == "active"


# --- the offline gateway ----------------------------------------------------------------------------
def test_offline_gateway_is_labelled_and_still_bills(make_tenant, settings, caplog):
    settings.PAYMENT_GATEWAY = "offline"
    tenant = make_tenant()
    profile = with_card(tenant, "pm_card_visa")
    assert profile.stripe_customer_id.startswith("offline_cus_")
    assert profile.payment_method_label.startswith("OFFLINE")
    paid = invoice_collect(invoice_id=make_invoice(tenant, total=1_000).pk, now=NOW)
    assert paid.status == InvoiceStatus.PAID and paid.payment_intent_id.startswith("offline_pi_")
    assert "OFFLINE payment gateway: no money moved" in caplog.text
    assert events(tenant, "invoice_paid")[0].details["gateway"] == "offline"

    other = make_tenant()
    with_card(other, "pm_card_chargeCustomerFail")
    failed = invoice_collect(invoice_id=make_invoice(other).pk, now=NOW)
    assert failed.status == InvoiceStatus.PAYMENT_FAILED
    other.refresh_from_db()
    assert other.status == "past_due"
