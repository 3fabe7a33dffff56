"""Screenshots of finance's invoice pages and the customer's invoices, for looking at them
(not part of the test suite).

Needs a running app with the demo data, Debian's chromium and (for the PDF) poppler-utils'
pdftoppm. First make invoices (inside the same stack, e.g. with `saasops.devstack exec`):

    .venv/bin/python manage.py shell -c \
        "import runpy; runpy.run_path('tools/screenshots_billing.py')['make_invoices']()"
    .venv/bin/python tools/screenshots_billing.py --base http://localhost:8012 --out artifacts

Writes artifacts/billing-*.png (and the PDF it rendered).
"""

from __future__ import annotations

import argparse
import subprocess  # noqa: S404 - runs pdftoppm on a file this script wrote
from pathlib import Path
from urllib.parse import urlparse

FETCH_BYTES = "async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer()))"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def make_invoices() -> None:
    """Two closed months (September, October 2026) for six demo tenants, with usage, a swing,
    tax, a coupon, a paid invoice and a credit note; September approved, October in review."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.utils import timezone

    from billing.invoicing import credit_note_issue, invoice_finalize, invoices_close_due
    from billing.models import BillingProfile, Coupon, Discount, Invoice, InvoiceStatus, Subscription
    from metering.ledger import events_record
    from tenants.models import User

    sep, octo, nov = (datetime(2026, m, 1, tzinfo=UTC) for m in (9, 10, 11))
    slugs = ["acme", "initech", "stark", "wayne", "umbrella", "tyrell"]
    if Invoice.objects.filter(tenant__slug__in=slugs, period_start=sep).exists():
        print("invoices exist already")
        return
    Subscription.objects.filter(tenant__slug__in=slugs).update(
        started_at=sep, anchor_day=1, billing_starts_at=sep, invoiced_through=sep
    )
    Subscription.objects.filter(tenant__slug="initech").update(billing_starts_at=sep + timedelta(days=12))
    BillingProfile.objects.filter(tenant__slug="stark").update(
        tax_rate=Decimal("0.2"), billing_email="ap@stark.example"
    )
    coupon, _ = Coupon.objects.get_or_create(code="launch", defaults={"name": "Launch", "percent_off": Decimal("10")})
    Discount.objects.get_or_create(tenant_id=Subscription.objects.get(tenant__slug="wayne").tenant_id, coupon=coupon,
                                   defaults={"starts_at": sep})  # fmt: skip

    def usage(
        slug: str, at: datetime, calls: int = 0, tokens: tuple[int, ...] = (), storage: float | None = None
    ) -> None:
        events: list[dict] = [
            {"id": f"shot-{slug}-{at:%m%d}-c{i}", "tenant": slug, "type": "query", "timestamp": at.isoformat()}
            for i in range(calls)
        ]
        for i, amount in enumerate(tokens):
            props = {
                "model": "gpt-4o",
                "input_tokens": min(amount, 10_000_000),
                "output_tokens": max(0, amount - 10_000_000),
            }
            events.append({"id": f"shot-{slug}-{at:%m%d}-t{i}", "tenant": slug, "type": "query",
                           "timestamp": at.isoformat(), "properties": props})  # fmt: skip
        if storage is not None:
            events.append({"id": f"shot-{slug}-{at:%m%d}-s", "tenant": slug, "type": "storage",
                           "timestamp": at.isoformat(), "properties": {"storage_gb": storage}})  # fmt: skip
        for start in range(0, len(events), 1000):
            events_record(raw_events=events[start : start + 1000], now=at + timedelta(hours=1))

    usage("acme", sep + timedelta(days=5), calls=2_000, tokens=(20_000_000, 20_000_000), storage=80)
    usage("acme", octo + timedelta(days=5), calls=3_000, tokens=(20_000_000,) * 9, storage=142.5)  # the swing
    usage("stark", sep + timedelta(days=3), calls=5_000, tokens=(20_000_000,) * 5)
    usage("wayne", octo + timedelta(days=9), calls=1_500, tokens=(15_500_000,) * 4)
    usage("tyrell", octo + timedelta(days=2), calls=1_200)

    invoices_close_due(now=octo + timedelta(hours=2))
    finance = User.objects.get(email="finance@saasops.local")
    for invoice in Invoice.objects.filter(tenant__slug__in=slugs, period_start=sep).order_by("pk"):
        invoice_finalize(invoice=invoice, actor=finance)
    acme_sep = Invoice.objects.get(tenant__slug="acme", period_start=sep)
    credit_note_issue(invoice=acme_sep, amount=2_500, reason="API outage on 2026-09-18 (4 h)", actor=finance)
    Invoice.objects.filter(tenant__slug__in=["acme", "stark"], period_start=sep).update(
        status=InvoiceStatus.PAID, paid_at=timezone.now()
    )
    invoices_close_due(now=nov + timedelta(hours=2))
    print(Invoice.objects.filter(tenant__slug__in=slugs).count(), "invoices")


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://localhost:8012")
    parser.add_argument("--out", default="artifacts")
    parser.add_argument("--email", default="finance@saasops.local")
    parser.add_argument("--password", default="staff-pass-2026")
    parser.add_argument("--owner", default="owner@acme.example")
    parser.add_argument("--owner-password", default="demo-pass-2026")
    parser.add_argument("--browser", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    admin = f"{args.base}/admin"
    base = urlparse(args.base)
    acme = f"{base.scheme}://acme.{base.netloc}"

    def shoot(page, name: str, full_page: bool = True) -> None:  # type: ignore[no-untyped-def]
        path = out / f"billing-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        print(path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.browser, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{admin}/login/")
        page.fill("input[name=username]", args.email)
        page.fill("input[name=password]", args.password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{admin}/")

        page.goto(f"{admin}/billing/invoice/")
        shoot(page, "queue")
        page.locator("#result_list tr", has_text="Acme Corporation").locator("th a").first.click()
        page.wait_for_selector("#invoice_form, #content-main")
        detail_url = page.url
        shoot(page, "invoice-detail")
        page.click(".object-tools >> text=Void…")
        page.wait_for_selector("textarea[name=reason]")
        shoot(page, "void", full_page=False)

        page.goto(f"{admin}/billing/invoice/?status=all")
        shoot(page, "all")
        page.locator("#result_list tr", has_text="Acme Corporation").filter(has_text="Paid").locator("th a").click()
        page.click(".object-tools >> text=Issue credit note…")
        page.fill("input[name=amount]", "1000")
        page.fill("textarea[name=reason]", "screenshot")
        page.click("input[type=submit]")
        shoot(page, "credit-note-error", full_page=False)

        page.goto(detail_url)
        page.click(".object-tools >> text=Invoice (HTML)")
        shoot(page, "invoice-html")
        pdf_url = detail_url.rstrip("/").rsplit("/", 1)[0] + "/document.pdf"
        pdf = out / "billing-pdf-staff.pdf"
        pdf.write_bytes(page.request.get(pdf_url).body())

        page.goto(f"{admin}/billing/subscription/")
        shoot(page, "subscriptions", full_page=False)

        customer = browser.new_page(viewport={"width": 1280, "height": 900})
        customer.goto(f"{acme}/accounts/login/")
        customer.fill("input[name=login], input[name=username]", args.owner)
        customer.fill("input[name=password]", args.owner_password)
        customer.click("button[type=submit], input[type=submit]")
        customer.goto(f"{acme}/billing/invoices/")
        shoot(customer, "workspace-list")
        customer.locator("table a").first.click()
        shoot(customer, "workspace-invoice")
        long_pdf = out / "billing-pdf-workspace.pdf"
        # fetched by the page itself: Playwright's own HTTP client does not resolve *.localhost
        body = customer.evaluate(FETCH_BYTES, customer.url.rstrip("/") + ".pdf")
        long_pdf.write_bytes(bytes(body))
        browser.close()

    for path in (pdf, long_pdf):
        command = ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(path), str(path.with_suffix(""))]
        subprocess.run(command, check=True)  # noqa: S603,S607 - Debian's pdftoppm on our own file
        print(*sorted(out.glob(f"{path.stem}-*.png")))


if __name__ == "__main__":
    main()
