"""Billing: plan, interval and period, payment method, billing email; invoices are one link
away (/billing/invoices/, the billing app's pages)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils import timezone

from billing.documents import money, unit_price_text
from billing.models import BillingProfile, Invoice, InvoiceStatus
from tenants.models import LimitAction, Plan
from workspace.forms import BillingEmailForm
from workspace.permissions import can, forbidden, role_required
from workspace.selectors.overview import current_period, open_subscription
from workspace.services.settings import billing_email_set
from workspace.views.common import first_error, page, role_of, tenant_of, user_of

PAYMENT_METHOD_PATH = "/billing/payment-method/"
PLAN_PATH = "/plan/"  # changing plan (lifecycle's page)
RESOURCE_ORDER = ["api_calls", "ai_tokens", "seats", "storage_gb"]


def limits_text(plan: Plan) -> list[tuple[str, str]]:
    """The plan's limits in words: ("API calls per month", "100,000, then $0.50 per 1,000")."""
    out = []
    for limit in sorted(plan.limits.all(), key=lambda lim: RESOURCE_ORDER.index(lim.resource)
                        if lim.resource in RESOURCE_ORDER else 99):  # fmt: skip
        if limit.included is None:
            text = "unlimited"
        else:
            text = f"{limit.included:,} included"
            if limit.on_exceed == LimitAction.OVERAGE:
                size = limit.overage_package_size
                price = unit_price_text(limit.overage_package_price, plan.currency)
                text += f", then {price} per {'unit' if size == 1 else f'{size:,}'}"
            else:
                text += ", then refused until the next period" if limit.resource != "seats" else ""
        out.append((limit.get_resource_display(), text))
    return out


def url_exists(path: str) -> bool:
    """Pages other parts of the app add over time (the payment method page): link to them
    only once they exist."""
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def invoices_url() -> str:
    try:
        return reverse("billing:invoice-list")
    except NoReverseMatch:
        return "/billing/invoices/"


def billing_email_post(request: HttpRequest) -> tuple[BillingEmailForm, bool]:
    """Shared by the billing and settings pages: (bound form, saved?)."""
    form = BillingEmailForm(request.POST)
    if not form.is_valid():
        return form, False
    try:
        billing_email_set(tenant=tenant_of(request), email=form.cleaned_data["billing_email"], actor=user_of(request))
    except ValidationError as exc:
        form.add_error("billing_email", first_error(exc))
        return form, False
    messages.success(request, "Billing email saved.")
    return form, True


@role_required("view_billing")
def billing(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    profile = BillingProfile.objects.filter(tenant=tenant).first()
    form = BillingEmailForm(initial={"billing_email": profile.billing_email if profile else ""})
    status = 200
    if request.method == "POST":
        if not can(role_of(request), "edit_billing_email"):
            return forbidden(request, "edit_billing_email")
        form, saved = billing_email_post(request)
        if saved:
            return redirect("workspace:billing")
        status = 400
    subscription = open_subscription(tenant=tenant)
    start, end = current_period(tenant=tenant, subscription=subscription, now=timezone.now())
    plan = subscription.plan if subscription else tenant.plan
    fee = None
    if plan is not None:
        yearly = (subscription.interval if subscription else tenant.billing_interval) == "yearly"
        fee = money(plan.price_yearly if yearly else plan.price_monthly, plan.currency) + (
            " a year" if yearly else " a month"
        )
    open_invoices = Invoice.objects.filter(
        tenant=tenant, status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAYMENT_FAILED]
    ).order_by("-period_start")
    return page(
        request,
        "workspace/billing.html",
        {
            "subscription": subscription,
            "plan": plan,
            "fee": fee,
            "limits": limits_text(plan) if plan else [],
            "plan_url": PLAN_PATH if url_exists(PLAN_PATH) else "",
            "period_start": start,
            "period_end": end,
            "profile": profile,
            "form": form,
            "invoices_url": invoices_url(),
            "payment_method_url": PAYMENT_METHOD_PATH if url_exists(PAYMENT_METHOD_PATH) else "",
            "open_invoices": [(inv, money(inv.total, inv.currency)) for inv in open_invoices[:5]],
        },
        status=status,
    )
