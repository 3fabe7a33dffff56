"""Invoice documents (HTML, PDF), the invoice email, and the customer's invoice pages on
the tenant host.

Invoices here are written directly (rows as the rating engine makes them) for tenant-a and
tenant-b, so each test states exactly what the document must say.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing.documents import (
    billing_recipient,
    invoice_email_send,
    invoice_html,
    invoice_pdf,
    invoice_workspace_url,
    money,
    unit_price_text,
)
from billing.invoicing import credit_note_issue, invoice_finalize, invoice_void
from billing.models import BillingProfile, Invoice, InvoiceLine, InvoiceStatus
from tenants.models import User
from tenants.services import membership_add

pytestmark = pytest.mark.django_db

P1 = datetime(2026, 8, 1, tzinfo=UTC)
P2 = datetime(2026, 9, 1, tzinfo=UTC)

# (kind, description, meter, quantity, unit price, amount): a Growth month with one API-call package over
GROWTH_LINES = [
    ("base", "Growth plan, 2026-08-01 to 2026-09-01", "", "1", "299", 29_900),
    ("usage", "1,200,000 AI tokens used (50,000,000 included)", "ai_tokens", "1200000", "0", 0),
    ("usage", "100,001 API calls used, 100,000 included: 1 over at 0.50 per 1,000", "api_calls", "1", "0.5", 50),
    ("usage", "12 GB of storage used (100 included)", "storage_gb", "12", "0", 0),
    ("discount", "Discount launch: 10% off the plan fee", "", "1", "0", -2_990),
    ("tax", "Tax at 20%", "", "1", "0.2", 5_392),
]


def make_invoice(tenant, *, start=P1, end=P2, lines=GROWTH_LINES, status=InvoiceStatus.DRAFT, **fields) -> Invoice:
    """An invoice with the given lines; subtotal, tax and total add up as the rating engine's do."""
    tax = sum(amount for kind, *_, amount in lines if kind == "tax")
    subtotal = sum(amount for kind, *_, amount in lines if kind != "tax")
    invoice = Invoice.objects.create(
        tenant=tenant,
        period_start=start,
        period_end=end,
        currency=fields.pop("currency", "usd"),
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        status=InvoiceStatus.DRAFT,
        **fields,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=i,
            kind=kind,
            description=description,
            meter=meter,
            quantity=Decimal(quantity),
            unit_price=Decimal(unit_price),
            amount=amount,
            period_start=start,
            period_end=end,
        )
        for i, (kind, description, meter, quantity, unit_price, amount) in enumerate(lines, start=1)
    )
    if status != InvoiceStatus.DRAFT:
        invoice_finalize(invoice=invoice, actor=None)
    if status in (InvoiceStatus.PAID, InvoiceStatus.VOID):
        Invoice.objects.filter(pk=invoice.pk).update(
            status=status,
            paid_at=timezone.now() if status == InvoiceStatus.PAID else None,
            voided_at=timezone.now() if status == InvoiceStatus.VOID else None,
        )
        invoice.refresh_from_db()
    return invoice


def text_of(html: str) -> str:
    """The page's visible text, whitespace collapsed (for "this is said" assertions)."""
    html = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").replace("&amp;", "&")


def pages_of(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


# -- formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (29_950, "usd", "$299.50"),
        (-2_990, "usd", "-$29.90"),
        (0, "usd", "$0.00"),
        (123_456_789, "eur", "€1,234,567.89"),
        (5_000, "jpy", "5,000 JPY"),  # no minor unit
        (1_234, "chf", "12.34 CHF"),
    ],
)
def test_money_uses_the_currency_exponent(minor, currency, text):
    assert money(minor, currency) == text


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [("0.5", "usd", "$0.50"), ("299", "usd", "$299.00"), ("0.0025", "usd", "$0.0025"), ("1.5", "jpy", "1.5 JPY")],
)
def test_unit_prices_keep_their_precision(value, currency, text):
    assert unit_price_text(Decimal(value), currency) == text


# -- HTML ----------------------------------------------------------------------------------------


def test_draft_invoice_html_says_everything_in_order(tenant_a):
    BillingProfile.objects.update_or_create(tenant=tenant_a, defaults={"billing_email": "ap@tenant-a.test"})
    invoice = make_invoice(tenant_a)
    text = text_of(invoice_html(invoice))
    assert "Draft invoice" in text and "DRAFT" in text
    assert "saasops" in text
    assert "Bill to Tenant A ap@tenant-a.test" in text
    assert "Billing period 2026-08-01 to 2026-09-01" in text
    assert "Status Draft" in text or "Draft invoice Draft" in text
    # every line but tax: description, quantity, unit price, amount — in position order
    expected = [
        "Growth plan, 2026-08-01 to 2026-09-01 1 $299.00 $299.00",
        "1,200,000 AI tokens used (50,000,000 included) 1,200,000 $0.00 $0.00",
        "100,001 API calls used, 100,000 included: 1 over at 0.50 per 1,000 1 $0.50 $0.50",
        "12 GB of storage used (100 included) 12 $0.00 $0.00",
        "Discount launch: 10% off the plan fee -$29.90",
    ]
    positions = [text.index(row) for row in expected]
    assert positions == sorted(positions)
    # 29,900 + 50 − 2,990 = 26,960; 20% tax = 5,392; total 32,352
    assert "Subtotal $269.60 Tax at 20% $53.92 Total $323.52" in text
    assert "not a request for payment" in text


def test_finalized_invoice_html_has_number_dates_and_credit_notes(tenant_a):
    invoice = make_invoice(tenant_a, status=InvoiceStatus.FINALIZED)
    note = credit_note_issue(invoice=invoice, amount=1_000, reason="Outage on 2026-08-12", actor=None)
    html = invoice_html(invoice)
    text = text_of(html)
    assert f"Invoice {invoice.number}" in text and "DRAFT" not in text
    assert f"Invoice date {invoice.finalized_at:%Y-%m-%d}" in text
    assert f"Due date {invoice.due_at:%Y-%m-%d}" in text
    assert f"Invoice {invoice.number} Open" in text  # the status in the customer's words
    assert f"{note.number} {note.created_at:%Y-%m-%d} Outage on 2026-08-12 $10.00" in text
    assert "deducted from your next invoice" in text
    assert html.lstrip().startswith("<!doctype html>")
    assert "@media print" in html


def test_void_invoice_html_says_why(tenant_a):
    invoice = make_invoice(tenant_a, status=InvoiceStatus.FINALIZED)
    invoice_void(invoice=invoice, actor=None, reason="Billed to the wrong workspace")
    text = text_of(invoice_html(invoice))
    assert "VOID" in text
    assert "This invoice is void: Billed to the wrong workspace. Nothing is owed." in text


def test_billing_email_falls_back_to_the_owner(tenant_a, owner_a):
    BillingProfile.objects.update_or_create(tenant=tenant_a, defaults={"billing_email": ""})
    assert billing_recipient(tenant=tenant_a) == owner_a.email
    BillingProfile.objects.filter(tenant=tenant_a).update(billing_email="ap@tenant-a.test")
    assert billing_recipient(tenant=tenant_a) == "ap@tenant-a.test"


# -- PDF -----------------------------------------------------------------------------------------


def test_pdf_of_a_short_invoice_is_one_page(tenant_a):
    invoice = make_invoice(tenant_a, status=InvoiceStatus.FINALIZED)
    pdf = invoice_pdf(invoice)
    assert pdf.startswith(b"%PDF-")
    assert pages_of(pdf) == 1
    assert f"/Title (Invoice {invoice.number})".encode() in pdf


def test_pdf_paginates_a_long_invoice(tenant_a):
    adjustments = [
        (
            "adjustment",
            f"Late usage for period {i}: {i:,} API calls over at 0.50 per 1,000",
            "api_calls",
            "1",
            "0.5",
            50,
        )
        for i in range(150)
    ]
    invoice = make_invoice(tenant_a, lines=GROWTH_LINES[:1] + adjustments)
    pdf = invoice_pdf(invoice)
    assert pages_of(pdf) >= 4  # 150 lines at ~40 a page
    assert b"/Title (Draft invoice)" in pdf


def test_pdf_takes_any_script_and_a_zero_decimal_currency(tenant_a):
    tenant_a.name = "Zürich Café 株式会社 — Ελληνικά"
    tenant_a.save(update_fields=["name"])
    lines = [("base", "Growth plan (JPY) • 2026-08-01 → 2026-09-01", "", "1", "32000", 32_000)]
    invoice = make_invoice(tenant_a, lines=lines, currency="jpy")
    assert pages_of(invoice_pdf(invoice)) == 1
    assert "32,000 JPY" in text_of(invoice_html(invoice))


# -- email ---------------------------------------------------------------------------------------


def test_finalized_invoice_is_emailed_once_with_pdf_and_link(tenant_a):
    BillingProfile.objects.update_or_create(tenant=tenant_a, defaults={"billing_email": "ap@tenant-a.test"})
    invoice = make_invoice(tenant_a, status=InvoiceStatus.FINALIZED)
    assert invoice_email_send(invoice_id=invoice.pk) == "ap@tenant-a.test"
    assert invoice_email_send(invoice_id=invoice.pk) == ""  # a second run (retry, duplicate task) sends nothing
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ap@tenant-a.test"]
    assert message.subject == f"Invoice {invoice.number} from saasops: $323.52, due {invoice.due_at:%Y-%m-%d}"
    url = invoice_workspace_url(invoice=invoice)
    assert url.endswith(f"://tenant-a.localhost/billing/invoices/{invoice.pk}/") or url.endswith(
        f"://tenant-a.localhost:8000/billing/invoices/{invoice.pk}/"
    )
    assert url in message.body and "$323.52" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and url in html
    name, content, mimetype = message.attachments[0]
    assert (name, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert content.startswith(b"%PDF-")
    invoice.refresh_from_db()
    assert invoice.emailed_at is not None


def test_drafts_and_void_invoices_are_not_emailed(tenant_a):
    draft = make_invoice(tenant_a)
    void = make_invoice(tenant_a, start=P2, end=P2 + timedelta(days=30), status=InvoiceStatus.FINALIZED)
    invoice_void(invoice=void, actor=None, reason="test")
    assert invoice_email_send(invoice_id=draft.pk) == ""
    assert invoice_email_send(invoice_id=void.pk) == ""
    assert mail.outbox == []


def test_a_failed_send_is_retried_not_lost(tenant_a, monkeypatch):
    invoice = make_invoice(tenant_a, status=InvoiceStatus.FINALIZED)

    def refuse(self, fail_silently=False):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", refuse)
    with pytest.raises(ConnectionRefusedError):
        invoice_email_send(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert invoice.emailed_at is None  # the claim was released: the task's retry sends it
    monkeypatch.undo()
    assert invoice_email_send(invoice_id=invoice.pk) == billing_recipient(tenant=tenant_a)
    assert len(mail.outbox) == 1


# -- the workspace pages (tenant host) ---------------------------------------------------------


def url(name: str, *args) -> str:
    return reverse(f"billing:{name}", args=args, urlconf="saasops.urls_tenant")


@pytest.fixture
def invoices(tenant_a, tenant_b):
    """tenant-a: a draft (not shown), a finalized and a paid invoice; tenant-b: a finalized one."""
    return {
        "draft": make_invoice(tenant_a, start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2026, 11, 1, tzinfo=UTC)),
        "finalized": make_invoice(tenant_a, start=P2, end=datetime(2026, 10, 1, tzinfo=UTC), status="finalized"),
        "paid": make_invoice(tenant_a, status=InvoiceStatus.PAID),
        "other": make_invoice(tenant_b, status=InvoiceStatus.FINALIZED),
    }


def member(tenant, role: str) -> User:
    user = User.objects.create_user(username=f"{role}@{tenant.slug}.test", email=f"{role}@{tenant.slug}.test")
    membership_add(tenant=tenant, user=user, role=role)
    return user


def test_owner_lists_invoices_but_not_drafts(client_for, tenant_a, owner_a, invoices):
    response = client_for(tenant_a, owner_a).get(url("invoice-list"))
    assert response.status_code == 200
    text = text_of(response.content.decode())
    assert invoices["finalized"].number in text and invoices["paid"].number in text
    assert invoices["other"].number not in text  # tenant-b's
    assert "draft" not in text.lower().replace("drafts", "")
    assert "$323.52" in text and "Paid" in text
    assert text.index(invoices["finalized"].number) < text.index(invoices["paid"].number)  # newest period first


def test_invoice_page_and_pdf(client_for, tenant_a, owner_a, invoices):
    client = client_for(tenant_a, owner_a)
    invoice = invoices["finalized"]
    page = client.get(url("invoice-detail", invoice.pk))
    assert page.status_code == 200
    text = text_of(page.content.decode())
    assert f"Invoice {invoice.number}" in text and "Total $323.52" in text
    assert "Download PDF" in text and "Tenant A" in text
    pdf = client.get(url("invoice-pdf", invoice.pk))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'inline; filename="{invoice.number}.pdf"'
    assert pdf.content.startswith(b"%PDF-")
    download = client.get(url("invoice-pdf", invoice.pk) + "?download=1")
    assert download["Content-Disposition"].startswith("attachment;")


def test_another_tenants_invoice_and_drafts_are_404(client_for, tenant_a, owner_a, invoices):
    client = client_for(tenant_a, owner_a)
    for key in ("other", "draft"):
        assert client.get(url("invoice-detail", invoices[key].pk)).status_code == 404
        assert client.get(url("invoice-pdf", invoices[key].pk)).status_code == 404
    assert client.get(url("invoice-detail", 999_999_999)).status_code == 404


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("billing", 200), ("viewer", 403)])
def test_billing_roles_only(client_for, tenant_a, invoices, role, status):
    client = client_for(tenant_a, member(tenant_a, role))
    invoice = invoices["finalized"]
    for target in (url("invoice-list"), url("invoice-detail", invoice.pk), url("invoice-pdf", invoice.pk)):
        assert client.get(target).status_code == status
    if status == 403:
        assert "Invoices are for billing roles" in client.get(url("invoice-list")).content.decode()


def test_signed_out_is_sent_to_sign_in_and_outsiders_get_404(client_for, tenant_a, owner_b, invoices):
    response = client_for(tenant_a).get(url("invoice-list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    # tenant-b's owner on tenant-a's host: not a member
    assert client_for(tenant_a, owner_b).get(url("invoice-detail", invoices["finalized"].pk)).status_code == 404
