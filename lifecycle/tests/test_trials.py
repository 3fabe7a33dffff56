"""Trials: reminders once each, conversion or suspension at the end (with the first invoice
drafted at conversion), a card saved after the end, extension."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing.gateway import PaymentMethodInfo
from billing.invoicing import invoices_close_due
from billing.models import BillingProfile, Invoice, Subscription
from billing.payments import payment_method_save
from billing.tests.test_invoicing import HOUR, P1, P2, amounts, record, subscribe
from lifecycle.plan_changes import plan_change
from lifecycle.trials import (
    trial_end,
    trial_ends_process,
    trial_extend,
    trial_payment_method_added,
    trial_reminders_send,
)
from tenants.models import Plan, Tenant, TenantEvent

pytestmark = pytest.mark.django_db


def trialing(make_tenant, ends_in: timedelta) -> Tenant:
    tenant = make_tenant("starter")
    Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=timezone.now() + ends_in)
    tenant.refresh_from_db()
    return tenant


def reminders_for(tenant):
    return [m for m in mail.outbox if f"owner@{tenant.slug}.test" in m.to and "trial ends" in m.subject]


def test_reminders_three_and_one_day_before_each_once(make_tenant):
    tenant = trialing(make_tenant, timedelta(days=2, hours=23))
    now = timezone.now()
    trial_reminders_send(now=now)
    trial_reminders_send(now=now + timedelta(hours=1))  # the hourly job again: nothing new
    assert [m.subject for m in reminders_for(tenant)] == ["Your saasops trial ends in 3 days"]
    trial_reminders_send(now=now + timedelta(days=2))  # 23 hours left
    trial_reminders_send(now=now + timedelta(days=2, hours=1))
    assert [m.subject for m in reminders_for(tenant)] == [
        "Your saasops trial ends in 3 days",
        "Your saasops trial ends in 1 day",
    ]
    events = TenantEvent.objects.filter(tenant=tenant, kind="trial_reminder")
    assert sorted(e.details["days_before"] for e in events) == [1, 3]


def test_late_job_sends_only_the_nearer_reminder(make_tenant):
    tenant = trialing(make_tenant, timedelta(hours=20))
    trial_reminders_send()
    trial_reminders_send()
    assert [m.subject for m in reminders_for(tenant)] == ["Your saasops trial ends in 1 day"]


def test_no_reminder_far_from_the_end(make_tenant):
    tenant = trialing(make_tenant, timedelta(days=10))
    trial_reminders_send()
    assert not reminders_for(tenant)


def test_trial_end_with_payment_method_converts(make_tenant):
    tenant = trialing(make_tenant, timedelta(seconds=-1))
    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")
    run = trial_ends_process()
    assert tenant.pk in run.converted
    tenant.refresh_from_db()
    assert tenant.status == "active"
    event = TenantEvent.objects.filter(tenant=tenant, kind="converted").get()
    assert event.details["from"] == "trialing" and event.details["to"] == "active"
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.ended_at is None and sub.status == "active"
    assert trial_end(tenant=tenant) == "skipped"  # idempotent


def test_trial_end_without_payment_method_suspends_and_a_card_reactivates(make_tenant):
    tenant = trialing(make_tenant, timedelta(seconds=-1))
    run = trial_ends_process()
    assert tenant.pk in run.suspended
    tenant.refresh_from_db()
    assert tenant.status == "suspended"
    old = Subscription.objects.get(tenant=tenant)
    assert old.ended_at is not None  # nothing billed while suspended
    assert trial_ends_process().suspended == []  # idempotent

    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")
    assert trial_payment_method_added(tenant) == "reactivated"
    tenant.refresh_from_db()
    assert tenant.status == "active"
    new = Subscription.objects.get(tenant=tenant, ended_at__isnull=True)
    assert new.pk != old.pk and new.billing_starts_at <= timezone.now()
    assert TenantEvent.objects.filter(tenant=tenant, kind="reactivated").exists()
    assert trial_payment_method_added(tenant) == "unchanged"


def test_payment_method_does_not_lift_other_suspensions(make_tenant):
    from tenants.status import tenant_suspend

    tenant = make_tenant("starter")
    tenant_suspend(tenant=tenant, reason="abuse")
    assert trial_payment_method_added(tenant) == "unchanged"


def test_staff_extends_a_trial(make_tenant, django_user_model):
    staff = django_user_model.objects.create(username="ops", email="ops@saasops.test", is_staff=True)
    tenant = trialing(make_tenant, timedelta(days=1))
    before = tenant.trial_ends_at
    trial_extend(tenant=tenant, days=7, actor=staff, reason="evaluation needs a week more")
    tenant.refresh_from_db()
    assert tenant.trial_ends_at - before == timedelta(days=7)
    assert Subscription.objects.get(tenant=tenant).billing_starts_at == tenant.trial_ends_at
    event = TenantEvent.objects.get(tenant=tenant, kind="trial_extended")
    assert event.actor_type == "staff" and event.note == "evaluation needs a week more"
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        trial_extend(tenant=make_tenant("free"), days=7, actor=staff, reason="x")


def test_trial_extension_admin_action(client, make_tenant, django_user_model, settings):
    admin_user = django_user_model.objects.create_superuser(
        username="root", email="root@saasops.test", password="pw-root-123"
    )
    tenant = trialing(make_tenant, timedelta(days=1))
    client.force_login(admin_user)
    url = "/admin/lifecycle/lifecycletenant/"
    host = {"HTTP_HOST": settings.BASE_DOMAIN}
    page = client.post(url, {"action": "extend_trial", "_selected_action": [tenant.pk]}, **host)
    assert page.status_code == 200 and b"Extend trial" in page.content
    done = client.post(
        url,
        {"action": "extend_trial", "_selected_action": [tenant.pk], "apply": "1", "days": 5, "reason": "sales"},
        **host,
    )
    assert done.status_code == 302
    assert TenantEvent.objects.filter(tenant=tenant, kind="trial_extended", actor=admin_user).exists()


# --- the first invoice at conversion ---------------------------------------------------------------
TRIAL_END = datetime(2026, 8, 16, tzinfo=UTC)  # periods anchored on the 1st: 16 of August's 31 days billable


def trial_until(make_tenant, ends_at: datetime, plan: str = "growth") -> Tenant:
    """A trialing tenant whose trial (and so its billing start) ends at `ends_at`."""
    tenant = make_tenant(plan)
    Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=ends_at)
    Subscription.objects.filter(tenant=tenant).update(billing_starts_at=ends_at)
    tenant.refresh_from_db()
    return tenant


def with_card(tenant) -> None:
    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")


def expected_fee(sub: Subscription, monthly_minor: int) -> tuple[Decimal, int]:
    """rating.plan_fee_line's arithmetic for [billing start, period end): fraction, amount."""
    from metering.periods import period_bounds

    start, end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
    fraction = Decimal((end - sub.billing_starts_at).total_seconds()) / Decimal((end - start).total_seconds())
    fraction = min(Decimal(1), fraction.quantize(Decimal("0.000001")))
    return fraction, int((Decimal(monthly_minor) * fraction).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_conversion_drafts_the_first_invoice_in_advance_exactly_once(make_tenant):
    tenant = trial_until(make_tenant, TRIAL_END)
    subscribe(tenant, billing_starts_at=TRIAL_END)  # periods anchored on the 1st, nothing invoiced yet
    with_card(tenant)
    assert trial_end(tenant=tenant, now=TRIAL_END + HOUR) == "converted"
    [first] = Invoice.objects.filter(tenant=tenant)
    # the plan fee of the first period, prorated from the trial's end: 299.00 × 16/31 = 154.32
    assert (first.kind, first.status, first.number) == ("advance", "draft", None)  # finance reviews it
    assert (first.period_start, first.period_end, first.total) == (TRIAL_END, P2, 15_432)
    assert amounts(first) == [("base", 15_432)]
    event = TenantEvent.objects.get(tenant=tenant, kind="converted")
    assert event.details["first_invoice"] == str(first)
    # the hourly job again, and a direct second call: nothing more
    assert trial_ends_process(now=TRIAL_END + 2 * HOUR).converted == []
    assert trial_end(tenant=tenant, now=TRIAL_END + 2 * HOUR) == "skipped"
    assert Invoice.objects.filter(tenant=tenant).count() == 1

    # usage after the trial: 10,000,000 tokens over → 15.00; the period job bills it, not the fee again
    record(tenant, datetime(2026, 8, 20, 12, tzinfo=UTC), tokens=[20_000_000] * 3)
    invoices_close_due(now=P2 + HOUR)
    invoices_close_due(now=P2 + HOUR)
    august = Invoice.objects.get(tenant=tenant, kind="period", period_start=P1)
    assert amounts(august) == [("usage", 1_500), ("usage", 0), ("usage", 0)]
    assert Invoice.objects.filter(tenant=tenant).count() == 2
    assert sum(i.lines.filter(kind="base").count() for i in Invoice.objects.filter(tenant=tenant)) == 1


def test_conversion_of_an_auto_approved_tenant_issues_the_first_invoice(make_tenant):
    tenant = trial_until(make_tenant, TRIAL_END)
    subscribe(tenant, billing_starts_at=TRIAL_END)
    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa", auto_approve=True)
    trial_end(tenant=tenant, now=TRIAL_END + HOUR)
    first = Invoice.objects.get(tenant=tenant)
    assert (first.kind, first.status, first.total) == ("advance", "finalized", 15_432)
    assert first.number.startswith("INV-")


def test_conversion_after_a_period_boundary_bills_the_closed_period_at_once(make_tenant):
    """The job ran after the period holding the trial end was over: that period is invoiced at
    conversion, in arrears with its fee (nothing to bill in advance any more)."""
    tenant = trial_until(make_tenant, TRIAL_END)
    subscribe(tenant, billing_starts_at=TRIAL_END)
    with_card(tenant)
    assert trial_end(tenant=tenant, now=P2 + HOUR) == "converted"
    [first] = Invoice.objects.filter(tenant=tenant)
    assert (first.kind, first.period_start, amounts(first)[0]) == ("period", P1, ("base", 15_432))


def test_trial_ended_without_a_card_bills_nothing_and_a_card_later_bills_from_then(
    make_tenant, django_capture_on_commit_callbacks
):
    tenant = trial_until(make_tenant, timezone.now() - timedelta(minutes=5))
    assert trial_end(tenant=tenant) == "suspended"
    assert not Invoice.objects.filter(tenant=tenant).exists()
    assert trial_end(tenant=tenant) == "skipped"

    # the customer saves a card (the billing page, or Stripe's webhook): billing tells lifecycle
    card = PaymentMethodInfo(id="pm_card_visa", customer_id="cus_test", label="Visa •••• 4242")
    owner = tenant.memberships.get(role="owner").user
    with django_capture_on_commit_callbacks(execute=True):
        payment_method_save(tenant=tenant, info=card, actor=owner, source="attach")
    tenant.refresh_from_db()
    assert tenant.status == "active"
    sub = Subscription.objects.get(tenant=tenant, ended_at__isnull=True)
    assert sub.billing_starts_at > tenant.trial_ends_at  # the suspended time is not billed
    [first] = Invoice.objects.filter(tenant=tenant)
    fraction, amount = expected_fee(sub, 29_900)
    assert (first.kind, first.status, first.period_start) == ("advance", "draft", sub.billing_starts_at)
    assert first.lines.get().quantity == fraction and first.total == amount
    event = TenantEvent.objects.get(tenant=tenant, kind="reactivated")
    assert (event.actor, event.details["cause"], event.details["first_invoice"]) == (
        owner,
        "payment_method_added",
        str(first),
    )
    # the same card saved again, or the service called again: nothing more
    with django_capture_on_commit_callbacks(execute=True):
        payment_method_save(tenant=tenant, info=card, actor=owner, source="setup_intent")
    assert trial_payment_method_added(tenant) == "unchanged"
    assert Invoice.objects.filter(tenant=tenant).count() == 1


def test_an_upgrade_during_the_trial_makes_the_first_invoice_the_new_plans_fee(make_tenant):
    ends = timezone.now() + timedelta(hours=1)
    tenant = trial_until(make_tenant, ends, plan="starter")
    result = plan_change(tenant=tenant, plan=Plan.objects.get(code="growth"), actor=None)
    assert (result.kind, result.invoice) == ("upgraded", None)  # nothing charged during the trial
    with_card(tenant)
    assert trial_end(tenant=Tenant.objects.get(pk=tenant.pk), now=ends + timedelta(minutes=1)) == "converted"
    sub = Subscription.objects.get(tenant=tenant)
    line = Invoice.objects.get(tenant=tenant, kind="advance").lines.get()
    fraction, amount = expected_fee(sub, 29_900)
    assert (line.unit_price, line.quantity, line.amount) == (Decimal("299"), fraction, amount)  # Growth, not Starter
