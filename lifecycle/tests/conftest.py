"""Lifecycle test helpers: rate-limit buckets cleared around each test (they live in Redis,
which a test's rollback does not undo), signup helpers that go through HTTP."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core import mail


def _clear_rate_limits() -> None:
    import redis as redis_py

    redis = redis_py.Redis.from_url(settings.REDIS_URL)
    keys = list(redis.scan_iter(match="*allauth:rl*", count=1000))
    if keys:
        redis.delete(*keys)
    redis.close()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    _clear_rate_limits()
    yield
    _clear_rate_limits()


LINK_RE = re.compile(r"https?://[^\s]+/signup/verify/[^\s/]+/")


def verify_path(message) -> str:
    """The path of the verification link in an email (hosts are the public host's)."""
    match = LINK_RE.search(message.body)
    assert match, message.body
    return "/" + match.group(0).split("/", 3)[3]


@pytest.fixture
def signup_post(client_for):
    """signup_post(client=None, **fields) -> response of POST /signup/ on the public host."""
    from tenants.models import Plan

    def post(client=None, **fields):
        client = client or client_for()
        data = {
            "email": "founder@newco.test",
            "password": "a-Strong-pass-2026",
            "company": "NewCo",
            "slug": "newco",
            "plan": Plan.objects.get(code="starter").pk,
            "interval": "monthly",
        }
        data.update(fields)
        return client.post("/signup/", data)

    return post


def outbox_to(address: str) -> list:
    return [m for m in mail.outbox if address in m.to]
