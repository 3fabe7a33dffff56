"""Self-service signup: form → email link → workspace provisioned → signed in on its host.

    signup_start      pending Signup (+ allauth account and address, unverified), link emailed
    signup_verify     the link: single-use, expiring; marks the address verified (allauth)
    signup_provision  the Celery task's body: tenant_provision(key = the signup) → ready
    handoff_*         lifecycle/handoff.py signs the person in on the tenant host

No enumeration: an address that already has an account gets a "you already have an
account" email instead, and the person sees the same "check your email" page.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from lifecycle.models import Signup, SignupStatus
from lifecycle.notifications import email_send, public_url, workspace_url
from lifecycle.services import ProvisioningError, tenant_provision
from tenants.models import BillingInterval, Membership, Plan, Tenant, User
from tenants.services import tenant_event_record
from tenants.slugs import schema_name_for, slug_alternative, slug_suggestion, validate_slug

log = logging.getLogger(__name__)

LINK_SALT = "lifecycle.signup.verify"
# A hand-off from the progress page is offered this long after the workspace was made;
# later the person signs in on the workspace host with their password.
HANDOFF_WINDOW = timedelta(hours=1)


# --- workspace addresses ------------------------------------------------------------------------
def slug_taken(slug: str) -> bool:
    """A tenant has this address (or its schema name), or a verified signup is being
    provisioned with it right now."""
    return (
        Tenant.objects.filter(Q(slug=slug) | Q(schema_name=schema_name_for(slug))).exists()
        or Signup.objects.filter(slug=slug, status=SignupStatus.PROVISIONING).exists()
    )


def slug_free_near(base: str) -> str:
    """`base` if it is valid and free, else a nearby free address."""
    candidate = base
    for _ in range(10):
        try:
            validate_slug(candidate)
        except ValidationError:
            candidate = slug_suggestion(candidate)
        if not slug_taken(candidate):
            return candidate
        candidate = slug_alternative(base if len(base) >= 3 else "workspace")
    return candidate


@dataclass(frozen=True)
class SlugCheck:
    slug: str
    ok: bool
    message: str = ""
    suggestion: str = ""


def slug_check(slug: str) -> SlugCheck:
    """Is `slug` usable as a new workspace address? If not: why, and a free suggestion."""
    slug = (slug or "").strip().lower()
    try:
        validate_slug(slug)
    except ValidationError as exc:
        reserved = exc.code == "reserved"
        suggestion = slug_free_near(f"{slug}-team" if reserved else slug_suggestion(slug or "workspace"))
        return SlugCheck(slug, False, exc.messages[0], suggestion)
    if slug_taken(slug):
        return SlugCheck(slug, False, f"The address “{slug}” is taken.", slug_free_near(slug))
    return SlugCheck(slug, True)


def slug_for_company(company: str) -> str:
    """The suggested address for a company name, free at the time of asking."""
    return slug_free_near(slug_suggestion(company or "workspace"))


# --- starting a signup -------------------------------------------------------------------------
def _has_account(user: User) -> bool:
    """An account someone already uses: staff, a member of a workspace, or a verified address."""
    return (
        user.is_staff
        or Membership.objects.filter(user=user).exists()
        or EmailAddress.objects.filter(user=user, verified=True).exists()
    )


def verify_link(signup: Signup) -> str:
    key = signing.dumps(str(signup.pk), salt=LINK_SALT, compress=True)
    return public_url(f"/signup/verify/{key}/")


@transaction.atomic
def signup_start(
    *,
    email: str,
    password: str,
    company: str,
    slug: str,
    plan: Plan,
    interval: str = BillingInterval.MONTHLY,
    ip: str | None = None,
) -> Signup | None:
    """Record a signup and (after commit) email its verification link. Returns None when
    the address already has an account: that address is emailed "you already have an
    account" instead, and the caller shows the same page either way.

    A newer signup of the same unverified address supersedes the older ones (only the newest
    link works). The password is kept hashed on the signup and given to the account when
    this signup's link is clicked, so nobody can set the password of an address they cannot
    read mail for."""
    email = email.strip()
    password_hash = make_password(password)  # hashed on both paths: same time either way
    user = User.objects.filter(email__iexact=email).first()
    if user is not None and _has_account(user):
        user_id = user.pk
        transaction.on_commit(lambda: _account_exists_send(user_id=user_id, asked_slug=slug))
        return None
    if plan.retired_at is not None or not plan.is_public:
        raise ValidationError({"plan": ["Choose one of the plans on the pricing page."]})
    if user is None:
        user = User(username=email.lower()[:150], email=email)
        user.set_unusable_password()
        user.save()
    address = EmailAddress.objects.filter(user=user, email__iexact=email).first()
    if address is None:
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    Signup.objects.filter(user=user, status=SignupStatus.PENDING).update(status=SignupStatus.SUPERSEDED)
    signup = Signup.objects.create(
        user=user,
        email=email,
        company=company.strip(),
        slug=slug,
        plan=plan,
        interval=interval,
        password_hash=password_hash,
        ip=ip,
    )
    from lifecycle.tasks import signup_link_send

    signup_id = str(signup.pk)
    transaction.on_commit(lambda: signup_link_send.delay(signup_id))
    return signup


def signup_link_email(*, signup_id: str) -> bool:
    """Email the verification link of a still-pending signup (again). True if sent."""
    signup = Signup.objects.select_related("plan").filter(pk=signup_id).first()
    if signup is None or signup.status != SignupStatus.PENDING:
        return False
    hours = settings.LIFECYCLE_VERIFY_LINK_MAX_AGE // 3600
    email_send(
        name="verify",
        to=signup.email,
        context={"signup": signup, "link": verify_link(signup), "hours": hours, "base_domain": settings.BASE_DOMAIN},
    )
    Signup.objects.filter(pk=signup.pk).update(link_sent_at=timezone.now())
    return True


def _account_exists_send(*, user_id: int, asked_slug: str) -> None:
    from lifecycle.tasks import account_exists_send

    account_exists_send.delay(user_id, asked_slug)


def account_exists_email(*, user_id: int, asked_slug: str) -> None:
    user = User.objects.get(pk=user_id)
    workspaces = [
        {"name": m.tenant.name, "url": workspace_url(tenant=m.tenant, path="/accounts/login/")}
        for m in Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name")
    ]
    email_send(
        name="account_exists",
        to=user.email,
        context={
            "user": user,
            "workspaces": workspaces,
            "asked_slug": asked_slug,
            "reset_url": public_url("/accounts/password/reset/"),
            "pricing_url": public_url("/pricing/"),
        },
    )


# --- the link ----------------------------------------------------------------------------------
class LinkOutcome(enum.Enum):
    VERIFIED = "verified"  # first click: the workspace is being made
    USED = "used"  # clicked before
    SUPERSEDED = "superseded"  # a newer signup of the address exists
    EXPIRED = "expired"
    INVALID = "invalid"


def signup_from_key(key: str, *, max_age: int | None) -> Signup | None:
    try:
        signup_id = signing.loads(key, salt=LINK_SALT, max_age=max_age)
    except signing.BadSignature:
        return None
    return Signup.objects.select_related("plan", "user").filter(pk=signup_id).first()


def signup_pending_for_key(key: str) -> Signup | None:
    """The signup a fresh (not expired) link names, if it still waits for its click."""
    signup = signup_from_key(key, max_age=settings.LIFECYCLE_VERIFY_LINK_MAX_AGE)
    return signup if signup is not None and signup.status == SignupStatus.PENDING else None


def signup_verify(*, key: str, request: HttpRequest) -> tuple[LinkOutcome, Signup | None]:
    """Use a verification link. Single-use: only the first click of a pending signup
    verifies it (the row is locked, so two clicks at once verify once) and starts
    provisioning after commit; every later click gets USED. Expired links (older than
    LIFECYCLE_VERIFY_LINK_MAX_AGE) verify nothing."""
    try:
        signup_id = signing.loads(key, salt=LINK_SALT, max_age=settings.LIFECYCLE_VERIFY_LINK_MAX_AGE)
    except signing.SignatureExpired:
        signup = signup_from_key(key, max_age=None)
        if signup is not None and signup.status not in (SignupStatus.PENDING, SignupStatus.SUPERSEDED):
            return LinkOutcome.USED, signup
        return (LinkOutcome.EXPIRED if signup is not None else LinkOutcome.INVALID), signup
    except signing.BadSignature:
        return LinkOutcome.INVALID, None
    with transaction.atomic():
        signup = Signup.objects.select_for_update().select_related("plan", "user").filter(pk=signup_id).first()
        if signup is None:
            return LinkOutcome.INVALID, None
        if signup.status == SignupStatus.SUPERSEDED:
            return LinkOutcome.SUPERSEDED, signup
        if signup.status != SignupStatus.PENDING:
            return LinkOutcome.USED, signup
        now = timezone.now()
        signup.status, signup.verified_at = SignupStatus.PROVISIONING, now
        signup.save(update_fields=["status", "verified_at"])
        user = signup.user
        if not _has_account(user):  # an account someone already uses keeps its password
            user.password = signup.password_hash
            user.save(update_fields=["password"])
        address = EmailAddress.objects.filter(user=user, email__iexact=signup.email).first()
        if address is None:
            address = EmailAddress.objects.create(user=user, email=signup.email, primary=True, verified=False)
        if not address.verified:
            get_adapter(request).confirm_email(request, address)
        # Older links of the same address can no longer make a second workspace.
        Signup.objects.filter(user=user, status=SignupStatus.PENDING).update(status=SignupStatus.SUPERSEDED)
        from lifecycle.tasks import signup_provision_task

        pk = str(signup.pk)
        transaction.on_commit(lambda: signup_provision_task.delay(pk))
    return LinkOutcome.VERIFIED, signup


@transaction.atomic
def signup_slug_retry(*, signup: Signup, slug: str) -> Signup:
    """After the address was taken meanwhile: provision with another one."""
    locked = Signup.objects.select_for_update().get(pk=signup.pk)
    if locked.status != SignupStatus.NEEDS_SLUG:
        raise ValidationError("This signup is not waiting for a new address.")
    check = slug_check(slug)
    if not check.ok:
        raise ValidationError({"slug": [f"{check.message} Try “{check.suggestion}”."]})
    locked.slug, locked.status, locked.error = check.slug, SignupStatus.PROVISIONING, ""
    locked.save(update_fields=["slug", "status", "error"])
    from lifecycle.tasks import signup_provision_task

    pk = str(locked.pk)
    transaction.on_commit(lambda: signup_provision_task.delay(pk))
    return locked


@transaction.atomic
def signup_retry(*, signup: Signup) -> Signup:
    """Try a failed provisioning again (same key: never two workspaces)."""
    updated = Signup.objects.filter(pk=signup.pk, status=SignupStatus.FAILED).update(
        status=SignupStatus.PROVISIONING, error=""
    )
    if updated:
        from lifecycle.tasks import signup_provision_task

        pk = str(signup.pk)
        transaction.on_commit(lambda: signup_provision_task.delay(pk))
    signup.refresh_from_db()
    return signup


# --- provisioning ------------------------------------------------------------------------------
def signup_provision(*, signup_id: str) -> Signup:
    """Make the signup's workspace (the Celery task's body). Idempotent: the provisioning
    key is the signup, so a repeat — a retried task, a second worker — returns the same
    tenant; the signup's own history rows and the welcome email happen once, when the
    signup turns ready under its row lock."""
    signup = Signup.objects.select_related("plan", "user").get(pk=signup_id)
    if signup.status != SignupStatus.PROVISIONING:
        return signup
    try:
        tenant = tenant_provision(
            key=signup.provisioning_key,
            name=signup.company,
            slug=signup.slug,
            owner_email=signup.email,
            plan=signup.plan,
            billing_interval=signup.interval,
            actor=signup.user,
        )
    except ValidationError as exc:
        taken = "slug" in getattr(exc, "error_dict", {}) or "taken" in " ".join(exc.messages)
        status = SignupStatus.NEEDS_SLUG if taken else SignupStatus.FAILED
        Signup.objects.filter(pk=signup.pk, status=SignupStatus.PROVISIONING).update(
            status=status, error="; ".join(exc.messages)[:2000]
        )
        signup.refresh_from_db()
        return signup
    except ProvisioningError as exc:
        Signup.objects.filter(pk=signup.pk, status=SignupStatus.PROVISIONING).update(
            status=SignupStatus.FAILED, error=str(exc)[:2000]
        )
        signup.refresh_from_db()
        return signup
    with transaction.atomic():
        locked = Signup.objects.select_for_update().get(pk=signup.pk)
        if locked.status == SignupStatus.READY:
            return locked
        now = timezone.now()
        for kind, at in (("signup", signup.created_at), ("verified", signup.verified_at or now)):
            event = tenant_event_record(
                tenant=tenant,
                kind=kind,
                actor=signup.user,
                details={"email": signup.email, "plan": signup.plan.code, "interval": signup.interval},
            )
            # The history shows when it happened, which was before the tenant existed.
            type(event).objects.filter(pk=event.pk).update(created_at=at)
        locked.status, locked.tenant, locked.provisioned_at, locked.error = SignupStatus.READY, tenant, now, ""
        locked.save(update_fields=["status", "tenant", "provisioned_at", "error"])
        from lifecycle.tasks import welcome_send

        tenant_id = tenant.pk
        transaction.on_commit(lambda: welcome_send.delay(tenant_id))
    return locked


def handoff_allowed(signup: Signup) -> bool:
    """Whether the progress page may still sign the person in (see HANDOFF_WINDOW)."""
    return (
        signup.status == SignupStatus.READY
        and signup.tenant_id is not None
        and signup.provisioned_at is not None
        and timezone.now() - signup.provisioned_at < HANDOFF_WINDOW
    )
