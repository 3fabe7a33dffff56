"""A local Stripe-compatible server for development and tests: the `localstripe` package
(a fake but stateful Stripe API), started the way this project needs it.

    python -m saasops.localstripe_server --store PATH [--port 0] [--ready-file PATH]
                                         [--webhook-host HOST] [--from-scratch]

What this launcher changes, and why (localstripe itself is not modified):
- It listens on 127.0.0.1 only (localstripe's own start() binds '::', every interface).
- Its state lives in --store (localstripe hard-codes /tmp/localstripe.pickle, shared by
  every run on the machine). Written atomically after each changing request rather than on
  every object it creates (upstream re-pickles the whole store per object: quadratic).
- --port 0 takes a free port; the port is written to --ready-file once it accepts
  connections, so a supervisor can wait for the file instead of guessing.
- Idempotency-Key is honoured as Stripe does: a POST repeated with the same key (and the
  same parameters) gets the first response replayed, with the header `Idempotent-Replayed:
  true`; the same key with other parameters gets 400 `idempotency_error`. localstripe
  ignores the header, which would make "a retried charge is not charged twice" untestable.
  Keys are kept in memory for the life of the process (Stripe: 24 hours).
- Webhook deliveries carry `Host: --webhook-host` when given: the app routes by host name,
  and the public site answers on BASE_DOMAIN, not on 127.0.0.1 where it listens.

Register a webhook endpoint (in memory, gone at restart) with
`POST /_config/webhooks/<id>` and form fields `url` and `secret`; `make run` does.
This is a development tool: never expose it beyond the loopback interface.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import pickle
import socket
import sys
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def _use_store(path: Path) -> None:
    from localstripe.resources import Store

    def try_load_from_disk(self: Any) -> None:
        try:
            with open(path, "rb") as handle:
                old = pickle.load(handle)  # noqa: S301 - our own file, written by dump_to_disk below
        except FileNotFoundError:
            return
        except Exception as exc:  # a store from another version: start empty rather than fail
            print(f"localstripe: could not read {path} ({exc}); starting empty", file=sys.stderr)
            return
        dict.clear(self)
        dict.update(self, old)

    def dump_to_disk(self: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    Store.try_load_from_disk = try_load_from_disk
    Store.dump_to_disk = dump_to_disk
    # Persist per request (save_store_middleware), not per object created.
    Store.__setitem__ = dict.__setitem__  # type: ignore[assignment]
    Store.__delitem__ = dict.__delitem__  # type: ignore[assignment]


def _idempotency_middleware() -> Any:
    from aiohttp import web
    from localstripe.errors import UserError
    from localstripe.server import get_api_key

    seen: dict[tuple[str, str], tuple[tuple[str, str], int, bytes, str]] = {}

    @web.middleware
    async def idempotency(request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        body = await request.read()
        slot = (get_api_key(request) or "", key)
        fingerprint = (request.path, hashlib.sha256(body).hexdigest())
        if slot in seen:
            first, status, payload, content_type = seen[slot]
            if first != fingerprint:
                error = {
                    "error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with.",
                    }
                }
                return web.json_response(error, status=400)
            return web.Response(
                body=payload, status=status, content_type=content_type, headers={"Idempotent-Replayed": "true"}
            )
        try:
            response = await handler(request)
        except UserError as exc:
            response = exc.to_response()
        # Like Stripe: results are kept once the request executed (success or a card error),
        # not for requests that failed validation or the server itself.
        raw = response.body if isinstance(response, web.Response) else None
        if isinstance(raw, bytes | bytearray) and (response.status < 400 or response.status == 402):
            seen[slot] = (fingerprint, response.status, bytes(raw), response.content_type)
        return response

    return idempotency


def _deliver_with_host(host: str) -> None:
    """Replace localstripe's webhook sender by one that sets the Host header (same signing)."""
    import hmac

    import aiohttp
    from localstripe import webhooks

    log = logging.getLogger("aiohttp.access")

    async def send(event: Any) -> None:
        payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
        signed = b"%d.%s" % (event.created, payload)
        await asyncio.sleep(1)  # as upstream: deliver after the API call that caused it returned
        for webhook in list(webhooks._webhooks.values()):
            if webhook.events is not None and event.type not in webhook.events:
                continue
            signature = hmac.new(webhook.secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": f"t={event.created},v1={signature}",
                "Host": host,
            }
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(webhook.url, data=payload, headers=headers) as reply,
                ):
                    log.info('webhook "%s" delivered: %s', event.type, reply.status)
            except aiohttp.ClientError as exc:
                log.info('webhook "%s" failed: %s', event.type, exc)

    webhooks._send_webhook = send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saasops.localstripe_server", description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, type=Path, help="pickle file of the server's state")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--ready-file", type=Path, help="the port is written here once it listens")
    parser.add_argument("--webhook-host", default="", help="Host header of webhook deliveries, e.g. localhost:8000")
    parser.add_argument("--from-scratch", action="store_true", help="ignore the stored state")
    args = parser.parse_args(argv)

    _use_store(args.store.resolve())
    args.store.parent.mkdir(parents=True, exist_ok=True)
    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app

    if not args.from_scratch:
        store.try_load_from_disk()
    app.middlewares.append(_idempotency_middleware())
    if args.webhook_host:
        _deliver_with_host(args.webhook_host)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, args.port))
    sock.listen(128)  # connections queue from here on, before the loop accepts them
    port = sock.getsockname()[1]
    if args.ready_file:
        tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, args.ready_file)

    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler(sys.stdout))
    print(f"localstripe (saasops launcher) on http://{LOOPBACK}:{port}, store {args.store}", flush=True)
    try:
        web.run_app(app, sock=sock, access_log=access, print=None, shutdown_timeout=1.0)
    finally:
        store.dump_to_disk()
    return 0


if __name__ == "__main__":
    sys.exit(main())
