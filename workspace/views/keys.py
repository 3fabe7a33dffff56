"""API keys: every member sees the list; owners and admins create and revoke."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from tenants.models import User
from workspace.forms import ApiKeyForm
from workspace.models import ApiKey
from workspace.permissions import can, forbidden, member_required, role_required
from workspace.services.keys import api_key_issue, api_key_withdraw
from workspace.views.common import page, role_of, tenant_of, user_of


def _keys_page(request: HttpRequest, form: ApiKeyForm, *, new_key: str = "", status: int = 200) -> HttpResponse:
    keys = list(ApiKey.objects.order_by("revoked_at", "-created_at"))
    creators = dict(
        User.objects.filter(pk__in={k.created_by_id for k in keys if k.created_by_id}).values_list("pk", "email")
    )
    response = page(
        request,
        "workspace/api_keys.html",
        {
            "form": form,
            "keys": [(key, creators.get(key.created_by_id or 0, "")) for key in keys],
            "new_key": new_key,
        },
        status=status,
    )
    if new_key:
        response["Cache-Control"] = "no-store"  # the raw key is on this page once; keep it out of caches
    return response


@member_required
def api_keys(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _keys_page(request, ApiKeyForm(initial={"scopes": ["read_usage"]}))
    if not can(role_of(request), "manage_keys"):
        return forbidden(request, "manage_keys")
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form, status=400)
    try:
        key, raw = api_key_issue(
            tenant=tenant_of(request), name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"],
            actor=user_of(request),
        )  # fmt: skip
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return _keys_page(request, form, status=400)
    # Rendered, not redirected: the raw key is never stored, not even in the session.
    messages.success(request, f"API key “{key.name}” created. Copy it now: it is shown only this once.")
    return _keys_page(request, ApiKeyForm(initial={"scopes": ["read_usage"]}), new_key=raw)


@require_POST
@role_required("manage_keys")
def api_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    if key.revoked_at is None:
        api_key_withdraw(tenant=tenant_of(request), key=key, actor=user_of(request))
        messages.success(request, f"API key “{key.name}” revoked. Requests with it are refused from now on.")
    return redirect("workspace:api-keys")
