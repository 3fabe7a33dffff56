"""The Stripe gateway, on stripe-python's `StripeClient`.

The same code talks to Stripe (test or live key) and to a Stripe-compatible server: with
STRIPE_API_BASE set (make run / make test point it at localstripe on 127.0.0.1) requests go
there instead of https://api.stripe.com. Nothing else changes.

Every creating call carries an idempotency key; stripe-python's own network retries
(`max_network_retries`) reuse it, so a request retried after a timeout never charges twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import stripe as stripe_sdk
from django.conf import settings

from billing.gateway.base import (
    ChargeResult,
    GatewayNotConfigured,
    GatewayRequestError,
    GatewayUnavailable,
    PaymentGateway,
    PaymentMethodInfo,
    PaymentMethodRefused,
    SetupIntentInfo,
)

# One client per (key, base): its HTTP session keeps connections alive between calls.
_clients: dict[tuple[str, str], stripe_sdk.StripeClient] = {}
_clients_lock = threading.Lock()


def stripe_amount(amount: int, currency: str) -> tuple[int, str]:
    """Our invoice amount -> Stripe's. Both are integer minor units (cents); Stripe wants the
    currency in lower case. Zero-decimal currencies (JPY…) are minor == major on both sides,
    so no scaling is needed for any currency we bill in."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"amounts are integer minor units, got {amount!r}")
    return amount, currency.lower()


def _card_label(pm: Any) -> str:
    card = getattr(pm, "card", None)
    if card is None:
        kind = str(getattr(pm, "type", "") or "payment method")
        return kind.replace("_", " ").title()
    brand = str(getattr(card, "brand", "") or "card")
    last4 = str(getattr(card, "last4", "") or "????")
    return f"{brand.title()} •••• {last4}"


def _id_of(value: Any) -> str:
    """A Stripe reference that may be an id or an expanded object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(getattr(value, "id", "") or "")


@contextmanager
def _stripe_errors() -> Iterator[None]:
    """stripe-python's errors raised in the block, as the gateway's (_translate)."""
    try:
        yield
    except stripe_sdk.StripeError as exc:
        raise _translate(exc) from exc


def _translate(exc: stripe_sdk.StripeError) -> Exception:
    """Map stripe-python's errors onto the gateway's (CardError is handled by the callers)."""
    if isinstance(exc, stripe_sdk.APIConnectionError | stripe_sdk.RateLimitError):
        return GatewayUnavailable(f"Stripe unreachable or busy: {exc.user_message or exc}")
    if isinstance(exc, stripe_sdk.APIError) and (exc.http_status is None or exc.http_status >= 500):
        return GatewayUnavailable(f"Stripe error {exc.http_status}: {exc.user_message or exc}")
    if isinstance(exc, stripe_sdk.AuthenticationError | stripe_sdk.PermissionError):
        return GatewayNotConfigured(f"Stripe refused the API key (STRIPE_SECRET_KEY): {exc.user_message or exc}")
    return GatewayRequestError(str(exc.user_message or exc), code=str(exc.code or ""), http_status=exc.http_status)


class StripeGateway(PaymentGateway):
    name = "stripe"

    def __init__(self, client: stripe_sdk.StripeClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls) -> StripeGateway:
        key = getattr(settings, "STRIPE_SECRET_KEY", "")
        base = getattr(settings, "STRIPE_API_BASE", "")
        if not key:
            raise GatewayNotConfigured(
                "STRIPE_SECRET_KEY is not set: payments cannot be collected. `make run` / `make test` "
                "start a local Stripe-compatible server and set it; elsewhere set a Stripe test key, "
                "or PAYMENT_GATEWAY=offline (moves no money) — see docs/PAYMENTS.md"
            )
        with _clients_lock:
            client = _clients.get((key, base))
            if client is None:
                client = stripe_sdk.StripeClient(
                    key,
                    base_addresses={"api": base} if base else None,
                    max_network_retries=2,
                )
                _clients[(key, base)] = client
        return cls(client)

    # --- customers and payment methods -----------------------------------------------------
    def customer_create(self, *, name: str, email: str, metadata: dict[str, str], idempotency_key: str) -> str:
        params: dict[str, Any] = {"name": name, "metadata": metadata}
        if email:
            params["email"] = email
        with _stripe_errors():
            customer = self.client.v1.customers.create(
                params=cast(Any, params), options={"idempotency_key": idempotency_key}
            )
        return str(customer.id)

    def payment_method_attach(self, *, customer_id: str, payment_method_id: str) -> PaymentMethodInfo:
        try:
            pm = self.client.v1.payment_methods.attach(payment_method_id, params={"customer": customer_id})
        except stripe_sdk.CardError as exc:
            raise PaymentMethodRefused(
                str(exc.user_message or "The card was declined."), code=str(exc.code or "")
            ) from exc
        except stripe_sdk.StripeError as exc:
            raise _translate(exc) from exc
        return PaymentMethodInfo(id=str(pm.id), customer_id=_id_of(pm.customer), label=_card_label(pm))

    def payment_method_detach(self, *, payment_method_id: str) -> None:
        with _stripe_errors():
            self.client.v1.payment_methods.detach(payment_method_id)

    def payment_method_get(self, *, payment_method_id: str) -> PaymentMethodInfo:
        with _stripe_errors():
            pm = self.client.v1.payment_methods.retrieve(payment_method_id)
        return PaymentMethodInfo(id=str(pm.id), customer_id=_id_of(pm.customer), label=_card_label(pm))

    # --- SetupIntents (saving a card in the workspace) ----------------------------------------
    @staticmethod
    def _setup_info(si: Any) -> SetupIntentInfo:
        return SetupIntentInfo(
            id=str(si.id),
            customer_id=_id_of(si.customer),
            status=str(si.status),
            client_secret=str(si.client_secret or ""),
            payment_method_id=_id_of(si.payment_method),
        )

    def setup_intent_create(
        self, *, customer_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> SetupIntentInfo:
        with _stripe_errors():
            si = self.client.v1.setup_intents.create(
                params={"customer": customer_id, "usage": "off_session", "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        return self._setup_info(si)

    def setup_intent_confirm(self, *, setup_intent_id: str, payment_method_id: str) -> SetupIntentInfo:
        try:
            si = self.client.v1.setup_intents.confirm(setup_intent_id, params={"payment_method": payment_method_id})
        except stripe_sdk.CardError as exc:
            raise PaymentMethodRefused(
                str(exc.user_message or "The card was declined."), code=str(exc.code or "")
            ) from exc
        except stripe_sdk.StripeError as exc:
            raise _translate(exc) from exc
        return self._setup_info(si)

    def setup_intent_get(self, *, setup_intent_id: str) -> SetupIntentInfo:
        with _stripe_errors():
            si = self.client.v1.setup_intents.retrieve(setup_intent_id)
        return self._setup_info(si)

    # --- charging -------------------------------------------------------------------------------
    @staticmethod
    def _charge_result(pi: Any) -> ChargeResult:
        error = getattr(pi, "last_payment_error", None)
        return ChargeResult(
            payment_intent_id=str(pi.id),
            status=str(pi.status),
            amount=int(pi.amount),
            currency=str(pi.currency).upper(),
            error_code=str(getattr(error, "code", "") or "") if error else "",
            error_message=str(getattr(error, "message", "") or "") if error else "",
            metadata={str(k): str(v) for k, v in (pi.metadata.to_dict() if pi.metadata else {}).items()},
        )

    def charge(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ChargeResult:
        stripe_minor, stripe_currency = stripe_amount(amount, currency)
        try:
            pi = self.client.v1.payment_intents.create(
                params={
                    "amount": stripe_minor,
                    "currency": stripe_currency,
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe_sdk.CardError as exc:
            # Stripe puts the failed PaymentIntent in the error (localstripe does not).
            failed_pi = getattr(exc.error, "payment_intent", None) if exc.error else None
            return ChargeResult(
                payment_intent_id=_id_of(failed_pi),
                status="requires_payment_method",
                amount=amount,
                currency=currency.upper(),
                error_code=str(exc.code or "card_declined"),
                error_message=str(exc.user_message or "The card was declined."),
                metadata=dict(metadata),
            )
        except stripe_sdk.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                # The customer or card is gone on Stripe's side: a failed attempt the customer
                # fixes by adding a card, not a request to retry.
                return ChargeResult(
                    payment_intent_id="",
                    status="requires_payment_method",
                    amount=amount,
                    currency=currency.upper(),
                    error_code="payment_method_missing",
                    error_message=f"The saved payment method is no longer available ({exc.user_message or exc}).",
                    metadata=dict(metadata),
                )
            raise _translate(exc) from exc
        except stripe_sdk.StripeError as exc:
            raise _translate(exc) from exc
        return self._charge_result(pi)

    def payment_intent_get(self, *, payment_intent_id: str) -> ChargeResult:
        with _stripe_errors():
            pi = self.client.v1.payment_intents.retrieve(payment_intent_id)
        return self._charge_result(pi)
