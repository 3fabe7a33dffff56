"""Cache keys are tenant-aware: the same key in two tenants is two entries."""

import pytest
from django.core.cache import cache
from django_tenants.utils import schema_context

pytestmark = pytest.mark.django_db


def test_same_key_differs_per_tenant(tenant_a, tenant_b):
    with schema_context(tenant_a.schema_name):
        cache.set("greeting", "hello from A", 30)
    with schema_context(tenant_b.schema_name):
        assert cache.get("greeting") is None
        cache.set("greeting", "hello from B", 30)
    with schema_context(tenant_a.schema_name):
        assert cache.get("greeting") == "hello from A"
    assert cache.get("greeting") is None  # public schema


def test_cache_key_carries_schema(tenant_a):
    with schema_context(tenant_a.schema_name):
        assert cache.make_key("k").startswith("tenant_a:")
