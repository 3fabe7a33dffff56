"""Host routing and the isolation basics: a tenant host serves that tenant only."""

import pytest
from django_tenants.utils import schema_context

from workspace.models import WorkspaceSettings

pytestmark = pytest.mark.django_db


def test_public_host_serves_public_site(client_for):
    response = client_for().get("/")
    assert response.status_code == 200
    assert b"Run the business side" in response.content


def test_unknown_host_is_a_friendly_404(client):
    response = client.get("/", HTTP_HOST="nobody-here.localhost")
    assert response.status_code == 404
    assert b"No workspace at this address" in response.content


def test_disallowed_host_is_400_not_crash(client):
    response = client.get("/", HTTP_HOST="evil.example.com")
    assert response.status_code in (400, 404)


def test_tenant_host_requires_login(client_for, tenant_a):
    response = client_for(tenant_a).get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_member_sees_own_workspace_rows(client_for, tenant_a, owner_a):
    response = client_for(tenant_a, owner_a).get("/")
    assert response.status_code == 200
    assert b"Tenant A" in response.content
    assert b"Tenant B" not in response.content


def test_member_of_a_gets_404_on_b_host(client_for, tenant_b, owner_a):
    response = client_for(tenant_b, owner_a).get("/")
    assert response.status_code == 404
    assert b"Tenant B" not in response.content


def test_member_of_a_cannot_sign_in_on_b_host(client_for, tenant_b):
    response = client_for(tenant_b).post(
        "/accounts/login/", {"username": "owner@tenant-a.test", "password": "pw-owner-123"}
    )
    assert response.status_code == 200  # form shown again
    assert b"Please enter a correct" in response.content
    assert "_auth_user_id" not in response.wsgi_request.session


def test_sign_in_on_own_host(client_for, tenant_a):
    client = client_for(tenant_a)
    response = client.post("/accounts/login/", {"username": "OWNER@tenant-a.test", "password": "pw-owner-123"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_session_cookie_is_host_only(client_for, tenant_a):
    client = client_for(tenant_a)
    client.post("/accounts/login/", {"username": "owner@tenant-a.test", "password": "pw-owner-123"})
    assert client.cookies["sessionid"]["domain"] == ""


def test_rows_live_in_each_tenant_schema(tenant_a, tenant_b):
    with schema_context(tenant_a.schema_name):
        a_rows = list(WorkspaceSettings.objects.values_list("display_name", flat=True))
    with schema_context(tenant_b.schema_name):
        b_rows = list(WorkspaceSettings.objects.values_list("display_name", flat=True))
    assert a_rows == ["Tenant A"]
    assert b_rows == ["Tenant B"]


def test_customer_cannot_sign_in_on_public_host(client_for):
    response = client_for().post("/accounts/login/", {"username": "owner@tenant-a.test", "password": "pw-owner-123"})
    assert response.status_code == 200
    assert b"This sign-in is for staff" in response.content
