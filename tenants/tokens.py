"""Platform tokens: create, revoke, authenticate.

A token is `sop_` + 43 URL-safe random characters (256 bits). Only its SHA-256 hex digest
is stored; the token itself is returned once, by `platform_token_create`, and cannot be
recovered afterwards. The first 12 characters are kept as `prefix` so people can tell
tokens apart in lists and revoke one by it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants.models import PlatformToken, User

log = logging.getLogger(__name__)

TOKEN_PREFIX = "sop_"  # noqa: S105 - a marker, not a secret
PREFIX_LENGTH = 12
# How stale `last_used_at` may be: at most one UPDATE per token per minute, however hot.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Anything else cannot be one of ours: refuse it without touching the database.
_TOKEN_RE = re.compile(r"^sop_[A-Za-z0-9_-]{20,100}$")


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _actor_label(actor: User | None) -> str:
    return actor.email if actor is not None else "system"


@transaction.atomic
def platform_token_create(*, name: str, actor: User | None = None) -> tuple[PlatformToken, str]:
    """Create a token named `name`; return the row and the raw token, which is never stored
    and cannot be shown again. Atomic; not idempotent (every call makes a new token)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": ["A token name must be 1 to 100 characters."]})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = PlatformToken.objects.create(
        name=name, prefix=raw[:PREFIX_LENGTH], token_hash=_digest(raw), created_by=actor
    )
    log.info("platform token created: %s (%s…) by %s", token.name, token.prefix, _actor_label(actor))
    return token, raw


@transaction.atomic
def platform_token_revoke(*, token: PlatformToken, actor: User | None = None) -> PlatformToken:
    """Revoke the token; the next request made with it is refused (nothing is cached).
    Idempotent: revoking a revoked token keeps its first revocation time."""
    now = timezone.now()
    if PlatformToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        log.info("platform token revoked: %s (%s…) by %s", token.name, token.prefix, _actor_label(actor))
    token.refresh_from_db(fields=["revoked_at"])
    return token


def platform_token_authenticate(*, raw: str) -> PlatformToken | None:
    """The active token whose value is `raw`, else None (unknown, malformed or revoked).

    Read-only. The lookup is by the SHA-256 of the candidate, so database comparison time
    tells a caller nothing about a real token (they cannot choose the digest's prefix); the
    final comparison is constant-time anyway."""
    if not isinstance(raw, str) or not _TOKEN_RE.match(raw):
        return None
    digest = _digest(raw)
    token = PlatformToken.objects.filter(token_hash=digest, revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


def platform_token_mark_used(*, token: PlatformToken, now: datetime | None = None) -> bool:
    """Record that the token was used, at most once per LAST_USED_RESOLUTION: most requests
    cost no query at all, and of concurrent requests only one writes (the conditional
    UPDATE). Returns whether a row was written."""
    now = now or timezone.now()
    threshold = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > threshold:
        return False
    written = (
        PlatformToken.objects.filter(pk=token.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold))
        .update(last_used_at=now)
    )
    if written:
        token.last_used_at = now
    return bool(written)


def platform_tokens_by_prefix(*, prefix: str, active_only: bool = True) -> list[PlatformToken]:
    """Tokens whose prefix starts with `prefix` (what lists and the CLI show)."""
    tokens = PlatformToken.objects.filter(prefix__startswith=prefix)
    if active_only:
        tokens = tokens.filter(revoked_at__isnull=True)
    return list(tokens.order_by("-created_at"))
