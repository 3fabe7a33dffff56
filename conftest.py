"""Test set-up shared by every app: a real PostgreSQL test database with the public and
template tenants plus two customer tenants (A and B) created once per session by cloning
the template schema, and a real Redis (flushed at the start)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):  # noqa: F811 - extends pytest-django's
    from lifecycle.services import tenant_provision
    from saasops.redis import client as redis_client
    from tenants.models import Plan
    from tenants.services import public_tenant_ensure, staff_groups_ensure, template_tenant_ensure

    redis_client().flushdb()
    with django_db_blocker.unblock():
        public_tenant_ensure()
        template_tenant_ensure()
        staff_groups_ensure()
        growth = Plan.objects.get(code="growth")
        for slug, name in (("tenant-a", "Tenant A"), ("tenant-b", "Tenant B")):
            tenant_provision(
                key=f"test:{slug}",
                name=name,
                slug=slug,
                owner_email=f"owner@{slug}.test",
                owner_password="pw-owner-123",
                plan=growth,
            )
        connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _public_schema_after_test():
    yield
    connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _drop_cached_tenant_state():
    """Config and gate caches live in Redis, which a test's rollback does not undo: a test that
    changed a tenant inside its transaction must not leave the changed state cached."""
    yield
    import redis as redis_py
    from django.conf import settings

    redis = redis_py.Redis.from_url(settings.REDIS_URL)  # not saasops.redis.client: tests patch that
    keys = list(redis.scan_iter(match="saasops:gateinfo:*", count=1000))
    keys += list(redis.scan_iter(match="*tenant-config:*", count=1000))
    keys += list(redis.scan_iter(match="saasops:stripe-events:*", count=1000))  # a queued drain's flag
    if keys:
        redis.delete(*keys)
    redis.close()


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in-process where a test is about their logic; tests of the real worker path
    use the `celery_worker_process` fixture and turn this off (`celery_live`)."""
    from saasops.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def celery_live(celery_worker_process):
    from saasops.celery import app

    app.conf.task_always_eager = False
    return celery_worker_process


@pytest.fixture
def tenant_a(db):
    from tenants.models import Tenant

    return Tenant.objects.get(slug="tenant-a")


@pytest.fixture
def tenant_b(db):
    from tenants.models import Tenant

    return Tenant.objects.get(slug="tenant-b")


def host_of(tenant) -> str:
    from tenants.services import tenant_host

    return tenant_host(slug=tenant.slug)


@pytest.fixture
def client_for(db):
    """client_for(tenant, user=None) -> a test client bound to the tenant's host (signed in as user)."""

    def make(tenant=None, user=None) -> Client:
        from django.conf import settings

        host = host_of(tenant) if tenant is not None else settings.BASE_DOMAIN
        client = Client(HTTP_HOST=host)
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def owner_a(tenant_a):
    return tenant_a.memberships.get(role="owner").user


@pytest.fixture
def owner_b(tenant_b):
    return tenant_b.memberships.get(role="owner").user


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup):
    """A real Celery worker (separate process) on the test database and the test Redis."""
    import os
    import subprocess
    import sys
    import time
    from urllib.parse import urlparse, urlunparse

    from django.conf import settings

    from saasops.celery import heartbeat_key
    from saasops.redis import client as redis_client

    env = dict(os.environ)
    # Same server as the tests, but the test database pytest-django created.
    env["DATABASE_URL"] = urlunparse(
        urlparse(env["DATABASE_URL"])._replace(path="/" + settings.DATABASES["default"]["NAME"])
    )
    redis_client().delete(heartbeat_key("worker"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "saasops", "worker", "--pool=solo", "-l", "WARNING", "-n", "test@%h"],
        env=env,
    )
    deadline = time.monotonic() + 30
    while redis_client().get(heartbeat_key("worker")) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("test Celery worker did not start")
        time.sleep(0.1)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def make_tenant(db):
    """make_tenant(plan="free", slug=None) -> a new tenant provisioned inside the test's
    transaction (rolled back with it, schema included). Its id is new, so Redis keys are too."""
    import itertools

    from lifecycle.services import tenant_provision
    from tenants.models import Plan

    counter = itertools.count(1)

    def make(plan: str = "free", slug: str | None = None, **kwargs):
        import uuid

        slug = slug or f"t-{uuid.uuid4().hex[:10]}"
        n = next(counter)
        return tenant_provision(
            key=f"test-make:{slug}:{n}",
            name=kwargs.pop("name", f"Test tenant {slug}"),
            slug=slug,
            owner_email=kwargs.pop("owner_email", f"owner@{slug}.test"),
            owner_password="pw-owner-123",
            plan=Plan.objects.get(code=plan),
            **kwargs,
        )

    return make


@pytest.fixture
def platform_token(db):
    """(raw token, api client with the Authorization header set) for the platform API."""
    from tenants.tokens import platform_token_create

    _, raw = platform_token_create(name="test product backend")
    return raw


@pytest.fixture
def platform_client(platform_token):
    from django.conf import settings

    return Client(HTTP_HOST=settings.BASE_DOMAIN, HTTP_AUTHORIZATION=f"Bearer {platform_token}")


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    """The Stripe API the payment tests talk to, for the whole session; settings point at it.

    - `make test` without STRIPE_SECRET_KEY started localstripe and set STRIPE_API_BASE: used as is.
    - STRIPE_SECRET_KEY set (a Stripe test key, STRIPE_API_BASE unset): Stripe's test mode.
    - Neither (pytest run some other way): a localstripe started here, on a free 127.0.0.1
      port with its store in a temporary folder, stopped (by PID) at the end of the session.
    Yields {"api_base", "secret_key", "webhook_secret"}."""
    import secrets
    import subprocess
    import sys
    import time

    from django.conf import settings

    from saasops.devstack import LOCAL_STRIPE_KEY, _set_pdeathsig

    names = ("PAYMENT_GATEWAY", "STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET")
    saved = {name: getattr(settings, name) for name in names}
    proc = None
    if not settings.STRIPE_SECRET_KEY:
        folder = tmp_path_factory.mktemp("localstripe")
        ready = folder / "port"
        with open(folder / "server.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "saasops.localstripe_server", "--store", str(folder / "store.pickle"),
                 "--from-scratch", "--ready-file", str(ready)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_set_pdeathsig,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"localstripe did not start; see {folder / 'server.log'}")
            time.sleep(0.05)
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{ready.read_text().strip()}"
        settings.STRIPE_SECRET_KEY = LOCAL_STRIPE_KEY
    settings.PAYMENT_GATEWAY = "stripe"
    if not settings.STRIPE_WEBHOOK_SECRET:
        settings.STRIPE_WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(16)
    yield {
        "api_base": settings.STRIPE_API_BASE,
        "secret_key": settings.STRIPE_SECRET_KEY,
        "webhook_secret": settings.STRIPE_WEBHOOK_SECRET,
    }
    for name, value in saved.items():
        setattr(settings, name, value)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
