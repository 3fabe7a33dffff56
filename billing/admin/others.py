"""Credit notes, billing profiles, coupons, discounts and subscriptions in admin."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from billing.admin.common import (
    credit_deductions_text,
    money_cell,
)
from billing.models import (
    BillingProfile,
    Coupon,
    CreditNote,
    Discount,
    Subscription,
)
from saasops.admin_base import ReadOnlyAdmin

# -- the rest of billing -----------------------------------------------------------------------


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    """Issued from an invoice's page (credit_note_issue); never edited or deleted."""

    list_display = ["number", "invoice", "tenant", "amount_display", "reason", "created_by", "created_at", "deducted"]
    list_select_related = ["invoice__tenant", "created_by"]
    search_fields = ["number", "invoice__number", "invoice__tenant__name", "invoice__tenant__slug"]
    list_filter = ["created_at"]

    @admin.display(description="tenant", ordering="invoice__tenant__name")
    def tenant(self, obj: CreditNote) -> str:
        return obj.invoice.tenant.name

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: CreditNote) -> SafeString | str:
        return money_cell(obj.amount, obj.invoice.currency)

    @admin.display(description="deducted from")
    def deducted(self, obj: CreditNote) -> str:
        return credit_deductions_text(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CreditNote]:
        return super().get_queryset(request).prefetch_related("applications__invoice")


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    """Made with the subscription; finance sets where invoices go, tax, and auto-approval."""

    list_display = ["tenant", "billing_email", "tax_display", "auto_approve", "payment_method_label", "updated_at"]
    list_filter = ["auto_approve"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name", "tenant__slug", "billing_email"]
    fields = [
        "tenant",
        "billing_email",
        "tax_rate",
        "auto_approve",
        "payment_method_label",
        "stripe_customer_id",
        "updated_at",
    ]
    readonly_fields = ["tenant", "payment_method_label", "stripe_customer_id", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="tax", ordering="tax_rate")
    def tax_display(self, obj: BillingProfile) -> str:
        return f"{(obj.tax_rate * 100).normalize():f}%"


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "off", "duration", "active", "tenants", "created_at"]
    list_filter = ["active"]
    search_fields = ["code", "name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Coupon]:
        return super().get_queryset(request).annotate(tenant_count=Count("discounts"))

    @admin.display(description="off the plan fee")
    def off(self, obj: Coupon) -> str:
        if obj.percent_off is not None:
            return f"{obj.percent_off.normalize():f}%"
        return f"{obj.amount_off or 0:,} in minor units"

    @admin.display(description="duration")
    def duration(self, obj: Coupon) -> str:
        if obj.duration_periods is None:
            return "forever"
        return f"{obj.duration_periods} period{'s' if obj.duration_periods != 1 else ''}"

    @admin.display(description="tenants", ordering="tenant_count")
    def tenants(self, obj: Coupon) -> int:
        return getattr(obj, "tenant_count", 0)


@admin.register(Discount)
class DiscountAdmin(admin.ModelAdmin):
    list_display = ["tenant", "coupon", "starts_at", "periods_used", "created_at"]
    list_select_related = ["tenant", "coupon"]
    search_fields = ["tenant__name", "tenant__slug", "coupon__code"]
    autocomplete_fields = ["tenant", "coupon"]
    readonly_fields = ["periods_used", "created_at"]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Changed only by lifecycle services (trial end, plan change, cancel)."""

    list_display = [
        "tenant",
        "plan",
        "interval",
        "status",
        "billing_starts_at",
        "invoiced_through",
        "cancel_at",
        "ended_at",
    ]
    list_filter = ["status", "interval", "plan"]
    list_select_related = ["tenant", "plan"]
    search_fields = ["tenant__name", "tenant__slug"]
    ordering = ["tenant__name"]


# Payments (Stripe events, attempts, dunning) register themselves when that module exists.
if importlib.util.find_spec("billing.admin_payments") is not None:
    importlib.import_module("billing.admin_payments")
