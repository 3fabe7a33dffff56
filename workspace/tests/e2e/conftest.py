"""Browser tests: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright against
a live server on the test database.

pytest-django's `live_server` fixture would make every test transactional and flush the
whole database afterwards (the session's tenants, plans and schemas included), so these
tests run their own server thread instead and commit a tenant of their own, deleted again at
the end. Tenant hosts are <slug>.localhost:<port>, which Chromium resolves to loopback.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SAASOPS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
PASSWORD = "e2e-pass-2026"


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser test (headless Chromium + Playwright); skipped without them")


def _skip_reason() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need Playwright (pip install playwright==1.65.2)"
    return None


@pytest.fixture(scope="session")
def browser(django_db_setup):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread; Django refuses database
    # calls from a thread with a running loop unless told this is deliberate (it is: the
    # calls are synchronous, between browser steps).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # Database connections are per context, and the loop makes a new one: close the ones
    # opened before it (and those opened inside it, below), or they outlive the run and
    # block dropping the test database.
    connections.close_all()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield chromium
        chromium.close()
        connections.close_all()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _seed_usage(slug: str, days: int = 35) -> int:
    """About 100 queries a day over `days` days: 3 models, 4 departments, 6 users."""
    from django.utils import timezone

    from metering.ledger import events_record

    rng = random.Random(7)
    now = timezone.now()
    models = [("gpt-4o", 0.45), ("gpt-4o-mini", 0.4), ("claude-3-5-sonnet", 0.15)]
    departments = ["legal", "sales", "support", "research"]
    users = [f"u_{i}" for i in range(1, 7)]
    events = []
    for day in range(days):
        for i in range(rng.randint(60, 140)):
            at = now - timedelta(days=day, minutes=rng.randint(2, 1400))
            model = rng.choices([m for m, _ in models], weights=[w for _, w in models])[0]
            events.append(
                {
                    "id": f"e2e-{day}-{i}",
                    "tenant": slug,
                    "type": "query",
                    "timestamp": at.isoformat(),
                    "properties": {
                        "model": model,
                        "input_tokens": rng.randint(300, 3000),
                        "output_tokens": rng.randint(50, 700),
                        "latency_ms": int(rng.lognormvariate(6.0, 0.5)),
                        "department": rng.choice(departments),
                        "user": rng.choice(users),
                    },
                }
            )
    stored = 0
    for offset in range(0, len(events), 1000):
        stored += events_record(raw_events=events[offset : offset + 1000]).accepted
    return stored


@pytest.fixture(scope="module")
def e2e_tenant(django_db_setup, django_db_blocker):
    """A committed tenant 40 days old (so this period has usage), owner signs in with PASSWORD."""
    from django.db import connection
    from django.utils import timezone

    from billing.models import Subscription
    from lifecycle.models import ProvisioningAttempt
    from lifecycle.services import tenant_provision
    from metering.models import (
        MeterHourly,
        MeterUniqueDaily,
        UsageAlert,
        UsageDaily,
        UsageEvent,
        UsageHourly,
        UsageUserDaily,
    )
    from tenants.models import Membership, Plan, Tenant, TenantStatus, User

    slug = f"e2e-{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        tenant = tenant_provision(
            key=f"e2e:{slug}", name="Umbra Analytics", slug=slug, owner_email=f"owner@{slug}.test",
            owner_password=PASSWORD, plan=Plan.objects.get(code="starter"),
        )  # fmt: skip
        created = timezone.now() - timedelta(days=40)
        anchor = min(created.day, 28)
        Tenant.objects.filter(pk=tenant.pk).update(created_at=created, status=TenantStatus.ACTIVE, trial_ends_at=None)
        Subscription.objects.filter(tenant=tenant).update(
            anchor_day=anchor, started_at=created, billing_starts_at=created, status="active"
        )
        tenant.refresh_from_db()
        events = _seed_usage(slug)
        connection.set_schema_to_public()
    yield {"tenant": tenant, "slug": slug, "owner": f"owner@{slug}.test", "events": events}
    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        for model in (UsageEvent, UsageHourly, UsageDaily, UsageUserDaily, MeterHourly, MeterUniqueDaily, UsageAlert):
            model.objects.filter(tenant_id=tenant.pk).delete()
        emails = list(Membership.objects.filter(tenant=tenant).values_list("user__email", flat=True))
        Tenant.objects.get(pk=tenant.pk).delete(force_drop=True)
        User.objects.filter(email__in=emails).exclude(memberships__isnull=False).delete()
        ProvisioningAttempt.objects.filter(slug=slug).delete()  # kept by design; not by a test


@pytest.fixture(scope="module")
def server(e2e_tenant, django_db_blocker):
    """A live server thread on a free port; yields the tenant's base URL."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connections
    from django.test.testcases import LiveServerThread

    # The browser keeps connections alive, and a request thread keeps its database connection
    # for as long as its socket: with persistent connections (CONN_MAX_AGE) they would outlive
    # the tests and block dropping the test database. Close them after each request instead.
    settings_dict = connections.settings["default"]
    max_age = settings_dict.get("CONN_MAX_AGE")
    settings_dict["CONN_MAX_AGE"] = 0
    with django_db_blocker.unblock():
        thread = LiveServerThread("localhost", StaticFilesHandler)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        try:
            yield f"http://{e2e_tenant['slug']}.localhost:{thread.port}"
        finally:
            thread.terminate()
            settings_dict["CONN_MAX_AGE"] = max_age


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"workspace-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
