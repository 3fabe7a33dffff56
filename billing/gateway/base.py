"""The payment gateway interface: what billing needs from a payment processor, and nothing
about how it does it. `gateway()` returns the implementation chosen by settings:

- PAYMENT_GATEWAY=stripe (default): `billing.gateway.stripe.StripeGateway`, against Stripe
  or, with STRIPE_API_BASE, a Stripe-compatible server (localstripe in development).
- PAYMENT_GATEWAY=offline: `billing.gateway.offline.OfflineGateway`, which moves no money and
  says so on every object it makes. Never chosen implicitly.

Amounts are integer minor units with an ISO currency, exactly as on our invoices: the
conversion to Stripe's representation (also minor units, lower-case currency) happens in
one place, `stripe_amount()` in the Stripe implementation.

Errors: a declined charge is a result (`ChargeResult.succeeded is False`), not an exception.
`GatewayUnavailable` means "nothing is known to have happened, try again with the same
idempotency key" (network, 5xx, rate limits). `GatewayRequestError` means the processor
refused the request itself (our bug or bad input): retrying the same request will not help.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class GatewayNotConfigured(GatewayError, ImproperlyConfigured):
    """The chosen gateway lacks its settings (e.g. no STRIPE_SECRET_KEY)."""


class GatewayUnavailable(GatewayError, OSError):
    """Transient: the request may not have reached the processor. Retry with the same key.
    An OSError, so tasks that retry on network errors (invoice_after_finalize) retry on it."""


class GatewayRequestError(GatewayError):
    """The processor refused the request (bad input, unknown object, our bug). Not transient."""

    def __init__(self, message: str, *, code: str = "", http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class PaymentMethodRefused(GatewayError):
    """The card could not be saved (declined when attached or set up)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PaymentMethodInfo:
    id: str
    customer_id: str
    label: str  # e.g. "Visa •••• 4242"


@dataclass(frozen=True)
class SetupIntentInfo:
    id: str
    customer_id: str
    status: str  # Stripe's: requires_payment_method, requires_action, succeeded, canceled …
    client_secret: str
    payment_method_id: str = ""


@dataclass(frozen=True)
class ChargeResult:
    """What one collection attempt came to. `status` is the processor's PaymentIntent status;
    `succeeded` is the only one that means money was taken."""

    payment_intent_id: str
    status: str
    amount: int
    currency: str
    error_code: str = ""
    error_message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def pending(self) -> bool:
        """Neither paid nor failed yet (asynchronous methods such as SEPA debits)."""
        return self.status == "processing"

    @property
    def failed(self) -> bool:
        """Not paid by this attempt: declined, needs the customer (3-D Secure), or canceled."""
        return not self.succeeded and not self.pending


class PaymentGateway(ABC):
    """One payment processor. Every method that creates something takes an idempotency key:
    calling it again with the same key returns the first call's result and creates nothing."""

    name: str

    @abstractmethod
    def customer_create(self, *, name: str, email: str, metadata: dict[str, str], idempotency_key: str) -> str:
        """Create a customer; returns its id."""

    @abstractmethod
    def payment_method_attach(self, *, customer_id: str, payment_method_id: str) -> PaymentMethodInfo:
        """Save a payment method on the customer (raises PaymentMethodRefused when declined)."""

    @abstractmethod
    def payment_method_detach(self, *, payment_method_id: str) -> None:
        """Remove a saved payment method from its customer."""

    @abstractmethod
    def payment_method_get(self, *, payment_method_id: str) -> PaymentMethodInfo:
        """Read a payment method (customer_id is "" when it is attached to none)."""

    @abstractmethod
    def setup_intent_create(
        self, *, customer_id: str, metadata: dict[str, str], idempotency_key: str
    ) -> SetupIntentInfo:
        """Start saving a card for later off-session charges (the browser confirms it)."""

    @abstractmethod
    def setup_intent_confirm(self, *, setup_intent_id: str, payment_method_id: str) -> SetupIntentInfo:
        """Confirm a SetupIntent server-side with a payment method (tests, API clients)."""

    @abstractmethod
    def setup_intent_get(self, *, setup_intent_id: str) -> SetupIntentInfo:
        """Read a SetupIntent (after the browser confirmed it)."""

    @abstractmethod
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
        """Take `amount` (minor units) off-session now. A decline is a result, not an error."""

    @abstractmethod
    def payment_intent_get(self, *, payment_intent_id: str) -> ChargeResult:
        """Read a payment's current state (reconciliation)."""


def gateway() -> PaymentGateway:
    """The gateway chosen by settings (PAYMENT_GATEWAY). Built per call: cheap, and tests
    that change settings get what they set."""
    choice = getattr(settings, "PAYMENT_GATEWAY", "stripe")
    if choice == "offline":
        from billing.gateway.offline import OfflineGateway

        return OfflineGateway()
    if choice == "stripe":
        from billing.gateway.stripe import StripeGateway

        return StripeGateway.from_settings()
    raise GatewayNotConfigured(f"PAYMENT_GATEWAY={choice!r} is not a payment gateway (use stripe or offline)")
