"""The fast path's gate in one Redis round trip (saasops/fastpath.py, metering.quota
Expectation): a gate call decides from the token generation and gate info it saw before, and
the script checks atomically that they are still current — a token revoked or a tenant
changed since is noticed on the very next call, and the stale attempt changes nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings

from saasops import fastpath
from saasops.redis import client as redis_client
from tenants.models import PlatformToken, TenantStatus
from tenants.status import tenant_status_change
from tenants.tokens import platform_token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_fast_path_memory():
    """Nothing seen before each test; and, as Django's test client does, the request signals
    do not close the test's database connection (its transaction holds the test data)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    fastpath._state.seen_info.clear()
    fastpath._state.seen_generation = None
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    fastpath._state.seen_info.clear()
    fastpath._state.seen_generation = None


def gate(raw_token: str, slug: str, quantity: int = 1) -> tuple[int, dict]:
    body = json.dumps({"tenant": slug, "meter": "api_calls", "quantity": quantity}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/gate",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": settings.BASE_DOMAIN,
        "SERVER_PORT": "80",
        "HTTP_HOST": settings.BASE_DOMAIN,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {raw_token}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    statuses: list[str] = []
    content = b"".join(fastpath.application(environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0]), json.loads(content)


@pytest.fixture
def mgets(monkeypatch):
    """How many times the fast path read the gate's keys with an MGET."""
    calls = []
    real = fastpath._gate_keys

    def counted(slug: str):
        calls.append(slug)
        return real(slug)

    monkeypatch.setattr(fastpath, "_gate_keys", counted)
    return calls


@pytest.fixture
def tenant(make_tenant):
    """A tenant of its own (new id: no counters left in Redis by another test), active."""
    made = make_tenant("growth")
    tenant_status_change(tenant=made, to=TenantStatus.ACTIVE, reason="test")
    return made


def test_a_seen_tenant_is_decided_in_one_round_trip(platform_token, tenant, mgets):
    # 1st call: the gate info is not in Redis yet (read from the database and stored);
    # 2nd: read from Redis and remembered; from the 3rd on: no MGET, the script checks.
    answers = [gate(platform_token, tenant.slug) for _ in range(4)]
    assert [(status, body["used"]) for status, body in answers] == [(200, 1.0), (200, 2.0), (200, 3.0), (200, 4.0)]
    assert len(mgets) == 2
    assert tenant.slug in fastpath._state.seen_info


def test_counts_are_the_same_on_both_routes(platform_token, tenant, mgets):
    used = [gate(platform_token, tenant.slug, quantity=2)[1]["used"] for _ in range(5)]
    assert used == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert len(mgets) == 2


def test_a_tenant_suspended_since_is_refused_at_once_and_nothing_counted(
    platform_token, tenant, mgets, django_capture_on_commit_callbacks
):
    assert [gate(platform_token, tenant.slug)[1]["used"] for _ in range(3)] == [1.0, 2.0, 3.0]
    with django_capture_on_commit_callbacks(execute=True):
        tenant_status_change(tenant=tenant, to=TenantStatus.SUSPENDED, reason="test")
    before = len(mgets)
    status, body = gate(platform_token, tenant.slug)
    assert status == 403 and body["error"]["code"] == "tenant_suspended"
    assert len(mgets) == before + 1  # what was seen is stale: read again
    with django_capture_on_commit_callbacks(execute=True):
        tenant_status_change(tenant=tenant, to=TenantStatus.ACTIVE, reason="test")
    assert gate(platform_token, tenant.slug)[1]["used"] == 4.0  # the refused call counted nothing


def test_a_token_revoked_since_is_refused_at_once_and_nothing_counted(platform_token, tenant, mgets):
    assert [gate(platform_token, tenant.slug)[1]["used"] for _ in range(3)] == [1.0, 2.0, 3.0]
    platform_token_revoke(token=PlatformToken.objects.get(name="test product backend"))
    status, body = gate(platform_token, tenant.slug)
    assert status == 401
    admitted = list(redis_client().scan_iter(f"saasops:admitted:{tenant.pk}:*:api_calls"))
    assert [float(redis_client().get(k)) for k in admitted] == [3.0]


def test_changed_limits_apply_to_the_next_call(platform_token, tenant, django_capture_on_commit_callbacks):
    from tenants.config import config_version_create

    assert [gate(platform_token, tenant.slug)[0] for _ in range(3)] == [200, 200, 200]
    with django_capture_on_commit_callbacks(execute=True):
        config_version_create(tenant=tenant, overrides={"rate_limit_rps": 1, "rate_limit_burst": 1}, note="test")
    statuses = [gate(platform_token, tenant.slug)[0] for _ in range(3)]
    assert statuses[0] == 200 and 429 in statuses[1:]  # the new bucket (burst 1) at once
