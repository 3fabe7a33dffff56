"""Staff admin for lifecycle records (provisioning attempts, signups, cancellations, deletions;
read-only) and the *Tenant lifecycle* operations. The tenant admin's own plan change,
cancellation and reactivation are registered by lifecycle/admin_operations.py."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from lifecycle.models import (
    Cancellation,
    CancellationReason,
    LifecycleTenant,
    ProvisioningAttempt,
    Signup,
    TenantDeletion,
)
from lifecycle.plan_changes import plan_change, subscription_cancel, subscription_reactivate
from lifecycle.trials import MAX_EXTENSION_DAYS, trial_extend
from saasops.admin_base import ReadOnlyAdmin
from tenants.models import Plan, TenantEvent, User


@admin.register(ProvisioningAttempt)
class ProvisioningAttemptAdmin(admin.ModelAdmin):
    list_display = ["created_at", "slug", "outcome", "plan_code", "owner_email", "duration_ms", "tenant"]
    list_filter = ["outcome", "created_at"]
    list_select_related = ["tenant"]
    search_fields = ["slug", "key", "owner_email"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at",
        "key",
        "slug",
        "plan_code",
        "owner_email",
        "outcome",
        "error",
        "duration_ms",
        "tenant",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _staff(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the admin lets only signed-in staff in
    return request.user


@admin.register(Signup)
class SignupAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "email", "company", "slug", "plan", "interval", "status", "verified_at", "tenant"]
    list_filter = ["status", "plan", "created_at"]
    list_select_related = ["plan", "tenant"]
    search_fields = ["email", "company", "slug"]
    date_hierarchy = "created_at"
    exclude = ["password_hash"]


@admin.register(Cancellation)
class CancellationAdmin(ReadOnlyAdmin):
    """Why tenants leave: the churn reasons, filterable by reason and plan."""

    list_display = [
        "created_at",
        "tenant",
        "plan_code",
        "reason",
        "immediate",
        "effective_at",
        "actor_type",
        "reactivated_at",
    ]
    list_filter = ["reason", "plan_code", "immediate", "actor_type"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name", "tenant__slug", "comment"]
    date_hierarchy = "created_at"


@admin.register(TenantDeletion)
class TenantDeletionAdmin(ReadOnlyAdmin):
    list_display = ["deleted_at", "tenant", "schema_name", "members_removed"]


# --- staff operations: trials, plan changes (with billing), cancellation ----------------------------
class ExtendTrialForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=MAX_EXTENSION_DAYS, initial=7)
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))


class ChangePlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.available())
    interval = forms.ChoiceField(
        choices=[("", "unchanged"), ("monthly", "Monthly"), ("yearly", "Yearly")], required=False
    )
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))


class CancelForm(forms.Form):
    reason = forms.ChoiceField(choices=CancellationReason.choices)
    comment = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))
    immediate = forms.BooleanField(required=False, help_text="End now with a final invoice (default: at period end).")


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))


class TenantEventInline(admin.TabularInline):
    model = TenantEvent
    fields = ("created_at", "kind", "actor_type", "actor", "note", "details")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ["-created_at", "-id"]
    verbose_name_plural = "history"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantEvent]:
        return super().get_queryset(request).select_related("actor")


@admin.register(LifecycleTenant)
class LifecycleTenantAdmin(admin.ModelAdmin):
    """Staff lifecycle operations, each through a page that asks why; each calls one
    lifecycle service per tenant with `actor=_staff(request)`, so billing follows the change
    (proration, scheduled downgrade, final invoice) and the history records who did it."""

    list_display = ["name", "slug", "status", "plan", "billing_interval", "trial_ends_at"]
    list_filter = ["status", "plan"]
    search_fields = ["name", "slug"]
    list_select_related = ["plan"]
    readonly_fields = ("name", "slug", "status", "plan", "billing_interval", "trial_ends_at", "created_at")
    fields = readonly_fields
    actions = ["extend_trial", "change_plan", "cancel_subscription", "reactivate"]
    inlines = [TenantEventInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LifecycleTenant]:
        return super().get_queryset(request).filter(kind="customer")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("tenants.change_tenant"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("tenants.view_tenant"))

    def _operate(
        self,
        request: HttpRequest,
        queryset: QuerySet[LifecycleTenant],
        *,
        title: str,
        form_class: type[forms.Form],
        run: Any,
        done: str,
    ) -> HttpResponse | None:
        if "apply" in request.POST:
            form = form_class(request.POST)
            if form.is_valid():
                for tenant in queryset:
                    try:
                        run(tenant, form.cleaned_data)
                    except ValidationError as exc:
                        self.message_user(
                            request, f"{tenant.slug}: not done — {' '.join(exc.messages)}", messages.ERROR
                        )
                    else:
                        self.message_user(request, f"{tenant.slug}: {done}", messages.SUCCESS)
                return None
        else:
            form = form_class()
        return TemplateResponse(
            request,
            "lifecycle/admin_operation.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "opts": self.model._meta,
                "form": form,
                "tenants": queryset,
                "action": request.POST.get("action", ""),
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            },
        )

    @admin.action(description="Extend trial", permissions=["change"])
    def extend_trial(self, request: HttpRequest, queryset: QuerySet[LifecycleTenant]) -> HttpResponse | None:
        return self._operate(
            request, queryset, title="Extend trial", form_class=ExtendTrialForm, done="trial extended",
            run=lambda t, d: trial_extend(tenant=t, days=d["days"], actor=_staff(request), reason=d["reason"]),
        )  # fmt: skip

    @admin.action(description="Change plan (upgrade now / downgrade at period end)", permissions=["change"])
    def change_plan(self, request: HttpRequest, queryset: QuerySet[LifecycleTenant]) -> HttpResponse | None:
        return self._operate(
            request, queryset, title="Change plan", form_class=ChangePlanForm, done="plan change made",
            run=lambda t, d: plan_change(tenant=t, plan=d["plan"], interval=d["interval"] or None,
                                         actor=_staff(request), reason=d["reason"]),
        )  # fmt: skip

    @admin.action(description="Cancel subscription", permissions=["change"])
    def cancel_subscription(self, request: HttpRequest, queryset: QuerySet[LifecycleTenant]) -> HttpResponse | None:
        return self._operate(
            request, queryset, title="Cancel subscription", form_class=CancelForm, done="cancelled",
            run=lambda t, d: subscription_cancel(tenant=t, actor=_staff(request), reason=d["reason"],
                                                 comment=d["comment"], immediate=d["immediate"]),
        )  # fmt: skip

    @admin.action(description="Reactivate (undo a cancellation)", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[LifecycleTenant]) -> HttpResponse | None:
        return self._operate(
            request, queryset, title="Reactivate", form_class=ReasonForm, done="reactivated",
            run=lambda t, d: subscription_reactivate(tenant=t, actor=_staff(request), reason=d["reason"]),
        )  # fmt: skip


# The tenant admin's plan change, cancellation and reactivation (registered by import).
from lifecycle import admin_operations  # noqa: E402,F401
