"""Tenant context travels with Celery tasks, through a real worker and Redis."""

import pytest
from django_tenants.utils import schema_context

from saasops.celery import MissingTenantError
from workspace.tasks import workspace_describe

pytestmark = pytest.mark.django_db


def test_task_sent_from_tenant_a_runs_in_a_schema_on_real_worker(celery_live, tenant_a, tenant_b):
    with schema_context(tenant_a.schema_name):
        result_a = workspace_describe.delay()
    with schema_context(tenant_b.schema_name):
        result_b = workspace_describe.delay()
    assert result_a.get(timeout=30) == {"schema": "tenant_a", "display_name": "Tenant A"}
    assert result_b.get(timeout=30) == {"schema": "tenant_b", "display_name": "Tenant B"}


def test_tenant_task_sent_without_tenant_raises():
    with pytest.raises(MissingTenantError, match="needs a tenant"):
        workspace_describe.delay()


def test_tenant_task_run_without_tenant_refuses():
    # A message that arrives with no schema header (e.g. sent by another producer).
    with pytest.raises(MissingTenantError, match="without a tenant schema"):
        workspace_describe.apply().get()


def test_tenant_task_runs_eagerly_inside_tenant(tenant_a):
    with schema_context(tenant_a.schema_name):
        assert workspace_describe.apply().get() == {"schema": "tenant_a", "display_name": "Tenant A"}
