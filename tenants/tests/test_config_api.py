"""The platform config API over HTTP: bearer token, effective config with ETag/304, writes
that create versions, validation, history, and what must stay unreachable."""

import json

import pytest
from django.conf import settings
from django.test import Client

from tenants.config import config_effective, config_version_create
from tenants.models import PlatformToken, TenantConfigVersion
from tenants.tests.test_config import (  # noqa: F401 - _fresh_config_cache is an autouse fixture
    GROWTH,
    _fresh_config_cache,
    committed_probe_tenant,
    in_thread,
    run_together,
)
from tenants.tokens import platform_token_create, platform_token_revoke

pytestmark = pytest.mark.django_db

URL = "/api/v1/tenants/{slug}/config"
ALLOWED = "max_tokens, model, prompt_template, rate_limit_burst, rate_limit_rps, retrieval_top_k"


@pytest.fixture
def token():
    return platform_token_create(name="rag backend")


@pytest.fixture
def api(client_for, token):
    """A client on the public host carrying a good platform token."""
    return client_for(None), {"Authorization": f"Bearer {token[1]}"}


def get(api, slug="tenant-a", path="", **headers):
    client, auth = api
    return client.get(URL.format(slug=slug) + path, headers={**auth, **headers})


def write(api, method, body, slug="tenant-a", raw=None):
    client, auth = api
    data = raw if raw is not None else json.dumps(body)
    return getattr(client, method)(URL.format(slug=slug), data=data, content_type="application/json", headers=auth)


def versions_of(tenant):
    return list(TenantConfigVersion.objects.filter(tenant=tenant).values_list("version", flat=True))


# --- Reading ---------------------------------------------------------------------------------


def test_effective_config_of_tenant_a(api, tenant_a):
    response = get(api)

    assert response.status_code == 200
    assert response.json() == {
        "tenant": "tenant-a",
        "version": 1,
        "plan": "growth",
        "status": "trialing",
        "vector_shard": {"name": "shard-1", "connection": "vector-db-1"},
        "config": GROWTH,
        "overridden": [],
    }
    assert response["ETag"] == f'"{config_effective(tenant=tenant_a)["etag"]}"'
    assert response["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "sent", ["{etag}", "W/{etag}", '"other", {etag}', "*"], ids=["same", "weak", "in-list", "star"]
)
def test_if_none_match_gives_304(api, sent):
    etag = get(api)["ETag"]

    response = get(api, **{"If-None-Match": sent.format(etag=etag)})

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_other_etag_gives_the_config(api):
    response = get(api, **{"If-None-Match": '"0123456789abcdef0123456789abcdef"'})
    assert response.status_code == 200
    assert response.json()["version"] == 1


def test_a_change_is_visible_on_the_very_next_get(api, django_capture_on_commit_callbacks):
    first = get(api)

    with django_capture_on_commit_callbacks(execute=True):  # the request's transaction commits
        assert write(api, "put", {"overrides": {"max_tokens": 4096}}).status_code == 200

    second = get(api, **{"If-None-Match": first["ETag"]})
    assert second.status_code == 200
    assert second["ETag"] != first["ETag"]
    assert (second.json()["version"], second.json()["config"]["max_tokens"], second.json()["overridden"]) == (
        2,
        4096,
        ["max_tokens"],
    )


# --- Writing ---------------------------------------------------------------------------------


def test_put_creates_a_version(api, tenant_a):
    response = write(api, "put", {"overrides": {"max_tokens": 4096, "model": "gpt-4.1"}, "note": "bigger"})

    assert response.status_code == 200
    version = TenantConfigVersion.objects.get(tenant=tenant_a, version=2)
    assert response.json() == {
        "version": 2,
        "created_at": version.created_at.isoformat().replace("+00:00", "Z"),
        "actor": {"type": "system", "email": None},
        "note": "bigger",
        "changes": {"max_tokens": [2048, 4096], "model": ["gpt-4o", "gpt-4.1"]},
        "overrides": {"max_tokens": 4096, "model": "gpt-4.1"},
    }


def test_put_replaces_and_patch_merges(api, tenant_a):
    write(api, "put", {"overrides": {"max_tokens": 4096, "model": "gpt-4.1"}})

    patched = write(api, "patch", {"overrides": {"retrieval_top_k": 12}}).json()
    assert (patched["version"], patched["overrides"], patched["changes"]) == (
        3,
        {"max_tokens": 4096, "model": "gpt-4.1", "retrieval_top_k": 12},
        {"retrieval_top_k": [8, 12]},
    )
    assert patched["note"] == "Changed through the platform API"

    removed = write(api, "patch", {"overrides": {"model": None}}).json()  # null: back to the preset
    assert (removed["version"], removed["overrides"], removed["changes"]) == (
        4,
        {"max_tokens": 4096, "retrieval_top_k": 12},
        {"model": ["gpt-4.1", "gpt-4o"]},
    )

    replaced = write(api, "put", {"overrides": {"rate_limit_rps": 30}}).json()
    assert (replaced["version"], replaced["overrides"], replaced["changes"]) == (
        5,
        {"rate_limit_rps": 30},
        {"max_tokens": [4096, 2048], "rate_limit_rps": [20, 30], "retrieval_top_k": [12, 8]},
    )


def test_repeating_a_write_makes_no_new_version(api, tenant_a):
    body = {"overrides": {"max_tokens": 4096}}
    first = write(api, "put", body).json()
    again = write(api, "put", body).json()
    patch_same = write(api, "patch", body).json()

    assert first == again == patch_same
    assert versions_of(tenant_a) == [2, 1]


def test_writing_tenant_a_never_changes_tenant_b(api, tenant_b, django_capture_on_commit_callbacks):
    b_before = get(api, slug="tenant-b")

    with django_capture_on_commit_callbacks(execute=True):
        write(api, "put", {"overrides": {"max_tokens": 4096}})
        write(api, "patch", {"overrides": {"model": "gpt-4.1"}})

    b_after = get(api, slug="tenant-b")
    assert (b_after.json(), b_after["ETag"]) == (b_before.json(), b_before["ETag"])
    assert versions_of(tenant_b) == [1]
    assert get(api)["ETag"] != b_after["ETag"]


# --- Validation: 400 that names each bad key, and nothing written --------------------------


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"overrides": {"colour": "blue"}}, {"overrides": {"colour": [f"unknown key; allowed keys are {ALLOWED}"]}}),
        ({"overrides": {"max_tokens": "4096"}}, {"overrides": {"max_tokens": ["must be a whole number, got str"]}}),
        ({"overrides": {"max_tokens": True}}, {"overrides": {"max_tokens": ["must be a whole number, got bool"]}}),
        ({"overrides": {"max_tokens": 1.5}}, {"overrides": {"max_tokens": ["must be a whole number, got float"]}}),
        ({"overrides": {"model": None}}, {"overrides": {"model": ["must be text, got NoneType"]}}),
        ({"overrides": {"retrieval_top_k": 101}}, {"overrides": {"retrieval_top_k": ["must be between 1 and 100"]}}),
        (
            {"overrides": {"rate_limit_rps": 50, "rate_limit_burst": 10}},
            {"overrides": {"rate_limit_burst": ["must be at least rate_limit_rps"]}},
        ),
    ],
    ids=["unknown-key", "string-for-int", "bool-for-int", "float-for-int", "null-on-put", "range", "burst<rps"],
)
def test_invalid_overrides_are_refused(api, tenant_a, body, details):
    response = write(api, "put", body)

    assert response.status_code == 400
    [(key, [message])] = details["overrides"].items()
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": f"Invalid request: overrides.{key}: {message}",
            "details": details,
        }
    }
    assert versions_of(tenant_a) == [1]


def test_every_bad_key_is_named(api, tenant_a):
    response = write(api, "patch", {"overrides": {"max_tokens": 0, "colour": "blue", "model": "gpt-4.1"}})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid request: overrides.max_tokens: must be between 1 and 128000"
        f" | overrides.colour: unknown key; allowed keys are {ALLOWED}"
    )
    assert versions_of(tenant_a) == [1]


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ([{"max_tokens": 1}], {"body": ['must be a JSON object: {"overrides": {...}, "note": "..."}']}),
        ("max_tokens=1", {"body": ['must be a JSON object: {"overrides": {...}, "note": "..."}']}),
        ({}, {"overrides": ["is required"]}),
        ({"overrides": [["max_tokens", 1]]}, {"overrides": ["must be a JSON object of key: value"]}),
        (
            {"overides": {"max_tokens": 1}},
            {"body": ["unknown field(s) overides; allowed: overrides, note"], "overrides": ["is required"]},
        ),
        ({"overrides": {}, "note": 7}, {"note": ["must be text of at most 500 characters"]}),
        ({"overrides": {}, "note": "x" * 501}, {"note": ["must be text of at most 500 characters"]}),
    ],
    ids=["list", "string", "empty", "overrides-not-object", "typo-field", "note-type", "note-length"],
)
def test_malformed_bodies_are_refused(api, tenant_a, body, details):
    response = write(api, "put", body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"] == details
    assert versions_of(tenant_a) == [1]


@pytest.mark.parametrize(
    "raw", ['{"overrides": ', "{'overrides': {}}", '{"overrides": {"max_tokens": NaN}}'], ids=["cut", "quotes", "nan"]
)
def test_malformed_json_is_refused(api, tenant_a, raw):
    response = write(api, "put", None, raw=raw)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert error["message"].startswith("JSON parse error - ")
    assert versions_of(tenant_a) == [1]


def test_oversized_body_is_refused(api, tenant_a):
    response = write(api, "put", {"overrides": {"prompt_template": "x" * 70_000}})

    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "payload_too_large", "message": "The request body is larger than 64 KB."}
    }
    assert versions_of(tenant_a) == [1]


def test_non_json_body_is_refused(api, tenant_a):
    client, auth = api
    response = client.put(URL.format(slug="tenant-a"), data="max_tokens=1", content_type="text/plain", headers=auth)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert versions_of(tenant_a) == [1]


# --- Authentication: 401, a clear message, nothing written -------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "No platform token. Send the platform token as `Authorization: Bearer <token>`."),
        ("Bearer", "Malformed Authorization header. Send the platform token as `Authorization: Bearer <token>`."),
        ("Bearer a b", "Malformed Authorization header. Send the platform token as `Authorization: Bearer <token>`."),
        (
            "Basic dXNlcjpwYXNz",
            "The Authorization header must use the Bearer scheme. "
            "Send the platform token as `Authorization: Bearer <token>`.",
        ),
        ("Bearer sop_" + "A" * 43, "The platform token is invalid or has been revoked."),
        ("Bearer not-a-token", "The platform token is invalid or has been revoked."),
    ],
    ids=["missing", "no-token", "two-parts", "basic", "wrong", "malformed"],
)
@pytest.mark.parametrize("method", ["get", "put", "patch"])
def test_bad_credentials_are_401_and_write_nothing(client_for, tenant_a, token, method, authorization, message):
    headers = {"Authorization": authorization} if authorization else {}
    client = client_for(None)
    body = json.dumps({"overrides": {"max_tokens": 4096}})

    if method == "get":
        response = client.get(URL.format(slug="tenant-a"), headers=headers)
    else:
        response = getattr(client, method)(
            URL.format(slug="tenant-a"), data=body, content_type="application/json", headers=headers
        )

    assert response.status_code == 401
    code = "not_authenticated" if authorization is None else "authentication_failed"
    assert response.json() == {"error": {"code": code, "message": message}}
    assert response["WWW-Authenticate"] == 'Bearer realm="saasops platform API"'
    assert versions_of(tenant_a) == [1]
    assert PlatformToken.objects.get(pk=token[0].pk).last_used_at is None


def test_revoked_token_is_refused_at_once(api, token, tenant_a):
    assert get(api).status_code == 200
    platform_token_revoke(token=token[0])

    assert get(api).status_code == 401
    response = write(api, "put", {"overrides": {"max_tokens": 4096}})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "The platform token is invalid or has been revoked."
    assert versions_of(tenant_a) == [1]


def test_unknown_slug_needs_a_token_first(client_for):
    response = client_for(None).get(URL.format(slug="no-such-tenant"))
    assert response.status_code == 401  # no token: nothing learned about which slugs exist


def test_signed_in_staff_still_needs_a_token(client_for, django_user_model):
    staff = django_user_model.objects.create_superuser(username="root", email="root@x.test", password="pw-root-123")
    assert client_for(None, staff).get(URL.format(slug="tenant-a")).status_code == 401


def test_use_is_recorded(api, token):
    assert get(api).status_code == 200
    assert PlatformToken.objects.get(pk=token[0].pk).last_used_at is not None


# --- What is not reachable -------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["no-such-tenant", "public", "tenant-template"])
@pytest.mark.parametrize("path", ["", "/versions"])
def test_unknown_and_non_customer_slugs_are_404(api, slug, path):
    response = get(api, slug=slug, path=path)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": f"No tenant with the slug “{slug}”."}}


def test_put_to_non_customer_slug_is_404(api):
    response = write(api, "put", {"overrides": {}}, slug="tenant-template")
    assert response.status_code == 404


def test_tenant_host_does_not_serve_the_platform_api(client_for, tenant_a, token):
    client = client_for(tenant_a)
    response = client.get(URL.format(slug="tenant-a"), headers={"Authorization": f"Bearer {token[1]}"})
    assert response.status_code == 404
    assert b"gpt-4o" not in response.content


def test_versions_endpoint_has_no_post(api):
    client, auth = api
    response = client.post(URL.format(slug="tenant-a") + "/versions", data={}, headers=auth)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- History ---------------------------------------------------------------------------------


def test_versions_list_history_newest_first(api, tenant_a, django_user_model):
    staff = django_user_model.objects.create_user(
        username="ops", email="ops@x.test", password="pw-12345", is_staff=True
    )
    config_version_create(tenant=tenant_a, overrides={"max_tokens": 4096}, actor=staff, note="bigger answers")
    write(api, "patch", {"overrides": {"retrieval_top_k": 12}, "note": "more context"})

    response = get(api, path="/versions")

    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == "tenant-a" and body["has_more"] is False
    assert [(v["version"], v["actor"], v["note"], v["changes"], v["overrides"]) for v in body["versions"]] == [
        (
            3,
            {"type": "system", "email": None},
            "more context",
            {"retrieval_top_k": [8, 12]},
            {"max_tokens": 4096, "retrieval_top_k": 12},
        ),
        (
            2,
            {"type": "staff", "email": "ops@x.test"},
            "bigger answers",
            {"max_tokens": [2048, 4096]},
            {"max_tokens": 4096},
        ),
        (1, {"type": "system", "email": None}, "Initial configuration", {}, {}),
    ]


def test_versions_pages(api, tenant_a):
    for tokens in (3000, 4000, 5000):
        config_version_create(tenant=tenant_a, overrides={"max_tokens": tokens})

    first = get(api, path="/versions?limit=2").json()
    assert ([v["version"] for v in first["versions"]], first["has_more"]) == ([4, 3], True)
    rest = get(api, path="/versions?limit=2&before=3").json()
    assert ([v["version"] for v in rest["versions"]], rest["has_more"]) == ([2, 1], False)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: must be a whole number from 1 to 200"),
        ("limit=201", "limit: must be a whole number from 1 to 200"),
        ("limit=ten", "limit: must be a whole number from 1 to 200"),
        ("limit=²", "limit: must be a whole number from 1 to 200"),
        ("before=-1", "before: must be a whole number from 1 to 2147483647"),
        ("before=" + "9" * 5000, "before: must be a whole number from 1 to 2147483647"),
    ],
)
def test_versions_bad_parameters(api, query, message):
    response = get(api, path=f"/versions?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


# --- Concurrency: PATCHes serialise on the tenant row and none is lost ---------------------------


def test_concurrent_patches_all_land():
    patches = [
        {"max_tokens": 3000},
        {"retrieval_top_k": 9},
        {"model": "gpt-4.1"},
        {"prompt_template": "Be brief."},
    ]
    with committed_probe_tenant() as tenant:
        try:
            _, raw = in_thread(lambda: platform_token_create(name="concurrency"))

            def patch(overrides):
                client = Client(HTTP_HOST=settings.BASE_DOMAIN)
                return client.patch(
                    URL.format(slug=tenant.slug),
                    data=json.dumps({"overrides": overrides}),
                    content_type="application/json",
                    headers={"Authorization": f"Bearer {raw}"},
                ).status_code

            statuses = run_together([lambda p=p: patch(p) for p in patches])
            rows = list(TenantConfigVersion.objects.filter(tenant=tenant).order_by("version"))
        finally:
            in_thread(lambda: PlatformToken.objects.filter(name="concurrency").delete())

    assert statuses == [200, 200, 200, 200]
    assert [row.version for row in rows] == [1, 2, 3, 4]
    assert rows[-1].overrides == {k: v for p in patches for k, v in p.items()}


# --- OpenAPI ---------------------------------------------------------------------------------


def test_schema_documents_the_platform_api(client_for):
    response = client_for(None).get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    assert sorted(paths["/api/v1/tenants/{slug}/config"]) == ["get", "patch", "put"]
    config_get = paths["/api/v1/tenants/{slug}/config"]["get"]
    assert (config_get["security"], config_get["tags"]) == ([{"platformToken": []}], ["platform"])
    assert sorted(config_get["responses"]) == ["200", "304", "401", "404"]
    assert "ETag" in config_get["responses"]["200"]["headers"]
    assert sorted(paths["/api/v1/tenants/{slug}/config"]["put"]["responses"]) == ["200", "400", "401", "404", "413"]
    assert sorted(paths["/api/v1/tenants/{slug}/config/versions"]) == ["get"]
    scheme = schema["components"]["securitySchemes"]["platformToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert sorted(schema["components"]["schemas"]["ConfigValues"]["properties"]) == sorted(GROWTH)


def test_schema_of_the_platform_api_has_no_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        SchemaGenerator(urlconf="tenants.api.urls").get_schema(request=None, public=True)
    assert (dict(GENERATOR_STATS._warn_cache), dict(GENERATOR_STATS._error_cache)) == ({}, {})
