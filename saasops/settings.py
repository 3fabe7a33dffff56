"""Django settings, read from the environment (see saasops/env.py for every variable)."""

from __future__ import annotations

import warnings
from pathlib import Path

import environ

from saasops import env as E

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DEBUG = E.get_bool("DEBUG", True)
    _DEV_SECRET = "dev-insecure-" + "x" * 50
    SECRET_KEY = E.get_str("SECRET_KEY", _DEV_SECRET if DEBUG else None)
    if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-insecure-")):
        raise E.ConfigError("SECRET_KEY must be a random string of 50+ characters when DEBUG=false")
    _DB = E.get_database()
    REDIS_URL = E.get_redis_url()
    BASE_DOMAIN = E.get_str("BASE_DOMAIN", "localhost").lower().strip(".")
    _EXTRA_HOSTS = [h.strip() for h in E.get_str("ALLOWED_HOSTS", "").split(",") if h.strip()]
    PORT = E.get_int("PORT", 8000, minimum=1, maximum=65535)
    LOG_FORMAT = E.get_str("LOG_FORMAT", "console" if DEBUG else "json", choices=("console", "json"))
    LOG_LEVEL = E.get_str("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    try:
        _EMAIL = environ.Env.email_url_config(E.get_str("EMAIL_URL", "consolemail://"))
    except Exception as exc:
        raise E.ConfigError(f"EMAIL_URL is malformed: {exc}") from None
    DEFAULT_FROM_EMAIL = E.get_str("DEFAULT_FROM_EMAIL", "saasops <noreply@localhost>")
    _SSL_REDIRECT = E.get_bool("SECURE_SSL_REDIRECT", True)
    CELERY_WORKER_HEARTBEAT_MAX_AGE = E.get_int("CELERY_WORKER_HEARTBEAT_MAX_AGE", 120, minimum=5)
    # Payments (docs/PAYMENTS.md). Collection without a key fails loudly at use, never silently.
    PAYMENT_GATEWAY = E.get_str("PAYMENT_GATEWAY", "stripe", choices=("stripe", "offline"))
    STRIPE_SECRET_KEY = E.get_str("STRIPE_SECRET_KEY", "")
    if STRIPE_SECRET_KEY and not STRIPE_SECRET_KEY.startswith(("sk_", "rk_")):
        raise E.ConfigError("STRIPE_SECRET_KEY must be a Stripe secret key (sk_… or rk_…)")
    STRIPE_WEBHOOK_SECRET = E.get_str("STRIPE_WEBHOOK_SECRET", "")
    if STRIPE_WEBHOOK_SECRET and not STRIPE_WEBHOOK_SECRET.startswith("whsec_"):
        raise E.ConfigError("STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_…)")
    STRIPE_API_BASE = E.get_str("STRIPE_API_BASE", "").rstrip("/")
    if STRIPE_API_BASE and not STRIPE_API_BASE.startswith(("http://", "https://")):
        raise E.ConfigError(f"STRIPE_API_BASE={STRIPE_API_BASE!r} must be an http:// or https:// URL")
except E.ConfigError as error:
    E.fail(error)

# --- Apps -----------------------------------------------------------------------------
# Public schema: everything keyed by tenant (billing and finance never fan out over schemas).
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "django_celery_results",
    "saasops",
    "metering",
    "billing",
    "lifecycle",
    "operations",
]
# Tenant schemas: what belongs to the customer alone (dropped with the schema).
TENANT_APPS = [
    "django.contrib.contenttypes",
    "workspace",
]
INSTALLED_APPS = list(SHARED_APPS) + [a for a in TENANT_APPS if a not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# New tenants clone this schema instead of running every migration (0.3 s instead of 1.3 s).
# It is a Tenant row (is_template=True) so migrate_schemas keeps it in step.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
TENANT_TEMPLATE_SCHEMA = TENANT_BASE_SCHEMA
PUBLIC_SCHEMA_URLCONF = "saasops.urls_public"
# `SET search_path` once per connection and schema switch, not on every new cursor (the
# invoice job issued 19 of its 35 statements per subscription for it). Safe with this
# django-tenants: set_tenant/set_schema, close, rollback and savepoint rollback (which undo
# or change the SET) all make the next cursor issue it again.
TENANT_LIMIT_SET_CALLS = True
ROOT_URLCONF = "saasops.urls_tenant"
DEFAULT_NOT_FOUND_TENANT_VIEW = "saasops.views.UnknownHostView"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = ["tenants.auth.EmailBackend"]

MIDDLEWARE = [
    "saasops.middleware.RequestIdMiddleware",
    "saasops.middleware.ProbeMiddleware",
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "saasops.middleware.TenantMembershipMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "saasops.context_processors.site",
            ],
        },
    },
]

WSGI_APPLICATION = "saasops.wsgi.application"
ASGI_APPLICATION = "saasops.asgi.application"

MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
# Development: WhiteNoise serves straight from the apps' static folders (no collectstatic),
# also under the production server when DEBUG is on (docker compose).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
if DEBUG:
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")

# --- Database -------------------------------------------------------------------------
_DB["ENGINE"] = "django_tenants.postgresql_backend"
# Persistent connections: Django's default of 0 halves the throughput of small requests.
_DB.setdefault("CONN_MAX_AGE", 60)
_DB["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _DB}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Celery ----------------------------------------------------------------------
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "KEY_PREFIX": "saasops",
    }
}


def _celery_broker(url: str) -> str:
    # kombu spells a Unix socket redis+socket:///path; redis-py spells it unix:///path.
    return "redis+socket://" + url[len("unix://") :] if url.startswith("unix://") else url


CELERY_BROKER_URL = _celery_broker(REDIS_URL)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "django-cache"
CELERY_BEAT_SCHEDULER = "saasops.beat:HeartbeatScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
# tenant-schemas-celery looks the task's tenant up by schema name before every task; a worker
# keeps what it found for 60 s (schemas never change name; tasks reload what they change).
CELERY_TASK_TENANT_CACHE_SECONDS = 60

# --- Auth, sessions -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Host-only cookies: a session on acme.localhost never reaches globex.localhost.
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_HTTPONLY = True

# --- Hosts ------------------------------------------------------------------------------
ALLOWED_HOSTS = [BASE_DOMAIN, "." + BASE_DOMAIN, *_EXTRA_HOSTS]
if DEBUG:
    ALLOWED_HOSTS += ["127.0.0.1", "testserver", ".testserver"]

# --- I18N, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Email ------------------------------------------------------------------------------
EMAIL_BACKEND = _EMAIL.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
for _key, _value in _EMAIL.items():
    if _key.startswith("EMAIL_") and _key != "EMAIL_BACKEND":
        globals()[_key] = _value
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "saasops.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "saasops API",
    "DESCRIPTION": "Platform API (product backend, platform token) and tenant API (tenant host).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Production hardening ---------------------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _SSL_REDIRECT
    # Probes come from load balancers over plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# --- Logging ----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "saasops.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "console": {
            "format": "%(asctime)s %(levelname)-7s [%(request_id)s %(tenant)s] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "INFO"},
        "stripe": {"level": "WARNING"},  # stripe-python logs every API call at INFO
    },
}

SAASOPS_VERSION = "0.1.0"

# Event batches are up to 8 MiB (1,000 events); the ingest view enforces its own limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Accounts (allauth) -----------------------------------------------------------------------
# django-allauth runs sign-in, sign-out, password reset, email addresses and the rate limits
# (kept in Redis through the cache). Signup is our own view (lifecycle/views/public.py):
# a signup makes a workspace, so allauth's own signup page is closed (lifecycle/accounts.py).
# Sessions stay host-only (above); a tenant host admits only its members (the adapter).
SHARED_APPS += ["allauth", "allauth.account"]
INSTALLED_APPS += ["allauth", "allauth.account"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "allauth.account.middleware.AccountMiddleware",
)
AUTHENTICATION_BACKENDS += ["allauth.account.auth_backends.AuthenticationBackend"]
ACCOUNT_ADAPTER = "lifecycle.accounts.AccountAdapter"
ACCOUNT_FORMS = {"login": "lifecycle.accounts.SignInForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_UNIQUE_EMAIL = True
# Workspace access needs a verified signup (membership is only made after the link is
# clicked); members added by staff or the demo data have no allauth address row, so login
# itself does not insist on one.
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "saasops: "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
# Rate limits (Redis): "amount/period/per", per = ip | key (the email address) | user.
ACCOUNT_RATE_LIMITS = {
    # Workspace creation through /signup/: at most 3 an hour per IP, 3 an hour per email.
    "signup": "3/h/ip,3/h/key",
    "login": "30/m/ip",
    # Failed sign-ins: 10 a minute per IP, 5 per 5 minutes per account.
    "login_failed": "10/m/ip,5/5m/key",
    "reset_password": "5/m/ip,3/h/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reauthenticate": "10/m/user",
}
# Behind a proxy, set how many hops to trust so the limits see the client's address
# (docs/LIFECYCLE.md); the default trusts none and uses REMOTE_ADDR.
ALLAUTH_TRUSTED_PROXY_COUNT = 0

# --- Lifecycle (signup, trials, retention) ------------------------------------------------
LIFECYCLE_VERIFY_LINK_MAX_AGE = 24 * 3600  # seconds a signup's verification link works
LIFECYCLE_HANDOFF_TTL = 60  # seconds a hand-off token (public host -> tenant host) works
LIFECYCLE_TRIAL_REMINDER_DAYS = (3, 1)  # reminder emails this many days before a trial ends
LIFECYCLE_RETENTION_DAYS = 30  # days a cancelled workspace's data is kept before deletion

# --- Monitoring and alerts (docs/METRICS.md, saasops/metrics.py) ------------------------------
# /metrics is open in DEBUG; otherwise it answers a Bearer METRICS_TOKEN or a client address
# inside METRICS_ALLOWED_NETWORKS. Alert thresholds are data (admin → Alert thresholds).
try:
    METRICS_TOKEN = E.get_str("METRICS_TOKEN", "")
    if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
        raise E.ConfigError("METRICS_TOKEN must be at least 24 characters")
    METRICS_ALLOWED_NETWORKS = [n.strip() for n in E.get_str("METRICS_ALLOWED_NETWORKS", "").split(",") if n.strip()]
    for _network in METRICS_ALLOWED_NETWORKS:
        try:
            __import__("ipaddress").ip_network(_network, strict=False)
        except ValueError:
            raise E.ConfigError(f"METRICS_ALLOWED_NETWORKS: {_network!r} is not a network (e.g. 10.0.0.0/8)") from None
    ALERT_EMAIL_TO = [a.strip() for a in E.get_str("ALERT_EMAIL_TO", "").split(",") if a.strip()]
    for _address in ALERT_EMAIL_TO:
        if "@" not in _address:
            raise E.ConfigError(f"ALERT_EMAIL_TO: {_address!r} is not an email address")
except E.ConfigError as error:
    E.fail(error)
METRICS_FLUSH_INTERVAL = 1.0  # seconds a process buffers its counts before writing them to Redis
READINESS_MIN_ACTIVE_TENANTS = 10
READINESS_SKIP_CHECKS: list[str] = []  # check codes the scheduled audit records as skipped
