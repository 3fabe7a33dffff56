"""The staff admin over HTTP on the public host, signed in as real staff users: the tenant
list, the operation pages (status, plan, config, rollback), plans, shards, provisioning
attempts, and what the support and finance groups may and may not do.

Counts are worked out from conftest's world: two customer tenants (tenant-a, tenant-b), both
trialing on Growth ($299.00 a month, $2,990.00 a year), on the one shard "shard-1".

Plan change, cancellation and reactivation are the lifecycle layer's operations registered
into the tenant admin (lifecycle/admin_operations.py): here they are checked to bill exactly as
the customer's own /plan/ page does.
"""

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile, Invoice, Subscription
from lifecycle import plan_changes
from lifecycle.models import Cancellation, ProvisioningAttempt
from lifecycle.plan_changes import subscription_cancel
from metering.periods import period_bounds
from tenants.models import (
    Membership,
    Plan,
    ShardMove,
    Tenant,
    TenantConfigVersion,
    TenantEvent,
    User,
    VectorShard,
)
from tenants.services import staff_groups_ensure
from tenants.status import tenant_status_change

pytestmark = pytest.mark.django_db


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args, urlconf="saasops.urls_public")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def make_staff(email: str, group: str | None = None, superuser: bool = False) -> User:
    # No password (force_login signs in): hashing one costs most of a test's time.
    user = User.objects.create_user(username=email, email=email, is_staff=True, is_superuser=superuser)
    if group:
        user.groups.add(staff_groups_ensure()[group])
    return user


@pytest.fixture
def superuser(db):
    return make_staff("root@saasops.test", superuser=True)


@pytest.fixture
def support(db):
    return make_staff("support@saasops.test", "support")


@pytest.fixture
def finance(db):
    return make_staff("finance@saasops.test", "finance")


@pytest.fixture
def staff_client(client_for, superuser):
    return client_for(None, superuser)


def events_since(tenant: Tenant, last_id: int | None):
    return list(TenantEvent.objects.filter(tenant=tenant, id__gt=last_id or 0).order_by("id"))


def last_event_id(tenant: Tenant) -> int | None:
    return TenantEvent.objects.filter(tenant=tenant).order_by("id").values_list("id", flat=True).last()


def run_operation(client, operation: str, tenants, data: dict, back: str = ""):
    """GET the operation page for the tenants, then POST its form; returns (page, final response)."""
    ids = ",".join(str(t.pk) for t in tenants)
    target = f"{url('tenants_tenant_operation', operation)}?ids={ids}{'&back=' + back if back else ''}"
    page = client.get(target)
    return page, client.post(target, data, follow=True)


def change_form_data(response) -> dict:
    """The POST body a browser would send for an admin change page as rendered."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is not None:
                data[bound.html_name] = value
    return data


# -- tenant list ---------------------------------------------------------------------------------


def test_list_shows_only_customer_tenants(staff_client):
    response = staff_client.get(url("tenants_tenant_changelist"))
    assert response.status_code == 200
    slugs = {tenant.slug for tenant in response.context["cl"].result_list}
    assert slugs == {"tenant-a", "tenant-b"}  # not the public or template rows
    assert b"tenant-template" not in response.content


def test_list_columns_plan_interval_badge_and_mrr(staff_client, tenant_a, tenant_b):
    tenant_status_change(tenant=tenant_a, to="active")
    Tenant.objects.filter(pk=tenant_b.pk).update(status="active", billing_interval="yearly")
    response = staff_client.get(url("tenants_tenant_changelist"))
    html = response.content.decode()
    assert "Growth" in html and "Yearly" in html
    assert '<span class="status-badge status-active">Active</span>' in html
    assert "$299.00" in html  # A: growth monthly
    assert "$249.17" in html  # B: growth yearly $2,990.00 / 12, rounded half up


def test_trialing_tenant_has_no_mrr(staff_client, tenant_a):
    response = staff_client.get(url("tenants_tenant_changelist") + "?q=tenant-a")
    assert '<span class="money">$0.00</span>' in response.content.decode()


def test_search_by_owner_email(staff_client, tenant_b):
    response = staff_client.get(url("tenants_tenant_changelist") + "?q=owner@tenant-b.test")
    assert [t.slug for t in response.context["cl"].result_list] == ["tenant-b"]


def test_filter_by_status_and_plan(staff_client, tenant_a, tenant_b):
    tenant_status_change(tenant=tenant_b, to="suspended")
    response = staff_client.get(url("tenants_tenant_changelist") + "?status__exact=suspended")
    assert [t.slug for t in response.context["cl"].result_list] == ["tenant-b"]
    starter = Plan.objects.get(code="starter")
    response = staff_client.get(url("tenants_tenant_changelist") + f"?plan__id__exact={starter.pk}")
    assert list(response.context["cl"].result_list) == []


def test_no_add_or_delete_of_tenants(staff_client, tenant_a):
    assert staff_client.get(url("tenants_tenant_add")).status_code == 403
    assert staff_client.get(url("tenants_tenant_delete", tenant_a.pk)).status_code == 403


# -- tenant page -----------------------------------------------------------------------------------


def test_detail_shows_readonly_facts_inlines_and_buttons(staff_client, tenant_a):
    response = staff_client.get(url("tenants_tenant_change", tenant_a.pk))
    assert response.status_code == 200
    html = response.content.decode()
    form = response.context["adminform"].form
    assert list(form.fields) == ["name"]  # schema, kind, status, plan… are read-only
    for text in (tenant_a.schema_name, "Customer", "Config history", "Initial configuration"):
        assert text in html
    assert "Lifecycle history (newest first)" in html and "provisioned" in html
    assert "tenant-a.localhost" in html and "owner@tenant-a.test" in html
    # trialing: suspend and cancel are offered, reactivate is not
    assert f"?ids={tenant_a.pk}&amp;back=detail" in html
    assert "Suspend…" in html and "Cancel…" in html and "Reactivate…" not in html
    assert "Change plan…" in html and "Change config…" in html


def test_rename_saves_the_name_only(staff_client, tenant_a):
    page = staff_client.get(url("tenants_tenant_change", tenant_a.pk))
    data = change_form_data(page)
    data["name"] = "Tenant A Renamed"
    # the status changed after the page was loaded: saving the name must not put it back
    tenant_status_change(tenant=tenant_a, to="active")
    response = staff_client.post(url("tenants_tenant_change", tenant_a.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant_a.refresh_from_db()
    assert (tenant_a.name, tenant_a.status) == ("Tenant A Renamed", "active")


# -- status operations -----------------------------------------------------------------------------


def test_suspend_from_list_action_records_actor_and_reason(staff_client, superuser, tenant_a, tenant_b):
    before_a, before_b = last_event_id(tenant_a), last_event_id(tenant_b)
    response = staff_client.post(
        url("tenants_tenant_changelist"), {"action": "suspend", "_selected_action": [tenant_a.pk, tenant_b.pk]}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{url('tenants_tenant_operation', 'suspend')}?ids={tenant_a.pk}%2C{tenant_b.pk}"
    page = staff_client.get(response["Location"])
    assert page.status_code == 200
    assert b"Suspend 2 tenants" in page.content and b"becomes suspended" in page.content

    done = staff_client.post(response["Location"], {"reason": "chargeback fraud"}, follow=True)

    assert done.redirect_chain[-1][0] == url("tenants_tenant_changelist")
    assert "Suspended Tenant A (tenant-a) (was trialing). Reason recorded: “chargeback fraud”." in messages_of(done)
    for tenant, before in ((tenant_a, before_a), (tenant_b, before_b)):
        tenant.refresh_from_db()
        assert tenant.status == "suspended"
        [event] = events_since(tenant, before)
        assert (event.kind, event.actor, event.actor_type, event.note) == (
            "suspended",
            superuser,
            "staff",
            "chargeback fraud",
        )


def test_reactivate_from_tenant_page(staff_client, superuser, tenant_a):
    tenant_status_change(tenant=tenant_a, to="suspended")
    before = last_event_id(tenant_a)
    page, done = run_operation(staff_client, "reactivate", [tenant_a], {"reason": "paid up"}, back="detail")
    assert b"Reactivate Tenant A (tenant-a)" in page.content
    assert done.redirect_chain[-1][0] == url("tenants_tenant_change", tenant_a.pk)
    assert "Reactivated Tenant A (tenant-a) (was suspended)." in messages_of(done)[0]
    tenant_a.refresh_from_db()
    assert tenant_a.status == "active"
    [event] = events_since(tenant_a, before)
    assert (event.kind, event.actor, event.note, event.details) == (
        "reactivated",
        superuser,
        "paid up",
        {"from": "suspended", "to": "active"},
    )


def test_reactivating_an_active_tenant_is_refused_and_changes_nothing(staff_client, tenant_a):
    tenant_status_change(tenant=tenant_a, to="active")
    before = last_event_id(tenant_a)
    page, done = run_operation(staff_client, "reactivate", [tenant_a], {"reason": "oops"})
    assert (
        "Will be refused: only a cancelled or suspended tenant, or one with a cancellation scheduled, can be "
        "reactivated; it is active." in page.content.decode()
    )
    [message] = messages_of(done)
    assert message == (
        "Tenant A (tenant-a): not reactivated — only a cancelled or suspended tenant, or one with a cancellation "
        "scheduled, can be reactivated; it is active. Nothing changed."
    )
    tenant_a.refresh_from_db()
    assert tenant_a.status == "active"
    assert events_since(tenant_a, before) == []


def test_state_machine_refusal_is_reported_per_tenant(staff_client, tenant_a, tenant_b):
    tenant_status_change(tenant=tenant_a, to="cancelled")
    before_a = last_event_id(tenant_a)
    _, done = run_operation(staff_client, "suspend", [tenant_a, tenant_b], {"reason": "abuse"})
    found = messages_of(done)
    assert (
        "Tenant A (tenant-a): not suspended — A cancelled tenant cannot become suspended "
        "(allowed from cancelled: active). Nothing changed." in found
    )
    assert any(m.startswith("Suspended Tenant B (tenant-b)") for m in found)
    tenant_a.refresh_from_db()
    tenant_b.refresh_from_db()
    assert (tenant_a.status, tenant_b.status) == ("cancelled", "suspended")
    assert events_since(tenant_a, before_a) == []


def test_reason_is_required(staff_client, tenant_a):
    before = last_event_id(tenant_a)
    _, response = run_operation(staff_client, "suspend", [tenant_a], {"reason": "   "})
    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    tenant_a.refresh_from_db()
    assert tenant_a.status == "trialing"
    assert events_since(tenant_a, before) == []


def test_unknown_operation_is_404(staff_client, tenant_a):
    assert staff_client.get(url("tenants_tenant_operation", "delete") + f"?ids={tenant_a.pk}").status_code == 404


def test_non_customer_ids_are_ignored(staff_client):
    public = Tenant.objects.get(kind="public")
    done = staff_client.get(url("tenants_tenant_operation", "suspend") + f"?ids={public.pk}", follow=True)
    assert messages_of(done) == ["No customer tenant was selected."]
    staff_client.post(url("tenants_tenant_operation", "suspend") + f"?ids={public.pk}", {"reason": "x"})
    public.refresh_from_db()
    assert public.status == "active"


# -- plan change, cancellation, reactivation: the lifecycle services, as on the customer's /plan/ page ---


def paying(make_tenant, code: str = "starter") -> Tenant:
    """A tenant past its trial, billed since before the current period (as lifecycle's tests)."""
    tenant = make_tenant(code)
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(status="active", trial_ends_at=now - timedelta(days=40))
    sub = Subscription.objects.get(tenant=tenant)
    start, _ = period_bounds(anchor=sub.anchor_day, at=now)
    Subscription.objects.filter(pk=sub.pk).update(billing_starts_at=now - timedelta(days=40), invoiced_through=start)
    tenant.refresh_from_db()
    return tenant


@pytest.fixture
def frozen_now(monkeypatch):
    """The lifecycle services' clock stopped, so two paths prorate over exactly the same time."""
    now = timezone.now().replace(microsecond=0)
    monkeypatch.setattr(plan_changes, "timezone", SimpleNamespace(now=lambda: now))
    return now


def owner_of(tenant) -> User:
    return tenant.memberships.get(role="owner").user


def billing_state(tenant) -> dict:
    """Everything the operations may touch, to show that a tenant was left alone."""
    tenant = Tenant.objects.get(pk=tenant.pk)
    return {
        "tenant": (tenant.status, tenant.plan_id, tenant.billing_interval),
        "subscriptions": list(Subscription.objects.filter(tenant=tenant).order_by("pk").values()),
        "invoices": list(Invoice.objects.filter(tenant=tenant).order_by("pk").values()),
        "cancellations": Cancellation.objects.filter(tenant=tenant).count(),
        "events": last_event_id(tenant),
    }


def invoice_facts(invoice: Invoice) -> tuple:
    lines = [(ln.kind, ln.quantity, ln.unit_price, ln.amount) for ln in invoice.lines.order_by("position")]
    return invoice.kind, invoice.status, invoice.period_start, invoice.period_end, invoice.total, lines


def test_staff_upgrade_bills_the_same_proration_as_the_workspace(
    staff_client, superuser, make_tenant, client_for, frozen_now
):
    by_staff, by_owner = paying(make_tenant), paying(make_tenant)
    growth = Plan.objects.get(code="growth")
    page, done = run_operation(
        staff_client, "change-plan", [by_staff], {"plan": growth.pk, "interval": "", "reason": "sales deal"}
    )
    assert "Growth — $299.00 / month" in page.content.decode() and "prorated" in page.content.decode()
    owner_page = client_for(by_owner, owner_of(by_owner)).post(
        "/plan/change/", {"plan": growth.pk, "interval": "monthly"}, follow=True
    )
    assert b"You are on Growth now" in owner_page.content

    staff_invoice = Invoice.objects.get(tenant=by_staff)
    owner_invoice = Invoice.objects.get(tenant=by_owner)
    assert invoice_facts(staff_invoice) == invoice_facts(owner_invoice)
    assert staff_invoice.kind == "proration" and staff_invoice.status == "finalized" and staff_invoice.total > 0
    [message] = messages_of(done)
    assert message.startswith(f"Upgraded {by_staff.name} ({by_staff.slug}) from Starter to Growth now. ")
    assert f"Prorated invoice {staff_invoice.number} ($" in message and message.endswith("Reason recorded.")
    for tenant in (by_staff, by_owner):
        tenant.refresh_from_db()
        sub = Subscription.objects.get(tenant=tenant)
        assert (tenant.plan.code, sub.plan.code, sub.period_fee_plan.code) == ("growth", "growth", "starter")
    event = TenantEvent.objects.get(tenant=by_staff, kind="upgraded")
    assert (event.actor, event.actor_type, event.note, event.details["invoice"]) == (
        superuser,
        "staff",
        "sales deal",
        staff_invoice.number,
    )


def test_staff_downgrade_waits_for_the_period_end_and_checks_usage(staff_client, superuser, make_tenant):
    tenant = paying(make_tenant, "growth")
    starter = Plan.objects.get(code="starter")
    for i in range(5):  # 6 members; Starter has 5 seats
        user = User.objects.create(username=f"m{i}-{tenant.slug}", email=f"m{i}@{tenant.slug}.test")
        Membership.objects.create(user=user, tenant=tenant, role="viewer")
    before = billing_state(tenant)
    _, refused = run_operation(staff_client, "change-plan", [tenant], {"plan": starter.pk, "reason": "asked"})
    [message] = messages_of(refused)
    assert "plan not changed — The workspace does not fit the smaller plan yet." in message
    assert "remove 1 member first. Nothing changed." in message
    assert billing_state(tenant) == before

    Membership.objects.filter(tenant=tenant, role="viewer").delete()
    _, done = run_operation(staff_client, "change-plan", [tenant], {"plan": starter.pk, "reason": "asked"})
    sub = Subscription.objects.get(tenant=tenant)
    tenant.refresh_from_db()
    assert (tenant.plan.code, sub.pending_plan.code) == ("growth", "starter")  # at the next period start
    assert not Invoice.objects.filter(tenant=tenant).exists()
    end = period_bounds(anchor=sub.anchor_day, at=timezone.now())[1]
    assert messages_of(done) == [
        f"{tenant.name} ({tenant.slug}): Starter from {end:%d %B %Y} (the next period start), Growth until then. "
        "Reason recorded."
    ]
    event = TenantEvent.objects.get(tenant=tenant, kind="downgraded")
    assert (event.actor, event.note, event.details["effective_at"]) == (superuser, "asked", end.isoformat())


def test_staff_interval_switch_is_scheduled(staff_client, make_tenant):
    tenant = paying(make_tenant, "starter")
    starter = Plan.objects.get(code="starter")
    page, done = run_operation(
        staff_client, "change-plan", [tenant], {"plan": starter.pk, "interval": "yearly", "reason": "annual deal"}
    )
    assert "Starter — $49.00 / month" in page.content.decode()  # its own plan is offered: for the interval
    assert "billing switches to yearly on" in messages_of(done)[0]
    sub = Subscription.objects.get(tenant=tenant)
    assert (sub.interval, sub.pending_interval) == ("monthly", "yearly")


def test_change_plan_to_a_retired_plan_is_refused(staff_client, tenant_a):
    starter = Plan.objects.get(code="starter")
    Plan.objects.filter(pk=starter.pk).update(retired_at=timezone.now())
    before = billing_state(tenant_a)
    page, response = run_operation(staff_client, "change-plan", [tenant_a], {"plan": starter.pk, "reason": "x"})
    assert "Starter" not in page.content.decode()  # not offered
    assert response.status_code == 200
    assert "Select a valid choice" in response.context["form"].errors["plan"][0]
    assert billing_state(tenant_a) == before


NOT_A_PLAN = "Select a valid choice. That choice is not one of the available choices."


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"plan": 999_999, "reason": "x"}, {"plan": [NOT_A_PLAN]}),  # unknown plan
        ({"plan": "growth", "reason": "x"}, {"plan": [NOT_A_PLAN]}),  # a code, not an id
        ({"plan": "", "reason": "x"}, {"plan": ["This field is required."]}),
        ({"plan": "STARTER", "reason": "   "}, {"reason": ["This field is required."]}),
        (
            {"plan": "STARTER", "interval": "weekly", "reason": "x"},
            {"interval": ["Select a valid choice. weekly is not one of the available choices."]},
        ),
    ],
)
def test_change_plan_bad_input_is_refused_and_changes_nothing(staff_client, make_tenant, data, errors):
    tenant = paying(make_tenant, "growth")
    if data.get("plan") == "STARTER":
        data = {**data, "plan": Plan.objects.get(code="starter").pk}
    before = billing_state(tenant)
    _, response = run_operation(staff_client, "change-plan", [tenant], data)
    assert response.status_code == 200
    assert response.context["form"].errors == errors
    assert billing_state(tenant) == before


def test_change_plan_to_the_same_plan_and_several_tenants(staff_client, make_tenant):
    growth = Plan.objects.get(code="growth")
    on_growth, on_starter = paying(make_tenant, "growth"), paying(make_tenant, "starter")
    before = billing_state(on_growth)
    _, done = run_operation(staff_client, "change-plan", [on_growth, on_starter], {"plan": growth.pk, "reason": "x"})
    found = messages_of(done)
    assert (
        f"{on_growth.name} ({on_growth.slug}): plan not changed — The workspace is already on Growth, billed "
        "monthly. Nothing changed." in found
    )
    assert any(
        m.startswith(f"Upgraded {on_starter.name} ({on_starter.slug}) from Starter to Growth now.") for m in found
    )
    assert billing_state(on_growth) == before


def test_a_cancelled_or_suspended_tenant_cannot_change_plan(staff_client, make_tenant):
    tenant = paying(make_tenant, "starter")
    Tenant.objects.filter(pk=tenant.pk).update(status="suspended")
    page, done = run_operation(
        staff_client, "change-plan", [tenant], {"plan": Plan.objects.get(code="growth").pk, "reason": "x"}
    )
    assert "Will be refused: A suspended workspace cannot change plan." in page.content.decode()
    assert messages_of(done) == [
        f"{tenant.name} ({tenant.slug}): plan not changed — A suspended workspace cannot change plan. Nothing changed."
    ]
    assert not Invoice.objects.filter(tenant=tenant).exists()


def cancel_data(**overrides) -> dict:
    return {"reason": "too_expensive", "when": "period_end", "note": "budget cut, told support", **overrides}


def test_staff_cancel_at_period_end_is_the_customers_cancellation(staff_client, superuser, make_tenant, frozen_now):
    by_staff, by_owner = paying(make_tenant), paying(make_tenant)
    page, done = run_operation(staff_client, "cancel", [by_staff], cancel_data())
    assert "Too expensive" in page.content.decode() and "final invoice" in page.content.decode()
    subscription_cancel(tenant=by_owner, actor=owner_of(by_owner), reason="too_expensive", comment="budget cut")

    staff_sub, owner_sub = (Subscription.objects.get(tenant=t) for t in (by_staff, by_owner))
    end = period_bounds(anchor=staff_sub.anchor_day, at=frozen_now)[1]
    assert (staff_sub.cancel_at, staff_sub.ended_at, staff_sub.cancel_reason) == (end, None, "too_expensive")
    assert (owner_sub.cancel_at, owner_sub.ended_at) == (staff_sub.cancel_at, None)
    by_staff.refresh_from_db()
    assert by_staff.status == "active"  # until the period ends
    cancellation = Cancellation.objects.get(tenant=by_staff)
    assert (cancellation.reason, cancellation.actor_type, cancellation.comment, cancellation.immediate) == (
        "too_expensive",
        "staff",
        "budget cut, told support",
        False,
    )
    event = TenantEvent.objects.get(tenant=by_staff, kind="cancellation_scheduled")
    assert (event.actor, event.note, event.details["effective_at"]) == (
        superuser,
        "budget cut, told support",
        end.isoformat(),
    )
    assert messages_of(done) == [
        f"{by_staff.name} ({by_staff.slug}): cancelled for the end of the current period, {end:%d %B %Y}; billed "
        "as usual until then (Reactivate undoes it). Reason recorded: Too expensive — “budget cut, told support”."
    ]
    assert not Invoice.objects.filter(tenant__in=[by_staff, by_owner]).exists()

    # staff undo it, as the customer could
    page, undone = run_operation(staff_client, "reactivate", [by_staff], {"reason": "stays after all"})
    assert "the scheduled cancellation is withdrawn" in page.content.decode()
    assert "the scheduled cancellation is withdrawn; the subscription goes on." in messages_of(undone)[0]
    staff_sub.refresh_from_db()
    assert staff_sub.cancel_at is None
    assert Cancellation.objects.get(tenant=by_staff).reactivated_at is not None


def test_staff_cancel_now_ends_the_subscription_with_the_same_final_invoice(
    staff_client, superuser, make_tenant, frozen_now
):
    by_staff, by_owner = paying(make_tenant), paying(make_tenant)
    _, done = run_operation(staff_client, "cancel", [by_staff], cancel_data(when="now", reason="switched"))
    subscription_cancel(tenant=by_owner, actor=owner_of(by_owner), reason="switched", immediate=True)

    for tenant in (by_staff, by_owner):
        tenant.refresh_from_db()
        sub = Subscription.objects.get(tenant=tenant)
        assert (tenant.status, sub.status, sub.ended_at, sub.cancel_at) == (
            "cancelled",
            "cancelled",
            frozen_now,
            frozen_now,
        )
    staff_final, owner_final = (Invoice.objects.get(tenant=t, kind="final") for t in (by_staff, by_owner))
    assert invoice_facts(staff_final) == invoice_facts(owner_final)
    assert staff_final.status == "finalized" and 0 < staff_final.lines.get(kind="base").amount <= 4_900
    assert messages_of(done)[0].startswith(
        f"Cancelled {by_staff.name} ({by_staff.slug}) now (was active). Final invoice {staff_final.number} ($"
    )
    event = TenantEvent.objects.get(tenant=by_staff, kind="cancelled")
    assert (event.actor, event.note, event.details["invoice"], event.details["immediate"]) == (
        superuser,
        "budget cut, told support",
        staff_final.number,
        True,
    )
    assert Cancellation.objects.get(tenant=by_staff).actor_type == "staff"

    # staff reactivate a cancelled tenant: a new subscription, billed from now
    _, back = run_operation(staff_client, "reactivate", [by_staff], {"reason": "came back"})
    assert "on a new subscription billed from now" in messages_of(back)[0]
    by_staff.refresh_from_db()
    assert by_staff.status == "active"
    assert Subscription.objects.filter(tenant=by_staff, ended_at__isnull=True).count() == 1


def test_operations_on_one_tenant_leave_the_other_alone(staff_client, make_tenant):
    a, b = paying(make_tenant), paying(make_tenant)
    untouched = billing_state(b)
    run_operation(staff_client, "change-plan", [a], {"plan": Plan.objects.get(code="growth").pk, "reason": "x"})
    run_operation(staff_client, "cancel", [a], cancel_data(when="now"))
    run_operation(staff_client, "reactivate", [a], {"reason": "x"})
    assert Invoice.objects.filter(tenant=a).count() == 2  # proration, final
    assert Subscription.objects.filter(tenant=a, ended_at__isnull=True).count() == 1  # reactivated: a new one
    assert billing_state(b) == untouched
    # every message names the one tenant acted on
    _, done = run_operation(staff_client, "cancel", [a], cancel_data(), back="detail")
    assert [m.split(":")[0] for m in messages_of(done)] == [f"{a.name} ({a.slug})"]
    assert billing_state(b) == untouched


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        ({"reason": ""}, "reason", "This field is required."),
        ({"reason": "bored"}, "reason", "Select a valid choice. bored is not one of the available choices."),
        ({"note": "  "}, "note", "This field is required."),
        ({"when": "yesterday"}, "when", "Select a valid choice. yesterday is not one of the available choices."),
    ],
)
def test_cancel_bad_input_is_refused_and_changes_nothing(staff_client, make_tenant, data, field, error):
    tenant = paying(make_tenant)
    before = billing_state(tenant)
    _, response = run_operation(staff_client, "cancel", [tenant], cancel_data(**data))
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [error]}
    assert billing_state(tenant) == before


def test_cancelling_twice_is_refused(staff_client, make_tenant):
    tenant = paying(make_tenant)
    run_operation(staff_client, "cancel", [tenant], cancel_data())
    before = billing_state(tenant)
    page, done = run_operation(staff_client, "cancel", [tenant], cancel_data())
    assert "already cancelled for" in page.content.decode()
    assert "not cancelled — Cancellation is already scheduled for" in messages_of(done)[0]
    assert billing_state(tenant) == before
    run_operation(staff_client, "cancel", [tenant], cancel_data(when="now"))  # "now" still can
    page = staff_client.get(url("tenants_tenant_change", tenant.pk)).content.decode()
    assert "Cancel…" not in page and "Reactivate…" in page


def test_a_trial_paused_without_a_card_resumes_only_with_one(staff_client, make_tenant):
    from lifecycle.trials import trial_end

    tenant = make_tenant("starter")
    ends = timezone.now() - timedelta(minutes=5)
    Tenant.objects.filter(pk=tenant.pk).update(trial_ends_at=ends)
    Subscription.objects.filter(tenant=tenant).update(billing_starts_at=ends)
    assert trial_end(tenant=tenant) == "suspended"
    before = billing_state(tenant)
    page, done = run_operation(staff_client, "reactivate", [tenant], {"reason": "customer called"})
    assert "Will be refused: its trial ended without a payment method" in page.content.decode()
    assert "not reactivated — its trial ended without a payment method" in messages_of(done)[0]
    assert billing_state(tenant) == before

    BillingProfile.objects.filter(tenant=tenant).update(payment_method_id="pm_card_visa")
    _, done = run_operation(staff_client, "reactivate", [tenant], {"reason": "customer called"})
    assert "billed from now" in messages_of(done)[0]
    tenant.refresh_from_db()
    assert tenant.status == "active"
    assert Invoice.objects.get(tenant=tenant).kind == "advance"  # its first invoice, as when a card is saved
    assert TenantEvent.objects.get(tenant=tenant, kind="reactivated").note == "customer called"

    # cancelling a paused workspace (nothing billed) takes effect now
    paused = make_tenant("starter")
    Tenant.objects.filter(pk=paused.pk).update(trial_ends_at=ends)
    Subscription.objects.filter(tenant=paused).update(billing_starts_at=ends)
    trial_end(tenant=paused)
    page, done = run_operation(staff_client, "cancel", [paused], cancel_data())
    assert "nothing is billed: cancelled now" in page.content.decode()
    assert "now (was suspended). Nothing was left to invoice." in messages_of(done)[0]
    paused.refresh_from_db()
    assert paused.status == "cancelled"


# -- config ----------------------------------------------------------------------------------------


def config_post(client, tenant, overrides: str, reason: str = "customer needs longer answers"):
    return client.post(url("tenants_tenant_config", tenant.pk), {"overrides": overrides, "reason": reason}, follow=True)


def test_config_page_shows_keys_and_current_overrides(staff_client, tenant_a):
    response = staff_client.get(url("tenants_tenant_config", tenant_a.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "retrieval_top_k" in html and "Passages retrieved per query" in html and "gpt-4o" in html
    assert response.context["form"].initial["overrides"] == "{}"


def test_config_change_creates_a_version(staff_client, superuser, tenant_a):
    response = config_post(staff_client, tenant_a, '{"max_tokens": 4096, "model": "gpt-4o-mini"}')
    assert response.redirect_chain[-1][0] == url("tenants_tenant_change", tenant_a.pk)
    assert messages_of(response) == [
        "Saved config version 2 of Tenant A (tenant-a): max_tokens: 2048 → 4096; model: gpt-4o → gpt-4o-mini."
    ]
    version = TenantConfigVersion.objects.get(tenant=tenant_a, version=2)
    assert version.overrides == {"max_tokens": 4096, "model": "gpt-4o-mini"}
    assert version.changes == {"max_tokens": [2048, 4096], "model": ["gpt-4o", "gpt-4o-mini"]}
    assert (version.created_by, version.note) == (superuser, "customer needs longer answers")
    # the history on the tenant page renders the change
    html = response.content.decode()
    assert "<code>max_tokens</code>: 2048 → <strong>4096</strong>" in html


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        (
            '{"max_tokens": 4096,}',
            ["Not valid JSON: Expecting property name enclosed in double quotes (line 1, column 21)."],
        ),
        ("[1, 2]", ["Config overrides must be a JSON object of key: value."]),
        (
            '{"colour": "red", "max_tokens": 0, "retrieval_top_k": "8"}',
            [
                "colour: unknown key; allowed keys are max_tokens, model, prompt_template, rate_limit_burst, "
                "rate_limit_rps, retrieval_top_k",
                "max_tokens: must be between 1 and 128000",
                "retrieval_top_k: must be a whole number, got str",
            ],
        ),
        ("{}", ["These are the current overrides: change a value, or cancel."]),
    ],
)
def test_bad_config_is_refused_with_per_key_errors(staff_client, tenant_a, text, errors):
    response = config_post(staff_client, tenant_a, text)
    assert response.status_code == 200
    assert response.context["form"].errors["overrides"] == errors
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_config_change_needs_a_reason(staff_client, tenant_a):
    response = config_post(staff_client, tenant_a, '{"max_tokens": 4096}', reason="")
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_rollback_to_an_earlier_version(staff_client, superuser, tenant_a):
    config_post(staff_client, tenant_a, '{"retrieval_top_k": 20}')
    target = url("tenants_tenant_config_rollback", tenant_a.pk, 1)
    page = staff_client.get(target)
    assert page.status_code == 200
    assert page.context["diff"] == [{"key": "retrieval_top_k", "before": "20", "after": "8"}]

    done = staff_client.post(target, {"reason": "answers got worse"}, follow=True)

    assert messages_of(done) == [
        "Rolled Tenant A (tenant-a) back to the overrides of version 1, saved as version 3: retrieval_top_k: 20 → 8."
    ]
    v3 = TenantConfigVersion.objects.get(tenant=tenant_a, version=3)
    assert (v3.overrides, v3.created_by, v3.note) == ({}, superuser, "Rollback to version 1: answers got worse")


def test_rollback_to_the_current_version_does_nothing(staff_client, tenant_a):
    done = staff_client.post(url("tenants_tenant_config_rollback", tenant_a.pk, 1), {"reason": "x"}, follow=True)
    assert "Version 1 is the current config" in messages_of(done)[0]
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_rollback_to_a_missing_version_is_404(staff_client, tenant_a):
    assert staff_client.get(url("tenants_tenant_config_rollback", tenant_a.pk, 99)).status_code == 404


# -- permissions -----------------------------------------------------------------------------------


def test_finance_reads_tenants_but_cannot_change_status_plan_or_config(client_for, finance, tenant_a):
    client = client_for(None, finance)
    assert client.get(url("tenants_tenant_changelist")).status_code == 200
    page = client.get(url("tenants_tenant_change", tenant_a.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Suspend…" not in html and "Change config…" not in html and "Roll back" not in html
    listing = client.get(url("tenants_tenant_changelist"))
    assert listing.context["action_form"] is None  # no action offered at all
    for operation in ("suspend", "reactivate", "cancel", "change-plan"):
        target = url("tenants_tenant_operation", operation) + f"?ids={tenant_a.pk}"
        assert client.get(target).status_code == 403
        assert client.post(target, {"reason": "x", "plan": tenant_a.plan_id}).status_code == 403
    assert client.get(url("tenants_tenant_config", tenant_a.pk)).status_code == 403
    assert client.post(url("tenants_tenant_config", tenant_a.pk), {"overrides": "{}", "reason": "x"}).status_code == 403
    assert client.post(url("tenants_tenant_config_rollback", tenant_a.pk, 1), {"reason": "x"}).status_code == 403
    assert client.post(url("tenants_tenant_change", tenant_a.pk), {"name": "Hijacked"}).status_code == 403
    # the list action is not there either: posting it does nothing
    client.post(url("tenants_tenant_changelist"), {"action": "suspend", "_selected_action": [tenant_a.pk]})
    tenant_a.refresh_from_db()
    assert (tenant_a.status, tenant_a.name) == ("trialing", "Tenant A")
    assert TenantConfigVersion.objects.filter(tenant=tenant_a).count() == 1


def test_finance_edits_plan_prices(client_for, finance):
    client = client_for(None, finance)
    growth = Plan.objects.get(code="growth")
    page = client.get(url("tenants_plan_change", growth.pk))
    data = change_form_data(page)
    data["price_monthly"] = 31_900
    response = client.post(url("tenants_plan_change", growth.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    growth.refresh_from_db()
    assert growth.price_monthly == 31_900


def test_support_runs_operations_but_cannot_touch_plans(client_for, support, tenant_a):
    client = client_for(None, support)
    _, done = run_operation(client, "suspend", [tenant_a], {"reason": "abuse"})
    assert messages_of(done)[0].startswith("Suspended Tenant A")
    response = config_post(client, tenant_a, '{"max_tokens": 1000}')
    assert messages_of(response)[0].startswith("Saved config version 2")
    assert TenantConfigVersion.objects.get(tenant=tenant_a, version=2).created_by == support

    growth = Plan.objects.get(code="growth")
    assert client.get(url("tenants_plan_changelist")).status_code == 200
    page = client.get(url("tenants_plan_change", growth.pk))
    assert page.status_code == 200 and "price_monthly" not in page.context["adminform"].form.fields
    assert client.post(url("tenants_plan_change", growth.pk), {"price_monthly": 1}).status_code == 403
    assert client.get(url("tenants_plan_add")).status_code == 403
    client.post(url("tenants_plan_changelist"), {"action": "retire", "_selected_action": [growth.pk]})
    growth.refresh_from_db()
    assert (growth.price_monthly, growth.retired_at) == (29_900, None)


# -- plans -----------------------------------------------------------------------------------------


def test_plan_list_money_counts_and_retired(staff_client):
    Plan.objects.filter(code="starter").update(retired_at=timezone.now())
    response = staff_client.get(url("tenants_plan_changelist"))
    html = response.content.decode()
    assert "$299.00" in html and "$2,990.00" in html and "$19,990.00" in html
    growth = Plan.objects.get(code="growth")
    assert f'<a href="/admin/tenants/tenant/?plan__id__exact={growth.pk}">2</a>' in html
    rows = {plan.code: plan for plan in response.context["cl"].result_list}
    assert rows["growth"].n_tenants == 2 and rows["free"].n_tenants == 0
    assert '<span class="status-badge status-cancelled">Retired</span>' in html  # Starter


def test_retire_and_unretire(staff_client):
    starter = Plan.objects.get(code="starter")
    done = staff_client.post(
        url("tenants_plan_changelist"), {"action": "retire", "_selected_action": [starter.pk]}, follow=True
    )
    assert messages_of(done) == ["Retired Starter: no longer offered; tenants on them keep their plan."]
    starter.refresh_from_db()
    assert starter.retired_at is not None
    assert starter not in Plan.objects.available()
    done = staff_client.post(
        url("tenants_plan_changelist"), {"action": "unretire", "_selected_action": [starter.pk]}, follow=True
    )
    assert messages_of(done) == ["Offered again: Starter."]
    starter.refresh_from_db()
    assert starter.retired_at is None


def test_deleting_a_plan_with_tenants_is_refused_with_a_message(staff_client):
    growth = Plan.objects.get(code="growth")
    done = staff_client.get(url("tenants_plan_delete", growth.pk), follow=True)
    assert done.status_code == 200
    assert messages_of(done) == [
        "“Growth” cannot be deleted: 2 tenants are on it. "
        "Retire it instead: it disappears from signup and its tenants keep it."
    ]
    done = staff_client.post(
        url("tenants_plan_changelist"), {"action": "delete_selected", "_selected_action": [growth.pk]}, follow=True
    )
    assert done.status_code == 200
    assert messages_of(done)[0].startswith("“Growth” cannot be deleted: 2 tenants are on it.")
    assert Plan.objects.filter(pk=growth.pk).exists()


def test_deleting_an_unused_plan_works(staff_client):
    free = Plan.objects.get(code="free")
    response = staff_client.post(url("tenants_plan_delete", free.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Plan.objects.filter(pk=free.pk).exists()


# -- shards ----------------------------------------------------------------------------------------


def test_shard_list_shows_load_against_capacity(staff_client):
    response = staff_client.get(url("tenants_vectorshard_changelist"))
    assert "2 / 5000 (0%)" in response.content.decode()
    assert "Rebalance…" in response.content.decode()


def test_rebalance_moves_tenants_and_mark_done(staff_client, tenant_a, tenant_b):
    old = VectorShard.objects.get(name="shard-1")
    new = VectorShard.objects.create(name="shard-2", connection_label="vector-db-2", capacity=10)
    old.is_active = False
    old.save()
    page = staff_client.get(url("tenants_vectorshard_rebalance"))
    assert page.status_code == 200 and page.context["moves"] is None

    response = staff_client.post(url("tenants_vectorshard_rebalance"), {"reason": "retire shard-1"})

    assert [(m.tenant.slug, m.from_shard, m.to_shard) for m in response.context["moves"]] == [
        ("tenant-a", old, new),
        ("tenant-b", old, new),
    ]
    assert "Rebalanced: 2 tenants to move." in messages_of(response)
    moves = ShardMove.objects.filter(status="pending")
    assert {m.reason for m in moves} == {"retire shard-1 (by root@saasops.test)"}
    listing = staff_client.get(url("tenants_shardmove_changelist"))  # pending by default
    assert len(listing.context["cl"].result_list) == 2

    done = staff_client.post(
        url("tenants_shardmove_changelist"),
        {"action": "mark_done", "_selected_action": [m.pk for m in moves]},
        follow=True,
    )
    assert "Marked 2 moves done." in messages_of(done)
    assert set(ShardMove.objects.values_list("status", flat=True)) == {"done"}
    assert staff_client.get(url("tenants_shardmove_changelist")).context["cl"].result_count == 0


def test_support_cannot_rebalance(client_for, support):
    client = client_for(None, support)
    assert client.get(url("tenants_vectorshard_changelist")).status_code == 200
    assert client.post(url("tenants_vectorshard_rebalance"), {"reason": "x"}).status_code == 403


# -- provisioning attempts ---------------------------------------------------------------------------


def test_provisioning_attempts_are_read_only_and_searchable(staff_client, client_for, support):
    ProvisioningAttempt.objects.create(key="k-1", slug="zeta", owner_email="z@zeta.test", outcome="failed", error="x")
    response = staff_client.get(url("lifecycle_provisioningattempt_changelist") + "?q=zeta")
    assert [a.slug for a in response.context["cl"].result_list] == ["zeta"]
    response = staff_client.get(url("lifecycle_provisioningattempt_changelist") + "?outcome__exact=created")
    assert {a.slug for a in response.context["cl"].result_list} == {"tenant-a", "tenant-b"}
    attempt = ProvisioningAttempt.objects.get(slug="zeta")
    assert staff_client.get(url("lifecycle_provisioningattempt_add")).status_code == 403
    assert staff_client.post(url("lifecycle_provisioningattempt_change", attempt.pk), {"slug": "y"}).status_code == 403
    assert client_for(None, support).get(url("lifecycle_provisioningattempt_changelist")).status_code == 200


def test_config_history_json_is_readable(staff_client, tenant_a):
    config_post(staff_client, tenant_a, json.dumps({"prompt_template": "x" * 100}))
    html = staff_client.get(url("tenants_tenant_change", tenant_a.pk)).content.decode()
    assert "x" * 59 + "…" in html  # long values are shortened in the history
    assert "Roll back to v1…" in html and "current" in html
