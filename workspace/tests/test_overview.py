"""The overview: usage against the plan, the projected bill worked out by hand, alerts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from metering.periods import quota_period
from workspace.selectors.overview import bill_projection, open_subscription, period_summary
from workspace.tests.conftest import query

pytestmark = pytest.mark.django_db


@pytest.fixture
def sixteen_calls(tiny_tenant, record):
    """16 calls spread over the part of the current period that has passed."""
    now = timezone.now()
    start, _ = quota_period(tenant=tiny_tenant, at=now)
    record([query(f"t{i}", tiny_tenant.slug, now - (now - start) * (i + 1) / 17) for i in range(16)])
    return tiny_tenant


def test_projection_worked_out_by_hand(sixteen_calls):
    """Tiny plan: $100.00 fee; 10 calls included, then $1.00 per started 5.
    So far 16 calls: 6 over → 2 packages → $2.00. A quarter into the period the linear
    projection is 16 × 4 = 64 calls: 54 over → 11 packages → $11.00; total $111.00."""
    tenant = sixteen_calls
    start, end = quota_period(tenant=tenant, at=timezone.now())
    quarter = start + (end - start) / 4  # the tenant was made just now: its period began today
    assert quarter > timezone.now()
    bill = bill_projection(tenant=tenant, subscription=open_subscription(tenant=tenant), start=start, end=end,
                           now=quarter)  # fmt: skip
    assert (bill.fee, bill.overage_so_far, bill.overage_projected, bill.total_projected) == (10_000, 200, 1_100, 11_100)


def test_projection_with_tax_and_a_trial(sixteen_calls):
    from billing.models import BillingProfile, Subscription

    tenant = sixteen_calls
    BillingProfile.objects.filter(tenant=tenant).update(tax_rate=Decimal("0.2"))
    start, end = quota_period(tenant=tenant, at=timezone.now())
    bill = bill_projection(tenant=tenant, subscription=open_subscription(tenant=tenant), start=start, end=end,
                           now=end - timedelta(seconds=1))  # fmt: skip
    # At the period's end the projection is the usage so far: 16 calls → $2.00; tax 20% of 102.00.
    assert (bill.fee, bill.overage_projected, bill.tax_projected, bill.total_projected) == (10_000, 200, 2_040, 12_240)
    Subscription.objects.filter(tenant=tenant).update(billing_starts_at=end + timedelta(days=3))
    bill = bill_projection(tenant=tenant, subscription=open_subscription(tenant=tenant), start=start, end=end,
                           now=timezone.now())  # fmt: skip
    assert not bill.billable and bill.total_projected == 0


def test_overview_page_shows_usage_states_and_quota_alert(sixteen_calls, client_for):
    from metering.models import Meter, UsageAlert

    tenant = sixteen_calls
    start, _ = quota_period(tenant=tenant, at=timezone.now())
    UsageAlert.objects.create(tenant=tenant, meter=Meter.objects.get(code="api_calls"), period_start=start,
                              threshold=100, used=Decimal(16), included=10)  # fmt: skip
    owner = tenant.memberships.get(role="owner").user
    page = client_for(tenant, owner).get("/").content.decode()
    assert 'data-testid="used-api_calls">16<' in page
    assert "meter meter-full" in page
    assert "Quota reached: API calls per month" in page
    assert "Further use is billed as overage." in page
    assert "$100.00" in page and "$2.00" in page  # fee, overage so far


def test_summary_states(sixteen_calls):
    from django_tenants.utils import tenant_context

    with tenant_context(sixteen_calls):
        summary = period_summary(tenant=sixteen_calls, now=timezone.now(), show_money=False)
    calls = next(m for m in summary.meters if m.code == "api_calls")
    assert (calls.used, calls.included, calls.state) == (Decimal(16), 10, "full")
    assert summary.bill is None
    assert summary.seats.used == 1 and summary.seats.included == 3


def test_payment_failed_and_trial_ending_alerts(tenant_a, as_role):
    from billing.models import Invoice
    from tenants.models import Tenant

    now = timezone.now()
    Invoice.objects.create(tenant=tenant_a, number="INV-2026-000042", status="payment_failed", currency="usd",
                           period_start=now - timedelta(days=40), period_end=now - timedelta(days=10), total=29_900,
                           last_payment_error="Your card was declined.")  # fmt: skip
    Tenant.objects.filter(pk=tenant_a.pk).update(status="trialing", trial_ends_at=now + timedelta(days=2, hours=12))
    page = as_role("owner").get("/").content.decode()
    assert "Payment failed for invoice INV-2026-000042" in page
    assert "299.00 USD could not be collected: Your card was declined." in page
    assert "Your trial ends in 3 days" in page
    viewer = as_role("viewer").get("/").content.decode()
    assert "Payment failed" in viewer and "/billing/invoices/" not in viewer  # told, without a link it cannot open


def test_brand_new_tenant_overview_is_intentionally_empty(make_tenant, client_for):
    tenant = make_tenant(plan="free")
    page = client_for(tenant, tenant.memberships.get(role="owner").user).get("/").content.decode()
    assert "No usage yet this period." in page
    assert 'data-testid="used-api_calls">0<' in page
    assert "Nothing has happened" not in page  # provisioning is already in the history
