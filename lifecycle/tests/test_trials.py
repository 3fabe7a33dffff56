"""Trials: reminders once each, conversion or suspension at the end, extension."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing.models import BillingProfile, Subscription
from lifecycle.trials import (
    trial_end,
    trial_ends_process,
    trial_extend,
    trial_payment_method_added,
    trial_reminders_send,
)
from tenants.models import Tenant, TenantEvent

pytestmark = pytest.mark.django_db


def trialing(make_tenant, ends_in: timedelta) -> Tenant:
    tenant = make_tenant("starter")
    Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=timezone.now() + ends_in)
    tenant.refresh_from_db()
    return tenant


def reminders_for(tenant):
    return [m for m in mail.outbox if f"owner@{tenant.slug}.test" in m.to and "trial ends" in m.subject]


def test_reminders_three_and_one_day_before_each_once(make_tenant):
    tenant = trialing(make_tenant, timedelta(days=2, hours=23))
    now = timezone.now()
    trial_reminders_send(now=now)
    trial_reminders_send(now=now + timedelta(hours=1))  # the hourly job again: nothing new
    assert [m.subject for m in reminders_for(tenant)] == ["Your saasops trial ends in 3 days"]
    trial_reminders_send(now=now + timedelta(days=2))  # 23 hours left
    trial_reminders_send(now=now + timedelta(days=2, hours=1))
    assert [m.subject for m in reminders_for(tenant)] == [
        "Your saasops trial ends in 3 days",
        "Your saasops trial ends in 1 day",
    ]
    events = TenantEvent.objects.filter(tenant=tenant, kind="trial_reminder")
    assert sorted(e.details["days_before"] for e in events) == [1, 3]


def test_late_job_sends_only_the_nearer_reminder(make_tenant):
    tenant = trialing(make_tenant, timedelta(hours=20))
    trial_reminders_send()
    trial_reminders_send()
    assert [m.subject for m in reminders_for(tenant)] == ["Your saasops trial ends in 1 day"]


def test_no_reminder_far_from_the_end(make_tenant):
    tenant = trialing(make_tenant, timedelta(days=10))
    trial_reminders_send()
    assert not reminders_for(tenant)


def test_trial_end_with_payment_method_converts(make_tenant):
    tenant = trialing(make_tenant, timedelta(seconds=-1))
    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")
    run = trial_ends_process()
    assert tenant.pk in run.converted
    tenant.refresh_from_db()
    assert tenant.status == "active"
    event = TenantEvent.objects.filter(tenant=tenant, kind="converted").get()
    assert event.details["from"] == "trialing" and event.details["to"] == "active"
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.ended_at is None and sub.status == "active"
    assert trial_end(tenant=tenant) == "skipped"  # idempotent


def test_trial_end_without_payment_method_suspends_and_a_card_reactivates(make_tenant):
    tenant = trialing(make_tenant, timedelta(seconds=-1))
    run = trial_ends_process()
    assert tenant.pk in run.suspended
    tenant.refresh_from_db()
    assert tenant.status == "suspended"
    old = Subscription.objects.get(tenant=tenant)
    assert old.ended_at is not None  # nothing billed while suspended
    assert trial_ends_process().suspended == []  # idempotent

    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")
    assert trial_payment_method_added(tenant) == "reactivated"
    tenant.refresh_from_db()
    assert tenant.status == "active"
    new = Subscription.objects.get(tenant=tenant, ended_at__isnull=True)
    assert new.pk != old.pk and new.billing_starts_at <= timezone.now()
    assert TenantEvent.objects.filter(tenant=tenant, kind="reactivated").exists()
    assert trial_payment_method_added(tenant) == "unchanged"


def test_payment_method_does_not_lift_other_suspensions(make_tenant):
    from tenants.status import tenant_suspend

    tenant = make_tenant("starter")
    tenant_suspend(tenant=tenant, reason="abuse")
    assert trial_payment_method_added(tenant) == "unchanged"


def test_staff_extends_a_trial(make_tenant, django_user_model):
    staff = django_user_model.objects.create(username="ops", email="ops@saasops.test", is_staff=True)
    tenant = trialing(make_tenant, timedelta(days=1))
    before = tenant.trial_ends_at
    trial_extend(tenant=tenant, days=7, actor=staff, reason="evaluation needs a week more")
    tenant.refresh_from_db()
    assert tenant.trial_ends_at - before == timedelta(days=7)
    assert Subscription.objects.get(tenant=tenant).billing_starts_at == tenant.trial_ends_at
    event = TenantEvent.objects.get(tenant=tenant, kind="trial_extended")
    assert event.actor_type == "staff" and event.note == "evaluation needs a week more"
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        trial_extend(tenant=make_tenant("free"), days=7, actor=staff, reason="x")


def test_trial_extension_admin_action(client, make_tenant, django_user_model, settings):
    admin_user = django_user_model.objects.create_superuser(
        username="root", email="root@saasops.test", password="pw-root-123"
    )
    tenant = trialing(make_tenant, timedelta(days=1))
    client.force_login(admin_user)
    url = "/admin/lifecycle/lifecycletenant/"
    host = {"HTTP_HOST": settings.BASE_DOMAIN}
    page = client.post(url, {"action": "extend_trial", "_selected_action": [tenant.pk]}, **host)
    assert page.status_code == 200 and b"Extend trial" in page.content
    done = client.post(
        url,
        {"action": "extend_trial", "_selected_action": [tenant.pk], "apply": "1", "days": 5, "reason": "sales"},
        **host,
    )
    assert done.status_code == 302
    assert TenantEvent.objects.filter(tenant=tenant, kind="trial_extended", actor=admin_user).exists()
