"""django-allauth, fitted to two kinds of host.

- On a tenant host only its members sign in. A non-member with the right password is
  refused exactly like a wrong password (same message, counted as a failed attempt for the
  rate limit), so the form says nothing about who belongs to the tenant.
- The public host's sign-in is for staff; customers are told to use their workspace address.
- allauth's own signup page is closed: signing up makes a workspace (lifecycle's /signup/).
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm
from django.conf import settings
from django.http import HttpRequest

from tenants.models import Membership

WRONG_CREDENTIALS = "Please enter a correct email address and password. Note that both fields may be case-sensitive."
STAFF_ONLY = (
    "This sign-in is for staff. Customers sign in at their workspace address, "
    "e.g. https://your-workspace.{domain}/ — the welcome email names it."
)


def _tenant_of(request: HttpRequest | None) -> Any:
    return getattr(request, "tenant", None) if request is not None else None


def sign_in_allowed(*, request: HttpRequest | None, user: Any) -> bool:
    """May `user` sign in on this request's host? Tenant host: members only. Public host:
    staff only (customers have nothing there to sign in to)."""
    tenant = _tenant_of(request)
    if tenant is None:
        return True
    if tenant.kind == "customer":
        return Membership.objects.filter(user=user, tenant=tenant).exists()
    return bool(user.is_staff)


class AccountAdapter(DefaultAccountAdapter):
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "email_password_mismatch": WRONG_CREDENTIALS,
        "username_password_mismatch": WRONG_CREDENTIALS,
    }

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False  # signup goes through /signup/, which also makes the workspace

    def authenticate(self, request: HttpRequest, **credentials: Any) -> Any:
        user = super().authenticate(request, **credentials)
        if user is not None and not sign_in_allowed(request=request, user=user):
            # Counted like a wrong password, so probing memberships is rate limited too.
            self.authentication_failed(request, **credentials)
            return None
        return user

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        tenant = _tenant_of(request)
        if tenant is not None and tenant.kind != "customer" and request.user.is_staff:
            return "/admin/"
        return str(settings.LOGIN_REDIRECT_URL)


class SignInForm(LoginForm):
    """allauth's login form; also accepts `username` for the email (the field name of
    Django's sign-in form, which scripts and older bookmarks post)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        data = kwargs.get("data", args[0] if args else None)
        if data is not None and "login" not in data and "username" in data:
            data = data.copy()
            data["login"] = data["username"]
            if args:
                args = (data, *args[1:])
            else:
                kwargs["data"] = data
        super().__init__(*args, **kwargs)
        self.fields["login"].label = "Email"
        self.fields["login"].widget.attrs.update({"autofocus": True, "autocomplete": "email", "placeholder": ""})
        self.fields["password"].widget.attrs.update({"placeholder": ""})
