"""Upgrades now, downgrades at period end (refused when usage does not fit), interval
switches, cancellation at period end or now, reactivation — through services and /plan/."""

import zipfile
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.models import Invoice, InvoiceKind, Subscription
from lifecycle.models import Cancellation
from lifecycle.plan_changes import (
    PlanChangeRefused,
    cancellations_due,
    plan_change,
    subscription_cancel,
    subscription_reactivate,
)
from metering.models import Meter, MeterHourly
from metering.periods import period_bounds
from tenants.models import Membership, Plan, Tenant, TenantEvent, User

pytestmark = pytest.mark.django_db


def plan(code: str) -> Plan:
    return Plan.objects.get(code=code)


def paying(make_tenant, code: str = "starter") -> Tenant:
    """A tenant past its trial, billed since the start of the current period."""
    tenant = make_tenant(code)
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(status="active", trial_ends_at=now - timedelta(days=40))
    sub = Subscription.objects.get(tenant=tenant)
    start, _ = period_bounds(anchor=sub.anchor_day, at=now)
    Subscription.objects.filter(pk=sub.pk).update(billing_starts_at=now - timedelta(days=40), invoiced_through=start)
    tenant.refresh_from_db()
    return tenant


def owner(tenant) -> User:
    return tenant.memberships.get(role="owner").user


def add_members(tenant, n: int) -> None:
    for i in range(n):
        user = User.objects.create(username=f"m{i}-{tenant.slug}", email=f"m{i}@{tenant.slug}.test")
        Membership.objects.create(user=user, tenant=tenant, role="viewer")


def test_upgrade_is_immediate_with_a_finalized_proration_invoice(make_tenant):
    tenant = paying(make_tenant, "starter")
    result = plan_change(tenant=tenant, plan=plan("growth"), actor=owner(tenant))
    assert result.kind == "upgraded"
    tenant.refresh_from_db()
    assert tenant.plan.code == "growth"  # new limits at once
    invoice = result.invoice
    assert invoice is not None and invoice.kind == InvoiceKind.PRORATION and invoice.status == "finalized"
    line = invoice.lines.get()
    # (299.00 − 49.00) × the fraction of the period left, rounded half-up once, in cents
    expected = int((Decimal("250.00") * line.quantity * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert invoice.total == expected and 0 < expected <= 25000
    kinds = set(TenantEvent.objects.filter(tenant=tenant).values_list("kind", flat=True))
    assert {"upgraded", "plan_changed", "invoice_finalized"} <= kinds


def test_upgrade_during_trial_charges_nothing(make_tenant):
    tenant = make_tenant("starter")
    result = plan_change(tenant=tenant, plan=plan("growth"), actor=owner(tenant))
    assert result.kind == "upgraded" and result.invoice is None


def test_downgrade_is_scheduled_for_period_end(make_tenant):
    tenant = paying(make_tenant, "growth")
    result = plan_change(tenant=tenant, plan=plan("starter"), actor=owner(tenant))
    assert result.kind == "downgraded"
    tenant.refresh_from_db()
    sub = Subscription.objects.get(tenant=tenant)
    assert tenant.plan.code == "growth" and sub.pending_plan.code == "starter"
    assert result.effective_at == period_bounds(anchor=sub.anchor_day, at=timezone.now())[1]
    event = TenantEvent.objects.get(tenant=tenant, kind="downgraded")
    assert event.details["to"] == "starter"
    # choosing the current plan again withdraws it
    plan_change(tenant=tenant, plan=plan("growth"), actor=owner(tenant))
    sub.refresh_from_db()
    assert sub.pending_plan is None


def test_downgrade_refused_when_seats_do_not_fit(make_tenant):
    tenant = paying(make_tenant, "growth")
    add_members(tenant, 5)  # 6 members, Starter has 5 seats
    with pytest.raises(PlanChangeRefused) as refused:
        plan_change(tenant=tenant, plan=plan("starter"), actor=owner(tenant))
    assert "Starter includes 5 seats and this workspace has 6 members: remove 1 member first." in refused.value.messages
    assert Subscription.objects.get(tenant=tenant).pending_plan is None


def test_downgrade_refused_when_storage_does_not_fit(make_tenant):
    tenant = paying(make_tenant, "growth")
    now = timezone.now()
    MeterHourly.objects.create(
        tenant=tenant, hour=now.replace(minute=0, second=0, microsecond=0), meter=Meter.objects.get(code="storage_gb"),
        value=Decimal("12.5"), last_at=now,
    )  # fmt: skip
    with pytest.raises(PlanChangeRefused) as refused:
        plan_change(tenant=tenant, plan=plan("starter"), actor=owner(tenant))
    assert any("10 GB of storage and this workspace stores 12.5 GB" in m for m in refused.value.messages)


def test_monthly_to_yearly_switch_at_next_period(make_tenant):
    tenant = paying(make_tenant, "starter")
    result = plan_change(tenant=tenant, plan=plan("starter"), interval="yearly", actor=owner(tenant))
    assert result.kind == "interval_scheduled"
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.interval == "monthly" and sub.pending_interval == "yearly"
    # Switching back before it happened withdraws the switch; asking again changes nothing.
    plan_change(tenant=tenant, plan=plan("starter"), interval="monthly", actor=owner(tenant))
    sub.refresh_from_db()
    assert sub.pending_interval == ""
    with pytest.raises(PlanChangeRefused, match="already on Starter, billed monthly"):
        plan_change(tenant=tenant, plan=plan("starter"), interval="monthly", actor=owner(tenant))


def test_interval_switch_keeps_a_scheduled_downgrade(make_tenant):
    tenant = paying(make_tenant, "growth")
    plan_change(tenant=tenant, plan=plan("starter"), actor=owner(tenant))
    plan_change(tenant=tenant, plan=plan("growth"), interval="yearly", actor=owner(tenant))
    sub = Subscription.objects.get(tenant=tenant)
    assert (sub.pending_plan.code, sub.pending_interval) == ("starter", "yearly")


def test_cancel_at_period_end_then_reactivate(make_tenant):
    tenant = paying(make_tenant, "starter")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="too_expensive", comment="budget cut")
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.cancel_at == result.effective_at and sub.cancel_reason == "too_expensive"
    tenant.refresh_from_db()
    assert tenant.status == "active"  # works until the period ends
    assert Cancellation.objects.get(tenant=tenant).comment == "budget cut"
    subscription_reactivate(tenant=tenant, actor=owner(tenant))
    sub.refresh_from_db()
    assert sub.cancel_at is None
    assert TenantEvent.objects.filter(tenant=tenant, kind="reactivated").exists()
    assert Cancellation.objects.get(tenant=tenant).reactivated_at is not None


def test_scheduled_cancellation_takes_effect_at_period_end(make_tenant):
    tenant = paying(make_tenant, "starter")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="not_using")
    assert cancellations_due(now=result.effective_at - timedelta(seconds=1)) == []
    assert cancellations_due(now=result.effective_at + timedelta(seconds=1)) == [tenant.pk]
    tenant.refresh_from_db()
    assert tenant.status == "cancelled"
    assert Subscription.objects.get(tenant=tenant).ended_at == result.effective_at
    with pytest.raises(ValidationError):
        subscription_reactivate(tenant=tenant, actor=owner(tenant))  # customers: only until the period ends


def test_cancel_now_invoices_final_usage(make_tenant):
    tenant = paying(make_tenant, "starter")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="switched", immediate=True)
    tenant.refresh_from_db()
    assert tenant.status == "cancelled"
    invoice = result.invoice
    assert invoice is not None and invoice.kind == InvoiceKind.FINAL and invoice.status == "finalized"
    fee = invoice.lines.get(kind="base")
    assert 0 < fee.amount <= 4900  # Starter's 49.00, prorated to today
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.ended_at is not None and sub.status == "cancelled"
    event = TenantEvent.objects.get(tenant=tenant, kind="cancelled")
    assert event.details["immediate"] is True and event.details["invoice"] == invoice.number


def converted(make_tenant, code: str = "starter", auto_approve: bool = False) -> Tenant:
    """A tenant whose trial ended an hour ago with a card: its first period's fee billed in advance."""
    from billing.models import BillingProfile
    from lifecycle.trials import trial_end

    tenant = make_tenant(code)
    ends = timezone.now() - timedelta(hours=1)
    Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=ends)
    Subscription.objects.filter(tenant=tenant).update(billing_starts_at=ends)
    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa", auto_approve=auto_approve)
    assert trial_end(tenant=tenant) == "converted"
    return Tenant.objects.get(pk=tenant.pk)


def test_cancel_now_after_conversion_voids_the_draft_fee_in_advance(make_tenant):
    tenant = converted(make_tenant)
    advance = Invoice.objects.get(tenant=tenant, kind="advance")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="not_using", immediate=True)
    advance.refresh_from_db()
    assert advance.status == "void"
    # the final invoice bills the fee for the hour since the trial ended, as in arrears
    fee = result.invoice.lines.get(kind="base")
    assert 0 < fee.amount < advance.total and result.invoice.status == "finalized"


def test_cancel_now_after_conversion_credits_an_issued_fee_in_advance(make_tenant):
    tenant = converted(make_tenant, auto_approve=True)
    advance = Invoice.objects.get(tenant=tenant, kind="advance")
    assert advance.status == "finalized"
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="not_using", immediate=True)
    advance.refresh_from_db()
    assert (advance.status, advance.total) == ("finalized", advance.lines.get().amount)  # never changed
    note = advance.credit_notes.get()
    # credited: the fee for the rest of the period; kept: about an hour's worth
    assert 0 < advance.total - note.amount < advance.total // 100
    # no usage to deduct it from: the final invoice has nothing due and the credit stays the tenant's
    assert result.invoice is None and note.remaining == note.amount


def test_staff_reactivates_a_cancelled_tenant(make_tenant, django_user_model):
    staff = django_user_model.objects.create(username="ops2", email="ops2@saasops.test", is_staff=True)
    tenant = paying(make_tenant, "starter")
    subscription_cancel(tenant=tenant, actor=owner(tenant), reason="other", immediate=True)
    subscription_reactivate(tenant=Tenant.objects.get(pk=tenant.pk), actor=staff, reason="came back")
    tenant.refresh_from_db()
    assert tenant.status == "active"
    assert Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).count() == 1


# --- the /plan/ page -----------------------------------------------------------------------------
def test_plan_page_for_billing_roles_only(client_for, make_tenant):
    tenant = paying(make_tenant, "starter")
    page = client_for(tenant, owner(tenant)).get("/plan/")
    assert page.status_code == 200 and b"Upgrade now" in page.content and b"Cancel subscription" in page.content
    add_members(tenant, 1)
    viewer = tenant.memberships.get(role="viewer").user
    refused = client_for(tenant, viewer).get("/plan/")
    assert refused.status_code == 403 and b"owner, admin or billing" not in refused.content.replace(b",", b",")


def test_upgrade_and_cancel_through_the_page(client_for, make_tenant):
    tenant = paying(make_tenant, "starter")
    client = client_for(tenant, owner(tenant))
    response = client.post("/plan/change/", {"plan": plan("growth").pk, "interval": "monthly"}, follow=True)
    assert b"You are on Growth now" in response.content
    response = client.post("/plan/cancel/", {"reason": "quality", "comment": "", "when": "period_end"}, follow=True)
    assert b"Cancelled at the end of the period" in response.content and b"Keep my subscription" in response.content
    response = client.post("/plan/reactivate/", follow=True)
    assert b"the cancellation is withdrawn" in response.content


def test_refusal_is_explained_on_the_page(client_for, make_tenant):
    tenant = paying(make_tenant, "growth")
    add_members(tenant, 5)
    response = client_for(tenant, owner(tenant)).post(
        "/plan/change/", {"plan": plan("starter").pk, "interval": "monthly"}, follow=True
    )
    assert b"remove 1 member first" in response.content


def test_history_page_lists_events(client_for, make_tenant):
    tenant = paying(make_tenant, "starter")
    plan_change(tenant=tenant, plan=plan("growth"), actor=owner(tenant))
    page = client_for(tenant, owner(tenant)).get("/history/")
    assert page.status_code == 200 and b"upgraded" in page.content and b"provisioned" in page.content


def test_export_zip_for_the_owner(client_for, make_tenant):
    tenant = paying(make_tenant, "starter")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="other", immediate=True)
    response = client_for(tenant, owner(tenant)).get("/plan/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(BytesIO(response.content))
    names = set(archive.namelist())
    assert {"usage.csv", "invoices.csv", "README.txt", f"invoices/{result.invoice.number}.pdf"} <= names
    assert archive.read("usage.csv").decode().startswith("date,query_count,tokens,cost_usd,latency_p95_ms")
    assert Invoice.objects.filter(tenant=tenant).exists()
