"""Finance in the staff admin over HTTP, signed in as real staff users: the draft review
queue, approve and void (with their per-invoice errors), the read-only invoice page, credit
notes, the documents, the other billing models, and what finance and support may do.

Invoices are rows as the rating engine makes them (billing/tests/test_documents.py's
make_invoice): a Growth month of 299.00 + 0.50 overage − 29.90 discount + 20% tax = 323.52.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import BillingProfile, Coupon, CreditNote, Invoice, InvoiceStatus, Subscription
from billing.tests.test_documents import make_invoice, text_of
from tenants.models import TenantEvent, User
from tenants.services import staff_groups_ensure

pytestmark = pytest.mark.django_db

AUG = datetime(2026, 8, 1, tzinfo=UTC)
SEP = datetime(2026, 9, 1, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args, urlconf="saasops.urls_public")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def make_staff(email: str, group: str | None = None, superuser: bool = False) -> User:
    user = User.objects.create_user(username=email, email=email, is_staff=True, is_superuser=superuser)
    if group:
        user.groups.add(staff_groups_ensure()[group])
    return user


@pytest.fixture
def finance(client_for):
    return client_for(None, make_staff("finance@saasops.test", "finance"))


@pytest.fixture
def support(client_for):
    return client_for(None, make_staff("support@saasops.test", "support"))


@pytest.fixture
def queue(tenant_a, tenant_b):
    """Two drafts to review (tenant-b's swung up from its previous 200.00), one finalized, one paid."""
    return {
        "a_draft": make_invoice(tenant_a, start=SEP, end=OCT),
        "b_draft": make_invoice(tenant_b, start=SEP, end=OCT, previous_total=20_000, swing_flag=True),
        "a_finalized": make_invoice(tenant_a, start=AUG, end=SEP, status=InvoiceStatus.FINALIZED),
        "b_paid": make_invoice(tenant_b, start=AUG, end=SEP, status=InvoiceStatus.PAID),
    }


def listed(response) -> list[Invoice]:
    return list(response.context["cl"].result_list)


# -- the review queue ----------------------------------------------------------------------------


def test_queue_opens_on_drafts_with_money_change_and_swing(finance, queue):
    response = finance.get(url("billing_invoice_changelist"))
    assert response.status_code == 200
    assert {i.pk for i in listed(response)} == {queue["a_draft"].pk, queue["b_draft"].pk}
    assert response.context["title"] == "Invoices to review (drafts)"
    text = text_of(response.content.decode())
    assert "Drafts to review (2)" in text and "Paid (1)" in text
    assert "$323.52" in text  # total, money with currency
    assert "$200.00" in text and "+61.8%" in text  # 32,352 vs 20,000: +61.76% → +61.8%
    html = response.content.decode()
    assert html.count('class="swing-flag"') == 1
    assert '<span class="change swing">+61.8%</span>' in html
    assert "Approve (finalize) selected invoices" in html and "Void selected invoices…" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=all", {"a_draft", "b_draft", "a_finalized", "b_paid"}),
        ("status=finalized", {"a_finalized"}),
        ("status=all&swing_flag__exact=1", {"b_draft"}),
        ("status=all&period=2026-08", {"a_finalized", "b_paid"}),
        ("period=2026-09", {"a_draft", "b_draft"}),
        ("status=all&q=tenant-b", {"b_draft", "b_paid"}),
    ],
)
def test_queue_filters(finance, queue, query, expected):
    response = finance.get(url("billing_invoice_changelist") + "?" + query)
    assert {i.pk for i in listed(response)} == {queue[key].pk for key in expected}


# -- approve ------------------------------------------------------------------------------------


def test_approve_selected_finalizes_each_and_reports_refusals(finance, queue):
    ids = [queue["a_draft"].pk, queue["b_draft"].pk, queue["a_finalized"].pk]
    # selected in the "All" view (the drafts queue would not show the finalized one)
    response = finance.post(
        url("billing_invoice_changelist") + "?status=all", {"action": "approve", "_selected_action": ids}, follow=True
    )
    drafts = Invoice.objects.filter(pk__in=ids[:2]).order_by("pk")
    assert [i.status for i in drafts] == [InvoiceStatus.FINALIZED] * 2
    assert all(i.finalized_by.email == "finance@saasops.test" for i in drafts)
    numbers = [int(i.number.rsplit("-", 1)[1]) for i in drafts]
    assert numbers[1] == numbers[0] + 1
    found = messages_of(response)
    assert f"Approved and finalized 2 invoices: {drafts[0].number} (Tenant A, $323.52)" in found[-1]
    refused = [m for m in found if "not approved" in m]
    assert len(refused) == 1
    assert refused[0].startswith(f"{queue['a_finalized'].number} — Tenant A, 2026-08-01 to 2026-09-01, $323.52:")
    assert "not a draft" in refused[0]
    event = TenantEvent.objects.filter(tenant=queue["a_draft"].tenant, kind="invoice_finalized").latest("id")
    assert event.actor.email == "finance@saasops.test"


def test_approve_from_the_invoice_page_asks_first(finance, queue):
    draft = queue["b_draft"]
    page = finance.get(url("billing_invoice_change", draft.pk))
    approve_url = f"{url('billing_invoice_approve')}?ids={draft.pk}&back=detail"
    assert approve_url.replace("&", "&amp;") in page.content.decode()
    confirm = finance.get(approve_url)
    assert confirm.status_code == 200 and "gets the next number" in confirm.content.decode()
    done = finance.post(approve_url, follow=True)
    assert done.redirect_chain[-1][0] == url("billing_invoice_change", draft.pk)
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.FINALIZED


# -- void ---------------------------------------------------------------------------------------


def test_void_asks_for_a_reason_then_voids_what_it_can(finance, queue):
    ids = [queue["a_draft"].pk, queue["b_paid"].pk]
    response = finance.post(
        url("billing_invoice_changelist") + "?status=all", {"action": "void", "_selected_action": ids}
    )
    assert response.status_code == 302
    page_url = response["Location"]
    assert page_url.startswith(url("billing_invoice_void"))
    page = finance.get(page_url)
    text = text_of(page.content.decode())
    assert "Void 2 invoices" in text and "Will be refused: it is paid." in text
    empty = finance.post(page_url, {"reason": ""})
    assert empty.status_code == 200 and "This field is required." in empty.content.decode()
    done = finance.post(page_url, {"reason": "Duplicate of a manual invoice"}, follow=True)
    found = messages_of(done)
    assert any(m.startswith("Voided draft #") and "Duplicate of a manual invoice" in m for m in found)
    assert any("not voided" in m and "paid" in m for m in found)
    voided = Invoice.objects.get(pk=queue["a_draft"].pk)
    assert (voided.status, voided.void_reason) == (InvoiceStatus.VOID, "Duplicate of a manual invoice")
    assert Invoice.objects.get(pk=queue["b_paid"].pk).status == InvoiceStatus.PAID


def test_draft_again_rates_a_void_period_invoice_and_explains_refusals(finance, make_tenant):
    """The list action "Draft again": a void period invoice becomes a new draft; anything else
    is refused with its reason, per invoice, and nothing else changes."""
    from billing.invoicing import invoice_void, invoices_close_due

    tenant = make_tenant("growth")
    Subscription.objects.filter(tenant=tenant).update(
        started_at=AUG, anchor_day=1, billing_starts_at=AUG, invoiced_through=AUG, status="active"
    )
    invoices_close_due(now=SEP.replace(hour=1))
    august = Invoice.objects.get(tenant=tenant, period_start=AUG)
    invoice_void(invoice=august, actor=None, reason="wrong usage")
    other = make_invoice(tenant, start=OCT, end=datetime(2026, 11, 1, tzinfo=UTC))  # a draft: refused
    done = finance.post(
        url("billing_invoice_changelist") + "?status=all",
        {"action": "redraft", "_selected_action": [august.pk, other.pk]},
        follow=True,
    )
    found = messages_of(done)
    assert any("drafted again as a new draft for review ($299.00)" in m for m in found)
    assert any("not drafted again" in m and "only a void invoice is redrafted" in m for m in found)
    live = Invoice.objects.exclude(status=InvoiceStatus.VOID).get(tenant=tenant, period_start=AUG)
    assert (live.status, live.total) == (InvoiceStatus.DRAFT, 29_900)
    assert Invoice.objects.get(pk=other.pk).status == InvoiceStatus.DRAFT


def test_draft_again_touches_only_the_selected_tenants_invoice(finance, make_tenant):
    """Two tenants with a void August each: drafting A's again makes A's draft only."""
    from billing.invoicing import invoice_void, invoices_close_due

    a, b = make_tenant("growth"), make_tenant("growth")
    Subscription.objects.filter(tenant__in=[a, b]).update(
        started_at=AUG, anchor_day=1, billing_starts_at=AUG, invoiced_through=AUG, status="active"
    )
    invoices_close_due(now=SEP.replace(hour=1))
    void_a, void_b = (Invoice.objects.get(tenant=t, period_start=AUG) for t in (a, b))
    for invoice in (void_a, void_b):
        invoice_void(invoice=invoice, actor=None, reason="wrong usage")
    finance.post(
        url("billing_invoice_changelist") + "?status=all",
        {"action": "redraft", "_selected_action": [void_a.pk]},
        follow=True,
    )
    assert Invoice.objects.filter(tenant=a, period_start=AUG, status=InvoiceStatus.DRAFT).count() == 1
    assert list(Invoice.objects.filter(tenant=b).values_list("status", flat=True)) == [InvoiceStatus.VOID]
    assert not TenantEvent.objects.filter(tenant=b, kind="invoice_redrafted").exists()


def test_support_cannot_draft_again(support, make_tenant):
    invoice = make_invoice(make_tenant("growth"), status=InvoiceStatus.VOID)
    listing = support.get(url("billing_invoice_changelist") + "?status=all")
    assert 'value="redraft"' not in listing.content.decode()  # not offered
    support.post(
        url("billing_invoice_changelist") + "?status=all", {"action": "redraft", "_selected_action": [invoice.pk]}
    )
    assert Invoice.objects.filter(tenant=invoice.tenant).count() == 1  # and a hand-made POST does nothing


# -- the invoice page ---------------------------------------------------------------------------


def test_invoice_page_is_read_only_with_lines_in_order_and_documents(finance, queue):
    invoice = queue["a_finalized"]
    response = finance.get(url("billing_invoice_change", invoice.pk))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    html = response.content.decode()
    assert 'name="_save"' not in html
    text = text_of(html)
    rows = [
        "1 Growth plan, 2026-08-01 to 2026-09-01 1 $299.00 $299.00",
        "3 100,001 API calls used, 100,000 included: 1 over at 0.50 per 1,000 1 $0.50 $0.50",
        "5 Discount launch: 10% off the plan fee -$29.90",  # no quantity or unit price of its own
        "6 Tax at 20% 1 20% $53.92",
    ]
    positions = [text.index(row) for row in rows]
    assert positions == sorted(positions)
    for name in ("billing_invoice_document", "billing_invoice_pdf", "billing_invoice_credit_note"):
        assert url(name, invoice.pk) in html
    assert "Approve…" not in text  # not a draft
    document = finance.get(url("billing_invoice_document", invoice.pk))
    assert f"Invoice {invoice.number}" in text_of(document.content.decode())
    pdf = finance.get(url("billing_invoice_pdf", invoice.pk))
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    # no form edits it, not even a hand-made POST
    assert finance.post(url("billing_invoice_change", invoice.pk), {"total": 1}).status_code == 403
    invoice.refresh_from_db()
    assert invoice.total == 32_352


def test_draft_page_offers_approve_and_void_but_no_credit(finance, queue):
    text = text_of(finance.get(url("billing_invoice_change", queue["a_draft"].pk)).content.decode())
    assert "Approve…" in text and "Void…" in text and "Issue credit note…" not in text
    response = finance.get(url("billing_invoice_credit_note", queue["a_draft"].pk), follow=True)
    assert any("credit notes are issued against finalized invoices" in m for m in messages_of(response))


# -- credit notes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("", "This field is required."),
        ("ten", "Enter a number."),
        ("0", "greater than or equal to 0.01"),
        ("12.345", "no more than 2 decimal places"),
        ("323.53", "At most $323.52 can still be credited on this invoice."),
    ],
)
def test_credit_note_amount_is_validated(finance, queue, amount, error):
    invoice = queue["a_finalized"]
    response = finance.post(url("billing_invoice_credit_note", invoice.pk), {"amount": amount, "reason": "outage"})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not CreditNote.objects.filter(invoice=invoice).exists()


def test_credit_note_in_major_units(finance, queue):
    invoice = queue["a_finalized"]
    page = finance.get(url("billing_invoice_credit_note", invoice.pk))
    assert "At most $323.52 can still be credited" in page.content.decode()
    done = finance.post(
        url("billing_invoice_credit_note", invoice.pk), {"amount": "25.50", "reason": "API outage"}, follow=True
    )
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.amount, note.reason, note.created_by.email) == (2_550, "API outage", "finance@saasops.test")
    assert any(f"Issued credit note {note.number} for $25.50" in m for m in messages_of(done))
    # what is left to credit shrinks
    page = finance.get(url("billing_invoice_credit_note", invoice.pk))
    assert "At most $298.02 can still be credited on this invoice ($25.50 credited already)" in page.content.decode()
    assert "CN-" in text_of(finance.get(url("billing_creditnote_changelist")).content.decode())


# -- permissions ---------------------------------------------------------------------------------


def test_support_can_look_but_not_approve_void_or_credit(support, queue):
    listing = support.get(url("billing_invoice_changelist"))
    assert listing.status_code == 200
    assert "Approve (finalize) selected invoices" not in listing.content.decode()
    draft = queue["a_draft"]
    support.post(url("billing_invoice_changelist"), {"action": "approve", "_selected_action": [draft.pk]})
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT
    page = support.get(url("billing_invoice_change", draft.pk))
    assert page.status_code == 200 and "Approve…" not in page.content.decode()
    assert support.get(url("billing_invoice_void") + f"?ids={draft.pk}").status_code == 403
    assert support.post(url("billing_invoice_approve") + f"?ids={draft.pk}").status_code == 403
    credit = url("billing_invoice_credit_note", queue["a_finalized"].pk)
    assert support.post(credit, {"amount": "1", "reason": "x"}).status_code == 403
    assert support.get(url("billing_invoice_pdf", draft.pk)).status_code == 200
    assert support.get(url("billing_billingprofile_changelist")).status_code == 200
    assert support.get(url("billing_coupon_changelist")).status_code == 403


def test_nobody_adds_or_deletes_invoices(finance, queue):
    assert finance.get(url("billing_invoice_add")).status_code == 403
    assert finance.get(url("billing_invoice_delete", queue["a_draft"].pk)).status_code == 403


# -- the rest of billing ---------------------------------------------------------------------------


def test_finance_edits_billing_profile(finance, tenant_a):
    profile, _ = BillingProfile.objects.get_or_create(tenant=tenant_a)
    listing = finance.get(url("billing_billingprofile_changelist"))
    assert "Tenant A" in listing.content.decode()
    response = finance.post(
        url("billing_billingprofile_change", profile.pk),
        {"billing_email": "ap@tenant-a.test", "tax_rate": "0.2000", "auto_approve": "on"},
    )
    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.billing_email, profile.tax_rate, profile.auto_approve) == ("ap@tenant-a.test", Decimal("0.2"), True)
    assert "20%" in text_of(finance.get(url("billing_billingprofile_changelist")).content.decode())
    bad = finance.post(url("billing_billingprofile_change", profile.pk), {"billing_email": "x", "tax_rate": "1.5"})
    assert bad.status_code == 200 and "Enter a valid email address." in bad.content.decode()


def test_finance_makes_coupons_and_applies_them(finance, tenant_a):
    response = finance.post(
        url("billing_coupon_add"), {"code": "launch", "name": "Launch", "percent_off": "10", "duration_periods": "3"}
    )
    assert response.status_code == 302
    coupon = Coupon.objects.get(code="launch")
    listing = text_of(finance.get(url("billing_coupon_changelist")).content.decode())
    assert "10%" in listing and "3 periods" in listing
    response = finance.post(
        url("billing_discount_add"),
        {"tenant": tenant_a.pk, "coupon": coupon.pk, "starts_at_0": "2026-09-01", "starts_at_1": "00:00:00"},
    )
    assert response.status_code == 302
    assert tenant_a.discounts.get().coupon == coupon


def test_subscriptions_are_listed_read_only(finance, tenant_a):
    response = finance.get(url("billing_subscription_changelist"))
    text = text_of(response.content.decode())
    assert "Tenant A" in text and "Growth" in text
    sub = Subscription.objects.get(tenant=tenant_a)
    page = finance.get(url("billing_subscription_change", sub.pk))
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert finance.post(url("billing_subscription_change", sub.pk), {"interval": "yearly"}).status_code == 403
