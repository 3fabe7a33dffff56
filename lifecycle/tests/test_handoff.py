"""Hand-off tokens: one user, one tenant, once, for a minute."""

from datetime import timedelta

import pytest
from django.utils import timezone

from lifecycle.handoff import handoff_token_create, handoff_token_redeem
from lifecycle.models import HandoffToken

pytestmark = pytest.mark.django_db


def test_token_signs_in_on_its_tenant_once(client_for, tenant_a, owner_a):
    token = handoff_token_create(user=owner_a, tenant=tenant_a)
    client = client_for(tenant_a)
    response = client.get("/handoff/", {"token": token})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    again = client_for(tenant_a).get("/handoff/", {"token": token})
    assert again.status_code == 400 and b"expired" in again.content


def test_token_for_tenant_a_cannot_sign_in_on_tenant_b(client_for, tenant_a, tenant_b, owner_a):
    token = handoff_token_create(user=owner_a, tenant=tenant_a)
    client = client_for(tenant_b)
    assert client.get("/handoff/", {"token": token}).status_code == 400
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # still signed out on B
    assert handoff_token_redeem(token=token, tenant=tenant_a) == owner_a  # and not used up by B


def test_token_expires_after_its_ttl(tenant_a, owner_a, settings):
    token = handoff_token_create(user=owner_a, tenant=tenant_a)
    assert settings.LIFECYCLE_HANDOFF_TTL == 60
    HandoffToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert handoff_token_redeem(token=token, tenant=tenant_a) is None


def test_token_only_for_members_and_stored_hashed(tenant_a, owner_b):
    with pytest.raises(PermissionError):
        handoff_token_create(user=owner_b, tenant=tenant_a)
    assert not HandoffToken.objects.exists()


def test_unknown_or_missing_token(client_for, tenant_a, owner_a):
    token = handoff_token_create(user=owner_a, tenant=tenant_a)
    assert not HandoffToken.objects.filter(token_hash=token).exists()  # only the hash is kept
    assert client_for(tenant_a).get("/handoff/").status_code == 400
    assert client_for(tenant_a).get("/handoff/", {"token": "x" * 43}).status_code == 400
