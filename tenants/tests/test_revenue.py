"""MRR of a tenant and money formatting, with the numbers worked out by hand."""

import pytest

from tenants.models import Plan, Tenant
from tenants.revenue import money_format, tenant_mrr_minor


def tenant_on(plan: Plan | None, status: str, interval: str = "monthly") -> Tenant:
    return Tenant(name="T", slug="t", plan=plan, status=status, billing_interval=interval)


GROWTH = Plan(code="growth", name="Growth", price_monthly=29_900, price_yearly=299_000)


@pytest.mark.parametrize(
    ("status", "interval", "expected"),
    [
        ("active", "monthly", 29_900),  # $299.00 a month
        ("active", "yearly", 24_917),  # $2,990.00 / 12 = 249.1666… -> 24,916.67 cents, rounded half up
        ("past_due", "monthly", 29_900),  # still owed: counts
        ("past_due", "yearly", 24_917),
        ("trialing", "monthly", 0),
        ("suspended", "monthly", 0),
        ("cancelled", "yearly", 0),
    ],
)
def test_mrr_by_status_and_interval(status, interval, expected):
    assert tenant_mrr_minor(tenant=tenant_on(GROWTH, status, interval)) == expected


def test_mrr_rounds_half_up():
    # 18 / 12 = 1.5 -> 2 (half up, not banker's 2); 6 / 12 = 0.5 -> 1 (banker's would give 0)
    assert tenant_mrr_minor(tenant=tenant_on(Plan(price_monthly=0, price_yearly=18), "active", "yearly")) == 2
    assert tenant_mrr_minor(tenant=tenant_on(Plan(price_monthly=0, price_yearly=6), "active", "yearly")) == 1


def test_mrr_without_plan_is_zero():
    assert tenant_mrr_minor(tenant=tenant_on(None, "active")) == 0


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (29_900, "usd", "$299.00"),
        (0, "usd", "$0.00"),
        (5, "usd", "$0.05"),
        (123_456_789, "USD", "$1,234,567.89"),
        (-150, "usd", "-$1.50"),
        (1_999, "eur", "€19.99"),
        (1_234, "chf", "12.34 CHF"),
        (5_000, "jpy", "5,000 JPY"),
    ],
)
def test_money_format(minor, currency, text):
    assert money_format(minor=minor, currency=currency) == text
