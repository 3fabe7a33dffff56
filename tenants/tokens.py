"""Platform tokens: create, revoke, authenticate.

A token is `sop_` + 43 URL-safe random characters (256 bits). Only its SHA-256 hex digest
is stored; the token itself is returned once, by `platform_token_create`, and cannot be
recovered afterwards. The first 12 characters are kept as `prefix` so people can tell
tokens apart in lists and revoke one by it.

Authentication runs on every platform API request (the gate: thousands a second), so each
process remembers the tokens it has found active, keyed by digest, together with a
*generation* read from Redis. Any change to any token — revoke, save, delete — moves the
generation (at once, and again when its transaction commits), and a remembered token is only
used while the generation it was found under is still current: a revoked token is refused
from the next request on, as without the cache. The generation is a random value, never a
counter, so a Redis that lost its data cannot bring an old generation back; without Redis
every request asks the database. Only active tokens are remembered (a new token works at
once) and for at most TOKEN_CACHE_SECONDS (which also bounds the one gap: Redis failing
exactly when a revocation commits).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
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
    """Revoke the token; the next request made with it is refused (the token generation
    moves, see the module doc). Idempotent: revoking a revoked token keeps its first
    revocation time."""
    now = timezone.now()
    if PlatformToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        log.info("platform token revoked: %s (%s…) by %s", token.name, token.prefix, _actor_label(actor))
    platform_tokens_changed()
    token.refresh_from_db(fields=["revoked_at"])
    return token


# --- the cache of active tokens ---------------------------------------------------------------
GENERATION_KEY = "saasops:platform-tokens:generation"
TOKEN_CACHE_SECONDS = 60
_CACHE_MAX = 1000
_cache: dict[str, tuple[bytes, float, PlatformToken]] = {}  # digest -> (generation, found at, token)


def _new_generation() -> None:
    from saasops.redis import client as redis_client

    try:
        redis_client().set(GENERATION_KEY, secrets.token_hex(8))
    except Exception:  # Redis down: remembered tokens are not used then either (see _generation)
        log.warning("platform tokens changed but Redis is unreachable", exc_info=True)
    _cache.clear()


def platform_tokens_changed() -> None:
    """Forget every remembered token, in every process: now, and again once the current
    transaction commits (a request between the two may have remembered the old row)."""
    _new_generation()
    transaction.on_commit(_new_generation)


@receiver(post_save, sender=PlatformToken)
@receiver(post_delete, sender=PlatformToken)
def _token_saved_or_deleted(sender: object, **kwargs: Any) -> None:
    platform_tokens_changed()


def _generation() -> bytes | None:
    """The current generation (made if missing), or None when Redis cannot tell."""
    from saasops.redis import client as redis_client

    try:
        current = redis_client().get(GENERATION_KEY)
        if current is None:
            redis_client().set(GENERATION_KEY, secrets.token_hex(8), nx=True)
            current = redis_client().get(GENERATION_KEY)
        return current  # type: ignore[return-value]
    except Exception:
        return None


def platform_token_authenticate(*, raw: str, generation: bytes | None = None) -> PlatformToken | None:
    """The active token whose value is `raw`, else None (unknown, malformed or revoked).
    `generation`: the value of GENERATION_KEY if the caller has just read it (with other
    keys, in one round trip).

    Read-only. The lookup is by the SHA-256 of the candidate, so database comparison time
    tells a caller nothing about a real token (they cannot choose the digest's prefix); the
    final comparison is constant-time anyway."""
    if not isinstance(raw, str) or not _TOKEN_RE.match(raw):
        return None
    digest = _digest(raw)
    if generation is None:
        generation = _generation()
    remembered = _cache.get(digest)
    if (
        remembered is not None
        and generation is not None
        and remembered[0] == generation
        and time.monotonic() - remembered[1] < TOKEN_CACHE_SECONDS
    ):
        return remembered[2]
    token = _token_from_db(digest)
    if token is not None and generation is not None:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[digest] = (generation, time.monotonic(), token)
    return token


def _token_from_db(digest: str) -> PlatformToken | None:
    # One plain SQL statement: the queryset equivalent,
    # filter(token_hash=…, revoked_at__isnull=True).first(), costs several times the CPU.
    fields = _token_fields()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f.column for f in fields)} FROM {PlatformToken._meta.db_table} "  # noqa: S608 - names from the model
            "WHERE token_hash = %s AND revoked_at IS NULL LIMIT 1",
            [digest],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # No field of the model needs a converter on PostgreSQL (psycopg2 returns aware datetimes).
    token = PlatformToken.from_db(connection.alias, [f.attname for f in fields], list(row))
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    return token


@functools.cache
def _token_fields() -> list[Any]:
    return list(PlatformToken._meta.concrete_fields)


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
    # Also when another process wrote it first: the token object may be the one this process
    # remembers, and it should not try again on every request of the minute.
    token.last_used_at = now
    return bool(written)


def platform_tokens_by_prefix(*, prefix: str, active_only: bool = True) -> list[PlatformToken]:
    """Tokens whose prefix starts with `prefix` (what lists and the CLI show)."""
    tokens = PlatformToken.objects.filter(prefix__startswith=prefix)
    if active_only:
        tokens = tokens.filter(revoked_at__isnull=True)
    return list(tokens.order_by("-created_at"))
