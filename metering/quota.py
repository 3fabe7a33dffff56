"""The real-time gate: rate limit (token bucket) and quota check in one atomic Redis script.

Per tenant and quota period Redis holds two counters for each limited meter:
- `recorded`: usage from stored events, moved after each ingest commit (and rebuilt from the
  database rollups whenever it is missing, so a Redis restart loses nothing);
- `admitted`: the high-water mark of what the gate let through. A hard-limited request is
  admitted only while max(admitted, recorded) + quantity <= limit, and admitting raises the
  mark — all inside one Lua script, so concurrent gates can never admit past the limit.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.dispatch import receiver
from django.utils import timezone
from redis.exceptions import NoScriptError

from metering.models import Aggregation, Meter
from metering.periods import period_bounds
from saasops.redis import client as redis_client
from tenants.config import config_effective
from tenants.models import LimitAction, Plan, PlanLimit, Tenant, TenantStatus
from tenants.signals import tenant_changed
from tenants.tokens import GENERATION_KEY

INFO_TTL = 300
BLOCKED_STATUSES = {TenantStatus.SUSPENDED: "suspended", TenantStatus.CANCELLED: "cancelled"}

_GATE_LUA = """
if ARGV[9] then
  -- Optimistic call (gate_check_expecting): decided from what the caller saw before. Still the
  -- same only if the token generation and the tenant's gate info are what it saw; else touch
  -- nothing and say so.
  if redis.call('GET', KEYS[4]) ~= ARGV[9] then return {'stale', ''} end
  local info = redis.call('GET', KEYS[5])
  if not info or redis.sha1hex(info) ~= ARGV[10] then return {'stale', ''} end
end
local now = tonumber(ARGV[1]); local rps = tonumber(ARGV[2]); local burst = tonumber(ARGV[3])
local qty = tonumber(ARGV[4]); local limit = tonumber(ARGV[5]); local block = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then return {'0', ''} end
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1]); local ts = tonumber(b[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rps)
if tokens < 1 then
  redis.call('HSET', KEYS[1], 't', tokens, 'ts', now); redis.call('EXPIRE', KEYS[1], 3600)
  return {'429', tostring((1 - tokens) / rps)}
end
local used = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0'))
if limit >= 0 and block == 1 and used + qty > limit then
  redis.call('HSET', KEYS[1], 't', tokens, 'ts', now); redis.call('EXPIRE', KEYS[1], 3600)
  return {'402', tostring(used)}
end
redis.call('HSET', KEYS[1], 't', tokens - 1, 'ts', now); redis.call('EXPIRE', KEYS[1], 3600)
redis.call('SET', KEYS[2], tostring(used + qty), 'EX', ttl)
return {'200', tostring(used + qty)}
"""

_APPLY_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local op = ARGV[1]; local v = tonumber(ARGV[2])
if op == 'add' then return redis.call('INCRBYFLOAT', KEYS[1], v) end
if op == 'max' then
  local cur = tonumber(redis.call('GET', KEYS[1]))
  if v > cur then redis.call('SET', KEYS[1], tostring(v), 'KEEPTTL') return tostring(v) end
  return tostring(cur)
end
redis.call('SET', KEYS[1], tostring(v), 'KEEPTTL')
return tostring(v)
"""


def _script(source: str) -> Any:
    return redis_client().register_script(source)


_gate_script = None
_apply_script = None


def _period_key(kind: str, tenant_id: int, start: datetime, meter: str) -> str:
    return f"saasops:{kind}:{tenant_id}:{int(start.timestamp())}:{meter}"


def _info_key(slug: str) -> str:
    return f"saasops:gateinfo:{slug}"


def _ttl(end: datetime) -> int:
    return int((end - timezone.now()).total_seconds()) + 35 * 86400


@receiver(tenant_changed)
def _drop_gate_info(sender: object, slugs: list[str], **kwargs: Any) -> None:
    if slugs:
        redis_client().delete(*[_info_key(s) for s in slugs])


def _format_price(limit: dict[str, Any]) -> str:
    size = int(limit["package_size"])
    return f"${Decimal(limit['package_price']):.2f} per {'unit' if size == 1 else f'{size:,}'}"


def _upgrade_for(plan: Plan | None, resource: str, included: int | None) -> dict[str, Any] | None:
    """The cheapest current public plan that includes more of the resource."""
    if plan is None:
        return None
    candidates = Plan.objects.public().filter(price_monthly__gt=plan.price_monthly).order_by("price_monthly")
    for candidate in candidates.prefetch_related("limits"):
        limit = next((lim for lim in candidate.limits.all() if lim.resource == resource), None)
        more = limit is None or limit.included is None or (included is not None and limit.included > included)
        if more:
            return {
                "plan": candidate.code,
                "name": candidate.name,
                "included": None if limit is None else limit.included,
                "price_monthly": candidate.price_monthly,
                "currency": candidate.currency,
            }
    return None


FETCH: Any = object()  # "read it from Redis now" (the default of the `cached` arguments below)


def gate_info_key(slug: str) -> str:
    return _info_key(slug)


def gate_info(slug: str, cached: Any = FETCH) -> dict[str, Any] | None:
    """What the gate needs about a tenant, cached in Redis and dropped on every change.
    `cached`: the value of gate_info_key(slug) if the caller has just read it (with other
    keys, in one round trip), None if it was missing."""
    if cached is FETCH:
        cached = redis_client().get(_info_key(slug))
    if cached is not None:
        return json.loads(cached) or None
    tenant = Tenant.objects.customers().select_related("plan").filter(slug=slug).first()
    if tenant is None:
        redis_client().set(_info_key(slug), "null", ex=10)
        return None
    config = config_effective(tenant=tenant)["config"]
    limits: dict[str, dict[str, Any]] = {}
    plan_limits = {lim.resource: lim for lim in PlanLimit.objects.filter(plan=tenant.plan_id)}
    for meter in Meter.objects.filter(is_active=True).exclude(resource=""):
        lim = plan_limits.get(meter.resource)
        if lim is None:
            continue
        limits[meter.code] = {
            "resource": lim.resource,
            "included": lim.included,
            "on_exceed": lim.on_exceed,
            "package_size": lim.overage_package_size,
            "package_price": str(lim.overage_package_price),
            "aggregation": meter.aggregation,
            "upgrade": _upgrade_for(tenant.plan, lim.resource, lim.included),
        }
    info = {
        "id": tenant.pk,
        "slug": tenant.slug,
        "status": tenant.status,
        "plan": tenant.plan.code if tenant.plan else None,
        "anchor": min(tenant.created_at.astimezone(UTC).day, 28),
        "rps": max(1, int(config.get("rate_limit_rps", 10))),
        "burst": max(1, int(config.get("rate_limit_burst", 20))),
        "limits": limits,
        "meters": list(Meter.objects.filter(is_active=True).values_list("code", flat=True)),
    }
    redis_client().set(_info_key(slug), json.dumps(info), ex=INFO_TTL)
    return info


def recorded_ensure(*, tenant_id: int, meter: str, start: datetime, end: datetime) -> None:
    """Rebuild a missing `recorded` counter from the rollups (SET NX: a racing rebuild or
    ingest that got there first wins, both hold the committed total)."""
    key = _period_key("usage", tenant_id, start, meter)
    if redis_client().exists(key):
        return
    from metering.selectors import meter_total

    total = meter_total(tenant_id=tenant_id, meter_code=meter, start=start, end=end)
    redis_client().set(key, str(total), ex=_ttl(end), nx=True)


def counters_apply(
    deltas: dict[tuple[int, datetime, str], tuple[str, float]], slugs: dict[int, str] | None = None
) -> None:
    """Move the `recorded` counters after an ingest commit; raise alerts on threshold crossings.
    A counter that does not exist yet is left alone (rebuilt from the database when needed).
    `slugs` (tenant id -> slug), when given, lets a move that crosses no alert threshold skip
    the alert check (and its queries) altogether."""
    global _apply_script
    if not deltas:
        return
    if _apply_script is None:
        _apply_script = _script(_APPLY_LUA)
    pipe = redis_client().pipeline(transaction=False)
    items = list(deltas.items())
    # EVALSHA by hand: a Script object in a pipeline costs a SCRIPT EXISTS round trip on every
    # execute. A Redis that lost its scripts answers NOSCRIPT for those commands (which then
    # did not run) and they are run again through the Script object, which loads it.
    for (tenant_id, start, meter), (op, value) in items:
        pipe.evalsha(_apply_script.sha, 1, _period_key("usage", tenant_id, start, meter), op, repr(value))
    # The tenants' gate info (their limits) rides in the same round trip.
    tenant_ids = sorted({tenant_id for (tenant_id, _, _) in deltas if tenant_id in (slugs or {})})
    for tenant_id in tenant_ids:
        pipe.get(_info_key((slugs or {})[tenant_id]))
    replies = pipe.execute(raise_on_error=False)
    results, cached = replies[: len(items)], dict(zip(tenant_ids, replies[len(items) :], strict=True))
    for i, ((tenant_id, start, meter), (op, value)) in enumerate(items):
        if isinstance(results[i], NoScriptError):
            results[i] = _apply_script(keys=[_period_key("usage", tenant_id, start, meter)], args=[op, repr(value)])
        elif isinstance(results[i], Exception):
            raise results[i]
    for tenant_id, reply in cached.items():
        if isinstance(reply, Exception):
            cached[tenant_id] = FETCH
    from metering.alerts import THRESHOLDS, alerts_check

    infos: dict[int, dict[str, Any] | None] = {}
    for ((tenant_id, start, meter), (op, value)), new in zip(items, results, strict=True):
        if new is None:
            continue
        before = float(new) - value if op == "add" else 0.0
        after = float(new)
        slug = (slugs or {}).get(tenant_id)
        if slug is not None:
            if tenant_id not in infos:
                infos[tenant_id] = gate_info(slug, cached[tenant_id])
            limit = (infos[tenant_id] or {}).get("limits", {}).get(meter)
            if not limit or not limit["included"]:
                continue
            included = int(limit["included"])
            if not any(before < included * t / 100 <= after for t in THRESHOLDS):
                continue
        alerts_check(tenant_id=tenant_id, meter_code=meter, period_start=start, before=before, after=after)


def counter_value(*, tenant_id: int, meter: str, start: datetime) -> float:
    raw = redis_client().get(_period_key("usage", tenant_id, start, meter))
    return float(raw) if raw is not None else 0.0


@dataclass
class GateDecision:
    status: int
    body: dict[str, Any]
    retry_after: int | None = None


def _error(status: int, code: str, message: str, **details: Any) -> GateDecision:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return GateDecision(status, body)


def gate_check(
    *, slug: str, meter: str, quantity: int, now: datetime | None = None, info_cached: Any = FETCH
) -> GateDecision:
    """May the tenant use `quantity` of `meter` now? 200 allowed (maybe as billed overage),
    429 rate limited, 402 hard quota reached, 403 tenant suspended/cancelled, 404/400 bad ask."""
    decision = _gate_check(slug=slug, meter=meter, quantity=quantity, now=now, info_cached=info_cached)
    assert decision is not None  # only an expectation can be stale
    return decision


@dataclass(frozen=True)
class Expectation:
    """What a caller saw in Redis before: the token generation it authenticated with and the
    tenant's gate info (raw). gate_check_expecting decides from them and the script checks,
    atomically with the decision, that both are still current."""

    generation: bytes
    info_raw: bytes

    @cached_property
    def info_sha1(self) -> str:
        return hashlib.sha1(self.info_raw).hexdigest()  # noqa: S324 - a fingerprint, not security


def gate_check_expecting(*, slug: str, meter: str, quantity: int, expect: Expectation) -> GateDecision | None:
    """gate_check in one Redis round trip, from what the caller saw before (`expect`); None
    when that is no longer current (a token or the tenant changed): nothing was touched, ask
    again the usual way. Only decisions the script makes are taken this way (allowed, 429,
    402); any other (unknown meter, tenant blocked) is None too, and asked again."""
    return _gate_check(slug=slug, meter=meter, quantity=quantity, now=None, info_cached=None, expect=expect)


def _gate_check(
    *, slug: str, meter: str, quantity: int, now: datetime | None, info_cached: Any, expect: Expectation | None = None
) -> GateDecision | None:
    global _gate_script
    if expect is not None:
        info = json.loads(expect.info_raw) or None
        if info is None or info["status"] in BLOCKED_STATUSES or meter not in info["meters"]:
            return None
    else:
        info = gate_info(slug, info_cached)
    if info is None:
        return _error(404, "unknown_tenant", f"No tenant with slug {slug!r}.")
    if info["status"] in BLOCKED_STATUSES:
        state = BLOCKED_STATUSES[info["status"]]
        return _error(
            403, f"tenant_{state}", f"Tenant {slug} is {state}; requests are refused until it is reactivated."
        )
    if meter not in info["meters"]:
        return _error(400, "unknown_meter", f"Unknown meter {meter!r}; known: {', '.join(sorted(info['meters']))}.")
    now = now or timezone.now()
    start, end = period_bounds(anchor=info["anchor"], at=now)
    limit = info["limits"].get(meter)
    hard = bool(limit and limit["included"] is not None and limit["on_exceed"] == LimitAction.BLOCK)
    # The `recorded` counter must exist for a limited meter; the script says when it does not
    # (touching nothing), and is run again once it has been rebuilt from the database.
    needs_recorded = bool(
        limit and limit["aggregation"] in (Aggregation.COUNT, Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST)
    )
    if _gate_script is None:
        _gate_script = _script(_GATE_LUA)
    keys = [
        f"saasops:bucket:{info['id']}",
        _period_key("admitted", info["id"], start, meter),
        _period_key("usage", info["id"], start, meter),
    ]
    args = [
        repr(time.time()),
        info["rps"],
        info["burst"],
        quantity,
        limit["included"] if hard and limit else -1,
        1 if hard else 0,
        _ttl(end),
        1 if needs_recorded else 0,
    ]
    if expect is not None:
        keys += [GENERATION_KEY, _info_key(slug)]
        args += [expect.generation, expect.info_sha1]
    code, value = _gate_script(keys=keys, args=args)
    if code == b"stale":
        return None
    code = int(code)
    if code == 0:
        recorded_ensure(tenant_id=info["id"], meter=meter, start=start, end=end)
        args[0], args[7] = repr(time.time()), 0
        code, value = _gate_script(keys=keys, args=args)
        if code == b"stale":
            return None
        code = int(code)
    if code == 429:
        wait = max(1, math.ceil(float(value)))
        decision = _error(
            429,
            "rate_limited",
            f"Rate limit of {info['rps']} requests/s (burst {info['burst']}) reached; retry in {wait} s.",
        )
        decision.retry_after = wait
        return decision
    used = float(value)
    if code == 402:
        assert limit is not None
        return _error(
            402,
            "quota_exceeded",
            f"ResourceLimitExceededError: {meter}: the {info['plan']} plan includes {limit['included']:,} "
            f"and {used:,.0f} are used this period.",
            meter=meter,
            limit=limit["included"],
            used=used,
            requested=quantity,
            overage_price=None,
            resets_at=end.isoformat(),
            upgrade=limit["upgrade"],
        )
    body: dict[str, Any] = {
        "allowed": True,
        "tenant": slug,
        "meter": meter,
        "quantity": quantity,
        "used": used,
        "limit": limit["included"] if limit else None,
        "remaining": max(0.0, limit["included"] - used) if limit and limit["included"] is not None else None,
        "resets_at": end.isoformat(),
        "overage": False,
    }
    if limit and limit["included"] is not None and used > limit["included"] and not hard:
        body["overage"] = True
        body["overage_price"] = {
            "package_size": limit["package_size"],
            "package_price": limit["package_price"],
            "text": _format_price(limit),
        }
    return GateDecision(200, body)
