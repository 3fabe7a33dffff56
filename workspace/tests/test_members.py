"""Members: invitations (single-use, expiring, per tenant), seats, roles, the last owner."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from tenants.models import Membership, User
from workspace.models import Invitation

pytestmark = pytest.mark.django_db


@pytest.fixture
def invite(django_capture_on_commit_callbacks, mailoutbox):
    """invite(client, email, role) -> (response, accept path or None)."""

    def send(client, email, role="viewer"):
        before = len(mailoutbox)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/members/", {"email": email, "role": role})
        if len(mailoutbox) == before:
            return response, None
        return response, re.search(r"https?://[^/]+(/invitations/[^/]+/)", mailoutbox[-1].body).group(1)

    return send


def test_invite_and_accept_as_new_user(as_role, client_for, tenant_a, invite, mailoutbox):
    response, path = invite(as_role("admin"), "Dana@Example.test", "billing")
    assert response.status_code == 302
    mail = mailoutbox[-1]
    assert mail.to == ["Dana@Example.test"] and "Tenant A" in mail.subject
    assert "admin@tenant-a.test invited you to join Tenant A on saasops as Billing" in mail.body
    assert Invitation.objects.get().token_hash not in mail.body  # the link holds the token, the table its hash
    guest = client_for(tenant_a)
    page = guest.get(path)
    assert page.status_code == 200 and "Join Tenant A" in page.content.decode()
    response = guest.post(path, {"password1": "a-long-pass-2026", "password2": "a-long-pass-2026"})
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email="Dana@Example.test")
    assert Membership.objects.get(tenant=tenant_a, user=user).role == "billing"
    assert guest.get("/billing/").status_code == 200  # signed in, with the role
    again = client_for(tenant_a).get(path)
    assert again.status_code == 410 and "already been used" in again.content.decode()


def test_existing_user_accepts_with_their_password(as_role, client_for, tenant_a, tenant_b, invite):
    owner_b = tenant_b.memberships.get(role="owner").user
    _, path = invite(as_role("owner"), owner_b.email)
    guest = client_for(tenant_a)
    assert "enter its password" in guest.get(path).content.decode()
    wrong = guest.post(path, {"password": "nope"})
    assert wrong.status_code == 400 and "not right" in wrong.content.decode()
    assert guest.post(path, {"password": "pw-owner-123"}).status_code == 302
    assert Membership.objects.get(tenant=tenant_a, user=owner_b).role == "viewer"


def test_expired_and_cancelled_invitations_fail(as_role, client_for, tenant_a, invite):
    client = as_role("owner")
    _, path = invite(client, "late@x.test")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(tenant_a).get(path)
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert (
        client_for(tenant_a).post(path, {"password1": "a-long-pass-2026", "password2": "a-long-pass-2026"}).status_code
        == 410
    )
    assert not User.objects.filter(email="late@x.test").exists()
    _, path = invite(client, "cancelled@x.test")
    invitation = Invitation.objects.get(email="cancelled@x.test")
    assert client.post(f"/members/invitations/{invitation.pk}/cancel").status_code == 302
    assert "cancelled" in client_for(tenant_a).get(path).content.decode()


def test_unknown_token_is_404(client_for, tenant_a):
    response = client_for(tenant_a).get("/invitations/not-a-real-token/")
    assert response.status_code == 404 and "not valid" in response.content.decode()


def test_new_user_password_rules(as_role, client_for, tenant_a, invite):
    _, path = invite(as_role("owner"), "weak@x.test")
    guest = client_for(tenant_a)
    assert (
        "differ" in guest.post(path, {"password1": "a-long-pass-2026", "password2": "other-pass-2026"}).content.decode()
    )
    assert "too short" in guest.post(path, {"password1": "abc", "password2": "abc"}).content.decode()
    assert not User.objects.filter(email="weak@x.test").exists()


def test_seats_count_pending_invitations(tiny_tenant, client_for, invite):
    """Tiny plan: 3 seats. The owner and two open invitations fill them."""
    client = client_for(tiny_tenant, tiny_tenant.memberships.get(role="owner").user)
    assert invite(client, "one@x.test")[0].status_code == 302
    assert invite(client, "two@x.test")[0].status_code == 302
    response, path = invite(client, "three@x.test")
    assert response.status_code == 400 and path is None
    text = response.content.decode()
    assert "All 3 seats of your plan are taken (1 member and 2 open invitations)" in text
    page = client.get("/members/").content.decode()
    assert "3 of 3 seats used" in page and "upgrade your plan" in page
    cancel = Invitation.objects.get(email="two@x.test")
    client.post(f"/members/invitations/{cancel.pk}/cancel")
    assert invite(client, "three@x.test")[0].status_code == 302


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "", "role": "viewer"}, "This field is required."),
        ({"email": "not-an-email", "role": "viewer"}, "Enter a valid email address."),
        ({"email": "a" * 250 + "@x.test", "role": "viewer"}, "at most 254 characters"),
        ({"email": "<script>@x.test", "role": "viewer"}, "Enter a valid email address."),
        ({"email": "ok@x.test", "role": "superuser"}, "Select a valid choice"),
        ({"email": "owner@tenant-a.test", "role": "viewer"}, "is already a member"),
    ],
)
def test_bad_invitations(as_role, data, message):
    response = as_role("owner").post("/members/", data)
    assert response.status_code == 400
    text = response.content.decode()
    assert message in text
    assert "<script>@" not in text
    assert not Invitation.objects.exists()


def test_second_open_invitation_for_same_email_is_refused(as_role, invite):
    client = as_role("owner")
    invite(client, "twice@x.test")
    response, _ = invite(client, "TWICE@x.test")
    assert response.status_code == 400 and "already has an open invitation" in response.content.decode()


def test_admin_cannot_make_or_touch_owners(as_role, users_a, tenant_a):
    client = as_role("admin")
    response = client.post("/members/", {"email": "boss@x.test", "role": "owner"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    viewer = tenant_a.memberships.get(user=users_a["viewer"])
    client.post(f"/members/{viewer.pk}/role", {"role": "owner"})
    viewer.refresh_from_db()
    assert viewer.role == "viewer"
    owner = tenant_a.memberships.get(role="owner")
    response = client.post(f"/members/{owner.pk}/remove", follow=True)
    assert "Only an owner can" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_last_owner_stays(as_role, users_a, tenant_a):
    client = as_role("owner")
    owner = tenant_a.memberships.get(role="owner")
    response = client.post(f"/members/{owner.pk}/role", {"role": "admin"}, follow=True)
    assert "last owner" in response.content.decode()
    response = client.post(f"/members/{owner.pk}/remove", follow=True)
    assert "The last owner cannot be removed" in response.content.decode()
    owner.refresh_from_db()
    assert owner.role == "owner"
    # With a second owner, the first may step down.
    admin = tenant_a.memberships.get(user=users_a["admin"])
    client.post(f"/members/{admin.pk}/role", {"role": "owner"})
    response = client.post(f"/members/{owner.pk}/role", {"role": "viewer"})
    assert response.status_code == 302 and response["Location"] == "/"
    owner.refresh_from_db()
    assert owner.role == "viewer"


def test_admin_changes_and_removes_members(as_role, users_a, tenant_a):
    from tenants.models import TenantEvent

    client = as_role("admin")
    viewer = tenant_a.memberships.get(user=users_a["viewer"])
    client.post(f"/members/{viewer.pk}/role", {"role": "billing"})
    viewer.refresh_from_db()
    assert viewer.role == "billing"
    client.post(f"/members/{viewer.pk}/remove")
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    kinds = set(TenantEvent.objects.filter(tenant=tenant_a).values_list("kind", flat=True))
    assert {"member_role_changed", "member_removed"} <= kinds
