"""After the retention period the schema is dropped and what accounting keeps is anonymised."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_exists

from billing.models import Invoice
from lifecycle.models import TenantDeletion
from lifecycle.plan_changes import subscription_cancel
from lifecycle.retention import retention_purge
from lifecycle.tests.test_plan_changes import owner, paying
from tenants.models import Domain, Membership, Tenant, TenantEvent

pytestmark = pytest.mark.django_db


def test_retention_purge_drops_schema_and_anonymises(make_tenant, settings):
    tenant = paying(make_tenant, "starter")
    result = subscription_cancel(tenant=tenant, actor=owner(tenant), reason="other", immediate=True)
    schema = tenant.schema_name
    assert schema_exists(schema)
    assert retention_purge(now=timezone.now() + timedelta(days=settings.LIFECYCLE_RETENTION_DAYS - 1)).deleted == []
    run = retention_purge(now=timezone.now() + timedelta(days=settings.LIFECYCLE_RETENTION_DAYS, minutes=1))
    assert run.deleted == [tenant.pk]
    assert not schema_exists(schema)
    tenant.refresh_from_db()
    assert tenant.name == f"Deleted tenant #{tenant.pk}"
    assert not Membership.objects.filter(tenant=tenant).exists()
    assert not Domain.objects.filter(tenant=tenant).exists()
    assert Invoice.objects.get(pk=result.invoice.pk).number == result.invoice.number  # kept for the books
    assert TenantEvent.objects.filter(tenant=tenant, kind="deleted").exists()
    assert TenantDeletion.objects.get(tenant=tenant).schema_name == schema
    assert retention_purge(now=timezone.now() + timedelta(days=60)).deleted == []  # idempotent


def test_active_tenants_are_never_purged(make_tenant, settings):
    tenant = paying(make_tenant, "starter")
    retention_purge(now=timezone.now() + timedelta(days=365))
    assert schema_exists(tenant.schema_name) and Tenant.objects.get(pk=tenant.pk).name.startswith("Test tenant")


def test_deleted_tenant_does_not_break_tenant_migrations(make_tenant, settings):
    """bootstrap's `migrate_tenants` skips a deleted tenant (row kept, schema gone) instead of
    failing every deploy after the first retention purge."""
    from tenants.migrate_fast import migrate_tenant_schemas

    tenant = paying(make_tenant, "starter")
    subscription_cancel(tenant=tenant, actor=owner(tenant), reason="other", immediate=True)
    retention_purge(now=timezone.now() + timedelta(days=settings.LIFECYCLE_RETENTION_DAYS, minutes=1))
    assert not schema_exists(tenant.schema_name)
    report = migrate_tenant_schemas(check=True, verbosity=0)
    assert tenant.schema_name not in report.failed
