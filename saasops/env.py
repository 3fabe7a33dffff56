"""Strict reading of the environment.

Every variable the app reads is declared once in ``VARIABLES`` (name, default, meaning);
README's table lists the same variables (a test checks it). A missing or
malformed value stops start-up with one line that names the variable, instead of a
traceback or — worse — a silently wrong setting (django-environ alone treats
``DEBUG=maybe`` as false).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from urllib.parse import urlparse

import environ


class ConfigError(Exception):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None  # None: required (in the mode where it is read)
    meaning: str


VARIABLES: list[Variable] = [
    Variable("DEBUG", "true", "Development mode (true/false). false turns on production hardening."),
    Variable(
        "SECRET_KEY",
        "(development key)",
        "Django secret key. Required (50+ characters) when DEBUG=false.",
    ),
    Variable(
        "DATABASE_URL",
        "(embedded PostgreSQL)",
        "PostgreSQL URL, e.g. postgresql://user:pass@host:5432/saasops. Unset: make run/test start "
        "an embedded server under .devdata/.",
    ),
    Variable(
        "REDIS_URL",
        "(embedded Redis)",
        "Redis URL (redis://, rediss:// or unix://). Celery broker, cache and rate limits. Unset: "
        "make run/test start an embedded redis-server under .devdata/.",
    ),
    Variable(
        "BASE_DOMAIN",
        "localhost",
        "Public host; tenants live at <slug>.<BASE_DOMAIN>.",
    ),
    Variable(
        "ALLOWED_HOSTS", "", "Extra allowed host names, comma-separated (BASE_DOMAIN and its subdomains always are)."
    ),
    Variable("PORT", "8000", "Port of the web server started by make run (also used in printed URLs)."),
    Variable("WEB_BIND", "0.0.0.0:8000", "Production web server (python -m saasops.serve): address and port."),
    Variable("WEB_CONCURRENCY", "(cores, at least 2)", "Production web server: worker processes."),
    Variable("WEB_THREADS", "2", "Production web server: threads per worker (requests one worker runs at once)."),
    Variable("LOG_FORMAT", "(console; json when DEBUG=false)", "console or json (one JSON object a line)."),
    Variable("LOG_LEVEL", "INFO", "Root log level (DEBUG, INFO, WARNING, ERROR)."),
    Variable("EMAIL_URL", "consolemail://", "Outgoing mail, e.g. smtp+tls://user:pass@smtp.example.com:587."),
    Variable("DEFAULT_FROM_EMAIL", "saasops <noreply@localhost>", "Sender of outgoing mail."),
    Variable(
        "SECURE_SSL_REDIRECT",
        "true",
        "Production only: redirect http to https (false behind a TLS proxy that does it).",
    ),
    Variable(
        "CELERY_WORKER_HEARTBEAT_MAX_AGE", "120", "Seconds after which /readyz reports the Celery worker as down."
    ),
    Variable(
        "PAYMENT_GATEWAY",
        "stripe",
        "stripe (Stripe, or the Stripe-compatible server at STRIPE_API_BASE) or offline (moves no money; "
        "labelled so everywhere). See docs/PAYMENTS.md.",
    ),
    Variable(
        "STRIPE_SECRET_KEY",
        "(local server in make run/test)",
        "Stripe secret key (sk_test_… or sk_live_…). Unset: make run/test start localstripe on 127.0.0.1 "
        "and set it; elsewhere collection fails loudly until it is set.",
    ),
    Variable(
        "STRIPE_WEBHOOK_SECRET",
        "(set by make run/test)",
        "Signing secret of the webhook endpoint /billing/stripe/webhook/ (whsec_…). Unset: webhooks answer 503.",
    ),
    Variable(
        "STRIPE_API_BASE",
        "(https://api.stripe.com)",
        "Base URL of a Stripe-compatible API, e.g. http://127.0.0.1:8420 (localstripe). Unset: Stripe itself.",
    ),
    Variable(
        "METRICS_TOKEN",
        "(none)",
        "Bearer token (24+ characters) that reads /metrics when DEBUG=false. See docs/METRICS.md.",
    ),
    Variable(
        "METRICS_ALLOWED_NETWORKS",
        "(none)",
        "Client networks that read /metrics without a token when DEBUG=false, comma-separated (e.g. 10.0.0.0/8).",
    ),
    Variable(
        "ALERT_EMAIL_TO",
        "(none)",
        "Extra alert recipients, comma-separated; active staff users with an email always get alerts.",
    ),
]

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip()


def get_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None or value == "":
        return default
    if value.lower() in _BOOL_TRUE:
        return True
    if value.lower() in _BOOL_FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def get_int(name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name}={number} is out of range ({minimum}..{maximum})")
    return number


def get_str(name: str, default: str | None = None, *, choices: tuple[str, ...] | None = None) -> str:
    value = _raw(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default
    if choices and value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def get_database(name: str = "DATABASE_URL") -> dict:
    value = _raw(name)
    if not value:
        raise ConfigError(
            f"{name} is not set: run through `make run` / `make test` (they start an embedded "
            "PostgreSQL) or set it to a postgresql:// URL"
        )
    parsed = urlparse(value)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ConfigError(f"{name} must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    if not (parsed.path or "").strip("/"):
        raise ConfigError(f"{name} names no database (postgresql://…/<dbname>)")
    try:
        config = environ.Env.db_url_config(value)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ConfigError(f"{name} is malformed: {exc}") from None
    if not config.get("HOST") and "host=" not in (parsed.query or ""):
        raise ConfigError(f"{name} names no host (use host=/socket/dir for a Unix socket)")
    return config


def get_redis_url(name: str = "REDIS_URL") -> str:
    value = _raw(name)
    if not value:
        raise ConfigError(
            f"{name} is not set: run through `make run` / `make test` (they start an embedded "
            "Redis) or set it to a redis:// URL"
        )
    parsed = urlparse(value)
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL, got {parsed.scheme!r}")
    if parsed.scheme == "unix" and not parsed.path:
        raise ConfigError(f"{name} names no socket path (unix:///path/to/redis.sock)")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ConfigError(f"{name} names no host")
    return value


def fail(error: ConfigError) -> None:
    """Stop start-up with one line naming the variable."""
    sys.stderr.write(f"saasops: configuration error: {error}\n")
    raise SystemExit(2)
