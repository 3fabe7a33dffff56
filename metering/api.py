"""Metering HTTP API: event ingest, the quota/rate gate, and usage reads.

Platform endpoints (public host, platform token): POST /api/v1/events, POST /api/v1/gate,
GET /api/v1/tenants/<slug>/usage. Tenant endpoints (tenant host, API key with read_usage or
a signed-in member): GET /api/v1/usage and /api/v1/usage.csv.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metering.ingest import MAX_BODY_BYTES, BodyError, parse_body
from metering.ledger import events_record
from metering.quota import FETCH, Expectation, GateDecision, gate_check, gate_check_expecting
from metering.selectors import UsageQueryError, usage_daily, usage_series
from saasops import metrics
from saasops.api import error_response
from tenants.api.authentication import IsPlatformClient, PlatformTokenAuthentication
from tenants.models import Tenant
from workspace.keys import ApiKeyClient, TenantApiKeyAuthentication
from workspace.models import ApiKeyScope

MAX_QUANTITY = 1_000_000_000
GATE_MAX_BODY_BYTES = 4096


class PlatformView(APIView):
    authentication_classes = [PlatformTokenAuthentication]
    permission_classes = [IsPlatformClient]
    parser_classes: list[Any] = []  # bodies are read raw: one parse, our own limits and messages


def _read_json(request: Request, limit: int) -> Any:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise BodyError("invalid_length", "Content-Length must be a number.")
    if int(length) > limit:
        raise BodyError("payload_too_large", f"Body is larger than {limit:,} bytes.", 413)
    return request.body


EVENT_RESULT = inline_serializer(
    "IngestResult",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": serializers.IntegerField(),
        "results": serializers.ListField(child=serializers.DictField()),
    },
)


class EventsView(PlatformView):
    @extend_schema(
        summary="Record usage events (one or a batch of up to 1,000)",
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: EVENT_RESULT, 400: OpenApiTypes.OBJECT, 401: OpenApiTypes.OBJECT, 413: OpenApiTypes.OBJECT},
        description=(
            'Body: one event object, a JSON array of events, or {"events": [...]}. Each event: '
            '{"id": "<idempotency key>", "tenant": "<slug>", "type": "query", "timestamp": "<RFC 3339>", '
            '"properties": {"model": "gpt-4o", "input_tokens": 1200, "output_tokens": 300, "latency_ms": 420, '
            '"department": "legal", "user": "u_17"}}. The answer lists every event as accepted, duplicate or '
            "rejected (index, id, code, message). 400 when nothing could be accepted."
        ),
    )
    def post(self, request: Request) -> Response:
        try:
            raw = _read_json(request, MAX_BODY_BYTES)
        except BodyError as error:
            return error_response(error.code, error.message, error.status)
        status, body, headers = events_answer(raw)
        return Response(body, status=status, headers=headers)


class GateView(PlatformView):
    @extend_schema(
        summary="May this tenant run this request? (rate limit + quota)",
        request=inline_serializer(
            "GateRequest",
            {
                "tenant": serializers.CharField(),
                "meter": serializers.CharField(),
                "quantity": serializers.IntegerField(),
            },
        ),
        responses={
            200: OpenApiTypes.OBJECT,
            402: OpenApiTypes.OBJECT,
            403: OpenApiTypes.OBJECT,
            429: OpenApiTypes.OBJECT,
        },
        description=(
            "200 allowed (remaining quota, reset time; `overage: true` with the price when the plan bills "
            "overage); 429 rate limited with Retry-After; 402 quota exceeded on a hard limit (meter, limit, "
            "used, upgrade path); 403 tenant suspended or cancelled."
        ),
    )
    def post(self, request: Request) -> Response:
        try:
            raw = _read_json(request, GATE_MAX_BODY_BYTES)
        except BodyError as error:
            return error_response(error.code, error.message, error.status)
        status, body, headers = gate_answer(raw)
        return Response(body, status=status, headers=headers)


# The answers of the two hot endpoints, given the raw body of an authenticated request. The
# views above and the lean WSGI path (saasops/fastpath.py) both call these, so the two can
# only differ in the HTTP envelope, which the fast path takes from the same middleware.
Answer = tuple[int, dict[str, Any], dict[str, str] | None]


def _error(code: str, message: str, status: int) -> Answer:
    return status, {"error": {"code": code, "message": message}}, None


def events_answer(raw: bytes) -> Answer:
    try:
        events = parse_body(raw)
    except BodyError as error:
        return _error(error.code, error.message, error.status)
    result = events_record(raw_events=events)
    return (400 if result.rejected == len(events) else 200), result.as_dict(), None


@dataclass(frozen=True)
class GateAsk:
    slug: str
    meter: str
    quantity: int


def _gate_ask(raw: bytes, body: Any) -> GateAsk | Answer:
    """The validated question of a gate request, or the 400 answer to it."""
    if body is None:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return _error("invalid_json", "The body is not valid JSON.", 400)
    if not isinstance(body, dict):
        return _error("invalid_shape", 'Send {"tenant": "<slug>", "meter": "api_calls", "quantity": 1}.', 400)
    slug, meter, quantity = body.get("tenant"), body.get("meter", "api_calls"), body.get("quantity", 1)
    if not isinstance(slug, str) or not slug:
        return _error("missing_tenant", '"tenant" (the tenant slug) is required.', 400)
    if not isinstance(meter, str) or not meter:
        return _error("invalid_meter", '"meter" must be a meter code such as "api_calls".', 400)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        return _error("invalid_quantity", f'"quantity" must be a whole number from 1 to {MAX_QUANTITY:,}.', 400)
    return GateAsk(slug[:40], meter[:40], quantity)


def _gate_reply(decision: GateDecision) -> Answer:
    metrics.gate_decision_record(status=decision.status, overage=bool(decision.body.get("overage")))
    headers = {"Retry-After": str(decision.retry_after)} if decision.retry_after else None
    return decision.status, decision.body, headers


def gate_answer(raw: bytes, body: Any = None, info_cached: Any = FETCH) -> Answer:
    """`body`: the parsed body if the caller parsed it already; `info_cached`: see gate_info."""
    ask = _gate_ask(raw, body)
    if not isinstance(ask, GateAsk):
        return ask
    return _gate_reply(gate_check(slug=ask.slug, meter=ask.meter, quantity=ask.quantity, info_cached=info_cached))


def gate_answer_expecting(raw: bytes, body: Any, expect: Expectation) -> Answer | None:
    """gate_answer in one Redis round trip from what the caller saw before (the fast path's
    remembered token generation and gate info); None, with nothing touched, when that is no
    longer current or the answer is not the script's to give: ask gate_answer then."""
    ask = _gate_ask(raw, body)
    if not isinstance(ask, GateAsk):
        return ask
    decision = gate_check_expecting(slug=ask.slug, meter=ask.meter, quantity=ask.quantity, expect=expect)
    return None if decision is None else _gate_reply(decision)


def _parse_instant(value: str | None, name: str, default: datetime) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:
            parsed_date = date.fromisoformat(value)
            return datetime(parsed_date.year, parsed_date.month, parsed_date.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageQueryError(f"`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 time.") from None
    if parsed.tzinfo is None:
        raise UsageQueryError(f"`{name}` needs a time zone (e.g. Z).")
    return parsed


USAGE_PARAMS = [
    OpenApiParameter(
        "from", OpenApiTypes.STR, description="Start (inclusive): YYYY-MM-DD or RFC 3339. Default: 30 days ago."
    ),
    OpenApiParameter("to", OpenApiTypes.STR, description="End (exclusive): YYYY-MM-DD or RFC 3339. Default: now."),
    OpenApiParameter("granularity", OpenApiTypes.STR, enum=["hour", "day", "month"]),
    OpenApiParameter("group_by", OpenApiTypes.STR, enum=["meter", "model", "department", "user"]),
]


def _usage(tenant: Tenant, request: Request) -> Response:
    now = timezone.now()
    try:
        start = _parse_instant(request.query_params.get("from"), "from", now - timedelta(days=30))
        end = _parse_instant(request.query_params.get("to"), "to", now)
        granularity = request.query_params.get("granularity", "day")
        group_by = request.query_params.get("group_by", "meter")
        rows = usage_series(tenant_id=tenant.pk, start=start, end=end, granularity=granularity, group_by=group_by)
    except UsageQueryError as error:
        return error_response("invalid_query", str(error), 400)
    return Response(
        {
            "tenant": tenant.slug,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "granularity": granularity,
            "group_by": group_by,
            "data": rows,
        }
    )


class PlatformUsageView(PlatformView):
    @extend_schema(summary="A tenant's usage (platform)", parameters=USAGE_PARAMS, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, slug: str) -> Response:
        tenant = Tenant.objects.customers().filter(slug=slug).first()
        if tenant is None:
            return error_response("not_found", f"No tenant with slug {slug!r}.", 404)
        return _usage(tenant, request)


class CanReadUsage(BasePermission):
    """A signed-in member of this tenant, or an API key with the read_usage scope."""

    message = "Reading usage needs a member's session or an API key with the read_usage scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.user, ApiKeyClient):
            return ApiKeyScope.READ_USAGE in request.user.key.scopes
        return bool(getattr(request._request, "membership", None)) and request.user.is_authenticated


class TenantView(APIView):
    authentication_classes = [TenantApiKeyAuthentication, SessionAuthentication]
    permission_classes = [CanReadUsage]


class TenantUsageView(TenantView):
    @extend_schema(summary="This workspace's usage", parameters=USAGE_PARAMS, responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return _usage(request._request.tenant, request)  # type: ignore[attr-defined]


class TenantUsageCsvView(TenantView):
    @extend_schema(
        summary="Daily usage as CSV: date,query_count,tokens,cost_usd,latency_p95_ms",
        parameters=USAGE_PARAMS[:2],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> HttpResponse | Response:
        today = timezone.now().date()
        try:
            start = _parse_instant(request.query_params.get("from"), "from", _midnight(today - timedelta(days=29)))
            end = _parse_instant(request.query_params.get("to"), "to", _midnight(today + timedelta(days=1)))
            last_day = (end - timedelta(microseconds=1)).astimezone(UTC).date()
            rows = usage_daily(tenant_id=request._request.tenant.pk, start=start.astimezone(UTC).date(), end=last_day)  # type: ignore[attr-defined]
        except UsageQueryError as error:
            return error_response("invalid_query", str(error), 400)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["date", "query_count", "tokens", "cost_usd", "latency_p95_ms"])
        for row in rows:
            p95 = row["latency_p95_ms"]
            writer.writerow(
                [row["date"], row["query_count"], row["tokens"], row["cost_usd"], "" if p95 is None else p95]
            )
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        slug = request._request.tenant.slug  # type: ignore[attr-defined]
        response["Content-Disposition"] = f'attachment; filename="{slug}-usage-{start.date()}-{last_day}.csv"'
        return response


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
