"""One shared redis-py client for what is not a cache entry (heartbeats, rate-limit buckets).
Django's cache keys are prefixed per tenant; these keys are platform-wide on purpose."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
