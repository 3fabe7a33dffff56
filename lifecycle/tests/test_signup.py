"""The signup journey through HTTP: pricing → form → email link → provisioning → hand-off."""

from unittest import mock

import pytest
from django.core import mail

from lifecycle.models import Signup, SignupStatus
from lifecycle.tests.conftest import outbox_to, verify_path
from tenants.models import Membership, Tenant, TenantEvent

pytestmark = pytest.mark.django_db


def test_pricing_lists_public_plans_with_yearly_discount_and_limits(client_for):
    response = client_for().get("/pricing/")
    assert response.status_code == 200
    text = response.content.decode()
    for name in ("Free", "Starter", "Growth", "Enterprise"):
        assert name in text
    assert "Custom" not in text  # not public
    # Starter: 49.00 a month, 490.00 a year = 12 × 49 − 98 → 17% off; 490 / 12 = 40.83 a month
    assert "$49.00" in text and "$490.00 billed yearly" in text and "save 17%" in text and "$40.83" in text
    assert "20,000 API calls / month, then $1.00 per 1,000" in text
    assert "Unlimited seats" in text  # Enterprise
    assert "14-day free trial" in text


def test_signup_end_to_end(client_for, signup_post, django_capture_on_commit_callbacks):
    public = client_for()
    assert public.get("/signup/?plan=starter").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = signup_post(public)
    assert response.status_code == 302 and response["Location"] == "/signup/sent/"
    assert b"founder@newco.test" in public.get("/signup/sent/").content
    (message,) = outbox_to("founder@newco.test")
    assert "Confirm your email" in message.subject and "newco" in message.body
    link = verify_path(message)

    page = public.get(link)  # a page that confirms by POST (mail scanners only GET)
    assert page.status_code == 200 and b"Confirm and create" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = public.post(link)
    signup = Signup.objects.get(email="founder@newco.test")
    assert response.status_code == 302 and response["Location"] == f"/signup/{signup.pk}/"
    assert public.get(response["Location"]).status_code == 200
    status = public.get(f"/signup/{signup.pk}/status/").json()
    assert status["state"] == "ready"
    assert status["redirect"].split("://")[1].startswith("newco.localhost")

    tenant = Tenant.objects.get(slug="newco")
    assert (
        tenant.status == "trialing"
        and tenant.plan.code == "starter"
        and tenant.provisioning_key == f"signup:{signup.pk}"
    )
    owner = Membership.objects.get(tenant=tenant)
    assert owner.role == "owner" and owner.user.email == "founder@newco.test"
    assert owner.user.check_password("a-Strong-pass-2026")
    kinds = list(TenantEvent.objects.filter(tenant=tenant).order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds[:2] == ["signup", "verified"] and "provisioned" in kinds
    assert any("is ready" in m.subject for m in outbox_to("founder@newco.test"))  # welcome

    workspace = client_for(tenant)
    path = "/" + status["redirect"].split("/", 3)[3]
    landed = workspace.get(path)
    assert landed.status_code == 302 and landed["Location"] == "/"
    dashboard = workspace.get("/")
    assert dashboard.status_code == 200 and b"NewCo" in dashboard.content
    assert workspace.get(path).status_code == 400  # the token worked once


def test_verification_clicked_twice_provisions_one_workspace(
    client_for, signup_post, django_capture_on_commit_callbacks
):
    public = client_for()
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(public)
    link = verify_path(outbox_to("founder@newco.test")[0])
    with django_capture_on_commit_callbacks(execute=True):
        first = public.post(link)
    with django_capture_on_commit_callbacks(execute=True):
        second = public.post(link)
    assert first["Location"] == second["Location"]  # same browser: back to the same progress page
    assert Tenant.objects.filter(slug="newco").count() == 1
    other = client_for().post(link)  # another browser (or a forwarded email)
    assert other.status_code == 200 and b"already used" in other.content
    assert b"sign in at newco" in other.content
    assert Tenant.objects.filter(slug="newco").count() == 1


def test_expired_link_explains_and_sends_a_new_one(client_for, signup_post, django_capture_on_commit_callbacks):
    public = client_for()
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(public)
    link = verify_path(outbox_to("founder@newco.test")[0])
    import time

    later = time.time() + 2 * 24 * 3600
    with mock.patch("django.core.signing.time.time", return_value=later):
        response = public.get(link)
        assert response.status_code == 410 and b"expired" in response.content
        assert public.post(link).status_code == 410  # POST neither
    assert not Tenant.objects.filter(slug="newco").exists()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        resent = public.post(link + "resend/")
    assert resent.status_code == 302
    new_link = verify_path(outbox_to("founder@newco.test")[0])
    with django_capture_on_commit_callbacks(execute=True):
        assert public.post(new_link).status_code == 302
    assert Tenant.objects.filter(slug="newco").exists()


def test_a_newer_signup_supersedes_the_older_link(client_for, signup_post, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(company="First")
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(company="Second", slug="second-co")
    first, second = (verify_path(m) for m in outbox_to("founder@newco.test"))
    response = client_for().post(first)
    assert b"replaced" in response.content and not Tenant.objects.filter(slug="newco").exists()
    with django_capture_on_commit_callbacks(execute=True):
        client_for().post(second)
    assert Tenant.objects.get(slug="second-co").name == "Second"


def test_broken_link_is_400(client_for):
    response = client_for().get("/signup/verify/not-a-real-key/")
    assert response.status_code == 400 and b"does not work" in response.content


def test_fourth_signup_in_an_hour_from_one_ip_is_refused(client_for, signup_post):
    public = client_for()
    for n in range(3):
        response = signup_post(public, email=f"person{n}@rate.test", slug=f"rate-co-{n}")
        assert response.status_code == 302, response.content
    refused = signup_post(public, email="person4@rate.test", slug="rate-co-4")
    assert refused.status_code == 429 and b"too many" in refused.content
    assert Signup.objects.filter(email__endswith="@rate.test").count() == 3
    # Invalid submissions (a taken address) do not count against the limit.


def test_invalid_submissions_do_not_use_up_the_limit(client_for, signup_post):
    public = client_for()
    for _ in range(5):
        assert signup_post(public, slug="tenant-a").status_code == 200
    assert signup_post(public).status_code == 302


def test_existing_email_gets_same_page_and_an_already_have_an_account_email(
    client_for, signup_post, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        existing = signup_post(email="OWNER@tenant-a.test", slug="another-a")
        new = signup_post(client_for(), email="brand-new@nobody.test", slug="brand-new")
    assert existing.status_code == new.status_code == 302
    assert existing["Location"] == new["Location"] == "/signup/sent/"
    (message,) = outbox_to("owner@tenant-a.test")
    assert "already have" in message.subject
    assert "://tenant-a.localhost" in message.body and "/accounts/password/reset/" in message.body
    assert not Signup.objects.filter(email__iexact="owner@tenant-a.test").exists()
    owner = Membership.objects.get(tenant__slug="tenant-a", role="owner").user
    assert owner.check_password("pw-owner-123")  # untouched


@pytest.mark.parametrize(
    ("slug", "message", "suggestion_prefix"),
    [
        ("tenant-a", "is taken", "tenant-a-"),
        ("admin", "reserved", "admin-team"),
        ("Bad_Slug!", "lowercase letters", "bad-slug"),
        ("ab", "3 to 40", "ab-team"),
    ],
)
def test_slug_errors_say_why_and_suggest(signup_post, slug, message, suggestion_prefix):
    response = signup_post(slug=slug)
    assert response.status_code == 200
    form = response.context["form"]
    assert message in form.errors["slug"][0]
    assert form.slug_suggestion.startswith(suggestion_prefix)


def test_live_slug_suggestion(client_for):
    public = client_for()
    assert public.get("/signup/address/", {"company": "ACME Corp."}).json()["slug"] == "acme-corp"
    taken = public.get("/signup/address/", {"company": "Tenant A"}).json()["slug"]
    assert taken.startswith("tenant-a-")
    check = public.get("/signup/address/", {"slug": "pricing"}).json()
    assert check["ok"] is False and "reserved" in check["message"] and check["suggestion"] == "pricing-team"
    assert public.get("/signup/address/", {"slug": "fresh-name"}).json()["ok"] is True


def test_address_taken_meanwhile_asks_for_another(
    client_for, signup_post, make_tenant, django_capture_on_commit_callbacks
):
    public = client_for()
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(public)
    make_tenant(slug="newco")  # someone else got it first
    with django_capture_on_commit_callbacks(execute=True):
        response = public.post(verify_path(outbox_to("founder@newco.test")[0]))
    signup = Signup.objects.get(email="founder@newco.test")
    assert signup.status == SignupStatus.NEEDS_SLUG
    status = public.get(f"/signup/{signup.pk}/status/").json()
    assert status["state"] == "needs_slug" and status["suggestion"].startswith("newco-")
    with django_capture_on_commit_callbacks(execute=True):
        public.post(f"/signup/{signup.pk}/address/", {"slug": "newco-two"})
    assert response.status_code == 302
    assert Tenant.objects.get(slug="newco-two").memberships.get().user.email == "founder@newco.test"


def test_progress_and_status_belong_to_the_browser_that_used_the_link(
    client_for, signup_post, django_capture_on_commit_callbacks
):
    public = client_for()
    with django_capture_on_commit_callbacks(execute=True):
        signup_post(public)
    with django_capture_on_commit_callbacks(execute=True):
        public.post(verify_path(outbox_to("founder@newco.test")[0]))
    signup = Signup.objects.get(email="founder@newco.test")
    stranger = client_for()
    assert stranger.get(f"/signup/{signup.pk}/").status_code == 404
    assert stranger.get(f"/signup/{signup.pk}/status/").status_code == 404
