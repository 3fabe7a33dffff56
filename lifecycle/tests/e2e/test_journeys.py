"""The customer's journeys in a real browser: signup from /pricing/ to the dashboard; an
upgrade; a cancellation and its undoing."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail

pytestmark = [pytest.mark.e2e]

PASSWORD = "e2e-Strong-pass-2026"


def wait_for_mail(to: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mail.outbox if to in m.to]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no email to {to}; outbox: {[m.subject for m in mail.outbox]}")


def test_signup_from_pricing_to_dashboard(in_browser, live_app, e2e_cleanup, shot):
    slugs, emails = e2e_cleanup
    slugs.append("e2e-labs")
    emails.append("founder@e2e-journey.test")
    in_browser(lambda page: signup_journey(page, live_app, shot))
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="e2e-labs")
    assert (tenant.plan.code, tenant.billing_interval, tenant.status) == ("growth", "yearly", "trialing")


def signup_journey(page, live_app, shot):
    email = "founder@e2e-journey.test"
    page.goto(f"{live_app}/pricing/")
    assert page.locator(".lc-plan").count() >= 4
    shot(page, "01-pricing-monthly")
    page.get_by_role("link", name=re.compile("Yearly")).click()
    assert page.locator("#pricing").get_attribute("data-interval") == "yearly"
    assert (
        page.locator("[data-plan=growth] .only-yearly.lc-billed")
        .inner_text()
        .startswith("per month · $2,990.00 billed yearly")
    )
    shot(page, "02-pricing-yearly")
    page.locator("[data-plan=growth] a.only-yearly").click()

    page.wait_for_url(re.compile(r"/signup/\?plan=growth&interval=yearly"))
    page.fill("#id_email", email)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_company", "E2E Labs")
    page.wait_for_function("document.querySelector('#id_slug').value === 'e2e-labs'")
    page.wait_for_selector("#slug-hint.ok")
    assert page.locator("input[name=plan][data-code=growth]").is_checked()
    shot(page, "03-signup-filled")
    page.get_by_role("button", name="Create workspace").click()

    page.wait_for_url(re.compile(r"/signup/sent/$"))
    assert "Check your email" in page.content()
    shot(page, "04-check-email")
    link = re.search(r"https?://\S+/signup/verify/\S+/", wait_for_mail(email).body).group(0)

    page.goto(link)  # confirms by POST on its own, then the progress page hands off
    page.wait_for_url(re.compile(r"^http://e2e-labs\.localhost:\d+/$"), timeout=30_000)
    assert "E2E Labs" in page.content() and "Welcome to E2E Labs" in page.content()
    shot(page, "05-dashboard")


def test_upgrade_then_cancel_and_reactivate(in_browser, live_app, e2e_cleanup, shot):
    slugs, emails = e2e_cleanup
    from lifecycle.services import tenant_provision
    from tenants.models import Plan

    email = "owner@e2e-plan.test"
    slugs.append("e2e-plan")
    emails.append(email)
    tenant_provision(key="e2e:plan", name="E2E Plan Co", slug="e2e-plan", owner_email=email,
                     owner_password=PASSWORD, plan=Plan.objects.get(code="starter"))  # fmt: skip
    base = live_app.replace("://localhost", "://e2e-plan.localhost")
    in_browser(lambda page: plan_journey(page, base, email, shot))


def plan_journey(page, base, email, shot):
    page.goto(f"{base}/plan/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("#id_login", email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/plan/$"))
    shot(page, "06-plan-page")

    page.locator("[data-plan=growth]").get_by_role("button", name="Upgrade now").click()
    page.wait_for_selector("text=You are on Growth now")
    assert page.locator(".lc-plan.current h2").inner_text() == "Growth"
    shot(page, "07-upgraded")

    page.locator("#cancel-form input[value=too_expensive]").check()
    page.fill("#id_comment", "Trying a cheaper tool")
    page.get_by_role("button", name="Cancel subscription").click()
    page.wait_for_selector("text=Cancelled at the end of the period")
    shot(page, "08-cancelled")
    page.get_by_role("button", name="Keep my subscription").click()
    page.wait_for_selector("text=the cancellation is withdrawn")
    assert page.locator("#cancel-form").count() == 1
    shot(page, "09-reactivated")

    page.goto(f"{base}/history/")
    for kind in ("upgraded", "cancellation_scheduled", "reactivated"):
        assert page.locator(f".lc-kind:text-is('{kind}')").count() == 1
    shot(page, "10-history")
