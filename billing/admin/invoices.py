"""The invoice review queue: list, approve, void, draft again, credit notes, documents."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from billing.admin.common import (
    CREDITABLE,
    SHORT_STATUS,
    VOIDABLE,
    ApproveForm,
    CreditNoteForm,
    CreditNoteInline,
    InvoiceLineInline,
    InvoiceStatusFilter,
    PeriodFilter,
    S,
    VoidForm,
    change_percent,
    invoice_label,
    money_cell,
    staff_actor,
)
from billing.documents import invoice_html, money
from billing.invoicing import credit_note_issue, invoice_finalize, invoice_redraft, invoice_void
from billing.models import (
    Invoice,
)
from billing.views import pdf_response

log = logging.getLogger(__name__)

# -- invoices ----------------------------------------------------------------------------------


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = [
        "invoice",
        "tenant_name",
        "period",
        "total_display",
        "previous_display",
        "change_display",
        "swing_display",
        "status_display",
        "created",
    ]
    list_display_links = ["invoice"]
    list_filter = [InvoiceStatusFilter, "swing_flag", PeriodFilter]
    list_select_related = ["tenant"]
    search_fields = ["number", "tenant__name", "tenant__slug"]
    search_help_text = "Invoice number, tenant name or slug."
    actions = ["approve", "void", "redraft"]
    _sections: list[tuple[str | None, tuple[str, ...]]] = [
        (None, ("tenant", "kind", "status_display", "number_display", "period", "documents")),
        ("Amounts", ("subtotal_display", "tax_display", "total_display", "previous_display", "change_display")),
        ("Review", ("swing_display", "created_at", "finalized_at", "finalized_by", "due_at", "emailed_at")),
        ("Void", ("voided_at", "void_reason")),
        ("Payment", ("paid_at", "payment_attempts", "next_payment_attempt_at", "last_payment_error", "disputed")),
    ]
    # Void and payment details fold away: finance reads the amounts, then the lines below.
    fieldsets = [
        (name, {"fields": fields, "classes": ["collapse"] if name in ("Void", "Payment") else []})
        for name, fields in _sections
    ]
    readonly_fields = tuple(field for _, fields in _sections for field in fields)

    # Invoices come from the invoicing job and change only through the actions below.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Model level (actions, the review pages) needs `change_invoice`; no single invoice is
        # ever edited in a form, so the detail page is read-only for everyone.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[type[admin.options.InlineModelAdmin]]:
        if obj is not None and obj.credit_notes.exists():
            return [InvoiceLineInline, CreditNoteInline]
        return [InvoiceLineInline]

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_creditnote")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("approve/", wrap(self.approve_view), name="billing_invoice_approve"),
            path("void/", wrap(self.void_view), name="billing_invoice_void"),
            path("<int:object_id>/credit-note/", wrap(self.credit_note_view), name="billing_invoice_credit_note"),
            path("<int:object_id>/document/", wrap(self.document_view), name="billing_invoice_document"),
            path("<int:object_id>/document.pdf", wrap(self.pdf_view), name="billing_invoice_pdf"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        status = request.GET.get(InvoiceStatusFilter.parameter_name) or S.DRAFT
        title = "Invoices to review (drafts)" if status == S.DRAFT else "Invoices"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        invoice = self.get_queryset(request).filter(pk=object_id).first() if object_id.isdigit() else None
        tools = self.invoice_tools(request, invoice) if invoice is not None else []
        return super().change_view(request, object_id, form_url, {"invoice_tools": tools, **(extra_context or {})})

    def invoice_tools(self, request: HttpRequest, invoice: Invoice) -> list[dict[str, str]]:
        query = urlencode({"ids": invoice.pk, "back": "detail"})
        tools = [
            {"label": "Invoice (HTML)", "url": reverse("admin:billing_invoice_document", args=[invoice.pk]), "css": ""},
            {"label": "PDF", "url": reverse("admin:billing_invoice_pdf", args=[invoice.pk]), "css": ""},
        ]
        if self.has_change_permission(request) and invoice.status == S.DRAFT:
            url = reverse("admin:billing_invoice_approve")
            tools.append({"label": "Approve…", "url": f"{url}?{query}", "css": "approve"})
        if self.has_credit_permission(request) and invoice.status in CREDITABLE:
            url = reverse("admin:billing_invoice_credit_note", args=[invoice.pk])
            tools.append({"label": "Issue credit note…", "url": url, "css": ""})
        if self.has_change_permission(request) and invoice.status in VOIDABLE:
            url = reverse("admin:billing_invoice_void")
            tools.append({"label": "Void…", "url": f"{url}?{query}", "css": "danger"})
        return tools

    # -- columns and fields ------------------------------------------------------------------

    @admin.display(description="invoice", ordering="number")
    def invoice(self, obj: Invoice) -> str:
        return str(obj)

    @admin.display(description="number")
    def number_display(self, obj: Invoice) -> str:
        return obj.number or "none until approved"

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_name(self, obj: Invoice) -> str:
        return obj.tenant.name

    @admin.display(description="period", ordering="period_start")
    def period(self, obj: Invoice) -> SafeString:
        start, end = f"{obj.period_start:%Y-%m-%d}", f"{obj.period_end:%Y-%m-%d}"
        return format_html('<span class="nowrap">{} – {}</span>', start, end)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Invoice) -> str:
        return f"{obj.created_at:%Y-%m-%d}"

    @admin.display(description="total", ordering="total")
    def total_display(self, obj: Invoice) -> SafeString | str:
        return money_cell(obj.total, obj.currency)

    @admin.display(description="subtotal")
    def subtotal_display(self, obj: Invoice) -> SafeString | str:
        return money_cell(obj.subtotal, obj.currency)

    @admin.display(description="tax")
    def tax_display(self, obj: Invoice) -> SafeString | str:
        return money_cell(obj.tax, obj.currency)

    @admin.display(description="previous")
    def previous_display(self, obj: Invoice) -> SafeString | str:
        return money_cell(obj.previous_total, obj.currency)

    @admin.display(description="change")
    def change_display(self, obj: Invoice) -> SafeString:
        css = "change swing" if obj.swing_flag else "change"
        return format_html('<span class="{}">{}</span>', css, change_percent(obj))

    @admin.display(description="swing", ordering="swing_flag")
    def swing_display(self, obj: Invoice) -> SafeString | str:
        if not obj.swing_flag:
            return "—"
        return format_html(
            '<span class="swing-flag" title="{}">Swing</span>', "Total moved a lot: check before approving"
        )

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Invoice) -> SafeString:
        label = SHORT_STATUS.get(obj.status, obj.get_status_display())
        return format_html(
            '<span class="status-badge invoice-{}" title="{}">{}</span>', obj.status, obj.get_status_display(), label
        )

    @admin.display(description="documents")
    def documents(self, obj: Invoice) -> SafeString:
        return format_html(
            '<a href="{}">Invoice (HTML)</a> · <a href="{}">PDF</a>',
            reverse("admin:billing_invoice_document", args=[obj.pk]),
            reverse("admin:billing_invoice_pdf", args=[obj.pk]),
        )

    # -- actions -----------------------------------------------------------------------------

    @admin.action(description="Approve (finalize) selected invoices", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        self._approve_all(request, list(queryset.select_related("tenant").order_by("pk")))

    @admin.action(description="Void selected invoices…", permissions=["change"])
    def void(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse:
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:billing_invoice_void')}?{urlencode({'ids': ids})}")

    @admin.action(description="Draft again (void period invoices, rated anew)", permissions=["change"])
    def redraft(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        actor = staff_actor(request)
        for invoice in queryset.select_related("tenant").order_by("pk"):
            label = invoice_label(invoice)
            try:
                new = invoice_redraft(invoice=invoice, actor=actor)
            except ValidationError as exc:
                messages.error(request, f"{label}: not drafted again — {' '.join(exc.messages)}")
                continue
            total = money(new.total, new.currency)
            messages.success(request, f"{label}: drafted again as a new draft for review ({total}).")

    def _approve_all(self, request: HttpRequest, invoices: list[Invoice]) -> None:
        actor = staff_actor(request)
        approved: list[str] = []
        for invoice in invoices:
            label = invoice_label(invoice)
            try:
                invoice_finalize(invoice=invoice, actor=actor)
            except ValidationError as exc:
                messages.error(request, f"{label}: not approved — {' '.join(exc.messages)}")
                continue
            except Exception as exc:
                # Finalizing is atomic, but the after-commit hand-off (email, payment) runs outside it.
                log.exception("approving invoice %s failed", invoice.pk)
                status = Invoice.objects.filter(pk=invoice.pk).values_list("status", flat=True).first()
                if status == S.FINALIZED:
                    messages.warning(
                        request, f"{label}: approved, but email and payment could not be queued ({exc}); tell ops."
                    )
                else:
                    messages.error(request, f"{label}: not approved — unexpected error ({exc}). Nothing changed.")
                continue
            approved.append(f"{invoice.number} ({invoice.tenant.name}, {money(invoice.total, invoice.currency)})")
        if approved:
            count = f"{len(approved)} invoice{'s' if len(approved) > 1 else ''}"
            messages.success(request, f"Approved and finalized {count}: {', '.join(approved)}.")

    # -- review pages ------------------------------------------------------------------------

    def _selected(self, request: HttpRequest) -> list[Invoice]:
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip().isdigit()]
        return list(self.get_queryset(request).filter(pk__in=ids).select_related("tenant").order_by("pk"))

    def _back(self, request: HttpRequest, invoices: list[Invoice]) -> str:
        if request.GET.get("back") == "detail" and len(invoices) == 1:
            return reverse("admin:billing_invoice_change", args=[invoices[0].pk])
        return reverse("admin:billing_invoice_changelist")

    def _page(self, request: HttpRequest, template: str, title: str, **extra: Any) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "has_view_permission": self.has_view_permission(request),
            **extra,
        }
        return TemplateResponse(request, f"admin/billing/invoice/{template}", context)

    def approve_view(self, request: HttpRequest) -> HttpResponse:
        """Confirm and approve (the detail page's button; the list action approves at once)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        invoices = self._selected(request)
        back = self._back(request, invoices)
        if not invoices:
            messages.warning(request, "No invoice was selected.")
            return HttpResponseRedirect(back)
        if request.method == "POST":
            self._approve_all(request, invoices)
            return HttpResponseRedirect(back)
        rows = [
            self._row(i, "gets the next number", None if i.status == S.DRAFT else "it is not a draft") for i in invoices
        ]
        return self._page(
            request,
            "operation.html",
            f"Approve {self._count(invoices)}",
            rows=rows,
            form=ApproveForm(),
            cancel_url=back,
            submit_label="Approve and finalize",
            intro="Each invoice gets the next invoice number, becomes immutable, and is emailed to the customer "
            "and collected.",
            single=invoices[0] if len(invoices) == 1 else None,
        )

    def void_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        invoices = self._selected(request)
        back = self._back(request, invoices)
        if not invoices:
            messages.warning(request, "No invoice was selected.")
            return HttpResponseRedirect(back)
        form = VoidForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            actor, reason = staff_actor(request), form.cleaned_data["reason"]
            for invoice in invoices:
                label = invoice_label(invoice)
                try:
                    invoice_void(invoice=invoice, actor=actor, reason=reason)
                except ValidationError as exc:
                    messages.error(request, f"{label}: not voided — {' '.join(exc.messages)}")
                else:
                    messages.success(request, f"Voided {label}. Reason recorded: “{reason}”.")
            return HttpResponseRedirect(back)
        rows = [
            self._row(i, "becomes void", None if i.status in VOIDABLE else f"it is {i.get_status_display().lower()}")
            for i in invoices
        ]
        return self._page(
            request,
            "operation.html",
            f"Void {self._count(invoices)}",
            rows=rows,
            form=form,
            cancel_url=back,
            submit_label="Void now",
            danger=True,
            intro="A void invoice is owed by nobody; credit notes deducted on it go back to the tenant. "
            "Paid invoices cannot be voided: issue a credit note instead.",
            single=invoices[0] if len(invoices) == 1 else None,
        )

    @staticmethod
    def _row(invoice: Invoice, outcome: str, refusal: str | None) -> dict[str, Any]:
        return {
            "invoice": invoice,
            "total": money(invoice.total, invoice.currency),
            "outcome": outcome,
            "refusal": refusal,
        }

    @staticmethod
    def _count(invoices: list[Invoice]) -> str:
        return f"{len(invoices)} invoices" if len(invoices) > 1 else str(invoices[0])

    def _invoice(self, request: HttpRequest, object_id: int) -> Invoice:
        invoice = self.get_queryset(request).select_related("tenant").filter(pk=object_id).first()
        if invoice is None:
            raise Http404("No such invoice.")
        return invoice

    def credit_note_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_credit_permission(request):
            raise PermissionDenied
        invoice = self._invoice(request, object_id)
        back = reverse("admin:billing_invoice_change", args=[invoice.pk])
        if invoice.status not in CREDITABLE:
            messages.error(
                request,
                f"{invoice} is {invoice.get_status_display().lower()}: credit notes are issued against finalized "
                "invoices (void a draft instead).",
            )
            return HttpResponseRedirect(back)
        credited = sum(invoice.credit_notes.values_list("amount", flat=True))
        form = CreditNoteForm(request.POST or None, invoice=invoice, credited=credited)
        if request.method == "POST" and form.is_valid():
            try:
                note = credit_note_issue(
                    invoice=invoice,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    actor=staff_actor(request),
                )
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            else:
                messages.success(
                    request,
                    f"Issued credit note {note.number} for {money(note.amount, invoice.currency)} against {invoice}; "
                    f"it is deducted from {invoice.tenant.name}'s next invoice.",
                )
                return HttpResponseRedirect(back)
        return self._page(
            request,
            "operation.html",
            f"Issue a credit note against {invoice}",
            crumb="Issue credit note",
            rows=[self._row(invoice, "unchanged; the credit note is its own document", None)],
            form=form,
            cancel_url=back,
            submit_label="Issue credit note",
            intro="The invoice itself does not change: the credit is its own numbered document and is deducted "
            "from the tenant's next invoice.",
            single=invoice,
        )

    def document_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponse(invoice_html(self._invoice(request, object_id)))

    def pdf_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return pdf_response(self._invoice(request, object_id))
