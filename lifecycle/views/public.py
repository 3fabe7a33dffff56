"""Public host: pricing, signup, the verification link, the progress page and its status.

The progress page belongs to the browser that used the link: the signup's id is put in
that browser's (public host) session, and only such a session gets a hand-off token.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from allauth.core import ratelimit
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lifecycle.forms import NewSlugForm, SignupForm
from lifecycle.handoff import handoff_url
from lifecycle.models import Signup, SignupStatus
from lifecycle.notifications import workspace_url
from lifecycle.signup import (
    LinkOutcome,
    handoff_allowed,
    signup_from_key,
    signup_pending_for_key,
    signup_retry,
    signup_slug_retry,
    signup_start,
    signup_verify,
    slug_check,
    slug_for_company,
)
from lifecycle.tasks import signup_link_send
from tenants.models import BillingInterval, Plan, PlanLimit, Resource
from tenants.revenue import money_format

SESSION_KEY = "lifecycle_signups"
SENT_EMAIL_KEY = "lifecycle_signup_email"


def _client_ip(request: HttpRequest) -> str | None:
    from allauth.account.adapter import get_adapter

    try:
        return str(get_adapter(request).get_client_ip(request))
    except Exception:
        return None


# --- pricing -----------------------------------------------------------------------------------
LIMIT_ORDER = [Resource.API_CALLS, Resource.AI_TOKENS, Resource.SEATS, Resource.STORAGE_GB]
UNITS = {
    Resource.API_CALLS: ("API calls / month", "1,000"),
    Resource.AI_TOKENS: ("AI tokens / month", "1M"),
    Resource.SEATS: ("seats", "seat"),
    Resource.STORAGE_GB: ("GB storage", "GB"),
}


def _limit_text(limit: PlanLimit, currency: str) -> str:
    unit, _ = UNITS[Resource(limit.resource)]
    if limit.included is None:
        return f"Unlimited {unit}"
    text = f"{limit.included:,} {unit}"
    if limit.on_exceed == "overage" and limit.overage_package_price:
        price = money_format(minor=int(limit.overage_package_price * 100), currency=currency)
        size = limit.overage_package_size
        per = UNITS[Resource(limit.resource)][1] if size == 1 else f"{size:,}"
        text += f", then {price} per {per}"
    return text


def plan_cards(plans: Any) -> list[dict[str, Any]]:
    cards = []
    for plan in plans:
        cards.append(
            {
                "plan": plan,
                "monthly": money_format(minor=plan.price_monthly, currency=plan.currency),
                "yearly_per_month": money_format(minor=round(plan.price_yearly / 12), currency=plan.currency),
                "yearly": money_format(minor=plan.price_yearly, currency=plan.currency),
                "discount": plan.yearly_discount_percent,
                "free": plan.price_monthly == 0,
                "limits": [
                    _limit_text(limit, plan.currency)
                    for limit in sorted(plan.limits.all(), key=lambda item: LIMIT_ORDER.index(Resource(item.resource)))
                ],
            }
        )
    return cards


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    interval = request.GET.get("interval", BillingInterval.MONTHLY)
    if interval not in BillingInterval.values:
        interval = BillingInterval.MONTHLY
    plans = Plan.objects.public().prefetch_related("limits")
    cards = plan_cards(plans)
    best = max((card["discount"] for card in cards), default=0)
    return render(request, "lifecycle/pricing.html", {"cards": cards, "interval": interval, "best_discount": best})


# --- signup ------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            email = form.cleaned_data["email"]
            # Counted only for complete requests (a typo in the address costs nothing).
            if not ratelimit.consume(request, action="signup", key=email.lower()):
                return render(request, "lifecycle/rate_limited.html", {"what": "sign-ups"}, status=429)
            try:
                signup_start(
                    email=email,
                    password=form.cleaned_data["password"],
                    company=form.cleaned_data["company"],
                    slug=form.cleaned_data["slug"],
                    plan=form.cleaned_data["plan"],
                    interval=form.cleaned_data["interval"],
                    ip=_client_ip(request),
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                request.session[SENT_EMAIL_KEY] = email
                return redirect("lifecycle:signup-sent")
    else:
        initial: dict[str, Any] = {"interval": request.GET.get("interval") or BillingInterval.MONTHLY}
        code = request.GET.get("plan")
        plan = Plan.objects.public().filter(code=code).first() if code else None
        initial["plan"] = (
            plan or Plan.objects.public().exclude(price_monthly=0).first() or Plan.objects.public().first()
        )
        form = SignupForm(initial=initial)
    plans = list(form.fields["plan"].queryset)  # type: ignore[attr-defined]
    return render(
        request,
        "lifecycle/signup.html",
        {"form": form, "cards": plan_cards(plans), "base_domain": settings.BASE_DOMAIN, "port": _port()},
    )


def _port() -> str:
    return "" if not settings.DEBUG or settings.PORT in (80, 443) else f":{settings.PORT}"


@require_GET
def signup_sent(request: HttpRequest) -> HttpResponse:
    hours = settings.LIFECYCLE_VERIFY_LINK_MAX_AGE // 3600
    return render(
        request, "lifecycle/signup_sent.html", {"email": request.session.get(SENT_EMAIL_KEY, ""), "hours": hours}
    )


@require_GET
def slug_suggest(request: HttpRequest) -> JsonResponse:
    """Live help for the signup form: ?company= → a free address; ?slug= → usable or why not."""
    if "slug" in request.GET:
        check = slug_check(request.GET["slug"][:60])
        return JsonResponse(
            {"slug": check.slug, "ok": check.ok, "message": check.message, "suggestion": check.suggestion}
        )
    return JsonResponse({"slug": slug_for_company(request.GET.get("company", "")[:200]), "ok": True})


# --- the link ----------------------------------------------------------------------------------
def _remember(request: HttpRequest, signup: Signup) -> None:
    ids = list(request.session.get(SESSION_KEY, []))
    if str(signup.pk) not in ids:
        ids = [*ids[-4:], str(signup.pk)]
    request.session[SESSION_KEY] = ids


def _owns(request: HttpRequest, signup_id: UUID | str) -> bool:
    return str(signup_id) in request.session.get(SESSION_KEY, [])


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest, key: str) -> HttpResponse:
    """GET shows a page that confirms by POST (mail scanners that open links do not use it
    up); browsers submit it at once by script."""
    if request.method == "GET":
        pending = signup_pending_for_key(key)
        if pending is not None:
            return render(request, "lifecycle/verify.html", {"signup": pending, "key": key})
    outcome, signup = signup_verify(key=key, request=request)
    if outcome == LinkOutcome.VERIFIED and signup is not None:
        _remember(request, signup)
        return redirect("lifecycle:signup-progress", signup_id=signup.pk)
    if outcome == LinkOutcome.USED and signup is not None and _owns(request, signup.pk):
        return redirect("lifecycle:signup-progress", signup_id=signup.pk)
    context: dict[str, Any] = {"outcome": outcome.value, "signup": signup, "key": key}
    if signup is not None and signup.tenant_id:
        context["workspace_login"] = workspace_url(tenant=signup.tenant, path="/accounts/login/")  # type: ignore[arg-type]
    status = 400 if outcome == LinkOutcome.INVALID else 410 if outcome == LinkOutcome.EXPIRED else 200
    return render(request, "lifecycle/link_problem.html", context, status=status)


@require_POST
def verify_resend(request: HttpRequest, key: str) -> HttpResponse:
    """A new link for the signup an expired link belonged to (same signup, same details)."""
    signup = signup_from_key(key, max_age=None)
    if signup is None or signup.status != SignupStatus.PENDING:
        return render(request, "lifecycle/link_problem.html", {"outcome": "invalid"}, status=400)
    if not ratelimit.consume(request, action="confirm_email", key=signup.email.lower()):
        return render(request, "lifecycle/rate_limited.html", {"what": "new links"}, status=429)
    signup_link_send.delay(str(signup.pk))
    request.session[SENT_EMAIL_KEY] = signup.email
    return redirect("lifecycle:signup-sent")


# --- progress ----------------------------------------------------------------------------------
def _signup_for(request: HttpRequest, signup_id: UUID) -> Signup:
    if not _owns(request, signup_id):
        raise Http404("Not your signup.")
    signup = Signup.objects.select_related("tenant", "plan", "user").filter(pk=signup_id).first()
    if signup is None:
        raise Http404("No such signup.")
    return signup


@require_GET
def progress(request: HttpRequest, signup_id: UUID) -> HttpResponse:
    signup = _signup_for(request, signup_id)
    return render(
        request,
        "lifecycle/progress.html",
        {
            "signup": signup,
            "status_url": reverse("lifecycle:signup-status", kwargs={"signup_id": signup.pk}),
            "slug_form": NewSlugForm(initial={"slug": slug_check(signup.slug).suggestion or signup.slug}),
            "host_suffix": f".{settings.BASE_DOMAIN}{_port()}",
        },
    )


@require_GET
def status(request: HttpRequest, signup_id: UUID) -> JsonResponse:
    """What the progress page polls. When the workspace is ready: where to go, with a fresh
    single-use hand-off token."""
    signup = _signup_for(request, signup_id)
    body: dict[str, Any] = {"state": signup.status, "slug": signup.slug}
    if signup.status == SignupStatus.READY and signup.tenant is not None:
        if handoff_allowed(signup):
            body["redirect"] = handoff_url(user=signup.user, tenant=signup.tenant)
        else:
            body["redirect"] = workspace_url(tenant=signup.tenant, path="/accounts/login/")
    elif signup.status == SignupStatus.NEEDS_SLUG:
        check = slug_check(signup.slug)
        body["message"] = f"The address “{signup.slug}” was taken while you were away."
        body["suggestion"] = check.suggestion or signup.slug
    elif signup.status == SignupStatus.FAILED:
        body["message"] = "We could not create your workspace. Nothing was charged; try again in a moment."
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def new_address(request: HttpRequest, signup_id: UUID) -> HttpResponse:
    signup = _signup_for(request, signup_id)
    form = NewSlugForm(request.POST)
    if form.is_valid():
        try:
            signup_slug_retry(signup=signup, slug=form.cleaned_data["slug"])
        except ValidationError as exc:
            from django.contrib import messages

            messages.error(request, " ".join(exc.messages))
    return redirect("lifecycle:signup-progress", signup_id=signup.pk)


@require_POST
def retry(request: HttpRequest, signup_id: UUID) -> HttpResponse:
    signup_retry(signup=_signup_for(request, signup_id))
    return redirect("lifecycle:signup-progress", signup_id=signup_id)
