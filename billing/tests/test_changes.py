"""Plan change arithmetic: upgrades at once with a prorated charge, downgrades at period end."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.changes import subscription_schedule_change, subscription_upgrade
from billing.invoicing import subscription_close_periods
from billing.models import Invoice, InvoiceKind, Subscription
from metering.periods import period_bounds
from tenants.models import Plan

pytestmark = pytest.mark.django_db


def plans():
    return {p.code: p for p in Plan.objects.all()}


def test_upgrade_prorates_the_difference_for_the_rest_of_the_period(make_tenant):
    tenant = make_tenant("starter")  # 49.00 a month, 14-day trial
    sub = Subscription.objects.get(tenant=tenant)
    start, end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at + timedelta(days=35))
    at = start + timedelta(days=10)
    invoice = subscription_upgrade(subscription=sub, plan=plans()["growth"], at=at)
    assert invoice is not None and invoice.kind == InvoiceKind.PRORATION
    fraction = (Decimal((end - at).total_seconds()) / Decimal((end - start).total_seconds())).quantize(
        Decimal("0.000001")
    )
    # (299.00 − 49.00) × fraction of the month left, in cents, rounded half-up once
    expected = int((Decimal("250.00") * fraction * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert invoice.total == expected
    line = invoice.lines.get()
    assert line.description.startswith("Upgrade from Starter to Growth")
    sub.refresh_from_db()
    assert (sub.plan.code, sub.period_fee_plan.code) == ("growth", "starter")


def test_upgrade_period_invoice_charges_old_fee_then_new(make_tenant):
    tenant = make_tenant("starter")
    sub = Subscription.objects.get(tenant=tenant)
    start, end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at + timedelta(days=35))
    Subscription.objects.filter(pk=sub.pk).update(invoiced_through=start)
    subscription_upgrade(subscription=sub, plan=plans()["growth"], at=start + timedelta(days=10))
    subscription_close_periods(subscription_id=sub.pk, now=end + timedelta(seconds=1))
    period = Invoice.objects.get(tenant=tenant, kind=InvoiceKind.PERIOD, period_start=start)
    fee = period.lines.get(kind="base")
    assert fee.description.startswith("Starter plan") and fee.amount == 4900
    usage_descriptions = [line.description for line in period.lines.filter(kind="usage")]
    assert any("100,000 included" in d for d in usage_descriptions)  # rated with Growth's limits
    sub.refresh_from_db()
    assert sub.period_fee_plan is None  # the next period charges Growth


def test_upgrade_during_trial_charges_nothing_now(make_tenant):
    tenant = make_tenant("starter")
    sub = Subscription.objects.get(tenant=tenant)
    assert subscription_upgrade(subscription=sub, plan=plans()["growth"], at=timezone.now()) is None
    sub.refresh_from_db()
    assert sub.plan.code == "growth"


def test_downgrade_is_refused_as_upgrade(make_tenant):
    tenant = make_tenant("growth")
    sub = Subscription.objects.get(tenant=tenant)
    with pytest.raises(ValidationError, match="not an upgrade"):
        subscription_upgrade(subscription=sub, plan=plans()["starter"])


def test_downgrade_applies_at_next_period_start(make_tenant):
    tenant = make_tenant("growth")
    sub = Subscription.objects.get(tenant=tenant)
    subscription_schedule_change(subscription=sub, plan=plans()["starter"])
    sub.refresh_from_db()
    assert (sub.plan.code, sub.pending_plan.code) == ("growth", "starter")
    start, end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
    subscription_close_periods(subscription_id=sub.pk, now=end + timedelta(seconds=1))
    sub.refresh_from_db()
    tenant.refresh_from_db()
    assert (sub.plan.code, sub.pending_plan, tenant.plan.code) == ("starter", None, "starter")
    closed = Invoice.objects.get(tenant=tenant, kind=InvoiceKind.PERIOD, period_start=start)
    assert closed.lines.get(kind="base").description.startswith("Growth plan")


def test_interval_switch_to_yearly_charges_yearly_fee_from_next_period(make_tenant):
    tenant = make_tenant("growth")
    sub = Subscription.objects.get(tenant=tenant)
    subscription_schedule_change(subscription=sub, interval="yearly")
    first_start, first_end = period_bounds(anchor=sub.anchor_day, at=sub.billing_starts_at)
    _, second_end = period_bounds(anchor=sub.anchor_day, at=first_end)
    subscription_close_periods(subscription_id=sub.pk, now=second_end + timedelta(seconds=1))
    first = Invoice.objects.get(tenant=tenant, period_start=first_start)
    second = Invoice.objects.get(tenant=tenant, period_start=first_end)
    assert first.lines.get(kind="base").details["interval"] == "monthly"
    assert second.lines.get(kind="base").amount == 299_000  # Growth yearly: 2,990.00
    tenant.refresh_from_db()
    assert tenant.billing_interval == "yearly"
