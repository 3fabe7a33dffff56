"""Staff admin for tenants, people and history.

Tenants are created by provisioning (signup or `tenant_provision`), never here, and never
deleted here (that drops the customer's schema). Status, plan and config change only through
the operation pages in tenants/admin_operations.py, which call the services and record who
and why (plan change, cancellation and reactivation carry billing: the lifecycle layer
registers them there). Plans live in tenants/admin_plans.py, vector shards in
tenants/admin_shards.py.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from saasops.admin_base import ReadOnlyInline
from tenants.admin_operations import TenantOperationsAdmin, short_value
from tenants.config import config_effective
from tenants.models import (
    Domain,
    Membership,
    Tenant,
    TenantConfigVersion,
    TenantEvent,
    TenantKind,
    User,
)
from tenants.revenue import money_format, tenant_mrr_minor


def status_badge(status: str, label: str) -> SafeString:
    return format_html('<span class="status-badge status-{}">{}</span>', status, label)


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ["domain", "is_primary"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    verbose_name = "member"
    verbose_name_plural = "members"


class TenantConfigVersionInline(ReadOnlyInline):
    """Config history, newest first, each version with what it changed and a rollback link."""

    model = TenantConfigVersion
    verbose_name = "config version"
    verbose_name_plural = "config history"
    readonly_fields = ["version", "created_at", "by", "note", "changes_display", "rollback"]
    ordering = ["-version"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["version", "created_at", "by", "note", "changes_display"]
        if request.user.has_perm("tenants.add_tenantconfigversion"):
            fields.append("rollback")
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantConfigVersion]:
        newest = TenantConfigVersion.objects.filter(tenant=OuterRef("tenant")).order_by("-version").values("version")
        return super().get_queryset(request).select_related("created_by").annotate(newest=Subquery(newest[:1]))

    @admin.display(description="by")
    def by(self, obj: TenantConfigVersion) -> str:
        return str(obj.created_by) if obj.created_by else obj.actor_type

    @admin.display(description="changes")
    def changes_display(self, obj: TenantConfigVersion) -> SafeString | str:
        if not obj.changes:
            return "no effective change"
        return format_html(
            '<ul class="config-changes">{}</ul>',
            format_html_join(
                "",
                "<li><code>{}</code>: {} → <strong>{}</strong></li>",
                ((key, short_value(old), short_value(new)) for key, (old, new) in obj.changes.items()),
            ),
        )

    @admin.display(description="")
    def rollback(self, obj: TenantConfigVersion) -> SafeString | str:
        if obj.version == getattr(obj, "newest", None):
            return "current"
        url = reverse("admin:tenants_tenant_config_rollback", args=[obj.tenant_id, obj.version])
        return format_html('<a href="{}">Roll back to v{}…</a>', url, obj.version)


class TenantEventInline(ReadOnlyInline):
    model = TenantEvent
    verbose_name = "history event"
    verbose_name_plural = "lifecycle history (newest first)"
    fields = ["created_at", "kind", "actor_type", "actor", "note", "details_display"]
    readonly_fields = ["created_at", "kind", "actor_type", "actor", "note", "details_display"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantEvent]:
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="details")
    def details_display(self, obj: TenantEvent) -> str:
        return ", ".join(f"{key}: {short_value(value, 40)}" for key, value in obj.details.items())


class PlanFilter(admin.RelatedFieldListFilter):
    """By plan; tenants without one (none from provisioning) are listed under "No plan", not "-"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.empty_value_display = mark_safe("No plan")  # noqa: S308 - a constant


@admin.register(Tenant)
class TenantAdmin(TenantOperationsAdmin):
    list_display = ["name", "slug", "plan", "interval", "status_display", "mrr", "created_at"]
    list_filter = [("plan", PlanFilter), "status", "created_at"]
    list_select_related = ["plan"]
    search_fields = ["name", "slug", "memberships__user__email"]
    search_help_text = "Name, slug or a member's email (e.g. the owner's)."
    actions = ["suspend", "reactivate", "cancel", "change_plan"]
    inlines = [DomainInline, MembershipInline, TenantConfigVersionInline, TenantEventInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "status_display", "status_changed_at", "created_at"]}),
        ("Plan and revenue", {"fields": ["plan", "billing_interval", "mrr", "trial_ends_at"]}),
        ("Product config", {"fields": ["effective_config"]}),
        ("Infrastructure", {"fields": ["kind", "schema_name", "vector_shard", "provisioning_key"]}),
    ]
    # Only the name is edited in the form; everything else changes through a service.
    readonly_fields = [
        "slug",
        "status_display",
        "status_changed_at",
        "created_at",
        "plan",
        "billing_interval",
        "mrr",
        "trial_ends_at",
        "effective_config",
        "kind",
        "schema_name",
        "vector_shard",
        "provisioning_key",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).filter(kind=TenantKind.CUSTOMER)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        # Write the edited field only: a full save would put back a status or plan that a
        # service changed since this request loaded the row.
        obj.save(update_fields=["name"])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        tenant = self.get_queryset(request).filter(pk=object_id).first() if object_id.isdigit() else None
        extra = {**(extra_context or {}), "tenant_operations": self.operation_links(request, tenant) if tenant else []}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="interval", ordering="billing_interval")
    def interval(self, obj: Tenant) -> str:
        return obj.get_billing_interval_display()

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Tenant) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="MRR")
    def mrr(self, obj: Tenant) -> SafeString:
        currency = obj.plan.currency if obj.plan else "usd"
        return format_html(
            '<span class="money">{}</span>', money_format(minor=tenant_mrr_minor(tenant=obj), currency=currency)
        )

    @admin.display(description="effective config")
    def effective_config(self, obj: Tenant) -> SafeString:
        body = config_effective(tenant=obj)
        overridden = set(body["overridden"])
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (key, short_value(value, 80), "override" if key in overridden else "plan")
                for key, value in sorted(body["config"].items())
            ),
        )
        return format_html(
            '<table class="effective-config"><thead><tr><th>key</th><th>value</th><th>from</th></tr></thead>'
            '<tbody>{}</tbody></table><div class="help">The plan preset with the overrides of version {} on top '
            "(config history below).</div>",
            rows,
            body["version"],
        )


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["email", "username", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "username", "first_name", "last_name"]
    ordering = ["email"]


@admin.register(TenantEvent)
class TenantEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "kind", "actor_type", "actor", "note"]
    list_filter = ["kind", "actor_type", "created_at"]
    list_select_related = ["tenant", "actor"]
    search_fields = ["tenant__slug", "tenant__name", "note", "actor__email"]
    readonly_fields = ["tenant", "kind", "actor_type", "actor", "note", "details", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Registered by import: plans, vector shards, and platform tokens (when that module exists).
from tenants import admin_plans, admin_shards  # noqa: E402,F401

if importlib.util.find_spec("tenants.admin_tokens") is not None:
    from tenants import admin_tokens  # noqa: E402,F401
