"""What every workspace page shares: the tenant, the member's role and what it allows."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants.models import Tenant, User
from workspace.models import WorkspaceSettings
from workspace.permissions import capabilities


def tenant_of(request: HttpRequest) -> Tenant:
    return request.tenant  # type: ignore[attr-defined,no-any-return]


def role_of(request: HttpRequest) -> str:
    return str(request.membership.role)  # type: ignore[attr-defined]


def user_of(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    base = {
        "tenant": tenant_of(request),
        "workspace": WorkspaceSettings.current(),
        "membership": membership,
        "perms": capabilities(membership.role),
    }
    return render(request, template, {**base, **(context or {})}, status=status)


def first_error(exc: Any) -> str:
    """A ValidationError's messages as one sentence for a flash message or form error."""
    messages = getattr(exc, "messages", None) or [str(exc)]
    return " ".join(str(m) for m in messages)


def errors_onto(form: Any, exc: Any) -> None:
    """A service's ValidationError onto the form: per field where it names one of the form's
    fields, else as a form-wide error (the form is then shown again with a 400)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, first_error(exc))
