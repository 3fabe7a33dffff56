"""Members of a workspace: invitations (single-use, expiring), accepting them, role changes
and removal. Memberships live in the public schema (tenants.Membership); invitations in the
tenant's own schema. Every write happens on the request's tenant and connection schema.

Seats: members plus open invitations may not exceed the plan's `seats` limit. Every seat
check runs under a row lock on the tenant, so two admins inviting at once cannot both take
the last seat.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.models import MemberRole, Membership, Tenant, User
from tenants.services import membership_add, tenant_event_record
from workspace.models import Invitation
from workspace.selectors.members import owner_count, pending_invitations, seats_included

INVITATION_TTL = timedelta(days=7)


class SeatsFull(ValidationError):
    """Every seat of the plan is taken (members and open invitations)."""


class InvitationInvalid(ValidationError):
    """Not found, used, revoked or expired: the page says which."""


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _lock_tenant(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update(of=("self",)).get(pk=tenant.pk)


def _seats_check(*, tenant: Tenant, now: datetime, adding: int, pending_counts: bool = True) -> None:
    included = seats_included(tenant=tenant)
    if included is None:
        return
    members = Membership.objects.filter(tenant=tenant).count()
    pending = pending_invitations(now=now).count() if pending_counts else 0
    if members + pending + adding > included:
        raise SeatsFull(
            f"All {included} seats of your plan are taken ({members} member{'s' if members != 1 else ''}"
            f" and {pending} open invitation{'s' if pending != 1 else ''}). Remove a member, cancel an "
            "invitation or upgrade your plan to invite more people."
        )


@transaction.atomic
def invitation_create(
    *, tenant: Tenant, email: str, role: str, actor: User, actor_role: str, accept_url: Callable[[str], str]
) -> Invitation:
    """Invite `email` as `role`. Atomic, seat-checked under a lock; the email with the
    accept link (`accept_url(token)`) is sent after commit. The raw token exists only in
    that email; the database keeps its hash."""
    now = timezone.now()
    email = email.strip()
    if role not in MemberRole.values:
        raise ValidationError({"role": ["Choose a valid role."]})
    if role == MemberRole.OWNER and actor_role != MemberRole.OWNER:
        raise ValidationError({"role": ["Only an owner can invite another owner."]})
    locked = _lock_tenant(tenant)
    if Membership.objects.filter(tenant=locked, user__email__iexact=email).exists():
        raise ValidationError({"email": [f"{email} is already a member of this workspace."]})
    if pending_invitations(now=now).filter(email__iexact=email).exists():
        raise ValidationError({"email": [f"{email} already has an open invitation; cancel it to send a new one."]})
    _seats_check(tenant=locked, now=now, adding=1)
    raw = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        email=email, role=role, token_hash=_digest(raw), invited_by_id=actor.pk, expires_at=now + INVITATION_TTL
    )
    tenant_event_record(tenant=locked, kind="member_invited", actor=actor, details={"email": email, "role": role})
    link = accept_url(raw)
    context = {
        "tenant": locked,
        "invitation": invitation,
        "link": link,
        "inviter": actor,
        "role_label": MemberRole(role).label,
    }
    subject = f"You are invited to {locked.name} on saasops"
    body = render_to_string("workspace/emails/invitation.txt", context)
    transaction.on_commit(lambda: send_mail(subject, body, None, [email]))
    return invitation


@transaction.atomic
def invitation_revoke(*, tenant: Tenant, invitation: Invitation, actor: User) -> Invitation:
    """Cancel an open invitation (its seat is free again). Idempotent."""
    updated = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if updated:
        tenant_event_record(tenant=tenant, kind="invitation_revoked", actor=actor, details={"email": invitation.email})
    invitation.refresh_from_db()
    return invitation


def invitation_lookup(*, raw: str, now: datetime) -> Invitation:
    """The invitation whose token is `raw`, if it can still be accepted; else InvitationInvalid
    saying why (a token of another tenant is simply not in this schema: not found)."""
    invitation = Invitation.objects.filter(token_hash=_digest(raw or "")).first() if raw else None
    if invitation is None:
        raise InvitationInvalid("This invitation link is not valid. Ask for a new invitation.", code="not_found")
    if invitation.accepted_at is not None:
        raise InvitationInvalid("This invitation has already been used. Sign in instead.", code="used")
    if invitation.revoked_at is not None:
        raise InvitationInvalid("This invitation was cancelled. Ask for a new invitation.", code="revoked")
    if invitation.expires_at <= now:
        raise InvitationInvalid("This invitation has expired. Ask for a new invitation.", code="expired")
    return invitation


@transaction.atomic
def invitation_accept(*, tenant: Tenant, raw: str, user: User | None, password: str) -> tuple[User, Membership]:
    """Accept an invitation: as `user` (an existing account, already authenticated by the
    caller) or by creating the account with `password`. Single-use: the invitation row is
    locked and marked accepted in the same transaction that adds the membership."""
    now = timezone.now()
    locked_tenant = _lock_tenant(tenant)
    found = invitation_lookup(raw=raw, now=now)
    invitation = Invitation.objects.select_for_update().get(pk=found.pk)
    invitation_lookup(raw=raw, now=now)  # again under the lock: a concurrent accept lost
    if user is None:
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise InvitationInvalid("An account with this email exists; sign in with its password.", code="exists")
        user = User(username=invitation.email.lower()[:150], email=invitation.email)
        user.set_password(password)
        user.save()
    elif user.email.lower() != invitation.email.lower():
        raise InvitationInvalid("This invitation is for another email address.", code="wrong_user")
    existing = Membership.objects.filter(tenant=locked_tenant, user=user).first()
    if existing is None:
        # The invitation held its seat; a plan that shrank since may have taken it away.
        _seats_check(tenant=locked_tenant, now=now, adding=1, pending_counts=False)
        membership = membership_add(tenant=locked_tenant, user=user, role=invitation.role)
    else:
        membership = existing  # already a member: accepting never changes a role
    Invitation.objects.filter(pk=invitation.pk).update(accepted_at=now, accepted_user_id=user.pk)
    tenant_event_record(
        tenant=locked_tenant,
        kind="member_joined",
        actor=user,
        actor_type="customer",
        details={"email": user.email, "role": membership.role},
    )
    return user, membership


def _owner_guard(*, tenant: Tenant, membership: Membership, actor_role: str, new_role: str | None) -> None:
    if (membership.role == MemberRole.OWNER or new_role == MemberRole.OWNER) and actor_role != MemberRole.OWNER:
        raise ValidationError("Only an owner can make someone an owner or change an owner.")
    if membership.role == MemberRole.OWNER and new_role != MemberRole.OWNER and owner_count(tenant=tenant) <= 1:
        raise ValidationError(
            "This is the workspace's last owner. Make another member an owner first."
            if new_role
            else "The last owner cannot be removed. Make another member an owner first."
        )


@transaction.atomic
def member_role_change(
    *, tenant: Tenant, membership: Membership, role: str, actor: User, actor_role: str
) -> Membership:
    """Change a member's role. Only owners grant or take the owner role; the last owner
    stays an owner (checked under the tenant lock, so two demotions cannot both pass)."""
    if role not in MemberRole.values:
        raise ValidationError("Choose a valid role.")
    locked = _lock_tenant(tenant)
    membership = Membership.objects.select_related("user").get(pk=membership.pk, tenant=locked)
    if membership.role == role:
        return membership
    _owner_guard(tenant=locked, membership=membership, actor_role=actor_role, new_role=role)
    old = membership.role
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role
    tenant_event_record(
        tenant=locked,
        kind="member_role_changed",
        actor=actor,
        details={"email": membership.user.email, "from": old, "to": role},
    )
    return membership


@transaction.atomic
def member_remove(*, tenant: Tenant, membership: Membership, actor: User, actor_role: str) -> None:
    """Remove a member (their account stays; they lose access to this workspace at once)."""
    locked = _lock_tenant(tenant)
    membership = Membership.objects.select_related("user").get(pk=membership.pk, tenant=locked)
    _owner_guard(tenant=locked, membership=membership, actor_role=actor_role, new_role=None)
    email = membership.user.email
    membership.delete()
    tenant_event_record(tenant=locked, kind="member_removed", actor=actor, details={"email": email})
