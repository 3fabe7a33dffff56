"""Forms of the signup and of the workspace's plan page. They check input only; the
services in lifecycle/ decide."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from lifecycle.models import CancellationReason
from lifecycle.signup import slug_check
from tenants.models import BillingInterval, Plan, User


class PlanRadio(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.name)


class SignupForm(forms.Form):
    email = forms.EmailField(
        label="Work email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters; not only digits, not a common password.",
    )
    company = forms.CharField(
        label="Company name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "organization"})
    )
    slug = forms.CharField(
        label="Workspace address",
        max_length=40,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"}),
    )
    plan = PlanRadio(queryset=Plan.objects.none(), empty_label=None, widget=forms.RadioSelect)
    interval = forms.ChoiceField(
        choices=BillingInterval.choices, initial=BillingInterval.MONTHLY, widget=forms.RadioSelect
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.public().prefetch_related("limits")  # type: ignore[attr-defined]
        self.slug_suggestion = ""

    def clean_slug(self) -> str:
        check = slug_check(self.cleaned_data["slug"])
        if not check.ok:
            self.slug_suggestion = check.suggestion
            raise ValidationError(f"{check.message} How about “{check.suggestion}”?", code="slug")
        return check.slug

    def clean_company(self) -> str:
        company = self.cleaned_data["company"].strip()
        if not company:
            raise ValidationError("Tell us your company's name.")
        return company

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            # Checked against a throw-away user: the similarity check must not tell whether
            # the email has an account.
            probe = User(username=cleaned.get("email", ""), email=cleaned.get("email", ""))
            try:
                validate_password(password, user=probe)
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class NewSlugForm(forms.Form):
    slug = forms.CharField(label="Workspace address", max_length=40)


class PlanChangeForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.none(), empty_label=None, widget=forms.RadioSelect)
    interval = forms.ChoiceField(choices=BillingInterval.choices, widget=forms.RadioSelect)

    def __init__(self, *args: Any, current: Plan | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plans = Plan.objects.public()
        if current is not None:
            plans = Plan.objects.filter(pk__in=list(plans.values_list("pk", flat=True)) + [current.pk])
        self.fields["plan"].queryset = plans.order_by("sort_order", "price_monthly")  # type: ignore[attr-defined]


class CancelForm(forms.Form):
    reason = forms.ChoiceField(
        label="Why are you cancelling?", choices=CancellationReason.choices, widget=forms.RadioSelect
    )
    comment = forms.CharField(label="Anything else we should know? (optional)", required=False, max_length=2000,
                              widget=forms.Textarea(attrs={"rows": 3}))  # fmt: skip
    when = forms.ChoiceField(
        choices=[("period_end", "At the end of the billing period"), ("now", "Now — final invoice today")],
        initial="period_end",
        widget=forms.RadioSelect,
    )
