"""Staff operations on tenants, each behind an intermediate page that asks why.

Suspend, reactivate, cancel and change plan work on one tenant (buttons on its page) or
many (list actions, which redirect here with the ids). Config change and rollback work on
one tenant. The views are thin: check permission, validate a form, call one service per
tenant with `actor=request.user` and the reason, and say per tenant what happened or why not.

Permissions: status and plan operations need `change_tenant`; config operations need
`add_tenantconfigversion` (see STAFF_GROUPS in tenants/services.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from tenants.config import CONFIG_KEYS, config_current_version, config_rollback, config_validate, config_version_create
from tenants.models import Plan, Tenant, TenantConfigVersion, TenantStatus, User
from tenants.revenue import money_format
from tenants.services import tenant_plan_change
from tenants.status import tenant_status_change, transition_allowed

S = TenantStatus


@dataclass(frozen=True)
class StatusOperation:
    verb: str
    done: str
    to: str
    # Narrower than the state machine where the staff action means something narrower:
    # "reactivate" undoes a suspension or cancellation; it does not end a trial early
    # (lifecycle does that) or clear a payment problem (billing does that).
    only_from: frozenset[str] | None = None
    dangerous: bool = False

    def refusal(self, status: str) -> str | None:
        """Why a tenant in `status` cannot take this operation, or None if it can."""
        if self.only_from is not None and status not in self.only_from:
            allowed = " or ".join(S(s).label.lower() for s in sorted(self.only_from))
            return f"only a {allowed} tenant can be {self.done.lower()}; it is {S(status).label.lower()}"
        if not transition_allowed(status, self.to):
            return f"a {S(status).label.lower()} tenant cannot become {S(self.to).label.lower()}"
        return None


STATUS_OPERATIONS: dict[str, StatusOperation] = {
    "suspend": StatusOperation("Suspend", "Suspended", S.SUSPENDED, dangerous=True),
    "reactivate": StatusOperation(
        "Reactivate", "Reactivated", S.ACTIVE, only_from=frozenset({S.SUSPENDED, S.CANCELLED})
    ),
    "cancel": StatusOperation("Cancel", "Cancelled", S.CANCELLED, dangerous=True),
}
PLAN_CHANGE = "change-plan"


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        help_text="Required. Recorded in the tenant's history together with your name.",
    )


class PlanChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        price = money_format(minor=obj.price_monthly, currency=obj.currency)
        return f"{obj.name} — {price} / month"


class PlanChangeForm(ReasonForm):
    plan = PlanChoiceField(
        queryset=Plan.objects.none(),
        label="New plan",
        help_text="Retired plans are not offered. Limits and the plan's config preset apply at once.",
    )
    field_order = ["plan", "reason"]

    def __init__(self, *args: Any, current: Plan | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plans = Plan.objects.available()
        if current is not None:
            plans = plans.exclude(pk=current.pk)
        self.fields["plan"].queryset = plans  # type: ignore[attr-defined]


def config_error_lines(exc: ValidationError) -> list[str]:
    """config_validate's errors as one line per key: "max_tokens: must be between 1 and 128000"."""
    if hasattr(exc, "error_dict"):
        return [f"{key}: {message}" for key, found in exc.message_dict.items() for message in found]
    return list(exc.messages)


class ConfigChangeForm(ReasonForm):
    overrides = forms.CharField(
        label="Overrides (JSON)",
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "class": "config-json", "spellcheck": "false"}),
        help_text="The complete set of overrides on top of the plan preset; {} means plan defaults only.",
    )
    field_order = ["overrides", "reason"]

    def __init__(self, *args: Any, current: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current

    def clean_overrides(self) -> dict[str, Any]:
        text = self.cleaned_data["overrides"]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        try:
            config_validate(value)
        except ValidationError as exc:
            raise ValidationError(config_error_lines(exc)) from exc
        if value == self.current:
            raise ValidationError("These are the current overrides: change a value, or cancel.")
        return value


def short_value(value: Any, limit: int = 60) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def changes_text(changes: dict[str, list[Any]]) -> str:
    """A version's {key: [old, new]} as "model: gpt-4o → gpt-4o-mini; max_tokens: 2048 → 4096"."""
    if not changes:
        return "no effective change"
    return "; ".join(f"{key}: {short_value(old)} → {short_value(new)}" for key, (old, new) in changes.items())


def staff_actor(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.is_staff:
        raise PermissionDenied
    return user


def tenant_label(tenant: Tenant) -> str:
    return f"{tenant.name} ({tenant.slug})"


class TenantOperationsAdmin(admin.ModelAdmin):
    """The operation views of the tenant admin; TenantAdmin (tenants/admin.py) builds on it."""

    def has_config_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tenants.add_tenantconfigversion")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("operation/<slug:operation>/", wrap(self.operation_view), name=f"{name}_operation"),
            path("<path:object_id>/config/", wrap(self.config_view), name=f"{name}_config"),
            path(
                "<path:object_id>/config/rollback/<int:version>/",
                wrap(self.rollback_view),
                name=f"{name}_config_rollback",
            ),
            *super().get_urls(),
        ]

    # -- list actions: redirect to the operation page with the selected ids ----------------

    def _to_operation(self, operation: str, queryset: QuerySet[Tenant]) -> HttpResponse:
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        url = reverse("admin:tenants_tenant_operation", args=[operation])
        return HttpResponseRedirect(f"{url}?{urlencode({'ids': ids})}")

    @admin.action(description="Suspend selected tenants…", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse:
        return self._to_operation("suspend", queryset)

    @admin.action(description="Reactivate selected tenants…", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse:
        return self._to_operation("reactivate", queryset)

    @admin.action(description="Cancel selected tenants…", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse:
        return self._to_operation("cancel", queryset)

    @admin.action(description="Change plan of selected tenants…", permissions=["change"])
    def change_plan(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse:
        return self._to_operation(PLAN_CHANGE, queryset)

    # -- buttons on the tenant page ---------------------------------------------------------

    def operation_links(self, request: HttpRequest, tenant: Tenant) -> list[dict[str, str]]:
        links: list[dict[str, str]] = []
        if self.has_change_permission(request, tenant):
            query = urlencode({"ids": tenant.pk, "back": "detail"})
            for key, op in STATUS_OPERATIONS.items():
                if op.refusal(tenant.status) is None:
                    url = reverse("admin:tenants_tenant_operation", args=[key])
                    links.append(
                        {"label": f"{op.verb}…", "url": f"{url}?{query}", "css": "danger" if op.dangerous else ""}
                    )
            url = reverse("admin:tenants_tenant_operation", args=[PLAN_CHANGE])
            links.append({"label": "Change plan…", "url": f"{url}?{query}", "css": ""})
        if self.has_config_permission(request):
            url = reverse("admin:tenants_tenant_config", args=[tenant.pk])
            links.append({"label": "Change config…", "url": url, "css": ""})
        return links

    # -- views ------------------------------------------------------------------------------

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "has_view_permission": self.has_view_permission(request),
            **extra,
        }

    def _customer(self, request: HttpRequest, object_id: str) -> Tenant:
        tenant = self.get_queryset(request).select_related("plan").filter(pk=object_id).first()
        if tenant is None:
            raise Http404("No such customer tenant.")
        return tenant

    def _change_url(self, tenant: Tenant) -> str:
        return reverse("admin:tenants_tenant_change", args=[tenant.pk])

    def operation_view(self, request: HttpRequest, operation: str) -> HttpResponse:
        status_op = STATUS_OPERATIONS.get(operation)
        if status_op is None and operation != PLAN_CHANGE:
            raise Http404("No such operation.")
        if not self.has_change_permission(request):
            raise PermissionDenied
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip().isdigit()]
        tenants = list(self.get_queryset(request).filter(pk__in=ids).select_related("plan"))
        changelist = reverse("admin:tenants_tenant_changelist")
        if not tenants:
            messages.warning(request, "No customer tenant was selected.")
            return HttpResponseRedirect(changelist)
        back = self._change_url(tenants[0]) if request.GET.get("back") == "detail" and len(tenants) == 1 else changelist
        form: ReasonForm
        if status_op is None:
            # One tenant: its own plan is no choice. Several: each one already on it is told so.
            form = PlanChangeForm(request.POST or None, current=tenants[0].plan if len(tenants) == 1 else None)
        else:
            form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            actor = staff_actor(request)
            for tenant in tenants:
                if status_op is not None:
                    self._status_apply(request, status_op, tenant, actor, form.cleaned_data["reason"])
                else:
                    self._plan_apply(request, tenant, actor, form.cleaned_data["plan"], form.cleaned_data["reason"])
            return HttpResponseRedirect(back)
        verb = status_op.verb if status_op else "Change plan of"
        count = f"{len(tenants)} tenants" if len(tenants) > 1 else tenant_label(tenants[0])
        rows = [
            {"tenant": t, "refusal": status_op.refusal(t.status) if status_op else None, "url": self._change_url(t)}
            for t in tenants
        ]
        context = self._context(
            request,
            f"{verb} {count}",
            form=form,
            rows=rows,
            operation=operation,
            status_op=status_op,
            cancel_url=back,
            submit_label=f"{status_op.verb} now" if status_op else "Change plan",
            danger=bool(status_op and status_op.dangerous),
            single=tenants[0] if len(tenants) == 1 else None,
        )
        return TemplateResponse(request, "admin/tenants/tenant/operation.html", context)

    def _status_apply(
        self, request: HttpRequest, op: StatusOperation, tenant: Tenant, actor: User, reason: str
    ) -> None:
        before = tenant.get_status_display().lower()
        refusal = op.refusal(tenant.status) if op.only_from is not None else None
        if refusal:
            messages.error(request, f"{tenant_label(tenant)}: not {op.done.lower()} — {refusal}. Nothing changed.")
            return
        try:
            tenant_status_change(tenant=tenant, to=op.to, actor=actor, reason=reason)
        except ValidationError as exc:
            text = " ".join(exc.messages)
            messages.error(request, f"{tenant_label(tenant)}: not {op.done.lower()} — {text} Nothing changed.")
            return
        messages.success(request, f"{op.done} {tenant_label(tenant)} (was {before}). Reason recorded: “{reason}”.")

    def _plan_apply(self, request: HttpRequest, tenant: Tenant, actor: User, plan: Plan, reason: str) -> None:
        old = tenant.plan.name if tenant.plan else "no plan"
        try:
            tenant_plan_change(tenant=tenant, plan=plan, actor=actor, reason=reason)
        except ValidationError as exc:
            text = " ".join(exc.messages)
            messages.error(request, f"{tenant_label(tenant)}: plan not changed — {text}")
            return
        messages.success(request, f"Moved {tenant_label(tenant)} from {old} to {plan.name}. Reason recorded.")

    def config_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_config_permission(request):
            raise PermissionDenied
        tenant = self._customer(request, object_id)
        current = config_current_version(tenant=tenant)
        overrides = dict(current.overrides) if current else {}
        form = ConfigChangeForm(
            request.POST or None, current=overrides, initial={"overrides": json.dumps(overrides, indent=2)}
        )
        if request.method == "POST" and form.is_valid():
            try:
                version = config_version_create(
                    tenant=tenant,
                    overrides=form.cleaned_data["overrides"],
                    actor=staff_actor(request),
                    note=form.cleaned_data["reason"],
                )
            except ValidationError as exc:
                form.add_error("overrides", config_error_lines(exc))
            else:
                summary = changes_text(version.changes)
                messages.success(
                    request, f"Saved config version {version.version} of {tenant_label(tenant)}: {summary}."
                )
                return HttpResponseRedirect(self._change_url(tenant))
        preset = tenant.plan.config_preset if tenant.plan else {}
        keys = [
            {
                "key": key,
                "help": spec.help,
                "kind": "whole number" if spec.kind is int else "text",
                "preset": short_value(preset.get(key)),
                "override": short_value(overrides[key]) if key in overrides else "",
            }
            for key, spec in CONFIG_KEYS.items()
        ]
        context = self._context(
            request,
            f"Change config of {tenant_label(tenant)}",
            crumb="Change config",
            form=form,
            single=tenant,
            keys=keys,
            current=current,
            cancel_url=self._change_url(tenant),
            submit_label="Save as new version",
        )
        return TemplateResponse(request, "admin/tenants/tenant/config_form.html", context)

    def rollback_view(self, request: HttpRequest, object_id: str, version: int) -> HttpResponse:
        if not self.has_config_permission(request):
            raise PermissionDenied
        tenant = self._customer(request, object_id)
        target = TenantConfigVersion.objects.filter(tenant=tenant, version=version).first()
        if target is None:
            raise Http404("No such config version.")
        current = config_current_version(tenant=tenant)
        if current is not None and current.pk == target.pk:
            messages.info(request, f"Version {version} is the current config of {tenant_label(tenant)}; nothing to do.")
            return HttpResponseRedirect(self._change_url(tenant))
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                created = config_rollback(
                    tenant=tenant,
                    to_version=version,
                    actor=staff_actor(request),
                    note=f"Rollback to version {version}: {form.cleaned_data['reason']}",
                )
            except ValidationError as exc:
                messages.error(request, f"{tenant_label(tenant)}: not rolled back — {' '.join(exc.messages)}")
            else:
                messages.success(
                    request,
                    f"Rolled {tenant_label(tenant)} back to the overrides of version {version}, "
                    f"saved as version {created.version}: {changes_text(created.changes)}.",
                )
            return HttpResponseRedirect(self._change_url(tenant))
        preset = tenant.plan.config_preset if tenant.plan else {}
        before = {**preset, **(current.overrides if current else {})}
        after = {**preset, **target.overrides}
        diff = [
            {"key": key, "before": short_value(before.get(key)), "after": short_value(after.get(key))}
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        ]
        context = self._context(
            request,
            f"Roll {tenant_label(tenant)} back to config version {version}",
            crumb="Roll back config",
            form=form,
            single=tenant,
            target=target,
            current=current,
            diff=diff,
            cancel_url=self._change_url(tenant),
            submit_label=f"Roll back to version {version}",
        )
        return TemplateResponse(request, "admin/tenants/tenant/config_rollback.html", context)
