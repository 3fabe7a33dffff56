"""Tenant host: the hand-off landing, the plan page (change, cancel, reactivate, export)
and the workspace's history. Every query names the request's tenant."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing.changes import is_upgrade
from billing.models import Subscription
from lifecycle.forms import CancelForm, PlanChangeForm
from lifecycle.handoff import handoff_token_redeem
from lifecycle.plan_changes import (
    PlanChangeRefused,
    current_period_end,
    plan_change,
    plan_misfits,
    subscription_cancel,
    subscription_reactivate,
    usage_now,
)
from lifecycle.retention import export_build, retention_ends_at, tenant_is_deleted
from lifecycle.views.public import plan_cards
from tenants.models import MemberRole, Plan, Tenant
from tenants.selectors import tenant_events

PLAN_ROLES = frozenset({MemberRole.OWNER, MemberRole.ADMIN, MemberRole.BILLING})
View = Callable[..., HttpResponse]


def _tenant(request: HttpRequest) -> Tenant:
    return request.tenant  # type: ignore[attr-defined,no-any-return]


def member_required(roles: frozenset[str] | None = None) -> Callable[[View], View]:
    """Signed in, a member of this tenant (the middleware turned others away) and, if
    `roles` is given, with one of them; anyone else gets a 403 page that says who can."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = getattr(request, "membership", None)
            if membership is None:
                raise Http404("Not a workspace.")
            if roles is not None and membership.role not in roles:
                allowed = ", ".join(MemberRole(r).label.lower() for r in MemberRole.values if r in roles)
                return render(
                    request, "lifecycle/forbidden.html", {"membership": membership, "allowed": allowed}, status=403
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


# --- hand-off ----------------------------------------------------------------------------------
@require_GET
def handoff(request: HttpRequest) -> HttpResponse:
    """Redeem a hand-off token from the public host: signed in here, on to the dashboard."""
    user = handoff_token_redeem(token=request.GET.get("token", ""), tenant=_tenant(request))
    if user is None:
        return render(request, "lifecycle/handoff_invalid.html", status=400)
    login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
    messages.success(request, f"Welcome to {_tenant(request).name}. Your workspace is ready.")
    return redirect("/")


# --- plan --------------------------------------------------------------------------------------
def _plan_context(request: HttpRequest) -> dict[str, Any]:
    tenant = Tenant.objects.select_related("plan").get(pk=_tenant(request).pk)
    sub = (
        Subscription.objects.select_related("plan", "pending_plan").filter(tenant=tenant, ended_at__isnull=True).first()
    )
    plans = list(Plan.objects.public().prefetch_related("limits"))
    cards = plan_cards(plans)
    for card in cards:
        plan = card["plan"]
        card["current"] = plan.pk == tenant.plan_id
        card["misfits"] = []
        card["direction"] = "current"
        if not card["current"] and sub is not None:
            upgrade = is_upgrade(current=sub.plan, current_interval=sub.interval, new=plan, new_interval=sub.interval)
            card["direction"] = "upgrade" if upgrade else "downgrade"
            if not upgrade:
                card["misfits"] = plan_misfits(tenant=tenant, plan=plan)
    return {
        "tenant": tenant,
        "subscription": sub,
        "period_end": current_period_end(sub) if sub else None,
        "cards": cards,
        "usage": usage_now(tenant=tenant),
        "interval": sub.interval if sub else tenant.billing_interval,
        "cancel_form": CancelForm(),
        "retention_ends_at": retention_ends_at(tenant),
        "deleted": tenant_is_deleted(tenant),
        "is_owner": request.membership.role == MemberRole.OWNER,  # type: ignore[attr-defined]
        "now": timezone.now(),
    }


@member_required(PLAN_ROLES)
@require_GET
def plan_page(request: HttpRequest) -> HttpResponse:
    return render(request, "lifecycle/plan.html", _plan_context(request))


def _refused(request: HttpRequest, exc: ValidationError) -> None:
    for message in exc.messages:
        messages.error(request, message)


@member_required(PLAN_ROLES)
@require_POST
def plan_change_view(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    form = PlanChangeForm(request.POST, current=tenant.plan)
    if not form.is_valid():
        messages.error(request, "Choose a plan and a billing interval.")
        return redirect("lifecycle:plan")
    try:
        result = plan_change(
            tenant=tenant,
            plan=form.cleaned_data["plan"],
            interval=form.cleaned_data["interval"],
            actor=request.user,  # type: ignore[arg-type]
        )
    except PlanChangeRefused as exc:
        _refused(request, exc)
    except ValidationError as exc:
        _refused(request, exc)
    else:
        messages.success(request, result.message)
    return redirect("lifecycle:plan")


@member_required(PLAN_ROLES)
@require_POST
def cancel_view(request: HttpRequest) -> HttpResponse:
    form = CancelForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a reason and when the cancellation takes effect.")
        return redirect("lifecycle:plan")
    immediate = form.cleaned_data["when"] == "now"
    try:
        result = subscription_cancel(
            tenant=_tenant(request),
            actor=request.user,  # type: ignore[arg-type]
            reason=form.cleaned_data["reason"],
            comment=form.cleaned_data["comment"],
            immediate=immediate,
        )
    except ValidationError as exc:
        _refused(request, exc)
    else:
        if immediate:
            invoice = f" Final invoice {result.invoice.number} was issued." if result.invoice else ""
            messages.success(request, f"The subscription is cancelled.{invoice}")
        else:
            messages.success(
                request,
                f"Cancelled at the end of the period, {result.effective_at:%d %B %Y}. "
                "Until then everything works, and you can undo it here.",
            )
    return redirect("lifecycle:plan")


@member_required(PLAN_ROLES)
@require_POST
def reactivate_view(request: HttpRequest) -> HttpResponse:
    try:
        subscription_reactivate(tenant=_tenant(request), actor=request.user)  # type: ignore[arg-type]
    except ValidationError as exc:
        _refused(request, exc)
    else:
        messages.success(request, "Welcome back: the cancellation is withdrawn.")
    return redirect("lifecycle:plan")


@member_required(frozenset({MemberRole.OWNER}))
@require_GET
def export_view(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    data = export_build(tenant=tenant)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{tenant.slug}-export-{timezone.now():%Y%m%d}.zip"'
    return response


# --- history -----------------------------------------------------------------------------------
@member_required()
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    page = Paginator(tenant_events(tenant=_tenant(request)), 50).get_page(request.GET.get("page"))
    return render(request, "lifecycle/history.html", {"page": page, "tenant": _tenant(request)})
