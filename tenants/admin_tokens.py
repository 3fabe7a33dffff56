"""Staff admin for platform tokens: add (the token is shown once), list, revoke.

Tokens are never edited (only the name) and never deleted: a revoked token stays on record
with who made it and when it was last used.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.models import PlatformToken
from tenants.tokens import platform_token_create, platform_token_revoke

_DETAIL_FIELDS = ("name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")


@admin.register(PlatformToken)
class PlatformTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "created_by", "last_used_at", "active"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    actions = ["revoke_selected"]

    @admin.display(boolean=True, description="active", ordering="revoked_at")
    def active(self, obj: PlatformToken) -> bool:
        return obj.is_active

    def get_fields(self, request: HttpRequest, obj: PlatformToken | None = None) -> Any:
        return ["name"] if obj is None else list(_DETAIL_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: PlatformToken | None = None) -> Any:
        return [] if obj is None else list(_DETAIL_FIELDS[1:])

    def has_delete_permission(self, request: HttpRequest, obj: PlatformToken | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PlatformToken, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw = platform_token_create(name=form.cleaned_data["name"], actor=request.user)  # type: ignore[arg-type]
        # The admin goes on with `obj` (history entry, redirect): make it the saved row.
        obj.__dict__.update({k: v for k, v in token.__dict__.items() if k != "_state"})
        obj._state.adding, obj._state.db = False, token._state.db
        messages.warning(
            request,
            f"Platform token “{token.name}”: {raw} — copy it now, it will not be shown again.",
        )

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[PlatformToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            platform_token_revoke(token=token, actor=request.user)  # type: ignore[arg-type]
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s); they are refused from now on.", messages.SUCCESS)
