"""Every page for every role: what each may see, and the 403 (with its reason) for the rest."""

import pytest

from workspace.models import ApiKey, Department

pytestmark = pytest.mark.django_db

PAGES = ["/", "/usage/", "/billing/", "/api-keys/", "/members/", "/departments/", "/settings/"]
BILLING_ROLES = {"owner", "admin", "billing"}


@pytest.mark.parametrize("role", ["owner", "admin", "billing", "viewer"])
@pytest.mark.parametrize("path", PAGES)
def test_each_page_for_each_role(as_role, role, path):
    response = as_role(role).get(path)
    if path == "/billing/" and role not in BILLING_ROLES:
        assert response.status_code == 403
        text = response.content.decode()
        assert "Your role cannot do this" in text
        assert "see the plan, payment method and invoices" in text
        assert "Viewer" in text
    else:
        assert response.status_code == 200
        assert "Tenant A" in response.content.decode()


def test_signed_out_visitor_is_sent_to_sign_in(client_for, tenant_a):
    for path in PAGES:
        response = client_for(tenant_a).get(path)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("role", ["owner", "admin", "billing", "viewer"])
def test_what_each_role_is_offered(as_role, role):
    overview = as_role(role).get("/").content.decode()
    assert ("Projected bill" in overview) is (role in BILLING_ROLES)
    nav_billing = 'href="/billing/"' in overview
    assert nav_billing is (role in BILLING_ROLES)
    keys = as_role(role).get("/api-keys/").content.decode()
    assert ("Create key" in keys) is (role in {"owner", "admin"})
    members = as_role(role).get("/members/").content.decode()
    assert ("Send invitation" in members) is (role in {"owner", "admin"})
    departments = as_role(role).get("/departments/").content.decode()
    assert ("Add department" in departments) is (role in BILLING_ROLES)
    settings = as_role(role).get("/settings/").content.decode()
    assert ("Save prompt template" in settings) is (role in {"owner", "admin"})
    assert ("Save billing email" in settings) is (role in BILLING_ROLES)


@pytest.mark.parametrize("role", ["billing", "viewer"])
def test_only_owner_and_admin_create_or_revoke_keys(as_role, tenant_a, role):
    from django_tenants.utils import tenant_context

    from workspace.keys import api_key_create

    with tenant_context(tenant_a):
        key, _ = api_key_create(name="existing", scopes=["read_usage"])
    client = as_role(role)
    response = client.post("/api-keys/", {"name": "mine", "scopes": ["read_usage"]})
    assert response.status_code == 403
    assert "create or revoke API keys" in response.content.decode()
    assert client.post(f"/api-keys/{key.pk}/revoke").status_code == 403
    with tenant_context(tenant_a):
        assert list(ApiKey.objects.values_list("name", "revoked_at")) == [("existing", None)]


@pytest.mark.parametrize("role", ["billing", "viewer"])
def test_only_owner_and_admin_manage_members(as_role, users_a, tenant_a, role):
    client = as_role(role)
    response = client.post("/members/", {"email": "new@x.test", "role": "viewer"})
    assert response.status_code == 403
    assert "invite, change or remove members" in response.content.decode()
    target = tenant_a.memberships.get(user=users_a["viewer"])
    assert client.post(f"/members/{target.pk}/role", {"role": "admin"}).status_code == 403
    assert client.post(f"/members/{target.pk}/remove").status_code == 403
    target.refresh_from_db()
    assert target.role == "viewer"


def test_viewer_cannot_touch_billing_settings_or_departments(as_role, tenant_a):
    client = as_role("viewer")
    assert client.post("/billing/", {"billing_email": "x@y.test"}).status_code == 403
    for action in ("billing_email", "name", "prompt"):
        response = client.post("/settings/", {"action": action, "billing_email": "x@y.test", "name": "Hacked",
                                              "prompt_template": "hi"})  # fmt: skip
        assert response.status_code == 403
    assert client.post("/departments/", {"code": "legal", "name": "Legal"}).status_code == 403
    tenant_a.refresh_from_db()
    assert tenant_a.name == "Tenant A"
    assert not Department.objects.exists()


def test_billing_role_may_edit_billing_email_but_not_settings(as_role, tenant_a):
    client = as_role("billing")
    assert client.post("/billing/", {"billing_email": "ap@tenant-a.test"}).status_code == 302
    assert client.post("/settings/", {"action": "name", "name": "Renamed"}).status_code == 403
    tenant_a.billing_profile.refresh_from_db()
    assert tenant_a.billing_profile.billing_email == "ap@tenant-a.test"


def test_get_on_action_urls_is_refused(as_role):
    client = as_role("owner")
    assert client.get("/api-keys/1/revoke").status_code == 405
    assert client.get("/members/1/remove").status_code == 405
