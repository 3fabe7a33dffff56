"""Staff admin for tenants, people and history."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from tenants.models import Domain, Membership, Tenant, TenantEvent, TenantKind, User


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class TenantEventInline(admin.TabularInline):
    model = TenantEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "actor_type", "actor", "note", "details")
    readonly_fields = ("created_at", "kind", "actor_type", "actor", "note", "details")
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "status", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["schema_name", "kind", "status", "status_changed_at", "created_at", "provisioning_key"]
    inlines = [DomainInline, MembershipInline, TenantEventInline]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).filter(kind=TenantKind.CUSTOMER)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["email", "username", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "username", "first_name", "last_name"]
    ordering = ["email"]


@admin.register(TenantEvent)
class TenantEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "kind", "actor_type", "actor"]
    list_filter = ["kind", "actor_type"]
    search_fields = ["tenant__slug", "tenant__name", "note"]
    readonly_fields = ["tenant", "kind", "actor_type", "actor", "note", "details", "created_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
