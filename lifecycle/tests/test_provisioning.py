"""lifecycle.services.tenant_provision: one call makes a whole, working tenant — or nothing.

Most tests run inside the test's transaction (tenants and schemas made here roll back with
it). The concurrency test cannot: its two threads each commit on their own connection, so it
runs outside any test transaction (no `db` fixture, and no `transactional_db` either: that
would flush the session's tenants) and deletes what it made, schema included."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists

from lifecycle.models import ProvisioningAttempt
from lifecycle.services import ProvisioningError, tenant_provision
from tenants.models import Domain, MemberRole, Membership, Plan, Tenant, TenantConfigVersion, TenantEvent, User


def provision(slug: str, *, key: str | None = None, plan: str | Plan = "growth", **kwargs) -> Tenant:
    return tenant_provision(
        key=key or f"test-provisioning:{slug}",
        name=kwargs.pop("name", f"Company {slug}"),
        slug=slug,
        owner_email=kwargs.pop("owner_email", f"owner@{slug}.test"),
        owner_password="pw-owner-123",
        plan=plan if isinstance(plan, Plan) else Plan.objects.get(code=plan),
        **kwargs,
    )


def attempts(key: str) -> list[str]:
    return list(
        ProvisioningAttempt.objects.filter(key=key).order_by("created_at", "pk").values_list("outcome", flat=True)
    )


def test_provisioning_makes_a_whole_tenant(db):
    tenant = provision("happy-path", name="Happy Path Inc")

    assert schema_exists(tenant.schema_name)
    assert tenant.schema_name == "happy_path"
    assert tenant.status == "trialing" and tenant.trial_ends_at is not None  # growth has a trial
    domain = Domain.objects.get(tenant=tenant)
    assert domain.domain == "happy-path.localhost" and domain.is_primary
    owner = Membership.objects.get(tenant=tenant)
    assert owner.role == MemberRole.OWNER
    assert owner.user.email == "owner@happy-path.test" and owner.user.check_password("pw-owner-123")
    versions = TenantConfigVersion.objects.filter(tenant=tenant)
    assert list(versions.values_list("version", flat=True)) == [1]
    tenant.refresh_from_db()
    assert tenant.vector_shard is not None
    events = list(TenantEvent.objects.filter(tenant=tenant).values_list("kind", flat=True))
    assert "provisioned" in events and "created" in events
    provisioned = TenantEvent.objects.get(tenant=tenant, kind="provisioned")
    assert provisioned.details["plan"] == "growth" and provisioned.details["shard"] == tenant.vector_shard.name
    attempt = ProvisioningAttempt.objects.get(key="test-provisioning:happy-path")
    assert attempt.outcome == ProvisioningAttempt.Outcome.CREATED and attempt.tenant_id == tenant.pk

    from workspace.models import WorkspaceSettings

    with schema_context(tenant.schema_name):
        assert WorkspaceSettings.objects.get(pk=1).display_name == "Happy Path Inc"


def test_a_plan_without_trial_starts_active(db):
    tenant = provision("no-trial", plan="free")
    assert tenant.status == "active" and tenant.trial_ends_at is None


def test_the_same_key_twice_makes_one_tenant(db):
    first = provision("twice-over", key="test-provisioning:same-key")
    second = provision("twice-over", key="test-provisioning:same-key")
    assert second.pk == first.pk
    assert Tenant.objects.filter(provisioning_key="test-provisioning:same-key").count() == 1
    assert attempts("test-provisioning:same-key") == ["created", "existing"]


def test_the_same_key_from_two_threads_at_once_makes_one_tenant(django_db_blocker):
    key = f"test-provisioning:race:{uuid.uuid4().hex[:8]}"
    slug = f"race-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(2)
    made: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            plan = Plan.objects.get(code="growth")
            barrier.wait(timeout=10)
            made.append(provision(slug, key=key, plan=plan).pk)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own connection

    with django_db_blocker.unblock():
        try:
            threads = [threading.Thread(target=worker) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert not errors, errors
            assert len(made) == 2 and made[0] == made[1]
            assert Tenant.objects.filter(provisioning_key=key).count() == 1
            assert sorted(attempts(key)) == ["created", "existing"]
            tenant = Tenant.objects.get(provisioning_key=key)
            assert schema_exists(tenant.schema_name)
            assert Membership.objects.filter(tenant=tenant, role=MemberRole.OWNER).count() == 1
        finally:
            connection.set_schema_to_public()
            for tenant in Tenant.objects.filter(provisioning_key=key):
                tenant.delete(force_drop=True)
            ProvisioningAttempt.objects.filter(key=key).delete()
            User.objects.filter(email=f"owner@{slug}.test").delete()
            assert not schema_exists(slug.replace("-", "_"))


# Every step after the schema exists, made to fail: nothing of the tenant may remain.
FAILING_STEPS = [
    "lifecycle.services._owner_get_or_create",
    "lifecycle.services.membership_add",
    "lifecycle.services.shard_assign",
    "lifecycle.services.config_version_create",
    "lifecycle.services.tenant_event_record",
    "tenants.services.tenant_event_record",  # the "created" event, inside tenant_create
    "tenants.migrate_fast.scan_schemas",  # inside Tenant.save, right after the clone
]


@pytest.mark.parametrize("step", FAILING_STEPS)
def test_a_failure_at_any_step_leaves_nothing_but_the_failed_attempt(db, monkeypatch, step):
    def fail(*args, **kwargs):
        raise RuntimeError(f"injected failure in {step}")

    monkeypatch.setattr(step, fail)
    slug = "doomed-" + re.sub(r"[^a-z]+", "-", step.rsplit(".", 1)[1]).strip("-")[:20]
    with pytest.raises(ProvisioningError, match="rolled back"):
        provision(slug, key=f"test-provisioning:{slug}")

    assert not Tenant.objects.filter(slug=slug).exists()
    assert not schema_exists(slug.replace("-", "_"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [slug.replace("-", "_")])
        assert cursor.fetchone() is None
    assert not Domain.objects.filter(domain=f"{slug}.localhost").exists()
    assert not Membership.objects.filter(user__email=f"owner@{slug}.test").exists()
    assert not User.objects.filter(email=f"owner@{slug}.test").exists()
    attempt = ProvisioningAttempt.objects.get(key=f"test-provisioning:{slug}")
    assert attempt.outcome == ProvisioningAttempt.Outcome.FAILED
    assert f"RuntimeError: injected failure in {step}" in attempt.error
    assert attempt.tenant is None


BAD_SLUGS = {
    "admin": "“admin” is reserved; please choose another address.",
    "api": "“api” is reserved; please choose another address.",
    "public": "“public” is reserved; please choose another address.",
    "www": "“www” is reserved; please choose another address.",
    "ab": "The workspace address must be 3 to 40 characters long.",
    "a" * 41: "The workspace address must be 3 to 40 characters long.",
    "Acme": "Use lowercase letters, digits and single hyphens; start with a letter and end with a letter or digit.",
    "acme_co": "Use lowercase letters, digits and single hyphens; start with a letter and end with a letter or digit.",
    "acme-": "Use lowercase letters, digits and single hyphens; start with a letter and end with a letter or digit.",
    "ac--me": "Use lowercase letters, digits and single hyphens; start with a letter and end with a letter or digit.",
}


@pytest.mark.parametrize("slug", list(BAD_SLUGS), ids=lambda s: s if len(s) < 20 else f"{len(s)}-chars")
def test_bad_slugs_are_refused_with_their_message(db, slug):
    with pytest.raises(ValidationError) as refused:
        provision(slug, key=f"test-provisioning:bad:{slug}")
    assert refused.value.messages == [BAD_SLUGS[slug]]
    assert not Tenant.objects.filter(provisioning_key=f"test-provisioning:bad:{slug}").exists()
    attempt = ProvisioningAttempt.objects.get(key=f"test-provisioning:bad:{slug}")
    assert attempt.outcome == "failed" and attempt.error == BAD_SLUGS[slug]


def test_a_forty_character_slug_is_fine(db):
    slug = "a" * 40
    assert provision(slug).slug == slug


def test_a_taken_slug_is_refused_with_a_free_suggestion(db, tenant_a):
    with pytest.raises(ValidationError) as refused:
        provision("tenant-a", key="test-provisioning:taken")
    (message,) = refused.value.messages
    match = re.fullmatch(r"The address “tenant-a” is taken; try “(tenant-a-\d{4})”\.", message)
    assert match, message
    assert not Tenant.objects.filter(slug=match.group(1)).exists()
    assert Tenant.objects.filter(slug="tenant-a").count() == 1
    assert attempts("test-provisioning:taken") == ["failed"]


def test_a_retired_plan_is_refused(db):
    plan = Plan.objects.get(code="starter")
    plan.retired_at = timezone.now()
    plan.save(update_fields=["retired_at"])
    with pytest.raises(ValidationError) as refused:
        provision("late-comer", plan=plan)
    assert refused.value.messages == [f"{plan.name} is no longer offered; choose a current plan."]
    assert not Tenant.objects.filter(slug="late-comer").exists()
    assert not schema_exists("late_comer")
