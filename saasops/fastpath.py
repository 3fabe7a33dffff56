"""WSGI entry point with a lean path for the two hot platform endpoints.

    python -m saasops.serve          # production: granian with worker_app() in each worker

POST /api/v1/gate and POST /api/v1/events on the public host are answered here without the
middleware stack and DRF's request cycle (about 4 ms of CPU a request on this machine, most
of it the tenant domain lookup, the ORM token query and thirteen middleware layers; the gate
must answer 2,000 requests/s on two cores). Everything else — and every request that is not
the plain successful case of those two — goes to Django unchanged.

Same behaviour, by construction rather than by copy:
- the answer (status, body, extra headers) comes from the very functions the DRF views call
  (`metering.api.gate_answer` / `events_answer`), rendered by DRF's JSONRenderer;
- authentication uses the same token service; any request without a valid platform token,
  with a body too large or a length that is not a number, with a query string, an Accept
  header other than JSON, over plain http when HTTPS is enforced, or for another host is
  handed to Django, which answers it (401, 413, 406, 301, 404 …) exactly as before;
- the headers the middleware adds (security headers, X-Frame-Options, Content-Length,
  X-Request-ID, DRF's Allow) are taken from those middleware classes once per process, and
  the same log lines are written (the access line of RequestIdMiddleware; Django's warning
  for 4xx and error for 5xx, with the exception when there is one);
- Django's request_started / request_finished signals are sent (connections are closed for
  age or errors the same way). The per-request connection health check is the token query
  itself: when that fails, Django answers the request and checks (and reconnects) first.
The fast path switches itself off (everything goes to Django, with one warning) unless the
middleware list, the URL routing of both paths and the views' DRF settings are exactly the
ones this was checked against: a change there must be looked at here first.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from django.core.wsgi import get_wsgi_application

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after Django is set up
from django.core import signals  # noqa: E402
from django.core.handlers.exception import response_for_exception  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import set_script_prefix, set_urlconf  # noqa: E402
from django.utils.log import log_response  # noqa: E402

from metering.api import gate_answer_expecting  # noqa: E402
from metering.quota import FETCH, Expectation, gate_info_key  # noqa: E402
from saasops.redis import client as redis_client  # noqa: E402
from tenants.tokens import GENERATION_KEY  # noqa: E402

log = logging.getLogger("saasops.fastpath")
access_log = logging.getLogger("saasops.request")  # the logger of RequestIdMiddleware
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as in RequestIdMiddleware
_JSON_ACCEPTS = {"", "*/*", "application/json", "application/*"}

# The stack this was checked against (saasops/settings.py). Anything else: fast path off.
VERIFIED_MIDDLEWARE = (
    "saasops.middleware.RequestIdMiddleware",
    "saasops.middleware.ProbeMiddleware",
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "saasops.middleware.TenantMembershipMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
PUBLIC_TENANT_TTL = 60.0  # seconds a process trusts its lookup of the public host's tenant


class _Route:
    def __init__(self, answer: Callable[..., Any], limit: int, allow: str, gate: bool) -> None:
        self.answer, self.limit, self.allow, self.gate = answer, limit, allow, gate


class _State:
    """What the fast path learned once per process (None: switched off)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checked = False
        self.routes: dict[str, _Route] | None = None
        # Headers the middleware adds, before and after CommonMiddleware's Content-Length
        # (Django's order), for plain http (False) and https (True).
        self.before_length: list[tuple[str, str]] = []
        self.after_length: dict[bool, list[tuple[str, str]]] = {}
        self.renderer: Any = None
        self.public_tenant: Any = None
        self.public_tenant_at = 0.0
        # The gate's keys as last read from Redis (the token generation; each tenant's gate
        # info, raw): the next gate call decides from them in one round trip, and the script
        # checks atomically that they are still current (metering.quota.Expectation).
        self.seen_generation: bytes | None = None
        self.seen_info: dict[str, bytes] = {}


SEEN_INFO_MAX = 10_000


_state = _State()


def _switch_off(reason: str) -> None:
    log.warning("fast path off, every request goes through Django: %s", reason)
    _state.routes = None


def _check() -> None:
    """Decide once per process whether the fast path may run, and learn its headers."""
    with _state.lock:
        if _state.checked:
            return
        _state.checked = True
        try:
            _learn()
        except Exception:
            log.exception("fast path off: its start-up check failed")
            _state.routes = None


def _learn() -> None:
    from django.urls import resolve
    from rest_framework.renderers import JSONRenderer
    from rest_framework.settings import api_settings

    from metering import api
    from tenants.api.authentication import IsPlatformClient, PlatformTokenAuthentication

    if tuple(settings.MIDDLEWARE) != VERIFIED_MIDDLEWARE:
        return _switch_off("settings.MIDDLEWARE differs from the list saasops/fastpath.py was checked against")
    if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW or getattr(settings, "USE_X_FORWARDED_HOST", False):
        return _switch_off("DISALLOWED_USER_AGENTS, PREPEND_WWW or USE_X_FORWARDED_HOST is set")
    routes = {}
    for path, view, answer, limit in (
        ("/api/v1/gate", api.GateView, api.gate_answer, api.GATE_MAX_BODY_BYTES),
        ("/api/v1/events", api.EventsView, api.events_answer, api.MAX_BODY_BYTES),
    ):
        match = resolve(path, urlconf=settings.PUBLIC_SCHEMA_URLCONF)
        if getattr(match.func, "view_class", None) is not view:
            return _switch_off(f"{path} no longer routes to {view.__name__}")
        if (
            list(view.authentication_classes) != [PlatformTokenAuthentication]
            or list(view.permission_classes) != [IsPlatformClient]
            or list(view.renderer_classes) != [JSONRenderer]
            or list(view.throttle_classes) != []
            or list(view.parser_classes) != []
            or view.versioning_class is not None
            or api_settings.URL_FORMAT_OVERRIDE != "format"
        ):
            return _switch_off(f"the DRF settings of {view.__name__} changed")
        routes[path] = _Route(answer, limit, ", ".join(view().allowed_methods), gate=view is api.GateView)
    _state.renderer = JSONRenderer()
    _state.before_length = _added_headers(_xframe, False)
    _state.after_length = {secure: _added_headers(_security, secure) for secure in (False, True)}
    _state.routes = routes


def _xframe(request: WSGIRequest, response: HttpResponse) -> HttpResponse:
    from django.middleware.clickjacking import XFrameOptionsMiddleware

    return XFrameOptionsMiddleware(lambda r: response).process_response(request, response)


def _security(request: WSGIRequest, response: HttpResponse) -> HttpResponse:
    from django.middleware.security import SecurityMiddleware

    return SecurityMiddleware(lambda r: response).process_response(request, response)


def _added_headers(middleware: Callable[[WSGIRequest, HttpResponse], HttpResponse], secure: bool) -> list[Any]:
    """The headers a middleware adds to a JSON response of the public host."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/gate",
        "SERVER_NAME": settings.BASE_DOMAIN,
        "SERVER_PORT": "443" if secure else "80",
        "HTTP_HOST": settings.BASE_DOMAIN,
        "wsgi.url_scheme": "https" if secure else "http",
        "wsgi.input": io.BytesIO(),
    }
    response = HttpResponse(b"", content_type="application/json")
    before = set(response.headers)
    response = middleware(WSGIRequest(environ), response)
    return [(name, value) for name, value in response.items() if name not in before]


def _public_tenant() -> Any:
    """The tenant of the public host (as TenantMainMiddleware finds it), or None."""
    now = time.monotonic()
    if _state.public_tenant is not None and now - _state.public_tenant_at < PUBLIC_TENANT_TTL:
        return _state.public_tenant
    from django_tenants.utils import get_public_schema_name, get_tenant_domain_model

    connection.set_schema_to_public()  # type: ignore[attr-defined]
    domain = get_tenant_domain_model().objects.select_related("tenant").filter(domain=settings.BASE_DOMAIN).first()
    tenant = domain.tenant if domain is not None else None
    if tenant is not None and tenant.schema_name != get_public_schema_name():
        tenant = None
    if tenant is not None:
        tenant.domain_url = settings.BASE_DOMAIN
    _state.public_tenant, _state.public_tenant_at = tenant, now
    return tenant


def _is_secure(environ: dict[str, Any]) -> bool:
    """As HttpRequest.is_secure() with SECURE_PROXY_SSL_HEADER."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        value = environ.get(header)
        if value is not None:
            return str(value).split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _host_is_public(environ: dict[str, Any]) -> bool:
    host = environ.get("HTTP_HOST")
    if host is None:
        return False
    host = host.lower()
    name, _, port = host.partition(":")
    return name == settings.BASE_DOMAIN and (not port or port.isdigit())


def _bearer(environ: dict[str, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>` exactly as PlatformTokenAuthentication
    parses it, else None (the request then goes to Django, which says what was wrong)."""
    header = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    try:
        parts = header.encode("iso-8859-1").decode("ascii").split()
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class _Body:
    """The response iterable; closing it ends the request as Django's response would."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self.content

    def close(self) -> None:
        signals.request_finished.send(sender=WSGIHandler)


def prepare() -> None:
    """Do the start-up check (it imports every URL module) and find the public tenant now,
    not in the first requests (they would wait ~0.5 s for it)."""
    _check()
    if _state.routes:
        try:
            _public_tenant()
        except Exception:  # the database may not be up yet: the first request looks again
            log.warning("fast path: the public tenant could not be read at start-up", exc_info=True)
        finally:
            signals.request_finished.send(sender=WSGIHandler)  # closes that connection as a request would


def worker_app() -> Callable[..., Iterable[bytes]]:
    """What each worker of the production server (saasops.serve) loads: the application,
    prepared, with everything loaded so far moved out of the garbage collector's way
    (gc.freeze: full collections stop walking the whole of Django on every run)."""
    import gc

    prepare()
    gc.collect()
    gc.freeze()
    return application


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") == "POST":
        if not _state.checked:
            _check()
        routes = _state.routes
        route = routes.get(environ.get("PATH_INFO", "")) if routes else None
        if route is not None:
            answered = _fast(route, environ, start_response)
            if answered is not None:
                return answered
    return django_application(environ, start_response)


def _fast(route: _Route, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes] | None:
    """Answer the request, or return None (having touched nothing) to hand it to Django."""
    length = environ.get("CONTENT_LENGTH") or "0"
    secure = _is_secure(environ)
    if (
        environ.get("QUERY_STRING")
        or environ.get("SCRIPT_NAME")
        or not (length.isascii() and length.isdigit())
        or int(length) > route.limit
        or environ.get("HTTP_ACCEPT", "").strip() not in _JSON_ACCEPTS
        or (settings.SECURE_SSL_REDIRECT and not secure)
        or not _host_is_public(environ)
    ):
        return None
    raw_token = _bearer(environ)
    if raw_token is None:
        return None
    body = environ["wsgi.input"].read(int(length)) if length != "0" else b""
    environ["wsgi.input"] = io.BytesIO(body)  # Django can still read it if it answers

    from saasops.logging import request_id_var
    from tenants.tokens import platform_token_authenticate, platform_token_mark_used

    # The gate needs two Redis keys (the token generation, the tenant's gate info). Seen
    # before: decide from them and let the script check they are still current, in one round
    # trip; else (or when they changed) one MGET first (each round trip ~85 us of redis-py CPU).
    parsed: Any = None
    generation: bytes | None = None
    info_cached: Any = FETCH
    expect: Expectation | None = None
    slug_key = ""
    if route.gate:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
        slug = parsed.get("tenant") if isinstance(parsed, dict) else None
        if isinstance(slug, str) and slug:
            slug_key = slug[:40]
            seen, seen_generation = _state.seen_info.get(slug_key), _state.seen_generation
            if seen is not None and seen_generation is not None:
                generation, expect = seen_generation, Expectation(seen_generation, seen)
            else:
                generation, info_cached = _gate_keys(slug_key)

    set_script_prefix(get_script_name(environ))
    signals.request_started.send(sender=WSGIHandler, environ=environ)
    started = time.perf_counter()
    # CONN_HEALTH_CHECKS would spend a `SELECT 1` round trip on the kept connection first.
    # The token query is that check here: if it fails, Django gets the request and runs its
    # own check (reconnecting) before answering it, exactly as it would have.
    connection.health_check_done = True  # type: ignore[attr-defined]
    try:
        tenant = _public_tenant()
        token = platform_token_authenticate(raw=raw_token, generation=generation) if tenant is not None else None
    except Exception:  # e.g. a broken connection or the database down: Django answers (and logs) it
        token = None
    if token is None:
        signals.request_finished.send(sender=WSGIHandler)
        return None
    answered_early: Any = None
    if expect is not None:
        try:
            connection.set_tenant(tenant)  # type: ignore[attr-defined]
            answered_early = gate_answer_expecting(body, parsed, expect)
        except Exception:  # asked again below, where a failure is answered as Django would
            answered_early = None
        if answered_early is None:  # changed since seen (or not the script's answer): read again
            _state.seen_info.pop(slug_key, None)
            generation, info_cached = _gate_keys(slug_key)
            if generation != expect.generation:  # a token changed: authenticate again
                try:
                    token = platform_token_authenticate(raw=raw_token, generation=generation)
                except Exception:
                    token = None
                if token is None:
                    signals.request_finished.send(sender=WSGIHandler)
                    return None
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    context = request_id_var.set(request_id)
    try:
        connection.set_tenant(tenant)  # type: ignore[attr-defined]
        platform_token_mark_used(token=token)
        try:
            if answered_early is not None:
                status, data, extra = answered_early
            elif route.gate:
                status, data, extra = route.answer(body, parsed, info_cached)
            else:
                status, data, extra = route.answer(body)
            content = _state.renderer.render(data)
            headers = [("Content-Type", "application/json"), *(extra or {}).items(), ("Allow", route.allow)]
            headers += [*_state.before_length, ("Content-Length", str(len(content)))]
            headers += [*_state.after_length[secure], ("X-Request-ID", request_id)]
            reason = HTTPStatus(status).phrase
            failed: HttpResponse | None = None
        except Exception as exc:
            set_urlconf(settings.PUBLIC_SCHEMA_URLCONF)
            request = _request(environ)
            failed = response_for_exception(request, exc)  # logs it as Django does
            failed = _xframe(request, failed)
            if not failed.has_header("Content-Length"):
                failed.headers["Content-Length"] = str(len(failed.content))
            failed = _security(request, failed)
            failed.headers["X-Request-ID"] = request_id
            status, reason, content = failed.status_code, failed.reason_phrase, failed.content
            headers = list(failed.items())
        path = environ["PATH_INFO"]
        access_log.info(
            "%s %s %s",
            "POST",
            path,
            status,
            extra={
                "method": "POST",
                "path": path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        if status >= 400 and failed is None:
            response = HttpResponse(status=status)
            log_response("%s: %s", reason, path, response=response, request=_request(environ))
    finally:
        request_id_var.reset(context)
    start_response(f"{status} {reason}", headers)
    return _Body(content)


def _gate_keys(slug: str) -> tuple[bytes | None, Any]:
    """(token generation, the tenant's raw gate info) read now, and remembered for the next
    gate call; (None, FETCH) when Redis cannot say (each is read again where it is used)."""
    try:
        values: Any = redis_client().mget(GENERATION_KEY, gate_info_key(slug))
        generation, info = values
    except Exception:
        return None, FETCH
    if generation is not None:
        _state.seen_generation = generation
        if info is not None and info != b"null":  # unknown tenants are not remembered
            if len(_state.seen_info) >= SEEN_INFO_MAX:
                _state.seen_info.clear()
            _state.seen_info[slug] = info
    return generation, info


def _request(environ: dict[str, Any]) -> WSGIRequest:
    """A Django request for what logs or error pages need of it (built only then)."""
    environ["wsgi.input"].seek(0)
    request = WSGIRequest(environ)
    request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
    request.tenant = _state.public_tenant  # type: ignore[attr-defined]
    return request
