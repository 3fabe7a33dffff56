"""Sign-in by email address, and the rule that a tenant host admits only its members."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest


class EmailBackend(ModelBackend):
    """Authenticates with the email address (case-insensitive) in the username field."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if not username or not password:
            return None
        model = get_user_model()
        user = model.objects.filter(email__iexact=username.strip()).first()
        if user is None:
            model().set_password(password)  # same work as a real check: no timing oracle
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


class SignInForm(AuthenticationForm):
    """On a tenant host, only members of that tenant may sign in — and a non-member sees
    the same message as a wrong password, so the form reveals nothing about the tenant."""

    username = forms.CharField(
        label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        tenant = getattr(self.request, "tenant", None)
        if tenant is not None and tenant.kind == "customer":
            from tenants.selectors import membership_get

            if membership_get(user=user, tenant=tenant) is None:
                raise self.get_invalid_login_error()
        elif tenant is not None and not user.is_staff:
            # The public host's sign-in is for staff (admin); customers use their workspace host.
            from tenants.models import Membership

            first = Membership.objects.filter(user=user).select_related("tenant").first()
            hint = f" Sign in at your workspace address, e.g. {first.tenant.slug}.<host>." if first else ""
            raise forms.ValidationError("This sign-in is for staff." + hint, code="not_staff")
