"""The tenant status state machine: every pair of statuses, the history row each change
records, serialisation of concurrent changes, and non-customer tenants."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tenants.config import config_cache_invalidate, config_effective
from tenants.models import Tenant, TenantEvent, TenantKind, User
from tenants.status import (
    TRANSITIONS,
    IllegalTransition,
    tenant_cancel,
    tenant_reactivate,
    tenant_status_change,
    tenant_suspend,
)

pytestmark = pytest.mark.django_db

STATUSES = ["trialing", "active", "past_due", "suspended", "cancelled"]

# The table, written out by hand: (from, to) -> the history event it records.
ALLOWED = {
    ("trialing", "active"): "activated",
    ("trialing", "past_due"): "payment_past_due",
    ("trialing", "suspended"): "suspended",
    ("trialing", "cancelled"): "cancelled",
    ("active", "past_due"): "payment_past_due",
    ("active", "suspended"): "suspended",
    ("active", "cancelled"): "cancelled",
    ("past_due", "active"): "activated",
    ("past_due", "suspended"): "suspended",
    ("past_due", "cancelled"): "cancelled",
    ("suspended", "active"): "reactivated",
    ("suspended", "cancelled"): "cancelled",
    ("cancelled", "active"): "reactivated",
}
ALL_PAIRS = [(a, b) for a in STATUSES for b in STATUSES]


@pytest.fixture
def staff(db):
    return User.objects.create_user(username="ops@saasops.test", email="ops@saasops.test", is_staff=True)


def put_in(tenant: Tenant, status: str) -> Tenant:
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.refresh_from_db()
    return tenant


def events_of(tenant: Tenant):
    return TenantEvent.objects.filter(tenant=tenant).order_by("id")


def test_table_matches_the_module():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == set(ALLOWED)
    assert len(ALLOWED) == 13 and len(ALL_PAIRS) - len(ALLOWED) == 12


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p in ALLOWED])
def test_allowed_change_applies_and_records_event(tenant_a, staff, current, target):
    put_in(tenant_a, current)
    before = events_of(tenant_a).count()
    started = timezone.now()

    returned = tenant_status_change(tenant=tenant_a, to=target, actor=staff, reason="ticket #42")

    assert returned.status == target
    tenant_a.refresh_from_db()
    assert tenant_a.status == target
    assert tenant_a.status_changed_at >= started
    assert events_of(tenant_a).count() == before + 1
    event = events_of(tenant_a).last()
    assert event.kind == ALLOWED[(current, target)]
    assert (event.actor, event.actor_type, event.note) == (staff, "staff", "ticket #42")
    assert event.details == {"from": current, "to": target}


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_refused_change_raises_and_changes_nothing(tenant_a, staff, current, target):
    put_in(tenant_a, current)
    changed_at = tenant_a.status_changed_at
    before = events_of(tenant_a).count()

    with pytest.raises(IllegalTransition) as caught:
        tenant_status_change(tenant=tenant_a, to=target, actor=staff, reason="should not happen")

    assert "cannot become" in caught.value.messages[0]
    tenant_a.refresh_from_db()
    assert (tenant_a.status, tenant_a.status_changed_at) == (current, changed_at)
    assert events_of(tenant_a).count() == before


def test_unknown_status_is_refused(tenant_a):
    with pytest.raises(IllegalTransition, match="not a tenant status"):
        tenant_status_change(tenant=tenant_a, to="frozen")
    tenant_a.refresh_from_db()
    assert tenant_a.status == "trialing"


def test_system_change_records_system_actor_and_extra_details(tenant_a):
    tenant_status_change(tenant=tenant_a, to="past_due", event="dunning_started", details={"invoice": 7})
    event = events_of(tenant_a).last()
    assert (event.kind, event.actor, event.actor_type) == ("dunning_started", None, "system")
    assert event.details == {"from": "trialing", "to": "past_due", "invoice": 7}


def test_helpers_suspend_reactivate_cancel(tenant_a, staff):
    put_in(tenant_a, "active")
    tenant_suspend(tenant=tenant_a, actor=staff, reason="abuse report")
    tenant_reactivate(tenant=tenant_a, actor=staff, reason="resolved")
    tenant_cancel(tenant=tenant_a, actor=staff, reason="customer asked")
    kinds = list(events_of(tenant_a).values_list("kind", "note"))[-3:]
    assert kinds == [("suspended", "abuse report"), ("reactivated", "resolved"), ("cancelled", "customer asked")]
    tenant_a.refresh_from_db()
    assert tenant_a.status == "cancelled"


def test_change_drops_cached_config_on_commit(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        config_cache_invalidate(tenant_ids=[tenant_a.pk])  # nothing left over from other tests
    assert config_effective(tenant=tenant_a)["status"] == "trialing"  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        tenant_status_change(tenant=tenant_a, to="active")
    assert config_effective(tenant=tenant_a)["status"] == "active"


@pytest.mark.parametrize("kind", [TenantKind.PUBLIC, TenantKind.TEMPLATE])
def test_non_customer_tenants_are_refused(kind):
    tenant = Tenant.objects.get(kind=kind)
    with pytest.raises(IllegalTransition, match="Only customer tenants"):
        tenant_status_change(tenant=tenant, to="suspended")
    tenant.refresh_from_db()
    assert tenant.status == "active"
    assert not TenantEvent.objects.filter(tenant=tenant).exists()


def _in_thread(target) -> threading.Thread:
    """Run target on its own database connection (committed for real, outside the test's
    transaction), closing the connection afterwards."""

    def run():
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_concurrent_changes_serialise(tenant_b):
    """Two staff suspend the same tenant at once. The first holds the row lock until it
    commits; the second waits, then sees `suspended` and is refused. Without the lock both
    would read `trialing` and both would record a suspension."""
    pk = tenant_b.pk
    original = Tenant.objects.values("status", "status_changed_at").get(pk=pk)
    last_event = events_of(tenant_b).values_list("id", flat=True).last()
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first():
        with transaction.atomic():
            tenant_status_change(tenant=Tenant.objects.get(pk=pk), to="suspended", reason="first")
            holding.set()
            release.wait(10)
        outcome["first"] = "suspended"

    def second():
        try:
            tenant_status_change(tenant=Tenant.objects.get(pk=pk), to="suspended", reason="second")
            outcome["second"] = "suspended"
        except IllegalTransition as exc:
            outcome["second"] = exc

    def restore():
        Tenant.objects.filter(pk=pk).update(**original)
        TenantEvent.objects.filter(tenant_id=pk, id__gt=last_event).delete()

    threads: list[threading.Thread] = []
    try:
        threads.append(_in_thread(first))
        assert holding.wait(10)
        threads.append(_in_thread(second))
        threads[1].join(0.5)
        assert threads[1].is_alive(), "the second change must wait for the first one's row lock"
        release.set()
        for thread in threads:
            thread.join(10)
        assert outcome["first"] == "suspended"
        assert isinstance(outcome["second"], IllegalTransition)
        assert "suspended tenant cannot become suspended" in outcome["second"].messages[0]
        kinds = list(TenantEvent.objects.filter(tenant_id=pk, id__gt=last_event).values_list("kind", "note"))
        assert kinds == [("suspended", "first")]
    finally:
        # Both threads end before the session tenant is put back as it was.
        release.set()
        for thread in threads:
            thread.join(10)
        _in_thread(restore).join(10)
