"""Webhook benchmark: signed Stripe events POSTed over HTTP to the app under the production server
(production settings, DEBUG=false), processed by a real Celery worker.

    .venv/bin/python manage.py bootstrap      # once, through the same stack
    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/webhooks.py

1. Make (once) the tenants wbench-1..N with a Stripe customer id each; forget what earlier
   runs left; make --invoices finalized invoices spread over them, each with a PaymentIntent id.
2. Pre-build the request bytes, signed as Stripe signs (t=<ts>,v1=HMAC-SHA256 of "t.payload"):
   per invoice a payment_intent.succeeded; for 20% of them also a late
   payment_intent.payment_failed (arrives after the success: must change nothing), 5% a
   charge.dispute.created, 5% an event type we do not handle; then 25% more requests that
   re-deliver an event already sent (Stripe retries): duplicates.
3. Receive: --clients keep-alive clients POST them as fast as the server answers (closed
   loop), with no Celery worker running (the queue builds up in Redis). Receive rate =
   requests answered / HTTP wall time. Target: >= 300 events/s, duplicates included. Also
   reported: web server CPU per request, and the rate that makes on 2 cores.
4. Process: a Celery worker (started here, stopped by PID) drains the queue; rate = unique
   events / drain time (worker start included), and worker CPU per event.
5. Verify: every answer 200; one StripeEvent per unique event, all processed or ignored;
   every invoice paid with exactly one PaymentAttempt; late failures changed nothing;
   disputes flagged; duplicates answered `"duplicate": true`.
6. Delete what the run made; write bench/results/webhooks.json.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, django_setup, postgres_version, say, write_result  # noqa: E402
from _http import (  # noqa: E402
    AppServer,
    CpuSampler,
    closed_loop,
    http_request,
    latency_ms,
    postgres_pids,
    wait_quiet,
)

TARGET_EVENTS_S = 300
URL = "/billing/stripe/webhook/"
SECRET = "whsec_bench_" + secrets.token_hex(16)
os.environ["STRIPE_WEBHOOK_SECRET"] = SECRET  # before Django reads settings, and for the server/worker


def sign(body: bytes, t: int) -> str:
    return f"t={t},v1={hmac.new(SECRET.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def ensure_tenants(n: int) -> list[int]:
    from billing.models import BillingProfile
    from lifecycle.services import tenant_provision
    from tenants.models import Plan, Tenant

    plan = Plan.objects.get(code="growth")
    ids = []
    for i in range(1, n + 1):
        slug = f"wbench-{i}"
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_provision(
            key=f"bench:{slug}", name=f"Webhook bench {i}", slug=slug, owner_email=f"owner@{slug}.bench.test", plan=plan
        )
        BillingProfile.objects.update_or_create(tenant=tenant, defaults={"stripe_customer_id": f"cus_wbench_{i}"})
        ids.append(tenant.pk)
    return ids


def forget(tenant_ids: list[int]) -> None:
    from billing.models import Invoice, PaymentAttempt, StripeEvent
    from tenants.models import TenantEvent

    PaymentAttempt.objects.filter(invoice__tenant_id__in=tenant_ids).delete()
    Invoice.objects.filter(tenant_id__in=tenant_ids).delete()
    TenantEvent.objects.filter(tenant_id__in=tenant_ids, kind__in=["invoice_paid", "invoice_disputed"]).delete()
    StripeEvent.objects.filter(event_id__startswith="evt_wbench_").delete()


def make_invoices(tenant_ids: list[int], count: int, run: str) -> list[tuple[int, int, str, str]]:
    """(invoice id, total, PaymentIntent id, customer id) for `count` finalized invoices."""
    from billing.models import Invoice, InvoiceStatus

    now = datetime.now(UTC)
    rows = []
    for k in range(count):
        t = k % len(tenant_ids)
        start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=31 * (k // len(tenant_ids)))
        rows.append(
            Invoice(
                tenant_id=tenant_ids[t],
                number=f"WB-{run}-{k:06d}",
                status=InvoiceStatus.FINALIZED,
                period_start=start,
                period_end=start + timedelta(days=31),
                currency="USD",
                subtotal=1_000 + k,
                total=1_000 + k,
                finalized_at=now,
                due_at=now + timedelta(days=14),
                payment_intent_id=f"pi_wbench_{run}_{k}",
            )
        )
    made = Invoice.objects.bulk_create(rows, batch_size=1000)
    index = {tid: i + 1 for i, tid in enumerate(tenant_ids)}
    return [(inv.pk, inv.total, inv.payment_intent_id, f"cus_wbench_{index[inv.tenant_id]}") for inv in made]


def build_events(
    invoices: list[tuple[int, int, str, str]], run: str, seed: int = 11
) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """Two phases of event bodies: (1) successes, disputes, unknown types; (2) the late
    failures, sent once phase 1 is processed — so "late" is true whatever order the worker
    would otherwise have taken. Each phase also re-delivers 25% of its events (duplicates).
    Signed just before sending (`signed()`): the signature is only good for 300 s."""
    rng = random.Random(seed)
    t = int(time.time())  # the event's `created`; the signature gets its own time
    phases: tuple[list[bytes], list[bytes]] = ([], [])
    counts = {"succeeded": 0, "late_failed": 0, "dispute": 0, "unknown": 0, "duplicates": 0, "unique": 0}

    def add(phase: int, type_: str, obj: dict) -> None:
        event = {
            "id": f"evt_wbench_{run}_{counts['unique']}",
            "object": "event",
            "type": type_,
            "created": t,
            "livemode": False,
            "api_version": "2025-01-27.acacia",
            "data": {"object": obj},
        }
        counts["unique"] += 1
        phases[phase].append(json.dumps(event, separators=(",", ":")).encode())

    for invoice_id, total, pi_id, customer in invoices:
        pi = {"id": pi_id, "object": "payment_intent", "amount": total, "currency": "usd", "status": "succeeded",
              "customer": customer, "metadata": {"invoice_id": str(invoice_id)}}  # fmt: skip
        add(0, "payment_intent.succeeded", pi)
        counts["succeeded"] += 1
        roll = rng.random()
        if roll < 0.20:
            add(1, "payment_intent.payment_failed", {**pi, "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}})  # fmt: skip
            counts["late_failed"] += 1
        elif roll < 0.25:
            dispute = {"id": f"dp_{pi_id}", "object": "dispute", "amount": total, "currency": "usd",
                       "payment_intent": pi_id, "reason": "fraudulent", "status": "needs_response"}  # fmt: skip
            add(0, "charge.dispute.created", dispute)
            counts["dispute"] += 1
        elif roll < 0.30:
            add(0, "invoice.upcoming", {"id": f"in_{pi_id}", "object": "invoice", "customer": customer})
            counts["unknown"] += 1
    out = []
    for events in phases:
        requests = list(events)
        for _ in range(len(events) // 4):  # Stripe re-delivering an event already sent
            requests.insert(rng.randrange(len(requests) // 2, len(requests) + 1), events[rng.randrange(len(events))])
            counts["duplicates"] += 1
        out.append(requests)
    counts["requests"] = len(out[0]) + len(out[1])
    return out[0], out[1], counts


def signed(bodies: list[bytes]) -> list[bytes]:
    """Request bytes for these bodies, signed now, as Stripe signs a delivery."""
    t = int(time.time())
    return [
        http_request("POST", URL, body, {"Content-Type": "application/json", "Stripe-Signature": sign(body, t)})
        for body in bodies
    ]


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.setdefault("LOG_LEVEL", "WARNING")
    cmd = [sys.executable, "-m", "celery", "-A", "saasops", "worker", "-l", "WARNING", "-n", f"wbench-{os.getpid()}@%h",
           "--concurrency", str(concurrency), "-Q", "celery"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def wait_processed(run: str, worker: subprocess.Popen[bytes], timeout: float = 600) -> None:
    from billing.models import StripeEvent

    deadline = time.monotonic() + timeout
    while StripeEvent.objects.filter(event_id__startswith=f"evt_wbench_{run}_", status="received").exists():
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError("the worker did not process every event")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--invoices", type=int, default=6000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    args = parser.parse_args()

    django_setup()
    from billing.models import Invoice, InvoiceStatus, PaymentAttempt, StripeEvent

    run = secrets.token_hex(3)
    tenant_ids = ensure_tenants(args.tenants)
    forget(tenant_ids)
    invoices = make_invoices(tenant_ids, args.invoices, run)
    say(f"{len(invoices)} finalized invoices over {len(tenant_ids)} tenants (run {run})")

    with AppServer() as server:
        probe = http_request("POST", URL, b"{}", {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=0"})
        server.warm(probe, n=200)  # 400s: loads code and connections, stores nothing
        first, second, counts = build_events(invoices, run)
        say(f"{counts['requests']} requests: {counts}")

        def web() -> list[int]:
            return server.worker_pids()

        loads: list[float] = []
        replies: list = []
        errors: list[str] = []
        http_s = server_cpu_s = process_s = worker_cpu_s = 0.0
        for n, phase in enumerate((first, second), start=1):
            # Receiving, with no worker running: the queue builds up in Redis.
            loads.append(wait_quiet(say=say))
            phase = signed(phase)
            with CpuSampler({"server": web, "postgres": postgres_pids}) as cpu:
                result = closed_loop(
                    server.port,
                    lambda i, phase=phase: phase[i] if i < len(phase) else None,
                    clients=args.clients,
                    duration=600,
                    keep_bodies=True,
                )
            replies += result.replies
            errors += result.errors
            http_s += result.wall_s
            server_cpu_s += cpu.result["server_cores"] * cpu.result["wall_s"]
            say(f"phase {n}: {len(result.replies)} answered in {result.wall_s:.2f} s, cpu {cpu.result}")
            # Processing: a worker drains the queue.
            worker = start_worker(args.worker_concurrency)
            try:
                t0 = time.monotonic()
                wait_processed(run, worker)
                elapsed = time.monotonic() - t0
                procs = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
                worker_cpu_s += sum(sum(p.cpu_times()[:2]) for p in procs)
                process_s += elapsed
            finally:
                stop(worker)
        receive_rate = len(replies) / http_s
        statuses_http: dict[int, int] = {}
        for reply in replies:
            statuses_http[reply.status] = statuses_http.get(reply.status, 0) + 1
        say(f"received {len(replies)} in {http_s:.2f} s of HTTP: {receive_rate:.0f} events/s, {statuses_http}")

    stored = StripeEvent.objects.filter(event_id__startswith=f"evt_wbench_{run}_")
    statuses = {s: stored.filter(status=s).count() for s in ("received", "processed", "ignored", "failed")}
    statuses = {k: v for k, v in statuses.items() if v}
    duplicates_reported = sum(1 for r in replies if r.status == 200 and json.loads(r.body).get("duplicate"))
    invoice_ids = [i[0] for i in invoices]
    paid = Invoice.objects.filter(pk__in=invoice_ids, status=InvoiceStatus.PAID).count()
    attempts = PaymentAttempt.objects.filter(invoice_id__in=invoice_ids).count()
    disputed = Invoice.objects.filter(pk__in=invoice_ids, disputed=True).count()
    checks = {
        "all_200": statuses_http == {200: counts["requests"]} and not errors,
        "one_row_per_unique_event": stored.count() == counts["unique"],
        "none_failed_or_left": set(statuses) <= {"processed", "ignored"},
        "duplicates_answered_duplicate": duplicates_reported == counts["duplicates"],
        "every_invoice_paid_once": paid == len(invoices) and attempts == len(invoices),
        "late_failures_changed_nothing": not Invoice.objects.filter(pk__in=invoice_ids)
        .exclude(last_payment_error="")
        .exists(),
        "disputes_flagged": disputed == counts["dispute"],
        "unknown_types_ignored": statuses.get("ignored", 0) == counts["unknown"],
    }
    process_rate = counts["unique"] / process_s
    say(
        f"processed {counts['unique']} unique events in {process_s:.2f} s (worker start included): {process_rate:.0f}/s"
    )
    say(f"checks: {checks}")
    forget(tenant_ids)

    ok = all(checks.values()) and receive_rate >= TARGET_EVENTS_S
    write_result(
        "webhooks",
        {
            "how": "signed events POSTed over HTTP (keep-alive, closed loop) to the production server "
            "(production settings, saasops/serve.py workers) on 127.0.0.1 with no worker running; "
            "then a real Celery worker drains the queue (Redis). Two phases: successes/disputes/unknown, "
            "then late failures.",
            "machine_load_note": "shared machine: other sessions' tests and benchmarks may run at the same time",
            "other_cores_busy_before_each_phase": loads,
            "postgres": postgres_version(),
            "target_events_per_s": TARGET_EVENTS_S,
            "receive_events_per_s": round(receive_rate, 1),
            "receive_server_cpu_ms_per_request": round(server_cpu_s / len(replies) * 1000, 2),
            "receive_capacity_2_cores_events_per_s": round(2 / (server_cpu_s / len(replies)), 0),
            "processing_unique_events_per_s": round(process_rate, 1),
            "processing_s": round(process_s, 2),
            "worker_cpu_ms_per_event": round(worker_cpu_s / counts["unique"] * 1000, 2),
            "mix": counts,
            "clients": args.clients,
            "worker_concurrency": args.worker_concurrency,
            "latency_ms": latency_ms(replies),
            "stored_statuses": statuses,
            "checks": checks,
            "passed": ok,
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
