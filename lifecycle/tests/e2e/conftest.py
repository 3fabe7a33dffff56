"""Browser tests in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

They need a server other processes can reach, so the app runs in a thread against the
test database WITHOUT the per-test transaction (the browser's requests commit); what a test
made is deleted again by `e2e_cleanup`. Mail goes to Django's locmem outbox of this process,
where the tests read the verification link. Celery runs eagerly (the root conftest).
Screenshots go to artifacts/ (git-ignored). Skipped, with the reason, when Chromium or
Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SAASOPS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # *.localhost is loopback; say so, so no resolver is asked.
    "--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1",
]


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: browser test in headless Chromium (skipped without it)")


def pytest_collection_modifyitems(items):
    # The marker makes pytest-django create the test database even when only these tests
    # run; `_django_db_helper` below keeps it from wrapping them in a transaction.
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.django_db)


@pytest.fixture
def _django_db_helper(django_db_setup, django_db_blocker):
    """Database access without the per-test transaction (the browser's requests commit)."""
    django_db_blocker.unblock()
    yield
    django_db_blocker.restore()


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set SAASOPS_CHROMIUM)"
    return None


@pytest.fixture
def in_browser(live_app):
    """in_browser(journey) runs journey(page) in a fresh headless Chromium, on a thread of
    its own: Playwright's sync API keeps an asyncio loop on the thread that starts it, and
    other modules' browser fixtures may hold the test thread's."""
    reason = _missing()
    if reason:
        pytest.skip(reason)

    def run(journey) -> None:
        from django.db import connections

        outcome: dict[str, BaseException] = {}

        def target() -> None:
            from playwright.sync_api import sync_playwright

            try:
                with sync_playwright() as pw:
                    chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                    context = chromium.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    page.set_default_timeout(20_000)
                    try:
                        journey(page)
                    finally:
                        context.close()
                        chromium.close()
            except BaseException as exc:  # handed to the test thread
                outcome["error"] = exc
            finally:
                connections.close_all()  # this thread's (per asyncio context) connections

        # Django refuses database calls from a thread with a running loop unless told they
        # are deliberate: the journey's are synchronous, between browser steps.
        previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        try:
            thread = threading.Thread(target=target, name="e2e-browser")
            thread.start()
            thread.join(timeout=300)
        finally:
            if previous is None:
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            else:
                os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
        if thread.is_alive():
            raise TimeoutError("the browser journey did not finish in 300 s")
        if "error" in outcome:
            raise outcome["error"]

    return run


@pytest.fixture
def shot():
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"e2e-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def live_app(_django_db_helper, settings):
    """The app on http://localhost:<port>/ (tenants at http://<slug>.localhost:<port>/)."""
    from django.db import connections
    from django.test.testcases import LiveServerThread, _StaticFilesHandler

    # The server's request threads close their connections after each request (else the
    # test database could not be dropped at the end of the session).
    db_settings = connections.settings["default"]
    saved_max_age = db_settings.get("CONN_MAX_AGE")
    db_settings["CONN_MAX_AGE"] = 0
    server = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    settings.DEBUG = True  # links in emails and redirects: http with the port
    settings.PORT = server.port
    yield f"http://localhost:{server.port}"
    server.terminate()
    db_settings["CONN_MAX_AGE"] = saved_max_age
    connections.close_all()


@pytest.fixture
def e2e_cleanup(live_app):
    """Delete what a browser test committed: tenants (schema dropped) by slug, users by email."""
    slugs: list[str] = []
    emails: list[str] = []
    yield slugs, emails
    from django.db import connection

    from billing.models import CreditNote, Invoice
    from lifecycle.models import Signup
    from tenants.models import Tenant, User

    connection.set_schema_to_public()
    for tenant in Tenant.objects.filter(slug__in=slugs):
        CreditNote.objects.filter(invoice__tenant=tenant).delete()
        Invoice.objects.filter(tenant=tenant).delete()
        Signup.objects.filter(tenant=tenant).delete()
        tenant.delete(force_drop=True)
    Signup.objects.filter(email__in=emails).delete()
    User.objects.filter(email__in=emails).delete()
