"""Ingest benchmark: POST /api/v1/events over HTTP against the production server (granian), production settings.

    .venv/bin/python -m saasops.devstack exec --profile=bench -- .venv/bin/python bench/ingest.py

1. Bootstrap; make (once) the tenants mbench-ingest-1..4; a platform token for this run
   (revoked at the end); forget what earlier runs stored for those tenants.
2. Pre-build 1,000-event batch bodies (bytes): models from the price book, tokens,
   latency, department, user; ids like an SDK's (uuid4). Each batch holds 900 new events
   and 100 deliberate duplicates (50 repeated inside the batch, 50 re-sent from the batch
   sent five before: a retry).
3. Same answers: for duplicates, rejections, bad bodies and a missing token, the fast path
   and Django's full stack (the same request with a query string) answer the same.
4. Single-event ingest: one event per request at a fixed 200 requests/s for --single-s
   (30) s, open loop, latency from each request's due time. Target: p99 < 20 ms. (First:
   right after a minute of batches the database is still writing them out, and this
   measures that instead.)
5. Sustained batch ingest: --clients (4) concurrent keep-alive clients POST the bodies for
   --duration s (60). Target: >= 20,000 events/s. Verified: stored events == unique events
   sent (no loss, no double count), accepted + duplicates reported == events sent, rollups
   (events, api_calls meter) == stored.
6. The physical ceiling: plain COPY of the same rows into metering_usageevent (all its
   indexes), one stream and two; ingest is reported as a fraction of the better one.
7. Delete what the run stored; write bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import django_setup, postgres_version, say, write_result  # noqa: E402
from _http import (  # noqa: E402
    AppServer,
    CpuSampler,
    closed_loop,
    fixed_rate,
    http_request,
    latency_ms,
    postgres_pids,
    redis_pids,
    same_answer,
    self_pids,
    wait_quiet,
)

TARGET_EVENTS_S = 20_000
TARGET_SINGLE_P99_MS = 20.0
TENANTS = [f"mbench-ingest-{i}" for i in range(1, 5)]
DEPARTMENTS = ["legal", "sales", "support", "engineering", "finance", "marketing", "research", "ops"]
BATCH = 1000
NEW_PER_BATCH = 900
COPY_TENANT_BASE = 2_000_000_000  # tenant ids no tenant has (no FK): the COPY rows are deleted again


def ensure_tenants(slugs: list[str]) -> dict[str, int]:
    from lifecycle.services import tenant_provision
    from tenants.models import Plan, Tenant

    plan = Plan.objects.get(code="growth")
    have = dict(Tenant.objects.filter(slug__in=slugs).values_list("slug", "pk"))
    for slug in slugs:
        if slug not in have:
            have[slug] = tenant_provision(
                key=f"bench:{slug}", name=f"Bench {slug}", slug=slug, owner_email=f"owner@{slug}.bench.test", plan=plan
            ).pk
    return have


def forget_usage(tenant_ids: list[int]) -> int:
    """Delete every event, rollup and Redis counter of these tenants; returns events deleted."""
    from django.db import connection

    from saasops.redis import client

    with connection.cursor() as cur:
        cur.execute("DELETE FROM metering_usageevent WHERE tenant_id = ANY(%s)", [tenant_ids])
        deleted = cur.rowcount
        for table in ("metering_usagehourly", "metering_usagedaily", "metering_usageuserdaily", "metering_meterhourly"):
            cur.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", [tenant_ids])
        cur.execute("DELETE FROM metering_meteruniquedaily WHERE tenant_id = ANY(%s)", [tenant_ids])
        cur.execute("DELETE FROM metering_usagealert WHERE tenant_id = ANY(%s)", [tenant_ids])
    r = client()
    for tid in tenant_ids:
        keys = list(r.scan_iter(f"saasops:*:{tid}:*", count=1000)) + [f"saasops:bucket:{tid}"]
        r.delete(*keys)
    return deleted


def price_models() -> list[str]:
    from metering.models import PriceBookEntry

    return sorted(set(PriceBookEntry.objects.values_list("model", flat=True)))


class Events:
    """Realistic events; the same values make the JSON bodies and the COPY rows."""

    def __init__(self, models: list[str], now: datetime, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.models = models
        self.weights = [5 if "mini" in m or "haiku" in m else 2 for m in models]
        self.now = now

    def make(self, n: int, tenants: list[str]) -> list[tuple[Any, ...]]:
        rng, now = self.rng, self.now
        models = rng.choices(self.models, self.weights, k=n)
        out = []
        for i in range(n):
            ts = now - timedelta(seconds=rng.random() * 3600)
            out.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    tenants[rng.randrange(len(tenants))],
                    ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
                    models[i],
                    int(rng.lognormvariate(6.5, 0.9)) % 120_000,
                    int(rng.lognormvariate(5.2, 0.8)) % 16_000,
                    int(rng.lognormvariate(6.6, 0.6)),
                    DEPARTMENTS[rng.randrange(len(DEPARTMENTS))],
                    f"u_{rng.randrange(400)}",
                )
            )
        return out


def event_json(e: tuple[Any, ...]) -> str:
    eid, tenant, ts, model, tin, tout, lat, dept, user = e
    return (
        f'{{"id":"{eid}","tenant":"{tenant}","type":"query","timestamp":"{ts}","properties":'
        f'{{"model":"{model}","input_tokens":{tin},"output_tokens":{tout},"latency_ms":{lat},'
        f'"department":"{dept}","user":"{user}"}}}}'
    )


def build_batches(gen: Events, count: int, tenants: list[str]) -> tuple[list[list[tuple[Any, ...]]], list[bytes]]:
    """`count` batches of 1,000: 900 new, 50 repeated from this batch, 50 from the batch five before."""
    batches: list[list[tuple[Any, ...]]] = []
    bodies: list[bytes] = []
    for b in range(count):
        new = gen.make(NEW_PER_BATCH, tenants)
        older = batches[b - 5][:NEW_PER_BATCH] if b >= 5 else new
        dups = gen.rng.sample(new, 50) + gen.rng.sample(older, 50)
        events = new + dups
        gen.rng.shuffle(events)
        batches.append(new)
        bodies.append(("[" + ",".join(event_json(e) for e in events) + "]").encode())
    return batches, bodies


def copy_rows(events: list[tuple[Any, ...]], tenant_of: dict[str, int], received: str) -> str:
    """The rows ledger._store writes for these events (priced the same way), as COPY text."""
    from metering.pricing import price_book

    book = price_book()
    lines = []
    for eid, tenant, ts, model, tin, tout, lat, dept, user in events:
        at = datetime.fromisoformat(ts)
        cost = book.cost(model, at, tin, tout)
        props = json.dumps(
            {
                "model": model,
                "input_tokens": tin,
                "output_tokens": tout,
                "latency_ms": lat,
                "department": dept,
                "user": user,
            },
            separators=(",", ":"),
        )
        lines.append(
            f"{tenant_of[tenant]}\t{eid}\tquery\t{at.isoformat()}\t{received}\t{model}\t{tin}\t{tout}\t{lat}\t"
            f"{dept}\t{user}\t{props}\t{cost if cost is not None else Decimal(0)}\tf\tf"
        )
    return "\n".join(lines) + "\n"


_COPY_COLUMNS = (
    "tenant_id, event_id, event_type, timestamp, received_at, model, input_tokens, output_tokens, "
    "latency_ms, department, user_ref, properties, cost, unpriced, late"
)


def copy_ceiling(events: list[tuple[Any, ...]], streams: int, chunk: int = 10_000) -> dict[str, Any]:
    """Plain COPY of `events` into metering_usageevent (every index) over `streams`
    connections, `chunk` rows per COPY, each committed. Rows get tenant ids no tenant has;
    deleted afterwards."""
    import psycopg2
    from django.db import connection

    params = connection.get_connection_params()
    received = datetime.now(UTC).isoformat()
    per_stream = [events[i::streams] for i in range(streams)]
    texts = [
        [
            copy_rows(part[i : i + chunk], {t: COPY_TENANT_BASE + s for t in TENANTS}, received)
            for i in range(0, len(part), chunk)
        ]
        for s, part in enumerate(per_stream)
    ]

    def connect() -> Any:
        return psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})

    conns = [connect() for _ in range(streams)]

    def run(conn: Any, chunks: list[str]) -> None:
        with conn.cursor() as cur:
            for text in chunks:
                cur.copy_expert(f"COPY metering_usageevent ({_COPY_COLUMNS}) FROM STDIN", io.StringIO(text))
                conn.commit()

    threads = [threading.Thread(target=run, args=(c, t)) for c, t in zip(conns, texts, strict=True)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    with conns[0].cursor() as cur:
        cur.execute(
            "DELETE FROM metering_usageevent WHERE tenant_id >= %s AND tenant_id < %s",
            [COPY_TENANT_BASE, COPY_TENANT_BASE + streams],
        )
        conns[0].commit()
    for c in conns:
        c.close()
    return {
        "streams": streams,
        "rows": len(events),
        "rows_per_copy": chunk,
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(events) / seconds),
    }


def compare_paths(port: int, headers: dict[str, str], gen: Events) -> dict[str, Any]:
    """The fast path and Django's full stack answer the same (see _http.same_answer)."""
    from _http import exchange

    def events(body: bytes, hdrs: dict[str, str] | None = None) -> dict[str, Any]:
        return same_answer(port, "POST", "/api/v1/events", body, hdrs or headers)

    batch = ("[" + ",".join(event_json(e) for e in gen.make(3, TENANTS)) + "]").encode()
    exchange(port, http_request("POST", "/api/v1/events", batch, headers))  # stored: both now see duplicates
    bad = json.loads(batch)
    bad[0]["tenant"], bad[1]["properties"]["input_tokens"], bad[2]["timestamp"] = "nobody", -1, "yesterday"
    cases = {
        "duplicates_200": events(batch),
        "one_duplicate_200": events(json.dumps(json.loads(batch)[0]).encode()),
        "all_rejected_400": events(json.dumps(bad).encode()),
        "invalid_json_400": events(b"{nope"),
        "empty_body_400": events(b""),
        "empty_batch_400": events(b"[]"),
        "no_token_401": events(batch, {"Content-Type": "application/json"}),
    }
    return {
        name: {"same": c["same"], "status": c["fast"]["status"], **({} if c["same"] else c)}
        for name, c in cases.items()
    }


def db_counts(tenant_ids: list[int]) -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM metering_usageevent WHERE tenant_id = ANY(%s)", [tenant_ids])
        events = cur.fetchone()[0]
        cur.execute("SELECT coalesce(sum(events), 0) FROM metering_usagehourly WHERE tenant_id = ANY(%s)", [tenant_ids])
        hourly = int(cur.fetchone()[0])
        cur.execute("SELECT coalesce(sum(events), 0) FROM metering_usagedaily WHERE tenant_id = ANY(%s)", [tenant_ids])
        daily = int(cur.fetchone()[0])
        cur.execute(
            "SELECT coalesce(sum(h.value), 0) FROM metering_meterhourly h JOIN metering_meter m ON m.id = h.meter_id "
            "WHERE m.code = 'api_calls' AND h.tenant_id = ANY(%s)",
            [tenant_ids],
        )
        api_calls = int(cur.fetchone()[0])
    return {"events": events, "hourly_events": hourly, "daily_events": daily, "api_calls_meter": api_calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="sustained batch ingest, seconds (60)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch clients (4)")
    parser.add_argument("--max-rate", type=int, default=40_000, help="events/s the pre-built bodies can feed (40000)")
    parser.add_argument("--copy-rows", type=int, default=300_000, help="rows for the COPY ceiling (300000)")
    parser.add_argument("--single-s", type=float, default=30, help="single-event run, seconds (30)")
    parser.add_argument("--single-rate", type=float, default=200, help="single-event requests/s (200)")
    parser.add_argument("--server-args", default="", help="extra web server arguments, e.g. '--workers 4'")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: batch,copy,single")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    django_setup()
    from django.core.management import call_command

    from tenants.models import PlatformToken
    from tenants.tokens import platform_token_create, platform_token_revoke

    call_command("bootstrap", verbosity=0)
    tenant_of = ensure_tenants(TENANTS)
    tenant_ids = list(tenant_of.values())
    forgotten = forget_usage(tenant_ids)
    if forgotten:
        say(f"deleted {forgotten:,} events an earlier run left for {', '.join(TENANTS)}")
    token, raw_token = platform_token_create(name=f"bench ingest {datetime.now(UTC):%Y-%m-%d %H:%M}")
    headers = {"Authorization": f"Bearer {raw_token}", "Content-Type": "application/json"}
    gen = Events(price_models(), datetime.now(UTC))
    results: dict[str, Any] = {"postgres": postgres_version(), "targets": {}}

    n_batches = int(args.max_rate * args.duration / BATCH) + 10
    started = time.perf_counter()
    batches, bodies = build_batches(gen, n_batches, TENANTS)
    requests = [http_request("POST", "/api/v1/events", body, headers) for body in bodies]
    say(
        f"pre-built {len(bodies):,} bodies ({sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB each) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    warm_events = gen.make(1000, TENANTS)
    warm_body = ("[" + ",".join(event_json(e) for e in warm_events) + "]").encode()

    # The product's backend asks the gate before it runs a query: that makes the real-time
    # counters exist, so every ingest also moves them (and checks the alert thresholds).
    from metering.quota import gate_check

    for slug in TENANTS:
        for meter in ("api_calls", "ai_tokens"):
            gate_check(slug=slug, meter=meter, quantity=1)

    server = AppServer(args=args.server_args.split())
    server.start()
    try:
        server.warm(http_request("POST", "/api/v1/events", warm_body, headers), n=40)
        results["server"] = {"config": "saasops/serve.py (granian)", "extra": args.server_args}
        results["same_answers"] = compare_paths(server.port, headers, gen)
        same = all(c["same"] for c in results["same_answers"].values())
        say(f"fast path and Django give the same answers: {same}")
        if not same:
            say(json.dumps({k: v for k, v in results["same_answers"].items() if not v["same"]})[:3000])
        results["targets"]["same_answers"] = {"target": True, "measured": same, "met": same}

        # --- single events at a fixed rate -----------------------------------------------------
        if "single" not in skip:
            total = int(args.single_rate * args.single_s)
            singles = gen.make(total, TENANTS)
            single_requests = [http_request("POST", "/api/v1/events", event_json(e).encode(), headers) for e in singles]
            say(f"single events: {args.single_rate:.0f} requests/s for {args.single_s:.0f} s")
            groups = {"server": server.worker_pids, "postgres": postgres_pids, "client": self_pids}
            stored_before = db_counts(tenant_ids)["events"]
            quiet = wait_quiet(say=say)
            server.warm(http_request("POST", "/api/v1/events", warm_body, headers), n=16)
            with CpuSampler(groups) as cpu:
                run = fixed_rate(
                    server.port, single_requests.__getitem__, rate=args.single_rate, duration=args.single_s
                )
            lat = latency_ms(run.replies)
            expected_stored = stored_before + len(singles)
            counts = db_counts(tenant_ids)
            exact = run.errors == [] and counts["events"] == expected_stored and run.statuses() == {200: total}
            results["single"] = {
                "rate": args.single_rate,
                "duration_s": args.single_s,
                "requests": total,
                "http_statuses": run.statuses(),
                "client_errors": run.errors[:5],
                "client_late_starts": run.late_starts,
                "latency_ms": lat,
                "latency_from_send_ms": latency_ms(run.replies, "service"),
                "stored": counts["events"] - stored_before,
                "exact": exact,
                "cpu": cpu.result,
                "other_load_before_cores": quiet,
            }
            p99 = lat.get("p99", float("inf"))
            results["targets"]["single_p99_ms"] = {
                "target": TARGET_SINGLE_P99_MS,
                "measured": p99,
                "met": p99 < TARGET_SINGLE_P99_MS and exact,
            }
            say(f"  latency {lat}; all stored: {exact}")
        # --- sustained batches ---------------------------------------------------------------
        if "batch" not in skip:
            say(f"batch ingest: {args.clients} clients for {args.duration:.0f} s")

            def next_request(i: int) -> bytes | None:
                return requests[i] if i < len(requests) else None

            stored_before = db_counts(tenant_ids)["events"]
            groups = {
                "server": server.worker_pids,
                "postgres": postgres_pids,
                "redis": redis_pids,
                "client": self_pids,
            }
            quiet = wait_quiet(say=say)
            server.warm(http_request("POST", "/api/v1/events", warm_body, headers), n=16)
            with CpuSampler(groups) as cpu:
                run = closed_loop(server.port, next_request, clients=args.clients, duration=args.duration)
            sent_batches = len(run.replies)
            ok = [r for r in run.replies if r.status == 200]
            answers = [json.loads(r.body) for r in ok]
            accepted = sum(a["accepted"] for a in answers)
            duplicates = sum(a["duplicates"] for a in answers)
            rejected = sum(a["rejected"] for a in answers)
            sent_events = sent_batches * BATCH
            unique_sent = len({e[0] for b in batches[:sent_batches] for e in b})
            expected_stored = stored_before + unique_sent
            counts = db_counts(tenant_ids)
            rate = accepted / run.wall_s
            offered = sent_events / run.wall_s
            exact = (
                run.errors == []
                and len(ok) == sent_batches
                and counts["events"] == expected_stored
                and accepted == unique_sent
                and accepted + duplicates == sent_events
                and rejected == 0
                and counts["hourly_events"] == counts["daily_events"] == counts["events"] == counts["api_calls_meter"]
            )
            results["batch"] = {
                "clients": args.clients,
                "duration_s": round(run.wall_s, 2),
                "batches": sent_batches,
                "events_sent": sent_events,
                "unique_sent": unique_sent,
                "accepted_reported": accepted,
                "duplicates_reported": duplicates,
                "rejected_reported": rejected,
                "http_statuses": run.statuses(),
                "client_errors": run.errors[:5],
                "stored_events_incl_warmup": counts["events"],
                "expected_stored_incl_warmup": expected_stored,
                "rollup_hourly_events": counts["hourly_events"],
                "rollup_daily_events": counts["daily_events"],
                "rollup_api_calls": counts["api_calls_meter"],
                "exact": exact,
                "events_per_s_stored": round(rate),
                "events_per_s_offered": round(offered),
                "request_latency_ms": latency_ms(run.replies),
                "ran_out_of_bodies": sent_batches >= len(requests),
                "cpu": cpu.result,
                "other_load_before_cores": quiet,
            }
            results["targets"]["batch_events_per_s"] = {
                "target": TARGET_EVENTS_S,
                "measured": round(offered),
                "met": offered >= TARGET_EVENTS_S and exact,
            }
            say(
                f"  {sent_events:,} events sent in {run.wall_s:.1f} s = {offered:,.0f} events/s offered, "
                f"{rate:,.0f}/s stored; exact accounting: {exact} (stored {counts['events']:,}, expected "
                f"{expected_stored:,}; accepted {accepted:,} + duplicates {duplicates:,} = {accepted + duplicates:,})"
            )
            say(f"  cpu: {cpu.result}")

    finally:
        server.stop()

    # --- the COPY ceiling ---------------------------------------------------------------------
    if "copy" not in skip:
        rows = [e for b in batches for e in b][: args.copy_rows]
        say(f"COPY ceiling: {len(rows):,} rows into metering_usageevent")
        ceiling = []
        for streams in (1, 2):
            quiet = wait_quiet(say=say)
            ceiling.append({**copy_ceiling(rows, streams), "other_load_before_cores": quiet})
        best = max(c["rows_per_s"] for c in ceiling)
        results["copy_ceiling"] = {"runs": ceiling, "best_rows_per_s": best}
        if "batch" in results:
            results["batch"]["fraction_of_copy"] = round(results["batch"]["events_per_s_stored"] / best, 3)
        say(f"  {ceiling}")

    platform_token_revoke(token=PlatformToken.objects.get(pk=token.pk))
    forget_usage(tenant_ids)
    write_result("ingest", results)
    for name, t in results["targets"].items():
        say(f"{name}: {t['measured']} (target {t['target']}): {'met' if t['met'] else 'MISSED'}")
    return 0 if all(t["met"] for t in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
