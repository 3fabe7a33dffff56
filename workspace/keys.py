"""Tenant API keys: created in the workspace, valid on that tenant's host only (they live in
the tenant's own schema, so another tenant's host cannot even find them)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from workspace.models import ApiKey, ApiKeyScope

KEY_PREFIX = "sok_"
_KEY_RE = re.compile(r"^sok_[A-Za-z0-9_-]{20,100}$")


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, name: str, scopes: list[str], created_by_id: int | None = None) -> tuple[ApiKey, str]:
    """A new key in the current tenant schema; returns the row and the raw key (shown once)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": ["A key name must be 1 to 100 characters."]})
    unknown = [s for s in scopes if s not in ApiKeyScope.values]
    if unknown or not scopes:
        raise ValidationError({"scopes": [f"Choose one or more of: {', '.join(ApiKeyScope.values)}."]})
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, prefix=raw[:12], key_hash=_digest(raw), scopes=sorted(set(scopes)), created_by_id=created_by_id
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db(fields=["revoked_at"])
    return key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key of the current tenant schema whose value is `raw` (no cache: a revoked
    key fails on the very next request)."""
    if not isinstance(raw, str) or not _KEY_RE.match(raw):
        return None
    key = ApiKey.objects.filter(key_hash=_digest(raw), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or key.last_used_at < now - timedelta(seconds=60):
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(seconds=60))
        ).update(last_used_at=now)
    return key


class TenantApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer sok_…` on a tenant host. No header: not this scheme (session
    auth may apply); a bad key: 401."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != "bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use `Bearer <api key>`.")
        key = api_key_authenticate(raw=header[1])
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is invalid or has been revoked.")
        return ApiKeyClient(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="saasops workspace API"'


class TenantApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the workspace API key scheme in /api/schema/."""

    target_class = "workspace.keys.TenantApiKeyAuthentication"
    name = "workspaceApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A workspace API key (`sok_…`), valid on its own tenant host only.",
        }


class ApiKeyClient:
    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key
