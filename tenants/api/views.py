"""Platform API: a tenant's effective config, its changes and its history.

Every view is authenticated first (a request without a good token learns nothing, not even
whether a slug exists), then resolves the tenant once from the URL. Only customer tenants
are reachable: the public and template schemas have no config to serve.
"""

from __future__ import annotations

import io
import logging
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils.http import parse_etags, quote_etag
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from saasops.api import error_response
from tenants.api.authentication import IsPlatformClient, PlatformTokenAuthentication
from tenants.config import CONFIG_KEYS, config_current_version, config_effective, config_version_create
from tenants.models import PlatformToken, Tenant, TenantConfigVersion, TenantStatus
from tenants.selectors import tenant_get_by_slug

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # the largest valid body (a full prompt template) is about 9 KB
VERSIONS_DEFAULT_LIMIT, VERSIONS_MAX_LIMIT = 50, 200


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = f"The request body is larger than {MAX_BODY_BYTES // 1024} KB."


class BoundedJSONParser(JSONParser):
    """JSON with a size limit: DRF reads the body stream itself, so Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE never applies to it."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = stream.read(MAX_BODY_BYTES + 1)
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        return super().parse(io.BytesIO(data), media_type, parser_context)


# --- Shapes (for the OpenAPI document; values are built by the config service) ------------


def _config_fields(*, required: bool, allow_null: bool) -> dict[str, serializers.Field]:
    return {
        key: (serializers.IntegerField if spec.kind is int else serializers.CharField)(
            help_text=spec.help, required=required, allow_null=allow_null
        )
        for key, spec in CONFIG_KEYS.items()
    }


ConfigValues = type("ConfigValues", (serializers.Serializer,), _config_fields(required=True, allow_null=False))
ConfigOverrides = type("ConfigOverrides", (serializers.Serializer,), _config_fields(required=False, allow_null=True))


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class VectorShardSerializer(serializers.Serializer):
    name = serializers.CharField()
    connection = serializers.CharField()


class EffectiveConfigSerializer(serializers.Serializer):
    tenant = serializers.CharField(help_text="The tenant's slug.")
    version = serializers.IntegerField(help_text="Newest config version (0 if none yet).")
    plan = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=TenantStatus.choices)
    vector_shard = VectorShardSerializer(allow_null=True)
    config = ConfigValues(help_text="Plan preset with the tenant's overrides on top.")
    overridden = serializers.ListField(child=serializers.CharField(), help_text="Keys set by overrides.")


class ConfigWriteSerializer(serializers.Serializer):
    overrides = ConfigOverrides(help_text="PUT: the whole override set. PATCH: keys to change; null removes one.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ActorSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["system", "staff", "customer"])
    email = serializers.EmailField(allow_null=True)


class ConfigVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = ActorSerializer()
    note = serializers.CharField()
    changes = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text="What this version changed in the effective config: {key: [old, new]}.",
    )
    overrides = serializers.DictField(child=serializers.JSONField())


class ConfigVersionListSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    versions = ConfigVersionSerializer(many=True)
    has_more = serializers.BooleanField(help_text="Older versions exist: ask again with before=<last version>.")


ERRORS = {
    401: OpenApiResponse(ErrorSerializer, "No, malformed, unknown or revoked platform token."),
    404: OpenApiResponse(ErrorSerializer, "No customer tenant with this slug."),
}
ETAG_HEADER = OpenApiParameter(
    "ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200, 304], description="Version of this config."
)


WRITE_DOC: dict[str, Any] = {
    "request": ConfigWriteSerializer,
    "responses": {
        200: OpenApiResponse(ConfigVersionSerializer, "The version now current (unchanged if nothing changed)."),
        400: OpenApiResponse(ErrorSerializer, "Invalid body or overrides: the details name each bad key."),
        413: OpenApiResponse(ErrorSerializer, f"Body larger than {MAX_BODY_BYTES // 1024} KB."),
        **ERRORS,
    },
}


# --- Shaping and the write ---------------------------------------------------------------------


def _version_body(version: TenantConfigVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "created_at": version.created_at.isoformat().replace("+00:00", "Z"),
        "actor": {"type": version.actor_type, "email": version.created_by.email if version.created_by else None},
        "note": version.note,
        "changes": version.changes,
        "overrides": version.overrides,
    }


def _validation_error(details: dict[str, Any]) -> Response:
    """400 whose message names every bad field (the details keep them apart)."""
    parts = []
    for field, problem in details.items():
        if isinstance(problem, dict):
            parts += [f"{field}.{key}: {'; '.join(messages)}" for key, messages in problem.items()]
        else:
            parts.append(f"{field}: {'; '.join(problem)}")
    return error_response("validation_error", "Invalid request: " + " | ".join(parts), 400, details)


def _write_body(data: Any) -> tuple[dict[str, Any], str]:
    """The overrides and note of a PUT/PATCH body, or DRF ValidationError saying what is wrong."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError(
            {"body": ['must be a JSON object: {"overrides": {...}, "note": "..."}']}, code="invalid"
        )
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(data) - {"overrides", "note"})
    if unknown:
        problems["body"] = [f"unknown field(s) {', '.join(unknown)}; allowed: overrides, note"]
    if "overrides" not in data:
        problems["overrides"] = ["is required"]
    elif not isinstance(data["overrides"], dict):
        problems["overrides"] = ["must be a JSON object of key: value"]
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        problems["note"] = ["must be text of at most 500 characters"]
    if problems:
        raise exceptions.ValidationError(problems)
    return data["overrides"], note


@transaction.atomic
def _config_write(
    *, tenant: Tenant, overrides: dict[str, Any], merge: bool, note: str
) -> tuple[TenantConfigVersion, bool]:
    """PUT replaces the override set; PATCH merges into it (null removes a key). The tenant
    row is locked before the current overrides are read, so two concurrent PATCHes both land.
    An unchanged set makes no new version, so a retried request is a no-op. Returns the
    version now current and whether it is new."""
    Tenant.objects.select_for_update(of=("self",)).filter(pk=tenant.pk).first()
    current = config_current_version(tenant=tenant)
    wanted = dict(overrides)
    if merge:
        wanted = {**(current.overrides if current else {}), **overrides}
        wanted = {key: value for key, value in wanted.items() if value is not None}
    if current is not None and wanted == current.overrides:
        return current, False
    version = config_version_create(
        tenant=tenant, overrides=wanted, actor=None, note=note or "Changed through the platform API"
    )
    return version, True


# --- Views ---------------------------------------------------------------------------------


class PlatformTenantView(APIView):
    """Base of the platform API: platform token, then the tenant named by the URL's slug."""

    authentication_classes = [PlatformTokenAuthentication]
    permission_classes = [IsPlatformClient]
    parser_classes = [BoundedJSONParser]
    tenant: Tenant

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authenticates and checks permission first
        tenant = tenant_get_by_slug(slug=kwargs["slug"])
        if tenant is None:
            raise exceptions.NotFound(f"No tenant with the slug “{kwargs['slug'][:50]}”.")
        self.tenant = tenant


class TenantConfigView(PlatformTenantView):
    @extend_schema(
        operation_id="tenant_config_get",
        tags=["platform"],
        summary="A tenant's effective config",
        description="Plan preset plus the tenant's overrides. Send the last `ETag` in `If-None-Match` "
        "to get 304 while nothing changed; a change is visible on the next request.",
        parameters=[
            OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
            ETAG_HEADER,
        ],
        responses={
            200: EffectiveConfigSerializer,
            304: OpenApiResponse(description="Not modified: the config still has the ETag sent."),
            **ERRORS,
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        body = dict(config_effective(tenant=self.tenant))
        etag = quote_etag(body.pop("etag"))
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        sent = [tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))]
        if etag in sent or "*" in sent:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(body, headers=headers)

    def _write(self, request: Request, *, merge: bool) -> Response:
        overrides, note = _write_body(request.data)
        try:
            version, created = _config_write(tenant=self.tenant, overrides=overrides, merge=merge, note=note)
        except DjangoValidationError as exc:
            problems = exc.message_dict if hasattr(exc, "error_dict") else {"body": exc.messages}
            return _validation_error({"overrides": problems})
        log.info(
            "config of %s %s by platform token %s",
            self.tenant.slug,
            f"now version {version.version}" if created else f"unchanged at version {version.version}",
            cast(PlatformToken, request.auth).prefix,
        )
        return Response(_version_body(version))

    @extend_schema(
        operation_id="tenant_config_replace",
        tags=["platform"],
        summary="Replace a tenant's config overrides",
        description="Creates a new config version whose overrides are exactly `overrides`. "
        "Unknown keys, wrong types and out-of-range values are refused.",
        **WRITE_DOC,
    )
    def put(self, request: Request, slug: str) -> Response:
        return self._write(request, merge=False)

    @extend_schema(
        operation_id="tenant_config_update",
        tags=["platform"],
        summary="Change some of a tenant's config overrides",
        description="Creates a new config version: `overrides` is merged into the current ones "
        "(a null value removes that override, so the plan preset applies again).",
        **WRITE_DOC,
    )
    def patch(self, request: Request, slug: str) -> Response:
        return self._write(request, merge=True)


class TenantConfigVersionsView(PlatformTenantView):
    @extend_schema(
        operation_id="tenant_config_versions",
        summary="A tenant's config history, newest first",
        description="Every version with who made it, why, and what it changed: {key: [old, new]} of the "
        "effective config. Page with `limit` and `before`.",
        tags=["platform"],
        parameters=[
            OpenApiParameter("limit", int, description=f"1 to {VERSIONS_MAX_LIMIT}, default {VERSIONS_DEFAULT_LIMIT}"),
            OpenApiParameter("before", int, description="Only versions older than this one (next page)."),
        ],
        responses={
            200: ConfigVersionListSerializer,
            400: OpenApiResponse(ErrorSerializer, "Bad limit or before."),
            **ERRORS,
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        limit = _int_param(request, "limit", 1, VERSIONS_MAX_LIMIT) or VERSIONS_DEFAULT_LIMIT
        before = _int_param(request, "before", 1, 2**31 - 1)
        versions = TenantConfigVersion.objects.filter(tenant=self.tenant).select_related("created_by")
        if before is not None:
            versions = versions.filter(version__lt=before)
        page = list(versions.order_by("-version")[: limit + 1])
        return Response(
            {
                "tenant": self.tenant.slug,
                "versions": [_version_body(v) for v in page[:limit]],
                "has_more": len(page) > limit,
            }
        )


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"must be a whole number from {low} to {high}"]})
    return int(raw)
