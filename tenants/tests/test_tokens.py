"""Platform tokens: hashed at rest, shown once, refused at once when revoked; the CLI and admin."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

import tenants.admin_tokens  # noqa: F401 - registers the admin (tenants/admin.py imports it too)
from tenants.models import PlatformToken, User
from tenants.tokens import (
    platform_token_authenticate,
    platform_token_create,
    platform_token_mark_used,
    platform_token_revoke,
)

pytestmark = pytest.mark.django_db


def test_token_is_hashed_at_rest_and_shown_once():
    token, raw = platform_token_create(name="rag backend")

    assert raw.startswith("sop_") and len(raw) == 4 + 43  # 32 random bytes, URL-safe base64
    row = PlatformToken.objects.values().get(pk=token.pk)
    assert row["name"] == "rag backend"
    assert row["prefix"] == raw[:12]
    assert row["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert all(raw not in str(value) for value in row.values())  # the token itself is nowhere
    assert row["last_used_at"] is None and row["revoked_at"] is None


def test_every_token_is_new():
    raws = {platform_token_create(name=f"t{i}")[1] for i in range(5)}
    assert len(raws) == 5


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_token_needs_a_name(name):
    with pytest.raises(ValidationError) as error:
        platform_token_create(name=name)
    assert error.value.message_dict == {"name": ["A token name must be 1 to 100 characters."]}
    assert PlatformToken.objects.count() == 0


def test_authenticate_finds_the_active_token():
    token, raw = platform_token_create(name="rag backend")
    assert platform_token_authenticate(raw=raw) == token


def test_wrong_token_is_refused():
    platform_token_create(name="rag backend")
    assert platform_token_authenticate(raw="sop_" + "A" * 43) is None


@pytest.mark.parametrize(
    "raw", ["", "sop_", "sop_short", "Bearer sop_" + "A" * 43, "xyz_" + "A" * 43, "sop_" + "é" * 30]
)
def test_malformed_token_is_refused_without_a_query(raw, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert platform_token_authenticate(raw=raw) is None


def test_revoke_works_at_once_and_is_idempotent():
    token, raw = platform_token_create(name="rag backend")
    assert platform_token_authenticate(raw=raw) == token

    platform_token_revoke(token=token)
    first = PlatformToken.objects.get(pk=token.pk).revoked_at
    assert first is not None
    assert platform_token_authenticate(raw=raw) is None

    platform_token_revoke(token=token)
    assert PlatformToken.objects.get(pk=token.pk).revoked_at == first


def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries):
    token, _ = platform_token_create(name="rag backend")
    start = timezone.now()

    assert platform_token_mark_used(token=token, now=start) is True
    assert PlatformToken.objects.get(pk=token.pk).last_used_at == start
    with django_assert_num_queries(0):  # the hot path: no query within the minute
        assert platform_token_mark_used(token=token, now=start + timedelta(seconds=59)) is False
    assert platform_token_mark_used(token=token, now=start + timedelta(seconds=61)) is True
    assert PlatformToken.objects.get(pk=token.pk).last_used_at == start + timedelta(seconds=61)


def test_last_used_concurrent_requests_write_once():
    token, _ = platform_token_create(name="rag backend")
    now = timezone.now()
    other_copy = PlatformToken.objects.get(pk=token.pk)  # loaded by a concurrent request
    assert platform_token_mark_used(token=token, now=now) is True
    assert platform_token_mark_used(token=other_copy, now=now + timedelta(seconds=1)) is False
    assert PlatformToken.objects.get(pk=token.pk).last_used_at == now


# --- manage.py create_platform_token --------------------------------------------------------


def _command(*args):
    out = StringIO()
    call_command("create_platform_token", *args, stdout=out)
    return out.getvalue().splitlines()


def test_command_prints_the_token_once():
    lines = _command("rag-backend production")

    token = PlatformToken.objects.get()
    assert lines == [
        f"Created platform token “rag-backend production” (prefix {token.prefix}).",
        lines[1],
        "Copy it now: it will not be shown again (only its hash is stored).",
    ]
    assert lines[1].startswith(token.prefix)
    assert platform_token_authenticate(raw=lines[1]) == token


def test_command_revokes_by_prefix():
    token, raw = platform_token_create(name="old backend")

    assert _command("--revoke", token.prefix) == [f"Revoked platform token “old backend” (prefix {token.prefix})."]
    assert platform_token_authenticate(raw=raw) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give either a token name (to create one) or --revoke <prefix>, not both or neither."),
        (("name", "--revoke", "sop_abcdefgh"), "Give either a token name"),
        (("--revoke", "sop_"), "Give at least 8 characters of the prefix"),
        (("--revoke", "sop_nothere"), "No active platform token has the prefix sop_nothere."),
        (("   ",), "A token name must be 1 to 100 characters."),
    ],
)
def test_command_errors(args, message):
    with pytest.raises(CommandError) as error:
        _command(*args)
    assert str(error.value).startswith(message)
    assert PlatformToken.objects.filter(revoked_at__isnull=False).count() == 0


def test_command_does_not_revoke_a_revoked_token_twice():
    token, _ = platform_token_create(name="old backend")
    platform_token_revoke(token=token)
    with pytest.raises(CommandError, match="No active platform token"):
        _command("--revoke", token.prefix)


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client_for):
    user = User.objects.create_superuser(username="root", email="root@saasops.test", password="pw-root-123")
    return client_for(None, user), user


def test_admin_add_shows_the_token_once(staff_client):
    client, user = staff_client
    response = client.post("/admin/tenants/platformtoken/add/", {"name": "rag backend"})

    token = PlatformToken.objects.get()
    assert response.status_code == 302
    assert response["Location"] == "/admin/tenants/platformtoken/"
    message, added = [str(m) for m in get_messages(response.wsgi_request)]
    raw = message.split(": ", 1)[1].split(" — ")[0]
    assert message == f"Platform token “rag backend”: {raw} — copy it now, it will not be shown again."
    assert added.startswith("The platform token")
    assert platform_token_authenticate(raw=raw) == token
    assert token.created_by == user

    shown = client.get(response["Location"]).content.decode()  # the page after saving shows it
    assert raw in shown
    again = client.get(f"/admin/tenants/platformtoken/{token.pk}/change/").content.decode()  # and never again
    assert token.prefix in again
    assert raw not in again and token.token_hash not in again


def test_admin_list_and_revoke_action(staff_client):
    client, user = staff_client
    keep, keep_raw = platform_token_create(name="keep me")
    drop, drop_raw = platform_token_create(name="drop me")

    listing = client.get("/admin/tenants/platformtoken/").content.decode()
    assert keep.prefix in listing and drop.prefix in listing

    response = client.post(
        "/admin/tenants/platformtoken/",
        {"action": "revoke_selected", "_selected_action": [drop.pk]},
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Revoked 1 token(s); they are refused from now on."
    ]
    assert platform_token_authenticate(raw=drop_raw) is None
    assert platform_token_authenticate(raw=keep_raw) == keep


def test_admin_cannot_delete_or_edit_the_hash(staff_client):
    client, _ = staff_client
    token, _ = platform_token_create(name="rag backend")

    assert client.get(f"/admin/tenants/platformtoken/{token.pk}/delete/").status_code == 403
    client.post(
        f"/admin/tenants/platformtoken/{token.pk}/change/",
        {"name": "renamed", "token_hash": "0" * 64, "prefix": "sop_forged00"},
    )
    row = PlatformToken.objects.get(pk=token.pk)
    assert (row.name, row.token_hash, row.prefix) == ("renamed", token.token_hash, token.prefix)
