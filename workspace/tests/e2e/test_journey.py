"""The customer's journey in a real browser: sign in, read the overview (numbers equal the
API's), switch the chart's range, export CSV (equal to the API's CSV), create and revoke an
API key, invite a member who accepts. Screenshots of the main pages go to artifacts/."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from metering.periods import period_bounds
from workspace.tests.e2e.conftest import PASSWORD, shot

# django_db: the test database must exist (the data itself is committed by the fixtures).
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def sign_in(page, server, email, password=PASSWORD):
    page.goto(f"{server}/accounts/login/?next=/")
    page.fill("input[name=login], input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{server}/")


FETCH = """async ([url, headers]) => {
  const r = await fetch(url, {headers});
  return {status: r.status, text: await r.text()};
}"""


def downloaded(download_info) -> str:
    return Path(download_info.value.path()).read_text()


class Fetched:
    def __init__(self, result):
        self.status, self._text = result["status"], result["text"]

    def text(self):
        return self._text

    def json(self):
        import json

        return json.loads(self._text)


def api(page, server, path, **headers):
    """GET through the page's own fetch(): Chromium resolves *.localhost (Playwright's
    request client does not) and sends the page's cookies."""
    return Fetched(page.evaluate(FETCH, [f"{server}{path}", headers]))


def number(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.]", "", text))


def test_overview_matches_api_and_pages_render(page, server, e2e_tenant):
    sign_in(page, server, e2e_tenant["owner"])
    shot(page, "overview")
    used = number(page.inner_text('[data-testid="used-api_calls"]'))
    tenant = e2e_tenant["tenant"]
    start, end = period_bounds(anchor=min(tenant.created_at.day, 28), at=timezone.now())
    body = api(page, server, f"/api/v1/usage?from={start.isoformat().replace('+00:00', 'Z')}"
               f"&to={end.isoformat().replace('+00:00', 'Z')}&granularity=month&group_by=meter").json()  # fmt: skip
    api_calls = sum(Decimal(row["value"]) for row in body["data"] if row["meter"] == "api_calls")
    assert body["tenant"] == e2e_tenant["slug"]
    assert used == api_calls > 0
    tokens = sum(Decimal(row["value"]) for row in body["data"] if row["meter"] == "ai_tokens")
    assert number(page.inner_text('[data-testid="used-ai_tokens"]')) == tokens

    # A department over its budget: recorded once, shown on the overview.
    page.goto(f"{server}/departments/")
    page.fill("#id_code", "legal")
    page.fill("#id_name", "Legal")
    page.fill("#id_monthly_budget_usd", "0.50")
    page.click("button:has-text('Add department')")
    page.wait_for_selector("text=Over budget since")
    page.goto(f"{server}/")
    assert "Legal is over its budget" in page.inner_text(".ws-alerts")
    shot(page, "overview-budget-alert")

    for path, name in [("/billing/", "billing"), ("/billing/invoices/", "invoices"), ("/members/", "members"),
                       ("/departments/", "departments"), ("/settings/", "settings")]:  # fmt: skip
        page.goto(f"{server}{path}")
        assert page.locator("h1").first.is_visible()
        shot(page, name)


def test_usage_range_switch_and_csv_equal_api(page, server, e2e_tenant):
    sign_in(page, server, e2e_tenant["owner"])
    page.click("text=Usage")
    page.wait_for_url(re.compile(r"/usage/"))
    assert page.locator('[data-testid="usage-table"] tbody tr').count() == 30
    shot(page, "usage-30d")

    page.click("label.seg-item:has-text('7 days')")  # applies at once (workspace.js)
    page.wait_for_url(re.compile(r"range=7"))
    rows = page.locator('[data-testid="usage-table"] tbody tr')
    assert rows.count() == 7
    shot(page, "usage-7d")

    with page.expect_download() as download_info:
        page.click('[data-testid="export"]')
    exported = list(csv.reader(io.StringIO(downloaded(download_info))))
    assert exported[0] == ["date", "query_count"]
    first, last = exported[1][0], exported[-1][0]
    to = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
    reference = list(csv.reader(io.StringIO(api(page, server, f"/api/v1/usage.csv?from={first}&to={to}").text())))
    assert [(r[0], r[1]) for r in reference[1:]] == [(r[0], r[1]) for r in exported[1:]]
    # The table shows the same numbers.
    shown = [(c.split("\t")[0], c.split("\t")[-1].replace(",", "")) for c in rows.all_inner_texts()]
    assert shown == [(r[0], r[1]) for r in exported[1:]]

    page.select_option("select[name=breakdown]", "model")
    page.wait_for_url(re.compile(r"breakdown=model"))
    assert page.locator("ul.legend li").count() == 3
    shot(page, "usage-7d-by-model")
    with page.expect_download() as download_info:
        page.click('[data-testid="export"]')
    by_model = list(csv.DictReader(io.StringIO(downloaded(download_info))))
    reference = api(page, server, f"/api/v1/usage?from={first}&to={to}&granularity=day&group_by=model").json()
    expected = {(r["period"], r["model"]): str(r["queries"]) for r in reference["data"]}
    got = {(row["date"], m): row[m] for row in by_model for m in row if m not in ("date", "total") and row[m] != "0"}
    assert got == expected

    page.click("label.seg-item:has-text('p95 latency')")
    page.wait_for_url(re.compile(r"metric=latency"))
    assert page.locator("svg.chart polyline").count() >= 1
    shot(page, "usage-latency-by-model")

    page.click("label.seg-item:has-text('Cost')")
    page.wait_for_url(re.compile(r"metric=cost"))
    page.click("label.seg-item:has-text('90 days')")
    page.wait_for_url(re.compile(r"range=90"))
    page.select_option("select[name=breakdown]", "department")
    page.wait_for_url(re.compile(r"breakdown=department"))
    page.locator("svg.chart g.day").nth(-3).locator("rect").first.hover()
    assert page.locator(".chart-tip").is_visible()
    shot(page, "usage-cost-90d-by-department")


def test_api_key_create_and_revoke(page, server, e2e_tenant):
    sign_in(page, server, e2e_tenant["owner"])
    page.goto(f"{server}/api-keys/")
    shot(page, "api-keys-empty")
    page.fill("#id_name", "Reporting <b>script</b>")
    page.check("input[value=read_usage]")
    page.click("button:has-text('Create key')")
    raw = page.inner_text("#new-key-value").strip()
    assert raw.startswith("sok_")
    assert page.locator('[data-testid="keys-table"]').inner_text().count("Reporting <b>script</b>") == 1
    shot(page, "api-keys-created")
    assert api(page, server, "/api/v1/usage", Authorization=f"Bearer {raw}").status == 200
    page.goto(f"{server}/api-keys/")  # the raw key is not shown again
    assert page.locator("#new-key-value").count() == 0
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("text=revoked")
    assert api(page, server, "/api/v1/usage", Authorization=f"Bearer {raw}").status == 401


def test_invite_member_who_accepts(page, server, e2e_tenant, browser):
    from django.core import mail

    sign_in(page, server, e2e_tenant["owner"])
    page.goto(f"{server}/members/")
    invitee = f"new.analyst@{e2e_tenant['slug']}.test"
    page.fill("#id_email", invitee)
    page.select_option("#id_role", "viewer")
    page.click("button:has-text('Send invitation')")
    page.wait_for_selector(f"text=Invitation sent to {invitee}")
    assert invitee in page.locator('[data-testid="invitations-table"]').inner_text()
    shot(page, "members-invited")
    message = next(m for m in reversed(mail.outbox) if invitee in m.to)
    link = re.search(r"http://\S+/invitations/\S+/", message.body).group(0)
    assert link.startswith(server)

    guest = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    guest.goto(link)
    assert "Join Umbra Analytics" in guest.inner_text("h1")
    shot(guest, "invitation-accept")
    guest.fill("#id_password1", "a-long-new-pass-2026")
    guest.fill("#id_password2", "a-long-new-pass-2026")
    guest.click("button:has-text('Accept and join')")
    guest.wait_for_url(f"{server}/")
    assert guest.locator(".ws-role").inner_text() == "Viewer"
    guest.goto(f"{server}/billing/")
    assert "Your role cannot do this" in guest.inner_text("h1")
    shot(guest, "forbidden-viewer-billing")
    guest.goto(link)  # single use
    assert "already been used" in guest.inner_text(".card")
    guest.context.close()
