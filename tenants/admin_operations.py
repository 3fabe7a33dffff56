"""Staff operations on tenants, each behind an intermediate page that asks why.

Suspend, reactivate, cancel and change plan work on one tenant (buttons on its page) or
many (list actions, which redirect here with the ids). Config change and rollback work on
one tenant. The views are thin: check permission, validate the operation's form, call its
service once per tenant with `actor=request.user` and the reason, and say per tenant what
happened or why not (a refusal changes nothing).

The operations are `TenantOperation`s in a registry. This module registers suspend and
reactivate (tenant status). Plan changes and cancellation carry billing — proration,
downgrades at period end, final invoices, cancellation reasons — which lives above this
layer (tenants ← metering ← billing ← lifecycle), so the lifecycle layer registers them
(lifecycle/admin_operations.py, with a reactivation that reopens billing), calling the same
services as the workspace's /plan/ page. Without them the actions are not offered.

Permissions: status and plan operations need `change_tenant`; config operations need
`add_tenantconfigversion` (see STAFF_GROUPS in tenants/services.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from tenants.config import CONFIG_KEYS, config_current_version, config_rollback, config_validate, config_version_create
from tenants.models import Tenant, TenantConfigVersion, TenantStatus, User
from tenants.revenue import money_format
from tenants.status import tenant_status_change, transition_allowed

S = TenantStatus


class TenantOperation:
    """A staff operation on tenants, run from its intermediate page (one or many tenants).

    `apply` does it for one tenant and returns the success message; a ValidationError is a
    refusal ("<tenant>: <not_done> — <why> Nothing changed."), so it must change nothing.
    `refusal` is what is known before asking (shown on the page, and the tenant page offers
    no button then); `outcome` says what will happen to a tenant that is not refused."""

    key: str = ""  # the URL part: /admin/tenants/tenant/operation/<key>/
    action: str = ""  # the list action's method name on TenantOperationsAdmin
    verb: str = ""  # page title "<verb> <tenants>"; the tenant page's button "<button>…"
    button: str = ""
    not_done: str = ""  # "not suspended", "plan not changed"
    submit_label: str = ""
    help: str = ""  # what the operation does, above its form
    dangerous: bool = False

    def form(self, data: Mapping[str, Any] | None, tenants: list[Tenant]) -> forms.Form:
        return ReasonForm(data)

    def refusal(self, tenant: Tenant) -> str | None:
        return None

    def outcome(self, tenant: Tenant) -> str:
        return ""

    def apply(self, tenant: Tenant, actor: User, data: dict[str, Any]) -> str:
        raise NotImplementedError


OPERATIONS: dict[str, TenantOperation] = {}


def operation_register(operation: TenantOperation) -> TenantOperation:
    """Offer `operation` in the tenant admin, replacing one registered under its key."""
    OPERATIONS[operation.key] = operation
    return operation


class StatusOperation(TenantOperation):
    """A change of the tenant's status alone (tenants.status)."""

    def __init__(
        self,
        key: str,
        verb: str,
        done: str,
        to: str,
        *,
        only_from: frozenset[str] | None = None,
        dangerous: bool = False,
    ) -> None:
        self.key = self.action = key
        self.verb = self.button = verb
        self.done = done
        self.not_done = f"not {done.lower()}"
        self.submit_label = f"{verb} now"
        self.to = to
        # Narrower than the state machine where the staff action means something narrower:
        # "reactivate" undoes a suspension or cancellation; it does not end a trial early
        # (lifecycle does that) or clear a payment problem (billing does that).
        self.only_from = only_from
        self.dangerous = dangerous

    def refusal(self, tenant: Tenant) -> str | None:
        """Why the tenant cannot take this operation, or None if it can."""
        status = tenant.status
        if self.only_from is not None and status not in self.only_from:
            allowed = " or ".join(S(s).label.lower() for s in sorted(self.only_from))
            return f"only a {allowed} tenant can be {self.done.lower()}; it is {S(status).label.lower()}"
        if not transition_allowed(status, self.to):
            return f"a {S(status).label.lower()} tenant cannot become {S(self.to).label.lower()}"
        return None

    def outcome(self, tenant: Tenant) -> str:
        return f"becomes {self.done.lower()}"

    def apply(self, tenant: Tenant, actor: User, data: dict[str, Any]) -> str:
        before = tenant.get_status_display().lower()
        refusal = self.refusal(tenant) if self.only_from is not None else None
        if refusal:
            raise ValidationError(f"{refusal}.")
        # Otherwise the state machine decides, and says why not in its own words.
        tenant_status_change(tenant=tenant, to=self.to, actor=actor, reason=data["reason"])
        return f"{self.done} {tenant_label(tenant)} (was {before}). Reason recorded: “{data['reason']}”."


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


# Status only. lifecycle/admin_operations.py adds change-plan and cancel, and replaces reactivate.
operation_register(StatusOperation("suspend", "Suspend", "Suspended", S.SUSPENDED, dangerous=True))
operation_register(
    StatusOperation(
        "reactivate", "Reactivate", "Reactivated", S.ACTIVE, only_from=frozenset({S.SUSPENDED, S.CANCELLED})
    )
)


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
        return self._to_operation("change-plan", queryset)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # An operation nobody registered (see the module's docstring) is not offered.
        offered = {op.action for op in OPERATIONS.values()}
        known = {"suspend", "reactivate", "cancel", "change_plan"}
        return {name: a for name, a in super().get_actions(request).items() if name not in known or name in offered}

    # -- buttons on the tenant page ---------------------------------------------------------

    def operation_links(self, request: HttpRequest, tenant: Tenant) -> list[dict[str, str]]:
        links: list[dict[str, str]] = []
        if self.has_change_permission(request, tenant):
            query = urlencode({"ids": tenant.pk, "back": "detail"})
            for key, op in OPERATIONS.items():
                if op.refusal(tenant) is None:
                    url = reverse("admin:tenants_tenant_operation", args=[key])
                    links.append(
                        {"label": f"{op.button}…", "url": f"{url}?{query}", "css": "danger" if op.dangerous else ""}
                    )
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
        op = OPERATIONS.get(operation)
        if op is None:
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
        form = op.form(request.POST if request.method == "POST" else None, tenants)
        if request.method == "POST" and form.is_valid():
            actor = staff_actor(request)
            for tenant in tenants:
                try:
                    with transaction.atomic():  # a refusal halfway leaves this tenant as it was
                        done = op.apply(tenant, actor, form.cleaned_data)
                except ValidationError as exc:
                    text = " ".join(exc.messages)
                    messages.error(request, f"{tenant_label(tenant)}: {op.not_done} — {text} Nothing changed.")
                else:
                    messages.success(request, done)
            return HttpResponseRedirect(back)
        count = f"{len(tenants)} tenants" if len(tenants) > 1 else tenant_label(tenants[0])
        rows = []
        for t in tenants:
            refusal = op.refusal(t)
            outcome = "" if refusal else op.outcome(t)
            rows.append({"tenant": t, "refusal": refusal, "outcome": outcome, "url": self._change_url(t)})
        context = self._context(
            request,
            f"{op.verb} {count}",
            form=form,
            rows=rows,
            operation=operation,
            show_outcome=any(row["refusal"] or row["outcome"] for row in rows),
            cancel_url=back,
            submit_label=op.submit_label,
            operation_help=op.help,
            danger=op.dangerous,
            single=tenants[0] if len(tenants) == 1 else None,
        )
        return TemplateResponse(request, "admin/tenants/tenant/operation.html", context)

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
