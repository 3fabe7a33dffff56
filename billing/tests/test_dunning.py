"""Dunning: retries on the policy's schedule (days after the first failure), an email each
time, suspension after the last failure (the gate answers 403), reactivation when the invoice
is paid later; reconciliation of lost outcomes; the default periodic schedules.

Time moves by passing `now=` into the services; nothing sleeps."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from billing.dunning import dunning_retry_due, next_attempt_at
from billing.gateway import gateway
from billing.models import BillingProfile, DunningPolicy, InvoiceStatus, PaymentAttempt
from billing.payments import _attempt_begin, invoice_collect
from billing.reconcile import payments_reconcile
from billing.schedules import schedules_ensure
from billing.tests.test_payments import NOW, events, make_invoice, stripe_client, with_card
from tenants.models import TenantEvent
from tenants.status import tenant_suspend

pytestmark = pytest.mark.django_db


def day(n: float, hours: float = 0):
    return NOW + timedelta(days=n, hours=hours)


def gate(client, slug: str) -> int:
    body = {"tenant": slug, "meter": "api_calls", "quantity": 1}
    return client.post("/api/v1/gate", data=json.dumps(body), content_type="application/json").status_code


# --- the schedule ---------------------------------------------------------------------------------
def test_the_schedule_counts_days_from_the_first_failure():
    days = [1, 3, 5, 7]
    assert next_attempt_at(failures=1, now=day(0), days=days, previous_next=None) == day(1)
    assert next_attempt_at(failures=2, now=day(1), days=days, previous_next=day(1)) == day(3)
    # A retry run late (day 3 + 5 h) keeps the schedule anchored on day 0.
    assert next_attempt_at(failures=3, now=day(3, 5), days=days, previous_next=day(3)) == day(5)
    assert next_attempt_at(failures=4, now=day(5), days=days, previous_next=day(5)) == day(7)
    assert next_attempt_at(failures=5, now=day(7), days=days, previous_next=day(7)) is None  # suspend
    # After downtime the schedule catches up, but never faster than one retry an hour.
    assert next_attempt_at(failures=2, now=day(4), days=days, previous_next=day(1)) == day(4, 1)


def test_the_whole_cycle_decline_retries_suspension_recovery(
    stripe_server, make_tenant, platform_client, mailoutbox, django_capture_on_commit_callbacks
):
    tenant = make_tenant()  # Free plan: active, no trial
    with_card(tenant, "pm_card_chargeCustomerFail")
    invoice = make_invoice(tenant, total=2_000)
    assert gate(platform_client, tenant.slug) == 200

    with django_capture_on_commit_callbacks(execute=True):
        invoice = invoice_collect(invoice_id=invoice.pk, now=day(0))
    tenant.refresh_from_db()
    assert (invoice.status, invoice.next_payment_attempt_at, tenant.status) == ("payment_failed", day(1), "past_due")
    assert gate(platform_client, tenant.slug) == 200  # past due still works

    # (retry on day, next retry after it): 1 → 3 → 5 → 7 → none (suspended)
    for at, following in [(1, 3), (3, 5), (5, 7), (7, None)]:
        with django_capture_on_commit_callbacks(execute=True):
            early = dunning_retry_due(now=day(at, -1))
        assert early.due == 0  # an hour early: nothing is due
        with django_capture_on_commit_callbacks(execute=True):
            run = dunning_retry_due(now=day(at))
        assert (run.due, run.failed, run.paid) == (1, 1, 0)
        invoice.refresh_from_db()
        assert invoice.next_payment_attempt_at == (day(following) if following else None)

    assert invoice.payment_attempts == 5
    assert PaymentAttempt.objects.filter(invoice=invoice, succeeded=False).count() == 5
    tenant.refresh_from_db()
    assert tenant.status == "suspended"
    assert gate(platform_client, tenant.slug) == 403
    suspended = TenantEvent.objects.get(tenant=tenant, kind="suspended")
    assert suspended.details["cause"] == "dunning" and suspended.details["from"] == "past_due"
    assert len(events(tenant, "dunning_retry_scheduled")) == 4
    assert len(events(tenant, "dunning_exhausted")) == 1

    # One email per failure, to the owner, each with the billing page; the last says suspended.
    assert len(mailoutbox) == 5
    assert {tuple(m.to) for m in mailoutbox} == {(f"owner@{tenant.slug}.test",)}
    assert all(f"{tenant.slug}." in m.body and "/billing/" in m.body for m in mailoutbox)
    subjects = [m.subject for m in mailoutbox]
    assert subjects[:4] == [f"[{tenant.name}] Payment failed for invoice {invoice}"] * 4
    assert subjects[4] == f"[{tenant.name}] Workspace suspended: invoice {invoice} is unpaid"
    assert len(events(tenant, "dunning_email_sent")) == 5
    # Nothing more is tried on its own.
    assert dunning_retry_due(now=day(30)).due == 0

    # The customer adds a working card: charged at once, tenant reactivated.
    with django_capture_on_commit_callbacks(execute=True):
        with_card(tenant, "pm_card_visa")
    invoice.refresh_from_db()
    tenant.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts, tenant.status) == ("paid", 6, "active")
    assert gate(platform_client, tenant.slug) == 200
    assert TenantEvent.objects.filter(tenant=tenant, kind="reactivated").count() == 1
    assert len(events(tenant, "dunning_recovered")) == 1


def test_a_retry_that_succeeds_reactivates_a_past_due_tenant(stripe_server, make_tenant):
    tenant = make_tenant()
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=day(0))  # no card: fails
    tenant.refresh_from_db()
    assert tenant.status == "past_due"
    with_card(tenant, "pm_card_visa")  # on-commit retry not run here: the schedule does it
    run = dunning_retry_due(now=day(1))
    assert (run.due, run.paid) == (1, 1)
    invoice.refresh_from_db()
    tenant.refresh_from_db()
    assert (invoice.status, tenant.status) == ("paid", "active")
    assert TenantEvent.objects.filter(tenant=tenant, kind="activated", details__cause="payment").count() == 1


def test_the_policy_decides_the_schedule(stripe_server, make_tenant):
    policy = DunningPolicy.current()
    policy.retry_days = [2]
    policy.save()
    tenant = make_tenant()
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=day(0))
    assert invoice.next_payment_attempt_at == day(2)
    dunning_retry_due(now=day(2))
    invoice.refresh_from_db()
    tenant.refresh_from_db()
    assert (invoice.next_payment_attempt_at, tenant.status) == (None, "suspended")


def test_paying_one_invoice_keeps_the_tenant_past_due_while_another_is_unpaid(stripe_server, make_tenant):
    tenant = make_tenant()
    first = invoice_collect(invoice_id=make_invoice(tenant, total=1_000).pk, now=day(0))
    second = invoice_collect(invoice_id=make_invoice(tenant, total=2_000).pk, now=day(0))
    assert (first.status, second.status) == ("payment_failed", "payment_failed")
    with_card(tenant, "pm_card_visa")
    invoice_collect(invoice_id=first.pk, now=day(0, 1), retry=True)
    tenant.refresh_from_db()
    assert tenant.status == "past_due"
    invoice_collect(invoice_id=second.pk, now=day(0, 2), retry=True)
    tenant.refresh_from_db()
    assert tenant.status == "active"


def test_a_tenant_suspended_by_staff_is_not_reactivated_by_a_payment(stripe_server, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    tenant_suspend(tenant=tenant, reason="abuse")
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=day(0))
    tenant.refresh_from_db()
    assert (invoice.status, tenant.status) == ("paid", "suspended")


def test_a_failure_of_a_cancelled_tenant_is_recorded_without_a_status_change(stripe_server, make_tenant):
    from tenants.status import tenant_cancel

    tenant = make_tenant()
    tenant_cancel(tenant=tenant, reason="left")
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=day(0))
    tenant.refresh_from_db()
    assert (invoice.status, tenant.status) == ("payment_failed", "cancelled")
    assert len(events(tenant, "dunning_retry_scheduled")) == 1


def test_the_email_goes_to_the_billing_email_once_per_failure(stripe_server, make_tenant, mailoutbox):
    from billing.dunning import dunning_email_send

    tenant = make_tenant()
    BillingProfile.objects.update_or_create(tenant=tenant, defaults={"billing_email": "ap@example.com"})
    invoice = invoice_collect(invoice_id=make_invoice(tenant).pk, now=day(0))
    assert dunning_email_send(invoice_id=invoice.pk, failures=1) == "ap@example.com"
    assert dunning_email_send(invoice_id=invoice.pk, failures=1) == ""  # sent already
    assert [m.to for m in mailoutbox] == [["ap@example.com"]]


# --- reconciliation ---------------------------------------------------------------------------------
def test_reconciliation_settles_an_invoice_whose_webhook_was_lost(stripe_server, make_tenant):
    tenant = make_tenant()
    with_card(tenant)
    invoice = make_invoice(tenant, total=4_400)
    plan = _attempt_begin(invoice_id=invoice.pk, now=day(0), retry=False, gw=gateway())
    charged = gateway().charge(
        customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id,
        amount=plan.amount,
        currency=plan.currency,
        metadata=plan.metadata,
        idempotency_key=plan.idempotency_key,
    )
    # We learnt the PaymentIntent id but not its outcome (e.g. it was processing) and the webhook never came.
    invoice.payment_intent_id = charged.payment_intent_id
    invoice.save(update_fields=["payment_intent_id"])
    run = payments_reconcile(now=day(0, 1))
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert run.changed >= 1
    assert events(tenant, "invoice_paid")[0].details["source"] == "reconcile"
    assert payments_reconcile(now=day(0, 2)).changed == 0  # nothing left to do


def test_reconciliation_resumes_a_lost_attempt_without_charging_twice(stripe_server, make_tenant):
    tenant = make_tenant()
    profile = with_card(tenant)
    invoice = make_invoice(tenant, total=1_234)
    plan = _attempt_begin(invoice_id=invoice.pk, now=day(0), retry=False, gw=gateway())
    gateway().charge(
        customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id,
        amount=plan.amount,
        currency=plan.currency,
        metadata=plan.metadata,
        idempotency_key=plan.idempotency_key,
    )
    run = payments_reconcile(now=day(1))
    assert run.resumed == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_attempts) == (InvoiceStatus.PAID, 1)
    charges = stripe_client().v1.charges.list(params={"customer": profile.stripe_customer_id}).data
    assert [c.amount for c in charges] == [1_234]


# --- schedules ---------------------------------------------------------------------------------------
def test_default_schedules_are_created_once_and_staff_edits_stay(db):
    rows = schedules_ensure()
    assert sorted(r.task for r in rows) == ["billing.close_periods", "billing.dunning_retry_due",
                                            "billing.reconcile_payments"]  # fmt: skip
    by_task = {r.task: r for r in rows}
    assert (by_task["billing.close_periods"].crontab.hour, by_task["billing.close_periods"].crontab.minute) == (
        "0",
        "5",
    )
    assert by_task["billing.dunning_retry_due"].crontab.hour == "*"
    assert by_task["billing.reconcile_payments"].crontab.hour == "*"
    PeriodicTask.objects.filter(task="billing.dunning_retry_due").update(enabled=False)
    again = schedules_ensure()
    assert [r.pk for r in again] == [r.pk for r in rows]
    assert PeriodicTask.objects.filter(task__startswith="billing.").count() == 3
    assert PeriodicTask.objects.get(task="billing.dunning_retry_due").enabled is False
