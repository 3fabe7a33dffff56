"""Shared by the billing admin pages: helpers, list filters, read-only inlines, forms."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMonth
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from billing.documents import money, quantity_text, unit_price_text
from billing.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
)
from billing.rating import from_minor, minor_exponent, to_minor
from saasops.admin_base import ReadOnlyInline
from tenants.models import User

S = InvoiceStatus
CREDITABLE = (S.FINALIZED, S.PAID, S.PAYMENT_FAILED)
VOIDABLE = (S.DRAFT, S.FINALIZED, S.PAYMENT_FAILED)
SHORT_STATUS: dict[str, str] = {
    S.DRAFT: "Draft",
    S.FINALIZED: "Finalized",
    S.PAID: "Paid",
    S.PAYMENT_FAILED: "Failed",
    S.VOID: "Void",
}
AMOUNT_ONLY = (LineKind.DISCOUNT, LineKind.CREDIT)  # no quantity or unit price of their own


def staff_actor(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.is_staff:
        raise PermissionDenied
    return user


def money_cell(minor: int | None, currency: str) -> SafeString | str:
    return "—" if minor is None else format_html('<span class="money">{}</span>', money(minor, currency))


def invoice_label(invoice: Invoice) -> str:
    period = f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}"
    return f"{invoice} — {invoice.tenant.name}, {period}, {money(invoice.total, invoice.currency)}"


def change_percent(invoice: Invoice) -> str:
    """The total against the previous invoice: "+12.5%", "-40.0%", "new" (was 0), "—" (first)."""
    if invoice.previous_total is None:
        return "—"
    if invoice.previous_total == 0:
        return "new" if invoice.total else "0.0%"
    change = Decimal(invoice.total - invoice.previous_total) * 100 / Decimal(invoice.previous_total)
    return f"{change.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):+}%"


# -- list filters ------------------------------------------------------------------------------


class InvoiceStatusFilter(admin.SimpleListFilter):
    """By status, opening on the review queue (drafts); "All" shows every status."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(S.DRAFT, "Drafts to review"), *[(value, label) for value, label in S.choices if value != S.DRAFT]]

    def current(self) -> str:
        return self.value() or S.DRAFT

    def queryset(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
        return queryset if self.current() == self.ALL else queryset.filter(status=self.current())

    def choices(self, changelist: Any) -> Any:
        counts = dict(Invoice.objects.values_list("status").annotate(n=Count("id")).order_by())
        yield {
            "selected": self.current() == self.ALL,
            "query_string": changelist.get_query_string({self.parameter_name: self.ALL}),
            "display": "All",
        }
        for value, label in self.lookup_choices:
            yield {
                "selected": self.current() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": f"{label} ({counts.get(value, 0)})",
            }


class PeriodFilter(admin.SimpleListFilter):
    """By the month a billing period starts in (the last 12 months that have invoices)."""

    title = "period starting"
    parameter_name = "period"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        months = (
            Invoice.objects.annotate(month=TruncMonth("period_start", tzinfo=UTC))
            .values_list("month", flat=True)
            .distinct()
            .order_by("-month")[:12]
        )
        return [(month.strftime("%Y-%m"), month.strftime("%B %Y")) for month in months]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
        if not self.value():
            return queryset
        try:
            year, month = (int(part) for part in str(self.value()).split("-"))
            start = datetime(year, month, 1, tzinfo=UTC)
        except ValueError:
            return queryset.none()
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return queryset.filter(period_start__gte=start, period_start__lt=end)


# -- inlines -----------------------------------------------------------------------------------


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    verbose_name_plural = "lines"
    fields = readonly_fields = (
        "line_number",
        "description",
        "quantity_display",
        "unit_price_display",
        "amount_display",
    )
    ordering = ["position"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[InvoiceLine]:
        return super().get_queryset(request).select_related("invoice")

    @admin.display(description="#")
    def line_number(self, obj: InvoiceLine) -> int:
        return obj.position

    @admin.display(description="quantity")
    def quantity_display(self, obj: InvoiceLine) -> str:
        return "" if obj.kind in AMOUNT_ONLY else quantity_text(obj.quantity)

    @admin.display(description="unit price")
    def unit_price_display(self, obj: InvoiceLine) -> SafeString | str:
        if obj.kind in AMOUNT_ONLY:
            return ""
        if obj.kind == LineKind.TAX:
            return format_html('<span class="money">{}%</span>', f"{(obj.unit_price * 100).normalize():f}")
        return format_html('<span class="money">{}</span>', unit_price_text(obj.unit_price, obj.invoice.currency))

    @admin.display(description="amount")
    def amount_display(self, obj: InvoiceLine) -> SafeString | str:
        return money_cell(obj.amount, obj.invoice.currency)


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fk_name = "invoice"
    verbose_name_plural = "credit notes against this invoice"
    fields = readonly_fields = ("number", "created_at", "amount_display", "reason", "created_by", "deducted_from")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CreditNote]:
        return (
            super()
            .get_queryset(request)
            .select_related("invoice", "created_by")
            .prefetch_related("applications__invoice")
        )

    @admin.display(description="amount")
    def amount_display(self, obj: CreditNote) -> SafeString | str:
        return money_cell(obj.amount, obj.invoice.currency)

    @admin.display(description="deducted from")
    def deducted_from(self, obj: CreditNote) -> str:
        return credit_deductions_text(obj)


def credit_deductions_text(note: CreditNote) -> str:
    """Where a credit note went: "INV-… 25.00, INV-… 10.00; 5.00 left" (or "not yet")."""
    currency = note.invoice.currency
    parts = [f"{a.invoice} {money(a.amount, currency)}" for a in note.applications.all()]
    left = note.remaining
    text = ", ".join(parts) if parts else "not yet"
    return f"{text}; {money(left, currency)} left" if parts and left else text


# -- forms -------------------------------------------------------------------------------------


class VoidForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Recorded in the tenant's history with your name; shown on the void invoice.",
    )


class ApproveForm(forms.Form):
    """No fields: the page itself is the confirmation."""


class CreditNoteForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Printed on the credit note and the next invoice the customer gets.",
    )

    def __init__(self, *args: Any, invoice: Invoice, credited: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoice, self.remaining = invoice, invoice.total - credited
        exponent = minor_exponent(invoice.currency)
        smallest = from_minor(1, invoice.currency)
        self.fields["amount"] = forms.DecimalField(
            label=f"Amount ({invoice.currency.upper()})",
            min_value=smallest,
            decimal_places=exponent,
            max_digits=18,
            help_text=(
                f"In {invoice.currency.upper()}, e.g. {from_minor(min(self.remaining, 5000), invoice.currency)}. "
                f"At most {money(self.remaining, invoice.currency)} can still be credited on this invoice"
                f"{f' ({money(credited, invoice.currency)} credited already)' if credited else ''}."
            ),
        )
        self.order_fields(["amount", "reason"])

    def clean_amount(self) -> int:
        minor = to_minor(self.cleaned_data["amount"], self.invoice.currency)
        if minor > self.remaining:
            raise ValidationError(
                f"At most {money(self.remaining, self.invoice.currency)} can still be credited on this invoice."
            )
        return minor
