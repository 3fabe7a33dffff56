"""Staff admin for lifecycle records: provisioning attempts, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from lifecycle.models import ProvisioningAttempt


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
