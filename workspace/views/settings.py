"""Settings: the workspace's name, billing email and the product settings it may change,
with the history of every config version."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from billing.models import BillingProfile
from workspace.forms import BillingEmailForm, PromptTemplateForm, WorkspaceNameForm
from workspace.permissions import can, forbidden, member_required
from workspace.selectors.settings import config_history, editable_config
from workspace.services.settings import prompt_template_set, workspace_rename
from workspace.views.billing import billing_email_post
from workspace.views.common import first_error, page, role_of, tenant_of, user_of

ACTIONS = {"name": "edit_settings", "billing_email": "edit_billing_email", "prompt": "edit_settings"}


@member_required
def settings_page(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    config = editable_config(tenant=tenant)
    profile = BillingProfile.objects.filter(tenant=tenant).first()
    forms = {
        "name": WorkspaceNameForm(initial={"name": tenant.name}),
        "billing_email": BillingEmailForm(initial={"billing_email": profile.billing_email if profile else ""}),
        "prompt": PromptTemplateForm(initial={"prompt_template": config["prompt_template"]["value"]}),
    }
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action not in ACTIONS:
            return redirect("workspace:settings")
        if not can(role_of(request), ACTIONS[action]):
            return forbidden(request, ACTIONS[action])
        if action == "billing_email":
            forms["billing_email"], saved = billing_email_post(request)
        else:
            forms[action], saved = _save(request, action)
        if saved:
            return redirect("workspace:settings")
        status = 400
    return page(
        request,
        "workspace/settings.html",
        {
            "forms": forms,
            "config": config,
            "history": config_history(tenant=tenant),
            "billing_email": profile.billing_email if profile else "",
        },
        status=status,
    )


def _save(request: HttpRequest, action: str) -> tuple[WorkspaceNameForm | PromptTemplateForm, bool]:
    tenant, actor = tenant_of(request), user_of(request)
    form: WorkspaceNameForm | PromptTemplateForm
    if action == "name":
        form = WorkspaceNameForm(request.POST)
        if not form.is_valid():
            return form, False
        try:
            workspace_rename(tenant=tenant, name=form.cleaned_data["name"], actor=actor)
        except ValidationError as exc:
            form.add_error("name", first_error(exc))
            return form, False
        messages.success(request, "Workspace name saved.")
        return form, True
    form = PromptTemplateForm(request.POST)
    if not form.is_valid():
        return form, False
    try:
        version = prompt_template_set(tenant=tenant, template=form.cleaned_data["prompt_template"], actor=actor)
    except ValidationError as exc:
        messages_for = exc.message_dict.get("prompt_template") if hasattr(exc, "error_dict") else None
        form.add_error("prompt_template", " ".join(messages_for or exc.messages))
        return form, False
    messages.success(
        request, f"Prompt template saved as config version {version.version}." if version else "No change to save."
    )
    return form, True
