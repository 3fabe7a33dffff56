"""The invoicing service: rating arithmetic on real metered usage, and the period job's
idempotency (re-runs, two workers at once, a crash halfway, gap-free numbers).

Every tenant here is on Growth unless a test says otherwise (tenants/plan_catalog.py):
299.00 a month (2,990.00 a year); API calls 100,000 included, then 0.50 per started 1,000;
AI tokens 50,000,000 included, then 1.50 per started 1,000,000; storage 100 GB included,
then 0.20 per started GB. Amounts are in cents.

Subscriptions are moved onto fixed past periods anchored on the 1st (P1 = August 2026,
P2 = September, P3 = October) and usage is recorded through metering.ledger.events_record
with timestamps inside them, so the numbers below never depend on today's date. Lines come
in the rating engine's order: plan fee, then usage by resource (ai_tokens, api_calls,
storage_gb), late adjustments, discount, credits, tax.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from billing import invoicing
from billing.invoicing import credit_note_issue, invoice_finalize, invoice_void, invoices_close_due
from billing.models import (
    BillingProfile,
    Coupon,
    CreditNote,
    Discount,
    Invoice,
    InvoiceSequence,
    InvoiceStatus,
    Subscription,
)
from billing.rating import usage_line
from metering.ledger import events_record
from metering.models import UsageCursor
from tenants.models import Plan, PlanLimit

pytestmark = pytest.mark.django_db

P1 = datetime(2026, 8, 1, tzinfo=UTC)
P2 = datetime(2026, 9, 1, tzinfo=UTC)
P3 = datetime(2026, 10, 1, tzinfo=UTC)
P4 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def subscribe(tenant, *, billing_starts_at: datetime = P1, interval: str = "monthly") -> Subscription:
    """Put the tenant's subscription on periods anchored on the 1st, billing from the given time,
    nothing invoiced yet (the cursor at the start of the period billing starts in)."""
    first = billing_starts_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    Subscription.objects.filter(tenant=tenant).update(
        started_at=first,
        anchor_day=1,
        billing_starts_at=billing_starts_at,
        invoiced_through=first,
        interval=interval,
    )
    return Subscription.objects.get(tenant=tenant)


def record(tenant, at: datetime, *, calls=0, tokens=(), storage_gb=(), key="", received: datetime | None = None):
    """Usage as the product backend would send it: `calls` query events without tokens, one
    query event per entry of `tokens` (each also one API call), one storage reading per entry
    of `storage_gb` (an hour apart, so the last is the latest), received shortly after `at`
    unless `received` says when. Returns the ingest result."""
    key = key or at.strftime("%Y%m%d%H%M")
    stamp = at.isoformat()
    events = [{"id": f"{key}-c{i}", "tenant": tenant.slug, "type": "query", "timestamp": stamp} for i in range(calls)]
    for i, amount in enumerate(tokens):
        # at most 10,000,000 per field and event: split over input and output
        split = {"input_tokens": min(amount, 10_000_000), "output_tokens": amount - min(amount, 10_000_000)}
        events.append(
            {"id": f"{key}-t{i}", "tenant": tenant.slug, "type": "query", "timestamp": stamp, "properties": split}
        )
    for i, gb in enumerate(storage_gb):
        events.append(
            {
                "id": f"{key}-s{i}",
                "tenant": tenant.slug,
                "type": "storage",
                "timestamp": (at + i * HOUR).isoformat(),
                "properties": {"storage_gb": gb},
            }
        )
    result = events_record(raw_events=events, now=received or at + timedelta(hours=len(storage_gb) + 1))
    assert result.rejected == 0, result.results
    return result


def close(now: datetime):
    return invoices_close_due(now=now)


def invoice_of(tenant, start: datetime) -> Invoice:
    return Invoice.objects.exclude(status=InvoiceStatus.VOID).get(tenant=tenant, kind="period", period_start=start)


def lines_of(invoice: Invoice) -> list[tuple[str, str, int]]:
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def amounts(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount) for line in invoice.lines.order_by("position")]


# -- plan fee ----------------------------------------------------------------------------------


def test_full_month_is_the_base_fee_and_usage_lines_at_zero(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    result = close(P2 + HOUR)  # P1 has ended; P2 has not
    assert result.drafted == 1
    invoice = invoice_of(tenant, P1)
    assert (invoice.period_end, invoice.status, invoice.currency) == (P2, InvoiceStatus.DRAFT, "usd")
    assert lines_of(invoice) == [
        ("base", "Growth plan, 2026-08-01 to 2026-09-01", 29_900),
        ("usage", "0 AI tokens used (50,000,000 included)", 0),
        ("usage", "0 API calls used (100,000 included)", 0),
        ("usage", "0 GB of storage used (100 included)", 0),
    ]
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.previous_total) == (29_900, 0, 29_900, None)
    api = invoice.lines.get(meter="api_calls")
    assert api.usage_query.startswith(f"/api/v1/tenants/{tenant.slug}/usage?from=2026-08-01T00:00:00+00:00")


def test_trial_ending_mid_period_prorates_the_fee_and_bills_usage_from_then(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant, billing_starts_at=datetime(2026, 8, 16, tzinfo=UTC))
    # during the trial: 60,000,000 tokens in 6 calls — not billed
    record(tenant, datetime(2026, 8, 10, 12, tzinfo=UTC), tokens=[10_000_000] * 6)
    # after it: 2 calls with 1,000 tokens
    record(tenant, datetime(2026, 8, 20, 12, tzinfo=UTC), tokens=[1_000, 0])
    close(P2 + HOUR)
    invoice = invoice_of(tenant, P1)
    fee = invoice.lines.get(kind="base")
    # billable 16 of August's 31 days: 16/31 = 0.516129032… kept to six decimals = 0.516129;
    # 299.00 × 0.516129 = 154.322571 → 154.32 (half-up at the cent)
    assert fee.quantity == Decimal("0.516129")
    assert fee.unit_price == Decimal("299")
    assert fee.amount == 15_432
    assert fee.description == "Growth plan, 2026-08-16 to 2026-09-01 (prorated: 51.61% of the month)"
    # usage only from 2026-08-16: 1,000 tokens and 2 calls (the trial's 60M tokens are not billed)
    tokens = invoice.lines.get(meter="ai_tokens")
    calls = invoice.lines.get(meter="api_calls")
    assert (tokens.quantity, tokens.amount) == (Decimal(1_000), 0)
    assert (calls.quantity, calls.amount) == (Decimal(2), 0)
    assert invoice.total == 15_432


def test_yearly_interval_bills_the_fee_on_the_first_period_not_the_second(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant, interval="yearly")
    close(P3 + HOUR)  # closes P1 and P2
    first = invoice_of(tenant, P1)
    assert lines_of(first)[0] == ("base", "Growth plan, yearly fee (12 months from 2026-08-01)", 299_000)
    assert first.total == 299_000
    # September: no fee and no overage, so nothing is due and no invoice is drafted
    assert not Invoice.objects.filter(tenant=tenant, period_start=P2).exists()


def test_yearly_fee_does_not_trip_the_swing_flag(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant, interval="yearly")
    record(tenant, datetime(2026, 9, 10, tzinfo=UTC), calls=100_001)  # September: one overage package
    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    # 299,000 → 50 looks like −100%, but without the yearly fee August was 0 and September is 0.50
    assert (september.previous_total, september.total, september.swing_flag) == (299_000, 50, False)


# -- usage ---------------------------------------------------------------------------------------


def test_api_calls_at_the_included_limit_cost_nothing_and_one_more_starts_a_package(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    record(tenant, datetime(2026, 8, 10, tzinfo=UTC), calls=100_000)  # exactly the included 100,000
    record(tenant, datetime(2026, 9, 10, tzinfo=UTC), calls=100_001)  # one over
    close(P3 + HOUR)
    august = invoice_of(tenant, P1).lines.get(meter="api_calls")
    assert (august.description, august.quantity, august.amount) == (
        "100,000 API calls used (100,000 included)",
        Decimal(100_000),
        0,
    )
    september = invoice_of(tenant, P2)
    calls = september.lines.get(meter="api_calls")
    # 100,001 − 100,000 = 1 over → ceil(1 / 1,000) = 1 started package × 0.50 = 0.50
    assert calls.description == "100,001 API calls used, 100,000 included: 1 over at 0.50 per 1,000"
    assert (calls.quantity, calls.unit_price, calls.amount) == (Decimal(1), Decimal("0.5"), 50)
    assert calls.details["packages"] == "1"
    assert september.total == 29_900 + 50


@pytest.mark.parametrize(
    ("used", "packages", "amount"),
    [
        (100_000, 0, 0),  # at the limit
        (100_001, 1, 50),  # 1 over: one started package
        (101_000, 1, 50),  # 1,000 over: exactly one package
        (101_001, 2, 100),  # 1,001 over: a second package starts
        (123_456, 24, 1_200),  # 23,456 over → ceil(23.456) = 24 × 0.50 = 12.00 (docs/BILLING.md)
    ],
)
def test_overage_packages_are_started_packages(used, packages, amount):
    limit = PlanLimit.objects.get(plan__code="growth", resource="api_calls")
    line = usage_line(limit=limit, currency="usd", used=Decimal(used), period_start=P1, period_end=P2, tenant_slug="x")
    assert line.amount == amount
    assert line.details.get("packages", "0") == str(packages)


def test_package_prices_finer_than_a_cent_are_shown_as_they_are():
    limit = PlanLimit(resource="ai_tokens", included=0, on_exceed="overage", overage_package_size=1)
    limit.overage_package_price = Decimal("0.0025")
    line = usage_line(limit=limit, currency="usd", used=Decimal(1_001), period_start=P1, period_end=P2, tenant_slug="x")
    # 1,001 packages × 0.0025 = 2.5025 → 2.50
    assert line.description == "1,001 AI tokens used, 0 included: 1,001 over at 0.0025"
    assert line.amount == 250


def test_tokens_and_storage_overage(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    # 4 query events: 20M + 20M + 20M + 15.5M = 75,500,000 tokens (and 4 API calls)
    record(tenant, datetime(2026, 8, 5, tzinfo=UTC), tokens=[20_000_000, 20_000_000, 20_000_000, 15_500_000])
    # storage readings 120 GB then 142.5 GB: the latest (142.5) is what is billed
    record(tenant, datetime(2026, 8, 20, tzinfo=UTC), storage_gb=[120, 142.5])
    close(P2 + HOUR)
    invoice = invoice_of(tenant, P1)
    assert lines_of(invoice)[1:] == [
        # 25,500,000 over → ceil(25.5) = 26 packages × 1.50 = 39.00
        ("usage", "75,500,000 AI tokens used, 50,000,000 included: 25,500,000 over at 1.50 per 1,000,000", 3_900),
        ("usage", "4 API calls used (100,000 included)", 0),
        # 42.5 GB over → ceil(42.5 / 1) = 43 packages × 0.20 = 8.60
        ("usage", "142.50 GB of storage used, 100 included: 42.50 over at 0.20", 860),
    ]
    assert invoice.total == 29_900 + 3_900 + 860  # 346.60


def test_free_plan_with_nothing_due_gets_no_invoice(make_tenant):
    tenant = make_tenant("free")
    subscribe(tenant)
    record(tenant, datetime(2026, 8, 3, tzinfo=UTC), calls=1_200)
    close(P2 + HOUR)
    assert not Invoice.objects.filter(tenant=tenant).exists()


def test_hard_limited_plan_shows_usage_at_zero(make_tenant):
    tenant = make_tenant("free")  # no trial; 1,000 calls, 500,000 tokens, 1 GB, all hard limits
    Plan.objects.filter(code="free").update(price_monthly=1)  # a fee, so that an invoice is due
    subscribe(tenant)
    record(tenant, datetime(2026, 8, 3, tzinfo=UTC), calls=1_200, storage_gb=[3])
    close(P2 + HOUR)
    invoice = invoice_of(tenant, P1)
    assert lines_of(invoice) == [
        ("base", "Free plan, 2026-08-01 to 2026-09-01", 1),
        ("usage", "0 AI tokens used (500,000 included)", 0),
        # over the included 1,000, but a hard limit never bills: shown, at 0.00
        ("usage", "1,200 API calls used (1,000 included)", 0),
        ("usage", "3 GB of storage used (1 included)", 0),
    ]
    assert invoice.lines.get(meter="api_calls").quantity == Decimal(1_200)
    assert invoice.total == 1  # the fee alone


# -- discounts, credits, tax ---------------------------------------------------------------------


def test_percent_coupon_for_two_periods(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    coupon = Coupon.objects.create(code="launch-12-5", name="Launch", percent_off=Decimal("12.5"), duration_periods=2)
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P1)
    close(P4 + HOUR)  # P1, P2, P3
    # 12.5% of 29,900 = 3,737.5 → 3,738 (half-up, once, on the line)
    for start in (P1, P2):
        invoice = invoice_of(tenant, start)
        assert lines_of(invoice)[-1] == ("discount", "Discount launch-12-5: 12.5% off the plan fee", -3_738)
        assert invoice.total == 29_900 - 3_738  # 261.62
    third = invoice_of(tenant, P3)
    assert "discount" not in [kind for kind, _ in amounts(third)]
    assert third.total == 29_900
    assert Discount.objects.get(tenant=tenant).periods_used == 2


def test_a_coupon_period_is_counted_only_by_an_invoice_that_exists(make_tenant):
    """Drafting a period that has its invoice already (a second worker) makes nothing and
    uses up no coupon period."""
    tenant = make_tenant("growth")
    sub = subscribe(tenant)
    coupon = Coupon.objects.create(code="once-more", name="Once", percent_off=Decimal("10"), duration_periods=3)
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P1)
    close(P2 + HOUR)
    assert Discount.objects.get(tenant=tenant).periods_used == 1
    sub.refresh_from_db()
    again = invoicing.invoice_draft(subscription=sub, period_start=P1, period_end=P2, now=P2 + HOUR)
    assert again is None
    assert Discount.objects.get(tenant=tenant).periods_used == 1


def test_amount_coupon_forever_and_capped_at_the_fee(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant, billing_starts_at=datetime(2026, 8, 16, tzinfo=UTC))
    coupon = Coupon.objects.create(code="two-hundred", name="200.00 off", amount_off=20_000)
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P1)
    close(P3 + HOUR)
    # August: the prorated fee is 154.32, so 200.00 off is capped at 154.32 → total 0.00
    first = invoice_of(tenant, P1)
    assert amounts(first) == [("base", 15_432), ("usage", 0), ("usage", 0), ("usage", 0), ("discount", -15_432)]
    assert first.total == 0
    # September: full fee 299.00 − 200.00 = 99.00
    assert invoice_of(tenant, P2).total == 9_900


def test_credit_note_is_deducted_from_the_next_invoice(make_tenant, django_user_model):
    tenant = make_tenant("growth")
    subscribe(tenant)
    staff = django_user_model.objects.create_user(username="fin@x.test", email="fin@x.test", is_staff=True)
    close(P2 + HOUR)
    august = invoice_finalize(invoice=invoice_of(tenant, P1), actor=staff)
    note = credit_note_issue(invoice=august, amount=2_500, reason="API outage on 2026-08-12", actor=staff)
    assert note.number.startswith("CN-") and note.remaining == 2_500
    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    assert lines_of(september)[-1] == (
        "credit",
        f"Credit note {note.number} (invoice {august.number}): API outage on 2026-08-12",
        -2_500,
    )
    assert september.total == 29_900 - 2_500  # 274.00
    assert [(a.invoice, a.amount) for a in note.applications.all()] == [(september, 2_500)]
    assert note.remaining == 0
    august.refresh_from_db()
    assert august.total == 29_900  # the credited invoice itself never changes
    # only once: October has no credit line
    close(P4 + HOUR)
    assert invoice_of(tenant, P3).total == 29_900


def test_a_credit_bigger_than_the_next_invoice_is_deducted_in_parts(make_tenant):
    """A credit note for more than the next invoice's subtotal takes that invoice to zero and
    the rest goes to the invoices after it; voiding one of them gives its part back."""
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P2 + HOUR)
    august = invoice_finalize(invoice=invoice_of(tenant, P1), actor=None)
    note = credit_note_issue(invoice=august, amount=29_900, reason="goodwill: a month free", actor=None)
    PlanLimit.objects.filter(plan=tenant.plan).delete()  # fee-only months from here, at 200.00
    Plan.objects.filter(pk=tenant.plan_id).update(price_monthly=20_000)
    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    credit = september.lines.get(kind="credit")
    assert credit.amount == -20_000 and september.total == 0
    assert credit.description.endswith("($200.00 of $299.00; $99.00 left)")
    assert note.remaining == 9_900
    close(P4 + HOUR)
    october = invoice_of(tenant, P3)
    assert (october.lines.get(kind="credit").amount, october.total) == (-9_900, 10_100)
    assert note.remaining == 0
    invoice_void(invoice=october, actor=None, reason="redo")
    assert note.remaining == 9_900
    close(datetime(2026, 12, 1, 1, tzinfo=UTC))
    assert invoice_of(tenant, P4).lines.get(kind="credit").amount == -9_900


def test_a_voided_invoice_is_drafted_again_with_what_was_corrected(make_tenant):
    """Finance voids August (usage was missing), the missing usage arrives, and August is
    drafted again: the new draft bills it, and the coupon period the void invoice had used
    is given back and used again — not twice."""
    tenant = make_tenant("growth")
    sub = subscribe(tenant)
    coupon = Coupon.objects.create(code="redo-10", name="10%", percent_off=Decimal("10"), duration_periods=1)
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P1)
    record(tenant, datetime(2026, 8, 10, tzinfo=UTC), tokens=[10_000_000] * 5)
    close(P2 + HOUR)
    august = invoice_of(tenant, P1)
    assert august.total == 29_900 - 2_990
    invoice_void(invoice=august, actor=None, reason="usage of the 20th missing")
    assert Discount.objects.get(tenant=tenant).periods_used == 0
    record(tenant, datetime(2026, 8, 20, tzinfo=UTC), tokens=[10_000_000], key="fix", received=P2 + DAY)
    again = invoicing.invoice_redraft(invoice=august, actor=None, now=P2 + 2 * DAY)
    assert (again.status, again.period_start, again.period_end) == (InvoiceStatus.DRAFT, P1, P2)
    # 60,000,000 tokens: 10 packages over at 1.50 = 15.00, on the fee less the coupon
    assert again.total == 29_900 - 2_990 + 1_500
    assert Discount.objects.get(tenant=tenant).periods_used == 1
    assert sub.tenant.events.filter(kind="invoice_redrafted").count() == 1
    # September does not bill August's late usage again: the new draft billed it
    close(P3 + HOUR)
    assert not invoice_of(tenant, P2).lines.filter(kind="adjustment").exists()


def test_redrafting_is_refused_with_the_reason(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P2 + HOUR)
    august = invoice_of(tenant, P1)
    with pytest.raises(ValidationError, match="only a void invoice"):
        invoicing.invoice_redraft(invoice=august, actor=None)
    invoice_void(invoice=august, actor=None, reason="redo")
    invoicing.invoice_redraft(invoice=august, actor=None, now=P2 + DAY)
    with pytest.raises(ValidationError, match="has a live invoice already"):
        invoicing.invoice_redraft(invoice=august, actor=None, now=P2 + DAY)
    second = invoice_of(tenant, P1)
    invoice_void(invoice=second, actor=None, reason="redo again")
    tenant.events.create(kind="upgraded", details={"to": "enterprise"})  # the plan changed since
    with pytest.raises(ValidationError, match="plan or billing interval changed"):
        invoicing.invoice_redraft(invoice=second, actor=None, now=P2 + DAY)
    assert not Invoice.objects.filter(tenant=tenant, period_start=P1).exclude(status=InvoiceStatus.VOID).exists()


def test_credit_note_limits(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P2 + HOUR)
    draft = invoice_of(tenant, P1)
    with pytest.raises(ValidationError, match="finalized"):
        credit_note_issue(invoice=draft, amount=100, reason="x", actor=None)
    invoice_finalize(invoice=draft, actor=None)
    credit_note_issue(invoice=draft, amount=29_000, reason="most of it", actor=None)
    with pytest.raises(ValidationError, match="uncredited total"):
        credit_note_issue(invoice=draft, amount=901, reason="too much", actor=None)  # 900 left
    with pytest.raises(ValidationError, match="why"):
        credit_note_issue(invoice=draft, amount=100, reason="  ", actor=None)
    assert CreditNote.objects.filter(invoice=draft).count() == 1


def test_a_credited_invoice_cannot_be_voided(make_tenant):
    """Voiding cancels the whole charge; its credit notes would still be deducted from the next
    invoice, crediting the customer twice. Crediting the rest is the way out."""
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P2 + HOUR)
    august = invoice_finalize(invoice=invoice_of(tenant, P1), actor=None)
    note = credit_note_issue(invoice=august, amount=2_500, reason="outage", actor=None)
    with pytest.raises(ValidationError, match=note.number):
        invoice_void(invoice=august, actor=None, reason="wrong customer")
    august.refresh_from_db()
    assert august.status == InvoiceStatus.FINALIZED
    credit_note_issue(invoice=august, amount=29_900 - 2_500, reason="wrong customer", actor=None)


def test_voiding_the_invoice_a_credit_was_deducted_from_returns_the_credit(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P2 + HOUR)
    august = invoice_finalize(invoice=invoice_of(tenant, P1), actor=None)
    note = credit_note_issue(invoice=august, amount=2_500, reason="outage", actor=None)
    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    assert september.total == 27_400
    invoice_void(invoice=september, actor=None, reason="redo")
    assert note.remaining == 2_500  # owed again: deducted from the next invoice
    close(P4 + HOUR)
    assert invoice_of(tenant, P3).total == 27_400


def test_tax_line_rounds_half_up(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    BillingProfile.objects.filter(tenant=tenant).update(tax_rate=Decimal("0.0750"))
    close(P2 + HOUR)
    invoice = invoice_of(tenant, P1)
    # 29,900 × 0.075 = 2,242.5 → 2,243 half-up (half-even would give 2,242)
    assert lines_of(invoice)[-1] == ("tax", "Tax at 7.5%", 2_243)
    assert (invoice.subtotal, invoice.tax, invoice.total) == (29_900, 2_243, 32_143)


def test_tax_is_on_the_subtotal_after_discount_and_credit(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    BillingProfile.objects.filter(tenant=tenant).update(tax_rate=Decimal("0.2"))
    close(P2 + HOUR)
    august = invoice_finalize(invoice=invoice_of(tenant, P1), actor=None)
    assert (august.subtotal, august.tax, august.total) == (29_900, 5_980, 35_880)  # 20% of 299.00
    credit_note_issue(invoice=august, amount=1_000, reason="goodwill", actor=None)
    coupon = Coupon.objects.create(code="ten", name="10%", percent_off=Decimal("10"))
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P2)
    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    # 29,900 − 2,990 (10%) − 1,000 (credit) = 25,910; tax 20% = 5,182; total 31,092
    assert amounts(september)[-3:] == [("discount", -2_990), ("credit", -1_000), ("tax", 5_182)]
    descriptions = [description for _, description, _ in lines_of(september)]
    assert descriptions[-3] == "Discount ten: 10% off the plan fee"  # not "1E+1%"
    assert descriptions[-1] == "Tax at 20%"  # not "2E+1%"
    assert (september.subtotal, september.tax, september.total) == (25_910, 5_182, 31_092)


# -- late usage ----------------------------------------------------------------------------------


def test_late_usage_is_billed_once_on_the_next_invoice(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    # August: exactly the included 50,000,000 tokens (5 calls) → nothing over
    record(tenant, datetime(2026, 8, 10, tzinfo=UTC), tokens=[10_000_000] * 5)
    close(P2 + HOUR)
    assert invoice_of(tenant, P1).lines.get(meter="ai_tokens").amount == 0
    assert UsageCursor.objects.get(tenant=tenant).closed_through == P2

    # an August event arrives on 2026-09-10, after August was invoiced: kept, flagged late
    late = record(tenant, datetime(2026, 8, 20, tzinfo=UTC), tokens=[10_000_000], key="late1", received=P2 + 9 * DAY)
    assert late.results[0].get("late") is True

    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    adjustment = september.lines.get(kind="adjustment")
    # August re-rated: 60,000,000 used → 10,000,000 over → 10 packages × 1.50 = 15.00, of which
    # 0.00 was billed before → 15.00 now
    assert adjustment.description == (
        "Late usage for 2026-08-01 to 2026-09-01: 60,000,000 AI tokens used, 50,000,000 included: "
        "10,000,000 over at 1.50 per 1,000,000"
    )
    assert (adjustment.amount, adjustment.period_start, adjustment.details["previously_billed"]) == (1_500, P1, 0)
    assert september.total == 29_900 + 1_500

    # running the job again (same time) changes nothing
    assert close(P3 + HOUR).drafted == 0
    assert Invoice.objects.filter(tenant=tenant, period_start=P2).count() == 1

    # another late August event: 500,000 tokens → 60,500,000 used → 11 packages = 16.50,
    # 15.00 billed already → exactly 1.50 on October's invoice
    record(tenant, datetime(2026, 8, 21, tzinfo=UTC), tokens=[500_000], key="late2", received=P3 + 9 * DAY)
    close(P4 + HOUR)
    october = invoice_of(tenant, P3)
    assert [(line.amount, line.details["previously_billed"]) for line in october.lines.filter(kind="adjustment")] == [
        (150, 1_500)
    ]
    assert october.total == 29_900 + 150

    # and November bills none of it again
    close(datetime(2026, 12, 1, 1, tzinfo=UTC))
    assert not invoice_of(tenant, P4).lines.filter(kind="adjustment").exists()


def test_late_usage_is_rated_with_the_terms_of_its_period(make_tenant):
    """The plan's terms changed after August was invoiced (its included tokens doubled, its
    overage price raised): late August usage is still rated with August's terms."""
    tenant = make_tenant("growth")
    subscribe(tenant)
    record(tenant, datetime(2026, 8, 10, tzinfo=UTC), tokens=[10_000_000] * 5)
    close(P2 + HOUR)
    august = invoice_of(tenant, P1).lines.get(meter="ai_tokens")
    assert august.details["terms"] == {
        "resource": "ai_tokens",
        "included": 50_000_000,
        "on_exceed": "overage",
        "package_size": 1_000_000,
        "package_price": "1.5000",
    }
    PlanLimit.objects.filter(plan=tenant.plan, resource="ai_tokens").update(
        included=100_000_000, overage_package_price=Decimal("9.99")
    )
    record(tenant, datetime(2026, 8, 20, tzinfo=UTC), tokens=[10_000_000], key="late-terms", received=P2 + 9 * DAY)
    close(P3 + HOUR)
    adjustment = invoice_of(tenant, P2).lines.get(kind="adjustment")
    # 60,000,000 used against August's 50,000,000 at 1.50 (not 100,000,000 at 9.99: nothing)
    assert (adjustment.amount, adjustment.details["terms"]["package_price"]) == (1_500, "1.5000")


# -- swing flag ----------------------------------------------------------------------------------


def test_swing_flag_against_the_previous_invoice(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    # September: 10 × 20,000,000 = 200,000,000 tokens → 150 packages × 1.50 = 225.00
    record(tenant, datetime(2026, 9, 5, tzinfo=UTC), tokens=[20_000_000] * 10)
    # October: 75,500,000 tokens → 26 packages × 1.50 = 39.00
    record(tenant, datetime(2026, 10, 5, tzinfo=UTC), tokens=[20_000_000, 20_000_000, 20_000_000, 15_500_000])
    close(P4 + HOUR)
    august, september, october = invoice_of(tenant, P1), invoice_of(tenant, P2), invoice_of(tenant, P3)
    assert (august.total, august.previous_total, august.swing_flag) == (29_900, None, False)
    # 52,400 vs 29,900: +22,500 (≥ 50.00) and +75% (> 50%) → flagged
    assert (september.total, september.previous_total, september.swing_flag) == (52_400, 29_900, True)
    # 33,800 vs 52,400: −18,600 (≥ 50.00) but −35.5% (≤ 50%) → not flagged
    assert (october.total, october.previous_total, october.swing_flag) == (33_800, 52_400, False)


# -- the first period's fee in advance (a trial's conversion) -----------------------------------------
# lifecycle/trials.py calls invoice_draft_advance when a trial converts; these are its arithmetic
# and idempotency. The trial ends on 2026-08-16: 16 of August's 31 days are billable.

TRIAL_END = datetime(2026, 8, 16, tzinfo=UTC)


def advance_of(tenant) -> Invoice:
    return Invoice.objects.exclude(status=InvoiceStatus.VOID).get(tenant=tenant, kind="advance")


def test_first_period_fee_in_advance_then_the_period_invoice_holds_usage_only(make_tenant):
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    advance = invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR)
    assert advance is not None
    assert (advance.kind, advance.status, advance.number) == ("advance", InvoiceStatus.DRAFT, None)
    assert (advance.period_start, advance.period_end) == (TRIAL_END, P2)
    # the same fee line as the period invoice in arrears would have had: 299.00 × 0.516129 = 154.32
    assert lines_of(advance) == [
        ("base", "Growth plan, 2026-08-16 to 2026-09-01 (prorated: 51.61% of the month)", 15_432)
    ]
    assert (advance.subtotal, advance.total, advance.previous_total) == (15_432, 15_432, None)
    # again (a re-run, or the job one hour later): nothing more
    assert invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR) is None
    assert invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + 2 * HOUR) is None
    # after the trial: 60,000,000 tokens in 3 calls → 10,000,000 over → 10 packages × 1.50 = 15.00
    record(tenant, datetime(2026, 8, 20, 12, tzinfo=UTC), tokens=[20_000_000] * 3)

    assert close(P2 + HOUR).drafted == 1
    assert close(P2 + HOUR).drafted == 0  # and again: nothing twice
    august = invoice_of(tenant, P1)
    assert amounts(august) == [("usage", 1_500), ("usage", 0), ("usage", 0)]  # no plan fee: billed in advance
    assert august.lines.get(meter="ai_tokens").period_start == TRIAL_END  # usage from the trial's end
    assert august.total == 1_500
    assert Invoice.objects.filter(tenant=tenant).count() == 2

    close(P3 + HOUR)
    september = invoice_of(tenant, P2)
    assert amounts(september)[0] == ("base", 29_900)  # the full fee again, in arrears
    # "previous" is what August was invoiced in all: 154.32 in advance + 15.00 after it
    assert (september.previous_total, september.swing_flag) == (16_932, True)
    # numbering: one gap-free series whatever the kind
    numbers = [_number(invoice_finalize(invoice=i, actor=None)) for i in (advance, august, september)]
    assert numbers == list(range(numbers[0], numbers[0] + 3))


def test_the_fee_in_advance_gets_the_coupon_and_counts_one_period(make_tenant):
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    coupon = Coupon.objects.create(code="half", name="Half", percent_off=Decimal("50"), duration_periods=2)
    Discount.objects.create(tenant=tenant, coupon=coupon, starts_at=P1)
    advance = invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR)
    assert amounts(advance) == [("base", 15_432), ("discount", -7_716)]
    record(tenant, datetime(2026, 8, 20, 12, tzinfo=UTC), tokens=[20_000_000] * 3)
    close(P3 + HOUR)
    assert "discount" not in [kind for kind, _ in amounts(invoice_of(tenant, P1))]  # no fee there to discount
    assert amounts(invoice_of(tenant, P2))[-1] == ("discount", -14_950)  # September: the second period
    assert Discount.objects.get(tenant=tenant).periods_used == 2


def test_auto_approved_tenant_gets_the_fee_in_advance_finalized(make_tenant):
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    BillingProfile.objects.filter(tenant=tenant).update(auto_approve=True)
    advance = invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR)
    assert advance.status == InvoiceStatus.FINALIZED and advance.number.startswith("INV-")


def test_no_fee_in_advance_once_the_period_is_over_or_for_a_free_plan(make_tenant):
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    # the conversion ran after the period ended: it is billed in arrears, fee included, as before
    assert invoicing.invoice_draft_advance(subscription=sub, now=P2 + HOUR) is None
    close(P2 + HOUR)
    assert amounts(invoice_of(tenant, P1))[0] == ("base", 15_432)
    assert not Invoice.objects.filter(tenant=tenant, kind="advance").exists()
    free = make_tenant("free")
    assert invoicing.invoice_draft_advance(subscription=subscribe(free, billing_starts_at=TRIAL_END),
                                           now=TRIAL_END + HOUR) is None  # fmt: skip


def test_the_unique_constraint_holds_one_live_advance_per_tenant_and_period(make_tenant):
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    advance = invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR)
    sub.refresh_from_db()
    # a second writer that got past the check makes nothing either (IntegrityError → None)
    fee = invoicing._fee_line(sub, P1, P2)
    assert invoicing._invoice_make(sub=sub, kind="advance", period_start=TRIAL_END, period_end=P2, lines=[fee],
                                   base_total=fee.amount) is None  # fmt: skip
    # voided (say finance found it wrong), the period invoice bills the fee in arrears instead
    invoice_void(invoice=advance, actor=None, reason="wrong card holder")
    close(P2 + HOUR)
    assert amounts(invoice_of(tenant, P1))[0] == ("base", 15_432)


def test_an_early_end_gives_back_the_fee_billed_in_advance_for_after_it(make_tenant):
    """Cancelled at once on 2026-08-20 (lifecycle's FINAL invoice): the customer pays the fee
    for 2026-08-16 to 2026-08-20, 4 of 31 days: 299.00 × 0.129032 = 38.58."""
    ended = datetime(2026, 8, 20, tzinfo=UTC)
    # still a draft: voided, and the final invoice bills the fee up to the end itself
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    advance = invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR)
    Subscription.objects.filter(pk=sub.pk).update(ended_at=ended)
    assert invoicing.advance_fee_settle(subscription=sub, ended_at=ended) == [advance]
    advance.refresh_from_db()
    assert advance.status == InvoiceStatus.VOID
    sub.refresh_from_db()
    final = invoicing.invoice_draft(subscription=sub, period_start=P1, period_end=P2, now=ended)
    assert amounts(final)[0] == ("base", 3_858)

    # issued already: never changed, credited for 16 − 4 = 12 days (154.32 − 38.58 = 115.74),
    # which the final invoice deducts while it fits
    tenant = make_tenant("growth")
    sub = subscribe(tenant, billing_starts_at=TRIAL_END)
    advance = invoice_finalize(invoice=invoicing.invoice_draft_advance(subscription=sub, now=TRIAL_END + HOUR),
                               actor=None)  # fmt: skip
    # 200,000,000 tokens after the trial: 150 packages × 1.50 = 225.00 of usage on the final invoice
    record(tenant, datetime(2026, 8, 18, tzinfo=UTC), tokens=[20_000_000] * 10)
    Subscription.objects.filter(pk=sub.pk).update(ended_at=ended)
    [note] = invoicing.advance_fee_settle(subscription=sub, ended_at=ended)
    assert (note.invoice, note.amount) == (advance, 11_574)
    sub.refresh_from_db()
    final = invoicing.invoice_draft(subscription=sub, period_start=P1, period_end=P2, now=ended)
    assert amounts(final) == [("usage", 22_500), ("usage", 0), ("usage", 0), ("credit", -11_574)]
    advance.refresh_from_db()
    assert (advance.status, advance.total) == (InvoiceStatus.FINALIZED, 15_432)
    # settled once: a second call gives nothing more back
    assert invoicing.advance_fee_settle(subscription=sub, ended_at=ended) == []


# -- the period job ------------------------------------------------------------------------------


def test_job_run_twice_makes_one_invoice_per_tenant_and_period(make_tenant):
    tenants = [make_tenant("growth") for _ in range(2)]
    for tenant in tenants:
        subscribe(tenant)
    first = close(P3 + HOUR)
    second = close(P3 + HOUR)
    assert (first.drafted, first.failed) == (4, 0)  # 2 tenants × (P1, P2)
    assert second.drafted == 0
    for tenant in tenants:
        periods = list(Invoice.objects.filter(tenant=tenant).values_list("period_start", flat=True))
        assert sorted(periods) == [P1, P2]
        assert Subscription.objects.get(tenant=tenant).invoiced_through == P3


def test_a_crash_halfway_leaves_the_rest_for_the_next_run(make_tenant, monkeypatch):
    tenants = [make_tenant("growth") for _ in range(3)]
    subs = [subscribe(tenant) for tenant in tenants]
    real_draft = invoicing.invoice_draft

    def crashing(*, subscription, **kwargs):
        if subscription.pk == subs[1].pk:
            raise RuntimeError("worker killed")
        return real_draft(subscription=subscription, **kwargs)

    monkeypatch.setattr(invoicing, "invoice_draft", crashing)
    result = close(P3 + HOUR)
    assert (result.drafted, result.failed) == (4, 1)  # the 1st and 3rd: P1 and P2 each
    assert Invoice.objects.filter(tenant=tenants[1]).count() == 0
    assert Subscription.objects.get(pk=subs[1].pk).invoiced_through == P1  # its cursor did not move

    monkeypatch.setattr(invoicing, "invoice_draft", real_draft)
    again = close(P3 + HOUR)
    assert (again.drafted, again.failed) == (2, 0)  # only the 2nd tenant's two periods
    for tenant in tenants:
        assert sorted(Invoice.objects.filter(tenant=tenant).values_list("period_start", flat=True)) == [P1, P2]


def test_a_crash_between_two_periods_keeps_the_first(make_tenant, monkeypatch):
    tenant = make_tenant("growth")
    subscribe(tenant)
    real_draft = invoicing.invoice_draft

    def crash_in_september(*, period_start, **kwargs):
        if period_start == P2:
            raise RuntimeError("worker killed")
        return real_draft(period_start=period_start, **kwargs)

    monkeypatch.setattr(invoicing, "invoice_draft", crash_in_september)
    assert close(P3 + HOUR).failed == 1
    assert Subscription.objects.get(tenant=tenant).invoiced_through == P2  # August is done
    monkeypatch.setattr(invoicing, "invoice_draft", real_draft)
    assert close(P3 + HOUR).drafted == 1
    assert sorted(Invoice.objects.filter(tenant=tenant).values_list("period_start", flat=True)) == [P1, P2]


@pytest.fixture
def committed_subscriptions(tenant_a, tenant_b):
    """tenant-a's and tenant-b's subscriptions moved onto August (committed, for threads), and
    put back afterwards with what the job made removed — in a thread of its own, as the
    test's transaction would roll the clean-up back."""
    fields = ["started_at", "anchor_day", "billing_starts_at", "invoiced_through", "interval"]
    saved = {s["pk"]: s for s in Subscription.objects.filter(tenant__in=[tenant_a, tenant_b]).values("pk", *fields)}
    cursors = {c.tenant_id: c.closed_through for c in UsageCursor.objects.filter(tenant__in=[tenant_a, tenant_b])}

    def in_own_connection(work) -> None:
        def run() -> None:
            try:
                work()
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()

    def setup() -> None:
        Subscription.objects.filter(pk__in=saved).update(
            started_at=P1, anchor_day=1, billing_starts_at=P1, invoiced_through=P1, interval="monthly"
        )

    def cleanup() -> None:
        Invoice.objects.filter(tenant__in=[tenant_a, tenant_b], period_start__lt=P4).delete()
        for pk, values in saved.items():
            Subscription.objects.filter(pk=pk).update(**{f: values[f] for f in fields})
        for tenant in (tenant_a, tenant_b):
            if tenant.pk in cursors:
                UsageCursor.objects.filter(tenant=tenant).update(closed_through=cursors[tenant.pk])
            else:
                UsageCursor.objects.filter(tenant=tenant).delete()

    in_own_connection(setup)
    yield [tenant_a, tenant_b]
    in_own_connection(cleanup)


def test_two_workers_at_once_still_make_one_invoice_per_tenant_and_period(committed_subscriptions, monkeypatch):
    real_draft = invoicing.invoice_draft

    def slow_draft(**kwargs):
        time.sleep(0.05)  # hold the subscription's lock long enough for the other worker to meet it
        return real_draft(**kwargs)

    monkeypatch.setattr(invoicing, "invoice_draft", slow_draft)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(invoices_close_due(now=P3 + HOUR))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.drafted for r in results) == 4  # 2 tenants × (P1, P2), split between the workers
    assert sum(r.failed for r in results) == 0
    for tenant in committed_subscriptions:
        periods = Invoice.objects.filter(tenant=tenant, period_start__lt=P4).values_list("period_start", flat=True)
        assert sorted(periods) == [P1, P2]
        assert Subscription.objects.get(tenant=tenant).invoiced_through == P3


# -- finalizing: numbers -------------------------------------------------------------------------


def _number(invoice: Invoice) -> int:
    return int(invoice.number.rsplit("-", 1)[1])


def test_finalizing_many_gives_gap_free_sequential_numbers(make_tenant):
    tenants = [make_tenant("growth") for _ in range(3)]
    for tenant in tenants:
        subscribe(tenant)
    close(P3 + HOUR)
    drafts = list(Invoice.objects.filter(tenant__in=tenants).order_by("pk"))
    assert len(drafts) == 6
    finalized = [invoice_finalize(invoice=draft, actor=None) for draft in drafts]
    numbers = [_number(invoice) for invoice in finalized]
    assert numbers == list(range(numbers[0], numbers[0] + 6))
    year = finalized[0].finalized_at.year
    assert all(invoice.number.startswith(f"INV-{year}-") for invoice in finalized)
    assert len(finalized[0].number) == len(f"INV-{year}-000001")
    assert {invoice.status for invoice in finalized} == {InvoiceStatus.FINALIZED}
    with pytest.raises(ValidationError, match="not a draft"):
        invoice_finalize(invoice=finalized[0], actor=None)


def test_a_rolled_back_finalize_does_not_burn_a_number(make_tenant):
    tenant = make_tenant("growth")
    subscribe(tenant)
    close(P4 + HOUR)
    august, september, october = (invoice_of(tenant, p) for p in (P1, P2, P3))
    first = _number(invoice_finalize(invoice=august, actor=None))

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        invoice_finalize(invoice=september, actor=None)
        assert _number(september) == first + 1
        raise Abort  # e.g. the request failed after finalizing
    september.refresh_from_db()
    assert (september.status, september.number) == (InvoiceStatus.DRAFT, None)
    year = timezone.now().year  # numbering restarts each year: one sequence row per series and year
    assert InvoiceSequence.objects.get(series=f"INV-{year}").next_number == first + 1
    # the number comes back: the next finalize takes it
    assert _number(invoice_finalize(invoice=october, actor=None)) == first + 1
    assert _number(invoice_finalize(invoice=september, actor=None)) == first + 2
