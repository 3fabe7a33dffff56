"""`Authorization: Bearer <platform token>` for the platform API, and its OpenAPI description."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from tenants.models import PlatformToken
from tenants.tokens import platform_token_authenticate, platform_token_mark_used

HOW = "Send the platform token as `Authorization: Bearer <token>`."


class PlatformClient:
    """`request.user` of a platform API request: the product's backend, known by its token."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, token: PlatformToken) -> None:
        self.token = token

    def __str__(self) -> str:
        return f"platform:{self.token.prefix}"


class PlatformTokenAuthentication(BaseAuthentication):
    """Every failure is a 401 with a message saying what was wrong, and writes nothing;
    only a good token records `last_used_at` (at most once a minute)."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[PlatformClient, PlatformToken]:
        header = get_authorization_header(request)
        if not header:
            raise exceptions.NotAuthenticated(f"No platform token. {HOW}")
        try:
            parts = header.decode("ascii").split()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(f"Malformed Authorization header. {HOW}") from None
        if not parts or parts[0].lower() != self.keyword:
            raise exceptions.AuthenticationFailed(f"The Authorization header must use the Bearer scheme. {HOW}")
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(f"Malformed Authorization header. {HOW}")
        token = platform_token_authenticate(raw=parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("The platform token is invalid or has been revoked.")
        platform_token_mark_used(token=token)
        return PlatformClient(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) with this challenge when authentication fails.
        return 'Bearer realm="saasops platform API"'


class IsPlatformClient(BasePermission):
    """The request carries an active platform token."""

    message = f"This endpoint needs a platform token. {HOW}"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, PlatformToken) and request.auth.revoked_at is None


class PlatformTokenScheme(OpenApiAuthenticationExtension):
    """Documents the bearer scheme in /api/schema/ (registered on import)."""

    target_class = "tenants.api.authentication.PlatformTokenAuthentication"
    name = "platformToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sop_<43 characters>",
            "description": "A platform token (create one with `manage.py create_platform_token <name>` or in "
            "admin). Only its hash is stored; revoked tokens are refused at once.",
        }
