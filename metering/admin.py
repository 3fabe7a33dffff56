"""Staff admin for metering: meters, the price book (append-only), events, alerts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from metering.models import Meter, PriceBookEntry, UsageAlert, UsageEvent
from metering.pricing import price_book_changed


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "event_type", "aggregation", "property", "unit", "resource", "is_active"]
    list_filter = ["event_type", "aggregation", "is_active"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Meter | None = None) -> list[str]:
        # What a meter counts is fixed once it exists: changing it would rewrite history.
        return ["code", "event_type", "aggregation", "property"] if obj else []


@admin.register(PriceBookEntry)
class PriceBookEntryAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "provider",
        "input_per_million",
        "output_per_million",
        "effective_from",
        "created_by",
        "note",
    ]
    list_filter = ["provider", "model"]
    search_fields = ["model", "note"]
    date_hierarchy = "effective_from"
    readonly_fields = ["created_by", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Append-only: a new price is a new entry with its own effective date.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: PriceBookEntry, form: Any, change: bool) -> None:
        obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        price_book_changed()


class UnpricedFilter(admin.SimpleListFilter):
    title = "pricing"
    parameter_name = "priced"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Unpriced (no price for the model)"), ("yes", "Priced")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(unpriced=True)
        if self.value() == "yes":
            return queryset.filter(unpriced=False)
        return queryset


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "tenant", "event_type", "event_id", "model", "input_tokens", "output_tokens",
                    "cost", "unpriced", "late"]  # fmt: skip
    list_filter = [UnpricedFilter, "late", "event_type"]
    search_fields = ["event_id", "model", "tenant__slug"]
    list_select_related = ["tenant"]
    show_full_result_count = False  # the table is large: no COUNT(*) of all rows per page
    date_hierarchy = "timestamp"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        unpriced = UsageEvent.objects.filter(unpriced=True).values("model").annotate(n=Count("id")).order_by("-n")[:10]
        for row in unpriced:
            messages.warning(
                request,
                f"{row['n']:,} events for model “{row['model'] or '(none)'}” have no price: add a price book entry.",
            )
        return super().changelist_view(request, extra_context)


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "meter", "threshold", "used", "included", "period_start", "emailed_to"]
    list_filter = ["threshold", "meter"]
    search_fields = ["tenant__slug", "tenant__name"]
    list_select_related = ["tenant", "meter"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
