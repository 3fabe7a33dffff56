"""Configuration from the environment: bad values stop start-up with one line naming the
variable; production mode passes Django's deployment checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"DATABASE_URL": "postgresql://u@db.internal:5432/saasops", "REDIS_URL": "redis://cache.internal:6379/0"}


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # Only what this test sets: nothing of the test run's own environment (browser tests set
    # DJANGO_ALLOW_ASYNC_UNSAFE, make test sets the servers' URLs) may leak into the check.
    dropped = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    full_env = {k: v for k, v in os.environ.items() if k not in dropped}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "env, names",
    [
        ({"REDIS_URL": GOOD["REDIS_URL"]}, "DATABASE_URL is not set"),
        ({**GOOD, "DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL must be a postgresql:// URL"),
        ({**GOOD, "DATABASE_URL": "postgresql://u@h"}, "DATABASE_URL names no database"),
        ({**GOOD, "REDIS_URL": "http://x"}, "REDIS_URL must be a redis://"),
        ({"DATABASE_URL": GOOD["DATABASE_URL"]}, "REDIS_URL is not set"),
        ({**GOOD, "DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({**GOOD, "PORT": "eighty"}, "PORT='eighty' is not a whole number"),
        ({**GOOD, "LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' must be one of"),
        ({**GOOD, "DEBUG": "false"}, "SECRET_KEY is required but not set"),
        ({**GOOD, "DEBUG": "false", "SECRET_KEY": "short"}, "SECRET_KEY must be a random string"),
    ],
)
def test_bad_environment_stops_with_one_line(env, names):
    result = run_manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("saasops: configuration error: ")
    assert names in lines[0]


def test_production_mode_passes_check_deploy():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **GOOD,
        DEBUG="false",
        SECRET_KEY="k" * 20 + "-prod-secret-" + "Zq8#" * 10,
        BASE_DOMAIN="saasops.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_json_logs_in_production():
    code = (
        "import logging, json, django; django.setup();"
        "from saasops.logging import request_id_var; request_id_var.set('req-1');"
        "logging.getLogger('saasops.test').warning('hello %s', 'world')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG",)}
    env.update(GOOD, DEBUG="false", SECRET_KEY="s" * 60, DJANGO_SETTINGS_MODULE="saasops.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    import json

    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["message"] == "hello world"
    assert record["level"] == "WARNING"
    assert record["request_id"] == "req-1"
    assert record["tenant"] == "public"
