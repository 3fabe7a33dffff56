"""The customer's invoices in their workspace (tenant host): list, invoice page, PDF.

Only members whose role may see money (owner, admin, billing) get in; a viewer is told so.
Every query names the request's tenant, so another tenant's invoice id is a 404, as is a
draft (still under finance review, not the customer's yet).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from billing.documents import (
    CUSTOMER_STATUSES,
    invoice_document,
    invoice_pdf,
    invoice_pdf_filename,
    money,
    status_words,
)
from billing.models import Invoice
from tenants.models import MemberRole, Tenant

BILLING_ROLES = frozenset({MemberRole.OWNER, MemberRole.ADMIN, MemberRole.BILLING})

View = Callable[..., HttpResponse]


def billing_member_required(view: View) -> View:
    """Signed in (else to sign-in), a member of this tenant (middleware), with a billing role."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = getattr(request, "membership", None)
        if membership is None:
            raise Http404("Not a workspace.")
        if membership.role not in BILLING_ROLES:
            return render(request, "billing/no_access.html", {"membership": membership}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


def tenant_invoices(*, tenant: Tenant) -> QuerySet[Invoice]:
    """The invoices a tenant's members see: everything but drafts, newest period first."""
    return Invoice.objects.filter(tenant=tenant, status__in=CUSTOMER_STATUSES).order_by("-period_start", "-id")


def _invoice_or_404(request: HttpRequest, pk: int) -> Invoice:
    invoice = tenant_invoices(tenant=request.tenant).select_related("tenant").filter(pk=pk).first()  # type: ignore[attr-defined]
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


@billing_member_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    invoices = list(tenant_invoices(tenant=request.tenant)[:200])  # type: ignore[attr-defined]
    rows = [
        {"invoice": invoice, "total": money(invoice.total, invoice.currency), "status": status_words(invoice)}
        for invoice in invoices
    ]
    return render(request, "billing/invoice_list.html", {"rows": rows})


@billing_member_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_or_404(request, pk)
    return render(request, "billing/invoice_page.html", {"doc": invoice_document(invoice), "invoice": invoice})


@billing_member_required
def invoice_pdf_download(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice_or_404(request, pk)
    return pdf_response(invoice, attachment=request.GET.get("download") == "1")


def pdf_response(invoice: Invoice, *, attachment: bool = False) -> HttpResponse:
    response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
    disposition = "attachment" if attachment else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{invoice_pdf_filename(invoice)}"'
    response["Cache-Control"] = "private, no-store"
    return response
