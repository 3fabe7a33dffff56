"""Tenant isolation: a member of A gets nothing of B, and A's keys, ids and tokens mean
nothing on B's host."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from workspace.tests.conftest import query

pytestmark = pytest.mark.django_db

PAGES = ["/", "/usage/", "/usage/export.csv", "/billing/", "/api-keys/", "/members/", "/departments/", "/settings/"]


@pytest.mark.parametrize("path", PAGES)
def test_member_of_a_on_b_host_gets_404_and_nothing_of_b(client_for, tenant_b, owner_a, path):
    response = client_for(tenant_b, owner_a).get(path)
    assert response.status_code == 404
    text = response.content.decode()
    assert "Tenant B" not in text and "tenant-b" not in text
    assert "owner@tenant-b.test" not in text


def test_member_of_a_cannot_post_on_b_host(client_for, tenant_b, owner_a):
    from workspace.models import ApiKey

    client = client_for(tenant_b, owner_a)
    assert client.post("/api-keys/", {"name": "intruder", "scopes": ["read_usage"]}).status_code == 404
    with tenant_context(tenant_b):
        assert not ApiKey.objects.filter(name="intruder").exists()


def test_b_membership_ids_are_not_found_on_a(as_role, tenant_b):
    theirs = tenant_b.memberships.get(role="owner")
    client = as_role("owner")
    assert client.post(f"/members/{theirs.pk}/role", {"role": "viewer"}).status_code == 404
    assert client.post(f"/members/{theirs.pk}/remove").status_code == 404
    theirs.refresh_from_db()
    assert theirs.role == "owner"


def test_a_key_is_401_on_b_host(client_for, tenant_a, tenant_b):
    from workspace.keys import api_key_create

    with tenant_context(tenant_a):
        _, raw = api_key_create(name="a", scopes=["read_usage"])
    assert client_for(tenant_a).get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert client_for(tenant_b).get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_b_key_id_revoke_on_a_is_404(client_for, as_role, tenant_a, tenant_b):
    from workspace.keys import api_key_create
    from workspace.models import ApiKey

    with tenant_context(tenant_b):
        key, _ = api_key_create(name="b only", scopes=["read_usage"])
    with tenant_context(tenant_a):
        ApiKey.objects.filter(pk=key.pk).delete()  # make sure A has no key with that id
    assert as_role("owner").post(f"/api-keys/{key.pk}/revoke").status_code == 404
    with tenant_context(tenant_b):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_csv_and_chart_hold_only_own_usage(as_role, record):
    day = timezone.now() - timedelta(days=2)
    record([
        query("iso-a1", "tenant-a", day, model="a-model"),
        query("iso-a2", "tenant-a", day, model="a-model"),
        query("iso-b1", "tenant-b", day, model="b-secret-model", department="b-secret-dept", user="b-secret-user"),
    ])  # fmt: skip
    client = as_role("viewer")
    for breakdown in ("none", "model", "department", "user"):
        page = client.get("/usage/", {"breakdown": breakdown, "range": "7"}).content.decode()
        exported = client.get("/usage/export.csv", {"breakdown": breakdown, "range": "7"}).content.decode()
        for text in (page, exported):
            assert "b-secret" not in text
        rows = list(csv.reader(io.StringIO(exported)))
        assert sum(int(r[-1]) for r in rows[1:]) == 2


def test_invitation_token_of_a_is_not_found_on_b(as_role, client_for, tenant_a, tenant_b, mailoutbox,
                                                 django_capture_on_commit_callbacks):  # fmt: skip
    import re

    with django_capture_on_commit_callbacks(execute=True):
        as_role("owner").post("/members/", {"email": "guest@x.test", "role": "viewer"})
    token = re.search(r"/invitations/([^/]+)/", mailoutbox[-1].body).group(1)
    response = client_for(tenant_b).get(f"/invitations/{token}/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()
    assert "Tenant A" not in response.content.decode()
    assert client_for(tenant_a).get(f"/invitations/{token}/").status_code == 200
