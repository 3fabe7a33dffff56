"""Members: everyone sees who is in the workspace; owners and admins invite, change roles
and remove. Invitations are accepted on the tenant's host, signed out."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from tenants.models import MemberRole, User
from workspace.forms import AcceptExistingUserForm, AcceptNewUserForm, InviteForm, RoleForm, role_choices
from workspace.models import Invitation
from workspace.permissions import can, forbidden, member_required, role_required
from workspace.selectors.members import member_get, members_list, owner_count, pending_invitations, seats_summary
from workspace.services.members import (
    InvitationInvalid,
    SeatsFull,
    invitation_accept,
    invitation_create,
    invitation_lookup,
    invitation_revoke,
    member_remove,
    member_role_change,
)
from workspace.views.common import errors_onto, first_error, page, role_of, tenant_of, user_of


def _members_page(request: HttpRequest, form: InviteForm | None = None, *, status: int = 200) -> HttpResponse:
    tenant = tenant_of(request)
    now = timezone.now()
    is_owner = role_of(request) == MemberRole.OWNER
    invitations = list(pending_invitations(now=now).order_by("-created_at"))
    inviters = dict(User.objects.filter(pk__in={i.invited_by_id for i in invitations}).values_list("pk", "email"))
    seats = seats_summary(tenant=tenant, now=now)
    return page(
        request,
        "workspace/members.html",
        {
            "members": members_list(tenant=tenant),
            "invitations": [
                (inv, MemberRole(inv.role).label, inviters.get(inv.invited_by_id or 0, "")) for inv in invitations
            ],
            "seats": seats,
            "form": form or InviteForm(for_owner=is_owner),
            "role_choices": role_choices(for_owner=is_owner),
            "is_owner": is_owner,
            "last_owner": owner_count(tenant=tenant) <= 1,
        },
        status=status,
    )


@member_required
def members(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _members_page(request)
    if not can(role_of(request), "manage_members"):
        return forbidden(request, "manage_members")
    form = InviteForm(request.POST, for_owner=role_of(request) == MemberRole.OWNER)
    if not form.is_valid():
        return _members_page(request, form, status=400)
    email = form.cleaned_data["email"]
    try:
        invitation_create(
            tenant=tenant_of(request),
            email=email,
            role=form.cleaned_data["role"],
            actor=user_of(request),
            actor_role=role_of(request),
            accept_url=lambda token: request.build_absolute_uri(reverse("workspace:invitation-accept", args=[token])),
        )
    except SeatsFull as exc:
        form.add_error(None, first_error(exc))
        return _members_page(request, form, status=400)
    except ValidationError as exc:
        errors_onto(form, exc)
        return _members_page(request, form, status=400)
    messages.success(request, f"Invitation sent to {email}. The link works once and expires in 7 days.")
    return redirect("workspace:members")


@require_POST
@role_required("manage_members")
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    tenant = tenant_of(request)
    membership = member_get(tenant=tenant, membership_id=pk)
    if membership is None:
        raise Http404("No such member.")
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return redirect("workspace:members")
    try:
        member_role_change(
            tenant=tenant, membership=membership, role=form.cleaned_data["role"], actor=user_of(request),
            actor_role=role_of(request),
        )  # fmt: skip
    except ValidationError as exc:
        messages.error(request, first_error(exc))
        return redirect("workspace:members")
    messages.success(request, f"{membership.user.email} is now {MemberRole(form.cleaned_data['role']).label.lower()}.")
    if membership.user_id == request.user.pk and not can(form.cleaned_data["role"], "manage_members"):
        return redirect("workspace:overview")
    return redirect("workspace:members")


@require_POST
@role_required("manage_members")
def member_delete(request: HttpRequest, pk: int) -> HttpResponse:
    tenant = tenant_of(request)
    membership = member_get(tenant=tenant, membership_id=pk)
    if membership is None:
        raise Http404("No such member.")
    try:
        member_remove(tenant=tenant, membership=membership, actor=user_of(request), actor_role=role_of(request))
    except ValidationError as exc:
        messages.error(request, first_error(exc))
        return redirect("workspace:members")
    if membership.user_id == request.user.pk:
        return redirect("login")  # removed themselves: no longer a member of this host
    messages.success(request, f"{membership.user.email} was removed from the workspace.")
    return redirect("workspace:members")


@require_POST
@role_required("manage_members")
def invitation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk)
    invitation_revoke(tenant=tenant_of(request), invitation=invitation, actor=user_of(request))
    messages.success(request, f"The invitation for {invitation.email} was cancelled; its seat is free again.")
    return redirect("workspace:members")


def _accept_page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    return render(request, "workspace/invitation_accept.html", context, status=status)


def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    """Signed out: choose a password (new account) or enter yours (existing account), then
    join. Signed in (as a member of this workspace): nothing to accept here."""
    tenant = tenant_of(request)
    if getattr(tenant, "kind", "") != "customer":
        raise Http404("Not a workspace.")
    try:
        invitation = invitation_lookup(raw=token, now=timezone.now())
    except InvitationInvalid as exc:
        return _accept_page(request, {"problem": first_error(exc)}, status=404 if exc.code == "not_found" else 410)
    if request.user.is_authenticated:
        return _accept_page(request, {"signed_in": True, "invitation": invitation, "tenant": tenant})
    existing = User.objects.filter(email__iexact=invitation.email).first()
    form_class = AcceptExistingUserForm if existing else AcceptNewUserForm
    kwargs = {} if existing else {"email": invitation.email}
    form = form_class(request.POST or None, **kwargs)  # type: ignore[arg-type]
    context = {
        "invitation": invitation,
        "tenant": tenant,
        "role": MemberRole(invitation.role).label,
        "form": form,
        "existing": existing,
    }
    if request.method != "POST" or not form.is_valid():
        return _accept_page(request, context, status=400 if request.method == "POST" else 200)
    user = None
    if existing is not None:
        user = authenticate(request, username=invitation.email, password=form.cleaned_data["password"])
        if user is None:
            form.add_error("password", "That password is not right for this account.")
            return _accept_page(request, context, status=400)
    try:
        user, _ = invitation_accept(
            tenant=tenant, raw=token, user=user, password=form.cleaned_data.get("password1", "")
        )
    except InvitationInvalid as exc:
        return _accept_page(request, {"problem": first_error(exc)}, status=410)
    except SeatsFull as exc:
        return _accept_page(request, {"problem": first_error(exc)}, status=409)
    login(request, user, backend="tenants.auth.EmailBackend")
    messages.success(request, f"Welcome to {tenant.name}.")
    return redirect("workspace:overview")
