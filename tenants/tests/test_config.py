"""Versioned tenant config: effective values, diffs, rollback, cache invalidation on commit,
concurrent writers and isolation between tenants."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections

from tenants.config import (
    config_cache_invalidate,
    config_effective,
    config_rollback,
    config_validate,
    config_version_create,
)
from tenants.models import Plan, Tenant, TenantConfigVersion, User
from tenants.plan_catalog import PROMPT

pytestmark = pytest.mark.django_db

GROWTH = {
    "model": "gpt-4o",
    "max_tokens": 2048,
    "retrieval_top_k": 8,
    "prompt_template": PROMPT,
    "rate_limit_rps": 20,
    "rate_limit_burst": 60,
}


@pytest.fixture(autouse=True)
def _fresh_config_cache(db, django_capture_on_commit_callbacks):
    """The config cache lives in Redis, which the test's rollback does not undo: drop the
    customers' entries before and after each test so no test sees another's config."""

    def drop() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            config_cache_invalidate(tenant_ids=list(Tenant.objects.customers().values_list("pk", flat=True)))

    drop()
    yield
    drop()


def test_effective_config_of_a_growth_tenant(tenant_a):
    body = config_effective(tenant=tenant_a)
    assert {k: v for k, v in body.items() if k != "etag"} == {
        "tenant": "tenant-a",
        "version": 1,
        "plan": "growth",
        "status": "trialing",  # growth has a 14-day trial
        "vector_shard": {"name": "shard-1", "connection": "vector-db-1"},
        "config": GROWTH,
        "overridden": [],
    }
    assert len(body["etag"]) == 32


def test_initial_version_is_empty(tenant_a):
    [initial] = TenantConfigVersion.objects.filter(tenant=tenant_a)
    assert (initial.version, initial.overrides, initial.changes, initial.note, initial.actor_type) == (
        1,
        {},
        {},
        "Initial configuration",
        "system",
    )


def test_versions_record_diffs_against_the_effective_config(tenant_a):
    staff = User.objects.create_user(username="ops", email="ops@saasops.test", password="pw-ops-12345", is_staff=True)

    v2 = config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096}, actor=staff, note="bigger answers")
    v3 = config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096, "retrieval_top_k": 12})
    v4 = config_version_create(tenant=tenant_a, overrides={"retrieval_top_k": 12})

    assert (v2.version, v2.changes, v2.actor_type, v2.created_by, v2.note) == (
        2,
        {"max_tokens": [2048, 4096]},
        "staff",
        staff,
        "bigger answers",
    )
    assert (v3.version, v3.changes, v3.actor_type) == (3, {"retrieval_top_k": [8, 12]}, "system")
    # Dropping an override goes back to the plan preset, and the diff says so.
    assert (v4.version, v4.changes) == (4, {"max_tokens": [4096, 2048]})


def test_a_change_is_visible_after_commit_not_before(tenant_a, django_capture_on_commit_callbacks):
    before = config_effective(tenant=tenant_a)  # now cached

    with django_capture_on_commit_callbacks(execute=True):
        config_version_create(tenant=tenant_a, overrides={"model": "gpt-4.1"})
        # Not committed yet: a reader (other connections see the old row) keeps the old value.
        assert config_effective(tenant=tenant_a) == before

    after = config_effective(tenant=tenant_a)
    assert (after["version"], after["config"]["model"], after["overridden"]) == (2, "gpt-4.1", ["model"])
    assert after["etag"] != before["etag"]


def test_rollback_is_a_new_version(tenant_a):
    config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096})
    config_version_create(tenant=tenant_a, overrides={"max_tokens": 8000, "model": "gpt-4.1"})

    rolled = config_rollback(tenant=tenant_a, to_version=2)

    assert (rolled.version, rolled.overrides, rolled.note) == (4, {"max_tokens": 4096}, "Rollback to version 2")
    assert rolled.changes == {"max_tokens": [8000, 4096], "model": ["gpt-4.1", "gpt-4o"]}
    assert list(TenantConfigVersion.objects.filter(tenant=tenant_a).values_list("version", flat=True)) == [4, 3, 2, 1]


def test_rollback_to_a_missing_version_changes_nothing(tenant_a):
    with pytest.raises(ValidationError) as error:
        config_rollback(tenant=tenant_a, to_version=9)
    assert error.value.messages == ["Version 9 does not exist for this tenant."]
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_rollback_cannot_reach_another_tenants_version(tenant_a, tenant_b):
    config_version_create(tenant=tenant_b, overrides={"max_tokens": 99})
    with pytest.raises(ValidationError):
        config_rollback(tenant=tenant_a, to_version=2)  # tenant B has a v2, tenant A does not


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        (
            {"colour": "blue"},
            {
                "colour": [
                    "unknown key; allowed keys are max_tokens, model, prompt_template, rate_limit_burst, "
                    "rate_limit_rps, retrieval_top_k"
                ]
            },
        ),
        ({"max_tokens": "4096"}, {"max_tokens": ["must be a whole number, got str"]}),
        ({"max_tokens": True}, {"max_tokens": ["must be a whole number, got bool"]}),
        ({"max_tokens": 0}, {"max_tokens": ["must be between 1 and 128000"]}),
        ({"rate_limit_rps": 50, "rate_limit_burst": 10}, {"rate_limit_burst": ["must be at least rate_limit_rps"]}),
        ({"model": "gpt 4o; drop"}, {"model": ["must be a model name (letters, digits, . _ : / -)"]}),
    ],
)
def test_invalid_overrides_make_no_version(tenant_a, overrides, errors):
    with pytest.raises(ValidationError) as error:
        config_version_create(tenant=tenant_a, overrides=overrides)
    assert error.value.message_dict == errors
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_workspace_edits_keep_staff_keys(tenant_a):
    config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096})
    with pytest.raises(ValidationError) as error:
        config_validate({"max_tokens": 1}, tenant_editable_only=True)
    assert error.value.message_dict == {"max_tokens": ["cannot be changed from the workspace"]}

    v3 = config_version_create(tenant=tenant_a, overrides={"prompt_template": "Be brief."}, tenant_editable_only=True)
    assert v3.overrides == {"max_tokens": 4096, "prompt_template": "Be brief."}


def test_writing_one_tenant_never_changes_another(tenant_a, tenant_b, django_capture_on_commit_callbacks):
    b_before = config_effective(tenant=tenant_b)

    with django_capture_on_commit_callbacks(execute=True):
        config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096, "model": "gpt-4.1"})
        config_rollback(tenant=tenant_a, to_version=1)

    assert config_effective(tenant=tenant_b) == b_before
    assert list(TenantConfigVersion.objects.filter(tenant=tenant_b).values_list("version", "overrides")) == [(1, {})]
    assert config_effective(tenant=tenant_a)["version"] == 3


# --- Concurrency: real transactions on separate connections --------------------------------


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run fn on its own thread and database connection (so its transactions commit)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def run_together(fns: list[Callable[[], Any]]) -> list[Any]:
    """Start every fn at the same moment, each on its own thread and connection."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fns[i]()
        except BaseException as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(fns))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@contextmanager
def committed_probe_tenant() -> Iterator[Tenant]:
    """A customer tenant row committed outside the test's transaction (no schema: config
    lives in the public schema), removed again afterwards with everything it owns."""

    def create() -> Tenant:
        growth = Plan.objects.get(code="growth")
        [tenant] = Tenant.objects.bulk_create(  # bulk_create: no schema is made
            [Tenant(name="Probe", slug="probe-concurrency", schema_name="probe_concurrency", plan=growth)]
        )
        return tenant

    tenant = in_thread(create)
    try:
        yield tenant
    finally:

        def remove() -> None:
            TenantConfigVersion.objects.filter(tenant_id=tenant.pk).delete()
            Tenant.objects.filter(pk=tenant.pk).delete()
            config_cache_invalidate(tenant_ids=[tenant.pk])  # autocommit: runs at once

        in_thread(remove)


def test_concurrent_writers_get_distinct_sequential_versions():
    writers = 8
    with committed_probe_tenant() as tenant:
        results = run_together(
            [
                lambda i=i: config_version_create(tenant=tenant, overrides={"max_tokens": 1000 + i}, note=f"w{i}")
                for i in range(writers)
            ]
        )
        assert [r for r in results if isinstance(r, BaseException)] == []
        rows = list(TenantConfigVersion.objects.filter(tenant=tenant).order_by("version"))

    assert [row.version for row in rows] == list(range(1, writers + 1))
    assert sorted(row.note for row in rows) == sorted(f"w{i}" for i in range(writers))
    # Each diff was taken under the lock: its "old" is exactly what the version before set.
    previous = GROWTH["max_tokens"]
    for row in rows:
        assert row.changes == {"max_tokens": [previous, row.overrides["max_tokens"]]}
        previous = row.overrides["max_tokens"]
