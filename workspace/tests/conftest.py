"""Fixtures of the workspace tests: a member of tenant A in every role, usage events, and a
small plan whose limits are easy to cross."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

ROLES = ("owner", "admin", "billing", "viewer")


@pytest.fixture
def users_a(tenant_a, owner_a):
    """{role: user} of tenant A (the owner is the provisioned one)."""
    from tenants.models import User
    from tenants.services import membership_add

    users = {"owner": owner_a}
    for role in ROLES[1:]:
        user = User.objects.create_user(username=f"{role}@tenant-a.test", email=f"{role}@tenant-a.test",
                                        password="pw-member-123")  # fmt: skip
        membership_add(tenant=tenant_a, user=user, role=role)
        users[role] = user
    return users


@pytest.fixture
def as_role(client_for, tenant_a, users_a):
    """as_role("viewer") -> a client signed in on tenant A's host with that role."""

    def make(role: str):
        return client_for(tenant_a, users_a[role])

    return make


def query(event_id: str, tenant: str, ts, **props):
    base = {"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "latency_ms": 200,
            "department": "legal", "user": "ana"}  # fmt: skip
    stamp = ts.isoformat() if hasattr(ts, "isoformat") else ts
    return {"id": event_id, "tenant": tenant, "type": "query", "timestamp": stamp, "properties": {**base, **props}}


@pytest.fixture
def record():
    """record(events) -> stores usage events through metering's ingest service."""
    from metering.ledger import events_record

    def store(events):
        result = events_record(raw_events=events)
        assert result.rejected == 0, result.as_dict()
        return result

    return store


@pytest.fixture
def tiny_plan(db):
    """$100.00 a month; 10 API calls included, then $1.00 per started 5; 3 seats; no trial."""
    from tenants.models import LimitAction, Plan, PlanLimit
    from tenants.plan_catalog import PROMPT

    plan = Plan.objects.create(
        code="tiny", name="Tiny", price_monthly=10_000, price_yearly=100_000, trial_days=0, is_public=False,
        config_preset={"model": "gpt-4o-mini", "max_tokens": 256, "retrieval_top_k": 3, "prompt_template": PROMPT,
                       "rate_limit_rps": 5, "rate_limit_burst": 10},
    )  # fmt: skip
    PlanLimit.objects.create(plan=plan, resource="api_calls", included=10, on_exceed=LimitAction.OVERAGE,
                             overage_package_size=5, overage_package_price=Decimal("1.00"))  # fmt: skip
    PlanLimit.objects.create(plan=plan, resource="seats", included=3)
    return plan


@pytest.fixture
def tiny_tenant(make_tenant, tiny_plan):
    """A tenant on the tiny plan whose subscription bills the whole current period."""
    from billing.models import Subscription
    from metering.periods import quota_period

    tenant = make_tenant(plan="tiny")
    start, _ = quota_period(tenant=tenant, at=timezone.now())
    Subscription.objects.filter(tenant=tenant).update(billing_starts_at=start)
    return tenant


def recent(minutes: int = 1):
    return timezone.now() - timedelta(minutes=minutes)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Members made here get passwords; hashing them at full strength costs ~0.3 s each."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]


@pytest.fixture(autouse=True)
def _forget_latency_cache():
    """The latency cache assumes rollups only grow; a test's rollback shrinks them again."""
    yield
    import redis as redis_py
    from django.conf import settings

    redis = redis_py.Redis.from_url(settings.REDIS_URL)
    keys = list(redis.scan_iter(match="*ws-latency:*", count=1000))
    if keys:
        redis.delete(*keys)
    redis.close()
