"""/metrics: Prometheus text format, what it counts, and who may read it."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from saasops.celery import app


def scrape(client: Client, **headers) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        samples.setdefault(f"family:{family.name}", {})
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def public(settings):
    settings.DEBUG = True
    return Client(HTTP_HOST=settings.BASE_DOMAIN)


def test_metrics_are_prometheus_text_with_every_family(db, public, clean_metrics):
    samples = scrape(public)
    for name in (
        "saasops_http_requests",
        "saasops_http_request_duration_seconds",
        "saasops_http_errors",
        "saasops_gate_decisions",
        "saasops_celery_tasks",
        "saasops_celery_task_duration_seconds",
        "saasops_celery_queue_length",
        "saasops_ingest_events_accepted",
        "saasops_invoices",
        "saasops_tenants",
        "saasops_readiness_check",
        "saasops_alert_threshold",
    ):
        assert f"family:{name}" in samples, name
    assert samples["saasops_invoices"][(("status", "payment_failed"),)] == 0
    assert samples["saasops_alert_threshold"][(("name", "error_rate"),)] == 0.02
    assert samples["saasops_gate_decisions_total"][(("outcome", "quota_exceeded"),)] == 0


def test_requests_latency_and_errors_are_counted(db, public, clean_metrics):
    public.get("/")
    public.get("/")
    clean_metrics.request_record(path="/api/v1/gate", method="POST", status=200, seconds=0.003)
    clean_metrics.request_record(path="/api/v1/gate", method="POST", status=503, seconds=0.2)
    samples = scrape(public)
    assert samples["saasops_http_requests_total"][(("endpoint", "web"), ("method", "GET"), ("status", "2xx"))] == 2
    gate = (("endpoint", "gate"),)
    assert samples["saasops_http_requests_total"][(("endpoint", "gate"), ("method", "POST"), ("status", "5xx"))] == 1
    assert samples["saasops_http_errors_total"][gate] == 1
    buckets = samples["saasops_http_request_duration_seconds_bucket"]
    # 0.003 s falls in le=0.005; 0.2 s in le=0.25; buckets are cumulative.
    assert buckets[(("endpoint", "gate"), ("le", "0.005"))] == 1
    assert buckets[(("endpoint", "gate"), ("le", "0.1"))] == 1
    assert buckets[(("endpoint", "gate"), ("le", "0.25"))] == 2
    assert buckets[(("endpoint", "gate"), ("le", "+Inf"))] == 2
    assert samples["saasops_http_request_duration_seconds_count"][gate] == 2
    assert samples["saasops_http_request_duration_seconds_sum"][gate] == pytest.approx(0.203)


def test_window_error_rate_and_p95(clean_metrics):
    for _ in range(19):
        clean_metrics.request_record(path="/", method="GET", status=200, seconds=0.15)
    clean_metrics.request_record(path="/", method="GET", status=500, seconds=0.15)
    window = clean_metrics.http_window(minutes=5)
    assert (window["requests"], window["errors"], window["error_rate"]) == (20, 1, 0.05)
    # All 20 in the (0.1, 0.25] bucket: p95 = 0.1 + 0.15 × 19/20 = 0.2425 s.
    assert window["p95_ms"] == 242.5


def test_gate_decisions_are_counted_by_outcome(db, public, clean_metrics):
    clean_metrics.gate_decision_record(status=200)
    clean_metrics.gate_decision_record(status=200, overage=True)
    clean_metrics.gate_decision_record(status=402)
    clean_metrics.gate_decision_record(status=429)
    gate = scrape(public)["saasops_gate_decisions_total"]
    assert gate[(("outcome", "allowed"),)] == 1
    assert gate[(("outcome", "allowed_overage"),)] == 1
    assert gate[(("outcome", "quota_exceeded"),)] == 1
    assert gate[(("outcome", "rate_limited"),)] == 1


@app.task(name="operations.tests.noop")
def noop(fail: bool = False) -> int:
    if fail:
        raise ValueError("boom")
    return 1


def test_celery_tasks_are_counted_with_their_duration(db, public, clean_metrics):
    noop.delay()
    # As a worker runs it (the test default re-raises at once, before Celery's signals).
    assert noop.apply(kwargs={"fail": True}, throw=False).state == "FAILURE"
    samples = scrape(public)
    tasks = samples["saasops_celery_tasks_total"]
    assert tasks[(("state", "success"), ("task", "operations.tests.noop"))] == 1
    assert tasks[(("state", "failure"), ("task", "operations.tests.noop"))] == 1
    assert samples["saasops_celery_task_duration_seconds_count"][(("task", "operations.tests.noop"),)] == 2


def test_openmetrics_when_asked(db, public, clean_metrics):
    response = public.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_metrics_only_on_the_public_host(db, tenant_a, settings):
    settings.DEBUG = True
    from tenants.services import tenant_host

    assert Client(HTTP_HOST=tenant_host(slug=tenant_a.slug)).get("/metrics").status_code == 404


TOKEN = "m" * 32


@pytest.mark.parametrize(
    ("token", "networks", "headers", "status"),
    [
        (TOKEN, [], {}, 401),
        (TOKEN, [], {"HTTP_AUTHORIZATION": "Bearer wrong-token"}, 401),
        (TOKEN, [], {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, 200),
        (TOKEN, [], {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}, 401),
        ("", ["127.0.0.0/8"], {}, 200),
        ("", ["10.0.0.0/8"], {}, 403),
        (TOKEN, ["10.0.0.0/8"], {"REMOTE_ADDR": "10.1.2.3"}, 200),
        ("", [], {}, 403),
    ],
)
def test_protected_in_production(db, settings, clean_metrics, token, networks, headers, status):
    settings.DEBUG = False
    settings.METRICS_TOKEN = token
    settings.METRICS_ALLOWED_NETWORKS = networks
    response = Client(HTTP_HOST=settings.BASE_DOMAIN).get("/metrics", **headers)
    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if status != 200:
        assert b"saasops_" not in response.content


def test_open_in_debug(db, public, clean_metrics, settings):
    settings.METRICS_TOKEN = TOKEN
    assert public.get("/metrics").status_code == 200


def test_quantile_interpolates_within_the_bucket(clean_metrics):
    bounds = (0.1, 0.2, 0.4)
    assert clean_metrics._quantile(0.5, [0, 10, 0, 0], bounds) == pytest.approx(0.15)
    assert clean_metrics._quantile(0.95, [0, 0, 0, 5], bounds) == 0.4  # past the last bound
    assert clean_metrics._quantile(0.95, [0, 0, 0, 0], bounds) is None


def test_requests_are_counted_when_log_level_hides_access_lines(db, clean_metrics):
    """LOG_LEVEL=WARNING drops INFO access lines before any handler sees them; the recorder
    then takes them itself and passes on to the root handlers only what the level lets through."""
    import logging

    from saasops import metrics

    access = logging.getLogger("saasops.request")
    root = logging.getLogger()
    saved = (access.handlers[:], access.level, access.propagate, root.level)
    seen: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    capture = Capture()
    try:
        access.handlers = [h for h in access.handlers if not isinstance(h, metrics.RequestMetricsHandler)]
        root.setLevel(logging.WARNING)
        root.addHandler(capture)
        metrics.recorder_install()
        access.info("GET / 200", extra={"method": "GET", "path": "/", "status": 200, "duration_ms": 3.0})
        access.warning("GET / 404", extra={"method": "GET", "path": "/", "status": 404, "duration_ms": 3.0})
        counted = metrics.counters()
        assert counted["http_requests|web|GET|2xx"] == 1 and counted["http_requests|web|GET|4xx"] == 1
        assert [r.levelname for r in seen if r.name == "saasops.request"] == ["WARNING"]
    finally:
        root.removeHandler(capture)
        access.handlers, access.level, access.propagate = saved[0], saved[1], saved[2]
        root.setLevel(saved[3])


def test_gate_answers_are_counted_by_outcome(db, public, clean_metrics, platform_client, make_tenant):
    import json

    tenant = make_tenant("free")  # 1,000 calls, hard limit
    for quantity in (1000, 1):  # allowed, then quota exceeded
        platform_client.post(
            "/api/v1/gate",
            data=json.dumps({"tenant": tenant.slug, "meter": "api_calls", "quantity": quantity}),
            content_type="application/json",
        )
    samples = scrape(public)
    assert samples["saasops_gate_decisions_total"][(("outcome", "quota_exceeded"),)] == 1
    assert samples["saasops_gate_decisions_total"][(("outcome", "allowed"),)] == 1
