"""Forms of the workspace pages: input checks only (the services hold the rules)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from tenants.models import MemberRole
from workspace.models import ApiKeyScope
from workspace.selectors.usage import BREAKDOWNS, MAX_DAYS, METRICS

RANGES = {"7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days", "custom": "Custom range"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_characters(value: str) -> None:
    if _CONTROL.search(value or ""):
        raise ValidationError("Use printable characters only.")


class UsageFilterForm(forms.Form):
    """The usage page's query string. Bad values fall back to the defaults with a message."""

    metric = forms.ChoiceField(choices=[(k, m.label) for k, m in METRICS.items()], required=False)
    range = forms.ChoiceField(choices=list(RANGES.items()), required=False)
    breakdown = forms.ChoiceField(choices=[(k, f"By {v.lower()}" if k != "none" else "No breakdown")
                                           for k, v in BREAKDOWNS.items()], required=False)  # fmt: skip
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, today: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["metric"] = data.get("metric") or "queries"
        data["breakdown"] = data.get("breakdown") or "none"
        choice = data.get("range") or "30"
        data["range"] = choice
        if choice == "custom":
            start, end = data.get("start"), data.get("end")
            if start is None or end is None:
                raise ValidationError("A custom range needs both a start and an end date.")
            if end < start:
                raise ValidationError("The end date must not be before the start date.")
            if (end - start).days + 1 > MAX_DAYS:
                raise ValidationError(f"A custom range covers at most {MAX_DAYS} days.")
            if start > self.today:
                raise ValidationError("The range starts in the future; there is no usage there yet.")
        else:
            data["end"] = self.today
            data["start"] = self.today - timedelta(days=int(choice) - 1)
        return data

    def query(self) -> dict[str, str]:
        """The cleaned choice as query parameters (for the CSV link and the range buttons)."""
        data = self.cleaned_data
        params = {"metric": data["metric"], "breakdown": data["breakdown"], "range": data["range"]}
        if data["range"] == "custom":
            params.update(start=data["start"].isoformat(), end=data["end"].isoformat())
        return params


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True, validators=[_no_control_characters])
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )


def role_choices(*, for_owner: bool) -> list[tuple[str, str]]:
    """Owners may grant every role; admins every role but owner."""
    return [(value, label) for value, label in MemberRole.choices if for_owner or value != MemberRole.OWNER]


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=MemberRole.choices, initial=MemberRole.VIEWER)

    def __init__(self, *args: Any, for_owner: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(for_owner=for_owner)  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=MemberRole.choices)


class DepartmentForm(forms.Form):
    code = forms.CharField(
        max_length=100,
        label="Code",
        help_text="The value your product sends as the event's department property, e.g. legal.",
        validators=[_no_control_characters],
    )
    name = forms.CharField(max_length=100, validators=[_no_control_characters])
    monthly_budget_usd = forms.DecimalField(
        required=False,
        label="Monthly budget (USD)",
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text="Optional. You are alerted once per billing period when the department's cost passes it.",
    )


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[_no_control_characters])
    monthly_budget_usd = DepartmentForm.base_fields["monthly_budget_usd"]


class BillingEmailForm(forms.Form):
    billing_email = forms.EmailField(
        max_length=254,
        required=False,
        label="Billing email",
        help_text="Invoices and payment notices go here. Empty: they go to the workspace owner.",
    )


class WorkspaceNameForm(forms.Form):
    name = forms.CharField(max_length=200, label="Workspace name", validators=[_no_control_characters])


class PromptTemplateForm(forms.Form):
    prompt_template = forms.CharField(
        label="System prompt template",
        widget=forms.Textarea(attrs={"rows": 6}),
        strip=False,
        required=False,  # the length rule (1 to 8,000 characters) is the config's own, shown as its message
    )


class AcceptNewUserForm(forms.Form):
    """Accepting an invitation without an account: choose a password."""

    password1 = forms.CharField(label="Choose a password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Repeat the password", widget=forms.PasswordInput, strip=False)

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        one, two = data.get("password1"), data.get("password2")
        if one and two and one != two:
            raise ValidationError("The two passwords differ.")
        if one:
            from tenants.models import User

            validate_password(one, User(email=self.email, username=self.email))
        return data


class AcceptExistingUserForm(forms.Form):
    """Accepting an invitation with an existing account: prove it is yours."""

    password = forms.CharField(label="Your password", widget=forms.PasswordInput, strip=False)
