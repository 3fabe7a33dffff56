"""API keys from the workspace: shown once, listed with last use, revoked at once."""

import pytest

from tenants.models import TenantEvent
from workspace.models import ApiKey

pytestmark = pytest.mark.django_db


def test_admin_creates_a_key_shown_once(as_role, tenant_a):
    client = as_role("admin")
    response = client.post("/api-keys/", {"name": "Reporting", "scopes": ["read_usage", "write_events"]})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    key = ApiKey.objects.get(name="Reporting")
    raw = text.split('id="new-key-value">')[1].split("<")[0]
    assert raw.startswith("sok_") and raw[:12] == key.prefix
    assert raw not in str(ApiKey.objects.values_list(flat=True))  # only its hash is stored
    assert key.scopes == ["read_usage", "write_events"]
    assert raw not in client.get("/api-keys/").content.decode()
    assert TenantEvent.objects.filter(tenant=tenant_a, kind="api_key_created").count() == 1


def test_key_reads_usage_then_fails_at_once_after_revoke(as_role, client_for, tenant_a):
    client = as_role("owner")
    text = client.post("/api-keys/", {"name": "CI", "scopes": ["read_usage"]}).content.decode()
    raw = text.split('id="new-key-value">')[1].split("<")[0]
    api = client_for(tenant_a)
    assert api.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    listing = client.get("/api-keys/").content.decode()
    assert "ago" in listing and "never" not in listing  # last used
    key = ApiKey.objects.get(name="CI")
    response = client.post(f"/api-keys/{key.pk}/revoke")
    assert response.status_code == 302
    assert api.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert "revoked" in client.get("/api-keys/").content.decode()
    assert client.post(f"/api-keys/{key.pk}/revoke").status_code == 302  # twice: no-op
    assert TenantEvent.objects.filter(tenant=tenant_a, kind="api_key_revoked").count() == 1


def test_unknown_key_id_is_404(as_role):
    assert as_role("owner").post("/api-keys/999999/revoke").status_code == 404


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "", "scopes": ["read_usage"]}, "This field is required."),
        ({"name": "   ", "scopes": ["read_usage"]}, "This field is required."),
        ({"name": "x" * 101, "scopes": ["read_usage"]}, "at most 100 characters"),
        ({"name": "ok"}, "Choose at least one scope."),
        ({"name": "ok", "scopes": ["admin"]}, "Select a valid choice"),
        ({"name": "tab\there", "scopes": ["read_usage"]}, "printable characters only"),
    ],
)
def test_bad_key_input(as_role, data, message):
    response = as_role("owner").post("/api-keys/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiKey.objects.exists()


def test_hostile_key_name_is_escaped(as_role):
    client = as_role("owner")
    client.post("/api-keys/", {"name": "<img src=x onerror=alert(1)>", "scopes": ["read_usage"]})
    page = client.get("/api-keys/").content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
