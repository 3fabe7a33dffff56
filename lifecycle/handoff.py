"""Hand-off tokens: how the public host signs a person into a tenant host.

Session cookies are host-only, so a session on the public host is worth nothing on
`<slug>.<domain>`. The public host mints a random token bound to one user and one tenant,
valid LIFECYCLE_HANDOFF_TTL seconds (60 by default); the tenant host redeems it once and
signs the user in there. Only a hash is stored. Redeeming is one conditional UPDATE, so two
requests with the same token cannot both win.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from lifecycle.models import HandoffToken
from lifecycle.notifications import workspace_url
from tenants.models import Membership, Tenant, User


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def handoff_token_create(*, user: User, tenant: Tenant, purpose: str = "signup") -> str:
    """A new token for `user` into `tenant` (a member). Returns the token itself; only its
    hash is kept."""
    if not Membership.objects.filter(user=user, tenant=tenant).exists():
        raise PermissionError("hand-off tokens are only for members of the tenant")
    token = secrets.token_urlsafe(32)
    HandoffToken.objects.create(
        token_hash=_hash(token),
        user=user,
        tenant=tenant,
        purpose=purpose,
        expires_at=timezone.now() + timedelta(seconds=settings.LIFECYCLE_HANDOFF_TTL),
    )
    return token


def handoff_url(*, user: User, tenant: Tenant) -> str:
    """The tenant host's address that redeems a fresh token (the token is in the query
    string, which the access log leaves out)."""
    token = handoff_token_create(user=user, tenant=tenant)
    return workspace_url(tenant=tenant, path=f"/handoff/?token={token}")


def handoff_token_redeem(*, token: str, tenant: Tenant) -> User | None:
    """The user the token signs into `tenant`, or None if it is unknown, for another tenant,
    expired or used. Single-use: the first redeem marks it used."""
    if not token or len(token) > 100:
        return None
    now = timezone.now()
    row = HandoffToken.objects.filter(token_hash=_hash(token)).only("pk", "user_id", "tenant_id").first()
    if row is None or row.tenant_id != tenant.pk:
        return None
    won = HandoffToken.objects.filter(pk=row.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not won:
        return None
    user = User.objects.filter(pk=row.user_id, is_active=True).first()
    if user is None or not Membership.objects.filter(user=user, tenant=tenant).exists():
        return None
    return user


def handoff_tokens_purge(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete tokens long past use (run by the daily retention job)."""
    deleted, _ = HandoffToken.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
