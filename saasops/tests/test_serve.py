"""The production web server (saasops/serve.py): its command line, its settings' errors, and
a real start — granian loading the prepared app in its worker and answering."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from saasops import env, serve


def test_command_defaults(monkeypatch):
    for name in ("WEB_BIND", "WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    cmd = serve.command()
    assert cmd[cmd.index("--interface") + 1] == "wsgi"
    assert cmd[cmd.index("--factory") + 1] == "saasops.fastpath:worker_app"
    assert (cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]) == ("0.0.0.0", "8000")  # noqa: S104
    assert int(cmd[cmd.index("--workers") + 1]) >= 2
    assert cmd[cmd.index("--blocking-threads") + 1] == "2"


def test_command_from_environment(monkeypatch):
    monkeypatch.setenv("WEB_BIND", "127.0.0.1:9100")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("WEB_THREADS", "8")
    cmd = serve.command()
    assert (cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1]) == ("127.0.0.1", "9100")
    assert (cmd[cmd.index("--workers") + 1], cmd[cmd.index("--blocking-threads") + 1]) == ("3", "8")
    other = serve.command(app="saasops.wsgi:application")
    assert "--factory" not in other
    assert "saasops.wsgi:application" in other


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_BIND", "8000", "is not host:port"),
        ("WEB_BIND", "localhost:http", "is not host:port"),
        ("WEB_BIND", "localhost:70000", "is not host:port"),
        ("WEB_CONCURRENCY", "many", "is not a whole number"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY"),
        ("WEB_THREADS", "-1", "WEB_THREADS"),
    ],
)
def test_bad_settings_are_named(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(env.ConfigError, match=message):
        serve.command()


def test_bad_setting_stops_start_up_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "saasops.serve"],
        env={**os.environ, "WEB_BIND": "nowhere"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "saasops: configuration error: WEB_BIND='nowhere' is not host:port (e.g. 0.0.0.0:8000)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _committed(fn):  # its own connection: the test's transaction would hide (and roll back) the row
    out = []

    def run() -> None:
        from django.db import connection

        try:
            out.append(fn())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0] if out else None


@pytest.mark.django_db
def test_server_starts_and_answers(tenant_a):
    """`python -m saasops.serve` with production settings, on the test database: the worker
    loads and prepares the app, answers /healthz, the gate through the fast path (200 for a
    good token), and hands a request without a token to Django (401)."""
    from django.db import connection

    from tenants.models import PlatformToken
    from tenants.tokens import platform_token_create

    _, raw = _committed(lambda: platform_token_create(name="serve-test"))
    url = urlsplit(os.environ["DATABASE_URL"])
    port = _free_port()
    server_env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"])),
        "DEBUG": "false",
        "SECRET_KEY": "test-" + secrets.token_urlsafe(48),
        "SECURE_SSL_REDIRECT": "false",
        "BASE_DOMAIN": "localhost",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "saasops.serve"], env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def gate(headers: dict[str, str]) -> tuple[int, dict, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/gate",
            data=json.dumps({"tenant": tenant_a.slug, "meter": "api_calls"}).encode(),
            headers={"Content-Type": "application/json", "Host": "localhost", **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310 - the server started here
                return r.status, json.loads(r.read()), r.headers
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read()), refused.headers

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:  # noqa: S310
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        status, body, headers = gate({"Authorization": f"Bearer {raw}"})
        assert status == 200, body
        assert body["allowed"] is True and headers["X-Request-ID"]
        status, body, _ = gate({})
        assert status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        _committed(lambda: PlatformToken.objects.filter(name="serve-test").delete())
