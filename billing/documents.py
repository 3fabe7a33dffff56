"""Invoice documents: the HTML page and the PDF a customer receives, and the email that sends them.

Both documents are drawn from one description of the invoice (`invoice_document`), so the
workspace page, the staff view, the PDF and the email say the same thing. Amounts are the
invoice's own integer minor units, shown with the currency's minor exponent
(billing.rating.from_minor); nothing here computes or rounds an amount.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile, Invoice, InvoiceStatus, LineKind
from billing.rating import from_minor, minor_exponent
from tenants.models import MemberRole, Membership, Tenant
from tenants.revenue import CURRENCY_SYMBOLS
from tenants.services import tenant_host

log = logging.getLogger(__name__)

SELLER_NAME = "saasops"
# Statuses a customer sees (a draft is still under finance review).
CUSTOMER_STATUSES = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.PAYMENT_FAILED, InvoiceStatus.VOID)
EMAILED_STATUSES = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.PAYMENT_FAILED)
# The status in the customer's words (the model's labels are finance's: "Finalized (open)").
STATUS_WORDS: dict[str, str] = {
    InvoiceStatus.DRAFT: "Draft",
    InvoiceStatus.FINALIZED: "Open",
    InvoiceStatus.PAID: "Paid",
    InvoiceStatus.PAYMENT_FAILED: "Payment failed",
    InvoiceStatus.VOID: "Void",
}


def status_words(invoice: Invoice) -> str:
    return STATUS_WORDS.get(invoice.status, invoice.get_status_display())


# -- formatting -------------------------------------------------------------------------------


def money(minor: int, currency: str) -> str:
    """29950, "usd" -> "$299.50"; -2990 -> "-$29.90"; 5000, "jpy" -> "5,000 JPY"."""
    value = from_minor(minor, currency)
    return _with_currency(f"{abs(value):,.{minor_exponent(currency)}f}", value < 0, currency)


def unit_price_text(value: Decimal, currency: str) -> str:
    """A unit price in major units with at least the currency's decimals: 0.5 -> "$0.50",
    0.0025 -> "$0.0025" (unit prices may be finer than the minor unit; amounts never are)."""
    exponent = value.normalize().as_tuple().exponent
    decimals = max(minor_exponent(currency), -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return _with_currency(f"{abs(value):,.{decimals}f}", value < 0, currency)


def _with_currency(amount: str, negative: bool, currency: str) -> str:
    sign = "-" if negative else ""
    symbol = CURRENCY_SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency.upper()}"


def quantity_text(value: Decimal) -> str:
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def _day(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d") if value else ""


# -- the document -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: str
    unit_price: str
    amount: str
    kind: str


@dataclass(frozen=True)
class DocumentCreditNote:
    number: str
    date: str
    reason: str
    amount: str


@dataclass
class InvoiceDocument:
    invoice: Invoice
    number: str
    title: str
    status: str
    status_code: str
    seller: list[str]
    buyer_name: str
    buyer_email: str
    facts: list[tuple[str, str]]
    lines: list[DocumentLine]
    subtotal: str
    taxes: list[tuple[str, str]]
    total: str
    credit_notes: list[DocumentCreditNote] = field(default_factory=list)
    credited: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def is_draft(self) -> bool:
        return self.status_code == InvoiceStatus.DRAFT

    @property
    def watermark(self) -> str:
        if self.status_code == InvoiceStatus.DRAFT:
            return "DRAFT"
        return "VOID" if self.status_code == InvoiceStatus.VOID else ""


def billing_recipient(*, tenant: Tenant) -> str:
    """Where the tenant's invoices go: the billing profile's email, else the owner's."""
    profile = BillingProfile.objects.filter(tenant=tenant).first()
    if profile is not None and profile.billing_email:
        return profile.billing_email
    owner = (
        Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).select_related("user").order_by("pk").first()
    )
    return owner.user.email if owner is not None else ""


def invoice_workspace_url(*, invoice: Invoice) -> str:
    """Absolute URL of the invoice's page in the tenant's workspace (for emails)."""
    scheme = "http" if settings.DEBUG else "https"
    port = "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"
    path = reverse("billing:invoice-detail", args=[invoice.pk], urlconf="saasops.urls_tenant")
    return f"{scheme}://{tenant_host(slug=invoice.tenant.slug)}{port}{path}"


def _line(line: Any, currency: str) -> DocumentLine:
    description = line.description
    previously = line.details.get("previously_billed") if isinstance(line.details, dict) else None
    if line.kind == LineKind.ADJUSTMENT and previously:
        description += f" (less {money(int(previously), currency)} billed before)"
    if line.kind in (LineKind.DISCOUNT, LineKind.CREDIT):
        quantity, unit = "", ""
    else:
        quantity, unit = quantity_text(line.quantity), unit_price_text(line.unit_price, currency)
    return DocumentLine(description, quantity, unit, money(line.amount, currency), line.kind)


def invoice_document(invoice: Invoice) -> InvoiceDocument:
    """What an invoice says, formatted: parties, dates, lines in order, totals, credit notes."""
    currency = invoice.currency
    tenant = invoice.tenant
    lines = list(invoice.lines.order_by("position"))
    number = invoice.number or "DRAFT"
    facts = [("Invoice number", number)]
    if invoice.finalized_at:
        facts.append(("Invoice date", _day(invoice.finalized_at)))
    else:
        facts.append(("Drafted", _day(invoice.created_at)))
    if invoice.due_at and invoice.status in (InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED):
        facts.append(("Due date", _day(invoice.due_at)))
    facts.append(("Billing period", f"{_day(invoice.period_start)} to {_day(invoice.period_end)}"))
    if invoice.paid_at:
        facts.append(("Paid", _day(invoice.paid_at)))
    if invoice.voided_at:
        facts.append(("Voided", _day(invoice.voided_at)))
    notes = []
    if invoice.status == InvoiceStatus.DRAFT:
        notes.append("Draft under review: not a request for payment. The number is given when it is approved.")
    if invoice.status == InvoiceStatus.VOID:
        notes.append(
            f"This invoice is void{': ' + invoice.void_reason if invoice.void_reason else ''}. Nothing is owed."
        )
    if invoice.status == InvoiceStatus.PAYMENT_FAILED:
        notes.append("The last payment attempt failed; we will retry, or update your payment method in the workspace.")
    credit_notes = list(invoice.credit_notes.order_by("created_at", "pk"))
    if credit_notes:
        notes.append("Credit notes are deducted from your next invoice.")
    return InvoiceDocument(
        invoice=invoice,
        number=number,
        title=f"Invoice {number}" if invoice.number else "Draft invoice",
        status=status_words(invoice),
        status_code=invoice.status,
        seller=[SELLER_NAME, settings.BASE_DOMAIN],
        buyer_name=tenant.name,
        buyer_email=billing_recipient(tenant=tenant),
        facts=facts,
        lines=[_line(line, currency) for line in lines if line.kind != LineKind.TAX],
        subtotal=money(invoice.subtotal, currency),
        taxes=[(line.description, money(line.amount, currency)) for line in lines if line.kind == LineKind.TAX],
        total=money(invoice.total, currency),
        credit_notes=[
            DocumentCreditNote(note.number, _day(note.created_at), note.reason, money(note.amount, currency))
            for note in credit_notes
        ],
        credited=money(sum(note.amount for note in credit_notes), currency) if credit_notes else "",
        notes=notes,
    )


def invoice_html(invoice: Invoice) -> str:
    """The invoice as a standalone, printable HTML page (templates/billing/invoice.html)."""
    return render_to_string("billing/invoice.html", {"doc": invoice_document(invoice)})


# -- PDF --------------------------------------------------------------------------------------

_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu")]
_fonts: tuple[str, str] | None = None


def _pdf_fonts() -> tuple[str, str]:
    """(regular, bold): DejaVu Sans where the system has it (covers most scripts), else the
    Vera fonts that ship inside reportlab (Latin), so a tenant's name never loses letters
    that a font on the machine could show."""
    global _fonts
    if _fonts is not None:
        return _fonts
    from reportlab import rl_config
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    candidates = [(d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf") for d in _FONT_DIRS]
    for folder in rl_config.TTFSearchPath:
        candidates.append((Path(folder) / "Vera.ttf", Path(folder) / "VeraBd.ttf"))
    for regular, bold in candidates:
        if regular.is_file() and bold.is_file():
            pdfmetrics.registerFont(TTFont("InvoiceSans", str(regular)))
            pdfmetrics.registerFont(TTFont("InvoiceSans-Bold", str(bold)))
            _fonts = ("InvoiceSans", "InvoiceSans-Bold")
            return _fonts
    _fonts = ("Helvetica", "Helvetica-Bold")
    return _fonts


def invoice_pdf(invoice: Invoice) -> bytes:
    """The invoice as PDF (A4): the same content as the HTML, lines in a table that continues
    over as many pages as it needs with its header repeated, "page N of M" on every page.
    Column widths add up to 169 mm: the frame is A4 less 18 mm margins less 6 pt padding a side."""
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from reportlab.platypus.flowables import Flowable

    doc = invoice_document(invoice)
    regular, bold = _pdf_fonts()
    body = ParagraphStyle("body", fontName=regular, fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#616e7c"))
    heading = ParagraphStyle("heading", parent=body, fontName=bold, fontSize=18, leading=22)
    label = ParagraphStyle("label", parent=small, fontName=bold)
    label_right = ParagraphStyle("label_right", parent=label, alignment=2)
    right = ParagraphStyle("right", parent=body, alignment=2)
    grey, line_colour = colors.HexColor("#616e7c"), colors.HexColor("#e4e7eb")

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(text), style)

    class NumberedCanvas(Canvas):
        """Holds each page until the end so every page can say how many there are."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(len(self._pages))
                super().showPage()
            super().save()

        def _decorate(self, count: int) -> None:
            width, height = A4
            self.saveState()
            if doc.watermark:
                self.setFillColor(colors.Color(0.8, 0.1, 0.1, alpha=0.12))
                self.setFont(bold, 96)
                self.translate(width / 2, height / 2)
                self.rotate(35)
                self.drawCentredString(0, -30, doc.watermark)
                self.rotate(-35)
                self.translate(-width / 2, -height / 2)
            self.setFont(regular, 8)
            self.setFillColor(grey)
            # aligned with the frame's text: margin plus the frame's 6 pt padding
            self.drawString(18 * mm + 6, 12 * mm, f"{SELLER_NAME} · {doc.title} · {doc.buyer_name}")
            self.drawRightString(width - 18 * mm - 6, 12 * mm, f"Page {self._pageNumber} of {count}")
            self.restoreState()

    parties = Table(
        [
            [p("From", label), p("Bill to", label), p("", label)],
            [
                p(doc.seller[0], ParagraphStyle("seller", parent=body, fontName=bold)),
                p(doc.buyer_name, ParagraphStyle("buyer", parent=body, fontName=bold)),
                "",
            ],
            [p(doc.seller[1], small), p(doc.buyer_email, small), ""],
        ],
        colWidths=[60 * mm, 80 * mm, 29 * mm],
        hAlign="LEFT",
    )
    parties.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    fact_rows = [[p(k, label), p(v)] for k, v in [*doc.facts, ("Status", doc.status)]]
    facts = Table(fact_rows, colWidths=[40 * mm, 129 * mm], hAlign="LEFT")
    facts.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))

    rows: list[list[Any]] = [
        [p("Description", label), p("Quantity", label_right), p("Unit price", label_right), p("Amount", label_right)]
    ]
    for line in doc.lines:
        rows.append([p(line.description), p(line.quantity, right), p(line.unit_price, right), p(line.amount, right)])
    if not doc.lines:
        rows.append([p("No lines.", small), "", "", ""])
    table = Table(rows, colWidths=[90 * mm, 25 * mm, 26 * mm, 28 * mm], repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#1f2933")),
                ("LINEBELOW", (0, 1), (-1, -1), 0.4, line_colour),
                ("LEFTPADDING", (0, 0), (0, -1), 0),
                ("RIGHTPADDING", (-1, 0), (-1, -1), 0),
            ]
        )
    )
    total_style = ParagraphStyle("total", parent=right, fontName=bold, fontSize=11, leading=14)
    sums = [[p("Subtotal", right), p(doc.subtotal, right)]]
    sums += [[p(description, right), p(amount, right)] for description, amount in doc.taxes]
    sums.append([p("Total", total_style), p(doc.total, total_style)])
    totals = Table(sums, colWidths=[141 * mm, 28 * mm], hAlign="LEFT")
    totals.setStyle(
        TableStyle(
            [
                ("RIGHTPADDING", (-1, 0), (-1, -1), 0),
                ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.HexColor("#1f2933")),
            ]
        )
    )
    story: list[Flowable] = [
        p(doc.title, heading),
        Spacer(1, 6 * mm),
        parties,
        Spacer(1, 5 * mm),
        facts,
        Spacer(1, 7 * mm),
        table,
        Spacer(1, 2 * mm),
        totals,
    ]
    if doc.credit_notes:
        notes_rows: list[list[Any]] = [
            [p("Credit note", label), p("Date", label), p("Reason", label), p("Amount", label_right)]
        ]
        for note in doc.credit_notes:
            notes_rows.append([p(note.number), p(note.date), p(note.reason), p(note.amount, right)])
        notes_table = Table(notes_rows, colWidths=[38 * mm, 24 * mm, 79 * mm, 28 * mm], repeatRows=1, hAlign="LEFT")
        notes_table.setStyle(
            TableStyle(
                [
                    ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#1f2933")),
                    ("LEFTPADDING", (0, 0), (0, -1), 0),
                    ("RIGHTPADDING", (-1, 0), (-1, -1), 0),
                ]
            )
        )
        story += [Spacer(1, 8 * mm), p("Credit notes against this invoice", label), notes_table]
    story += [Spacer(1, 6 * mm)] + [p(note, small) for note in doc.notes]
    buffer = io.BytesIO()
    SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=22 * mm,
        title=doc.title,
        author=SELLER_NAME,
        subject=f"{doc.title} for {doc.buyer_name}",
    ).build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()


def invoice_pdf_filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.pk}'}.pdf"


# -- email ------------------------------------------------------------------------------------


def invoice_email_send(*, invoice_id: int) -> str:
    """Email a finalized invoice, PDF attached, with a link to its workspace page, to the
    tenant's billing email (else the owner). Returns the address, or "" when nothing was sent.

    Sent at most once: the invoice is claimed (`emailed_at` set where it was empty) in its own
    transaction before sending, so a second run, a retry or a concurrent worker finds it
    claimed and does nothing. If sending fails the claim is released and the error raised,
    so the task retries. Drafts and void invoices are not sent."""
    invoice = Invoice.objects.select_related("tenant").get(pk=invoice_id)
    if invoice.emailed_at is not None or invoice.status not in EMAILED_STATUSES:
        return ""
    recipient = billing_recipient(tenant=invoice.tenant)
    if not recipient:
        log.warning("invoice %s of tenant %s: no billing email and no owner; not emailed", invoice, invoice.tenant_id)
        return ""
    doc = invoice_document(invoice)
    context = {"doc": doc, "invoice": invoice, "url": invoice_workspace_url(invoice=invoice)}
    due = f", due {_day(invoice.due_at)}" if invoice.due_at else ""
    message = EmailMultiAlternatives(
        subject=f"{doc.title} from {SELLER_NAME}: {doc.total}{due}",
        body=render_to_string("emails/invoice_finalized.txt", context),
        to=[recipient],
    )
    message.attach_alternative(render_to_string("emails/invoice_finalized.html", context), "text/html")
    message.attach(invoice_pdf_filename(invoice), invoice_pdf(invoice), "application/pdf")

    claimed_at = timezone.now()
    claimed = Invoice.objects.filter(pk=invoice.pk, emailed_at__isnull=True, status__in=EMAILED_STATUSES).update(
        emailed_at=claimed_at
    )
    if not claimed:
        return ""  # another run got here first, or the invoice was voided meanwhile
    try:
        message.send()
    except Exception:
        Invoice.objects.filter(pk=invoice.pk, emailed_at=claimed_at).update(emailed_at=None)
        raise
    log.info("invoice %s emailed to %s", invoice, recipient)
    return recipient
