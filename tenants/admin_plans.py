"""Staff admin for plans (tiers) and their limits. Finance edits these; support reads them."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.db.models import Count, Model, ProtectedError, Q, QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tenants.models import Plan, PlanLimit
from tenants.revenue import money_format


class DeleteWhileInUseGuard(admin.ModelAdmin):
    """Refuses, with a message, to delete rows tenants still point at (on_delete=PROTECT),
    instead of Django's list of protected objects or, in a race, a server error."""

    in_use_hint = ""

    def tenants_using(self, obj: Any) -> int:
        return obj.tenants.filter(kind="customer").count()

    def _refusal(self, obj: Model, count: int) -> str:
        noun = "tenant is" if count == 1 else "tenants are"
        return f"“{obj}” cannot be deleted: {count} {noun} on it. {self.in_use_hint}".strip()

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        back = HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        if obj is not None:
            back = HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
            )
            count = self.tenants_using(obj)
            if count:
                messages.error(request, self._refusal(obj, count))
                return back
        try:
            return super().delete_view(request, object_id, extra_context)
        except ProtectedError:
            messages.error(request, f"“{obj}” cannot be deleted: tenants were put on it meanwhile. {self.in_use_hint}")
            return back

    def delete_unused(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        refused = [(obj, n) for obj in queryset if (n := self.tenants_using(obj))]
        for obj, count in refused:
            messages.error(request, self._refusal(obj, count))
        return None if refused else delete_selected(self, request, queryset)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The stock "delete selected" checks the rows first, so it never lists protected tenants.
        actions: dict[str, Any] = super().get_actions(request)
        stock = actions.get("delete_selected")
        if stock is not None:
            actions["delete_selected"] = (DeleteWhileInUseGuard.delete_unused, stock[1], stock[2])
        return actions


class PrettyJSONField(forms.JSONField):
    """Indented JSON in the form, so a preset reads as one key a line."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, cls=self.encoder)


class PlanLimitInline(admin.TabularInline):
    model = PlanLimit
    extra = 0
    fields = ["resource", "included", "on_exceed", "overage_package_size", "overage_package_price"]


class RetiredFilter(admin.SimpleListFilter):
    title = "retired"
    parameter_name = "retired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Current"), ("yes", "Retired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Plan]) -> QuerySet[Plan]:
        if self.value() == "no":
            return queryset.filter(retired_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(retired_at__isnull=False)
        return queryset


@admin.register(Plan)
class PlanAdmin(DeleteWhileInUseGuard):
    list_display = ["name", "code", "monthly", "yearly", "trial_days", "is_public", "tenant_count", "retired"]
    list_filter = [RetiredFilter, "is_public", "is_custom"]
    search_fields = ["name", "code"]
    actions = ["retire", "unretire"]
    inlines = [PlanLimitInline]
    readonly_fields = ["prices_shown", "retired_at", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "code", "description", "sort_order", "is_public", "is_custom"]}),
        ("Prices", {"fields": ["currency", "price_monthly", "price_yearly", "prices_shown", "trial_days"]}),
        ("Product config preset", {"fields": ["config_preset"]}),
        ("Retirement", {"fields": ["retired_at", "created_at"]}),
    ]
    in_use_hint = "Retire it instead: it disappears from signup and its tenants keep it."

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "config_preset":
            kwargs["form_class"] = PrettyJSONField
            kwargs["widget"] = forms.Textarea(attrs={"rows": 10, "cols": 80, "class": "config-json"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Plan]:
        return super().get_queryset(request).annotate(n_tenants=Count("tenants", filter=Q(tenants__kind="customer")))

    @admin.display(description="monthly", ordering="price_monthly")
    def monthly(self, obj: Plan) -> SafeString:
        return format_html(
            '<span class="money">{}</span>', money_format(minor=obj.price_monthly, currency=obj.currency)
        )

    @admin.display(description="yearly", ordering="price_yearly")
    def yearly(self, obj: Plan) -> SafeString:
        return format_html('<span class="money">{}</span>', money_format(minor=obj.price_yearly, currency=obj.currency))

    @admin.display(description="tenants", ordering="n_tenants")
    def tenant_count(self, obj: Plan) -> SafeString:
        url = reverse("admin:tenants_tenant_changelist") + f"?plan__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "n_tenants", 0))

    @admin.display(description="retired", ordering="retired_at")
    def retired(self, obj: Plan) -> SafeString | str:
        if obj.retired_at is None:
            return ""
        return format_html(
            '<span class="status-badge status-cancelled">Retired</span> {}', obj.retired_at.date().isoformat()
        )

    @admin.display(description="as customers see them")
    def prices_shown(self, obj: Plan) -> str:
        if obj.pk is None:
            return "—"
        monthly = money_format(minor=obj.price_monthly, currency=obj.currency)
        yearly = money_format(minor=obj.price_yearly, currency=obj.currency)
        return f"{monthly} / month, or {yearly} / year ({obj.yearly_discount_percent}% off 12 × monthly)"

    # Retiring is one timestamp with no rule attached (tenant_provision and tenant_plan_change
    # check it), so the action writes it directly; LogEntry records who did it.
    @admin.action(description="Retire selected plans (hide from new customers)", permissions=["change"])
    def retire(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        plans = list(queryset.filter(retired_at__isnull=True))
        Plan.objects.filter(pk__in=[p.pk for p in plans]).update(retired_at=timezone.now())
        for plan in plans:
            self.log_change(request, plan, "Retired")
        if plans:
            names = ", ".join(p.name for p in plans)
            messages.success(request, f"Retired {names}: no longer offered; tenants on them keep their plan.")
        else:
            messages.info(request, "The selected plans were already retired.")

    @admin.action(description="Un-retire selected plans (offer again)", permissions=["change"])
    def unretire(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        plans = list(queryset.filter(retired_at__isnull=False))
        Plan.objects.filter(pk__in=[p.pk for p in plans]).update(retired_at=None)
        for plan in plans:
            self.log_change(request, plan, "Un-retired")
        if plans:
            messages.success(request, f"Offered again: {', '.join(p.name for p in plans)}.")
        else:
            messages.info(request, "None of the selected plans was retired.")
