"""The tenant admin's plan change, cancellation and reactivation.

Registered into the tenant admin's operations (tenants/admin_operations.py), which cannot
call lifecycle itself (dependencies point one way: tenants ← metering ← billing ←
lifecycle). Each calls the lifecycle service the workspace's /plan/ page and the *Tenant
lifecycle* page call — `plan_change`, `subscription_cancel`, `subscription_reactivate`,
`trial_payment_method_added` — with the staff member as actor and their reason, so staff and
customers get the same billing: a prorated invoice for an upgrade, a downgrade at the period
end (refused while usage does not fit), a cancellation at the period end or now with a
FINAL invoice, the reason kept in Cancellation, everything in the tenant's history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from billing.models import BillingProfile, Invoice, Subscription
from lifecycle.models import CancellationReason
from lifecycle.plan_changes import plan_change, plan_change_blocked, subscription_cancel, subscription_reactivate
from lifecycle.trials import suspended_by_trial, trial_payment_method_added
from tenants.admin_operations import (
    PlanChoiceField,
    ReasonForm,
    StatusOperation,
    TenantOperation,
    operation_register,
    tenant_label,
)
from tenants.models import BillingInterval, Plan, Tenant, TenantStatus, User
from tenants.revenue import money_format

S = TenantStatus
REASON_RECORDED = "Reason recorded."


def _open_subscription(tenant: Tenant) -> Subscription | None:
    return Subscription.objects.filter(tenant=tenant, ended_at__isnull=True).first()


def _invoice_text(invoice: Invoice) -> str:
    return f"{invoice} ({money_format(minor=invoice.total, currency=invoice.currency)})"


# --- change plan -------------------------------------------------------------------------------
class StaffPlanChangeForm(ReasonForm):
    plan = PlanChoiceField(
        queryset=Plan.objects.none(),
        label="Plan",
        help_text="Retired plans are not offered. The tenant's own plan with another interval switches the "
        "interval; chosen as it is, it withdraws a scheduled downgrade.",
    )
    interval = forms.ChoiceField(
        label="Billing interval",
        choices=[("", "Keep the current interval"), *BillingInterval.choices],
        required=False,
    )
    field_order = ["plan", "interval", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = Plan.objects.available().order_by("sort_order", "price_monthly")  # type: ignore[attr-defined]


class ChangePlanOperation(TenantOperation):
    key = "change-plan"
    action = "change_plan"
    verb = "Change plan of"
    button = "Change plan"
    not_done = "plan not changed"
    submit_label = "Change plan"
    help = (
        "As on the customer's /plan/ page: an upgrade applies at once, with an invoice for the rest of the "
        "period prorated and finalized at once (nothing during a trial); a downgrade or an interval switch "
        "applies at the next period start, and a downgrade is refused while the tenant's members or storage "
        "do not fit the smaller plan."
    )

    def form(self, data: Mapping[str, Any] | None, tenants: list[Tenant]) -> forms.Form:
        return StaffPlanChangeForm(data)

    def refusal(self, tenant: Tenant) -> str | None:
        blocked = plan_change_blocked(tenant)
        return blocked.rstrip(".") if blocked else None

    def apply(self, tenant: Tenant, actor: User, data: dict[str, Any]) -> str:
        label, old = tenant_label(tenant), tenant.plan.name if tenant.plan else "no plan"
        plan: Plan = data["plan"]
        result = plan_change(
            tenant=tenant, plan=plan, interval=data["interval"] or None, actor=actor, reason=data["reason"]
        )
        if result.kind == "upgraded":
            charged = (
                f"Prorated invoice {_invoice_text(result.invoice)} issued."
                if result.invoice is not None
                else "Nothing is charged now (trial, or nothing due)."
            )
            return f"Upgraded {label} from {old} to {plan.name} now. {charged} {REASON_RECORDED}"
        if result.kind == "downgraded":
            return (
                f"{label}: {plan.name} from {result.effective_at:%d %B %Y} (the next period start), "
                f"{old} until then. {REASON_RECORDED}"
            )
        if data["interval"] and data["interval"] != tenant.billing_interval:
            return (
                f"{label}: billing switches to {data['interval']} on {result.effective_at:%d %B %Y} "
                f"(the next period start). {REASON_RECORDED}"
            )
        return f"{label}: the scheduled change is withdrawn; it stays on {plan.name}. {REASON_RECORDED}"


# --- cancel ------------------------------------------------------------------------------------
class StaffCancelForm(forms.Form):
    reason = forms.ChoiceField(
        label="Reason",
        choices=[("", "---------"), *CancellationReason.choices],
        help_text="Required. Kept for churn analysis (Cancellations).",
    )
    when = forms.ChoiceField(
        label="When",
        choices=[
            ("period_end", "At the end of the current period (billed as usual; Reactivate undoes it until then)"),
            ("now", "Now: the subscription ends, the period so far goes on a final invoice, finalized at once"),
        ],
        initial="period_end",
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        label="Note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Recorded in the tenant's history and with the cancellation, together with your name.",
    )


class CancelOperation(TenantOperation):
    key = "cancel"
    action = "cancel"
    verb = "Cancel"
    button = "Cancel"
    not_done = "not cancelled"
    submit_label = "Cancel subscription"
    dangerous = True
    help = (
        "As when the customer cancels: the subscription ends at the period end or now, with a final invoice for "
        "the period so far. A workspace with nothing billed (paused after a trial without a card) is cancelled "
        "now. Its data is kept for the retention period, then deleted."
    )

    def form(self, data: Mapping[str, Any] | None, tenants: list[Tenant]) -> forms.Form:
        return StaffCancelForm(data)

    def refusal(self, tenant: Tenant) -> str | None:
        return "it is already cancelled" if tenant.status == S.CANCELLED else None

    def outcome(self, tenant: Tenant) -> str:
        sub = _open_subscription(tenant)
        if sub is None:
            return "nothing is billed: cancelled now"
        if sub.cancel_at is not None:
            return f"already cancelled for {sub.cancel_at:%d %B %Y}: only “now” changes that"
        return ""

    def apply(self, tenant: Tenant, actor: User, data: dict[str, Any]) -> str:
        label, before = tenant_label(tenant), tenant.get_status_display().lower()
        result = subscription_cancel(
            tenant=tenant, actor=actor, reason=data["reason"], comment=data["note"], immediate=data["when"] == "now"
        )
        recorded = f"Reason recorded: {CancellationReason(data['reason']).label} — “{data['note']}”."
        tenant.refresh_from_db(fields=["status"])
        if tenant.status == S.CANCELLED:
            invoice = (
                f"Final invoice {_invoice_text(result.invoice)} issued."
                if result.invoice is not None
                else "Nothing was left to invoice."
            )
            return f"Cancelled {label} now (was {before}). {invoice} {recorded}"
        return (
            f"{label}: cancelled for the end of the current period, {result.effective_at:%d %B %Y}; billed as "
            f"usual until then (Reactivate undoes it). {recorded}"
        )


# --- reactivate --------------------------------------------------------------------------------
class ReactivateOperation(TenantOperation):
    """Undo a cancellation (scheduled, or taken effect: billed again from now) or lift a
    suspension. A suspension by a trial that ended without a card is lifted as saving a card
    does (billing from now, first invoice at once), and only once there is a card."""

    key = action = "reactivate"
    verb = button = "Reactivate"
    not_done = "not reactivated"
    submit_label = "Reactivate now"
    help = (
        "A cancelled tenant becomes active on a new subscription billed from now; a scheduled cancellation is "
        "withdrawn (the subscription goes on); a suspended tenant becomes active. A tenant paused because its "
        "trial ended without a card resumes when a card is saved (billed from then)."
    )
    lift_suspension = StatusOperation(
        "reactivate", "Reactivate", "Reactivated", S.ACTIVE, only_from=frozenset({S.SUSPENDED})
    )

    def refusal(self, tenant: Tenant) -> str | None:
        if tenant.status == S.SUSPENDED:
            if suspended_by_trial(tenant) and not self._has_card(tenant):
                return "its trial ended without a payment method; it resumes when the customer saves a card"
            return None
        if tenant.status == S.CANCELLED:
            return None
        sub = _open_subscription(tenant)
        if sub is not None and sub.cancel_at is not None:
            return None
        return (
            "only a cancelled or suspended tenant, or one with a cancellation scheduled, can be reactivated; "
            f"it is {tenant.get_status_display().lower()}"
        )

    def outcome(self, tenant: Tenant) -> str:
        if tenant.status == S.CANCELLED:
            return "becomes active, billed from now"
        if tenant.status == S.SUSPENDED:
            return "becomes active, billed from now" if suspended_by_trial(tenant) else "becomes active"
        return "the scheduled cancellation is withdrawn"

    @staticmethod
    def _has_card(tenant: Tenant) -> bool:
        profile = BillingProfile.objects.filter(tenant=tenant).first()
        return profile is not None and profile.has_payment_method

    def apply(self, tenant: Tenant, actor: User, data: dict[str, Any]) -> str:
        label, before, reason = tenant_label(tenant), tenant.get_status_display().lower(), data["reason"]
        was_cancelled = tenant.status == S.CANCELLED
        refusal = self.refusal(tenant)
        if refusal:
            raise ValidationError(f"{refusal}.")
        recorded = f"Reason recorded: “{reason}”."
        if tenant.status == S.SUSPENDED and suspended_by_trial(tenant):
            if trial_payment_method_added(tenant, actor=actor, reason=reason) != "reactivated":
                raise ValidationError("it is no longer suspended by its trial.")
            return f"Reactivated {label} (was {before}), billed from now. {recorded}"
        if tenant.status == S.SUSPENDED:
            return self.lift_suspension.apply(tenant, actor, data)
        subscription_reactivate(tenant=tenant, actor=actor, reason=reason)
        if was_cancelled:
            return f"Reactivated {label} (was {before}) on a new subscription billed from now. {recorded}"
        return f"{label}: the scheduled cancellation is withdrawn; the subscription goes on. {recorded}"


operation_register(ChangePlanOperation())
operation_register(CancelOperation())
operation_register(ReactivateOperation())
