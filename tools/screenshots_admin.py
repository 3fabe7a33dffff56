"""Screenshots of the staff admin, for looking at the pages (not part of the test suite).

Needs a running app with the demo data and Debian's chromium; Playwright's own browser
download is not used:

    .venv/bin/pip install playwright==1.65.2
    .venv/bin/python tools/screenshots_admin.py --base http://localhost:8011 --out artifacts

Writes artifacts/admin-*.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shoot(page: Page, out: Path, name: str, full_page: bool = True) -> None:
    path = out / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://localhost:8011")
    parser.add_argument("--out", default="artifacts")
    parser.add_argument("--email", default="admin@saasops.local")
    parser.add_argument("--password", default="staff-pass-2026")
    parser.add_argument("--browser", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    admin = f"{args.base}/admin"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.browser, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{admin}/login/")
        page.fill("input[name=username]", args.email)
        page.fill("input[name=password]", args.password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{admin}/")

        page.goto(f"{admin}/tenants/tenant/")
        shoot(page, out, "tenant-list")

        page.click("text=Acme Corporation")
        page.wait_for_selector("#tenant_form")
        detail_url = page.url
        shoot(page, out, "tenant-detail")

        page.click(".object-tools >> text=Suspend…")
        page.wait_for_selector("textarea[name=reason]")
        shoot(page, out, "action-suspend")
        page.click("input[type=submit]")  # no reason: the form says it is required
        shoot(page, out, "action-suspend-error")

        page.goto(detail_url)
        page.click(".object-tools >> text=Change plan…")
        shoot(page, out, "action-change-plan")

        page.goto(detail_url)
        page.click(".object-tools >> text=Change config…")
        page.fill("textarea[name=overrides]", '{"max_tokens": 0, "colour": "red"}')
        page.fill("textarea[name=reason]", "screenshot")
        page.click("input[type=submit]")
        shoot(page, out, "config-error")
        # a value that differs from run to run: the same overrides again would be refused
        page.fill("textarea[name=overrides]", json.dumps({"max_tokens": 1000 + int(time.time()) % 5000}))
        page.click("input[type=submit]")
        page.wait_for_selector("#tenant_form")
        shoot(page, out, "tenant-detail-after-config")
        page.click("text=Roll back to v1…")
        page.wait_for_selector("textarea[name=reason]")
        shoot(page, out, "config-rollback")

        page.goto(f"{admin}/tenants/tenant/")
        for name in ("Initech", "Soylent Foods"):
            page.locator("#result_list tr", has_text=name).locator("input.action-select").check()
        page.select_option("select[name=action]", "reactivate")
        page.click("button[name=index]")
        page.wait_for_selector("textarea[name=reason]")
        shoot(page, out, "action-reactivate-two")
        page.fill("textarea[name=reason]", "screenshot: paid up")
        page.click("input[type=submit]")
        page.wait_for_selector("#result_list")
        shoot(page, out, "action-reactivate-two-done", full_page=False)

        page.goto(f"{admin}/tenants/plan/")
        shoot(page, out, "plan-list")
        page.click("text=Growth")
        page.wait_for_selector("#plan_form")
        shoot(page, out, "plan-detail")
        page.click("a.deletelink")
        page.wait_for_selector(".messagelist")
        shoot(page, out, "plan-delete-refused", full_page=False)

        page.goto(f"{admin}/tenants/vectorshard/")
        shoot(page, out, "shard-list")
        browser.close()


if __name__ == "__main__":
    main()
