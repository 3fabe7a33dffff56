"""Prometheus metrics: what is recorded, where it is kept, and the /metrics view.

**Why Redis.** The web server runs several processes (web server workers, often on several
machines) and the Celery worker is another process altogether; each process's own
prometheus_client registry would see only its own requests, and a scrape reaches one
process. prometheus_client's multiprocess mode shares files between the processes of one
machine only (and needs a cleanup hook in the web server). So every process adds its counts to
hashes in Redis — the shared state all processes already have — and /metrics, served by any
process, reads the same totals. Writes are buffered in the process and sent in one pipeline
at most every METRICS_FLUSH_INTERVAL seconds (1 s), off the request's critical path (a
daemon thread; Celery tasks flush at once when they end). A crash loses at most that second.

**What is recorded, and how.**
- Requests, latency, errors: from the access line every request already writes to the
  `saasops.request` logger (RequestIdMiddleware, and saasops/fastpath.py for the gate and
  event ingest, which bypass the middleware stack). A logging handler turns that line into
  counts, so the fast path stays untouched and is measured too.
- Celery tasks: task_prerun / task_postrun signals in the worker (count by task and state,
  duration histogram).
- Gate decisions: `gate_decision_record(status=...)`, one in-memory increment per decision.
- Read at scrape time (no instrumentation of the hot path): events accepted (PostgreSQL's
  insert counter of metering_usageevent), invoices by status, tenants by status, Celery queue
  length (the broker list in Redis), worker and beat heartbeat ages, latest readiness results
  and the alert thresholds staff set in admin.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

COUNTERS_KEY = "saasops:metrics:counters"
MINUTE_KEY = "saasops:metrics:minute:{}"
LAST_SCRAPE_KEY = "saasops:metrics:last_scrape"
LAST_FLUSH_KEY = "saasops:metrics:last_flush"
MINUTE_TTL = 3 * 3600
PROBE_HEADER = "HTTP_X_SAASOPS_PROBE"

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
GATE_OUTCOMES = {
    200: "allowed",
    429: "rate_limited",
    402: "quota_exceeded",
    403: "tenant_blocked",
    404: "unknown_tenant",
    400: "bad_request",
}


def endpoint_of(path: str) -> str:
    """A small, fixed set of labels (paths carry ids; a label per path would explode)."""
    if path == "/api/v1/gate":
        return "gate"
    if path == "/api/v1/events":
        return "events"
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/billing/stripe/webhook"):
        return "webhook"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/static/"):
        return "static"
    return "web"


def _bucket_index(value: float, bounds: tuple[float, ...]) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


# --- the per-process buffer --------------------------------------------------------------------


class _Buffer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.counters: dict[str, float] = defaultdict(float)
        self.minutes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.thread: threading.Thread | None = None

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.counters = defaultdict(float)
        self.minutes = defaultdict(lambda: defaultdict(int))
        self.thread = None


_buffer = _Buffer()


def _interval() -> float:
    return float(getattr(settings, "METRICS_FLUSH_INTERVAL", 1.0))


def _flusher() -> None:
    while True:
        time.sleep(max(_interval(), 0.05))
        try:
            flush()
        except Exception:  # a metrics problem never takes anything down
            log.debug("metrics flush failed", exc_info=True)


def _add(counters: dict[str, float], minute: dict[str, int] | None = None) -> None:
    if _buffer.pid != os.getpid():  # forked (Celery prefork, web server workers): start clean
        _buffer.reset_after_fork()
    with _buffer.lock:
        for field, value in counters.items():
            _buffer.counters[field] += value
        if minute:
            bucket = _buffer.minutes[int(time.time() // 60)]
            for field, count in minute.items():
                bucket[field] += count
        start_thread = _buffer.thread is None and _interval() > 0
        if start_thread:
            _buffer.thread = threading.Thread(target=_flusher, name="metrics-flush", daemon=True)
    if start_thread and _buffer.thread is not None:
        _buffer.thread.start()
    if _interval() <= 0:
        flush()


def flush() -> None:
    """Send this process's buffered counts to Redis (one pipeline). Safe to call any time."""
    if _buffer.pid != os.getpid():
        _buffer.reset_after_fork()
        return
    with _buffer.lock:
        counters, minutes = _buffer.counters, _buffer.minutes
        if not counters and not minutes:
            return
        _buffer.counters = defaultdict(float)
        _buffer.minutes = defaultdict(lambda: defaultdict(int))
    from saasops.redis import client

    pipe = client().pipeline(transaction=False)
    for field, value in counters.items():
        if field.split("|", 1)[0].endswith("_sum"):
            pipe.hincrbyfloat(COUNTERS_KEY, field, value)
        else:
            pipe.hincrby(COUNTERS_KEY, field, int(value))
    for minute, fields in minutes.items():
        key = MINUTE_KEY.format(minute)
        for field, count in fields.items():
            pipe.hincrby(key, field, count)
        pipe.expire(key, MINUTE_TTL)
    pipe.set(LAST_FLUSH_KEY, str(time.time()))
    try:
        pipe.execute()
    except Exception:
        log.warning("metrics: could not write to Redis; %d counts dropped", len(counters), exc_info=True)


# --- what is recorded ------------------------------------------------------------------------


def request_record(*, path: str, method: str, status: int, seconds: float) -> None:
    endpoint = endpoint_of(path)
    method = method if method in METHODS else "OTHER"
    status_class = f"{status // 100}xx"
    bucket = _bucket_index(seconds, HTTP_BUCKETS)
    counters = {
        f"http_requests|{endpoint}|{method}|{status_class}": 1.0,
        f"http_duration_bucket|{endpoint}|{bucket}": 1.0,
        f"http_duration_sum|{endpoint}": seconds,
    }
    minute = {"n": 1, f"b{bucket}": 1}
    if status >= 500:
        counters[f"http_errors|{endpoint}"] = 1.0
        minute["e"] = 1
    _add(counters, minute)


def gate_decision_record(*, status: int, overage: bool = False) -> None:
    """Count one gate decision by outcome. Call it where the gate's answer is made
    (metering.api.gate_answer, after gate_check): an in-memory increment, flushed in batches."""
    outcome = "allowed_overage" if status == 200 and overage else GATE_OUTCOMES.get(status, "other")
    _add({f"gate|{outcome}": 1.0})


def task_record(*, task: str, state: str, seconds: float | None) -> None:
    counters = {f"task|{task}|{state}": 1.0}
    if seconds is not None:
        counters[f"task_duration_bucket|{task}|{_bucket_index(seconds, TASK_BUCKETS)}"] = 1.0
        counters[f"task_duration_sum|{task}"] = seconds
    _add(counters)
    flush()  # a worker process may be recycled at any time; tasks are few


class RequestMetricsHandler(logging.Handler):
    """Turns the access line of `saasops.request` (method, path, status, duration_ms) into counts."""

    def emit(self, record: logging.LogRecord) -> None:
        status = getattr(record, "status", None)
        duration = getattr(record, "duration_ms", None)
        if not isinstance(status, int) or duration is None:
            return
        try:
            request_record(
                path=str(getattr(record, "path", "")),
                method=str(getattr(record, "method", "")),
                status=status,
                seconds=float(duration) / 1000,
            )
        except Exception:
            log.debug("request metrics: record dropped", exc_info=True)


class _ForwardToRoot(logging.Handler):
    """Passes records on to the root handlers as propagation would, honouring the root level
    (used only when LOG_LEVEL hides the INFO access lines the metrics need)."""

    def emit(self, record: logging.LogRecord) -> None:
        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            for handler in root.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)


_task_started: dict[str, float] = {}


def _task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _task_started.pop(task_id or "", None)
    name = getattr(task, "name", None) or "unknown"
    seconds = time.perf_counter() - started if started is not None else None
    task_record(task=name, state=(state or "unknown").lower(), seconds=seconds)


def recorder_install() -> None:
    """Attach the request handler and the Celery signals (idempotent; operations' AppConfig.ready)."""
    from celery import signals

    access = logging.getLogger("saasops.request")
    if not any(isinstance(h, RequestMetricsHandler) for h in access.handlers):
        access.addHandler(RequestMetricsHandler())
        if not access.isEnabledFor(logging.INFO):
            # LOG_LEVEL=WARNING or above would drop the access lines before any handler sees
            # them: take them at INFO here and pass on only what the root level lets through.
            access.setLevel(logging.INFO)
            access.propagate = False
            access.addHandler(_ForwardToRoot())
    signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="saasops.metrics.prerun")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="saasops.metrics.postrun")


# --- reading back ----------------------------------------------------------------------------


def counters() -> dict[str, float]:
    from saasops.redis import client

    raw = client().hgetall(COUNTERS_KEY)
    return {_text(k): float(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _quantile(q: float, buckets: list[int], bounds: tuple[float, ...]) -> float | None:
    """histogram_quantile over non-cumulative bucket counts (linear within the bucket)."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if seen + count >= rank and count:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def http_window(*, minutes: int) -> dict[str, Any]:
    """Requests, 5xx errors, error rate and p95 latency (ms) over the last `minutes` minutes,
    all processes together (from the per-minute hashes)."""
    from saasops.redis import client

    flush()
    now_minute = int(time.time() // 60)
    pipe = client().pipeline(transaction=False)
    for minute in range(now_minute - minutes + 1, now_minute + 1):
        pipe.hgetall(MINUTE_KEY.format(minute))
    requests = errors = 0
    buckets = [0] * (len(HTTP_BUCKETS) + 1)
    for fields in pipe.execute():
        data = {_text(k): int(v) for k, v in fields.items()}
        requests += data.get("n", 0)
        errors += data.get("e", 0)
        for index in range(len(buckets)):
            buckets[index] += data.get(f"b{index}", 0)
    p95 = _quantile(0.95, buckets, HTTP_BUCKETS)
    return {
        "minutes": minutes,
        "requests": requests,
        "errors": errors,
        "error_rate": (errors / requests) if requests else None,
        "p95_ms": None if p95 is None else round(p95 * 1000, 1),
    }


def queue_length(queue: str = "celery") -> int:
    from saasops.redis import client

    return int(client().llen(queue))


def heartbeat_ages() -> dict[str, float | None]:
    from saasops.celery import heartbeat_key
    from saasops.redis import client

    ages: dict[str, float | None] = {}
    for role in ("worker", "beat"):
        raw = client().get(heartbeat_key(role))
        ages[role] = None if raw is None else max(0.0, time.time() - float(raw))
    return ages


def events_accepted_total() -> int | None:
    """Rows ever inserted into metering_usageevent (PostgreSQL's statistics counter): events
    accepted, duplicates excluded. Resets with the server's statistics; rate() copes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = 'metering_usageevent'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None


# --- the collector ---------------------------------------------------------------------------


def _histogram(
    name: str, doc: str, label: str, values: dict[str, float], prefix: str, bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    per: dict[str, list[float]] = defaultdict(lambda: [0.0] * (len(bounds) + 1))
    sums: dict[str, float] = defaultdict(float)
    for field, value in values.items():
        parts = field.split("|")
        if parts[0] == f"{prefix}_bucket" and len(parts) == 3 and parts[2].isdigit():
            index = int(parts[2])
            if index <= len(bounds):
                per[parts[1]][index] += value
        elif parts[0] == f"{prefix}_sum" and len(parts) == 2:
            sums[parts[1]] += value
    for key in sorted(per):
        cumulative, running = [], 0.0
        for bound, count in zip((*bounds, float("inf")), per[key], strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        family.add_metric([key], cumulative, sums.get(key, 0.0))
    return family


class SaasopsCollector:
    """Everything /metrics shows, read at scrape time from Redis and the database."""

    def collect(self) -> Iterator[Metric]:
        for part in (self._recorded, self._database, self._broker):
            try:
                yield from part()
            except Exception:
                log.warning("metrics: %s could not be read", part.__name__, exc_info=True)

    def _recorded(self) -> Iterable[Metric]:
        values = counters()
        requests = CounterMetricFamily(
            "saasops_http_requests", "HTTP requests answered, by endpoint group, method and status class.",
            labels=["endpoint", "method", "status"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "saasops_http_errors", "HTTP responses with a 5xx status, by endpoint group.", labels=["endpoint"]
        )
        gate = CounterMetricFamily(
            "saasops_gate_decisions", "Quota/rate gate decisions by outcome.", labels=["outcome"]
        )
        tasks = CounterMetricFamily(
            "saasops_celery_tasks", "Celery tasks finished, by task and state.", labels=["task", "state"]
        )
        for field, value in sorted(values.items()):
            parts = field.split("|")
            if parts[0] == "http_requests" and len(parts) == 4:
                requests.add_metric(parts[1:], value)
            elif parts[0] == "http_errors" and len(parts) == 2:
                errors.add_metric(parts[1:], value)
            elif parts[0] == "gate" and len(parts) == 2:
                gate.add_metric(parts[1:], value)
            elif parts[0] == "task" and len(parts) == 3:
                tasks.add_metric(parts[1:], value)
        for outcome in sorted(set(GATE_OUTCOMES.values()) | {"allowed_overage"}):
            if f"gate|{outcome}" not in values:
                gate.add_metric([outcome], 0)
        yield requests
        yield _histogram(
            "saasops_http_request_duration_seconds", "Time to answer a request.", "endpoint", values, "http_duration",
            HTTP_BUCKETS,
        )  # fmt: skip
        yield errors
        yield gate
        yield tasks
        yield _histogram(
            "saasops_celery_task_duration_seconds", "Celery task run time.", "task", values, "task_duration",
            TASK_BUCKETS,
        )  # fmt: skip

    def _database(self) -> Iterable[Metric]:
        from django.db.models import Count

        from billing.models import Invoice, InvoiceStatus
        from operations.finance import PROBE_SLUG
        from operations.models import AlertThresholds
        from operations.selectors import readiness_latest_by_check
        from tenants.models import Tenant, TenantStatus

        accepted = events_accepted_total()
        if accepted is not None:
            family = CounterMetricFamily(
                "saasops_ingest_events_accepted", "Usage events accepted (rows inserted; PostgreSQL statistics)."
            )
            family.add_metric([], accepted)
            yield family
        invoices = GaugeMetricFamily("saasops_invoices", "Invoices by status.", labels=["status"])
        by_status = dict(Invoice.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in InvoiceStatus.values:
            invoices.add_metric([status], by_status.get(status, 0))
        yield invoices
        tenants = GaugeMetricFamily("saasops_tenants", "Customer tenants by status.", labels=["status"])
        customers = Tenant.objects.customers().exclude(slug=PROBE_SLUG)
        counts = dict(customers.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in TenantStatus.values:
            tenants.add_metric([status], counts.get(status, 0))
        yield tenants
        readiness = GaugeMetricFamily(
            "saasops_readiness_check",
            "Latest readiness result per check (1 for its status).",
            labels=["check", "status"],
        )
        for code, result in sorted(readiness_latest_by_check().items()):
            readiness.add_metric([code, result.status], 1)
        yield readiness
        thresholds = AlertThresholds.current()
        limits = GaugeMetricFamily(
            "saasops_alert_threshold", "Alert thresholds staff set in admin (for alert rules).", labels=["name"]
        )
        for name, value in (
            ("error_rate", thresholds.error_rate_max),
            (
                "latency_p95_seconds",
                None if thresholds.latency_p95_max_ms is None else thresholds.latency_p95_max_ms / 1000,
            ),
            ("queue_backlog", thresholds.queue_backlog_max),
            ("failed_payments", thresholds.failed_payments_max),
        ):
            if value is not None:
                limits.add_metric([name], float(value))
        yield limits

    def _broker(self) -> Iterable[Metric]:
        queue = GaugeMetricFamily("saasops_celery_queue_length", "Messages waiting in the broker.", labels=["queue"])
        queue.add_metric(["celery"], queue_length())
        yield queue
        ages = GaugeMetricFamily("saasops_heartbeat_age_seconds", "Seconds since the last heartbeat.", labels=["role"])
        for role, age in heartbeat_ages().items():
            if age is not None:
                ages.add_metric([role], age)
        yield ages


registry = CollectorRegistry(auto_describe=False)
registry.register(SaasopsCollector())  # type: ignore[arg-type]


# --- the view ----------------------------------------------------------------------------------


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in getattr(settings, "METRICS_ALLOWED_NETWORKS", [])]


def metrics_access(request: HttpRequest) -> tuple[bool, int, str]:
    """(allowed, status if not, why). Open in DEBUG; else a Bearer METRICS_TOKEN or a client
    address inside METRICS_ALLOWED_NETWORKS."""
    if settings.DEBUG:
        return True, 200, ""
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True, 200, ""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    if address is not None and any(address in network for network in _networks()):
        return True, 200, ""
    if token:
        return False, 401, "a valid bearer token is required"
    if _networks():
        return False, 403, "this address may not read metrics"
    return False, 403, "metrics are closed: set METRICS_TOKEN or METRICS_ALLOWED_NETWORKS"


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    allowed, status, why = metrics_access(request)
    if not allowed:
        response = HttpResponse(why + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    flush()
    if PROBE_HEADER not in request.META:
        from saasops.redis import client

        try:
            client().set(LAST_SCRAPE_KEY, str(time.time()))
        except Exception:
            log.debug("metrics: last scrape time not stored", exc_info=True)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
