"""Who may do what in the workspace. One table, read by the views (to refuse with a 403
that says why) and by the templates (to hide what a role cannot use)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from tenants.models import MemberRole

OWNER, ADMIN, BILLING, VIEWER = MemberRole.OWNER, MemberRole.ADMIN, MemberRole.BILLING, MemberRole.VIEWER

# action -> (roles allowed, what the 403 page says the action is)
ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "view_billing": (frozenset({OWNER, ADMIN, BILLING}), "see the plan, payment method and invoices"),
    "edit_billing_email": (frozenset({OWNER, ADMIN, BILLING}), "change the billing email"),
    "manage_keys": (frozenset({OWNER, ADMIN}), "create or revoke API keys"),
    "manage_members": (frozenset({OWNER, ADMIN}), "invite, change or remove members"),
    "manage_departments": (frozenset({OWNER, ADMIN, BILLING}), "add departments or change their budgets"),
    "edit_settings": (frozenset({OWNER, ADMIN}), "change the workspace name or product settings"),
}


def can(role: str | None, action: str) -> bool:
    return role is not None and role in ACTIONS[action][0]


def capabilities(role: str | None) -> dict[str, bool]:
    """{action: allowed} for templates (`perms.manage_keys`)."""
    return {action: can(role, action) for action in ACTIONS}


def allowed_roles_text(action: str) -> str:
    names = [MemberRole(role).label.lower() for role in MemberRole.values if role in ACTIONS[action][0]]
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1] if names else "nobody"


def forbidden(request: HttpRequest, action: str) -> HttpResponse:
    """The 403 page: what was refused, the member's role, and who can do it."""
    membership = getattr(request, "membership", None)
    return render(
        request,
        "workspace/forbidden.html",
        {
            "what": ACTIONS[action][1],
            "role": membership.get_role_display() if membership else "",
            "allowed": allowed_roles_text(action),
        },
        status=403,
    )


View = Callable[..., HttpResponse]


def member_required(view: View) -> View:
    """Signed in (else to sign-in) and a member of this tenant. The membership middleware
    already turned non-members away with a 404; this guards hosts that are not a tenant."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "membership", None) is None:
            raise Http404("Not a workspace.")
        return view(request, *args, **kwargs)

    return wrapped


def role_required(action: str) -> Callable[[View], View]:
    """A member whose role may do `action`; anyone else gets the 403 page."""

    def decorate(view: View) -> View:
        @member_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not can(request.membership.role, action):  # type: ignore[attr-defined]
                return forbidden(request, action)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
