"""Sign-in, sign-out and password reset through django-allauth on both kinds of host."""

import pytest
from django.core import mail

pytestmark = pytest.mark.django_db


def test_login_page_renders_on_both_hosts(client_for, tenant_a):
    public = client_for().get("/accounts/login/")
    assert public.status_code == 200 and b"This sign-in is for staff" in public.content
    tenant = client_for(tenant_a).get("/accounts/login/")
    assert tenant.status_code == 200 and b"This sign-in is for staff" not in tenant.content


def test_member_signs_in_with_allauth_field_names(client_for, tenant_a):
    client = client_for(tenant_a)
    response = client.post("/accounts/login/", {"login": "owner@tenant-a.test", "password": "pw-owner-123"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_non_member_and_wrong_password_look_the_same(client_for, tenant_b):
    wrong = client_for(tenant_b).post("/accounts/login/", {"login": "owner@tenant-b.test", "password": "nope-nope-1"})
    outsider = client_for(tenant_b).post(
        "/accounts/login/", {"login": "owner@tenant-a.test", "password": "pw-owner-123"}
    )
    assert wrong.status_code == outsider.status_code == 200
    assert wrong.context["form"].errors == outsider.context["form"].errors


def test_failed_logins_are_rate_limited_per_account(client_for, tenant_a):
    for _ in range(5):
        client_for(tenant_a).post("/accounts/login/", {"login": "owner@tenant-a.test", "password": "wrong-pass-1"})
    # Even the right password is refused while the account's failure bucket is full.
    response = client_for(tenant_a).post(
        "/accounts/login/", {"login": "owner@tenant-a.test", "password": "pw-owner-123"}
    )
    assert response.status_code == 200 and b"Too many failed" in response.content


def test_password_reset_does_not_tell_whether_an_account_exists(client_for, tenant_a):
    client = client_for(tenant_a)
    known = client.post("/accounts/password/reset/", {"email": "owner@tenant-a.test"})
    unknown = client_for(tenant_a).post("/accounts/password/reset/", {"email": "nobody@nowhere.test"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    to_known = [m for m in mail.outbox if "owner@tenant-a.test" in m.to]
    assert to_known and "tenant-a.localhost" in to_known[0].body  # the reset link is on the workspace host


def test_password_reset_is_rate_limited_per_address(client_for, tenant_a):
    for _ in range(3):
        assert (
            client_for(tenant_a).post("/accounts/password/reset/", {"email": "owner@tenant-a.test"}).status_code == 302
        )
    assert client_for(tenant_a).post("/accounts/password/reset/", {"email": "owner@tenant-a.test"}).status_code == 429


def test_allauth_signup_page_is_closed(client_for):
    response = client_for().get("/accounts/signup/")
    assert b"Sign up on the pricing page" in response.content
